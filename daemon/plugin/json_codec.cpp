#include "plugin/json_codec.hpp"

#include <cstdio>

#include <flatbuffers/idl.h>
#include <flatbuffers/reflection.h>

namespace troupe::plugin {

json_codec::json_codec(const reflection::Schema& schema) : schema_(schema) {}

json_codec::~json_codec() = default;

// A parser fresh from the schema: after a failed parse its state is not
// reliable, so it is rebuilt then.
bool json_codec::reset(std::string& error) {
  flatbuffers::IDLOptions opts;
  opts.strict_json = true;
  opts.output_default_scalars_in_json = true;
  opts.indent_step = -1;
  auto p = std::make_unique<flatbuffers::Parser>(opts);
  if (!p->Deserialize(&schema_)) {
    error = "the plugin's schema cannot be loaded for JSON: " + p->error_;
    return false;
  }
  parser_ = std::move(p);
  return true;
}

namespace {

// The parser says "1: 8: error: expecting: ..."; this says "at line 1,
// column 8: expecting: ...".
std::string clean(std::string e) {
  while (!e.empty() && (e.back() == '\n' || e.back() == ' ')) e.pop_back();
  const std::size_t mark = e.find("error: ");
  if (mark == std::string::npos) return e;
  std::string where = e.substr(0, mark);
  std::string what = e.substr(mark + 7);
  unsigned line = 0, column = 0;
  if (std::sscanf(where.c_str(), "%u: %u:", &line, &column) == 2)
    return "at line " + std::to_string(line) + ", column " + std::to_string(column) + ": " + what;
  return what;
}

}  // namespace

bool json_codec::encode(const reflection::Object& type, std::string_view json,
                        std::vector<std::uint8_t>& out, std::string& error) {
  std::lock_guard lock(mu_);
  if (!parser_ && !reset(error)) return false;
  const std::string name = type.name()->str();
  if (!parser_->SetRootType(name.c_str())) {
    error = "type " + name + " is not a table of its schema";
    return false;
  }
  const std::string text(json);  // the parser wants a terminated string
  if (!parser_->ParseJson(text.c_str())) {
    error = clean(parser_->error_);
    parser_.reset();
    return false;
  }
  const flatbuffers::FlatBufferBuilder& b = parser_->builder_;
  out.assign(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
  return true;
}

bool json_codec::decode(const reflection::Object& type, const std::uint8_t* data, std::string& out,
                        std::string& error) {
  std::lock_guard lock(mu_);
  if (!parser_ && !reset(error)) return false;
  const std::string name = type.name()->str();
  if (!parser_->SetRootType(name.c_str())) {
    error = "type " + name + " is not a table of its schema";
    return false;
  }
  out.clear();
  if (!flatbuffers::GenerateText(*parser_, data, &out)) {
    error = "cannot render " + name + " as JSON";
    return false;
  }
  return true;
}

}  // namespace troupe::plugin

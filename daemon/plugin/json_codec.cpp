#include "plugin/json_codec.hpp"

#include <cstdio>
#include <cstdlib>

#include <flatbuffers/idl.h>
#include <flatbuffers/reflection.h>
#include <nlohmann/json.hpp>

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

const char* json_kind(const nlohmann::json& v) {
  switch (v.type()) {
    case nlohmann::json::value_t::object: return "an object";
    case nlohmann::json::value_t::array: return "an array";
    case nlohmann::json::value_t::string: return "a string";
    case nlohmann::json::value_t::boolean: return "true or false";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: return "a whole number";
    case nlohmann::json::value_t::number_float: return "a number with a fraction";
    case nlohmann::json::value_t::null: return "null";
    default: return "something else";
  }
}

// A number written as a string, which the parser takes too ("12",
// "0x10", "-3"; "1.5", "nan", "inf" where a fraction may be).
bool number_text(const nlohmann::json& v, bool whole) {
  const std::string& t = v.get_ref<const std::string&>();
  if (t.empty()) return false;
  char* end = nullptr;
  if (whole) std::strtoll(t.c_str(), &end, 0);
  else std::strtod(t.c_str(), &end);
  return end != nullptr && *end == '\0';
}

// What a value of `t` must be in JSON, and whether `v` is one. Enums take
// their names too; unions are left to the parser.
bool fits(const reflection::Schema& schema, reflection::BaseType t, int index, const nlohmann::json& v,
          const char*& want) {
  using reflection::BaseType;
  if (v.is_null()) return true;  // the field is left out
  const bool is_enum = index >= 0 && t >= BaseType::UType && t <= BaseType::ULong;
  switch (t) {
    case BaseType::Bool:
      want = "true or false";
      return v.is_boolean() || v.is_number_integer() ||
             (v.is_string() && (v.get_ref<const std::string&>() == "true" || v.get_ref<const std::string&>() == "false"));
    case BaseType::Float:
    case BaseType::Double: want = "a number"; return v.is_number() || (v.is_string() && number_text(v, false));
    case BaseType::String: want = "a string"; return v.is_string();
    case BaseType::Obj:
      want = schema.objects()->Get(static_cast<flatbuffers::uoffset_t>(index))->is_struct() ? "an object (a struct)"
                                                                                         : "an object";
      return v.is_object();
    case BaseType::Vector:
    case BaseType::Array: want = "an array"; return v.is_array();
    case BaseType::Union: want = "a table of the union"; return true;
    default:
      want = is_enum ? "a whole number or one of the enum's names" : "a whole number";
      return v.is_number_integer() || v.is_number_unsigned() || (v.is_string() && (is_enum || number_text(v, true)));
  }
}

// The first field of `json` that does not fit `type`, named by its path
// ("owner.name", "items[2].qty"): the parser's own message gives a column
// in a re-serialised text, not a name. Empty when every field fits.
std::string misfit(const reflection::Schema& schema, const reflection::Object& type, const nlohmann::json& json,
                   const std::string& path) {
  for (const auto& [key, value] : json.items()) {
    const std::string at = path.empty() ? key : path + "." + key;
    const reflection::Field* f = type.fields()->LookupByKey(key.c_str());
    if (f == nullptr) {
      std::string names;
      for (const reflection::Field* g : *type.fields())
        if (g->type()->base_type() != reflection::BaseType::UType)
          names += (names.empty() ? "" : ", ") + g->name()->str();
      return "'" + at + "' is not a field of " + type.name()->str() + " (its fields: " + names + ")";
    }
    const reflection::Type* t = f->type();
    const char* want = "";
    if (!fits(schema, t->base_type(), t->index(), value, want))
      return "'" + at + "' must be " + want + ", not " + json_kind(value) + " (" + value.dump() + ")";
    if (t->base_type() == reflection::BaseType::Obj && value.is_object()) {
      std::string inner = misfit(schema, *schema.objects()->Get(static_cast<flatbuffers::uoffset_t>(t->index())),
                                 value, at);
      if (!inner.empty()) return inner;
    }
    if ((t->base_type() == reflection::BaseType::Vector || t->base_type() == reflection::BaseType::Array) &&
        value.is_array()) {
      for (std::size_t i = 0; i < value.size(); ++i) {
        const std::string item = at + "[" + std::to_string(i) + "]";
        if (!fits(schema, t->element(), t->index(), value[i], want))
          return "'" + item + "' must be " + want + ", not " + json_kind(value[i]) + " (" + value[i].dump() + ")";
        if (t->element() == reflection::BaseType::Obj && value[i].is_object()) {
          std::string inner = misfit(
              schema, *schema.objects()->Get(static_cast<flatbuffers::uoffset_t>(t->index())), value[i], item);
          if (!inner.empty()) return inner;
        }
      }
    }
  }
  return {};
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
    // The parser's position is in a text of its own, not the body sent:
    // name the field at fault when a walk against the schema finds it.
    // Only for the message: what the parser took is never refused here.
    const nlohmann::json parsed = nlohmann::json::parse(json, nullptr, false);
    if (!parsed.is_discarded() && parsed.is_object())
      if (std::string why = misfit(schema_, type, parsed, ""); !why.empty()) error = std::move(why);
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

#pragma once
// Configuration keys, each defined once. A section of the YAML file (node,
// remote, admin, ...) or a key under kinds.<kind> is described by a
// section<S>: for each key its name, the member of S it fills, its type and
// bounds, its default (S's), whether a reload applies it, and one line for
// the reference. Parsing, the reload's comparison and the reference in
// docs/operations.md all come from that one description.
//
// Problems are config_errors with the file and line; every problem of a
// file is reported, not only the first.
#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace troupe::node {

struct config_error {
  std::string file;
  int line = 0;  // 1-based; 0 when unknown
  std::string message;
  std::string to_string() const;
};

// Whether a SIGHUP applies a key, or the running value stays until a restart.
enum class applies : unsigned char { at_restart, live };

class config;

// Reads one file's values and collects its problems.
class section_reader {
 public:
  section_reader(std::string file, std::vector<config_error>& errors)
      : file_(std::move(file)), errors_(errors) {}

  const std::string& file() const noexcept { return file_; }
  std::size_t error_count() const noexcept { return errors_.size(); }
  void error(const YAML::Node& at, const std::string& message);
  void error(int line, const std::string& message);
  static int line_of(const YAML::Node& n) { return n.Mark().line >= 0 ? n.Mark().line + 1 : 0; }

  // Reports keys of `map` that are not in `known`; false if it is no mapping.
  bool check_map(const YAML::Node& map, const std::string& where, const std::vector<std::string>& known);
  // A path relative to the configuration file's folder made absolute.
  std::string relative_to_config(const std::string& path) const;
  // True when `path` (made absolute) is a readable file; an error otherwise.
  bool readable_file(const YAML::Node& at, const std::string& what, std::string& path);

  // "host:port" ("[v6]:port"); `literal` demands an IP address.
  static bool valid_address(const std::string& a, bool literal, std::string& why);
  // Whether an "ip:port" listens on the loopback interface only.
  static bool loopback_address(const std::string& address);

 private:
  std::string file_;
  std::vector<config_error>& errors_;
};

// The readers behind the common kinds of keys (settings.cpp).
namespace read {
void text(const YAML::Node& v, section_reader& r, const std::string& what, std::string& out);
void choice(const YAML::Node& v, section_reader& r, const std::string& what,
            const std::vector<std::string>& allowed, std::string& out);
void number(const YAML::Node& v, section_reader& r, const std::string& what, long lo, long hi,
            const std::string& unit, unsigned& out);
void flag(const YAML::Node& v, section_reader& r, const std::string& what, bool& out);
// "500ms", "30s", "10m", "2h", "1d"; between lo and hi.
void duration(const YAML::Node& v, section_reader& r, const std::string& what, std::chrono::milliseconds lo,
              std::chrono::milliseconds hi, std::chrono::milliseconds& out);
std::string show(std::chrono::milliseconds d);
void address(const YAML::Node& v, section_reader& r, const std::string& what, bool literal,
             std::string& out);
void names(const YAML::Node& v, section_reader& r, const std::string& what,
           const std::string& items, const std::string& every, std::vector<std::string>& out);
std::string show(const std::string& s);
std::string show(const std::vector<std::string>& list);
std::string one_of(const std::vector<std::string>& allowed);
}  // namespace read

// A file read whole at each load and reload (a connection string, a
// password): its path is what the reference and the logs show.
struct file_text {
  std::string file;
  std::string text;  // trailing white space trimmed
  bool operator==(const file_text& o) const { return file == o.file && text == o.text; }
};
void read_file_text(const YAML::Node& v, section_reader& r, const std::string& what, file_text& out);

// One key, as the reference shows it.
struct key_doc {
  std::string key;           // "remote.heartbeat_interval_ms", "kinds.<kind>.mailbox.capacity"
  std::string type;          // "milliseconds, 10-600000"
  std::string default_text;  // "1000", "(none)"
  applies when = applies::at_restart;
  std::string doc;
};

// A section, whatever its type: what the loader and the reference use.
class section_base {
 public:
  section_base(std::string name, std::string doc) : name_(std::move(name)), doc_(std::move(doc)) {}
  virtual ~section_base() = default;
  // Built once, moved into a static: its address identifies it.
  section_base(section_base&&) = default;
  section_base(const section_base&) = delete;
  section_base& operator=(const section_base&) = delete;

  // The key it is under: "remote" (top level) or "mailbox" (kinds.<kind>.mailbox).
  const std::string& name() const noexcept { return name_; }
  const std::string& doc() const noexcept { return doc_; }

  // Its value from `node` (absent when null): the defaults, then what the
  // file sets, then the section's checks. `where` is its dotted path.
  virtual std::shared_ptr<const void> parse(const YAML::Node* node, const std::string& where,
                                            section_reader& r, const config& so_far) const = 0;
  // The restart-only keys whose value differs; `next` takes `running`'s for them.
  virtual std::vector<std::string> keep_running(const void* running, void* next,
                                                const std::string& where) const = 0;
  // Copies a value (for keep_running, which must not change the loaded one).
  virtual std::shared_ptr<void> copy(const void* value) const = 0;
  virtual bool same(const void* a, const void* b) const = 0;
  virtual std::vector<key_doc> keys(const std::string& where) const = 0;

 private:
  std::string name_;
  std::string doc_;
};

template <class S>
class section final : public section_base {
 public:
  using parse_fn = std::function<void(const YAML::Node& v, section_reader& r, const std::string& what, S& out)>;
  // Checks across keys, and what is derived from them, once the keys are read.
  using check_fn = std::function<void(S& s, const YAML::Node& node, section_reader& r, const config& so_far)>;

  section(std::string name, std::string doc) : section_base(std::move(name), std::move(doc)) {}

  // A key of any type: `read` fills the member from the YAML value.
  template <class T>
  section& key(std::string name, T S::*member, std::string type, std::string doc,
               std::function<void(const YAML::Node&, section_reader&, const std::string&, T&)> read,
               std::function<std::string(const T&)> show) {
    field f;
    f.name = std::move(name);
    f.type = std::move(type);
    f.doc = std::move(doc);
    f.parse = [member, read = std::move(read)](const YAML::Node& v, section_reader& r,
                                               const std::string& what, S& s) {
      read(v, r, what, s.*member);
    };
    f.same = [member](const S& a, const S& b) { return a.*member == b.*member; };
    f.keep = [member](const S& from, S& to) { to.*member = from.*member; };
    f.show = [member, show = std::move(show)](const S& s) { return show(s.*member); };
    fields_.push_back(std::move(f));
    return *this;
  }
  // A key that is no longer here: naming it is an error that says where it went.
  section& moved(std::string name, std::string where_now) {
    field f;
    f.name = std::move(name);
    f.hidden = true;
    f.parse = [where_now = std::move(where_now)](const YAML::Node& v, section_reader& r, const std::string& what, S&) {
      r.error(v, what + " has moved: " + where_now);
    };
    f.same = [](const S&, const S&) { return true; };
    f.keep = [](const S&, S&) {};
    f.show = [](const S&) { return std::string(); };
    fields_.push_back(std::move(f));
    return *this;
  }
  // The last key declared applies on reload.
  section& live() {
    fields_.back().when = applies::live;
    return *this;
  }
  section& check(check_fn fn) {
    checks_.push_back(std::move(fn));
    return *this;
  }
  // Where the value starts before the file's keys (S{} when not set): a
  // per-kind key may start from a node-wide one.
  section& starts_from(std::function<S(const config&)> fn) {
    start_ = std::move(fn);
    return *this;
  }

  // The common kinds of keys. A key named "" is the section's own value
  // (a section that is a list or a flag, like `seeds:` or `demo:`).
  section& text(std::string name, std::string S::*m, std::string doc);
  section& choice(std::string name, std::string S::*m, std::vector<std::string> allowed, std::string doc);
  // One of some words, stored as what each stands for (an enum).
  template <class E>
  section& pick(std::string name, E S::*m, std::vector<std::pair<std::string, E>> options, std::string doc) {
    std::vector<std::string> words;
    for (const auto& o : options) words.push_back(o.first);
    std::string type = read::one_of(words);
    return key<E>(
        std::move(name), m, std::move(type), std::move(doc),
        [options, words](const YAML::Node& v, section_reader& r, const std::string& what, E& out) {
          std::string word;
          read::choice(v, r, what, words, word);
          for (const auto& [w, e] : options)
            if (w == word) out = e;
        },
        [options](const E& e) {
          for (const auto& [w, x] : options)
            if (x == e) return w;
          return std::string();
        });
  }
  section& number(std::string name, unsigned S::*m, long lo, long hi, std::string unit, std::string doc);
  section& flag(std::string name, bool S::*m, std::string doc);
  section& duration(std::string name, std::chrono::milliseconds S::*m, std::chrono::milliseconds lo,
                    std::chrono::milliseconds hi, std::string doc);
  section& address(std::string name, std::string S::*m, bool literal, std::string doc);
  // A list of non-empty names; `every` (if set) is also taken alone, for all.
  section& names(std::string name, std::vector<std::string> S::*m, std::string what, std::string doc,
                 std::string every = {});
  // A path, made absolute from the config file's folder.
  section& path(std::string name, std::string S::*m, std::string doc);

  const S& defaults() const {
    static const S d{};
    return d;
  }

  std::shared_ptr<const void> parse(const YAML::Node* node, const std::string& where,
                                    section_reader& r, const config& so_far) const override {
    auto s = std::make_shared<S>(start_ ? start_(so_far) : S{});
    const bool whole = !fields_.empty() && fields_.front().name.empty();
    if (node != nullptr && whole) fields_.front().parse(*node, r, "'" + where + "'", *s);
    if (node != nullptr && !whole) {
      // Keys may be one level deep ("tls.cert_file"): each mapping is
      // checked for keys nobody knows, once.
      std::vector<std::string> known;
      for (const field& f : fields_) add_once(known, f.name.substr(0, f.name.find('.')));
      if (!r.check_map(*node, where, known)) return s;
      std::vector<std::string> bad;
      std::vector<std::string> checked;
      for (const field& f : fields_) {
        const std::size_t dot = f.name.find('.');
        std::string head = f.name.substr(0, dot);
        if (dot != std::string::npos) {
          const YAML::Node sub = (*node)[head];
          if (!sub) continue;
          if (add_once(checked, head)) {
            std::vector<std::string> children;
            for (const field& g : fields_)
              if (g.name.compare(0, dot + 1, head + ".") == 0) children.push_back(g.name.substr(dot + 1));
            if (!r.check_map(sub, where + "." + head, children)) bad.push_back(head);
          }
          if (std::find(bad.begin(), bad.end(), head) != bad.end()) continue;
        }
        // (A YAML::Node is bound once: assigning one to another writes
        // into the document.)
        const YAML::Node v = dot == std::string::npos ? (*node)[f.name] : (*node)[head][f.name.substr(dot + 1)];
        if (v) f.parse(v, r, "'" + where + "." + f.name + "'", *s);
      }
    }
    const YAML::Node none;
    for (const check_fn& c : checks_) c(*s, node != nullptr ? *node : none, r, so_far);
    return s;
  }

  std::vector<std::string> keep_running(const void* running, void* next,
                                        const std::string& where) const override {
    std::vector<std::string> kept;
    const S& a = *static_cast<const S*>(running);
    S& b = *static_cast<S*>(next);
    for (const field& f : fields_)
      if (f.when == applies::at_restart && !f.same(a, b)) {
        kept.push_back(f.name.empty() ? where : where + "." + f.name);
        f.keep(a, b);
      }
    return kept;
  }
  std::shared_ptr<void> copy(const void* value) const override {
    return std::make_shared<S>(*static_cast<const S*>(value));
  }
  bool same(const void* a, const void* b) const override {
    for (const field& f : fields_)
      if (!f.same(*static_cast<const S*>(a), *static_cast<const S*>(b))) return false;
    return true;
  }
  std::vector<key_doc> keys(const std::string& where) const override {
    std::vector<key_doc> out;
    for (const field& f : fields_)
      if (!f.hidden)
        out.push_back({f.name.empty() ? where : where + "." + f.name, f.type, f.show(defaults()), f.when, f.doc});
    return out;
  }

 private:
  struct field {
    std::string name, type, doc;
    applies when = applies::at_restart;
    bool hidden = false;  // moved: not in the reference
    std::function<void(const YAML::Node&, section_reader&, const std::string&, S&)> parse;
    std::function<bool(const S&, const S&)> same;
    std::function<void(const S&, S&)> keep;
    std::function<std::string(const S&)> show;
  };
  static bool add_once(std::vector<std::string>& list, const std::string& name) {
    if (std::find(list.begin(), list.end(), name) != list.end()) return false;
    list.push_back(name);
    return true;
  }
  std::vector<field> fields_;
  std::vector<check_fn> checks_;
  std::function<S(const config&)> start_;
};


template <class S>
section<S>& section<S>::text(std::string name, std::string S::*m, std::string doc) {
  return key<std::string>(std::move(name), m, "text", std::move(doc), read::text,
                          [](const std::string& s) { return read::show(s); });
}

template <class S>
section<S>& section<S>::choice(std::string name, std::string S::*m, std::vector<std::string> allowed,
                               std::string doc) {
  const std::string type = read::one_of(allowed);
  return key<std::string>(
      std::move(name), m, type, std::move(doc),
      [allowed](const YAML::Node& v, section_reader& r, const std::string& what, std::string& out) {
        read::choice(v, r, what, allowed, out);
      },
      [](const std::string& s) { return s; });
}

template <class S>
section<S>& section<S>::number(std::string name, unsigned S::*m, long lo, long hi, std::string unit,
                               std::string doc) {
  std::string type = (unit.empty() ? "number" : unit) + ", " + std::to_string(lo) + "-" + std::to_string(hi);
  return key<unsigned>(
      std::move(name), m, std::move(type), std::move(doc),
      [lo, hi, unit](const YAML::Node& v, section_reader& r, const std::string& what, unsigned& out) {
        read::number(v, r, what, lo, hi, unit, out);
      },
      [](unsigned n) { return std::to_string(n); });
}

template <class S>
section<S>& section<S>::duration(std::string name, std::chrono::milliseconds S::*m, std::chrono::milliseconds lo,
                                 std::chrono::milliseconds hi, std::string doc) {
  return key<std::chrono::milliseconds>(
      std::move(name), m, "duration, " + read::show(lo) + "-" + read::show(hi), std::move(doc),
      [lo, hi](const YAML::Node& v, section_reader& r, const std::string& what, std::chrono::milliseconds& out) {
        read::duration(v, r, what, lo, hi, out);
      },
      [](std::chrono::milliseconds d) { return read::show(d); });
}

template <class S>
section<S>& section<S>::flag(std::string name, bool S::*m, std::string doc) {
  return key<bool>(std::move(name), m, "true or false", std::move(doc), read::flag,
                   [](bool b) { return std::string(b ? "true" : "false"); });
}

template <class S>
section<S>& section<S>::address(std::string name, std::string S::*m, bool literal, std::string doc) {
  return key<std::string>(
      std::move(name), m, literal ? "IP:port" : "host:port", std::move(doc),
      [literal](const YAML::Node& v, section_reader& r, const std::string& what, std::string& out) {
        read::address(v, r, what, literal, out);
      },
      [](const std::string& s) { return read::show(s); });
}

template <class S>
section<S>& section<S>::names(std::string name, std::vector<std::string> S::*m, std::string what,
                              std::string doc, std::string every) {
  std::string type = "list of " + what + (every.empty() ? "" : ", or " + every);
  return key<std::vector<std::string>>(
      std::move(name), m, std::move(type), std::move(doc),
      [what, every](const YAML::Node& v, section_reader& r, const std::string& key,
                    std::vector<std::string>& out) { read::names(v, r, key, what, every, out); },
      [](const std::vector<std::string>& l) { return read::show(l); });
}

template <class S>
section<S>& section<S>::path(std::string name, std::string S::*m, std::string doc) {
  return key<std::string>(
      std::move(name), m, "path", std::move(doc),
      [](const YAML::Node& v, section_reader& r, const std::string& what, std::string& out) {
        read::text(v, r, what, out);
        if (YAML::Node(v).IsScalar() && out.empty()) r.error(v, what + " must not be empty");
        out = r.relative_to_config(out);
      },
      [](const std::string& s) { return read::show(s); });
}

}  // namespace troupe::node

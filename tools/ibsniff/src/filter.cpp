#include "ibsniff/filter.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <limits>
#include <span>

namespace ibsniff {
namespace {

// ---- lexer ----

enum class Tok : std::uint8_t {
  End,
  Word,    // field name, value or keyword: a run of [A-Za-z0-9_.:/+-] without ".."
  String,  // "…", quotes included in the text
  LParen,
  RParen,
  LBrace,
  RBrace,
  Comma,
  DotDot,
  AndAnd,
  OrOr,
  Bang,
  Eq,     // ==
  Ne,     // !=
  AllEq,  // ===
  AnyNe,  // !== or ~=
  Gt,
  Ge,
  Lt,
  Le,
  Bad,  // a character that starts no token (or an unterminated string)
};

struct Token {
  Tok kind = Tok::End;
  std::size_t pos = 0;    // offset of the first character
  std::string_view text;  // as written
};

bool word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == ':' || c == '-' || c == '/' || c == '+';
}

bool blank(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

Token lex(std::string_view s, std::size_t i) {
  while (i < s.size() && blank(s[i])) ++i;
  if (i >= s.size()) return {Tok::End, s.size(), {}};
  const auto tok = [&](Tok k, std::size_t n) { return Token{k, i, s.substr(i, n)}; };
  const auto at = [&](std::size_t k) { return i + k < s.size() ? s[i + k] : '\0'; };
  switch (s[i]) {
    case '(':
      return tok(Tok::LParen, 1);
    case ')':
      return tok(Tok::RParen, 1);
    case '{':
      return tok(Tok::LBrace, 1);
    case '}':
      return tok(Tok::RBrace, 1);
    case ',':
      return tok(Tok::Comma, 1);
    case '&':
      return at(1) == '&' ? tok(Tok::AndAnd, 2) : tok(Tok::Bad, 1);
    case '|':
      return at(1) == '|' ? tok(Tok::OrOr, 2) : tok(Tok::Bad, 1);
    case '!':
      if (at(1) != '=') return tok(Tok::Bang, 1);
      return at(2) == '=' ? tok(Tok::AnyNe, 3) : tok(Tok::Ne, 2);
    case '=':
      if (at(1) != '=') return tok(Tok::Bad, 1);
      return at(2) == '=' ? tok(Tok::AllEq, 3) : tok(Tok::Eq, 2);
    case '~':
      return at(1) == '=' ? tok(Tok::AnyNe, 2) : tok(Tok::Bad, 1);
    case '>':
      return at(1) == '=' ? tok(Tok::Ge, 2) : tok(Tok::Gt, 1);
    case '<':
      return at(1) == '=' ? tok(Tok::Le, 2) : tok(Tok::Lt, 1);
    case '"': {
      for (std::size_t k = i + 1; k < s.size(); ++k) {
        if (s[k] == '\\')
          ++k;
        else if (s[k] == '"')
          return tok(Tok::String, k + 1 - i);
      }
      return tok(Tok::Bad, s.size() - i);  // unterminated
    }
    default:
      break;
  }
  if (s[i] == '.' && at(1) == '.') return tok(Tok::DotDot, 2);
  if (!word_char(s[i])) return tok(Tok::Bad, 1);
  std::size_t n = 0;
  while (i + n < s.size() && word_char(s[i + n]) && !(s[i + n] == '.' && at(n + 1) == '.')) ++n;
  return tok(Tok::Word, n);
}

bool is_keyword(std::string_view w) {
  static constexpr std::array<std::string_view, 16> kKeywords = {
      "and", "or", "not", "in", "contains", "matches", "eq",     "ne",
      "gt",  "ge", "lt",  "le", "any_eq",   "all_eq",  "any_ne", "all_ne"};
  return std::find(kKeywords.begin(), kKeywords.end(), w) != kKeywords.end();
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (x != b[i]) return false;
  }
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// ---- value parsers (false: not a value of the type) ----

enum class IntParse : std::uint8_t { Ok, Bad, Octal, Range };

IntParse parse_uint(std::string_view w, std::uint64_t max, std::uint64_t* out) {
  if (!w.empty() && w[0] == '+') w.remove_prefix(1);
  unsigned base = 10;
  if (w.size() > 2 && w[0] == '0' && (w[1] == 'x' || w[1] == 'X')) {
    base = 16;
    w.remove_prefix(2);
  } else if (w.size() > 2 && w[0] == '0' && (w[1] == 'b' || w[1] == 'B')) {
    base = 2;
    w.remove_prefix(2);
  } else if (w.size() > 1 && w[0] == '0' && all_digits(w)) {
    return IntParse::Octal;
  }
  if (w.empty()) return IntParse::Bad;
  std::uint64_t v = 0;
  bool range = false;
  for (const char c : w) {
    const int d = hex_value(c);
    if (d < 0 || static_cast<unsigned>(d) >= base) return IntParse::Bad;
    const auto ud = static_cast<std::uint64_t>(d);
    if (v > (max - ud) / base) range = true;
    if (!range) v = v * base + ud;
  }
  if (range) return IntParse::Range;
  *out = v;
  return IntParse::Ok;
}

// "/bits" after an address: at most `max`.
bool parse_prefix(std::string_view w, unsigned max, std::uint8_t* bits) {
  if (!all_digits(w) || w.size() > 3 || (w.size() > 1 && w[0] == '0')) return false;
  unsigned v = 0;
  for (const char c : w) v = v * 10 + static_cast<unsigned>(c - '0');
  if (v > max) return false;
  *bits = static_cast<std::uint8_t>(v);
  return true;
}

// Splits "addr/bits"; `bits` = max without a suffix.
bool split_cidr(std::string_view w, unsigned max, std::string_view* addr, std::uint8_t* bits) {
  const auto slash = w.find('/');
  *addr = w.substr(0, slash);
  if (slash == std::string_view::npos) {
    *bits = static_cast<std::uint8_t>(max);
    return true;
  }
  return parse_prefix(w.substr(slash + 1), max, bits);
}

bool parse_ipv4(std::string_view w, std::uint32_t* addr) {
  std::uint32_t v = 0;
  for (int part = 0; part < 4; ++part) {
    const auto dot = w.find('.');
    const std::string_view octet = part < 3 ? w.substr(0, dot) : w;
    if (part < 3 && dot == std::string_view::npos) return false;
    if (!all_digits(octet) || octet.size() > 3 || (octet.size() > 1 && octet[0] == '0'))
      return false;
    unsigned o = 0;
    for (const char c : octet) o = o * 10 + static_cast<unsigned>(c - '0');
    if (o > 255) return false;
    v = (v << 8) | o;
    if (part < 3) w.remove_prefix(dot + 1);
  }
  *addr = v;
  return true;
}

bool parse_ipv6(std::string_view w, std::array<std::uint8_t, 16>* addr) {
  std::array<char, INET6_ADDRSTRLEN> buf{};
  if (w.empty() || w.size() >= buf.size()) return false;
  std::copy(w.begin(), w.end(), buf.begin());
  return inet_pton(AF_INET6, buf.data(), addr->data()) == 1;
}

// aa:bb:cc, aa-bb-cc, aa.bb.cc (one separator throughout, groups of 1-2 hex digits) or aabbcc.
bool parse_hex_bytes(std::string_view w, std::vector<std::uint8_t>& out) {
  const auto first_sep = w.find_first_of(":-.");
  if (first_sep == std::string_view::npos) {
    if (w.empty() || w.size() % 2 != 0) return false;
    for (std::size_t i = 0; i < w.size(); i += 2) {
      const int hi = hex_value(w[i]), lo = hex_value(w[i + 1]);
      if (hi < 0 || lo < 0) return false;
      out.push_back(static_cast<std::uint8_t>(hi * 16 + lo));
    }
    return true;
  }
  const char sep = w[first_sep];
  for (;;) {
    const auto end = w.find(sep);
    const std::string_view group = w.substr(0, end);
    if (group.empty() || group.size() > 2) return false;
    int v = 0;
    for (const char c : group) {
      const int d = hex_value(c);
      if (d < 0) return false;
      v = v * 16 + d;
    }
    out.push_back(static_cast<std::uint8_t>(v));
    if (end == std::string_view::npos) return true;
    w.remove_prefix(end + 1);
  }
}

// Decimal seconds, optional sign, at most 9 decimals.
bool parse_seconds(std::string_view w, std::int64_t* sec, std::uint32_t* nsec) {
  bool negative = false;
  if (!w.empty() && (w[0] == '+' || w[0] == '-')) {
    negative = w[0] == '-';
    w.remove_prefix(1);
  }
  const auto dot = w.find('.');
  const std::string_view whole = w.substr(0, dot);
  const std::string_view frac = dot == std::string_view::npos ? "" : w.substr(dot + 1);
  if (!all_digits(whole) || whole.size() > 18) return false;
  if (dot != std::string_view::npos && (!all_digits(frac) || frac.size() > 9)) return false;
  std::int64_t s = 0;
  for (const char c : whole) s = s * 10 + (c - '0');
  std::uint32_t ns = 0;
  for (std::size_t i = 0; i < 9; ++i)
    ns = ns * 10 + (i < frac.size() ? static_cast<std::uint32_t>(frac[i] - '0') : 0U);
  if (negative && ns != 0) {
    s = -s - 1;
    ns = 1000000000U - ns;
  } else if (negative) {
    s = -s;
  }
  *sec = s;
  *nsec = ns;
  return true;
}

// The body of a "…" token with C escapes; false (and *bad set) on an invalid escape.
bool unescape(std::string_view quoted, std::vector<std::uint8_t>& out, std::size_t* bad) {
  const std::string_view s = quoted.substr(1, quoted.size() - 2);
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out.push_back(static_cast<std::uint8_t>(s[i]));
      continue;
    }
    const std::size_t at = i;
    if (++i >= s.size()) {
      *bad = at;
      return false;
    }
    const char c = s[i];
    switch (c) {
      case 'a':
        out.push_back('\a');
        continue;
      case 'b':
        out.push_back('\b');
        continue;
      case 'f':
        out.push_back('\f');
        continue;
      case 'n':
        out.push_back('\n');
        continue;
      case 'r':
        out.push_back('\r');
        continue;
      case 't':
        out.push_back('\t');
        continue;
      case 'v':
        out.push_back('\v');
        continue;
      case '\\':
      case '"':
      case '\'':
        out.push_back(static_cast<std::uint8_t>(c));
        continue;
      default:
        break;
    }
    unsigned v = 0;
    if (c == 'x') {
      std::size_t n = 0;
      while (n < 2 && i + 1 < s.size() && hex_value(s[i + 1]) >= 0) {
        v = v * 16 + static_cast<unsigned>(hex_value(s[++i]));
        ++n;
      }
      if (n == 0) {
        *bad = at;
        return false;
      }
    } else if (c >= '0' && c <= '7') {
      v = static_cast<unsigned>(c - '0');
      for (std::size_t n = 1; n < 3 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7'; ++n)
        v = v * 8 + static_cast<unsigned>(s[++i] - '0');
      if (v > 255) {
        *bad = at;
        return false;
      }
    } else {
      *bad = at;
      return false;
    }
    out.push_back(static_cast<std::uint8_t>(v));
  }
  return true;
}

std::uint64_t type_max(Ft t) {
  switch (t) {
    case Ft::U8:
      return 0xff;
    case Ft::U16:
      return 0xffff;
    case Ft::U24:
      return 0xffffff;
    case Ft::U32:
      return 0xffffffff;
    default:
      return std::numeric_limits<std::uint64_t>::max();
  }
}

// What a value of the type looks like, for messages.
std::string type_expectation(Ft t) {
  switch (t) {
    case Ft::U8:
    case Ft::U16:
    case Ft::U24:
    case Ft::U32:
    case Ft::U64:
      return fmt::format("an unsigned {}-bit integer (0..{}; decimal, 0x hex or 0b binary)",
                         std::bit_width(type_max(t)), type_max(t));
    case Ft::Bool:
      return "a boolean (true, false or an integer)";
    case Ft::Ipv4:
      return "an IPv4 address (a.b.c.d or a.b.c.d/bits)";
    case Ft::Ipv6:
      return "an IPv6 address (optionally /bits)";
    case Ft::Bytes:
      return "bytes (aa:bb:cc, aa-bb-cc, aa.bb.cc, aabbcc or a \"string\")";
    case Ft::Time:
    case Ft::RelTime:
      return "a time in decimal seconds (at most 9 decimals)";
    case Ft::None:
      break;
  }
  return "nothing (the field has no value)";
}

const char* type_name(Ft t) {
  switch (t) {
    case Ft::U8:
    case Ft::U16:
    case Ft::U24:
    case Ft::U32:
    case Ft::U64:
      return "an unsigned integer";
    case Ft::Bool:
      return "a boolean";
    case Ft::Ipv4:
      return "an IPv4 address";
    case Ft::Ipv6:
      return "an IPv6 address";
    case Ft::Bytes:
      return "bytes";
    case Ft::Time:
    case Ft::RelTime:
      return "a time";
    case Ft::None:
      break;
  }
  return "a field without a value";
}

}  // namespace

// ---- parser ----

class FilterParser {
 public:
  struct Error {
    std::string message;
  };

  FilterParser(std::string_view src, Filter& f) : src_(src), f_(f) { advance(); }

  void parse() {
    if (cur_.kind == Tok::End) throw Error{"empty filter expression"};
    f_.root_ = parse_or(0);
    if (cur_.kind != Tok::End) unexpected();
  }

 private:
  using Kind = Filter::Kind;
  using Rel = Filter::Rel;
  using Node = Filter::Node;
  using Value = Filter::Value;

  // Nesting of parentheses and negations (the evaluator recurses on them).
  static constexpr int kMaxDepth = 200;

  std::string_view src_;
  Filter& f_;
  Token cur_;
  std::size_t next_ = 0;  // where the token after cur_ starts

  void advance() {
    cur_ = lex(src_, next_);
    next_ = cur_.pos + cur_.text.size();
  }
  std::size_t column(const Token& t) const { return t.pos + 1; }
  bool is_word(std::string_view w) const { return cur_.kind == Tok::Word && cur_.text == w; }

  std::string describe(const Token& t) const {
    return t.kind == Tok::End ? std::string("end of expression") : fmt::format("'{}'", t.text);
  }

  [[noreturn]] void fail(std::string message) const { throw Error{std::move(message)}; }

  // A token that starts nothing.
  [[noreturn]] void bad_token() const {
    const std::size_t col = column(cur_);
    if (cur_.text.front() == '"') fail(fmt::format("unterminated string at column {}", col));
    const char c = cur_.text.front();
    const char* hint = c == '='   ? " (did you mean '=='?)"
                       : c == '&' ? " (bitwise and is not supported; '&&' is logical and)"
                       : c == '|' ? " (did you mean '||'?)"
                       : c == '~' ? " (regular expressions are not supported)"
                       : c == '[' ? " (field slices are not supported)"
                                  : "";
    fail(fmt::format("unexpected '{}' at column {}{}", cur_.text, col, hint));
  }

  [[noreturn]] void expected(std::string_view what) const {
    if (cur_.kind == Tok::Bad) bad_token();
    fail(fmt::format("expected {} at column {}, found {}", what, column(cur_), describe(cur_)));
  }

  [[noreturn]] void unexpected() const {
    if (cur_.kind == Tok::Bad) bad_token();
    fail(fmt::format("unexpected {} at column {}", describe(cur_), column(cur_)));
  }

  // A protocol name: presence of any of its fields.
  std::uint32_t parse_protocol() {
    const Token name = cur_;
    const std::string prefix = std::string(name.text) + ".";
    Node n;
    n.kind = Kind::Protocol;
    n.a = static_cast<std::uint32_t>(f_.bytes_.size());
    bool any = false;
    for (const FieldDef& d : field_table()) {
      const bool in =
          d.name.size() > prefix.size() && d.name.compare(0, prefix.size(), prefix) == 0;
      f_.bytes_.push_back(in ? 1 : 0);
      any = any || in;
    }
    if (!any) fail(fmt::format("unknown field '{}' at column {}", name.text, column(name)));
    advance();
    Rel rel{};
    if (relation(&rel))
      fail(fmt::format("{} at column {} is a protocol: it can only be tested for presence",
                       name.text, column(name)));
    return add(n);
  }

  std::uint32_t add(const Node& n) {
    f_.nodes_.push_back(n);
    return static_cast<std::uint32_t>(f_.nodes_.size() - 1);
  }

  // a || b || c as a right-leaning chain, which the evaluator walks in a loop.
  std::uint32_t chain(Kind kind, const std::vector<std::uint32_t>& operands) {
    std::uint32_t n = operands.back();
    for (std::size_t i = operands.size() - 1; i-- > 0;) {
      Node node;
      node.kind = kind;
      node.a = operands[i];
      node.b = n;
      n = add(node);
    }
    return n;
  }

  std::uint32_t parse_or(int depth) {
    std::vector<std::uint32_t> operands{parse_and(depth)};
    while (cur_.kind == Tok::OrOr || is_word("or")) {
      advance();
      operands.push_back(parse_and(depth));
    }
    return chain(Kind::Or, operands);
  }

  std::uint32_t parse_and(int depth) {
    std::vector<std::uint32_t> operands{parse_not(depth)};
    while (cur_.kind == Tok::AndAnd || is_word("and")) {
      advance();
      operands.push_back(parse_not(depth));
    }
    return chain(Kind::And, operands);
  }

  std::uint32_t parse_not(int depth) {
    if (depth >= kMaxDepth)
      fail(fmt::format("expression nested too deeply at column {}", column(cur_)));
    if (cur_.kind == Tok::Bang || is_word("not")) {
      advance();
      Node n;
      n.kind = Kind::Not;
      n.a = parse_not(depth + 1);
      return add(n);
    }
    return parse_primary(depth);
  }

  std::uint32_t parse_primary(int depth) {
    if (cur_.kind == Tok::LParen) {
      const Token open = cur_;
      advance();
      const std::uint32_t n = parse_or(depth + 1);
      if (cur_.kind != Tok::RParen) {
        if (cur_.kind == Tok::Bad) bad_token();
        fail(fmt::format("missing ')' for the '(' at column {}: found {} at column {}",
                         column(open), describe(cur_), column(cur_)));
      }
      advance();
      return n;
    }
    if (cur_.kind != Tok::Word || is_keyword(cur_.text)) expected("a field name, '(' or '!'");
    const auto id = field_by_name(cur_.text);
    if (!id) return parse_protocol();
    const Token field = cur_;
    advance();
    Node n;
    n.field = *id;
    n.type = field_def(*id).type;
    const Token op = cur_;
    if (is_word("in") || is_word("not")) return parse_set(n, field);
    if (!relation(&n.rel)) {
      n.kind = Kind::Present;
      return add(n);
    }
    if (n.type == Ft::None)
      fail(fmt::format("{} at column {} has no value to compare; test its presence alone",
                       field.text, column(field)));
    if (n.rel == Rel::Contains && n.type != Ft::Bytes)
      fail(fmt::format("'contains' at column {} needs a bytes field; {} is {}", column(op),
                       field.text, type_name(n.type)));
    advance();
    if (cur_.kind != Tok::Word && cur_.kind != Tok::String)
      expected(fmt::format("a value after '{}'", op.text));
    n.kind = Kind::Compare;
    n.a = static_cast<std::uint32_t>(f_.values_.size());
    f_.values_.push_back(parse_value(n, field));
    return add(n);
  }

  // The relation at cur_ (not consumed); false when cur_ is none.
  bool relation(Rel* rel) const {
    switch (cur_.kind) {
      case Tok::Eq:
        *rel = Rel::Eq;
        return true;
      case Tok::Ne:
        *rel = Rel::AllNe;
        return true;
      case Tok::AllEq:
        *rel = Rel::AllEq;
        return true;
      case Tok::AnyNe:
        *rel = Rel::AnyNe;
        return true;
      case Tok::Gt:
        *rel = Rel::Gt;
        return true;
      case Tok::Ge:
        *rel = Rel::Ge;
        return true;
      case Tok::Lt:
        *rel = Rel::Lt;
        return true;
      case Tok::Le:
        *rel = Rel::Le;
        return true;
      case Tok::Word:
        break;
      default:
        return false;
    }
    struct Named {
      std::string_view word;
      Rel rel;
    };
    static constexpr std::array<Named, 11> kNamed = {{{"eq", Rel::Eq},
                                                      {"any_eq", Rel::Eq},
                                                      {"ne", Rel::AllNe},
                                                      {"all_ne", Rel::AllNe},
                                                      {"any_ne", Rel::AnyNe},
                                                      {"all_eq", Rel::AllEq},
                                                      {"gt", Rel::Gt},
                                                      {"ge", Rel::Ge},
                                                      {"lt", Rel::Lt},
                                                      {"le", Rel::Le},
                                                      {"contains", Rel::Contains}}};
    for (const auto& nr : kNamed)
      if (cur_.text == nr.word) {
        *rel = nr.rel;
        return true;
      }
    if (cur_.text == "matches")
      fail(fmt::format("'matches' at column {}: regular expressions are not supported",
                       column(cur_)));
    return false;
  }

  // FIELD ['not'] 'in' '{' elem (',' elem)* '}' with cur_ at 'not' or 'in'.
  std::uint32_t parse_set(Node n, const Token& field) {
    const bool negated = is_word("not");
    if (negated) {
      advance();
      if (!is_word("in")) expected("'in' after 'not'");
    }
    if (n.type == Ft::None)
      fail(fmt::format("{} at column {} has no value to compare; test its presence alone",
                       field.text, column(field)));
    advance();
    if (cur_.kind != Tok::LBrace) expected("'{' after 'in'");
    advance();
    n.kind = Kind::In;
    n.rel = Rel::Eq;
    n.a = static_cast<std::uint32_t>(f_.values_.size());
    for (;;) {
      if (cur_.kind != Tok::Word && cur_.kind != Tok::String) expected("a value in the set");
      const Value low = parse_value(n, field);
      Value high = low;
      if (cur_.kind == Tok::DotDot) {
        advance();
        if (cur_.kind != Tok::Word && cur_.kind != Tok::String) expected("a value after '..'");
        high = parse_value(n, field);
      }
      f_.values_.push_back(low);
      f_.values_.push_back(high);
      if (cur_.kind == Tok::RBrace) break;
      if (cur_.kind == Tok::Comma) {
        advance();
        continue;
      }
      if (cur_.kind == Tok::Word || cur_.kind == Tok::String)
        expected("',' or '}' (set elements are separated by commas)");
      expected("',' or '}'");
    }
    advance();
    n.b = static_cast<std::uint32_t>(f_.values_.size());
    const std::uint32_t in = add(n);
    if (!negated) return in;
    Node neg;
    neg.kind = Kind::Not;
    neg.a = in;
    return add(neg);
  }

  [[noreturn]] void invalid(const Token& t, const Token& field, std::string_view why) const {
    fail(fmt::format("invalid value {} for {} at column {}: {}", describe(t), field.text, column(t),
                     why));
  }

  [[noreturn]] void not_a_value(const Token& t, const Token& field, Ft type) const {
    if (t.kind == Tok::Word && field_by_name(t.text))
      fail(fmt::format("comparing with another field ('{}' at column {}) is not supported", t.text,
                       column(t)));
    invalid(t, field, fmt::format("expected {}", type_expectation(type)));
  }

  // The value at cur_ (a Word or String) for the field of `n`; consumes it.
  Value parse_value(const Node& n, const Token& field) {
    const Token t = cur_;
    advance();
    Value v;
    auto& pool = f_.bytes_;
    if (t.kind == Tok::String) {
      if (n.type != Ft::Bytes)
        invalid(t, field,
                fmt::format("a string is a value for a bytes field only; {} is {}", field.text,
                            type_name(n.type)));
      v.off = static_cast<std::uint32_t>(pool.size());
      std::size_t bad = 0;
      if (!unescape(t.text, pool, &bad))
        invalid(t, field, fmt::format("bad escape sequence at column {}", column(t) + 1 + bad));
      v.len = static_cast<std::uint32_t>(pool.size() - v.off);
      return v;
    }
    const std::string_view w = t.text;
    switch (n.type) {
      case Ft::U8:
      case Ft::U16:
      case Ft::U24:
      case Ft::U32:
      case Ft::U64:
        switch (parse_uint(w, type_max(n.type), &v.u)) {
          case IntParse::Ok:
            return v;
          case IntParse::Octal:
            invalid(t, field, "a leading 0 means octal to tshark, and octal is not supported");
          case IntParse::Range:
            invalid(t, field, fmt::format("out of range (0..{})", type_max(n.type)));
          case IntParse::Bad:
            break;
        }
        break;
      case Ft::Bool: {
        if (iequals(w, "true") || iequals(w, "false")) {
          v.u = iequals(w, "true") ? 1 : 0;
          return v;
        }
        const IntParse r = parse_uint(w, std::numeric_limits<std::uint64_t>::max(), &v.u);
        if (r == IntParse::Octal)
          invalid(t, field, "a leading 0 means octal to tshark, and octal is not supported");
        if (r == IntParse::Ok) {
          v.u = v.u != 0 ? 1 : 0;
          return v;
        }
        break;
      }
      case Ft::Ipv4: {
        std::string_view addr;
        std::uint32_t a = 0;
        if (split_cidr(w, 32, &addr, &v.prefix) && parse_ipv4(addr, &a)) {
          v.u = a;
          return v;
        }
        break;
      }
      case Ft::Ipv6: {
        std::string_view addr;
        std::array<std::uint8_t, 16> a{};
        if (split_cidr(w, 128, &addr, &v.prefix) && parse_ipv6(addr, &a)) {
          v.off = static_cast<std::uint32_t>(pool.size());
          v.len = 16;
          pool.insert(pool.end(), a.begin(), a.end());
          return v;
        }
        break;
      }
      case Ft::Bytes: {
        const std::size_t start = pool.size();
        if (parse_hex_bytes(w, pool)) {
          v.off = static_cast<std::uint32_t>(start);
          v.len = static_cast<std::uint32_t>(pool.size() - start);
          return v;
        }
        pool.resize(start);
        break;
      }
      case Ft::Time:
      case Ft::RelTime:
        if (parse_seconds(w, &v.sec, &v.nsec)) return v;
        break;
      case Ft::None:
        break;
    }
    not_a_value(t, field, n.type);
  }
};

std::optional<Filter> Filter::compile(std::string_view expr, std::string* error) {
  Filter f;
  try {
    FilterParser(expr, f).parse();
  } catch (const FilterParser::Error& e) {
    if (error != nullptr) *error = e.message;
    return std::nullopt;
  }
  return f;
}

// ---- evaluation ----

namespace {

std::span<const std::uint8_t> field_bytes(const Packet& p, const Field& f) {
  if (f.off >= p.data.size()) return {};
  return p.data.subspan(f.off, std::min<std::size_t>(f.len, p.data.size() - f.off));
}

template <typename T>
int three_way(const T& a, const T& b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

// The first `bits` bits of two 16-byte addresses.
int compare_prefix(const std::uint8_t* a, const std::uint8_t* b, unsigned bits) {
  const unsigned whole = bits / 8;
  for (unsigned i = 0; i < whole; ++i)
    if (a[i] != b[i]) return three_way(a[i], b[i]);
  if (bits % 8 != 0) {
    const auto mask = static_cast<std::uint8_t>(0xff << (8 - bits % 8));
    return three_way(static_cast<std::uint8_t>(a[whole] & mask),
                     static_cast<std::uint8_t>(b[whole] & mask));
  }
  return 0;
}

}  // namespace

bool Filter::order(const Packet& p, const Field& f, Ft type, const Value& v, const TimeRef& ref,
                   int* out) const {
  switch (type) {
    case Ft::U8:
    case Ft::U16:
    case Ft::U24:
    case Ft::U32:
    case Ft::U64:
      *out = three_way(f.value, v.u);
      return true;
    case Ft::Bool:
      *out = three_way<std::uint64_t>(f.value != 0 ? 1 : 0, v.u);
      return true;
    case Ft::Ipv4: {
      if (f.off + std::size_t{4} > p.data.size()) return false;
      const std::uint8_t* d = p.data.data() + f.off;
      const std::uint32_t a = (std::uint32_t{d[0]} << 24) | (std::uint32_t{d[1]} << 16) |
                              (std::uint32_t{d[2]} << 8) | d[3];
      const std::uint32_t mask = v.prefix == 0 ? 0 : 0xffffffffU << (32 - v.prefix);
      *out = three_way(a & mask, static_cast<std::uint32_t>(v.u) & mask);
      return true;
    }
    case Ft::Ipv6:
      if (f.off + std::size_t{16} > p.data.size()) return false;
      *out = compare_prefix(p.data.data() + f.off, bytes_.data() + v.off, v.prefix);
      return true;
    case Ft::Bytes: {
      // tshark's order for bytes: the shorter first, then byte by byte.
      const auto a = field_bytes(p, f);
      if (a.size() != v.len) {
        *out = three_way<std::size_t>(a.size(), v.len);
        return true;
      }
      const int c = v.len == 0 ? 0 : std::memcmp(a.data(), bytes_.data() + v.off, v.len);
      *out = three_way(c, 0);
      return true;
    }
    case Ft::Time:
      *out = three_way(std::pair{p.ts_sec, p.ts_nsec}, std::pair{v.sec, v.nsec});
      return true;
    case Ft::RelTime: {
      std::int64_t sec = 0, nsec = 0;
      if (ref.set) {
        sec = p.ts_sec - ref.sec;
        nsec = static_cast<std::int64_t>(p.ts_nsec) - static_cast<std::int64_t>(ref.nsec);
        if (nsec < 0) {
          nsec += 1000000000;
          sec -= 1;
        }
      }
      *out = three_way(std::pair{sec, nsec}, std::pair{v.sec, static_cast<std::int64_t>(v.nsec)});
      return true;
    }
    case Ft::None:
      break;
  }
  return false;
}

bool Filter::test(const Node& n, const Packet& p, const Field& f, const TimeRef& ref) const {
  int c = 0;
  if (n.kind == Kind::In) {
    for (std::uint32_t k = n.a; k + 1 < n.b; k += 2) {
      if (!order(p, f, n.type, values_[k], ref, &c) || c < 0) continue;
      if (order(p, f, n.type, values_[k + 1], ref, &c) && c <= 0) return true;
    }
    return false;
  }
  const Value& v = values_[n.a];
  if (n.rel == Rel::Contains) {
    const auto hay = field_bytes(p, f);
    const auto* needle = bytes_.data() + v.off;
    return std::search(hay.begin(), hay.end(), needle, needle + v.len) != hay.end() || v.len == 0;
  }
  if (!order(p, f, n.type, v, ref, &c)) return false;
  switch (n.rel) {
    case Rel::Eq:
    case Rel::AllEq:
      return c == 0;
    case Rel::AnyNe:
    case Rel::AllNe:
      return c != 0;
    case Rel::Gt:
      return c > 0;
    case Rel::Ge:
      return c >= 0;
    case Rel::Lt:
      return c < 0;
    case Rel::Le:
      return c <= 0;
    case Rel::Contains:
      break;
  }
  return false;
}

bool Filter::eval(std::uint32_t node, const Packet& p, const TimeRef& ref) const {
  for (;;) {
    const Node& n = nodes_[node];
    switch (n.kind) {
      case Kind::And:
        if (!eval(n.a, p, ref)) return false;
        node = n.b;
        continue;
      case Kind::Or:
        if (eval(n.a, p, ref)) return true;
        node = n.b;
        continue;
      case Kind::Not:
        return !eval(n.a, p, ref);
      case Kind::Present:
        return p.find(n.field) != nullptr;
      case Kind::Protocol:
        for (const Field& f : p.fields)
          if (bytes_[n.a + static_cast<std::size_t>(f.id)] != 0) return true;
        return false;
      case Kind::Compare:
      case Kind::In: {
        // all_ne / all_eq: present and every occurrence satisfies; the others: any occurrence.
        const bool every = n.kind == Kind::Compare && (n.rel == Rel::AllNe || n.rel == Rel::AllEq);
        bool seen = false;
        for (const Field& f : p.fields) {
          if (f.id != n.field) continue;
          seen = true;
          const bool ok = test(n, p, f, ref);
          if (every && !ok) return false;
          if (!every && ok) return true;
        }
        return every && seen;
      }
    }
    return false;
  }
}

void Filter::add_fields_to(FieldSet& set) const {
  for (const Node& n : nodes_) {
    switch (n.kind) {
      case Kind::Present:
      case Kind::Compare:
      case Kind::In:
        set.add(n.field);
        break;
      case Kind::Protocol:
        for (std::size_t i = 0; i < static_cast<std::size_t>(FieldId::count_); ++i)
          if (bytes_[n.a + i] != 0) set.add(static_cast<FieldId>(i));
        break;
      case Kind::And:
      case Kind::Or:
      case Kind::Not:
        break;
    }
  }
}

bool Filter::matches(const Packet& p, const TimeRef& ref) const {
  return eval(root_, p, ref);
}

}  // namespace ibsniff

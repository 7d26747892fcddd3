#include "ibsniff/render.hpp"

#include "sdp/wire.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cstring>

#include "ibsniff/decoder.hpp"

namespace ibsniff {
namespace {

int hex_digits(Ft t) {
  switch (t) {
    case Ft::U8:
      return 2;
    case Ft::U16:
      return 4;
    case Ft::U24:
      return 6;
    case Ft::U32:
      return 8;
    default:
      return 16;
  }
}

void append_ipv6(const std::uint8_t* b, std::string& out) {
  std::array<char, INET6_ADDRSTRLEN> buf{};
  if (inet_ntop(AF_INET6, b, buf.data(), buf.size()) != nullptr) out += buf.data();
}

constexpr char kHexDigits[] = "0123456789abcdef";

// The fixed-size renderings below write into a caller's buffer of kFixedMax chars and return the
// end; the caller appends the result in one go.
constexpr std::size_t kFixedMax = 48;

// "00" "01" .. "99": two decimal digits at a time.
constexpr std::array<char, 200> kDigitPairs = [] {
  std::array<char, 200> t{};
  for (std::size_t i = 0; i < 100; ++i) {
    t[2 * i] = static_cast<char>('0' + i / 10);
    t[2 * i + 1] = static_cast<char>('0' + i % 10);
  }
  return t;
}();

// Writes the `n` lowest decimal digits of `v` (zero-padded) ending at `end`.
template <class U>
inline void put_digits(U v, int n, char* end) {
  for (; n >= 2; n -= 2) {
    const auto r = static_cast<std::size_t>(v % 100);
    v = static_cast<U>(v / 100);
    end -= 2;
    end[0] = kDigitPairs[2 * r];
    end[1] = kDigitPairs[2 * r + 1];
  }
  if (n == 1) end[-1] = static_cast<char>('0' + v % 10);
}

constexpr std::array<std::uint64_t, 20> kPow10 = [] {
  std::array<std::uint64_t, 20> t{};
  t[0] = 1;
  for (std::size_t i = 1; i < t.size(); ++i) t[i] = t[i - 1] * 10;
  return t;
}();

// The number of decimal digits of `v`: log10 from its bit length (1233 / 4096 ~ log10(2)), then
// one comparison.
inline int dec_digits(std::uint64_t v) {
  const int t = ((64 - std::countl_zero(v | 1)) * 1233) >> 12;
  return t + 1 - (v < kPow10[static_cast<std::size_t>(t)] ? 1 : 0);
}

inline char* put_dec(std::uint64_t v, char* o) {
  if (v < 10) {  // bits, flags, small counters
    *o = static_cast<char>('0' + v);
    return o + 1;
  }
  const int n = dec_digits(v);
  if (v <= UINT32_MAX)  // 32-bit division is the cheaper
    put_digits(static_cast<std::uint32_t>(v), n, o + n);
  else
    put_digits(v, n, o + n);
  return o + n;
}

// "0" .. "255", each in 4 bytes: up to 3 digits, then the count (IPv4 address bytes).
constexpr std::array<char, 1024> kByteDec = [] {
  std::array<char, 1024> t{};
  for (std::size_t b = 0; b < 256; ++b) {
    const std::size_t n = b >= 100 ? 3 : b >= 10 ? 2 : 1;
    std::size_t v = b;
    for (std::size_t i = n; i-- > 0; v /= 10) t[4 * b + i] = static_cast<char>('0' + v % 10);
    t[4 * b + 3] = static_cast<char>(n);
  }
  return t;
}();

inline char* put_byte_dec(std::uint8_t b, char* o) {
  std::memcpy(o, kByteDec.data() + 4 * std::size_t{b}, 4);  // one store; the 4th byte is rewritten
  return o + kByteDec[4 * std::size_t{b} + 3];
}

// "0x" and `v` in lower-case hex, at least `digits` digits (zero-padded).
char* put_hex(std::uint64_t v, int digits, char* o) {
  const int need = v == 0 ? 1 : (64 - std::countl_zero(v) + 3) / 4;
  const int n = std::max(need, digits);
  *o++ = '0';
  *o++ = 'x';
  for (int i = n - 1; i >= 0; --i) {
    o[i] = kHexDigits[v & 0xfU];
    v >>= 4;
  }
  return o + n;
}

char* put_time(std::int64_t sec, std::int64_t nsec, char* o) {
  if (nsec < 0) {
    nsec += 1000000000;
    sec -= 1;
  }
  if (sec < 0 && nsec != 0) {  // negative relative times (out-of-order captures)
    *o++ = '-';
    sec = -sec - 1;
    nsec = 1000000000 - nsec;
  }
  o = sec < 0 ? std::to_chars(o, o + 20, sec).ptr : put_dec(static_cast<std::uint64_t>(sec), o);
  *o++ = '.';
  put_digits(static_cast<std::uint64_t>(nsec), 9, o + 9);
  return o + 9;
}

// The rendering of a field of any type but Bytes and Ipv6 (nothing when its bytes lie outside the
// frame).
[[gnu::always_inline]] inline char* put_fixed(const Packet& p, const Field& f, const FieldDef& def,
                                              const TimeRef& ref, char* o) {
  switch (def.type) {
    case Ft::U8:
    case Ft::U16:
    case Ft::U24:
    case Ft::U32:
    case Ft::U64:
      return def.base == Base::Hex ? put_hex(f.value, hex_digits(def.type), o)
                                   : put_dec(f.value, o);
    case Ft::Bool:
      *o++ = f.value != 0 ? '1' : '0';
      return o;
    case Ft::Ipv4:
      if (f.off + 4 <= p.data.size()) {
        for (std::size_t i = 0; i < 4; ++i) {
          if (i > 0) *o++ = '.';
          o = put_byte_dec(p.data[f.off + i], o);
        }
      }
      return o;
    case Ft::Time:
      return put_time(p.ts_sec, p.ts_nsec, o);
    case Ft::RelTime:
      return put_time(p.ts_sec - ref.sec,
                      static_cast<std::int64_t>(p.ts_nsec) - static_cast<std::int64_t>(ref.nsec),
                      o);
    case Ft::Bytes:
    case Ft::Ipv6:
    case Ft::None:
      break;
  }
  return o;
}

}  // namespace

namespace {

void append_bytes(const Packet& p, const Field& f, std::string& out) {
  const std::size_t n =
      f.off < p.data.size() ? std::min<std::size_t>(f.len, p.data.size() - f.off) : 0;
  const std::size_t at = out.size();
  out.resize(at + 2 * n);
  char* o = out.data() + at;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t b = p.data[f.off + i];
    *o++ = kHexDigits[b >> 4];
    *o++ = kHexDigits[b & 0xfU];
  }
}

// render_field, inlined into render_occurrences (the -T fields path: one call per field).
[[gnu::always_inline]] inline void render_one(const Packet& p, const Field& f, const TimeRef& ref,
                                              std::string& out) {
  const FieldDef& def = field_def(f.id);
  if (def.type == Ft::Bytes) {
    append_bytes(p, f, out);
  } else if (def.type == Ft::Ipv6) {
    if (f.off + 16 <= p.data.size()) append_ipv6(p.data.data() + f.off, out);
  } else {
    std::array<char, kFixedMax> buf;
    const char* end = put_fixed(p, f, def, ref, buf.data());
    out.append(buf.data(), static_cast<std::size_t>(end - buf.data()));
  }
}

}  // namespace

void render_field(const Packet& p, const Field& f, const TimeRef& ref, std::string& out) {
  render_one(p, f, ref, out);
}

void render_occurrences_from(const Packet& p, std::uint32_t i, const TimeRef& ref, int occurrence,
                             std::string& out) {
  std::uint32_t next = p.next_of(i);
  if (occurrence == 0) {  // all, comma-separated
    render_one(p, p.fields[i], ref, out);
    for (; next != Packet::kNoField; next = p.next_of(next)) {
      out += ',';
      render_one(p, p.fields[next], ref, out);
    }
    return;
  }
  if (occurrence < 0) {  // the last
    for (; next != Packet::kNoField; next = p.next_of(next)) i = next;
    render_one(p, p.fields[i], ref, out);
    return;
  }
  for (int n = 1; n < occurrence; ++n)
    if ((i = p.next_of(i)) == Packet::kNoField) return;
  render_one(p, p.fields[i], ref, out);
}

FieldsLine::FieldsLine(std::span<const FieldId> columns, std::string_view sep, int occurrence)
    : columns_(columns.begin(), columns.end()),
      sep_(sep),
      occurrence_(occurrence),
      column_of_(static_cast<std::size_t>(FieldId::count_), kNone),
      same_as_(columns.size(), kNone),
      first_(columns.size()),
      last_(columns.size()),
      count_(columns.size()) {
  for (std::size_t c = 0; c < columns_.size(); ++c) {
    defs_.push_back(&field_def(columns_[c]));
    std::uint32_t& col = column_of_[static_cast<std::size_t>(columns_[c])];
    if (col == kNone) {
      col = static_cast<std::uint32_t>(c);
    } else {
      same_as_[c] = col;
      has_repeats_ = true;
    }
  }
}

namespace {

// One occurrence's rendering into the line's buffer (room made by the caller). `def` is the
// field's (a column's field is known in advance: no lookup by f.id).
[[gnu::always_inline]] inline char* put_value(const Packet& p, const Field& f, const FieldDef& def,
                                              const TimeRef& ref, char* o) {
  if (def.type == Ft::Bytes) {
    const std::size_t n =
        f.off < p.data.size() ? std::min<std::size_t>(f.len, p.data.size() - f.off) : 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint8_t b = p.data[f.off + i];
      *o++ = kHexDigits[b >> 4];
      *o++ = kHexDigits[b & 0xfU];
    }
    return o;
  }
  if (def.type == Ft::Ipv6) {
    if (f.off + 16 <= p.data.size() &&
        inet_ntop(AF_INET6, p.data.data() + f.off, o, INET6_ADDRSTRLEN) != nullptr)
      o += std::strlen(o);
    return o;
  }
  return put_fixed(p, f, def, ref, o);
}

}  // namespace

void FieldsLine::append(const Packet& p, const TimeRef& ref, std::string& out) {
  // Locals rather than members below: the stores into the line's chars could alias the members,
  // and the compiler would reload them at every column.
  const std::size_t ncol = columns_.size();
  const std::size_t nfield = p.fields.size();
  const Field* const fields = p.fields.data();
  const std::uint32_t* const column_of = column_of_.data();
  if (next_.size() < nfield) next_.resize(nfield);
  std::uint32_t* const count = count_.data();
  std::uint32_t* const first = first_.data();
  std::uint32_t* const last = last_.data();
  std::uint32_t* const next = next_.data();
  // The occurrences of each column's field, in order; and an upper bound on the line's length.
  std::fill_n(count, ncol, 0U);
  std::size_t bound = ncol * (sep_.size() + 1) + 1;
  for (std::size_t i = 0; i < nfield; ++i) {
    const Field& f = fields[i];
    const std::uint32_t c = column_of[static_cast<std::size_t>(f.id)];
    if (c == kNone) continue;
    const auto idx = static_cast<std::uint32_t>(i);
    if (count[c]++ == 0)
      first[c] = idx;
    else
      next[last[c]] = idx;
    last[c] = idx;
    bound += defs_[c]->type == Ft::Bytes ? 2 * std::size_t{f.len} + 1 : kFixedMax + 1;
  }
  if (has_repeats_) {
    for (std::size_t c = 0; c < ncol; ++c) {  // a field asked for twice
      if (same_as_[c] == kNone) continue;
      const std::uint32_t s = same_as_[c];
      count[c] = count[s];
      first[c] = first[s];
      last[c] = last[s];
      for (std::uint32_t n = 0, i = first[s]; n < count[s]; ++n, i = next[i])
        bound += defs_[c]->type == Ft::Bytes ? 2 * std::size_t{fields[i].len} + 1 : kFixedMax + 1;
    }
  }
  if (buf_.size() < bound) buf_.resize(std::max(bound, 2 * buf_.size()));
  const FieldDef* const* const defs = defs_.data();
  const char* const sep = sep_.data();
  const std::size_t sep_len = sep_.size();
  const int occurrence = occurrence_;
  char* const start = buf_.data();
  char* o = start;
  for (std::size_t c = 0; c < ncol; ++c) {
    if (c > 0) o = std::copy_n(sep, sep_len, o);
    const std::uint32_t n = count[c];
    if (n == 0) continue;
    const FieldDef& def = *defs[c];
    if (occurrence == 0) {  // all, comma-separated
      std::uint32_t i = first[c];
      o = put_value(p, fields[i], def, ref, o);
      for (std::uint32_t k = 1; k < n; ++k) {
        i = next[i];
        *o++ = ',';
        o = put_value(p, fields[i], def, ref, o);
      }
    } else if (occurrence < 0) {  // the last
      o = put_value(p, fields[last[c]], def, ref, o);
    } else if (static_cast<std::uint32_t>(occurrence) <= n) {  // that one
      std::uint32_t i = first[c];
      for (int k = 1; k < occurrence; ++k) i = next[i];
      o = put_value(p, fields[i], def, ref, o);
    }
  }
  *o++ = '\n';
  out.append(start, static_cast<std::size_t>(o - start));
}

std::string render_address(const Packet& p, const Address& a) {
  std::string out;
  switch (a.kind) {
    case AddrKind::None:
      break;
    case AddrKind::Lid:
      out = fmt::format("LID: {}", a.lid);
      break;
    case AddrKind::Gid:
      out = "GID: ";
      if (a.off + 16 <= p.data.size()) append_ipv6(p.data.data() + a.off, out);
      break;
    case AddrKind::Ipv4:
      if (a.off + 4 <= p.data.size())
        out = fmt::format("{}.{}.{}.{}", p.data[a.off], p.data[a.off + 1], p.data[a.off + 2],
                          p.data[a.off + 3]);
      break;
    case AddrKind::Ipv6:
      if (a.off + 16 <= p.data.size()) append_ipv6(p.data.data() + a.off, out);
      break;
  }
  return out;
}

const char* proto_name(Proto proto) {
  switch (proto) {
    case Proto::InfiniBand:
      return "InfiniBand";
    case Proto::RoCE:
      return "RoCE";
    case Proto::RRoCE:
      return "RRoCE";
    case Proto::Other:
      break;
  }
  return "Other";
}

namespace {
std::string_view sdp_mid_name(const Packet& p) {
  return ::sdp::wire::mid_name(static_cast<std::uint8_t>(p.sdp_mid));
}
}  // namespace

std::string info(const Packet& p) {
  if (!p.has_bth) return p.proto == Proto::Other ? "(not InfiniBand)" : "";
  if (p.has_mad && p.mad_class == 0x07) {
    const char* name = cm_attr_name(p.mad_attr);
    std::string s = name != nullptr ? fmt::format("CM: {}", name)
                                    : fmt::format("CM: attribute 0x{:04x}", p.mad_attr);
    if (p.sdp_mid >= 0) fmt::format_to(std::back_inserter(s), "(SDP {})", sdp_mid_name(p));
    return s;
  }
  const char* name = opcode_name(p.opcode);
  std::string s = name != nullptr
                      ? fmt::format("{} QP=0x{:06x} ", name, p.dest_qp)
                      : fmt::format("Unknown OpCode 0x{:02x} QP=0x{:06x} ", p.opcode, p.dest_qp);
  if (p.sdp_mid >= 0) fmt::format_to(std::back_inserter(s), "(SDP {})", sdp_mid_name(p));
  if (p.has_mad) {
    const char* cls = mgmt_class_name(p.mad_class);
    if (cls != nullptr)
      fmt::format_to(std::back_inserter(s), "{} method 0x{:02x} attr 0x{:04x}", cls, p.mad_method,
                     p.mad_attr);
    else
      fmt::format_to(std::back_inserter(s), "MAD class 0x{:02x} method 0x{:02x} attr 0x{:04x}",
                     p.mad_class, p.mad_method, p.mad_attr);
  }
  return s;
}

std::string format_note(const Note& n) {
  try {
    return fmt::format(fmt::runtime(n.text), n.a, n.b, n.subject != nullptr ? n.subject : "");
  } catch (const fmt::format_error&) {
    return n.text;
  }
}

std::string summary_line(const Packet& p, const TimeRef& ref) {
  std::string t;
  const Field rel{FieldId::frame_time_relative, 0, 0, 0};
  render_field(p, rel, ref, t);
  if (t.size() > 3) t.resize(t.size() - 3);  // microseconds, like tshark's default column
  std::string s = fmt::format("{:5} {:>10} {} → {} {} {} {}", p.number, t, render_address(p, p.src),
                              render_address(p, p.dst), proto_name(p.proto), p.wire_len, info(p));
  if (!p.notes.empty()) {
    s += " [";
    for (std::size_t i = 0; i < p.notes.size(); ++i) {
      if (i > 0) s += "; ";
      s += format_note(p.notes[i]);
    }
    s += ']';
  }
  return s;
}

}  // namespace ibsniff

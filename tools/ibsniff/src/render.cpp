#include "ibsniff/render.hpp"

#include "sdp/wire.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <array>

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

void append_time(std::int64_t sec, std::int64_t nsec, std::string& out) {
  if (nsec < 0) {
    nsec += 1000000000;
    sec -= 1;
  }
  if (sec < 0 && nsec != 0) {  // negative relative times (out-of-order captures)
    out += '-';
    sec = -sec - 1;
    nsec = 1000000000 - nsec;
  }
  fmt::format_to(std::back_inserter(out), "{}.{:09}", sec, nsec);
}

}  // namespace

void render_field(const Packet& p, const Field& f, const TimeRef& ref, std::string& out) {
  const FieldDef& def = field_def(f.id);
  auto it = std::back_inserter(out);
  switch (def.type) {
    case Ft::U8:
    case Ft::U16:
    case Ft::U24:
    case Ft::U32:
    case Ft::U64:
      if (def.base == Base::Hex)
        fmt::format_to(it, "0x{:0{}x}", f.value, hex_digits(def.type));
      else
        fmt::format_to(it, "{}", f.value);
      break;
    case Ft::Bool:
      out += f.value != 0 ? '1' : '0';
      break;
    case Ft::Bytes:
      for (std::uint32_t i = 0; i < f.len && f.off + i < p.data.size(); ++i)
        fmt::format_to(it, "{:02x}", p.data[f.off + i]);
      break;
    case Ft::Ipv4:
      if (f.off + 4 <= p.data.size())
        fmt::format_to(it, "{}.{}.{}.{}", p.data[f.off], p.data[f.off + 1], p.data[f.off + 2],
                       p.data[f.off + 3]);
      break;
    case Ft::Ipv6:
      if (f.off + 16 <= p.data.size()) append_ipv6(p.data.data() + f.off, out);
      break;
    case Ft::Time:
      append_time(p.ts_sec, p.ts_nsec, out);
      break;
    case Ft::RelTime:
      append_time(p.ts_sec - ref.sec,
                  static_cast<std::int64_t>(p.ts_nsec) - static_cast<std::int64_t>(ref.nsec), out);
      break;
    case Ft::None:
      break;
  }
}

void render_occurrences(const Packet& p, FieldId id, const TimeRef& ref, int occurrence,
                        std::string& out) {
  int n = 0;
  const Field* last = nullptr;
  for (const auto& f : p.fields) {
    if (f.id != id) continue;
    ++n;
    if (occurrence == 0) {
      if (n > 1) out += ',';
      render_field(p, f, ref, out);
    } else if (occurrence == n) {
      render_field(p, f, ref, out);
      return;
    }
    last = &f;
  }
  if (occurrence < 0 && last != nullptr) render_field(p, *last, ref, out);
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

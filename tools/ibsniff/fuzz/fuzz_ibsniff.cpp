// libFuzzer target: ibsniff's whole decoding path on arbitrary frames — link layer, InfiniBand
// headers, CRCs, MAD/CM, the SDP follower (a Session sees the frames in order, so connection
// state, reassembly and forced QPs are exercised across frames) — and every renderer.
// Whatever the bytes, nothing may crash or read outside the frame (ASan), and every field that
// names bytes must lie inside its frame.
//
// Input: byte 0 selects the link type; byte 1 bit 0 forces QP 0x11 as SDP; then frames, each a
// 2-byte big-endian length followed by that many bytes (a short tail is the last frame).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "ibsniff/decoder.hpp"
#include "ibsniff/render.hpp"
#include "ibsniff/session.hpp"

namespace {

constexpr int kLinks[] = {ibsniff::kLinkEthernet,   ibsniff::kLinkRaw,      ibsniff::kLinkLinuxSll,
                          ibsniff::kLinkErf,        ibsniff::kLinkIpv4,     ibsniff::kLinkIpv6,
                          ibsniff::kLinkInfiniband, ibsniff::kLinkLinuxSll2};

void check_fields(const ibsniff::Packet& p) {
  for (const ibsniff::Field& f : p.fields) {
    if (f.len != 0 && (f.off > p.data.size() || f.len > p.data.size() - f.off)) {
      std::fprintf(stderr, "field %u at [%u, +%u) outside a %zu-byte frame\n",
                   static_cast<unsigned>(f.id), f.off, f.len, p.data.size());
      std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const int link = kLinks[data[0] % (sizeof kLinks / sizeof kLinks[0])];
  ibsniff::Session session;
  if ((data[1] & 1) != 0) session.force_sdp_qp(0x11);
  ibsniff::Packet p;
  ibsniff::TimeRef ref;
  std::string out;
  std::size_t pos = 2;
  std::uint64_t n = 0;
  while (pos < size) {
    std::size_t len = size - pos;
    if (size - pos >= 2) {
      len = std::size_t{data[pos]} << 8 | data[pos + 1];
      pos += 2;
      if (len > size - pos) len = size - pos;
    }
    p.number = ++n;
    p.linktype = link;
    p.wire_len = static_cast<std::uint32_t>(len);
    p.data = {data + pos, len};
    ibsniff::decode(p);
    session.process(p);
    ref.observe(p);
    check_fields(p);
    out.clear();
    for (const ibsniff::Field& f : p.fields) ibsniff::render_field(p, f, ref, out);
    out += ibsniff::summary_line(p, ref);
    for (const ibsniff::Note& note : p.notes) out += ibsniff::format_note(note);
    pos += len;
  }
  return 0;
}

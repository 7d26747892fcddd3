#include "ibsniff/crc.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstddef>

namespace ibsniff {
namespace {

constexpr std::array<std::uint8_t, 8> kOnes8 = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

// CRC of `n` bytes of `src` starting at `*pos`, after `mask(buf)` edits a copy; advances `*pos`.
template <std::size_t N, class Mask>
std::uint32_t masked(std::uint32_t crc, std::span<const std::uint8_t> pkt, std::size_t* pos,
                     std::size_t n, Mask mask) {
  std::array<std::uint8_t, N> buf{};
  n = std::min({n, N, pkt.size() - std::min(pkt.size(), *pos)});
  std::copy_n(pkt.begin() + static_cast<std::ptrdiff_t>(*pos), n, buf.begin());
  mask(buf, n);
  *pos += n;
  return crc32_update(crc, std::span<const std::uint8_t>(buf.data(), n));
}

void mask_grh(std::array<std::uint8_t, 40>& g, std::size_t n) {
  if (n < 8) return;
  g[0] |= 0x0f;               // TClass high nibble
  g[1] = g[2] = g[3] = 0xff;  // TClass low nibble, FlowLabel
  g[7] = 0xff;                // HopLmt
}
void mask_bth(std::array<std::uint8_t, 12>& b, std::size_t n) {
  if (n > 4) b[4] = 0xff;  // FECN, BECN, reserved
}

std::uint32_t rest(std::uint32_t crc, std::span<const std::uint8_t> pkt, std::size_t pos) {
  if (pos >= pkt.size()) return crc;
  return crc32_update(crc, pkt.subspan(pos));
}

}  // namespace

std::uint32_t crc32_update(std::uint32_t crc, std::span<const std::uint8_t> bytes) {
  return static_cast<std::uint32_t>(::crc32(crc, bytes.data(), static_cast<uInt>(bytes.size())));
}

std::uint16_t vcrc16(std::span<const std::uint8_t> bytes) {
  std::uint16_t crc = 0xffff;
  for (std::uint8_t b : bytes) {
    crc = static_cast<std::uint16_t>(crc ^ b);
    for (int i = 0; i < 8; ++i)
      crc = static_cast<std::uint16_t>((crc & 1U) != 0 ? (crc >> 1) ^ 0xD008U : crc >> 1);
  }
  return static_cast<std::uint16_t>(crc ^ 0xffff);
}

std::uint32_t icrc_native(std::span<const std::uint8_t> pkt) {
  std::uint32_t crc = crc32_update(0, {});
  std::size_t pos = 0;
  const bool global = pkt.size() > 1 && (pkt[1] & 0x03) == 3;
  if (global) {
    crc = crc32_update(crc, kOnes8);
    pos = 8;
    crc = masked<40>(crc, pkt, &pos, 40, mask_grh);
  } else {
    crc = masked<8>(crc, pkt, &pos, 8, [](auto& l, std::size_t n) {
      if (n > 0) l[0] |= 0xf0;  // VL
    });
  }
  crc = masked<12>(crc, pkt, &pos, 12, mask_bth);
  return rest(crc, pkt, pos);
}

std::uint32_t icrc_rocev1(std::span<const std::uint8_t> pkt) {
  std::uint32_t crc = crc32_update(crc32_update(0, {}), kOnes8);
  std::size_t pos = 0;
  crc = masked<40>(crc, pkt, &pos, 40, mask_grh);
  crc = masked<12>(crc, pkt, &pos, 12, mask_bth);
  return rest(crc, pkt, pos);
}

std::uint32_t icrc_rocev2(std::span<const std::uint8_t> ip) {
  std::uint32_t crc = crc32_update(crc32_update(0, {}), kOnes8);
  std::size_t pos = 0;
  if (!ip.empty() && (ip[0] >> 4) == 4) {
    const std::size_t ihl = static_cast<std::size_t>(ip[0] & 0x0f) * 4;
    crc = masked<60>(crc, ip, &pos, ihl, [](auto& h, std::size_t n) {
      if (n < 12) return;
      h[1] = 0xff;           // TOS (DSCP, ECN)
      h[8] = 0xff;           // TTL
      h[10] = h[11] = 0xff;  // header checksum
    });
  } else {
    crc = masked<40>(crc, ip, &pos, 40, mask_grh);  // same variant fields as the GRH
  }
  crc = masked<8>(crc, ip, &pos, 8, [](auto& u, std::size_t n) {
    if (n == 8) u[6] = u[7] = 0xff;  // UDP checksum
  });
  crc = masked<12>(crc, ip, &pos, 12, mask_bth);
  return rest(crc, ip, pos);
}

}  // namespace ibsniff

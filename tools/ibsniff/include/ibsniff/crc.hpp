// InfiniBand CRCs (capture-formats.md §2.9). ICRC: zlib CRC-32 over the packet with the variant
// fields set to ones, stored little-endian. VCRC: CRC-16 poly 0x100B (reflected 0xD008), init and
// xorout 0xFFFF, over LRH..ICRC, stored little-endian.
#pragma once

#include <cstdint>
#include <span>

namespace ibsniff {

// Incremental CRC-32 (zlib's crc32: pass 0 as `crc` to start).
std::uint32_t crc32_update(std::uint32_t crc, std::span<const std::uint8_t> bytes);
std::uint16_t vcrc16(std::span<const std::uint8_t> bytes);

// ICRC of a native IB packet (`pkt` = LRH .. pad, ICRC excluded), LNH 2 or 3.
std::uint32_t icrc_native(std::span<const std::uint8_t> pkt);
// ICRC of a RoCEv1 packet (`pkt` = GRH .. pad).
std::uint32_t icrc_rocev1(std::span<const std::uint8_t> pkt);
// ICRC of a RoCEv2 packet: `ip` = IPv4 or IPv6 header + UDP header + BTH .. pad (contiguous).
std::uint32_t icrc_rocev2(std::span<const std::uint8_t> ip);

}  // namespace ibsniff

// Test frame builders: InfiniBand / RoCE frames with correct lengths and CRCs, computed here
// independently of the library (bitwise CRC-32 and CRC-16) so the decoder's CRC checks are
// tested against a second implementation.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <utility>
#include <vector>

namespace ibsniff::test {

using Bytes = std::vector<std::uint8_t>;

std::uint32_t ref_crc32(const Bytes& b);
std::uint16_t ref_vcrc(const Bytes& b);

void put16(Bytes& b, unsigned v);
void put24(Bytes& b, unsigned v);
void put32(Bytes& b, std::uint32_t v);
void put64(Bytes& b, std::uint64_t v);
Bytes cat(std::initializer_list<Bytes> parts);

struct BthSpec {
  std::uint8_t opcode = 0x04;
  bool se = false, m = false, ackreq = false;
  std::uint16_t pkey = 0xffff;
  std::uint8_t fecn_becn = 0;  // BTH byte 4
  std::uint32_t destqp = 0x11;
  std::uint32_t psn = 100;
};

// BTH with PadCnt for a payload of `payload_len` bytes.
Bytes bth(const BthSpec& s, std::size_t payload_len);
Bytes grh(std::uint16_t paylen, std::uint8_t nxthdr = 0x1B, std::uint8_t sgid_last = 1,
          std::uint8_t dgid_last = 2);

// Native IB: LRH (LNH 2, or 3 when `with_grh`) + [GRH] + BTH + ext + payload + pad + ICRC + VCRC.
Bytes native(const BthSpec& s, const Bytes& ext, const Bytes& payload, bool with_grh = false,
             std::uint8_t vl = 0, std::uint16_t dlid = 4, std::uint16_t slid = 1);
// RoCEv2 over Ethernet (+ optional 802.1Q tags) / IPv4 or IPv6 / UDP (dst 4791, src `sport`).
Bytes rocev2(const BthSpec& s, const Bytes& ext, const Bytes& payload, bool ipv6 = false,
             std::uint16_t sport = 0xc000, unsigned vlan_tags = 0);
// The IP packet of a RoCEv2 frame (no Ethernet header).
Bytes rocev2_ip(const BthSpec& s, const Bytes& ext, const Bytes& payload, bool ipv6 = false,
                std::uint16_t sport = 0xc000);
// RoCEv1 over Ethernet (+ tags): GRH + BTH + ext + payload + pad + ICRC.
Bytes rocev1(const BthSpec& s, const Bytes& ext, const Bytes& payload, unsigned vlan_tags = 0);
// n bytes of a pattern in which every byte differs from its neighbours: byte i = 7i + 3.
Bytes byte_pattern(std::size_t n);
// DETH (Q_Key, reserved, source QP).
Bytes deth(std::uint32_t qkey = 0x80010000, std::uint32_t srcqp = 0x22);
// A MAD: the 24-byte common header (BaseVersion 1, `mgmt_class`, ClassVersion 2, `method`,
// status 0, `tid`, `attr`, modifier 0) and `data` zero-padded (or cut) to `size` - 24 bytes.
Bytes mad(std::uint8_t mgmt_class, std::uint16_t attr, const Bytes& data,
          std::uint64_t tid = 0x1122334455667788ULL, std::uint8_t method = 0x03,
          std::size_t size = 256);
// CM (management class 0x07) over native IB without GRH: a UD SEND Only from QP 1 to QP 1
// (DETH Q_Key 0x80010000) from LID `slid` to LID `dlid`, carrying a MAD of `mad_size` bytes.
Bytes cm_native(std::uint16_t attr, const Bytes& data, std::uint64_t tid, std::uint16_t slid,
                std::uint16_t dlid, std::size_t mad_size = 256);
// The same over RoCEv2 (IPv4 10.0.0.1 -> 10.0.0.2, or IPv6 fd00::1 -> fd00::2).
Bytes cm_rocev2(std::uint16_t attr, const Bytes& data, bool ipv6 = false);

// A native-IB SDP connection: the requester (LID 1, QPN 0x48) sends a CM REQ (native SDP service
// ID 0x11b58, private data `hello`), the responder (LID 2, QPN 0x49) a REP (`hello_ack`), the
// requester an RTU; then one RC SEND Only per entry of `sends` (0: requester to responder, 1:
// back; PSNs counting from 100 and 200), then DREQ and DREP.
inline constexpr std::uint32_t kSdpRequesterQpn = 0x48, kSdpResponderQpn = 0x49;
inline constexpr std::uint64_t kSdpServiceId = 0x11b58;
std::vector<Bytes> sdp_connection(const Bytes& hello, const Bytes& hello_ack,
                                  const std::vector<std::pair<int, Bytes>>& sends);

// Link wrappers.
Bytes erf(const Bytes& ib_frame, bool ext_header = false);
Bytes sll(std::uint16_t proto, const Bytes& l3);
Bytes sll2(std::uint16_t proto, const Bytes& l3);

}  // namespace ibsniff::test

#include "ib_frames.hpp"

#include <zlib.h>

#include <algorithm>
#include <stdexcept>

#include "sdp/bytes.hpp"

namespace capgen {

namespace {

constexpr std::size_t kLrhSize = 8;
constexpr std::size_t kBthSize = 12;
constexpr std::size_t kIcrcSize = 4;
constexpr std::size_t kVcrcSize = 2;
constexpr std::uint8_t kLnhIbaLocal = 2;  // LRH.LNH: BTH follows the LRH

void put24(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 16);
  p[1] = static_cast<std::uint8_t>(v >> 8);
  p[2] = static_cast<std::uint8_t>(v);
}

// GID fe80::<guid> (link-local subnet prefix), as the SM assigns by default.
void put_gid(std::uint8_t* p, std::uint64_t guid) {
  std::fill(p, p + 16, std::uint8_t{0});
  p[0] = 0xfe;
  p[1] = 0x80;
  sdp::be::put64(p + 8, guid);
}

}  // namespace

std::uint32_t icrc_local(std::span<const std::uint8_t> pkt) {
  // Variant fields (capture-formats.md §2.9, LNH 2): the LRH VL nibble and BTH byte 4
  // (FECN/BECN/reserved) count as all ones.
  std::vector<std::uint8_t> v(pkt.begin(), pkt.end());
  v[0] = static_cast<std::uint8_t>(v[0] | 0xF0);
  v[kLrhSize + 4] = 0xFF;
  return static_cast<std::uint32_t>(
      crc32(0L, v.data(), static_cast<uInt>(v.size())));  // zlib's CRC-32 = the IB ICRC
}

std::uint16_t vcrc(std::span<const std::uint8_t> pkt) {
  // CRC-16, polynomial 0x100B, reflected (0xD008), init and final XOR 0xFFFF.
  std::uint32_t crc = 0xFFFF;
  for (std::uint8_t b : pkt) {
    crc ^= b;
    for (int i = 0; i < 8; ++i) crc = (crc & 1U) != 0 ? (crc >> 1) ^ 0xD008U : crc >> 1;
  }
  return static_cast<std::uint16_t>(crc ^ 0xFFFFU);
}

std::vector<std::uint8_t> ib_frame(std::uint16_t slid, std::uint16_t dlid, std::uint8_t vl,
                                   const Bth& bth, std::span<const std::uint8_t> ext,
                                   std::span<const std::uint8_t> payload) {
  const std::size_t pad = (4 - payload.size() % 4) % 4;
  const std::size_t crc_len = kLrhSize + kBthSize + ext.size() + payload.size() + pad + kIcrcSize;
  if (crc_len / 4 > 0x7FF) throw std::length_error("IB packet longer than LRH.PktLen allows");
  std::vector<std::uint8_t> f(crc_len + kVcrcSize, 0);
  std::uint8_t* p = f.data();
  // LRH: VL/LVer, SL 0/LNH, DLID, PktLen (4-byte words, LRH through ICRC), SLID.
  p[0] = static_cast<std::uint8_t>(vl << 4);
  p[1] = kLnhIbaLocal;
  sdp::be::put16(p + 2, dlid);
  sdp::be::put16(p + 4, static_cast<std::uint16_t>(crc_len / 4));
  sdp::be::put16(p + 6, slid);
  // BTH: OpCode, SE/M/PadCnt/TVer, P_Key (default full member), resv8a, DestQP, AckReq, PSN.
  p += kLrhSize;
  p[0] = bth.opcode;
  p[1] = static_cast<std::uint8_t>(pad << 4);
  sdp::be::put16(p + 2, 0xFFFF);
  put24(p + 5, bth.dest_qp);
  p[8] = bth.ack_req ? 0x80 : 0x00;
  put24(p + 9, bth.psn & 0xFFFFFFU);
  p += kBthSize;
  std::copy(ext.begin(), ext.end(), p);
  p += ext.size();
  std::copy(payload.begin(), payload.end(), p);
  p += payload.size() + pad;
  const std::uint32_t ic = icrc_local({f.data(), crc_len - kIcrcSize});
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(ic >> (8 * i));  // little-endian
  const std::uint16_t vc = vcrc({f.data(), crc_len});
  f[crc_len] = static_cast<std::uint8_t>(vc);
  f[crc_len + 1] = static_cast<std::uint8_t>(vc >> 8);
  return f;
}

std::array<std::uint8_t, kMadSize> cm_mad(CmAttr attr, std::uint64_t transaction_id,
                                          std::span<const std::uint8_t, kCmDataSize> data) {
  std::array<std::uint8_t, kMadSize> m{};
  m[0] = 1;     // BaseVersion
  m[1] = 0x07;  // MgmtClass: Communication Management
  m[2] = 2;     // ClassVersion
  m[3] = 0x03;  // Method: ComMgtSend
  sdp::be::put64(m.data() + 8, transaction_id);
  sdp::be::put16(m.data() + 16, static_cast<std::uint16_t>(attr));
  std::copy(data.begin(), data.end(), m.begin() + 24);
  return m;
}

std::vector<std::uint8_t> gsi_frame(const Endpoint& from, const Endpoint& to, std::uint32_t psn,
                                    std::span<const std::uint8_t, kMadSize> mad) {
  std::array<std::uint8_t, 8> deth{};
  sdp::be::put32(deth.data(), kGsiQkey);
  put24(deth.data() + 5, kGsiQpn);
  return ib_frame(from.lid, to.lid, 0, {kUdSendOnly, kGsiQpn, psn, false}, deth, mad);
}

std::array<std::uint8_t, kCmDataSize> cm_req(const Endpoint& active, const Endpoint& passive,
                                             std::uint64_t service_id,
                                             std::span<const std::uint8_t> private_data) {
  constexpr std::size_t kPrivOff = 140, kPrivSize = 92;
  if (private_data.size() > kPrivSize) throw std::length_error("REQ private data over 92 bytes");
  std::array<std::uint8_t, kCmDataSize> d{};
  std::uint8_t* p = d.data();
  sdp::be::put32(p + 0, active.comm_id);
  sdp::be::put64(p + 8, service_id);
  sdp::be::put64(p + 16, active.guid);  // LocalCAGUID
  // LocalQ_Key (28) is 0 for RC.
  put24(p + 32, active.qpn);
  p[35] = 4;  // ResponderResources
  p[39] = 4;  // InitiatorDepth
  p[43] =
      (20U << 3) | (0U << 1) | 1U;  // RemoteCMRespTimeout 20, TransportServiceType RC, E2EFlowCtl
  put24(p + 44, active.start_psn);
  p[47] = (20U << 3) | 7U;         // LocalCMRespTimeout 20, RetryCount 7
  sdp::be::put16(p + 48, 0xFFFF);  // P_Key
  p[50] = (5U << 4) | 7U;          // PathMTU 4096, RDCExists 0, RNRRetry 7
  p[51] = 15U << 4;                // MaxCMRetries 15, SRQ 0, ExtTransport 0
  // Primary path: LIDs and GIDs equal to the addresses the packets carry.
  sdp::be::put16(p + 52, active.lid);
  sdp::be::put16(p + 54, passive.lid);
  put_gid(p + 56, active.guid);
  put_gid(p + 72, passive.guid);
  sdp::be::put32(p + 88, 3U);  // FlowLabel 0, PacketRate 3 (10 Gb/s)
  p[93] = 0;                   // HopLimit: local subnet
  p[94] = 1U << 3;             // SL 0, SubnetLocal 1
  p[95] = 18U << 3;            // LocalAckTimeout 18
  std::copy(private_data.begin(), private_data.end(), d.begin() + kPrivOff);
  return d;
}

std::array<std::uint8_t, kCmDataSize> cm_rep(const Endpoint& passive, const Endpoint& active,
                                             std::span<const std::uint8_t> private_data) {
  constexpr std::size_t kPrivOff = 36, kPrivSize = 196;
  if (private_data.size() > kPrivSize) throw std::length_error("REP private data over 196 bytes");
  std::array<std::uint8_t, kCmDataSize> d{};
  std::uint8_t* p = d.data();
  sdp::be::put32(p + 0, passive.comm_id);
  sdp::be::put32(p + 4, active.comm_id);
  put24(p + 12, passive.qpn);
  put24(p + 20, passive.start_psn);
  p[24] = 4;                             // ResponderResources
  p[25] = 4;                             // InitiatorDepth
  p[26] = (15U << 3) | 1U;               // TargetAckDelay 15, FailoverAccepted 0, E2EFlowCtl 1
  p[27] = 7U << 5;                       // RNRRetryCount 7, SRQ 0
  sdp::be::put64(p + 28, passive.guid);  // LocalCAGUID
  std::copy(private_data.begin(), private_data.end(), d.begin() + kPrivOff);
  return d;
}

std::array<std::uint8_t, kCmDataSize> cm_rtu(const Endpoint& active, const Endpoint& passive) {
  std::array<std::uint8_t, kCmDataSize> d{};
  sdp::be::put32(d.data(), active.comm_id);
  sdp::be::put32(d.data() + 4, passive.comm_id);
  return d;
}

std::array<std::uint8_t, kCmDataSize> cm_dreq(const Endpoint& from, const Endpoint& to) {
  std::array<std::uint8_t, kCmDataSize> d{};
  sdp::be::put32(d.data(), from.comm_id);
  sdp::be::put32(d.data() + 4, to.comm_id);
  put24(d.data() + 8, to.qpn);  // RemoteQPN
  return d;
}

std::array<std::uint8_t, kCmDataSize> cm_drep(const Endpoint& from, const Endpoint& to) {
  return cm_rtu(from, to);  // same shape: LocalCommID, RemoteCommID
}

std::vector<std::uint8_t> rc_send_only(const Endpoint& from, const Endpoint& to, std::uint32_t psn,
                                       std::span<const std::uint8_t> payload) {
  return ib_frame(from.lid, to.lid, 0, {kRcSendOnly, to.qpn, psn, true}, {}, payload);
}

std::vector<std::uint8_t> rc_ack(const Endpoint& from, const Endpoint& to, std::uint32_t psn,
                                 std::uint32_t msn) {
  std::array<std::uint8_t, 4> aeth{};
  aeth[0] = 0x1F;  // ACK, credit count "invalid"
  put24(aeth.data() + 1, msn & 0xFFFFFFU);
  return ib_frame(from.lid, to.lid, 0, {kRcAcknowledge, to.qpn, psn, false}, aeth, {});
}

}  // namespace capgen

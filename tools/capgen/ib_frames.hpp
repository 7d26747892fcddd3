// Native InfiniBand packets for sdp-capgen: LRH-routed (no GRH) frames with a BTH, the extended
// transport headers the scenario needs (DETH, AETH), CM MADs (REQ, REP, RTU, DREQ, DREP), and the
// ICRC/VCRC a real HCA would append. Layouts and CRC rules: shared/research/capture-formats.md §2.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace capgen {

// One end of the connection: its port (LID, GUID) and its RC QP.
struct Endpoint {
  std::uint16_t lid = 0;
  std::uint64_t guid = 0;       // node/port GUID; the GID is fe80::<guid>
  std::uint32_t qpn = 0;        // 24 bits
  std::uint32_t start_psn = 0;  // first PSN of its RC send queue (announced in REQ / REP)
  std::uint32_t comm_id = 0;    // CM communication ID
};

// BTH opcodes used here (capture-formats.md §3).
inline constexpr std::uint8_t kRcSendOnly = 0x04;
inline constexpr std::uint8_t kRcAcknowledge = 0x11;
inline constexpr std::uint8_t kUdSendOnly = 0x64;

inline constexpr std::uint32_t kGsiQpn = 1;
inline constexpr std::uint32_t kGsiQkey = 0x80010000;
inline constexpr std::size_t kMadSize = 256;
inline constexpr std::size_t kCmDataSize = 232;  // MAD minus its 24-byte common header

// CM attribute IDs (class 0x07).
enum class CmAttr : std::uint16_t {
  Req = 0x0010,
  Rep = 0x0013,
  Rtu = 0x0014,
  Dreq = 0x0015,
  Drep = 0x0016
};

// CRCs of a native, LRH-only (LNH 2) packet. `pkt` runs from the LRH through the pad bytes for the
// ICRC, and from the LRH through the ICRC for the VCRC. Both are stored little-endian.
std::uint32_t icrc_local(std::span<const std::uint8_t> pkt);
std::uint16_t vcrc(std::span<const std::uint8_t> pkt);

struct Bth {
  std::uint8_t opcode = 0;
  std::uint32_t dest_qp = 0;
  std::uint32_t psn = 0;
  bool ack_req = false;
};

// LRH (VL, SL, LNH 2, DLID, PktLen, SLID) + BTH + `ext` + `payload` + pad + ICRC + VCRC.
std::vector<std::uint8_t> ib_frame(std::uint16_t slid, std::uint16_t dlid, std::uint8_t vl,
                                   const Bth& bth, std::span<const std::uint8_t> ext,
                                   std::span<const std::uint8_t> payload);

// A CM MAD (BaseVersion 1, class 0x07, class version 2, method Send) around `data`.
std::array<std::uint8_t, kMadSize> cm_mad(CmAttr attr, std::uint64_t transaction_id,
                                          std::span<const std::uint8_t, kCmDataSize> data);

// UD SEND Only from `from`'s QP1 to `to`'s QP1 (DETH Q_Key 0x80010000, source QP 1) carrying a MAD.
std::vector<std::uint8_t> gsi_frame(const Endpoint& from, const Endpoint& to, std::uint32_t psn,
                                    std::span<const std::uint8_t, kMadSize> mad);

// CM message bodies (the 232-byte data area). Private data is zero-padded to its field size.
std::array<std::uint8_t, kCmDataSize> cm_req(const Endpoint& active, const Endpoint& passive,
                                             std::uint64_t service_id,
                                             std::span<const std::uint8_t> private_data);
std::array<std::uint8_t, kCmDataSize> cm_rep(const Endpoint& passive, const Endpoint& active,
                                             std::span<const std::uint8_t> private_data);
std::array<std::uint8_t, kCmDataSize> cm_rtu(const Endpoint& active, const Endpoint& passive);
std::array<std::uint8_t, kCmDataSize> cm_dreq(const Endpoint& from, const Endpoint& to);
std::array<std::uint8_t, kCmDataSize> cm_drep(const Endpoint& from, const Endpoint& to);

// RC SEND Only from `from` to `to` carrying `payload` (AckReq set).
std::vector<std::uint8_t> rc_send_only(const Endpoint& from, const Endpoint& to, std::uint32_t psn,
                                       std::span<const std::uint8_t> payload);
// RC Acknowledge from `from` for `to`'s packet `psn`: AETH syndrome ACK with an invalid credit
// count (0x1F), and `msn` messages completed.
std::vector<std::uint8_t> rc_ack(const Endpoint& from, const Endpoint& to, std::uint32_t psn,
                                 std::uint32_t msn);

}  // namespace capgen

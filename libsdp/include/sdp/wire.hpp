// SDP wire codec (IBTA Vol. 1 Annex A4): the BSDH and every extended header.
//
// Plain structs with encode/decode to and from big-endian bytes. No allocation, no I/O. Every
// decode validates strictly and, on failure, returns an Error that names what is wrong and where.
// The same codec serves libsdp's engine, the ibsniff dissector and the conformance harness.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <variant>

namespace sdp::wire {

// ---------------------------------------------------------------------------------------------
// Message identifiers (BSDH.MID)

enum class Mid : std::uint8_t {
  Hello = 0x00,
  HelloAck = 0x01,
  DisConn = 0x02,
  AbortConn = 0x03,
  SendSm = 0x04,
  RdmaWrCompl = 0x05,
  RdmaRdCompl = 0x06,
  ModeChange = 0x07,
  SrcAvailCancel = 0x08,
  SinkAvailCancel = 0x09,
  SinkCancelAck = 0x0A,
  ChRcvBuf = 0x0B,
  ChRcvBufAck = 0x0C,
  SuspComm = 0x0D,
  SuspCommAck = 0x0E,
  SinkAvail = 0xFD,
  SrcAvail = 0xFE,
  Data = 0xFF,
};

// Name as Wireshark prints it ("Data", "SrcAvail", ...); "Unknown" for an undefined MID.
std::string_view mid_name(std::uint8_t mid) noexcept;
// True for the 18 MIDs the annex defines.
bool mid_defined(std::uint8_t mid) noexcept;
// Size of the extended header that follows the BSDH for this MID (0 when none; Hello counts its
// full 76-byte form). Undefined MIDs return 0.
std::size_t ext_header_size(Mid mid) noexcept;
// Only Data, SrcAvail and SinkAvail may carry ULP payload after their header.
constexpr bool mid_carries_payload(Mid mid) noexcept {
  return mid == Mid::Data || mid == Mid::SrcAvail || mid == Mid::SinkAvail;
}

// ---------------------------------------------------------------------------------------------
// Sizes

inline constexpr std::size_t kBsdhSize = 16;
inline constexpr std::size_t kHelloHeaderSize = 76;         // HH (full form)
inline constexpr std::size_t kHelloMessageSize = 92;        // BSDH + HH = CM REQ private data
inline constexpr std::size_t kCompactHelloHeaderSize = 16;  // HH up to and including LocalPort+rsvd
inline constexpr std::size_t kCompactHelloMessageSize = 32;  // IP CM mode: BSDH + compact HH
inline constexpr std::size_t kHelloAckHeaderSize = 180;      // HAH
inline constexpr std::size_t kHelloAckMessageSize = 196;     // BSDH + HAH = CM REP private data
inline constexpr std::size_t kSrcAvailHeaderSize = 16;
inline constexpr std::size_t kSinkAvailHeaderSize = 20;
inline constexpr std::size_t kRdmaComplHeaderSize = 4;  // RWCH and RRCH
inline constexpr std::size_t kModeChangeHeaderSize = 4;
inline constexpr std::size_t kChRcvBufHeaderSize = 4;  // CRBH and CRBAH
inline constexpr std::size_t kSuspCommHeaderSize = 8;
inline constexpr std::size_t kIpCmHeaderSize = 36;       // inserted by rdma_cm in RDMA_PS_TCP mode
inline constexpr std::size_t kIpCmPrivateDataSize = 56;  // REQ private data left after it

// ---------------------------------------------------------------------------------------------
// BSDH

namespace flags {
inline constexpr std::uint8_t kOobPres = 0x01;  // last payload byte of this Data message is urgent
inline constexpr std::uint8_t kOobPend = 0x02;  // the ULP has sent urgent data
inline constexpr std::uint8_t kReqPipe = 0x04;  // sink asks the source for Pipelined mode
inline constexpr std::uint8_t kReservedMask = 0xF8;
}  // namespace flags

struct Bsdh {
  std::uint8_t mid = 0;  // raw, so that undefined MIDs can be represented and reported
  std::uint8_t flags = 0;
  std::uint16_t bufs = 0;
  std::uint32_t len = 0;  // whole message, BSDH + extended header + payload
  std::uint32_t mseq = 0;
  std::uint32_t mseq_ack = 0;
  friend bool operator==(const Bsdh&, const Bsdh&) = default;
};

// ---------------------------------------------------------------------------------------------
// Extended headers

// IP version nibble values
inline constexpr std::uint8_t kIpv4 = 4;
inline constexpr std::uint8_t kIpv6 = 6;

// Hello capability bits (low nibble of HH byte 1)
namespace cap {
inline constexpr std::uint8_t kInvalidate = 0x1;     // accepts Send with Invalidate
inline constexpr std::uint8_t kExtMaxAdverts = 0x2;  // HH carries ExtMaxAdverts at +50
inline constexpr std::uint8_t kReservedMask = 0xC;
}  // namespace cap

// HH (Hello). In the full form (native SDP service IDs) all fields are present. In the compact
// form (IP CM service, the project's own binding, see docs/wire.md) only the first 16 bytes are
// on the wire; src_ip/dst_ip come from the IP CM header and decode leaves them zero.
struct HelloHeader {
  std::uint8_t major = 2;
  std::uint8_t minor = 2;
  std::uint8_t ip_version = kIpv4;   // 4 or 6
  std::uint8_t cap = 0;              // low nibble, cap::*
  std::uint8_t max_adverts = 1;      // > 0
  std::uint32_t des_rem_rcv_sz = 0;  // desired size of the responder's receive buffers
  std::uint32_t local_rcv_sz = 0;  // size of each receive buffer the requester posted (incl. BSDH)
  std::uint16_t local_port = 0;
  std::array<std::uint8_t, 16> src_ip{};  // IPv4: last 4 bytes, first 12 zero
  std::array<std::uint8_t, 16> dst_ip{};
  std::uint16_t ext_max_adverts = 0;  // only meaningful (and only encoded) with cap::kExtMaxAdverts
  friend bool operator==(const HelloHeader&, const HelloHeader&) = default;
};

// HAH (HelloAck)
struct HelloAckHeader {
  std::uint8_t major = 2;
  std::uint8_t minor = 2;
  std::uint8_t ip_version = 0;  // OFED sends 0 here; any value 0, 4 or 6 is accepted
  std::uint8_t cap = 0;
  std::uint8_t max_adverts = 1;
  std::uint32_t act_rcv_sz = 0;  // actual size of the responder's receive buffers (incl. BSDH)
  friend bool operator==(const HelloAckHeader&, const HelloAckHeader&) = default;
};

struct SrcAvailHeader {   // SrcAH
  std::uint32_t len = 0;  // total bytes advertised, including inline payload bytes
  std::uint32_t rkey = 0;
  std::uint64_t va = 0;
  friend bool operator==(const SrcAvailHeader&, const SrcAvailHeader&) = default;
};

struct SinkAvailHeader {  // SinkAH
  std::uint32_t len = 0;
  std::uint32_t rkey = 0;
  std::uint64_t va = 0;
  std::uint32_t non_disc = 0;  // data-carrying messages the sink has received so far
  friend bool operator==(const SinkAvailHeader&, const SinkAvailHeader&) = default;
};

struct RdmaWrComplHeader {  // RWCH
  std::uint32_t len = 0;
  friend bool operator==(const RdmaWrComplHeader&, const RdmaWrComplHeader&) = default;
};
struct RdmaRdComplHeader {  // RRCH
  std::uint32_t len = 0;
  friend bool operator==(const RdmaRdComplHeader&, const RdmaRdComplHeader&) = default;
};

enum class Mode : std::uint8_t { Buffered = 0, Combined = 1, Pipelined = 2 };
struct ModeChangeHeader {  // MCH: byte0 = (send_half << 7 | mode << 4); rest reserved
  bool send_half = false;  // true: the receiver's send half changes; false: its receive half
  Mode mode = Mode::Buffered;
  friend bool operator==(const ModeChangeHeader&, const ModeChangeHeader&) = default;
};

struct ChRcvBufHeader {  // CRBH
  std::uint32_t size = 0;
  friend bool operator==(const ChRcvBufHeader&, const ChRcvBufHeader&) = default;
};
struct ChRcvBufAckHeader {  // CRBAH
  std::uint32_t size = 0;
  friend bool operator==(const ChRcvBufAckHeader&, const ChRcvBufAckHeader&) = default;
};
struct SuspCommHeader {  // SuspCH
  std::uint64_t service_id = 0;
  friend bool operator==(const SuspCommHeader&, const SuspCommHeader&) = default;
};

using ExtHeader = std::variant<std::monostate, HelloHeader, HelloAckHeader, SrcAvailHeader,
                               SinkAvailHeader, RdmaWrComplHeader, RdmaRdComplHeader,
                               ModeChangeHeader, ChRcvBufHeader, ChRcvBufAckHeader, SuspCommHeader>;

// One SDP message: BSDH, the extended header its MID requires (monostate when none), and the
// ULP payload (a view into the decoded buffer, or the bytes to encode).
struct Message {
  Bsdh bsdh;
  ExtHeader ext;
  std::span<const std::uint8_t> payload;
};

// ---------------------------------------------------------------------------------------------
// Errors

enum class Errc : std::uint8_t {
  Ok = 0,
  TooShort,           // fewer bytes than the BSDH / the extended header needs
  LengthMismatch,     // BSDH.Len disagrees with the buffer (or is below header size)
  UnknownMid,         // MID not defined by the annex
  ReservedNonZero,    // a reserved field or reserved bits are set
  FlagNotAllowed,     // a defined flag used on a MID that must not carry it (CA4-7, CA4-8)
  PayloadNotAllowed,  // payload after a header of a MID that carries none
  BadField,           // a field value the spec forbids (IP version, MaxAdverts 0, mode, ...)
  BufferTooSmall,     // encode: output span too small
  HeaderMismatch,     // encode: Message.ext does not match the MID
};

std::string_view errc_name(Errc e) noexcept;

// A failure with a human-readable reason ("unknown MID 0x42", "BSDH.Len 40 but 36 bytes
// received", ...). `offset` is the byte offset in the message where the problem lies.
struct Error {
  Errc code = Errc::Ok;
  std::uint32_t offset = 0;
  // NUL-terminated when code != Ok; left unwritten on success so that a successful decode does
  // not pay for clearing it.
  std::array<char, 96> text;
  std::string_view reason() const noexcept {
    return code == Errc::Ok ? std::string_view() : std::string_view(text.data());
  }
  explicit operator bool() const noexcept { return code != Errc::Ok; }
};

// Holds a value or an Error. Small and allocation-free.
template <class T>
class Result {
 public:
  Result(T value) : value_(value) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : error_(error) {}  // NOLINT(google-explicit-constructor)
  bool ok() const noexcept { return !error_; }
  explicit operator bool() const noexcept { return ok(); }
  const T& value() const& { return value_; }
  T& value() & { return value_; }
  const T& operator*() const { return value_; }
  const T* operator->() const { return &value_; }
  const Error& error() const noexcept { return error_; }

 private:
  T value_{};
  Error error_;  // default-initialised: code Ok, text not touched
};

// ---------------------------------------------------------------------------------------------
// Decode

// Reads the 16 BSDH bytes without any validation (for dissectors that show malformed messages).
// Requires bytes.size() >= kBsdhSize, else TooShort.
Result<Bsdh> peek_bsdh(std::span<const std::uint8_t> bytes) noexcept;

// Decodes one SDP message carried by one RC SEND. `bytes` is exactly the SEND's payload: BSDH.Len
// must equal bytes.size(). Validates: length, MID defined, extended header present and its reserved
// fields zero, flags (reserved bits, OOB_PRES only on Data, REQ_PIPE only on RdmaRdCompl), payload
// only on Data/SrcAvail/SinkAvail, SrcAH.Len >= inline payload, field ranges. Hello/HelloAck are
// never SENDs; use decode_hello / decode_hello_ack for CM private data (decode_message refuses
// them with BadField).
Result<Message> decode_message(std::span<const std::uint8_t> bytes) noexcept;
// The same, filling `out` in place (nothing copied on the hot path). On failure returns false and
// writes the error to `error`; `out` is then unspecified.
bool decode_message_into(std::span<const std::uint8_t> bytes, Message& out, Error& error) noexcept;
// The start of a message carried by a multi-packet SEND (`bytes` = its first packet's payload, for
// a dissector that shows the headers on the packet that carries them): validated as by
// decode_message, except that BSDH.Len must be >= bytes.size() instead of equal, and the payload
// rules (allowed, OOB_PRES needs one, SrcAH.Len >= inline bytes) apply to the BSDH.Len - header
// bytes the whole message carries. `out.payload` is the part of the payload present in `bytes`.
bool decode_message_prefix_into(std::span<const std::uint8_t> bytes, Message& out,
                                Error& error) noexcept;

// Hello in CM REQ private data. Full form: bytes.size() >= 92, BSDH.Len == 92, bytes beyond 92
// must be zero. Compact form (IP CM service): bytes.size() >= 32, BSDH.Len == 32, bytes beyond
// 32 must be zero. The form is chosen by BSDH.Len. MID must be Hello; MSeq/MSeqAck are not
// checked here (the engine checks them).
struct Hello {
  Bsdh bsdh;
  HelloHeader hh;
  bool compact = false;
};
Result<Hello> decode_hello(std::span<const std::uint8_t> private_data) noexcept;

// HelloAck in CM REP private data (196 bytes in both CM modes: rdma_cm inserts no header in the
// REP). bytes.size() >= 196, BSDH.Len == 196, MID HelloAck, reserved HAH bytes zero, bytes beyond
// 196 zero.
struct HelloAck {
  Bsdh bsdh;
  HelloAckHeader hah;
};
Result<HelloAck> decode_hello_ack(std::span<const std::uint8_t> private_data) noexcept;

// ---------------------------------------------------------------------------------------------
// Encode

// Size the encoded message will have: 16 + extended header + payload.
std::size_t encoded_size(const Message& m) noexcept;

// Encodes m into out. BSDH.Len is computed (m.bsdh.len is ignored); the extended header must be
// the one m.bsdh.mid requires (HeaderMismatch otherwise); payload only where allowed. Returns the
// number of bytes written.
Result<std::size_t> encode_message(const Message& m, std::span<std::uint8_t> out) noexcept;

// Writes a BSDH verbatim (len included), for tests and the conformance harness, which must be able
// to put malformed messages on the wire. out.size() >= 16.
Result<std::size_t> encode_bsdh(const Bsdh& h, std::span<std::uint8_t> out) noexcept;

// Hello/HelloAck as CM private data. Writes exactly 92 (32 compact) / 196 bytes; the caller
// zero-pads the rest of the private data area. bsdh.len is computed; bsdh.mid must match.
Result<std::size_t> encode_hello(const Bsdh& bsdh, const HelloHeader& hh, bool compact,
                                 std::span<std::uint8_t> out) noexcept;
Result<std::size_t> encode_hello_ack(const Bsdh& bsdh, const HelloAckHeader& hah,
                                     std::span<std::uint8_t> out) noexcept;

// ---------------------------------------------------------------------------------------------
// Helpers

// Wrap-safe sequence comparison: a is after b (signed 32-bit difference > 0).
constexpr bool seq_after(std::uint32_t a, std::uint32_t b) noexcept {
  return static_cast<std::int32_t>(a - b) > 0;
}
// Native SDP service ID for a port: 0x000000000001PPPP.
constexpr std::uint64_t sdp_service_id(std::uint16_t port) noexcept {
  return (std::uint64_t{0x0001} << 16) | port;
}
// IP CM (RDMA_PS_TCP) service ID for a port: 0x000000000106PPPP.
constexpr std::uint64_t ipcm_tcp_service_id(std::uint16_t port) noexcept {
  return (std::uint64_t{0x0106} << 16) | port;
}
// IP CM service IDs (Annex A11): 0x0000000001 (5 bytes), protocol (1 byte), port (2 bytes).
constexpr bool is_ipcm_service_id(std::uint64_t sid) noexcept {
  return (sid & 0xFFFF'FFFF'FF00'0000ULL) == 0x0000'0000'0100'0000ULL;
}
constexpr bool is_sdp_service_id(std::uint64_t sid) noexcept {
  return (sid & 0xFFFF'FFFF'FFFF'0000ULL) == 0x0000'0000'0001'0000ULL;
}

}  // namespace sdp::wire

// SDP wire codec: see sdp/wire.hpp for every function's contract.
//
// Implementation notes:
// - Bytes are read and written with explicit big-endian shifts through std::uint8_t pointers; no
//   reinterpret_cast, no unaligned loads, no arithmetic that can overflow on hostile input.
// - decode_message is table driven for the checks every message shares (a 256-entry MID table
//   gives the extended header size, the allowed flags and whether payload may follow), then one
//   switch on the MID parses the extended header. A valid Data message costs a handful of
//   compares; the error text is only formatted (snprintf, in a cold function) on failure.
// - Encoding is the well-formed path: it computes BSDH.Len, requires the extended header the MID
//   needs and refuses payload where the annex forbids it. It writes flags and field values
//   verbatim as long as they fit their bit fields (so the conformance harness can still produce
//   e.g. OOB_PRES on a SendSm or a ModeChange with an undefined mode); encode_bsdh writes anything.
#include "sdp/wire.hpp"

#include "sdp/bytes.hpp"

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>

namespace sdp::wire {
namespace {

// ---------------------------------------------------------------------------------------------
// Byte access

using be::get16;
using be::get32;
using be::get64;
using be::put16;
using be::put32;
using be::put64;

inline Bsdh read_bsdh(const std::uint8_t* p) noexcept {
  Bsdh h;
  h.mid = p[0];
  h.flags = p[1];
  h.bufs = get16(p + 2);
  h.len = get32(p + 4);
  h.mseq = get32(p + 8);
  h.mseq_ack = get32(p + 12);
  return h;
}
inline void write_bsdh(std::uint8_t* p, const Bsdh& h, std::uint32_t len) noexcept {
  p[0] = h.mid;
  p[1] = h.flags;
  put16(p + 2, h.bufs);
  put32(p + 4, len);
  put32(p + 8, h.mseq);
  put32(p + 12, h.mseq_ack);
}

// ---------------------------------------------------------------------------------------------
// Errors (cold path)

inline std::uint32_t off32(std::size_t off) noexcept {
  return off > std::numeric_limits<std::uint32_t>::max() ? std::numeric_limits<std::uint32_t>::max()
                                                         : static_cast<std::uint32_t>(off);
}

[[gnu::cold, gnu::noinline, gnu::format(printf, 3, 4)]] Error make_error(Errc code,
                                                                         std::size_t offset,
                                                                         const char* fmt,
                                                                         ...) noexcept {
  Error e;
  e.code = code;
  e.offset = off32(offset);
  std::va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(e.text.data(), e.text.size(), fmt, ap);
  va_end(ap);
  e.text.back() = '\0';
  return e;
}

inline unsigned long long ull(std::size_t v) noexcept {
  return static_cast<unsigned long long>(v);
}

// Name of the header (ExtHeader alternative) at a variant index, for HeaderMismatch texts.
constexpr const char* kExtNames[] = {"no extended header",
                                     "HH",
                                     "HAH",
                                     "SrcAH",
                                     "SinkAH",
                                     "RWCH",
                                     "RRCH",
                                     "MCH",
                                     "CRBH",
                                     "CRBAH",
                                     "SuspCH"};
static_assert(std::size(kExtNames) == std::variant_size_v<ExtHeader>);

// ---------------------------------------------------------------------------------------------
// Per-MID table

struct MidInfo {
  std::uint8_t ext = 0;            // extended header size (HH: full 76, HAH: 180)
  std::uint8_t ext_index = 0;      // ExtHeader alternative the MID requires
  std::uint8_t allowed_flags = 0;  // defined flags this MID may carry
  bool defined = false;
  bool payload = false;
};

constexpr std::array<MidInfo, 256> make_mid_table() {
  std::array<MidInfo, 256> t{};
  auto set = [&t](Mid mid, std::size_t ext, std::size_t index) {
    MidInfo& i = t[static_cast<std::uint8_t>(mid)];
    i.ext = static_cast<std::uint8_t>(ext);
    i.ext_index = static_cast<std::uint8_t>(index);
    i.allowed_flags = flags::kOobPend;
    i.defined = true;
    i.payload = mid_carries_payload(mid);
  };
  set(Mid::Hello, kHelloHeaderSize, 1);
  set(Mid::HelloAck, kHelloAckHeaderSize, 2);
  set(Mid::DisConn, 0, 0);
  set(Mid::AbortConn, 0, 0);
  set(Mid::SendSm, 0, 0);
  set(Mid::RdmaWrCompl, kRdmaComplHeaderSize, 5);
  set(Mid::RdmaRdCompl, kRdmaComplHeaderSize, 6);
  set(Mid::ModeChange, kModeChangeHeaderSize, 7);
  set(Mid::SrcAvailCancel, 0, 0);
  set(Mid::SinkAvailCancel, 0, 0);
  set(Mid::SinkCancelAck, 0, 0);
  set(Mid::ChRcvBuf, kChRcvBufHeaderSize, 8);
  set(Mid::ChRcvBufAck, kChRcvBufHeaderSize, 9);
  set(Mid::SuspComm, kSuspCommHeaderSize, 10);
  set(Mid::SuspCommAck, 0, 0);
  set(Mid::SinkAvail, kSinkAvailHeaderSize, 4);
  set(Mid::SrcAvail, kSrcAvailHeaderSize, 3);
  set(Mid::Data, 0, 0);
  t[static_cast<std::uint8_t>(Mid::Data)].allowed_flags |= flags::kOobPres;
  t[static_cast<std::uint8_t>(Mid::RdmaRdCompl)].allowed_flags |= flags::kReqPipe;
  return t;
}
constexpr std::array<MidInfo, 256> kMidTable = make_mid_table();

// Keep the table's variant indices honest.
template <class T>
constexpr std::size_t ext_index_of() {
  return ExtHeader(T{}).index();
}
static_assert(kMidTable[0x00].ext_index == ext_index_of<HelloHeader>());
static_assert(kMidTable[0x01].ext_index == ext_index_of<HelloAckHeader>());
static_assert(kMidTable[0xFE].ext_index == ext_index_of<SrcAvailHeader>());
static_assert(kMidTable[0xFD].ext_index == ext_index_of<SinkAvailHeader>());
static_assert(kMidTable[0x05].ext_index == ext_index_of<RdmaWrComplHeader>());
static_assert(kMidTable[0x06].ext_index == ext_index_of<RdmaRdComplHeader>());
static_assert(kMidTable[0x07].ext_index == ext_index_of<ModeChangeHeader>());
static_assert(kMidTable[0x0B].ext_index == ext_index_of<ChRcvBufHeader>());
static_assert(kMidTable[0x0C].ext_index == ext_index_of<ChRcvBufAckHeader>());
static_assert(kMidTable[0x0D].ext_index == ext_index_of<SuspCommHeader>());
static_assert(kMidTable[0xFF].ext_index == ext_index_of<std::monostate>());

// ---------------------------------------------------------------------------------------------
// Shared checks

// First nonzero byte in p[from, to), or `to` when all are zero.
inline std::size_t first_nonzero(const std::uint8_t* p, std::size_t from, std::size_t to) noexcept {
  for (std::size_t i = from; i < to; ++i) {
    if (p[i] != 0) return i;
  }
  return to;
}

// Flags: reserved bits, then the defined flags this MID must not carry (CA4-7, CA4-8).
inline Error check_flags(std::uint8_t mid, std::uint8_t f) noexcept {
  if ((f & flags::kReservedMask) != 0) {
    return make_error(Errc::ReservedNonZero, 1, "reserved flag bits 0x%02x set",
                      unsigned{f} & flags::kReservedMask);
  }
  const unsigned bad = unsigned{f} & ~unsigned{kMidTable[mid].allowed_flags};
  if ((bad & flags::kOobPres) != 0) {
    return make_error(Errc::FlagNotAllowed, 1, "OOB_PRES set on %s (only Data may carry it)",
                      mid_name(mid).data());
  }
  if ((bad & flags::kReqPipe) != 0) {
    return make_error(Errc::FlagNotAllowed, 1, "REQ_PIPE set on %s (only RdmaRdCompl may carry it)",
                      mid_name(mid).data());
  }
  return Error{};
}

// Private data after the Hello / HelloAck must be zero.
inline Error check_padding(const std::uint8_t* p, std::size_t len, std::size_t size,
                           const char* what) noexcept {
  const std::size_t i = first_nonzero(p, len, size);
  if (i != size) {
    return make_error(Errc::ReservedNonZero, i, "private data byte %llu after the %s is 0x%02x",
                      ull(i), what, unsigned{p[i]});
  }
  return Error{};
}

inline Error reserved_byte(const std::uint8_t* p, std::size_t i, const char* hdr) noexcept {
  return make_error(Errc::ReservedNonZero, i, "reserved %s byte +%llu is 0x%02x", hdr,
                    ull(i - kBsdhSize), unsigned{p[i]});
}

inline bool nibble_ok(std::uint8_t v) noexcept {
  return v <= 0x0F;
}

// ---------------------------------------------------------------------------------------------
// HH / HAH

// Parses and validates the HH at p + 16; full form reads all 76 bytes, compact the first 16.
Error parse_hh(const std::uint8_t* p, bool compact, HelloHeader& hh) noexcept {
  const std::uint8_t* h = p + kBsdhSize;
  hh.major = static_cast<std::uint8_t>(h[0] >> 4);
  hh.minor = static_cast<std::uint8_t>(h[0] & 0x0F);
  hh.ip_version = static_cast<std::uint8_t>(h[1] >> 4);
  hh.cap = static_cast<std::uint8_t>(h[1] & 0x0F);
  hh.max_adverts = h[3];
  hh.des_rem_rcv_sz = get32(h + 4);
  hh.local_rcv_sz = get32(h + 8);
  hh.local_port = get16(h + 12);
  if (hh.ip_version != kIpv4 && hh.ip_version != kIpv6) {
    return make_error(Errc::BadField, 17, "HH.IPVer %u (must be 4 or 6)", unsigned{hh.ip_version});
  }
  if ((hh.cap & cap::kReservedMask) != 0) {
    return make_error(Errc::ReservedNonZero, 17, "HH.Cap reserved bits 0x%x set",
                      unsigned{hh.cap} & cap::kReservedMask);
  }
  if (h[2] != 0) return reserved_byte(p, 18, "HH");
  if (hh.max_adverts == 0) return make_error(Errc::BadField, 19, "HH.MaxAdverts must be > 0");
  if (std::size_t i = first_nonzero(p, 30, 32); i != 32) return reserved_byte(p, i, "HH");
  if (compact) return Error{};

  std::memcpy(hh.src_ip.data(), h + 16, 16);
  std::memcpy(hh.dst_ip.data(), h + 32, 16);
  // HH+48..75 reserved, except ExtMaxAdverts at HH+50..51 when the capability says so.
  if ((hh.cap & cap::kExtMaxAdverts) != 0) {
    hh.ext_max_adverts = get16(h + 50);
    if (std::size_t i = first_nonzero(p, 64, 66); i != 66) return reserved_byte(p, i, "HH");
    if (std::size_t i = first_nonzero(p, 68, 92); i != 92) return reserved_byte(p, i, "HH");
  } else if (std::size_t i = first_nonzero(p, 64, 92); i != 92) {
    return reserved_byte(p, i, "HH");
  }
  return Error{};
}

// Encode side: an error when a field does not fit its 4-bit wire field (HH and HAH share the
// layout of their first two bytes).
Error check_nibbles(const char* what, std::uint8_t major, std::uint8_t minor,
                    std::uint8_t ip_version, std::uint8_t cap_bits) noexcept {
  if (!nibble_ok(major) || !nibble_ok(minor)) {
    return make_error(Errc::BadField, 16, "%s version %u.%u does not fit 4-bit fields", what,
                      unsigned{major}, unsigned{minor});
  }
  if (!nibble_ok(ip_version) || !nibble_ok(cap_bits)) {
    return make_error(Errc::BadField, 17, "%s.IPVer %u / Cap 0x%x do not fit 4-bit fields", what,
                      unsigned{ip_version}, unsigned{cap_bits});
  }
  return Error{};
}

Error check_hh_encodable(const HelloHeader& hh) noexcept {
  return check_nibbles("HH", hh.major, hh.minor, hh.ip_version, hh.cap);
}

// Writes the HH at p + 16 (76 bytes, or 16 when compact), reserved bytes zero.
void write_hh(std::uint8_t* p, const HelloHeader& hh, bool compact) noexcept {
  std::uint8_t* h = p + kBsdhSize;
  const std::size_t n = compact ? kCompactHelloHeaderSize : kHelloHeaderSize;
  std::memset(h, 0, n);
  h[0] = static_cast<std::uint8_t>((hh.major << 4) | hh.minor);
  h[1] = static_cast<std::uint8_t>((hh.ip_version << 4) | hh.cap);
  h[3] = hh.max_adverts;
  put32(h + 4, hh.des_rem_rcv_sz);
  put32(h + 8, hh.local_rcv_sz);
  put16(h + 12, hh.local_port);
  if (compact) return;
  std::memcpy(h + 16, hh.src_ip.data(), 16);
  std::memcpy(h + 32, hh.dst_ip.data(), 16);
  if ((hh.cap & cap::kExtMaxAdverts) != 0) put16(h + 50, hh.ext_max_adverts);
}

Error check_hah_encodable(const HelloAckHeader& hah) noexcept {
  return check_nibbles("HAH", hah.major, hah.minor, hah.ip_version, hah.cap);
}

void write_hah(std::uint8_t* p, const HelloAckHeader& hah) noexcept {
  std::uint8_t* h = p + kBsdhSize;
  std::memset(h, 0, kHelloAckHeaderSize);
  h[0] = static_cast<std::uint8_t>((hah.major << 4) | hah.minor);
  h[1] = static_cast<std::uint8_t>((hah.ip_version << 4) | hah.cap);
  h[3] = hah.max_adverts;
  put32(h + 4, hah.act_rcv_sz);
}

// Common prologue of decode_hello / decode_hello_ack: size, MID, flags.
Error check_cm_bsdh(std::span<const std::uint8_t> bytes, Mid want, Bsdh& bsdh) noexcept {
  if (bytes.size() < kBsdhSize) {
    return make_error(Errc::TooShort, bytes.size(), "%llu bytes, shorter than the 16-byte BSDH",
                      ull(bytes.size()));
  }
  bsdh = read_bsdh(bytes.data());
  if (bsdh.mid != static_cast<std::uint8_t>(want)) {
    if (!mid_defined(bsdh.mid)) {
      return make_error(Errc::UnknownMid, 0, "unknown MID 0x%02x", unsigned{bsdh.mid});
    }
    return make_error(Errc::BadField, 0, "MID 0x%02x (%s) where %s expected", unsigned{bsdh.mid},
                      mid_name(bsdh.mid).data(), mid_name(static_cast<std::uint8_t>(want)).data());
  }
  return Error{};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Names and sizes

std::string_view mid_name(std::uint8_t mid) noexcept {
  switch (static_cast<Mid>(mid)) {
    case Mid::Hello:
      return "Hello";
    case Mid::HelloAck:
      return "HelloAck";
    case Mid::DisConn:
      return "DisConn";
    case Mid::AbortConn:
      return "AbortConn";
    case Mid::SendSm:
      return "SendSm";
    case Mid::RdmaWrCompl:
      return "RdmaWrCompl";
    case Mid::RdmaRdCompl:
      return "RdmaRdCompl";
    case Mid::ModeChange:
      return "ModeChange";
    case Mid::SrcAvailCancel:
      return "SrcAvailCancel";
    case Mid::SinkAvailCancel:
      return "SinkAvailCancel";
    case Mid::SinkCancelAck:
      return "SinkCancelAck";
    case Mid::ChRcvBuf:
      return "ChRcvBuf";
    case Mid::ChRcvBufAck:
      return "ChRcvBufAck";
    case Mid::SuspComm:
      return "SuspComm";
    case Mid::SuspCommAck:
      return "SuspCommAck";
    case Mid::SinkAvail:
      return "SinkAvail";
    case Mid::SrcAvail:
      return "SrcAvail";
    case Mid::Data:
      return "Data";
  }
  return "Unknown";
}

bool mid_defined(std::uint8_t mid) noexcept {
  return kMidTable[mid].defined;
}

std::size_t ext_header_size(Mid mid) noexcept {
  return kMidTable[static_cast<std::uint8_t>(mid)].ext;
}

std::string_view errc_name(Errc e) noexcept {
  switch (e) {
    case Errc::Ok:
      return "Ok";
    case Errc::TooShort:
      return "TooShort";
    case Errc::LengthMismatch:
      return "LengthMismatch";
    case Errc::UnknownMid:
      return "UnknownMid";
    case Errc::ReservedNonZero:
      return "ReservedNonZero";
    case Errc::FlagNotAllowed:
      return "FlagNotAllowed";
    case Errc::PayloadNotAllowed:
      return "PayloadNotAllowed";
    case Errc::BadField:
      return "BadField";
    case Errc::BufferTooSmall:
      return "BufferTooSmall";
    case Errc::HeaderMismatch:
      return "HeaderMismatch";
  }
  return "Unknown";
}

// ---------------------------------------------------------------------------------------------
// Decode

Result<Bsdh> peek_bsdh(std::span<const std::uint8_t> bytes) noexcept {
  if (bytes.size() < kBsdhSize) {
    return make_error(Errc::TooShort, bytes.size(), "%llu bytes, shorter than the 16-byte BSDH",
                      ull(bytes.size()));
  }
  return read_bsdh(bytes.data());
}

namespace {

// The body of decode_message[_into] (Prefix false) and decode_message_prefix_into (Prefix true).
// It fills `m` in place (m is the value inside the caller's Result, itself the return slot) and
// returns an error only on failure: building a Message on the stack and copying it into the Result
// costs more than the whole decode of a Data message. With Prefix, `bytes` is only the start of a
// message of BSDH.Len bytes; the rules about payload use the whole message's size.
template <bool Prefix>
[[gnu::always_inline]] inline std::optional<Error> decode_into(std::span<const std::uint8_t> bytes,
                                                               Message& m) noexcept {
  const std::size_t n = bytes.size();
  if (n < kBsdhSize) {
    return make_error(Errc::TooShort, n, "%llu bytes, shorter than the 16-byte BSDH", ull(n));
  }
  const std::uint8_t* p = bytes.data();
  m.bsdh = read_bsdh(p);
  const std::uint8_t mid = m.bsdh.mid;
  if (Prefix ? m.bsdh.len < n : m.bsdh.len != n) {
    return make_error(Errc::LengthMismatch, 4,
                      Prefix ? "BSDH.Len %lu but the message's first packet holds %llu bytes"
                             : "BSDH.Len %lu but %llu bytes received",
                      static_cast<unsigned long>(m.bsdh.len), ull(n));
  }
  const std::size_t total = Prefix ? std::size_t{m.bsdh.len} : n;  // the whole message
  const MidInfo& info = kMidTable[mid];
  if (!info.defined) return make_error(Errc::UnknownMid, 0, "unknown MID 0x%02x", unsigned{mid});
  if (mid == static_cast<std::uint8_t>(Mid::Hello)) {
    return make_error(Errc::BadField, 0, "Hello is CM REQ private data, never a SEND");
  }
  if (mid == static_cast<std::uint8_t>(Mid::HelloAck)) {
    return make_error(Errc::BadField, 0, "HelloAck is CM REP private data, never a SEND");
  }
  if ((m.bsdh.flags & ~info.allowed_flags) != 0) {
    if (Error e = check_flags(mid, m.bsdh.flags)) return e;
  }
  const std::size_t hdr = kBsdhSize + info.ext;
  if (n < hdr) {
    return make_error(Errc::TooShort, n, "%s needs its %u-byte %s, %llu bytes follow the BSDH",
                      mid_name(mid).data(), unsigned{info.ext}, kExtNames[info.ext_index],
                      ull(n - kBsdhSize));
  }
  if (total != hdr) {
    if (!info.payload) {
      return make_error(Errc::PayloadNotAllowed, hdr, "%s carries %llu payload bytes",
                        mid_name(mid).data(), ull(total - hdr));
    }
    m.payload = bytes.subspan(hdr);
  }
  const std::uint8_t* h = p + kBsdhSize;
  switch (static_cast<Mid>(mid)) {
    case Mid::Data:
      if ((m.bsdh.flags & flags::kOobPres) != 0 && total == hdr) {
        return make_error(Errc::FlagNotAllowed, 1,
                          "OOB_PRES set on a Data message without payload (no urgent byte)");
      }
      break;
    case Mid::SrcAvail: {
      SrcAvailHeader s{get32(h), get32(h + 4), get64(h + 8)};
      if (s.len < total - hdr) {
        return make_error(Errc::BadField, 16, "SrcAH.Len %lu smaller than the %llu inline bytes",
                          static_cast<unsigned long>(s.len), ull(total - hdr));
      }
      m.ext = s;
      break;
    }
    case Mid::SinkAvail:
      m.ext = SinkAvailHeader{get32(h), get32(h + 4), get64(h + 8), get32(h + 16)};
      break;
    case Mid::RdmaWrCompl:
      m.ext = RdmaWrComplHeader{get32(h)};
      break;
    case Mid::RdmaRdCompl:
      m.ext = RdmaRdComplHeader{get32(h)};
      break;
    case Mid::ModeChange: {
      if ((h[0] & 0x0F) != 0) {
        return make_error(Errc::ReservedNonZero, 16, "MCH reserved bits 0x%02x set",
                          unsigned{h[0]} & 0x0Fu);
      }
      if (std::size_t i = first_nonzero(p, 17, 20); i != 20) return reserved_byte(p, i, "MCH");
      const unsigned mode = (unsigned{h[0]} >> 4) & 0x7u;
      if (mode > static_cast<unsigned>(Mode::Pipelined)) {
        return make_error(Errc::BadField, 16, "ModeChange mode %u is undefined", mode);
      }
      m.ext = ModeChangeHeader{(h[0] & 0x80) != 0, static_cast<Mode>(mode)};
      break;
    }
    case Mid::ChRcvBuf:
      m.ext = ChRcvBufHeader{get32(h)};
      break;
    case Mid::ChRcvBufAck:
      m.ext = ChRcvBufAckHeader{get32(h)};
      break;
    case Mid::SuspComm:
      m.ext = SuspCommHeader{get64(h)};
      break;
    case Mid::Hello:
    case Mid::HelloAck:
    case Mid::DisConn:
    case Mid::AbortConn:
    case Mid::SendSm:
    case Mid::SrcAvailCancel:
    case Mid::SinkAvailCancel:
    case Mid::SinkCancelAck:
    case Mid::SuspCommAck:
      break;
  }
  return std::nullopt;
}

}  // namespace

Result<Message> decode_message(std::span<const std::uint8_t> bytes) noexcept {
  static constexpr Message kEmpty{};  // copying a constant beats zeroing a temporary (g++)
  Result<Message> res{kEmpty};
  if (auto e = decode_into<false>(bytes, res.value())) res = *e;
  return res;  // the only return: named return value optimisation
}

bool decode_message_into(std::span<const std::uint8_t> bytes, Message& out, Error& error) noexcept {
  if (auto e = decode_into<false>(bytes, out)) {
    error = *e;
    return false;
  }
  return true;
}

bool decode_message_prefix_into(std::span<const std::uint8_t> bytes, Message& out,
                                Error& error) noexcept {
  if (auto e = decode_into<true>(bytes, out)) {
    error = *e;
    return false;
  }
  return true;
}

Result<Hello> decode_hello(std::span<const std::uint8_t> private_data) noexcept {
  Hello out;
  if (Error e = check_cm_bsdh(private_data, Mid::Hello, out.bsdh)) return e;
  const std::size_t n = private_data.size();
  if (out.bsdh.len == kHelloMessageSize) {
    out.compact = false;
  } else if (out.bsdh.len == kCompactHelloMessageSize) {
    out.compact = true;
  } else {
    return make_error(Errc::LengthMismatch, 4, "Hello BSDH.Len %lu (must be 92, or 32 compact)",
                      static_cast<unsigned long>(out.bsdh.len));
  }
  const std::size_t len = out.bsdh.len;
  if (n < len) {
    return make_error(Errc::TooShort, n, "%s Hello needs %llu bytes, %llu received",
                      out.compact ? "compact" : "full", ull(len), ull(n));
  }
  const std::uint8_t* p = private_data.data();
  if (Error e = check_flags(out.bsdh.mid, out.bsdh.flags)) return e;
  if (Error e = parse_hh(p, out.compact, out.hh)) return e;
  if (Error e = check_padding(p, len, n, "Hello")) return e;
  return out;
}

Result<HelloAck> decode_hello_ack(std::span<const std::uint8_t> private_data) noexcept {
  HelloAck out;
  if (Error e = check_cm_bsdh(private_data, Mid::HelloAck, out.bsdh)) return e;
  const std::size_t n = private_data.size();
  if (out.bsdh.len != kHelloAckMessageSize) {
    return make_error(Errc::LengthMismatch, 4, "HelloAck BSDH.Len %lu (must be 196)",
                      static_cast<unsigned long>(out.bsdh.len));
  }
  if (n < kHelloAckMessageSize) {
    return make_error(Errc::TooShort, n, "HelloAck needs 196 bytes, %llu received", ull(n));
  }
  if (Error e = check_flags(out.bsdh.mid, out.bsdh.flags)) return e;
  const std::uint8_t* p = private_data.data();
  const std::uint8_t* h = p + kBsdhSize;
  HelloAckHeader& hah = out.hah;
  hah.major = static_cast<std::uint8_t>(h[0] >> 4);
  hah.minor = static_cast<std::uint8_t>(h[0] & 0x0F);
  hah.ip_version = static_cast<std::uint8_t>(h[1] >> 4);
  hah.cap = static_cast<std::uint8_t>(h[1] & 0x0F);
  hah.max_adverts = h[3];
  hah.act_rcv_sz = get32(h + 4);
  if (hah.ip_version != 0 && hah.ip_version != kIpv4 && hah.ip_version != kIpv6) {
    return make_error(Errc::BadField, 17, "HAH.IPVer %u (must be 0, 4 or 6)",
                      unsigned{hah.ip_version});
  }
  if (hah.max_adverts == 0) return make_error(Errc::BadField, 19, "HAH.MaxAdverts must be > 0");
  if ((hah.cap & cap::kReservedMask) != 0) {
    return make_error(Errc::ReservedNonZero, 17, "HAH.Cap reserved bits 0x%x set",
                      unsigned{hah.cap} & cap::kReservedMask);
  }
  if (h[2] != 0) return reserved_byte(p, 18, "HAH");
  if (std::size_t i = first_nonzero(p, 24, kHelloAckMessageSize); i != kHelloAckMessageSize) {
    return reserved_byte(p, i, "HAH");
  }
  if (Error e = check_padding(p, kHelloAckMessageSize, n, "HelloAck")) return e;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Encode

std::size_t encoded_size(const Message& m) noexcept {
  return kBsdhSize + kMidTable[m.bsdh.mid].ext + m.payload.size();
}

Result<std::size_t> encode_message(const Message& m, std::span<std::uint8_t> out) noexcept {
  const std::uint8_t mid = m.bsdh.mid;
  const MidInfo& info = kMidTable[mid];
  if (!info.defined) return make_error(Errc::UnknownMid, 0, "unknown MID 0x%02x", unsigned{mid});
  if (m.ext.index() != info.ext_index) {
    return make_error(Errc::HeaderMismatch, kBsdhSize, "%s needs %s but Message.ext holds %s",
                      mid_name(mid).data(), kExtNames[info.ext_index],
                      m.ext.valueless_by_exception() ? "nothing" : kExtNames[m.ext.index()]);
  }
  const std::size_t hdr = kBsdhSize + info.ext;
  if (!m.payload.empty() && !info.payload) {
    return make_error(Errc::PayloadNotAllowed, hdr, "%s carries %llu payload bytes",
                      mid_name(mid).data(), ull(m.payload.size()));
  }
  if (m.payload.size() > std::numeric_limits<std::uint32_t>::max() - hdr) {
    return make_error(Errc::BadField, 4, "%llu payload bytes do not fit BSDH.Len",
                      ull(m.payload.size()));
  }
  const std::size_t size = hdr + m.payload.size();
  if (out.size() < size) {
    return make_error(Errc::BufferTooSmall, out.size(), "need %llu bytes, output holds %llu",
                      ull(size), ull(out.size()));
  }
  std::uint8_t* p = out.data();
  std::uint8_t* h = p + kBsdhSize;
  switch (static_cast<Mid>(mid)) {
    case Mid::Hello:
      if (const auto* hh = std::get_if<HelloHeader>(&m.ext)) {
        if (Error e = check_hh_encodable(*hh)) return e;
        write_hh(p, *hh, false);
      }
      break;
    case Mid::HelloAck:
      if (const auto* hah = std::get_if<HelloAckHeader>(&m.ext)) {
        if (Error e = check_hah_encodable(*hah)) return e;
        write_hah(p, *hah);
      }
      break;
    case Mid::SrcAvail:
      if (const auto* s = std::get_if<SrcAvailHeader>(&m.ext)) {
        put32(h, s->len);
        put32(h + 4, s->rkey);
        put64(h + 8, s->va);
      }
      break;
    case Mid::SinkAvail:
      if (const auto* s = std::get_if<SinkAvailHeader>(&m.ext)) {
        put32(h, s->len);
        put32(h + 4, s->rkey);
        put64(h + 8, s->va);
        put32(h + 16, s->non_disc);
      }
      break;
    case Mid::RdmaWrCompl:
      if (const auto* s = std::get_if<RdmaWrComplHeader>(&m.ext)) put32(h, s->len);
      break;
    case Mid::RdmaRdCompl:
      if (const auto* s = std::get_if<RdmaRdComplHeader>(&m.ext)) put32(h, s->len);
      break;
    case Mid::ModeChange:
      if (const auto* s = std::get_if<ModeChangeHeader>(&m.ext)) {
        const auto mode = static_cast<unsigned>(s->mode);
        if (mode > 7) {
          return make_error(Errc::BadField, kBsdhSize, "ModeChange mode %u does not fit 3 bits",
                            mode);
        }
        h[0] = static_cast<std::uint8_t>((s->send_half ? 0x80u : 0u) | (mode << 4));
        h[1] = h[2] = h[3] = 0;
      }
      break;
    case Mid::ChRcvBuf:
      if (const auto* s = std::get_if<ChRcvBufHeader>(&m.ext)) put32(h, s->size);
      break;
    case Mid::ChRcvBufAck:
      if (const auto* s = std::get_if<ChRcvBufAckHeader>(&m.ext)) put32(h, s->size);
      break;
    case Mid::SuspComm:
      if (const auto* s = std::get_if<SuspCommHeader>(&m.ext)) put64(h, s->service_id);
      break;
    case Mid::DisConn:
    case Mid::AbortConn:
    case Mid::SendSm:
    case Mid::SrcAvailCancel:
    case Mid::SinkAvailCancel:
    case Mid::SinkCancelAck:
    case Mid::SuspCommAck:
    case Mid::Data:
      break;
  }
  write_bsdh(p, m.bsdh, static_cast<std::uint32_t>(size));
  // memmove: the payload may be a view into `out` itself (re-encoding in place).
  if (!m.payload.empty()) std::memmove(p + hdr, m.payload.data(), m.payload.size());
  return size;
}

Result<std::size_t> encode_bsdh(const Bsdh& h, std::span<std::uint8_t> out) noexcept {
  if (out.size() < kBsdhSize) {
    return make_error(Errc::BufferTooSmall, out.size(), "need 16 bytes, output holds %llu",
                      ull(out.size()));
  }
  write_bsdh(out.data(), h, h.len);
  return kBsdhSize;
}

Result<std::size_t> encode_hello(const Bsdh& bsdh, const HelloHeader& hh, bool compact,
                                 std::span<std::uint8_t> out) noexcept {
  if (bsdh.mid != static_cast<std::uint8_t>(Mid::Hello)) {
    return make_error(Errc::HeaderMismatch, 0, "encode_hello needs MID Hello, got 0x%02x (%s)",
                      unsigned{bsdh.mid}, mid_name(bsdh.mid).data());
  }
  const std::size_t size = compact ? kCompactHelloMessageSize : kHelloMessageSize;
  if (out.size() < size) {
    return make_error(Errc::BufferTooSmall, out.size(), "need %llu bytes, output holds %llu",
                      ull(size), ull(out.size()));
  }
  if (Error e = check_hh_encodable(hh)) return e;
  write_hh(out.data(), hh, compact);
  write_bsdh(out.data(), bsdh, static_cast<std::uint32_t>(size));
  return size;
}

Result<std::size_t> encode_hello_ack(const Bsdh& bsdh, const HelloAckHeader& hah,
                                     std::span<std::uint8_t> out) noexcept {
  if (bsdh.mid != static_cast<std::uint8_t>(Mid::HelloAck)) {
    return make_error(Errc::HeaderMismatch, 0,
                      "encode_hello_ack needs MID HelloAck, got 0x%02x (%s)", unsigned{bsdh.mid},
                      mid_name(bsdh.mid).data());
  }
  if (out.size() < kHelloAckMessageSize) {
    return make_error(Errc::BufferTooSmall, out.size(), "need 196 bytes, output holds %llu",
                      ull(out.size()));
  }
  if (Error e = check_hah_encodable(hah)) return e;
  write_hah(out.data(), hah);
  write_bsdh(out.data(), bsdh, static_cast<std::uint32_t>(kHelloAckMessageSize));
  return kHelloAckMessageSize;
}

}  // namespace sdp::wire

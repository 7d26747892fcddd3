// Tests for the SDP wire codec (sdp/wire.hpp).
//
// Every expected byte vector below is written by hand from the layouts in IBA Vol. 1 Annex A4 (as
// digested in shared/research/sdp-wire.md §1-§4), never produced by the encoder. Unless a test says
// otherwise the BSDH carries Bufs 0x0005, MSeq 0x01020304 and MSeqAck 0x0A0B0C0D so that byte order
// mistakes show.
#include "sdp/wire.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sdp::wire {
// Readable gtest failure messages.
void PrintTo(Errc e, std::ostream* os) {
  *os << errc_name(e);
}
void PrintTo(const Bsdh& h, std::ostream* os) {
  *os << "Bsdh{mid=" << unsigned{h.mid} << " flags=" << unsigned{h.flags} << " bufs=" << h.bufs
      << " len=" << h.len << " mseq=" << h.mseq << " mseq_ack=" << h.mseq_ack << "}";
}
}  // namespace sdp::wire

namespace {

using namespace sdp::wire;
using Bytes = std::vector<std::uint8_t>;

constexpr std::uint8_t u8(Mid m) {
  return static_cast<std::uint8_t>(m);
}

// The BSDH most tests use (len is computed by the encoder and ignored here).
Bsdh bsdh(Mid mid, std::uint8_t fl = 0) {
  Bsdh h;
  h.mid = u8(mid);
  h.flags = fl;
  h.bufs = 0x0005;
  h.mseq = 0x01020304;
  h.mseq_ack = 0x0A0B0C0D;
  return h;
}

Message msg(Mid mid, ExtHeader ext = {}, std::span<const std::uint8_t> payload = {},
            std::uint8_t fl = 0) {
  Message m;
  m.bsdh = bsdh(mid, fl);
  m.ext = ext;
  m.payload = payload;
  return m;
}

Bytes to_bytes(std::span<const std::uint8_t> s) {
  return Bytes(s.begin(), s.end());
}

// Encodes m and compares with `expected` byte for byte, then decodes `expected` and compares with
// m.
void expect_codec(const Message& m, const Bytes& expected) {
  SCOPED_TRACE(std::string("MID ") + std::string(mid_name(m.bsdh.mid)));
  EXPECT_EQ(encoded_size(m), expected.size());

  std::array<std::uint8_t, 512> buf;
  buf.fill(0xAA);
  const auto enc = encode_message(m, buf);
  ASSERT_TRUE(enc.ok()) << enc.error().reason();
  ASSERT_EQ(*enc, expected.size());
  EXPECT_EQ(Bytes(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*enc)), expected);
  EXPECT_EQ(buf[*enc], 0xAA) << "encoder wrote past the message";

  const auto dec = decode_message(expected);
  ASSERT_TRUE(dec.ok()) << dec.error().reason();
  Bsdh want = m.bsdh;
  want.len = static_cast<std::uint32_t>(expected.size());
  EXPECT_EQ(dec->bsdh, want);
  EXPECT_TRUE(dec->ext == m.ext) << "ext index " << dec->ext.index() << " vs " << m.ext.index();
  EXPECT_EQ(to_bytes(dec->payload), to_bytes(m.payload));
  if (!m.payload.empty()) {  // the payload is a view into the decoded buffer
    EXPECT_EQ(dec->payload.data(), expected.data() + (expected.size() - m.payload.size()));
  }
}

void expect_error(const Error& e, Errc code, std::uint32_t offset, std::string_view text) {
  EXPECT_EQ(e.code, code) << e.reason();
  EXPECT_EQ(e.offset, offset) << e.reason();
  EXPECT_NE(e.reason().find(text), std::string_view::npos)
      << "reason \"" << e.reason() << "\" lacks \"" << text << "\"";
  EXPECT_LT(e.reason().size(), e.text.size());
}

#define EXPECT_REJECT(expr, code, offset, text)   \
  do {                                            \
    SCOPED_TRACE(#expr);                          \
    const auto r_ = (expr);                       \
    ASSERT_FALSE(r_.ok());                        \
    expect_error(r_.error(), code, offset, text); \
  } while (0)

// ---------------------------------------------------------------------------------------------
// Hand-written vectors

// Data, flags OOB_PRES|OOB_PEND, payload "hello".
const Bytes kData = {0xFF, 0x03, 0x00, 0x05, 0x00, 0x00, 0x00, 0x15, 0x01, 0x02, 0x03,
                     0x04, 0x0A, 0x0B, 0x0C, 0x0D, 0x68, 0x65, 0x6C, 0x6C, 0x6F};
// DisConn: BSDH only.
const Bytes kDisConn = {0x02, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x10,
                        0x01, 0x02, 0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D};
// RdmaRdCompl with REQ_PIPE, RRCH.Len 0x89ABCDEF.
const Bytes kRdmaRdCompl = {0x06, 0x04, 0x00, 0x05, 0x00, 0x00, 0x00, 0x14, 0x01, 0x02,
                            0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D, 0x89, 0xAB, 0xCD, 0xEF};
// ModeChange: send half -> Pipelined (byte0 0xA0).
const Bytes kModeChange = {0x07, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x14, 0x01, 0x02,
                           0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D, 0xA0, 0x00, 0x00, 0x00};
// SrcAvail: SrcAH Len 65536, R_Key 0xDEADBEEF, VA 0x0123456789ABCDEF, 4 inline bytes.
const Bytes kSrcAvail = {0xFE, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x24, 0x01, 0x02, 0x03, 0x04,
                         0x0A, 0x0B, 0x0C, 0x0D, 0x00, 0x01, 0x00, 0x00, 0xDE, 0xAD, 0xBE, 0xEF,
                         0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xF0, 0xF1, 0xF2, 0xF3};

// Full Hello, IPv4 10.0.0.1 -> 10.0.0.2, version 2.2, no caps, MaxAdverts 1, both receive sizes
// 32784, LocalPort 50000, Bufs 5, MSeq/MSeqAck 0.
const Bytes kHelloV4 = {
    0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x5C, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x22, 0x40, 0x00, 0x01, 0x00, 0x00, 0x80, 0x10, 0x00, 0x00, 0x80, 0x10, 0xC3, 0x50, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0A, 0x00, 0x00, 0x01,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0A, 0x00, 0x00, 0x02,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
// Full Hello, IPv6 fe80::1 -> fe80::2, caps INVALIDATE|EXT_MAXADVERTS (ExtMaxAdverts 0x0102 at
// message offset 66), MaxAdverts 255, DesRemRcvSz 65552, LocalRcvSz 8208, port 5001, Bufs 64.
const Bytes kHelloV6 = {
    0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x5C, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x22, 0x63, 0x00, 0xFF, 0x00, 0x01, 0x00, 0x10, 0x00, 0x00, 0x20, 0x10, 0x13, 0x89, 0x00, 0x00,
    0xFE, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    0xFE, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
    0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
// Compact Hello (IP CM mode): BSDH Len 32, Bufs 8, IPv4 + INVALIDATE cap, MaxAdverts 4, 32784 /
// 32784, port 0xABCD.
const Bytes kHelloCompact = {0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00,
                             0x00, 0x00, 0x00, 0x00, 0x00, 0x22, 0x41, 0x00, 0x04, 0x00, 0x00,
                             0x80, 0x10, 0x00, 0x00, 0x80, 0x10, 0xAB, 0xCD, 0x00, 0x00};
// HelloAck: Bufs 16, version 2.2, IPVer 0 (as OFED), MaxAdverts 1, ActRcvSz 32784; then 172
// reserved zero bytes.
Bytes hello_ack_bytes() {
  static constexpr std::uint8_t head[] = {0x01, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0xC4,
                                          0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                          0x22, 0x00, 0x00, 0x01, 0x00, 0x00, 0x80, 0x10};
  Bytes v(196, 0x00);
  std::copy(std::begin(head), std::end(head), v.begin());
  return v;
}

HelloHeader hh_v4() {
  HelloHeader hh;
  hh.major = 2;
  hh.minor = 2;
  hh.ip_version = kIpv4;
  hh.cap = 0;
  hh.max_adverts = 1;
  hh.des_rem_rcv_sz = 32784;
  hh.local_rcv_sz = 32784;
  hh.local_port = 50000;
  hh.src_ip = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1};
  hh.dst_ip = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2};
  return hh;
}

// ---------------------------------------------------------------------------------------------
// BSDH

TEST(WireBsdh, EncodeIsBigEndianAndVerbatim) {
  const Bsdh h{0xFF, 0x03, 0x0102, 0x03040506, 0x0708090A, 0x0B0C0D0E};
  const Bytes expected = {0xFF, 0x03, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
                          0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E};
  std::array<std::uint8_t, 16> out{};
  const auto r = encode_bsdh(h, out);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 16u);
  EXPECT_EQ(to_bytes(out), expected);
}

TEST(WireBsdh, EncodeWritesMalformedValuesVerbatim) {
  const Bsdh h{0x42, 0xF8, 0xFFFF, 0x00000003, 0xFFFFFFFF, 0x80000000};
  const Bytes expected = {0x42, 0xF8, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x03,
                          0xFF, 0xFF, 0xFF, 0xFF, 0x80, 0x00, 0x00, 0x00};
  std::array<std::uint8_t, 20> out{};
  ASSERT_TRUE(encode_bsdh(h, out).ok());
  EXPECT_EQ(Bytes(out.begin(), out.begin() + 16), expected);
  EXPECT_EQ(out[16], 0);
}

TEST(WireBsdh, PeekReadsWithoutValidation) {
  const Bytes v = {0x42, 0xF8, 0x01, 0x02, 0x00, 0x00, 0x00, 0x63, 0x11,
                   0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99};
  const auto r = peek_bsdh(v);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (Bsdh{0x42, 0xF8, 0x0102, 99, 0x11223344, 0x55667788}));
  const auto again = peek_bsdh(kData);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, (Bsdh{0xFF, 0x03, 5, 21, 0x01020304, 0x0A0B0C0D}));
}

TEST(WireBsdh, PeekTooShort) {
  EXPECT_REJECT(peek_bsdh(std::span(kData).first(15)), Errc::TooShort, 15,
                "15 bytes, shorter than the 16-byte BSDH");
  EXPECT_REJECT(peek_bsdh({}), Errc::TooShort, 0, "shorter than the 16-byte BSDH");
}

TEST(WireBsdh, EncodeBufferTooSmall) {
  std::array<std::uint8_t, 15> out{};
  EXPECT_REJECT(encode_bsdh(Bsdh{}, out), Errc::BufferTooSmall, 15, "need 16 bytes");
}

// ---------------------------------------------------------------------------------------------
// One byte-exact test per MID

TEST(WireMessage, Hello) {
  std::array<std::uint8_t, 92> out{};
  const auto r = encode_hello(Bsdh{0x00, 0x00, 5, 0, 0, 0}, hh_v4(), false, out);
  ASSERT_TRUE(r.ok()) << r.error().reason();
  EXPECT_EQ(*r, 92u);
  EXPECT_EQ(to_bytes(out), kHelloV4);

  const auto d = decode_hello(kHelloV4);
  ASSERT_TRUE(d.ok()) << d.error().reason();
  EXPECT_FALSE(d->compact);
  EXPECT_EQ(d->bsdh, (Bsdh{0x00, 0x00, 5, 92, 0, 0}));
  EXPECT_EQ(d->hh, hh_v4());
  EXPECT_EQ(d->hh.ext_max_adverts, 0);
}

TEST(WireMessage, HelloIpv6WithExtMaxAdverts) {
  HelloHeader hh;
  hh.ip_version = kIpv6;
  hh.cap = cap::kInvalidate | cap::kExtMaxAdverts;
  hh.max_adverts = 255;
  hh.des_rem_rcv_sz = 65552;
  hh.local_rcv_sz = 8208;
  hh.local_port = 5001;
  hh.src_ip = {0xFE, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  hh.dst_ip = {0xFE, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  hh.ext_max_adverts = 0x0102;
  const Bsdh h{0x00, 0x00, 64, 0, 0, 0};
  std::array<std::uint8_t, 100> out;
  out.fill(0xEE);
  const auto r = encode_hello(h, hh, false, out);
  ASSERT_TRUE(r.ok()) << r.error().reason();
  ASSERT_EQ(*r, 92u);
  EXPECT_EQ(Bytes(out.begin(), out.begin() + 92), kHelloV6);
  EXPECT_EQ(out[92], 0xEE);

  const auto d = decode_hello(kHelloV6);
  ASSERT_TRUE(d.ok()) << d.error().reason();
  EXPECT_FALSE(d->compact);
  EXPECT_EQ(d->bsdh, (Bsdh{0x00, 0x00, 64, 92, 0, 0}));
  EXPECT_EQ(d->hh, hh);
}

TEST(WireMessage, HelloExtMaxAdvertsNotEncodedWithoutCap) {
  HelloHeader hh = hh_v4();
  hh.ext_max_adverts = 0x7777;  // cap bit clear: reserved bytes stay zero
  std::array<std::uint8_t, 92> out{};
  ASSERT_TRUE(encode_hello(Bsdh{0x00, 0x00, 5, 0, 0, 0}, hh, false, out).ok());
  EXPECT_EQ(to_bytes(out), kHelloV4);
}

TEST(WireMessage, CompactHello) {
  HelloHeader hh;
  hh.ip_version = kIpv4;
  hh.cap = cap::kInvalidate;
  hh.max_adverts = 4;
  hh.des_rem_rcv_sz = 32784;
  hh.local_rcv_sz = 32784;
  hh.local_port = 0xABCD;
  hh.src_ip[15] = 9;                   // not on the wire in compact form
  std::array<std::uint8_t, 56> out{};  // IP CM private data left after the 36-byte header
  const auto r = encode_hello(Bsdh{0x00, 0x00, 8, 0, 0, 0}, hh, true, out);
  ASSERT_TRUE(r.ok()) << r.error().reason();
  ASSERT_EQ(*r, 32u);
  EXPECT_EQ(Bytes(out.begin(), out.begin() + 32), kHelloCompact);

  Bytes padded = kHelloCompact;
  padded.resize(kIpCmPrivateDataSize, 0);
  for (const Bytes& in : {kHelloCompact, padded}) {
    const auto d = decode_hello(in);
    ASSERT_TRUE(d.ok()) << d.error().reason();
    EXPECT_TRUE(d->compact);
    EXPECT_EQ(d->bsdh, (Bsdh{0x00, 0x00, 8, 32, 0, 0}));
    HelloHeader want = hh;
    want.src_ip = {};  // decode leaves the addresses zero
    EXPECT_EQ(d->hh, want);
  }
}

TEST(WireMessage, HelloAck) {
  const Bytes expected = hello_ack_bytes();
  HelloAckHeader hah;
  hah.major = 2;
  hah.minor = 2;
  hah.ip_version = 0;
  hah.max_adverts = 1;
  hah.act_rcv_sz = 32784;
  const Bsdh h{0x01, 0x00, 16, 0, 0, 0};
  std::array<std::uint8_t, 196> out;
  out.fill(0xAA);
  const auto r = encode_hello_ack(h, hah, out);
  ASSERT_TRUE(r.ok()) << r.error().reason();
  EXPECT_EQ(*r, 196u);
  EXPECT_EQ(to_bytes(out), expected);

  Bytes padded = expected;
  padded.resize(224, 0);
  for (const Bytes& in : {expected, padded}) {
    const auto d = decode_hello_ack(in);
    ASSERT_TRUE(d.ok()) << d.error().reason();
    EXPECT_EQ(d->bsdh, (Bsdh{0x01, 0x00, 16, 196, 0, 0}));
    EXPECT_EQ(d->hah, hah);
  }
}

TEST(WireMessage, HelloAckIpv6WithCap) {
  Bytes v = hello_ack_bytes();
  v[17] = 0x61;  // IPVer 6, INVALIDATE
  v[19] = 0x08;  // MaxAdverts 8
  const auto d = decode_hello_ack(v);
  ASSERT_TRUE(d.ok()) << d.error().reason();
  EXPECT_EQ(d->hah.ip_version, 6);
  EXPECT_EQ(d->hah.cap, cap::kInvalidate);
  EXPECT_EQ(d->hah.max_adverts, 8);
  std::array<std::uint8_t, 196> out{};
  ASSERT_TRUE(encode_hello_ack(d->bsdh, d->hah, out).ok());
  EXPECT_EQ(to_bytes(out), v);
  v[17] = 0x40;  // IPVer 4 is accepted too
  EXPECT_TRUE(decode_hello_ack(v).ok());
}

TEST(WireMessage, HelloAndHelloAckThroughEncodeMessage) {
  // encode_message can still put a Hello / HelloAck on the wire (full form), e.g. for a harness
  // that checks a peer refuses them as SENDs; decode_message refuses them.
  std::array<std::uint8_t, 256> out{};
  const auto r = encode_message(msg(Mid::Hello, hh_v4()), out);
  ASSERT_TRUE(r.ok()) << r.error().reason();
  Bytes want = kHelloV4;
  const Bytes seq = {0x01, 0x02, 0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D};  // MSeq, MSeqAck
  std::copy(seq.begin(), seq.end(), want.begin() + 8);
  EXPECT_EQ(Bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(*r)), want);
  EXPECT_EQ(encoded_size(msg(Mid::Hello, hh_v4())), 92u);

  HelloAckHeader hah;
  hah.act_rcv_sz = 32784;
  const auto r2 = encode_message(msg(Mid::HelloAck, hah), out);
  ASSERT_TRUE(r2.ok()) << r2.error().reason();
  Bytes want2 = hello_ack_bytes();
  const Bytes bsdh_bytes = {0x01, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0xC4,
                            0x01, 0x02, 0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D};
  std::copy(bsdh_bytes.begin(), bsdh_bytes.end(), want2.begin());
  EXPECT_EQ(Bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(*r2)), want2);
}

TEST(WireMessage, DisConn) {
  expect_codec(msg(Mid::DisConn), kDisConn);
}

TEST(WireMessage, AbortConn) {
  expect_codec(msg(Mid::AbortConn), {0x03, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x10, 0x01, 0x02,
                                     0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D});
}

TEST(WireMessage, SendSmWithOobPend) {
  expect_codec(msg(Mid::SendSm, {}, {}, flags::kOobPend),
               {0x04, 0x02, 0x00, 0x05, 0x00, 0x00, 0x00, 0x10, 0x01, 0x02, 0x03, 0x04, 0x0A, 0x0B,
                0x0C, 0x0D});
}

TEST(WireMessage, RdmaWrCompl) {
  expect_codec(msg(Mid::RdmaWrCompl, RdmaWrComplHeader{0x00012345}),
               {0x05, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x14, 0x01, 0x02,
                0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D, 0x00, 0x01, 0x23, 0x45});
}

TEST(WireMessage, RdmaRdComplWithReqPipe) {
  expect_codec(msg(Mid::RdmaRdCompl, RdmaRdComplHeader{0x89ABCDEF}, {}, flags::kReqPipe),
               kRdmaRdCompl);
}

TEST(WireMessage, ModeChange) {
  expect_codec(msg(Mid::ModeChange, ModeChangeHeader{true, Mode::Pipelined}), kModeChange);
  expect_codec(msg(Mid::ModeChange, ModeChangeHeader{false, Mode::Combined}),
               {0x07, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x14, 0x01, 0x02,
                0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D, 0x10, 0x00, 0x00, 0x00});
  expect_codec(msg(Mid::ModeChange, ModeChangeHeader{true, Mode::Buffered}),
               {0x07, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x14, 0x01, 0x02,
                0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D, 0x80, 0x00, 0x00, 0x00});
  expect_codec(msg(Mid::ModeChange, ModeChangeHeader{false, Mode::Pipelined}),
               {0x07, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x14, 0x01, 0x02,
                0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x00, 0x00, 0x00});
}

TEST(WireMessage, SrcAvailCancel) {
  expect_codec(msg(Mid::SrcAvailCancel), {0x08, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x10, 0x01,
                                          0x02, 0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D});
}

TEST(WireMessage, SinkAvailCancel) {
  expect_codec(msg(Mid::SinkAvailCancel), {0x09, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x10, 0x01,
                                           0x02, 0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D});
}

TEST(WireMessage, SinkCancelAck) {
  expect_codec(msg(Mid::SinkCancelAck), {0x0A, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x10, 0x01, 0x02,
                                         0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D});
}

TEST(WireMessage, ChRcvBuf) {
  expect_codec(msg(Mid::ChRcvBuf, ChRcvBufHeader{32784}),
               {0x0B, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x14, 0x01, 0x02,
                0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D, 0x00, 0x00, 0x80, 0x10});
}

TEST(WireMessage, ChRcvBufAck) {
  expect_codec(msg(Mid::ChRcvBufAck, ChRcvBufAckHeader{32768}),
               {0x0C, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x14, 0x01, 0x02,
                0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D, 0x00, 0x00, 0x80, 0x00});
}

TEST(WireMessage, SuspComm) {
  expect_codec(msg(Mid::SuspComm, SuspCommHeader{sdp_service_id(5002)}),
               {0x0D, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x18, 0x01, 0x02, 0x03, 0x04,
                0x0A, 0x0B, 0x0C, 0x0D, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x13, 0x8A});
}

TEST(WireMessage, SuspCommAck) {
  expect_codec(msg(Mid::SuspCommAck), {0x0E, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x10, 0x01, 0x02,
                                       0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D});
}

TEST(WireMessage, SinkAvailWithPayload) {
  static const std::uint8_t payload[] = {'a', 'b', 'c'};
  expect_codec(
      msg(Mid::SinkAvail, SinkAvailHeader{0x00100000, 0x11223344, 0x00007F0012345678, 7}, payload),
      {0xFD, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x27, 0x01, 0x02, 0x03, 0x04, 0x0A,
       0x0B, 0x0C, 0x0D, 0x00, 0x10, 0x00, 0x00, 0x11, 0x22, 0x33, 0x44, 0x00, 0x00,
       0x7F, 0x00, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x07, 0x61, 0x62, 0x63});
}

TEST(WireMessage, SinkAvailWithoutPayload) {
  expect_codec(msg(Mid::SinkAvail, SinkAvailHeader{1, 2, 3, 4}),
               {0xFD, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x24, 0x01, 0x02, 0x03, 0x04,
                0x0A, 0x0B, 0x0C, 0x0D, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02,
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04});
}

TEST(WireMessage, SrcAvailWithInlineBytes) {
  static const std::uint8_t payload[] = {0xF0, 0xF1, 0xF2, 0xF3};
  expect_codec(msg(Mid::SrcAvail, SrcAvailHeader{65536, 0xDEADBEEF, 0x0123456789ABCDEF}, payload),
               kSrcAvail);
}

TEST(WireMessage, SrcAvailPipelinedNoInline) {
  expect_codec(msg(Mid::SrcAvail, SrcAvailHeader{0xFFFFFFFF, 1, 0xFFFFFFFFFFFFFFFF}),
               {0xFE, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x20, 0x01, 0x02, 0x03,
                0x04, 0x0A, 0x0B, 0x0C, 0x0D, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00,
                0x00, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF});
}

TEST(WireMessage, SrcAvailLenEqualToInlineIsAccepted) {
  // SrcAH.Len 4 == the 4 inline bytes.
  static const std::uint8_t payload[] = {0xF0, 0xF1, 0xF2, 0xF3};
  expect_codec(msg(Mid::SrcAvail, SrcAvailHeader{4, 0xDEADBEEF, 0x0123456789ABCDEF}, payload),
               {0xFE, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x24, 0x01, 0x02, 0x03, 0x04,
                0x0A, 0x0B, 0x0C, 0x0D, 0x00, 0x00, 0x00, 0x04, 0xDE, 0xAD, 0xBE, 0xEF,
                0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xF0, 0xF1, 0xF2, 0xF3});
}

TEST(WireMessage, DataWithUrgentPayload) {
  static const std::uint8_t payload[] = {'h', 'e', 'l', 'l', 'o'};
  expect_codec(msg(Mid::Data, {}, payload, flags::kOobPres | flags::kOobPend), kData);
}

TEST(WireMessage, DataCreditUpdate) {
  Message m = msg(Mid::Data);
  m.bsdh.bufs = 0x1234;
  expect_codec(m, {0xFF, 0x00, 0x12, 0x34, 0x00, 0x00, 0x00, 0x10, 0x01, 0x02, 0x03, 0x04, 0x0A,
                   0x0B, 0x0C, 0x0D});
}

TEST(WireMessage, EncodeIgnoresGivenLen) {
  Message m = msg(Mid::DisConn);
  m.bsdh.len = 999;
  std::array<std::uint8_t, 16> out{};
  ASSERT_TRUE(encode_message(m, out).ok());
  EXPECT_EQ(to_bytes(out), kDisConn);
}

TEST(WireMessage, EncodeInPlace) {
  // The payload may already sit where the encoder puts it (a view into the output buffer).
  std::array<std::uint8_t, 64> buf{};
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<std::uint8_t>(i);
  const std::span<const std::uint8_t> payload(buf.data() + 32, 10);
  const auto r = encode_message(msg(Mid::SrcAvail, SrcAvailHeader{10, 2, 3}, payload), buf);
  ASSERT_TRUE(r.ok()) << r.error().reason();
  EXPECT_EQ(*r, 42u);
  for (std::size_t i = 32; i < 42; ++i) EXPECT_EQ(buf[i], i);
  const auto d = decode_message(std::span(buf).first(42));
  ASSERT_TRUE(d.ok()) << d.error().reason();
  EXPECT_EQ(d->payload.size(), 10u);
}

// ---------------------------------------------------------------------------------------------
// Round trips

struct Lcg {
  std::uint64_t s;
  std::uint32_t next32() {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<std::uint32_t>(s >> 32);
  }
  std::uint64_t next64() { return (std::uint64_t{next32()} << 32) | next32(); }
  std::uint8_t next8() { return static_cast<std::uint8_t>(next32()); }
  std::uint16_t next16() { return static_cast<std::uint16_t>(next32()); }
};

constexpr Mid kSendMids[] = {
    Mid::DisConn,       Mid::AbortConn,  Mid::SendSm,         Mid::RdmaWrCompl,
    Mid::RdmaRdCompl,   Mid::ModeChange, Mid::SrcAvailCancel, Mid::SinkAvailCancel,
    Mid::SinkCancelAck, Mid::ChRcvBuf,   Mid::ChRcvBufAck,    Mid::SuspComm,
    Mid::SuspCommAck,   Mid::SinkAvail,  Mid::SrcAvail,       Mid::Data};

Message random_message(Mid mid, Lcg& r, std::span<const std::uint8_t> pool) {
  Message m;
  m.bsdh = Bsdh{u8(mid), 0, r.next16(), 0, r.next32(), r.next32()};
  std::uint8_t allowed = flags::kOobPend;
  if (mid == Mid::Data) allowed |= flags::kOobPres;
  if (mid == Mid::RdmaRdCompl) allowed |= flags::kReqPipe;
  m.bsdh.flags = static_cast<std::uint8_t>(r.next8() & allowed);
  if (mid_carries_payload(mid)) m.payload = pool.first(r.next32() % (pool.size() + 1));
  if (mid == Mid::Data && m.payload.empty()) {
    m.bsdh.flags = static_cast<std::uint8_t>(m.bsdh.flags & ~flags::kOobPres);
  }
  switch (mid) {
    case Mid::RdmaWrCompl:
      m.ext = RdmaWrComplHeader{r.next32()};
      break;
    case Mid::RdmaRdCompl:
      m.ext = RdmaRdComplHeader{r.next32()};
      break;
    case Mid::ModeChange:
      m.ext = ModeChangeHeader{(r.next8() & 1) != 0, static_cast<Mode>(r.next32() % 3)};
      break;
    case Mid::ChRcvBuf:
      m.ext = ChRcvBufHeader{r.next32()};
      break;
    case Mid::ChRcvBufAck:
      m.ext = ChRcvBufAckHeader{r.next32()};
      break;
    case Mid::SuspComm:
      m.ext = SuspCommHeader{r.next64()};
      break;
    case Mid::SinkAvail:
      m.ext = SinkAvailHeader{r.next32(), r.next32(), r.next64(), r.next32()};
      break;
    case Mid::SrcAvail:
      m.ext = SrcAvailHeader{static_cast<std::uint32_t>(m.payload.size()) + (r.next32() >> 1),
                             r.next32(), r.next64()};
      break;
    default:
      break;
  }
  return m;
}

TEST(WireRoundTrip, EveryMessageMid) {
  std::array<std::uint8_t, 300> pool{};
  Lcg r{42};
  for (auto& b : pool) b = r.next8();
  for (int iter = 0; iter < 300; ++iter) {
    for (Mid mid : kSendMids) {
      SCOPED_TRACE(std::string(mid_name(u8(mid))) + " iteration " + std::to_string(iter));
      const Message m = random_message(mid, r, pool);
      std::array<std::uint8_t, 400> a{};
      const auto n = encode_message(m, a);
      ASSERT_TRUE(n.ok()) << n.error().reason();
      ASSERT_EQ(*n, encoded_size(m));
      const auto d = decode_message(std::span(a).first(*n));
      ASSERT_TRUE(d.ok()) << d.error().reason();
      Bsdh want = m.bsdh;
      want.len = static_cast<std::uint32_t>(*n);
      ASSERT_EQ(d->bsdh, want);
      ASSERT_TRUE(d->ext == m.ext);
      ASSERT_EQ(to_bytes(d->payload), to_bytes(m.payload));
      std::array<std::uint8_t, 400> b{};
      const auto n2 = encode_message(*d, b);
      ASSERT_TRUE(n2.ok());
      ASSERT_EQ(*n2, *n);
      ASSERT_EQ(a, b);
    }
  }
}

TEST(WireRoundTrip, HelloAndHelloAck) {
  Lcg r{7};
  for (int iter = 0; iter < 500; ++iter) {
    SCOPED_TRACE(iter);
    HelloHeader hh;
    hh.major = static_cast<std::uint8_t>(r.next32() % 16);
    hh.minor = static_cast<std::uint8_t>(r.next32() % 16);
    hh.ip_version = (r.next8() & 1) != 0 ? kIpv4 : kIpv6;
    hh.cap = static_cast<std::uint8_t>(r.next8() & 3);
    hh.max_adverts = static_cast<std::uint8_t>(1 + r.next32() % 255);
    hh.des_rem_rcv_sz = r.next32();
    hh.local_rcv_sz = r.next32();
    hh.local_port = r.next16();
    const bool compact = (r.next8() & 1) != 0;
    if (!compact) {
      for (auto& b : hh.src_ip) b = r.next8();
      for (auto& b : hh.dst_ip) b = r.next8();
      if ((hh.cap & cap::kExtMaxAdverts) != 0) hh.ext_max_adverts = r.next16();
    }
    const Bsdh h{0x00, 0x00, r.next16(), 0, 0, 0};
    std::array<std::uint8_t, 92> out{};
    const auto n = encode_hello(h, hh, compact, out);
    ASSERT_TRUE(n.ok()) << n.error().reason();
    const auto d = decode_hello(std::span(out).first(*n));
    ASSERT_TRUE(d.ok()) << d.error().reason();
    EXPECT_EQ(d->compact, compact);
    EXPECT_EQ(d->hh, hh);
    EXPECT_EQ(d->bsdh.len, *n);

    HelloAckHeader hah;
    hah.major = static_cast<std::uint8_t>(r.next32() % 16);
    hah.minor = static_cast<std::uint8_t>(r.next32() % 16);
    constexpr std::uint8_t kVers[] = {0, 4, 6};
    hah.ip_version = kVers[r.next32() % 3];
    hah.cap = static_cast<std::uint8_t>(r.next8() & 3);
    hah.max_adverts = static_cast<std::uint8_t>(1 + r.next32() % 255);
    hah.act_rcv_sz = r.next32();
    std::array<std::uint8_t, 196> out2{};
    ASSERT_TRUE(encode_hello_ack(Bsdh{0x01, 0, r.next16(), 0, 0, 0}, hah, out2).ok());
    const auto d2 = decode_hello_ack(out2);
    ASSERT_TRUE(d2.ok()) << d2.error().reason();
    EXPECT_EQ(d2->hah, hah);
  }
}

// gen1 and OFED refuse MaxAdverts 0 (sdp-wire.md §4), in the HelloAck as in the Hello; the
// conformance suite's accept.helloack_max_adverts_0 found the codec taking it.
TEST(WireDecode, HelloAckWithMaxAdvertsZeroIsRefused) {
  HelloAckHeader hah;
  hah.max_adverts = 0;
  hah.act_rcv_sz = 32784;
  std::array<std::uint8_t, 196> out{};
  ASSERT_TRUE(encode_hello_ack(Bsdh{0x01, 0, 16, 0, 0, 0}, hah, out).ok());
  const auto d = decode_hello_ack(out);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, Errc::BadField);
  EXPECT_EQ(d.error().reason(), "HAH.MaxAdverts must be > 0");
}

// ---------------------------------------------------------------------------------------------
// decode_message rejections, one per rule

TEST(WireReject, TooShortForBsdh) {
  EXPECT_REJECT(decode_message(std::span(kDisConn).first(5)), Errc::TooShort, 5,
                "5 bytes, shorter than the 16-byte BSDH");
  EXPECT_REJECT(decode_message({}), Errc::TooShort, 0, "0 bytes, shorter than the 16-byte BSDH");
}

TEST(WireReject, LengthMismatch) {
  // Len 40, 36 bytes received.
  Bytes v = kSrcAvail;
  v[7] = 40;
  EXPECT_REJECT(decode_message(v), Errc::LengthMismatch, 4, "BSDH.Len 40 but 36 bytes received");
  // Len smaller than what arrived.
  Bytes w = kDisConn;
  w.push_back(0);
  EXPECT_REJECT(decode_message(w), Errc::LengthMismatch, 4, "BSDH.Len 16 but 17 bytes received");
  // Len below the BSDH size.
  Bytes x = kDisConn;
  x[7] = 8;
  EXPECT_REJECT(decode_message(x), Errc::LengthMismatch, 4, "BSDH.Len 8 but 16 bytes received");
}

TEST(WireReject, TooShortForExtendedHeader) {
  // SrcAvail with Len 20: only 4 of the 16 SrcAH bytes.
  const Bytes v = {0xFE, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x14, 0x01, 0x02,
                   0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D, 0x00, 0x01, 0x00, 0x00};
  EXPECT_REJECT(decode_message(v), Errc::TooShort, 20,
                "SrcAvail needs its 16-byte SrcAH, 4 bytes follow the BSDH");
  // SuspComm with no SuspCH at all.
  const Bytes w = {0x0D, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x10,
                   0x01, 0x02, 0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D};
  EXPECT_REJECT(decode_message(w), Errc::TooShort, 16,
                "SuspComm needs its 8-byte SuspCH, 0 bytes follow the BSDH");
  // RdmaRdCompl with 3 RRCH bytes.
  Bytes x = kRdmaRdCompl;
  x.pop_back();
  x[7] = 19;
  EXPECT_REJECT(decode_message(x), Errc::TooShort, 19, "RdmaRdCompl needs its 4-byte RRCH");
}

TEST(WireReject, UnknownMid) {
  Bytes v = kDisConn;
  v[0] = 0x42;
  EXPECT_REJECT(decode_message(v), Errc::UnknownMid, 0, "unknown MID 0x42");
  for (int mid = 0x0F; mid <= 0xFC; ++mid) {
    v[0] = static_cast<std::uint8_t>(mid);
    const auto r = decode_message(v);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::UnknownMid) << mid;
  }
  // Unknown MID wins over other defects (reserved flags).
  v[0] = 0xFC;
  v[1] = 0xFF;
  EXPECT_REJECT(decode_message(v), Errc::UnknownMid, 0, "unknown MID 0xfc");
}

TEST(WireReject, ReservedFlagBits) {
  Bytes v = kDisConn;
  v[1] = 0x08;
  EXPECT_REJECT(decode_message(v), Errc::ReservedNonZero, 1, "reserved flag bits 0x08 set");
  Bytes w = kData;
  w[1] = 0xFF;
  EXPECT_REJECT(decode_message(w), Errc::ReservedNonZero, 1, "reserved flag bits 0xf8 set");
}

TEST(WireReject, OobPresOnlyOnData) {
  const Bytes v = {0x04, 0x01, 0x00, 0x05, 0x00, 0x00, 0x00, 0x10,
                   0x01, 0x02, 0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D};
  EXPECT_REJECT(decode_message(v), Errc::FlagNotAllowed, 1,
                "OOB_PRES set on SendSm (only Data may carry it)");
  Bytes w = kSrcAvail;
  w[1] = 0x03;
  EXPECT_REJECT(decode_message(w), Errc::FlagNotAllowed, 1, "OOB_PRES set on SrcAvail");
}

TEST(WireReject, ReqPipeOnlyOnRdmaRdCompl) {
  Bytes v = kData;
  v[1] = 0x04;
  EXPECT_REJECT(decode_message(v), Errc::FlagNotAllowed, 1,
                "REQ_PIPE set on Data (only RdmaRdCompl may carry it)");
  const Bytes w = {0x05, 0x04, 0x00, 0x05, 0x00, 0x00, 0x00, 0x14, 0x01, 0x02,
                   0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D, 0x00, 0x00, 0x00, 0x01};
  EXPECT_REJECT(decode_message(w), Errc::FlagNotAllowed, 1, "REQ_PIPE set on RdmaWrCompl");
}

TEST(WireReject, OobPresWithoutPayload) {
  const Bytes v = {0xFF, 0x01, 0x00, 0x05, 0x00, 0x00, 0x00, 0x10,
                   0x01, 0x02, 0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D};
  EXPECT_REJECT(decode_message(v), Errc::FlagNotAllowed, 1,
                "OOB_PRES set on a Data message without payload");
}

TEST(WireReject, PayloadNotAllowed) {
  const Bytes v = {0x02, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x14, 0x01, 0x02,
                   0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D, 0xDE, 0xAD, 0xBE, 0xEF};
  EXPECT_REJECT(decode_message(v), Errc::PayloadNotAllowed, 16, "DisConn carries 4 payload bytes");
  Bytes w = kRdmaRdCompl;
  w.push_back(1);
  w.push_back(2);
  w[7] = 22;
  EXPECT_REJECT(decode_message(w), Errc::PayloadNotAllowed, 20,
                "RdmaRdCompl carries 2 payload bytes");
}

TEST(WireReject, ModeChangeReservedBits) {
  Bytes v = kModeChange;
  v[16] = 0xA5;
  EXPECT_REJECT(decode_message(v), Errc::ReservedNonZero, 16, "MCH reserved bits 0x05 set");
  Bytes w = kModeChange;
  w[18] = 0x01;
  EXPECT_REJECT(decode_message(w), Errc::ReservedNonZero, 18, "reserved MCH byte +2 is 0x01");
  Bytes x = kModeChange;
  x[19] = 0x80;
  EXPECT_REJECT(decode_message(x), Errc::ReservedNonZero, 19, "reserved MCH byte +3 is 0x80");
}

TEST(WireReject, ModeChangeUndefinedMode) {
  Bytes v = kModeChange;
  v[16] = 0x30;
  EXPECT_REJECT(decode_message(v), Errc::BadField, 16, "ModeChange mode 3 is undefined");
  v[16] = 0xF0;
  EXPECT_REJECT(decode_message(v), Errc::BadField, 16, "ModeChange mode 7 is undefined");
}

TEST(WireReject, HelloIsNeverASend) {
  EXPECT_REJECT(decode_message(kHelloV4), Errc::BadField, 0,
                "Hello is CM REQ private data, never a SEND");
  EXPECT_REJECT(decode_message(kHelloCompact), Errc::BadField, 0, "never a SEND");
  EXPECT_REJECT(decode_message(hello_ack_bytes()), Errc::BadField, 0,
                "HelloAck is CM REP private data, never a SEND");
}

TEST(WireReject, SrcAvailLenBelowInlineBytes) {
  // SrcAH.Len 3, 10 inline bytes.
  const Bytes v = {0xFE, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x2A, 0x01, 0x02, 0x03,
                   0x04, 0x0A, 0x0B, 0x0C, 0x0D, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00,
                   0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
                   0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A};
  EXPECT_REJECT(decode_message(v), Errc::BadField, 16,
                "SrcAH.Len 3 smaller than the 10 inline bytes");
}

// ---------------------------------------------------------------------------------------------
// decode_hello rejections

TEST(WireRejectHello, TooShortAndLength) {
  EXPECT_REJECT(decode_hello(std::span(kHelloV4).first(10)), Errc::TooShort, 10,
                "shorter than the 16-byte BSDH");
  EXPECT_REJECT(decode_hello(std::span(kHelloV4).first(60)), Errc::TooShort, 60,
                "full Hello needs 92 bytes, 60 received");
  EXPECT_REJECT(decode_hello(std::span(kHelloCompact).first(31)), Errc::TooShort, 31,
                "compact Hello needs 32 bytes, 31 received");
  Bytes v = kHelloV4;
  v[7] = 40;
  EXPECT_REJECT(decode_hello(v), Errc::LengthMismatch, 4,
                "Hello BSDH.Len 40 (must be 92, or 32 compact)");
}

TEST(WireRejectHello, WrongMid) {
  Bytes v = kHelloV4;
  v[0] = 0x04;
  EXPECT_REJECT(decode_hello(v), Errc::BadField, 0, "MID 0x04 (SendSm) where Hello expected");
  v[0] = 0x42;
  EXPECT_REJECT(decode_hello(v), Errc::UnknownMid, 0, "unknown MID 0x42");
}

TEST(WireRejectHello, Flags) {
  Bytes v = kHelloV4;
  v[1] = 0x10;
  EXPECT_REJECT(decode_hello(v), Errc::ReservedNonZero, 1, "reserved flag bits 0x10 set");
  v[1] = 0x01;
  EXPECT_REJECT(decode_hello(v), Errc::FlagNotAllowed, 1, "OOB_PRES set on Hello");
  v[1] = 0x04;
  EXPECT_REJECT(decode_hello(v), Errc::FlagNotAllowed, 1, "REQ_PIPE set on Hello");
}

TEST(WireRejectHello, IpVersion) {
  Bytes v = kHelloV4;
  v[17] = 0x50;
  EXPECT_REJECT(decode_hello(v), Errc::BadField, 17, "HH.IPVer 5 (must be 4 or 6)");
  v[17] = 0x00;
  EXPECT_REJECT(decode_hello(v), Errc::BadField, 17, "HH.IPVer 0 (must be 4 or 6)");
  Bytes c = kHelloCompact;
  c[17] = 0x71;
  EXPECT_REJECT(decode_hello(c), Errc::BadField, 17, "HH.IPVer 7");
}

TEST(WireRejectHello, MaxAdvertsZero) {
  Bytes v = kHelloV4;
  v[19] = 0;
  EXPECT_REJECT(decode_hello(v), Errc::BadField, 19, "MaxAdverts must be > 0");
  Bytes c = kHelloCompact;
  c[19] = 0;
  EXPECT_REJECT(decode_hello(c), Errc::BadField, 19, "MaxAdverts must be > 0");
}

TEST(WireRejectHello, ReservedFields) {
  Bytes v = kHelloV4;
  v[17] = 0x44;  // Cap bit 2
  EXPECT_REJECT(decode_hello(v), Errc::ReservedNonZero, 17, "HH.Cap reserved bits 0x4 set");
  v = kHelloV4;
  v[18] = 0x01;
  EXPECT_REJECT(decode_hello(v), Errc::ReservedNonZero, 18, "reserved HH byte +2 is 0x01");
  v = kHelloV4;
  v[31] = 0x02;
  EXPECT_REJECT(decode_hello(v), Errc::ReservedNonZero, 31, "reserved HH byte +15 is 0x02");
  Bytes c = kHelloCompact;
  c[30] = 0x01;
  EXPECT_REJECT(decode_hello(c), Errc::ReservedNonZero, 30, "reserved HH byte +14 is 0x01");
  v = kHelloV4;  // ExtMaxAdverts bytes are reserved when the cap bit is clear
  v[66] = 0x01;
  EXPECT_REJECT(decode_hello(v), Errc::ReservedNonZero, 66, "reserved HH byte +50 is 0x01");
  v = kHelloV4;
  v[91] = 0xFF;
  EXPECT_REJECT(decode_hello(v), Errc::ReservedNonZero, 91, "reserved HH byte +75 is 0xff");
  Bytes w = kHelloV6;  // cap bit set: around ExtMaxAdverts still reserved
  w[64] = 0x01;
  EXPECT_REJECT(decode_hello(w), Errc::ReservedNonZero, 64, "reserved HH byte +48 is 0x01");
  w = kHelloV6;
  w[68] = 0x01;
  EXPECT_REJECT(decode_hello(w), Errc::ReservedNonZero, 68, "reserved HH byte +52 is 0x01");
}

TEST(WireRejectHello, NonZeroAfterHello) {
  Bytes v = kHelloV4;
  v.resize(100, 0);
  v[99] = 0x01;
  EXPECT_REJECT(decode_hello(v), Errc::ReservedNonZero, 99,
                "private data byte 99 after the Hello is 0x01");
  Bytes c = kHelloCompact;
  c.resize(56, 0);
  c[32] = 0x22;
  EXPECT_REJECT(decode_hello(c), Errc::ReservedNonZero, 32,
                "private data byte 32 after the Hello is 0x22");
}

// ---------------------------------------------------------------------------------------------
// decode_hello_ack rejections

TEST(WireRejectHelloAck, Length) {
  const Bytes v = hello_ack_bytes();
  EXPECT_REJECT(decode_hello_ack(std::span(v).first(3)), Errc::TooShort, 3,
                "shorter than the 16-byte BSDH");
  EXPECT_REJECT(decode_hello_ack(std::span(v).first(100)), Errc::TooShort, 100,
                "HelloAck needs 196 bytes, 100 received");
  Bytes w = v;
  w[7] = 92;
  EXPECT_REJECT(decode_hello_ack(w), Errc::LengthMismatch, 4, "HelloAck BSDH.Len 92 (must be 196)");
}

TEST(WireRejectHelloAck, WrongMidAndFlags) {
  Bytes v = hello_ack_bytes();
  v[0] = 0x00;
  EXPECT_REJECT(decode_hello_ack(v), Errc::BadField, 0, "MID 0x00 (Hello) where HelloAck expected");
  v = hello_ack_bytes();
  v[1] = 0x20;
  EXPECT_REJECT(decode_hello_ack(v), Errc::ReservedNonZero, 1, "reserved flag bits 0x20 set");
  v[1] = 0x01;
  EXPECT_REJECT(decode_hello_ack(v), Errc::FlagNotAllowed, 1, "OOB_PRES set on HelloAck");
}

TEST(WireRejectHelloAck, IpVersion) {
  Bytes v = hello_ack_bytes();
  v[17] = 0x50;
  EXPECT_REJECT(decode_hello_ack(v), Errc::BadField, 17, "HAH.IPVer 5 (must be 0, 4 or 6)");
}

TEST(WireRejectHelloAck, ReservedFields) {
  Bytes v = hello_ack_bytes();
  v[17] = 0x08;
  EXPECT_REJECT(decode_hello_ack(v), Errc::ReservedNonZero, 17, "HAH.Cap reserved bits 0x8 set");
  v = hello_ack_bytes();
  v[18] = 0x01;
  EXPECT_REJECT(decode_hello_ack(v), Errc::ReservedNonZero, 18, "reserved HAH byte +2 is 0x01");
  v = hello_ack_bytes();
  v[24] = 0x01;
  EXPECT_REJECT(decode_hello_ack(v), Errc::ReservedNonZero, 24, "reserved HAH byte +8 is 0x01");
  v = hello_ack_bytes();
  v[195] = 0x7F;
  EXPECT_REJECT(decode_hello_ack(v), Errc::ReservedNonZero, 195, "reserved HAH byte +179 is 0x7f");
  v = hello_ack_bytes();
  v.resize(200, 0);
  v[196] = 0x01;
  EXPECT_REJECT(decode_hello_ack(v), Errc::ReservedNonZero, 196,
                "private data byte 196 after the HelloAck is 0x01");
}

// ---------------------------------------------------------------------------------------------
// Encode rejections

TEST(WireEncodeReject, BufferTooSmall) {
  std::array<std::uint8_t, 35> out{};
  static const std::uint8_t payload[] = {1, 2, 3, 4};
  EXPECT_REJECT(encode_message(msg(Mid::SrcAvail, SrcAvailHeader{4, 0, 0}, payload), out),
                Errc::BufferTooSmall, 35, "need 36 bytes, output holds 35");
  EXPECT_REJECT(encode_hello(Bsdh{}, hh_v4(), false, std::span(out)), Errc::BufferTooSmall, 35,
                "need 92 bytes");
  EXPECT_REJECT(encode_hello(Bsdh{}, hh_v4(), true, std::span(out).first(31)), Errc::BufferTooSmall,
                31, "need 32 bytes");
  EXPECT_REJECT(encode_hello_ack(Bsdh{0x01, 0, 0, 0, 0, 0}, HelloAckHeader{}, out),
                Errc::BufferTooSmall, 35, "need 196 bytes");
}

TEST(WireEncodeReject, HeaderMismatch) {
  std::array<std::uint8_t, 256> out{};
  EXPECT_REJECT(encode_message(msg(Mid::SrcAvail), out), Errc::HeaderMismatch, 16,
                "SrcAvail needs SrcAH but Message.ext holds no extended header");
  EXPECT_REJECT(encode_message(msg(Mid::Data, SrcAvailHeader{}), out), Errc::HeaderMismatch, 16,
                "Data needs no extended header but Message.ext holds SrcAH");
  EXPECT_REJECT(encode_message(msg(Mid::RdmaRdCompl, RdmaWrComplHeader{}), out),
                Errc::HeaderMismatch, 16, "RdmaRdCompl needs RRCH but Message.ext holds RWCH");
  EXPECT_REJECT(encode_hello(bsdh(Mid::HelloAck), hh_v4(), false, out), Errc::HeaderMismatch, 0,
                "encode_hello needs MID Hello, got 0x01 (HelloAck)");
  EXPECT_REJECT(encode_hello_ack(bsdh(Mid::Hello), HelloAckHeader{}, out), Errc::HeaderMismatch, 0,
                "encode_hello_ack needs MID HelloAck, got 0x00 (Hello)");
}

TEST(WireEncodeReject, PayloadNotAllowed) {
  std::array<std::uint8_t, 64> out{};
  static const std::uint8_t payload[] = {1, 2};
  EXPECT_REJECT(encode_message(msg(Mid::DisConn, {}, payload), out), Errc::PayloadNotAllowed, 16,
                "DisConn carries 2 payload bytes");
  EXPECT_REJECT(encode_message(msg(Mid::ChRcvBuf, ChRcvBufHeader{1}, payload), out),
                Errc::PayloadNotAllowed, 20, "ChRcvBuf carries 2 payload bytes");
}

TEST(WireEncodeReject, UnknownMid) {
  std::array<std::uint8_t, 64> out{};
  Message m;
  m.bsdh.mid = 0x42;
  EXPECT_REJECT(encode_message(m, out), Errc::UnknownMid, 0, "unknown MID 0x42");
}

TEST(WireEncodeReject, FieldsThatDoNotFit) {
  std::array<std::uint8_t, 256> out{};
  EXPECT_REJECT(
      encode_message(msg(Mid::ModeChange, ModeChangeHeader{false, static_cast<Mode>(8)}), out),
      Errc::BadField, 16, "ModeChange mode 8 does not fit 3 bits");
  HelloHeader hh = hh_v4();
  hh.major = 16;
  EXPECT_REJECT(encode_hello(Bsdh{}, hh, false, out), Errc::BadField, 16,
                "HH version 16.2 does not fit 4-bit fields");
  hh = hh_v4();
  hh.cap = 0x10;
  EXPECT_REJECT(encode_hello(Bsdh{}, hh, true, out), Errc::BadField, 17, "do not fit 4-bit fields");
  HelloAckHeader hah;
  hah.ip_version = 16;
  EXPECT_REJECT(encode_hello_ack(Bsdh{0x01, 0, 0, 0, 0, 0}, hah, out), Errc::BadField, 17,
                "HAH.IPVer 16 / Cap 0x0 do not fit 4-bit fields");
}

TEST(WireEncode, WritesProtocolViolationsTheDecoderRefuses) {
  // The harness may put semantically bad (but representable) messages on the wire.
  std::array<std::uint8_t, 64> out{};
  auto r = encode_message(msg(Mid::SendSm, {}, {}, flags::kOobPres), out);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(decode_message(std::span(out).first(*r)).error().code, Errc::FlagNotAllowed);
  r = encode_message(msg(Mid::ModeChange, ModeChangeHeader{true, static_cast<Mode>(5)}), out);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(out[16], 0xD0);
  EXPECT_EQ(decode_message(std::span(out).first(*r)).error().code, Errc::BadField);
}

// ---------------------------------------------------------------------------------------------
// Helpers and names

TEST(WireHelpers, SeqAfterWraps) {
  EXPECT_TRUE(seq_after(1, 0));
  EXPECT_FALSE(seq_after(0, 1));
  EXPECT_FALSE(seq_after(5, 5));
  EXPECT_TRUE(seq_after(0, 0xFFFFFFFF));
  EXPECT_TRUE(seq_after(3, 0xFFFFFFF0));
  EXPECT_FALSE(seq_after(0xFFFFFFF0, 3));
  EXPECT_TRUE(seq_after(0x7FFFFFFF, 0));
  EXPECT_FALSE(seq_after(0x80000000, 0));  // exactly half way round: neither is after
  EXPECT_FALSE(seq_after(0, 0x80000000));
  EXPECT_TRUE(seq_after(0x80000000, 0x00000001));
  static_assert(seq_after(0, 0xFFFFFFFF) && !seq_after(0xFFFFFFFF, 0));
}

TEST(WireHelpers, ServiceIds) {
  EXPECT_EQ(sdp_service_id(0x1234), 0x0000000000011234ULL);
  EXPECT_EQ(sdp_service_id(0), 0x0000000000010000ULL);
  EXPECT_EQ(sdp_service_id(0xFFFF), 0x000000000001FFFFULL);
  EXPECT_EQ(ipcm_tcp_service_id(5001), 0x0000000001061389ULL);
  EXPECT_TRUE(is_sdp_service_id(sdp_service_id(80)));
  EXPECT_TRUE(is_sdp_service_id(0x000000000001FFFFULL));
  EXPECT_FALSE(is_sdp_service_id(ipcm_tcp_service_id(80)));
  EXPECT_FALSE(is_sdp_service_id(0x0000000000020050ULL));
  EXPECT_FALSE(is_sdp_service_id(0x0000000100010050ULL));
  EXPECT_FALSE(is_sdp_service_id(0x0000000000000050ULL));
  static_assert(is_sdp_service_id(sdp_service_id(1)));
}

TEST(WireNames, MidNames) {
  const std::pair<std::uint8_t, std::string_view> names[] = {
      {0x00, "Hello"},           {0x01, "HelloAck"},      {0x02, "DisConn"},
      {0x03, "AbortConn"},       {0x04, "SendSm"},        {0x05, "RdmaWrCompl"},
      {0x06, "RdmaRdCompl"},     {0x07, "ModeChange"},    {0x08, "SrcAvailCancel"},
      {0x09, "SinkAvailCancel"}, {0x0A, "SinkCancelAck"}, {0x0B, "ChRcvBuf"},
      {0x0C, "ChRcvBufAck"},     {0x0D, "SuspComm"},      {0x0E, "SuspCommAck"},
      {0xFD, "SinkAvail"},       {0xFE, "SrcAvail"},      {0xFF, "Data"}};
  for (const auto& [mid, name] : names) {
    EXPECT_EQ(mid_name(mid), name);
    EXPECT_TRUE(mid_defined(mid)) << name;
  }
  EXPECT_EQ(mid_name(0x0F), "Unknown");
  EXPECT_EQ(mid_name(0x42), "Unknown");
  EXPECT_EQ(mid_name(0xFC), "Unknown");
  int defined = 0;
  for (int mid = 0; mid < 256; ++mid) defined += mid_defined(static_cast<std::uint8_t>(mid));
  EXPECT_EQ(defined, 18);
}

TEST(WireNames, ExtHeaderSizes) {
  EXPECT_EQ(ext_header_size(Mid::Hello), 76u);
  EXPECT_EQ(ext_header_size(Mid::HelloAck), 180u);
  EXPECT_EQ(ext_header_size(Mid::SrcAvail), 16u);
  EXPECT_EQ(ext_header_size(Mid::SinkAvail), 20u);
  EXPECT_EQ(ext_header_size(Mid::RdmaWrCompl), 4u);
  EXPECT_EQ(ext_header_size(Mid::RdmaRdCompl), 4u);
  EXPECT_EQ(ext_header_size(Mid::ModeChange), 4u);
  EXPECT_EQ(ext_header_size(Mid::ChRcvBuf), 4u);
  EXPECT_EQ(ext_header_size(Mid::ChRcvBufAck), 4u);
  EXPECT_EQ(ext_header_size(Mid::SuspComm), 8u);
  for (Mid m : {Mid::DisConn, Mid::AbortConn, Mid::SendSm, Mid::SrcAvailCancel,
                Mid::SinkAvailCancel, Mid::SinkCancelAck, Mid::SuspCommAck, Mid::Data}) {
    EXPECT_EQ(ext_header_size(m), 0u) << mid_name(u8(m));
  }
  EXPECT_EQ(ext_header_size(static_cast<Mid>(0x42)), 0u);
  EXPECT_TRUE(mid_carries_payload(Mid::Data));
  EXPECT_TRUE(mid_carries_payload(Mid::SrcAvail));
  EXPECT_TRUE(mid_carries_payload(Mid::SinkAvail));
  EXPECT_FALSE(mid_carries_payload(Mid::DisConn));
}

TEST(WireNames, ErrcNames) {
  EXPECT_EQ(errc_name(Errc::Ok), "Ok");
  EXPECT_EQ(errc_name(Errc::TooShort), "TooShort");
  EXPECT_EQ(errc_name(Errc::LengthMismatch), "LengthMismatch");
  EXPECT_EQ(errc_name(Errc::UnknownMid), "UnknownMid");
  EXPECT_EQ(errc_name(Errc::ReservedNonZero), "ReservedNonZero");
  EXPECT_EQ(errc_name(Errc::FlagNotAllowed), "FlagNotAllowed");
  EXPECT_EQ(errc_name(Errc::PayloadNotAllowed), "PayloadNotAllowed");
  EXPECT_EQ(errc_name(Errc::BadField), "BadField");
  EXPECT_EQ(errc_name(Errc::BufferTooSmall), "BufferTooSmall");
  EXPECT_EQ(errc_name(Errc::HeaderMismatch), "HeaderMismatch");
}

TEST(WireErrors, ReasonIsAlwaysTerminated) {
  // Every error text fits the 96-byte buffer; a successful result carries an empty reason.
  const auto ok = decode_message(kDisConn);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok.error().code, Errc::Ok);
  EXPECT_TRUE(ok.error().reason().empty());
  Bytes v = kDisConn;
  for (int mid = 0; mid < 256; ++mid) {
    for (int fl : {0x00, 0x01, 0x04, 0x08}) {
      v[0] = static_cast<std::uint8_t>(mid);
      v[1] = static_cast<std::uint8_t>(fl);
      const auto r = decode_message(v);
      if (!r.ok()) {
        EXPECT_FALSE(r.error().reason().empty());
        EXPECT_LT(r.error().reason().size(), r.error().text.size());
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// decode_message_prefix_into: the first packet of a multi-packet SEND

struct Prefix {
  Message m;
  Error e;
  bool ok = false;
};
Prefix prefix(std::span<const std::uint8_t> first, std::uint32_t len) {
  Bytes v(first.begin(), first.end());
  v[4] = static_cast<std::uint8_t>(len >> 24);
  v[5] = static_cast<std::uint8_t>(len >> 16);
  v[6] = static_cast<std::uint8_t>(len >> 8);
  v[7] = static_cast<std::uint8_t>(len);
  static Bytes keep;  // the decoded payload views into it
  keep = v;
  Prefix r;
  r.ok = decode_message_prefix_into(keep, r.m, r.e);
  return r;
}

TEST(WirePrefix, SrcAvailHeaderAndThePayloadPresent) {
  // kSrcAvail's first 34 bytes, of a message of 4000 bytes (SrcAH.Len 65536 >= 3968 inline).
  const Prefix r = prefix(std::span(kSrcAvail).first(34), 4000);
  ASSERT_TRUE(r.ok) << r.e.reason();
  EXPECT_EQ(r.m.bsdh.len, 4000u);
  EXPECT_EQ(std::get<SrcAvailHeader>(r.m.ext),
            (SrcAvailHeader{65536, 0xDEADBEEF, 0x0123456789ABCDEF}));
  EXPECT_EQ(to_bytes(r.m.payload), (Bytes{0xF0, 0xF1}));
}

TEST(WirePrefix, WholeMessageIsAPrefixToo) {
  const Prefix r = prefix(kData, 21);
  ASSERT_TRUE(r.ok) << r.e.reason();
  EXPECT_EQ(r.m.payload.size(), 5u);
}

TEST(WirePrefix, Rejections) {
  Prefix r = prefix(kSrcAvail, 30);  // Len shorter than the bytes at hand
  ASSERT_FALSE(r.ok);
  expect_error(r.e, Errc::LengthMismatch, 4,
               "BSDH.Len 30 but the message's first packet holds 36 bytes");
  r = prefix(std::span(kSrcAvail).first(24), 4000);  // header cut
  ASSERT_FALSE(r.ok);
  expect_error(r.e, Errc::TooShort, 24,
               "SrcAvail needs its 16-byte SrcAH, 8 bytes follow the BSDH");
  r = prefix(std::span(kSrcAvail).first(36), 65536 + 32 + 1);  // more inline bytes than SrcAH.Len
  ASSERT_FALSE(r.ok);
  expect_error(r.e, Errc::BadField, 16, "SrcAH.Len 65536 smaller than the 65537 inline bytes");
  r = prefix(kDisConn, 100);  // a DisConn continued by more packets carries payload
  ASSERT_FALSE(r.ok);
  expect_error(r.e, Errc::PayloadNotAllowed, 16, "DisConn carries 84 payload bytes");
  Bytes oob = kDisConn;
  oob[0] = u8(Mid::Data);
  oob[1] = flags::kOobPres;
  r = prefix(oob, 16);  // OOB_PRES without an urgent byte anywhere in the message
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.e.code, Errc::FlagNotAllowed);
  r = prefix(oob, 1000);  // ... but fine when the payload follows in later packets
  EXPECT_TRUE(r.ok) << r.e.reason();
}

}  // namespace

// ibsniff's SDP follower: connection identification (native and IP CM service IDs), Hello and
// HelloAck, reassembly of multi-packet SENDs, retransmissions, gaps, malformed messages, forced QPs
// and per-connection statistics. Messages are built with libsdp's codec.
#include "sdp_follow.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace {

using namespace ibsniff::sdp;
using Bytes = std::vector<std::uint8_t>;

const std::uint8_t kIpA[4] = {10, 99, 0, 2};
const std::uint8_t kIpB[4] = {10, 99, 0, 1};
const Address kA = Address::ipv4(std::span<const std::uint8_t, 4>(kIpA, 4));
const Address kB = Address::ipv4(std::span<const std::uint8_t, 4>(kIpB, 4));
constexpr std::uint32_t kQpA = 0x11, kQpB = 0x12;

Bytes hello(bool compact) {
  wire::Bsdh b;
  b.mid = 0x00;
  b.bufs = 16;
  wire::HelloHeader hh;
  hh.des_rem_rcv_sz = 65552;
  hh.local_rcv_sz = 32784;
  hh.local_port = 40000;
  Bytes out(compact ? wire::kIpCmPrivateDataSize : wire::kHelloMessageSize);
  EXPECT_TRUE(wire::encode_hello(b, hh, compact, out).ok());
  return out;
}

Bytes hello_ack() {
  wire::Bsdh b;
  b.mid = 0x01;
  b.bufs = 16;
  wire::HelloAckHeader hah;
  hah.act_rcv_sz = 65552;
  Bytes out(wire::kHelloAckMessageSize);
  EXPECT_TRUE(wire::encode_hello_ack(b, hah, out).ok());
  return out;
}

Bytes data(std::uint32_t mseq, std::size_t payload, std::uint8_t fill = 0x5A) {
  Bytes pl(payload, fill);
  wire::Message m;
  m.bsdh.mid = 0xFF;
  m.bsdh.bufs = 15;
  m.bsdh.mseq = mseq;
  m.payload = pl;
  Bytes out(wire::encoded_size(m));
  EXPECT_TRUE(wire::encode_message(m, out).ok());
  return out;
}

CmEvent req(std::uint64_t sid, const Bytes& pd, std::uint64_t tid = 0x1234) {
  CmEvent e;
  e.kind = CmKind::Req;
  e.transaction_id = tid;
  e.local_comm_id = 0xA0A0;
  e.service_id = sid;
  e.local_qpn = kQpA;
  e.src = kA;
  e.dst = kB;
  e.private_data = pd;
  return e;
}

CmEvent rep(const Bytes& pd, std::uint64_t tid = 0x1234) {
  CmEvent e;
  e.kind = CmKind::Rep;
  e.transaction_id = tid;
  e.local_comm_id = 0xB0B0;
  e.remote_comm_id = 0xA0A0;
  e.local_qpn = kQpB;
  e.src = kB;
  e.dst = kA;
  e.private_data = pd;
  return e;
}

RcPacket send(std::uint8_t opcode, std::uint32_t dest_qp, std::uint32_t psn,
              std::span<const std::uint8_t> payload, bool from_a = true) {
  RcPacket p;
  p.src = from_a ? kA : kB;
  p.dst = from_a ? kB : kA;
  p.opcode = opcode;
  p.dest_qp = dest_qp;
  p.psn = psn;
  p.payload = payload;
  return p;
}

// IP CM REQ private data: the 36-byte IP CM header, then the compact Hello.
Bytes ipcm_private(const Bytes& compact_hello) {
  Bytes pd(wire::kIpCmHeaderSize, 0);
  pd[0] = 0x00;
  pd[1] = 0x40;  // IP version 4
  pd.insert(pd.end(), compact_hello.begin(), compact_hello.begin() + wire::kIpCmPrivateDataSize);
  return pd;
}

void connect_native(Follower& f) {
  const Bytes h = hello(false), a = hello_ack();
  ASSERT_NE(f.on_cm(req(wire::sdp_service_id(7000), h)), nullptr);
  ASSERT_NE(f.on_cm(rep(a)), nullptr);
}

TEST(SdpFollow, NativeServiceIdMakesAnSdpConnectionWithHelloAndHelloAck) {
  Follower f;
  const Bytes h = hello(false), a = hello_ack();
  const Connection* c = f.on_cm(req(wire::sdp_service_id(7000), h));
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->setup, Setup::Native);
  EXPECT_EQ(c->hello.hh.local_rcv_sz, 32784U);
  EXPECT_FALSE(c->hello.compact);
  c = f.on_cm(rep(a));
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->established);
  EXPECT_TRUE(c->have_hello_ack);
  EXPECT_EQ(c->hello_ack.hah.act_rcv_sz, 65552U);
  EXPECT_EQ(c->qpn[0], kQpA);
  EXPECT_EQ(c->qpn[1], kQpB);
}

TEST(SdpFollow, IpCmServiceIsSdpOnlyWithAValidHelloAfterTheIpCmHeader) {
  Follower f;
  const Bytes pd = ipcm_private(hello(true));
  const Connection* c = f.on_cm(req(wire::ipcm_tcp_service_id(5001), pd));
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->setup, Setup::IpCm);
  EXPECT_TRUE(c->hello.compact);
  EXPECT_EQ(c->hello.hh.local_port, 40000);

  Follower g;
  Bytes other(wire::kIpCmHeaderSize + 56, 0);
  other[wire::kIpCmHeaderSize] = 0x42;  // some other ULP's private data
  EXPECT_EQ(g.on_cm(req(wire::ipcm_tcp_service_id(5001), other)), nullptr);
  EXPECT_TRUE(g.connections().empty());
}

TEST(SdpFollow, OtherServiceIdsAreNotSdp) {
  Follower f;
  const Bytes h = hello(false);
  EXPECT_EQ(f.on_cm(req(0x1000000000000404ULL, h)), nullptr);        // IPoIB-CM
  EXPECT_EQ(f.on_cm(req(0x0000000000021389ULL, h, 0x99)), nullptr);  // bit 17: not the SDP mask
  const Bytes d = data(1, 10);
  EXPECT_EQ(f.on_rc(send(0x04, kQpB, 1, d)).kind, SdpResult::Kind::NotSdp);
}

TEST(SdpFollow, NativeRequestWithBadHelloIsStillSdpButSaysWhy) {
  Follower f;
  Bytes bad = hello(false);
  bad[0] = 0x05;  // not MID Hello
  std::string note;
  const Connection* c = f.on_cm(req(wire::sdp_service_id(7000), bad), &note);
  ASSERT_NE(c, nullptr);
  EXPECT_NE(note.find("not a valid Hello"), std::string::npos) << note;
}

TEST(SdpFollow, SendOnlyDecodesBothDirectionsAndCountsStats) {
  Follower f;
  connect_native(f);
  const Bytes d1 = data(1, 100), d2 = data(1, 300);
  SdpResult r = f.on_rc(send(0x04, kQpB, 10, d1));
  ASSERT_EQ(r.kind, SdpResult::Kind::Message);
  EXPECT_EQ(r.direction, 0);
  EXPECT_EQ(r.message.payload.size(), 100U);
  r = f.on_rc(send(0x04, kQpA, 50, d2, false));
  ASSERT_EQ(r.kind, SdpResult::Kind::Message);
  EXPECT_EQ(r.direction, 1);
  const ConnStats& s = f.connections()[0].stats;
  EXPECT_EQ(s.bytes[0], 100U);
  EXPECT_EQ(s.bytes[1], 300U);
  EXPECT_EQ(s.messages[0][0xFF], 1U);
  EXPECT_EQ(s.messages[1][0xFF], 1U);
  EXPECT_EQ(s.bufs_min[0], 15U);
}

TEST(SdpFollow, MultiPacketSendIsReassembled) {
  Follower f;
  connect_native(f);
  Bytes d = data(1, 3000);
  for (std::size_t i = 16; i < d.size(); ++i) d[i] = static_cast<std::uint8_t>(i);
  const std::span<const std::uint8_t> all(d);
  SdpResult first = f.on_rc(send(0x00, kQpB, 100, all.subspan(0, 1024)));
  EXPECT_EQ(first.kind, SdpResult::Kind::Fragment);
  EXPECT_EQ(first.bytes.size(), 1024U);  // the part reassembled so far
  SdpResult middle = f.on_rc(send(0x01, kQpB, 101, all.subspan(1024, 1024)));
  EXPECT_EQ(middle.kind, SdpResult::Kind::Fragment);
  ASSERT_EQ(middle.bytes.size(), 2048U);
  EXPECT_TRUE(std::equal(middle.bytes.begin(), middle.bytes.end(), d.begin()));
  SdpResult r = f.on_rc(send(0x02, kQpB, 102, all.subspan(2048)));
  ASSERT_EQ(r.kind, SdpResult::Kind::Message);
  ASSERT_EQ(r.message.payload.size(), 3000U);
  EXPECT_TRUE(std::equal(r.bytes.begin(), r.bytes.end(), d.begin(), d.end()));
}

TEST(SdpFollow, GapInAMultiPacketSendDropsTheMessageWithANote) {
  Follower f;
  connect_native(f);
  const Bytes d = data(1, 3000);
  const std::span<const std::uint8_t> all(d);
  f.on_rc(send(0x00, kQpB, 100, all.subspan(0, 1024)));
  SdpResult r = f.on_rc(send(0x02, kQpB, 102, all.subspan(2048)));  // 101 missing
  EXPECT_EQ(r.kind, SdpResult::Kind::Dropped);
  EXPECT_NE(r.note.find("missing packets"), std::string::npos) << r.note;
  // Following goes on with the next message.
  const Bytes d2 = data(2, 10);
  EXPECT_EQ(f.on_rc(send(0x04, kQpB, 103, d2)).kind, SdpResult::Kind::Message);
}

TEST(SdpFollow, MiddleWithoutFirstIsDroppedWithANote) {
  Follower f;
  connect_native(f);
  const Bytes d = data(1, 3000);
  SdpResult r = f.on_rc(send(0x01, kQpB, 5, std::span<const std::uint8_t>(d).subspan(0, 1024)));
  EXPECT_EQ(r.kind, SdpResult::Kind::Dropped);
  EXPECT_NE(r.note.find("without its First"), std::string::npos);
}

TEST(SdpFollow, RetransmittedSendIsReportedOnce) {
  Follower f;
  connect_native(f);
  const Bytes d = data(1, 10);
  EXPECT_EQ(f.on_rc(send(0x04, kQpB, 7, d)).kind, SdpResult::Kind::Message);
  EXPECT_EQ(f.on_rc(send(0x04, kQpB, 7, d)).kind, SdpResult::Kind::Duplicate);
  EXPECT_EQ(f.connections()[0].stats.messages[0][0xFF], 1U);
  // PSN wrap: 0xFFFFFF then 0 is "after".
  Follower g;
  connect_native(g);
  EXPECT_EQ(g.on_rc(send(0x04, kQpB, 0xFFFFFF, d)).kind, SdpResult::Kind::Message);
  EXPECT_EQ(g.on_rc(send(0x04, kQpB, 0, d)).kind, SdpResult::Kind::Message);
}

TEST(SdpFollow, MalformedSdpMessageGivesTheCodecsReason) {
  Follower f;
  connect_native(f);
  Bytes d = data(1, 10);
  d[0] = 0x42;  // undefined MID
  SdpResult r = f.on_rc(send(0x04, kQpB, 1, d));
  ASSERT_EQ(r.kind, SdpResult::Kind::Malformed);
  EXPECT_NE(std::string(r.error.reason()).find("MID"), std::string::npos) << r.error.reason();
  Bytes shortmsg(8, 0xFF);  // shorter than a BSDH
  r = f.on_rc(send(0x04, kQpB, 2, shortmsg));
  EXPECT_EQ(r.kind, SdpResult::Kind::Malformed);
}

TEST(SdpFollow, RdmaTrafficOfAnSdpConnectionIsRecognisedButNotParsed) {
  Follower f;
  connect_native(f);
  const Bytes x(64, 0);
  EXPECT_EQ(f.on_rc(send(0x0C, kQpB, 1, x)).kind, SdpResult::Kind::NonSend);  // READ request
  EXPECT_EQ(f.on_rc(send(0x10, kQpA, 1, x, false)).kind, SdpResult::Kind::NonSend);
}

TEST(SdpFollow, ForcedQpIsSdpWithoutACmExchange) {
  Follower f;
  f.force_qp(0x77);
  const Bytes d = data(1, 20);
  SdpResult r = f.on_rc(send(0x04, 0x77, 1, d));
  ASSERT_EQ(r.kind, SdpResult::Kind::Message);
  EXPECT_EQ(r.conn->setup, Setup::Forced);
  EXPECT_EQ(f.on_rc(send(0x04, 0x78, 1, d)).kind, SdpResult::Kind::NotSdp);
}

TEST(SdpFollow, SrcAvailCountsAsZcopyBytes) {
  Follower f;
  connect_native(f);
  Bytes inl(64, 1);
  wire::Message m;
  m.bsdh.mid = 0xFE;
  m.bsdh.bufs = 16;
  m.ext = wire::SrcAvailHeader{65536, 0x1234, 0x7f0000001000ULL};
  m.payload = inl;
  Bytes out(wire::encoded_size(m));
  ASSERT_TRUE(wire::encode_message(m, out).ok());
  ASSERT_EQ(f.on_rc(send(0x04, kQpB, 1, out)).kind, SdpResult::Kind::Message);
  const ConnStats& s = f.connections()[0].stats;
  EXPECT_EQ(s.zcopy_bytes[0], 65536U - 64U);
  EXPECT_EQ(s.bytes[0], 65536U);
}

TEST(SdpFollow, DisconnectAndRejectAreTiedToTheirConnection) {
  Follower f;
  connect_native(f);
  CmEvent d;
  d.kind = CmKind::Dreq;
  d.transaction_id = 0x5555;  // a new transaction: matched by communication IDs
  d.local_comm_id = 0xB0B0;
  d.remote_comm_id = 0xA0A0;
  const Connection* c = f.on_cm(d);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->closed);

  Follower g;
  const Bytes h = hello(false);
  g.on_cm(req(wire::sdp_service_id(7000), h, 0x77));
  CmEvent rej;
  rej.kind = CmKind::Rej;
  rej.transaction_id = 0x77;
  ASSERT_NE(g.on_cm(rej), nullptr);
  const Bytes x = data(1, 4);
  EXPECT_EQ(g.on_rc(send(0x04, kQpA, 1, x, false)).kind, SdpResult::Kind::NotSdp);
}

}  // namespace

// Engine rules, one by one, with the test playing the peer (see harness.hpp).
#include <gtest/gtest.h>

#include <cerrno>
#include <numeric>

#include "harness.hpp"

namespace sdp::test {
namespace {

using wire::Mid;

EngineConfig small_cfg() {
  EngineConfig c;
  c.recv_bufs = 8;
  c.recv_size = 4096;
  c.max_recv_size = 16384;
  c.send_slots = 8;
  c.send_slot_size = 16384;
  c.zcopy_threshold = 0;
  return c;
}

std::vector<std::uint8_t> pattern(std::size_t n, unsigned seed = 7) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>((i * 131 + seed) >> 3);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Hello / HelloAck

TEST(Hello, ActivePostsReceivesBeforeHelloAndAdvertisesThem) {
  Harness h(Role::Active, small_cfg());
  auto hello = h.e.connect({});
  std::vector<std::uint8_t> hv(hello.begin(), hello.end());
  h.pump();
  ASSERT_EQ(h.recvs.size(), 8U);
  ASSERT_EQ(hv.size(), wire::kHelloMessageSize);
  auto d = wire::decode_hello(hv);
  ASSERT_TRUE(d.ok()) << d.error().reason();
  EXPECT_EQ(d->bsdh.bufs, 8);
  EXPECT_EQ(d->bsdh.mseq, 0U);
  EXPECT_EQ(d->bsdh.mseq_ack, 0U);
  EXPECT_EQ(d->hh.major, 2);
  EXPECT_EQ(d->hh.minor, 2);
  EXPECT_EQ(d->hh.local_rcv_sz, 4096U);
  EXPECT_EQ(d->hh.max_adverts, 1);
  EXPECT_EQ(h.e.state(), State::HelloSent);
}

TEST(Hello, CompactFormForIpCm) {
  Harness h(Role::Active, small_cfg());
  Engine::HelloParams p;
  p.compact = true;
  p.local_port = 1234;
  auto hello = h.e.connect(p);
  ASSERT_EQ(hello.size(), wire::kCompactHelloMessageSize);
  std::vector<std::uint8_t> pd(wire::kIpCmPrivateDataSize);
  std::copy(hello.begin(), hello.end(), pd.begin());
  auto d = wire::decode_hello(pd);
  ASSERT_TRUE(d.ok()) << d.error().reason();
  EXPECT_TRUE(d->compact);
  EXPECT_EQ(d->hh.local_port, 1234);
}

TEST(Hello, PassiveAnswersHelloAckAndHonoursDesiredSize) {
  EngineConfig c = small_cfg();
  Harness h(Role::Passive, c);
  std::vector<std::uint8_t> req(wire::kHelloMessageSize);
  wire::Bsdh b{};
  b.bufs = 5;
  wire::HelloHeader hh{};
  hh.local_rcv_sz = 2048;
  hh.des_rem_rcv_sz = 8192;  // within max_recv_size 16384
  ASSERT_TRUE(wire::encode_hello(b, hh, false, req).ok());
  auto ack = h.e.accept(req);
  ASSERT_EQ(ack.size(), wire::kHelloAckMessageSize);
  auto d = wire::decode_hello_ack(ack);
  ASSERT_TRUE(d.ok()) << d.error().reason();
  EXPECT_EQ(d->hah.act_rcv_sz, 8192U);
  EXPECT_EQ(d->bsdh.bufs, 8);
  EXPECT_EQ(h.e.state(), State::Established);
  EXPECT_EQ(h.e.send_credits(), 5);
  EXPECT_EQ(h.e.peer_recv_size(), 2048U);
}

TEST(Hello, PassiveRejectsWithAReason) {
  struct Case {
    const char* name;
    std::uint8_t major;
    std::uint16_t bufs;
    std::uint32_t rcv;
    const char* expect;
  };
  const Case cases[] = {
      {"old version", 1, 4, 4096, "version 1.2 unsupported"},
      {"no buffers", 2, 0, 4096, "0 receive buffers"},
      {"one buffer", 2, 1, 4096, "at least 2"},
      {"tiny receive size", 2, 4, 16, "below the 64-byte minimum"},
  };
  for (const auto& c : cases) {
    Harness h(Role::Passive, small_cfg());
    std::vector<std::uint8_t> req(wire::kHelloMessageSize);
    wire::Bsdh b{};
    b.bufs = c.bufs;
    wire::HelloHeader hh{};
    hh.major = c.major;
    hh.local_rcv_sz = c.rcv;
    ASSERT_TRUE(wire::encode_hello(b, hh, false, req).ok());
    EXPECT_TRUE(h.e.accept(req).empty()) << c.name;
    EXPECT_NE(h.e.reject_reason().find(c.expect), std::string_view::npos)
        << c.name << ": " << h.e.reject_reason();
  }
  Harness g(Role::Passive, small_cfg());
  std::vector<std::uint8_t> junk(92, 0xAB);
  EXPECT_TRUE(g.e.accept(junk).empty());
  EXPECT_NE(g.e.reject_reason().find("bad Hello"), std::string_view::npos);
}

TEST(Hello, ActiveRefusesBadHelloAck) {
  Harness h(Role::Active, small_cfg());
  h.e.connect({});
  std::vector<std::uint8_t> rep(wire::kHelloAckMessageSize);
  wire::Bsdh b{};
  b.mid = 1;
  b.bufs = 4;
  wire::HelloAckHeader hah{};
  hah.major = 3;
  hah.act_rcv_sz = 4096;
  ASSERT_TRUE(wire::encode_hello_ack(b, hah, rep).ok());
  EXPECT_FALSE(h.e.on_hello_ack(rep));
  EXPECT_EQ(h.e.state(), State::Reset);
  EXPECT_NE(h.e.reset_reason().find("version 3.2"), std::string_view::npos) << h.e.reset_reason();
}

// ---------------------------------------------------------------------------------------------
// Sequence numbers and credits

TEST(Credits, MSeqStartsAtOneAndMSeqAckTracksThePeer) {
  Harness h(Role::Active, small_cfg());
  ASSERT_TRUE(h.establish(8, 4096));
  auto d = pattern(10);
  h.e.send(d);
  h.pump();
  ASSERT_EQ(h.sent.size(), 1U);
  EXPECT_EQ(h.sent[0].bsdh.mseq, 1U);
  EXPECT_EQ(h.sent[0].bsdh.mseq_ack, 0U);
  h.send_peer(Mid::Data, std::monostate{}, {1, 2, 3});
  h.send_peer(Mid::Data, std::monostate{}, {4});
  h.e.send(d);
  h.pump();
  ASSERT_EQ(h.sent.size(), 2U);
  EXPECT_EQ(h.sent[1].bsdh.mseq, 2U);
  EXPECT_EQ(h.sent[1].bsdh.mseq_ack, 2U);
}

TEST(Credits, DataStopsAtTheReserveAndResumesOnCreditUpdate) {
  Harness h(Role::Active, small_cfg());
  ASSERT_TRUE(h.establish(5, 4096));  // 5 credits; data needs > 2
  auto d = pattern(100);
  for (int i = 0; i < 6; ++i) {
    h.e.send(d);
    h.pump();
  }
  // Credits 5, 4, 3 allow data; at 2 the reserve holds the rest (coalesced in one slot).
  ASSERT_EQ(h.sent.size(), 3U);
  EXPECT_EQ(h.e.send_credits(), 2);
  // Peer: credit update (empty Data) acking MSeq 3 with 5 buffers posted -> 5 credits.
  h.send_peer(Mid::Data, std::monostate{}, {}, 0, 5);
  EXPECT_EQ(h.sent.size(), 4U);
  EXPECT_EQ(h.sent[3].payload_size(), 300U);  // the three queued writes, coalesced
  EXPECT_EQ(h.e.send_credits(), 4);
}

TEST(Credits, ControlMessageMayUseTheReserve) {
  Harness h(Role::Active, small_cfg());
  ASSERT_TRUE(h.establish(8, 4096));
  h.e.send(pattern(10));
  h.pump();
  ASSERT_EQ(h.sent.size(), 1U);
  // The peer acks it and says 2 buffers: 2 credits, all of them the reserve.
  h.send_peer(Mid::ChRcvBuf, wire::ChRcvBufHeader{8192}, {}, 0, 2);
  EXPECT_EQ(h.e.send_credits(), 1) << "the ChRcvBufAck used one of the two";
  auto acks = h.sent_with(Mid::ChRcvBufAck);
  ASSERT_EQ(acks.size(), 1U);
  EXPECT_EQ(acks[0].ext<wire::ChRcvBufAckHeader>().size, 8192U);
  h.e.send(pattern(10));
  h.pump();
  EXPECT_EQ(h.sent_with(Mid::Data).size(), 1U) << "data must not use the reserve";
}

TEST(Credits, ReserveShrinksForAPeerWithFewBuffers) {
  Harness h(Role::Active, small_cfg());  // credit_reserve 2
  ASSERT_TRUE(h.establish(3, 4096));     // reserve becomes 1: data can still flow
  h.e.send(pattern(10));
  h.pump();
  h.e.send(pattern(10));
  h.pump();
  EXPECT_EQ(h.sent_with(Mid::Data).size(), 2U);
  EXPECT_EQ(h.e.send_credits(), 1);
  h.e.send(pattern(10));
  h.pump();
  EXPECT_EQ(h.sent_with(Mid::Data).size(), 2U) << "never data on the last credit";
}

TEST(Credits, WithOneCreditOnlyAMessageThatAddsCredits) {
  Harness h(Role::Passive, small_cfg());
  ASSERT_TRUE(h.establish(8, 4096));
  // The peer's Data (Bufs 1) leaves us 1 credit, and holds one of our buffers unread: the peer
  // believes it has 7 credits and we have 7 posted, so a DisConn would add nothing: it waits.
  h.send_peer(Mid::Data, std::monostate{}, bytes_of("x"), 0, 1);
  EXPECT_EQ(h.e.send_credits(), 1);
  h.e.shutdown_send();
  h.pump();
  EXPECT_TRUE(h.sent.empty()) << "with one credit, a message that adds no credit must wait";
  // Reading reposts the buffer: now the DisConn also tells the peer of one more buffer.
  EXPECT_EQ(h.read_all(), "x");
  ASSERT_EQ(h.sent.size(), 1U);
  EXPECT_EQ(h.sent[0].mid(), 0x02);
  EXPECT_EQ(h.sent[0].bsdh.bufs, 8);
  EXPECT_EQ(h.e.send_credits(), 0);
}

TEST(Credits, CreditUpdateWhenThePeerWouldStall) {
  EngineConfig c = small_cfg();
  Harness h(Role::Passive, c);
  ASSERT_TRUE(h.establish(8, 4096));
  // Peer sends 6 data messages: it now believes it has 8 - 6 = 2 credits (stalled for data).
  for (int i = 0; i < 6; ++i)
    h.send_peer(Mid::Data, std::monostate{}, pattern(100, static_cast<unsigned>(i)));
  EXPECT_TRUE(h.sent.empty());
  EXPECT_EQ(h.e.posted_recvs(), 2U);
  EXPECT_EQ(h.read_all().size(), 600U);
  auto upd = h.sent_with(Mid::Data);
  ASSERT_EQ(upd.size(), 1U);
  EXPECT_EQ(upd[0].bytes.size(), 16U) << "credit update is an empty Data message";
  EXPECT_EQ(upd[0].bsdh.bufs, 8);
  EXPECT_EQ(upd[0].bsdh.mseq_ack, 6U);
  EXPECT_EQ(h.e.stats().credit_updates_sent, 1U);
}

TEST(Credits, NoUpdateWhileThePeerHasPlenty) {
  Harness h(Role::Passive, small_cfg());
  ASSERT_TRUE(h.establish(8, 4096));
  h.send_peer(Mid::Data, std::monostate{}, pattern(10));
  h.read_all();
  EXPECT_TRUE(h.sent.empty()) << "peer still believes 7 credits: no update needed";
}

// ---------------------------------------------------------------------------------------------
// BCopy

TEST(BCopy, SegmentsIntoThePeersReceiveSize) {
  Harness h(Role::Active, small_cfg());
  ASSERT_TRUE(h.establish(16, 1024));
  auto d = pattern(5000);
  auto r = h.e.send(d);
  h.pump();
  EXPECT_EQ(r.bytes, 5000U);
  std::vector<std::uint8_t> got;
  for (const auto& m : h.sent) {
    EXPECT_EQ(m.mid(), 0xFF);
    EXPECT_LE(m.bytes.size(), 1024U);
    EXPECT_EQ(m.bsdh.len, m.bytes.size());
    got.insert(got.end(), m.bytes.begin() + 16, m.bytes.end());
  }
  EXPECT_EQ(h.sent.size(), 5U);  // 4 x 1008 + 968
  EXPECT_EQ(got, d);
}

TEST(BCopy, BackpressureWhenTheSendRingIsFull) {
  EngineConfig c = small_cfg();
  c.send_slots = 2;
  Harness h(Role::Active, c);
  h.hold_sends = true;
  ASSERT_TRUE(h.establish(16, 1024));
  auto d = pattern(100000);
  auto r = h.e.send(d);
  h.pump();
  EXPECT_EQ(r.bytes, 2016U);  // two slots of 1008 payload bytes
  EXPECT_FALSE(h.e.writable());
  auto again = h.e.send(d);
  EXPECT_EQ(again.error, EAGAIN);
  h.complete_sends();
  h.pump();
  EXPECT_TRUE(h.e.writable());
}

TEST(BCopy, SelectiveSignallingCompletesEarlierSendsTogether) {
  EngineConfig c = small_cfg();
  c.send_slots = 16;
  Harness h(Role::Active, c);
  h.hold_sends = true;
  ASSERT_TRUE(h.establish(32, 4096));
  for (int i = 0; i < 10; ++i) {
    h.e.send(pattern(10));
    h.pump();
  }
  std::vector<bool> signaled;
  std::vector<std::uint64_t> ids;
  for (const auto& a : h.actions)
    if (a.type == ActionType::PostSend) {
      signaled.push_back(a.signaled);
      ids.push_back(a.id);
    }
  ASSERT_EQ(signaled.size(), 10U);
  // Every 8th send, and every send once half the ring waits for a completion.
  const std::vector<bool> want = {false, false, false, false, false,
                                  false, false, true,  true,  true};
  EXPECT_EQ(signaled, want);
  // The 8th send's completion frees the seven unsignaled ones before it too.
  h.unacked_sends.clear();
  h.e.on_send_complete(ids[7]);
  h.pump();
  EXPECT_EQ(h.e.state(), State::Established);
  for (int i = 0; i < 14; ++i) h.e.send(pattern(10));  // 6 + 8 freed = 14 slots' worth
  h.pump();
  EXPECT_EQ(h.count(ActionType::PostSend), 24U);
  // A completion for a send that is not in flight is a binding error, not silent corruption.
  h.e.on_send_complete(ids[3]);
  EXPECT_EQ(h.e.state(), State::Reset);
}

TEST(BCopy, ReassemblyAndPartialReadsRepostOnlyConsumedBuffers) {
  Harness h(Role::Passive, small_cfg());
  ASSERT_TRUE(h.establish(8, 4096));
  auto a = pattern(300, 1), b = pattern(200, 2);
  h.send_peer(Mid::Data, std::monostate{}, a);
  h.send_peer(Mid::Data, std::monostate{}, b);
  EXPECT_EQ(h.e.readable_bytes(), 500U);
  const std::size_t posted_before = h.e.posted_recvs();
  std::vector<std::uint8_t> got;
  std::uint8_t one[7];
  while (got.size() < 299) {
    auto r = h.e.recv(one);
    h.pump();
    got.insert(got.end(), one, one + r.bytes);
    if (got.size() + 7 > 299) break;
  }
  EXPECT_EQ(h.e.posted_recvs(), posted_before) << "first buffer not fully read yet";
  std::vector<std::uint8_t> rest(1000);
  auto r = h.e.recv(rest);
  got.insert(got.end(), rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(r.bytes));
  h.pump();
  EXPECT_EQ(h.e.posted_recvs(), posted_before + 2);
  std::vector<std::uint8_t> want = a;
  want.insert(want.end(), b.begin(), b.end());
  EXPECT_EQ(got, want);
  EXPECT_EQ(h.e.recv(rest).error, EAGAIN);
}

TEST(BCopy, PeekDoesNotConsume) {
  Harness h(Role::Passive, small_cfg());
  ASSERT_TRUE(h.establish());
  h.send_peer(Mid::Data, std::monostate{}, bytes_of("hello"));
  std::uint8_t buf[16];
  auto p = h.e.recv({buf, 16}, true);
  EXPECT_EQ(p.bytes, 5U);
  EXPECT_EQ(h.e.readable_bytes(), 5U);
  EXPECT_EQ(h.read_all(), "hello");
}

// ---------------------------------------------------------------------------------------------
// Urgent data

TEST(Oob, UrgentByteEndsItsMessageWithOobFlags) {
  Harness h(Role::Active, small_cfg());
  ASSERT_TRUE(h.establish());
  h.e.send(bytes_of("abc"), true);
  h.e.send(bytes_of("def"));
  h.pump();
  ASSERT_EQ(h.sent.size(), 2U);
  EXPECT_EQ(h.sent[0].bsdh.flags, wire::flags::kOobPres | wire::flags::kOobPend);
  EXPECT_TRUE(h.sent[0].solicited);
  EXPECT_EQ(h.sent[0].bytes.back(), 'c');
  EXPECT_EQ(h.sent[1].bsdh.flags, 0);
}

TEST(Oob, ReceiverHoldsTheUrgentByteAtTheMark) {
  Harness h(Role::Passive, small_cfg());
  ASSERT_TRUE(h.establish());
  h.send_peer(Mid::Data, std::monostate{}, bytes_of("xyz"),
              wire::flags::kOobPres | wire::flags::kOobPend);
  h.send_peer(Mid::Data, std::monostate{}, bytes_of("123"));
  EXPECT_TRUE(h.e.oob_pending());
  EXPECT_FALSE(h.e.at_oob_mark());
  std::uint8_t buf[16];
  auto r = h.e.recv({buf, 16});
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buf), r.bytes), "xy") << "read stops at the mark";
  EXPECT_TRUE(h.e.at_oob_mark());
  std::uint8_t u = 0;
  EXPECT_EQ(h.e.recv_oob(u).bytes, 1U);
  EXPECT_EQ(u, 'z');
  EXPECT_EQ(h.read_all(), "123");
  EXPECT_EQ(h.e.recv_oob(u).error, EINVAL);
}

TEST(Oob, InlineModeKeepsTheByteInTheStream) {
  EngineConfig c = small_cfg();
  c.oob_inline = true;
  Harness h(Role::Passive, c);
  ASSERT_TRUE(h.establish());
  h.send_peer(Mid::Data, std::monostate{}, bytes_of("xyz"), wire::flags::kOobPres);
  EXPECT_EQ(h.read_all(), "xyz");
}

// ---------------------------------------------------------------------------------------------
// ChRcvBuf

TEST(ChRcvBuf, RequesterAdoptsALargerSize) {
  EngineConfig c = small_cfg();
  c.desired_peer_recv_size = 8192;
  Harness h(Role::Active, c);
  ASSERT_TRUE(h.establish(8, 1024));
  auto req = h.sent_with(Mid::ChRcvBuf);
  ASSERT_EQ(req.size(), 1U);
  EXPECT_EQ(req[0].ext<wire::ChRcvBufHeader>().size, 8192U);
  h.send_peer(Mid::ChRcvBufAck, wire::ChRcvBufAckHeader{8192});
  EXPECT_EQ(h.e.peer_recv_size(), 8192U);
  h.e.send(pattern(8000));
  h.pump();
  EXPECT_EQ(h.sent.back().bytes.size(), 8016U) << "one message at the new size";
}

TEST(ChRcvBuf, RequesterIgnoresASmallerAck) {
  EngineConfig c = small_cfg();
  c.desired_peer_recv_size = 8192;
  Harness h(Role::Active, c);
  ASSERT_TRUE(h.establish(8, 1024));
  h.send_peer(Mid::ChRcvBufAck, wire::ChRcvBufAckHeader{512});
  EXPECT_EQ(h.e.peer_recv_size(), 1024U);
  EXPECT_EQ(h.e.state(), State::Established);
}

TEST(ChRcvBuf, ResponderGrowsWithinItsBuffersOnly) {
  Harness h(Role::Passive, small_cfg());  // recv 4096, buffers allocated at 16384
  ASSERT_TRUE(h.establish());
  h.send_peer(Mid::ChRcvBuf, wire::ChRcvBufHeader{12000});
  h.send_peer(Mid::ChRcvBuf, wire::ChRcvBufHeader{99999});
  auto acks = h.sent_with(Mid::ChRcvBufAck);
  ASSERT_EQ(acks.size(), 2U);
  EXPECT_EQ(acks[0].ext<wire::ChRcvBufAckHeader>().size, 12000U);
  EXPECT_EQ(acks[1].ext<wire::ChRcvBufAckHeader>().size, 12000U) << "too big: size unchanged";
  EXPECT_EQ(h.e.local_recv_size(), 12000U);
  // A message of the new size is now accepted.
  h.send_peer(Mid::Data, std::monostate{}, pattern(11000));
  EXPECT_EQ(h.e.state(), State::Established);
  EXPECT_EQ(h.e.readable_bytes(), 11000U);
}

// ---------------------------------------------------------------------------------------------
// ZCopy source (SrcAvail / RDMA READ)

EngineConfig zcopy_cfg() {
  EngineConfig c = small_cfg();
  c.zcopy_threshold = 10000;
  c.zcopy_inline = 64;
  return c;
}

TEST(ZcopySource, SrcAvailGrantsExactlyTheBufferUntilRdmaRdCompl) {
  Harness h(Role::Active, zcopy_cfg());
  ASSERT_TRUE(h.establish(8, 4096));
  auto d = pattern(50000);
  auto r = h.e.send(d);
  h.pump();
  EXPECT_TRUE(r.zcopy);
  EXPECT_EQ(r.bytes, 50000U);
  EXPECT_TRUE(h.e.zcopy_busy());
  EXPECT_FALSE(h.e.writable());
  // One remote-read grant covering exactly the buffer.
  const Action* grant = nullptr;
  for (const auto& a : h.regions)
    if (a.access == access::kRemoteRead) grant = &a;
  ASSERT_NE(grant, nullptr);
  EXPECT_EQ(grant->addr, d.data());
  EXPECT_EQ(grant->len, 50000U);
  auto sa = h.sent_with(Mid::SrcAvail);
  ASSERT_EQ(sa.size(), 1U);
  auto hdr = sa[0].ext<wire::SrcAvailHeader>();
  EXPECT_EQ(hdr.len, 50000U);
  EXPECT_EQ(hdr.va, reinterpret_cast<std::uintptr_t>(d.data()));
  EXPECT_EQ(hdr.rkey, 0x500 + grant->id);
  EXPECT_EQ(sa[0].payload_size(), 64U);
  EXPECT_TRUE(std::equal(sa[0].bytes.begin() + 32, sa[0].bytes.end(), d.begin()));
  // A partial report keeps the grant; the final one ends it.
  h.send_peer(Mid::RdmaRdCompl, wire::RdmaRdComplHeader{20000});
  EXPECT_TRUE(h.deregistered.empty());
  h.send_peer(Mid::RdmaRdCompl, wire::RdmaRdComplHeader{50000 - 64 - 20000});
  ASSERT_EQ(h.deregistered.size(), 1U);
  EXPECT_EQ(h.deregistered[0], grant->id);
  EXPECT_EQ(h.count(ActionType::ZcopyDone), 1U);
  EXPECT_FALSE(h.e.zcopy_busy());
  EXPECT_TRUE(h.e.writable());
  EXPECT_EQ(h.e.stats().zcopy_bytes_sent, 50000U - 64);
}

TEST(ZcopySource, SendSmSwitchesTheRestToBCopy) {
  Harness h(Role::Active, zcopy_cfg());
  ASSERT_TRUE(h.establish(16, 4096));
  auto d = pattern(30000);
  h.e.send(d);
  h.pump();
  h.send_peer(Mid::RdmaRdCompl, wire::RdmaRdComplHeader{10000});
  const std::size_t before = h.sent.size();
  h.send_peer(Mid::SendSm);
  EXPECT_EQ(h.deregistered.size(), 1U) << "the grant ends at SendSm";
  std::vector<std::uint8_t> rest;
  for (std::size_t i = before; i < h.sent.size(); ++i) {
    ASSERT_EQ(h.sent[i].mid(), 0xFF);
    rest.insert(rest.end(), h.sent[i].bytes.begin() + 16, h.sent[i].bytes.end());
  }
  // Credits may hold part of the rest: let the peer refill them until done.
  while (h.e.zcopy_busy() || rest.size() < 30000 - 10064) {
    const std::size_t n = h.sent.size();
    h.send_peer(Mid::Data, std::monostate{}, {}, 0, 16);
    for (std::size_t i = n; i < h.sent.size(); ++i)
      if (h.sent[i].mid() == 0xFF && h.sent[i].bytes.size() > 16)
        rest.insert(rest.end(), h.sent[i].bytes.begin() + 16, h.sent[i].bytes.end());
    if (h.sent.size() == n) break;
  }
  ASSERT_EQ(rest.size(), 30000U - 10064);
  EXPECT_TRUE(std::equal(rest.begin(), rest.end(), d.begin() + 10064));
  EXPECT_FALSE(h.e.zcopy_busy());
}

TEST(ZcopySource, CancelAfterTimeoutThenResetIfUnanswered) {
  EngineConfig c = zcopy_cfg();
  c.zcopy_cancel_ms = 100;
  c.cancel_response_ms = 500;
  Harness h(Role::Active, c);
  ASSERT_TRUE(h.establish(8, 4096));
  auto d = pattern(20000);
  h.e.send(d);
  h.pump();
  h.e.tick(50);
  h.pump();
  EXPECT_TRUE(h.sent_with(Mid::SrcAvailCancel).empty());
  h.e.tick(150);
  h.pump();
  EXPECT_EQ(h.sent_with(Mid::SrcAvailCancel).size(), 1U);
  h.e.tick(700);
  h.pump();
  EXPECT_EQ(h.e.state(), State::Reset);
  EXPECT_EQ(h.e.reset_cause(), ResetCause::Timeout);
  EXPECT_EQ(h.deregistered.size(), 1U) << "grant ends with the connection";
}

TEST(ZcopySource, CancelAnsweredBySendSmFallsBack) {
  EngineConfig c = zcopy_cfg();
  c.zcopy_cancel_ms = 100;
  Harness h(Role::Active, c);
  ASSERT_TRUE(h.establish(16, 4096));
  auto d = pattern(20000);
  h.e.send(d);
  h.pump();
  h.e.tick(200);
  h.pump();
  ASSERT_EQ(h.sent_with(Mid::SrcAvailCancel).size(), 1U);
  h.send_peer(Mid::SendSm, std::monostate{}, {}, 0, 16);
  EXPECT_EQ(h.e.state(), State::Established);
  EXPECT_EQ(h.deregistered.size(), 1U);
  std::size_t data_bytes = 0;
  for (const auto& m : h.sent_with(Mid::Data)) data_bytes += m.payload_size();
  EXPECT_GT(data_bytes, 0U);
}

// ---------------------------------------------------------------------------------------------
// ZCopy sink (SrcAvail received)

TEST(ZcopySink, ReadsTheAdvertisedRangeAndReportsIt) {
  EngineConfig c = zcopy_cfg();
  c.zcopy_chunk = 8192;
  c.zcopy_staging = 16384;
  Harness h(Role::Passive, c);
  ASSERT_TRUE(h.establish(8, 4096));
  auto src = pattern(30000, 3);
  wire::SrcAvailHeader sa{30000, 0x77, reinterpret_cast<std::uintptr_t>(src.data())};
  h.send_peer(Mid::SrcAvail, sa, std::vector<std::uint8_t>(src.begin(), src.begin() + 100));
  // Two chunks of staging: two reads in flight, starting after the inline bytes.
  ASSERT_EQ(h.rdma.size(), 2U);
  EXPECT_EQ(h.rdma[0].type, ActionType::RdmaRead);
  EXPECT_EQ(h.rdma[0].remote_va, sa.va + 100);
  EXPECT_EQ(h.rdma[0].rkey, 0x77U);
  EXPECT_EQ(h.rdma[0].len, 8192U);
  EXPECT_EQ(h.rdma[1].remote_va, sa.va + 100 + 8192);
  std::vector<std::uint8_t> got;
  std::size_t done_reads = 0;
  while (got.size() < 30000) {
    // Complete the oldest read by copying like the HCA would.
    if (done_reads < h.rdma.size()) {
      const Action a = h.rdma[done_reads++];
      std::memcpy(a.addr, reinterpret_cast<const void*>(a.remote_va), a.len);
      h.e.on_rdma_complete(a.id);
      h.pump();
    }
    std::vector<std::uint8_t> buf(5000);
    auto r = h.e.recv(buf);
    h.pump();
    got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(r.bytes));
    ASSERT_EQ(h.e.state(), State::Established) << h.e.reset_reason();
  }
  EXPECT_EQ(got, src);
  std::uint64_t reported = 0;
  for (const auto& m : h.sent_with(Mid::RdmaRdCompl))
    reported += m.ext<wire::RdmaRdComplHeader>().len;
  EXPECT_EQ(reported, 30000U - 100) << "inline bytes are never reported";
  EXPECT_EQ(h.e.stats().zcopy_bytes_received, 30000U - 100);
}

TEST(ZcopySink, RefusesWithSendSmWhenZcopyIsOff) {
  EngineConfig c = zcopy_cfg();
  c.accept_zcopy = false;
  Harness h(Role::Passive, c);
  ASSERT_TRUE(h.establish());
  wire::SrcAvailHeader sa{30000, 0x77, 0x1000};
  h.send_peer(Mid::SrcAvail, sa, bytes_of("abc"));
  EXPECT_TRUE(h.rdma.empty());
  EXPECT_EQ(h.sent_with(Mid::SendSm).size(), 1U);
  EXPECT_EQ(h.read_all(), "abc");
  // The source continues with Data: accepted.
  h.send_peer(Mid::Data, std::monostate{}, bytes_of("def"));
  EXPECT_EQ(h.read_all(), "def");
}

TEST(ZcopySink, CancelStopsReadsThenRdmaRdComplAndSendSm) {
  EngineConfig c = zcopy_cfg();
  c.zcopy_chunk = 4096;
  c.zcopy_staging = 8192;
  Harness h(Role::Passive, c);
  ASSERT_TRUE(h.establish(8, 4096));
  auto src = pattern(40000);
  wire::SrcAvailHeader sa{40000, 0x77, reinterpret_cast<std::uintptr_t>(src.data())};
  h.send_peer(Mid::SrcAvail, sa, std::vector<std::uint8_t>(src.begin(), src.begin() + 1));
  ASSERT_EQ(h.rdma.size(), 2U);
  h.send_peer(Mid::SrcAvailCancel);
  EXPECT_TRUE(h.sent_with(Mid::SendSm).empty()) << "reads in flight must finish first";
  for (const auto& a : std::vector<Action>(h.rdma)) {
    std::memcpy(a.addr, reinterpret_cast<const void*>(a.remote_va), a.len);
    h.e.on_rdma_complete(a.id);
    h.pump();
  }
  EXPECT_EQ(h.rdma.size(), 2U) << "no new read after the cancel";
  ASSERT_EQ(h.sent_with(Mid::SendSm).size(), 1U);
  auto compl_msgs = h.sent_with(Mid::RdmaRdCompl);
  ASSERT_FALSE(compl_msgs.empty());
  EXPECT_LT(compl_msgs.back().bsdh.mseq, h.sent_with(Mid::SendSm)[0].bsdh.mseq);
  std::uint64_t reported = 0;
  for (const auto& m : compl_msgs) reported += m.ext<wire::RdmaRdComplHeader>().len;
  EXPECT_EQ(reported, 8192U);
}

// ---------------------------------------------------------------------------------------------
// Pipelined: SinkAvail / RDMA WRITE

TEST(Pipelined, SinkAdvertisesAfterModeChangeAndTakesRdmaWrites) {
  EngineConfig c = zcopy_cfg();
  c.sink_adverts = true;
  c.zcopy_chunk = 8192;
  c.zcopy_staging = 16384;
  Harness h(Role::Passive, c);
  ASSERT_TRUE(h.establish(8, 4096));
  h.send_peer(Mid::ModeChange, wire::ModeChangeHeader{false, wire::Mode::Pipelined});
  EXPECT_EQ(h.e.recv_mode(), wire::Mode::Pipelined);
  auto adv = h.sent_with(Mid::SinkAvail);
  ASSERT_EQ(adv.size(), 1U);
  auto s = adv[0].ext<wire::SinkAvailHeader>();
  EXPECT_EQ(s.len, 8192U);
  EXPECT_EQ(s.non_disc, 0U);
  const Action* grant = nullptr;
  for (const auto& a : h.regions)
    if (a.access == access::kRemoteWrite) grant = &a;
  ASSERT_NE(grant, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(grant->addr), s.va);
  EXPECT_EQ(grant->len, 8192U) << "the grant is exactly the advertised window";
  // Peer writes 5000 bytes into the window, then RdmaWrCompl.
  auto d = pattern(5000);
  std::memcpy(reinterpret_cast<void*>(s.va), d.data(), d.size());
  h.send_peer(Mid::RdmaWrCompl, wire::RdmaWrComplHeader{5000});
  ASSERT_EQ(h.deregistered.size(), 1U);
  EXPECT_EQ(h.deregistered[0], grant->id);
  std::vector<std::uint8_t> got(8000);
  auto r = h.e.recv(got);
  got.resize(r.bytes);
  EXPECT_EQ(got, d);
  h.pump();
  EXPECT_EQ(h.sent_with(Mid::SinkAvail).size(), 2U) << "a new window once data flows";
}

TEST(Pipelined, DataDiscardsTheSinkAdvert) {
  EngineConfig c = zcopy_cfg();
  c.sink_adverts = true;
  Harness h(Role::Passive, c);
  ASSERT_TRUE(h.establish(8, 4096));
  h.send_peer(Mid::ModeChange, wire::ModeChangeHeader{false, wire::Mode::Pipelined});
  ASSERT_EQ(h.sent_with(Mid::SinkAvail).size(), 1U);
  h.send_peer(Mid::Data, std::monostate{}, bytes_of("small"));
  EXPECT_EQ(h.deregistered.size(), 1U);
  EXPECT_EQ(h.read_all(), "small");
  // RdmaWrCompl for the discarded advert is now a violation.
  h.send_peer(Mid::RdmaWrCompl, wire::RdmaWrComplHeader{10});
  EXPECT_EQ(h.e.state(), State::Reset);
}

TEST(Pipelined, SinkCancelsAnIdleAdvertAndAcceptsSinkCancelAck) {
  EngineConfig c = zcopy_cfg();
  c.sink_adverts = true;
  c.zcopy_cancel_ms = 100;
  Harness h(Role::Passive, c);
  ASSERT_TRUE(h.establish(8, 4096));
  h.send_peer(Mid::ModeChange, wire::ModeChangeHeader{false, wire::Mode::Pipelined});
  h.e.tick(200);
  h.pump();
  EXPECT_EQ(h.sent_with(Mid::SinkAvailCancel).size(), 1U);
  h.send_peer(Mid::SinkCancelAck);
  EXPECT_EQ(h.e.state(), State::Established);
  EXPECT_EQ(h.deregistered.size(), 1U);
}

TEST(Pipelined, SourceFollowsReqPipeAndWritesIntoSinkAvail) {
  Harness h(Role::Active, zcopy_cfg());
  ASSERT_TRUE(h.establish(8, 4096));
  auto d = pattern(20000);
  h.e.send(d);
  h.pump();
  h.send_peer(Mid::RdmaRdCompl, wire::RdmaRdComplHeader{20000 - 64}, {}, wire::flags::kReqPipe);
  auto mc = h.sent_with(Mid::ModeChange);
  ASSERT_EQ(mc.size(), 1U);
  EXPECT_EQ(mc[0].bytes[16], 0x20) << "PIPE_RECV";
  EXPECT_EQ(h.e.send_mode(), wire::Mode::Pipelined);
  std::vector<std::uint8_t> window(16384);
  // NonDisc 1: our Combined SrcAvail carried inline bytes, a data-carrying message (§2, §6).
  wire::SinkAvailHeader s{16384, 0x99, reinterpret_cast<std::uintptr_t>(window.data()), 1};
  h.send_peer(Mid::SinkAvail, s);
  auto d2 = pattern(12000, 9);
  h.e.send(d2);
  h.pump();
  ASSERT_EQ(h.rdma.size(), 1U);
  EXPECT_EQ(h.rdma[0].type, ActionType::RdmaWrite);
  EXPECT_EQ(h.rdma[0].remote_va, s.va);
  EXPECT_EQ(h.rdma[0].rkey, 0x99U);
  EXPECT_EQ(h.rdma[0].len, 12000U);
  auto wc = h.sent_with(Mid::RdmaWrCompl);
  ASSERT_EQ(wc.size(), 1U);
  EXPECT_EQ(wc[0].ext<wire::RdmaWrComplHeader>().len, 12000U);
  h.e.on_rdma_complete(h.rdma[0].id);
  h.pump();
  EXPECT_FALSE(h.e.zcopy_busy());
}

TEST(Pipelined, StaleSinkAvailIsIgnored) {
  Harness h(Role::Active, zcopy_cfg());
  ASSERT_TRUE(h.establish(8, 4096));
  auto first_buf = pattern(20000);  // ZCopy: must outlive the send
  h.e.send(first_buf);
  h.pump();
  h.send_peer(Mid::RdmaRdCompl, wire::RdmaRdComplHeader{20000 - 64}, {}, wire::flags::kReqPipe);
  h.e.send(bytes_of("x"));  // one data message: the sink's count will be behind
  h.pump();
  wire::SinkAvailHeader s{16384, 0x99, 0x10000, 0};  // NonDisc 0: we sent SrcAvail + Data
  h.send_peer(Mid::SinkAvail, s);
  auto write_buf = pattern(12000);  // ZCopy: must outlive the send
  h.e.send(write_buf);
  h.pump();
  EXPECT_TRUE(h.rdma.empty()) << "stale advert must not be written";
  EXPECT_EQ(h.sent_with(Mid::SrcAvail).size(), 2U) << "falls back to a SrcAvail";
}

TEST(Pipelined, SourceAnswersSinkAvailCancelWithAck) {
  Harness h(Role::Active, zcopy_cfg());
  ASSERT_TRUE(h.establish(8, 4096));
  auto first_buf = pattern(20000);  // ZCopy: must outlive the send
  h.e.send(first_buf);
  h.pump();
  h.send_peer(Mid::RdmaRdCompl, wire::RdmaRdComplHeader{20000 - 64}, {}, wire::flags::kReqPipe);
  wire::SinkAvailHeader s{16384, 0x99, 0x10000, 1};  // the SrcAvail's inline bytes count
  h.send_peer(Mid::SinkAvail, s);
  h.send_peer(Mid::SinkAvailCancel);
  EXPECT_EQ(h.sent_with(Mid::SinkCancelAck).size(), 1U);
}

// ---------------------------------------------------------------------------------------------
// Teardown

TEST(Teardown, DisConnIsAHalfCloseAfterQueuedData) {
  Harness h(Role::Active, small_cfg());
  ASSERT_TRUE(h.establish(3, 4096));  // 1 data message, then the reserve
  h.e.send(pattern(100));
  h.e.send(pattern(100));
  h.pump();
  h.e.shutdown_send();
  h.pump();
  EXPECT_TRUE(h.sent_with(Mid::DisConn).empty()) << "queued data goes first";
  EXPECT_EQ(h.e.send(pattern(1)).error, EPIPE);
  h.send_peer(Mid::Data, std::monostate{}, bytes_of("still talking"), 0, 8);
  auto disc = h.sent_with(Mid::DisConn);
  ASSERT_EQ(disc.size(), 1U);
  EXPECT_EQ(h.sent.back().mid(), 0x02);
  // The peer's direction is still open.
  EXPECT_EQ(h.read_all(), "still talking");
  EXPECT_EQ(h.e.state(), State::Established);
  h.send_peer(Mid::DisConn);
  std::uint8_t b[4];
  EXPECT_TRUE(h.e.recv(b).eof);
  // We sent DisConn first: we start the CM disconnect.
  EXPECT_EQ(h.count(ActionType::CmDisconnect), 1U);
  EXPECT_EQ(h.e.state(), State::Closing);
  h.e.on_cm_disconnect();
  h.pump();
  EXPECT_EQ(h.e.state(), State::Closed);
  EXPECT_EQ(h.count(ActionType::Closed), 1U);
}

TEST(Teardown, PeerClosesFirstWeAnswerTheDreq) {
  Harness h(Role::Passive, small_cfg());
  ASSERT_TRUE(h.establish());
  h.send_peer(Mid::DisConn);
  EXPECT_TRUE(h.e.peer_closed_send());
  EXPECT_TRUE(h.e.readable());
  h.e.send(bytes_of("reply"));
  h.e.shutdown_send();
  h.pump();
  EXPECT_EQ(h.sent.back().mid(), 0x02);
  EXPECT_EQ(h.count(ActionType::CmDisconnect), 0U) << "the side that sent DisConn first DREQs";
  h.e.on_cm_disconnect();
  h.pump();
  EXPECT_EQ(h.count(ActionType::CmDisconnect), 1U);
  EXPECT_EQ(h.e.state(), State::Closed);
}

TEST(Teardown, AbortConnResetsWithAReason) {
  Harness h(Role::Passive, small_cfg());
  ASSERT_TRUE(h.establish());
  h.send_peer(Mid::AbortConn);
  EXPECT_EQ(h.e.state(), State::Reset);
  EXPECT_EQ(h.e.reset_cause(), ResetCause::PeerAbort);
  EXPECT_NE(h.e.reset_reason().find("AbortConn"), std::string_view::npos);
  std::uint8_t b[4];
  EXPECT_EQ(h.e.recv(b).error, ECONNRESET);
  EXPECT_EQ(h.e.send(bytes_of("x")).error, ECONNRESET);
}

TEST(Teardown, LocalAbortSendsAbortConn) {
  Harness h(Role::Active, small_cfg());
  ASSERT_TRUE(h.establish());
  h.e.abort("test");
  h.pump();
  EXPECT_EQ(h.sent_with(Mid::AbortConn).size(), 1U);
  EXPECT_EQ(h.count(ActionType::Reset), 1U);
  EXPECT_EQ(h.count(ActionType::CmDisconnect), 1U);
}

TEST(Teardown, CloseWithUnreadDataIsAbortive) {
  Harness h(Role::Passive, small_cfg());
  ASSERT_TRUE(h.establish());
  h.send_peer(Mid::Data, std::monostate{}, bytes_of("unread"));
  h.e.close();
  h.pump();
  EXPECT_EQ(h.e.state(), State::Reset);
  EXPECT_EQ(h.sent_with(Mid::AbortConn).size(), 1U);
}

TEST(Teardown, DataAfterShutdownRecvResets) {
  Harness h(Role::Passive, small_cfg());
  ASSERT_TRUE(h.establish());
  h.e.shutdown_recv();
  h.send_peer(Mid::Data, std::monostate{}, bytes_of("late"));
  EXPECT_EQ(h.e.state(), State::Reset);
  EXPECT_EQ(h.sent_with(Mid::AbortConn).size(), 1U);
}

TEST(Teardown, CmDisconnectBeforeDisConnIsAReset) {
  Harness h(Role::Passive, small_cfg());
  ASSERT_TRUE(h.establish());
  h.e.on_cm_disconnect();
  EXPECT_EQ(h.e.state(), State::Reset);
  EXPECT_EQ(h.e.reset_cause(), ResetCause::PeerAbort);
}

TEST(Teardown, CloseTimesOutWithoutThePeersDisConn) {
  EngineConfig c = small_cfg();
  c.disconnect_timeout_ms = 1000;
  Harness h(Role::Active, c);
  ASSERT_TRUE(h.establish());
  h.e.tick(10);
  h.e.close();
  h.pump();
  EXPECT_EQ(h.sent_with(Mid::DisConn).size(), 1U);
  EXPECT_EQ(h.e.next_deadline_ms(), 1010U);
  h.e.tick(1011);
  h.pump();
  EXPECT_EQ(h.e.state(), State::Reset);
  EXPECT_EQ(h.e.reset_cause(), ResetCause::Timeout);
}

// ---------------------------------------------------------------------------------------------
// Keepalive

TEST(Keepalive, FiresAfterIdleTimeAndTrafficRestartsIt) {
  EngineConfig c = small_cfg();
  c.keepalive_idle_ms = 1000;
  Harness h(Role::Active, c);
  h.e.tick(0);
  ASSERT_TRUE(h.establish());
  EXPECT_EQ(h.e.next_deadline_ms(), 1000U);
  h.e.tick(999);
  h.pump();
  EXPECT_EQ(h.count(ActionType::Keepalive), 0U);
  h.e.tick(1000);
  h.pump();
  EXPECT_EQ(h.count(ActionType::Keepalive), 1U);
  h.e.tick(1500);
  h.send_peer(Mid::Data, std::monostate{}, bytes_of("x"));
  h.e.tick(2400);
  h.pump();
  EXPECT_EQ(h.count(ActionType::Keepalive), 1U) << "traffic at 1500 moved the deadline";
  h.e.tick(2500);
  h.pump();
  EXPECT_EQ(h.count(ActionType::Keepalive), 2U);
}

TEST(Bindings, ACompletionForABufferNotPostedResetsInsteadOfCorrupting) {
  Harness h(Role::Passive, small_cfg());
  ASSERT_TRUE(h.establish());
  const Action r = h.recvs.front();
  h.send_peer(Mid::Data, std::monostate{}, bytes_of("x"));  // completes buffer r.id
  h.e.on_recv(r.id, 17);                                    // the same buffer again
  h.pump();
  EXPECT_EQ(h.e.state(), State::Reset);
  EXPECT_EQ(h.e.reset_cause(), ResetCause::TransportError);
  EXPECT_NE(h.e.reset_reason().find("not posted"), std::string_view::npos);
}

TEST(Config, RejectsNonsense) {
  EngineConfig c;
  c.recv_bufs = 2;
  EXPECT_THROW(Engine(Role::Active, c), std::invalid_argument);
  c = {};
  c.recv_size = 10;
  EXPECT_THROW(Engine(Role::Active, c), std::invalid_argument);
  c = {};
  c.zcopy_staging = 10;
  EXPECT_THROW(Engine(Role::Active, c), std::invalid_argument);
}

}  // namespace
}  // namespace sdp::test

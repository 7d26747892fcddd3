// The pipe fabric: two engines end to end, and the RC rules the pipe enforces.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "sdp/pipe.hpp"
#include "sdp/pipe_driver.hpp"

namespace sdp {
namespace {

std::vector<std::uint8_t> random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::uint8_t> v(n);
  for (auto& x : v) x = static_cast<std::uint8_t>(rng());
  return v;
}

EngineConfig cfg(std::uint32_t zthresh = 0) {
  EngineConfig c;
  c.recv_bufs = 8;
  c.zcopy_threshold = zthresh;
  return c;
}

TEST(Pipe, ConnectsAndNegotiates) {
  PipePair p(cfg(), cfg());
  ASSERT_TRUE(p.connect());
  EXPECT_TRUE(p.established(0));
  EXPECT_TRUE(p.established(1));
  EXPECT_EQ(p.active().send_credits(), 8);
  EXPECT_EQ(p.passive().send_credits(), 8);
  EXPECT_EQ(p.active().peer_recv_size(), p.passive().local_recv_size());
}

TEST(Pipe, BCopyBothWaysInOrder) {
  PipePair p(cfg(), cfg());
  ASSERT_TRUE(p.connect());
  auto a = random_bytes(1 << 20, 1), b = random_bytes(777777, 2);
  DriverOptions o;
  o.random_schedule = false;
  auto r = drive_pipe(p, a, b, o);
  ASSERT_TRUE(r.ok) << r.failure;
  EXPECT_TRUE(p.closed(0));
  EXPECT_TRUE(p.closed(1));
  EXPECT_TRUE(p.errors().empty());
  EXPECT_EQ(p.active().stats().zcopy_bytes_sent, 0U);
}

TEST(Pipe, ZcopyPullsFromTheSourceBuffer) {
  PipePair p(cfg(65536), cfg(65536));
  ASSERT_TRUE(p.connect());
  auto a = random_bytes(3 << 20, 3), b = random_bytes(100, 4);
  DriverOptions o;
  o.min_write = 100000;
  o.max_write = 1 << 20;
  auto r = drive_pipe(p, a, b, o);
  ASSERT_TRUE(r.ok) << r.failure;
  EXPECT_GT(p.active().stats().zcopy_bytes_sent, 2U << 20);
  EXPECT_GT(p.passive().stats().rdma_reads, 0U);
  EXPECT_EQ(p.zcopy_done(0), r.zcopy_sends[0]);
  EXPECT_EQ(p.registered_remote_regions(0), 0U) << "every grant ended";
}

TEST(Pipe, PipelinedWritesIntoSinkAdverts) {
  EngineConfig src = cfg(65536), sink = cfg(65536);
  sink.sink_adverts = true;
  PipePair p(src, sink);
  ASSERT_TRUE(p.connect());
  auto a = random_bytes(4 << 20, 5), b = random_bytes(10, 6);
  DriverOptions o;
  o.min_write = 70000;
  o.max_write = 300000;
  o.random_schedule = false;
  auto r = drive_pipe(p, a, b, o);
  ASSERT_TRUE(r.ok) << r.failure;
  EXPECT_EQ(p.active().send_mode(), wire::Mode::Pipelined);
  EXPECT_GT(p.active().stats().rdma_writes, 0U);
  EXPECT_GT(p.passive().stats().messages_sent[0xFD], 0U);
  EXPECT_EQ(p.registered_remote_regions(1), 0U);
}

TEST(Pipe, ChRcvBufGrowsTheMessageSize) {
  EngineConfig a = cfg(), b = cfg();
  a.desired_peer_recv_size = 65552;
  b.recv_size = 4096;
  PipePair p(a, b);
  ASSERT_TRUE(p.connect());
  p.run();
  EXPECT_EQ(p.active().peer_recv_size(), 65552U);
  auto x = random_bytes(500000, 7);
  DriverOptions o;
  auto r = drive_pipe(p, x, {}, o);
  ASSERT_TRUE(r.ok) << r.failure;
  EXPECT_LT(p.active().stats().messages_sent[0xFF], 500000U / 4080U);
}

TEST(Pipe, UrgentDataArrivesAtItsMark) {
  PipePair p(cfg(), cfg());
  ASSERT_TRUE(p.connect());
  auto a = random_bytes(200000, 8);
  DriverOptions o;
  o.use_oob = true;
  o.max_write = 3000;
  auto r = drive_pipe(p, a, a, o);
  ASSERT_TRUE(r.ok) << r.failure;
  EXPECT_GT(r.oob_sent[0], 0U);
  EXPECT_EQ(r.oob_sent[0], r.oob_received[1]);
}

TEST(Pipe, KeepaliveOnIdleConnection) {
  EngineConfig c = cfg();
  c.keepalive_idle_ms = 100;
  PipePair p(c, cfg());
  ASSERT_TRUE(p.connect());
  p.tick(50);
  EXPECT_EQ(p.keepalives(0), 0U);
  p.tick(150);
  EXPECT_EQ(p.keepalives(0), 1U);
  EXPECT_EQ(p.keepalives(1), 0U);
}

TEST(Pipe, AbortReachesThePeerAsReset) {
  PipePair p(cfg(), cfg());
  ASSERT_TRUE(p.connect());
  p.active().abort("test");
  p.drain(0);
  p.run();
  EXPECT_TRUE(p.reset(0));
  EXPECT_TRUE(p.reset(1));
  EXPECT_EQ(p.passive().reset_cause(), ResetCause::PeerAbort);
}

// --- RC rules the pipe enforces ------------------------------------------------------------

TEST(PipeRules, CreditsStopTheSenderBeforeTheReceiverRunsOut) {
  // The passive application never reads: once its buffers are full the active engine must stop
  // (credits), so the pipe records no RNR and the reserve stays posted.
  PipePair p(cfg(), cfg());
  ASSERT_TRUE(p.connect());
  auto a = random_bytes(4 << 20, 9);
  std::size_t off = 0;
  for (int i = 0; i < 200 && off < a.size(); ++i) {
    auto r = p.active().send({a.data() + off, std::min<std::size_t>(50000, a.size() - off)});
    off += r.bytes;
    p.drain(0);
    p.run();
  }
  EXPECT_TRUE(p.errors().empty()) << p.errors().front();
  EXPECT_LT(off, a.size()) << "credits must have stopped the sender";
  EXPECT_EQ(p.passive().posted_recvs(), 2U) << "the control reserve stays posted";
}

TEST(PipeRules, SendWithoutPostedReceiveIsAnError) {
  PipePair p(cfg(), cfg());
  ASSERT_TRUE(p.connect());
  // A hostile active side that ignores credits: 9 messages into 8 receive buffers.
  for (std::uint32_t i = 1; i <= 9; ++i) {
    std::vector<std::uint8_t> m(17, 0);
    m[0] = 0xFF;
    m[7] = 17;
    m[11] = static_cast<std::uint8_t>(i);
    p.inject_send(0, m);
  }
  p.run();
  ASSERT_FALSE(p.errors().empty());
  EXPECT_NE(p.errors().front().find("RNR"), std::string::npos) << p.errors().front();
}

TEST(PipeRules, GrantEndsWithTheAdvert) {
  // Play a malicious sink: after the source's grant ended, reading it must fail.
  EngineConfig c = cfg(65536);
  PipePair p(c, c);
  ASSERT_TRUE(p.connect());
  auto a = random_bytes(200000, 10);
  std::uint64_t va = 0;
  std::uint32_t rkey = 0;
  p.on_wire = [&](int side, std::span<const std::uint8_t> m) {
    if (side == 0 && m[0] == 0xFE) {
      auto d = wire::decode_message(m);
      ASSERT_TRUE(d.ok());
      va = std::get<wire::SrcAvailHeader>(d->ext).va;
      rkey = std::get<wire::SrcAvailHeader>(d->ext).rkey;
    }
  };
  auto r = p.active().send(a);
  ASSERT_TRUE(r.zcopy);
  p.drain(0);
  std::mt19937_64 rng(1);
  while (va == 0 && p.step(rng)) {
  }
  ASSERT_NE(va, 0U);
  std::vector<std::uint8_t> buf(100);
  EXPECT_TRUE(p.peer_rdma_read(0, va, rkey, buf)) << "inside the grant";
  EXPECT_FALSE(p.peer_rdma_read(0, va, rkey + 1, buf)) << "wrong R_Key";
  EXPECT_FALSE(p.peer_rdma_read(0, va - 1, rkey, buf)) << "before the buffer";
  EXPECT_FALSE(p.peer_rdma_read(0, va + a.size() - 99, rkey, buf)) << "past the end";
  EXPECT_FALSE(p.peer_rdma_write(0, va, rkey, buf)) << "no write right on a SrcAvail";
  // Let the transfer finish: the grant ends, and so does the access.
  std::vector<std::uint8_t> sink(a.size());
  std::size_t got = 0;
  for (int i = 0; i < 100000 && got < a.size(); ++i) {
    p.run();
    auto rr = p.passive().recv({sink.data() + got, sink.size() - got});
    got += rr.bytes;
    p.drain(1);
  }
  p.run();
  ASSERT_EQ(got, a.size());
  EXPECT_EQ(sink, a);
  EXPECT_EQ(p.zcopy_done(0), 1U);
  EXPECT_FALSE(p.peer_rdma_read(0, va, rkey, buf)) << "the grant has ended";
  EXPECT_EQ(p.access_violations(), 0U);
}

TEST(PipeRules, ResetEndsEveryGrant) {
  EngineConfig c = cfg(65536);
  c.sink_adverts = true;
  PipePair p(c, c);
  ASSERT_TRUE(p.connect());
  auto a = random_bytes(300000, 11);
  p.active().send(a);
  p.drain(0);
  std::mt19937_64 rng(2);
  for (int i = 0; i < 3; ++i) p.step(rng);
  EXPECT_GT(p.registered_remote_regions(0), 0U);
  p.active().abort("test");
  p.drain(0);
  EXPECT_EQ(p.registered_remote_regions(0), 0U);
}

}  // namespace
}  // namespace sdp

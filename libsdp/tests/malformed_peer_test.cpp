// One test per way a peer can break the protocol: the engine must reset the connection, send
// AbortConn, and say precisely what was wrong. Never a crash, never undefined behaviour (the asan
// preset runs this file too).
#include <gtest/gtest.h>

#include <functional>

#include "harness.hpp"

namespace sdp::test {
namespace {

using wire::Mid;

struct Case {
  const char* name;
  Role role;
  std::function<void(EngineConfig&)> config;
  std::function<void(Harness&)> provoke;
  const char* expect;  // substring of reset_reason()
};

void put32(std::vector<std::uint8_t>& v, std::size_t off, std::uint32_t x) {
  v[off] = static_cast<std::uint8_t>(x >> 24);
  v[off + 1] = static_cast<std::uint8_t>(x >> 16);
  v[off + 2] = static_cast<std::uint8_t>(x >> 8);
  v[off + 3] = static_cast<std::uint8_t>(x);
}

// A raw message with the right MSeq/MSeqAck, so that only the intended defect is present.
std::vector<std::uint8_t> raw(Harness& h, std::vector<std::uint8_t> v) {
  if (v.size() >= 16) {
    put32(v, 8, ++h.peer_mseq);
    put32(v, 12, h.last_sent_mseq());
  }
  return v;
}

std::vector<std::uint8_t> bsdh(std::uint8_t mid, std::uint8_t flags, std::uint32_t len,
                               std::size_t total) {
  std::vector<std::uint8_t> v(total);
  v[0] = mid;
  v[1] = flags;
  v[3] = 8;  // Bufs
  put32(v, 4, len);
  return v;
}

void no_config(EngineConfig&) {}
void zcopy_on(EngineConfig& c) {
  c.zcopy_threshold = 10000;
}
void sink_on(EngineConfig& c) {
  c.zcopy_threshold = 10000;
  c.sink_adverts = true;
}

std::vector<std::uint8_t> big(std::size_t n) {
  return std::vector<std::uint8_t>(n, 0x5A);
}

// Brings a source engine into Pipelined mode with a SrcAvail completed (REQ_PIPE path).
void make_pipelined_source(Harness& h) {
  static std::vector<std::uint8_t> buf = big(20000);
  h.e.send(buf);
  h.pump();
  h.send_peer(Mid::RdmaRdCompl, wire::RdmaRdComplHeader{20000 - 64}, {}, wire::flags::kReqPipe);
}

const wire::SrcAvailHeader kSa{30000, 0x77, 0x100000};

const Case kCases[] = {
    {"TooShort", Role::Passive, no_config,
     [](Harness& h) { h.inject(raw(h, std::vector<std::uint8_t>(10, 0xFF))); },
     "malformed message"},
    {"LenDisagreesWithBuffer", Role::Passive, no_config,
     [](Harness& h) { h.inject(raw(h, bsdh(0xFF, 0, 40, 36))); }, "malformed message"},
    {"UnknownMid", Role::Passive, no_config,
     [](Harness& h) { h.inject(raw(h, bsdh(0x42, 0, 16, 16))); }, "0x42"},
    {"ReservedFlagBits", Role::Passive, no_config,
     [](Harness& h) { h.inject(raw(h, bsdh(0xFF, 0x10, 20, 20))); }, "malformed message"},
    {"OobPresOnControlMessage", Role::Passive, no_config,
     [](Harness& h) { h.inject(raw(h, bsdh(0x04, 0x01, 16, 16))); }, "malformed message"},
    {"ReqPipeOnData", Role::Passive, no_config,
     [](Harness& h) { h.inject(raw(h, bsdh(0xFF, 0x04, 20, 20))); }, "malformed message"},
    {"PayloadOnDisConn", Role::Passive, no_config,
     [](Harness& h) { h.inject(raw(h, bsdh(0x02, 0, 20, 20))); }, "malformed message"},
    {"ModeChangeReservedBits", Role::Passive, no_config,
     [](Harness& h) {
       auto v = bsdh(0x07, 0, 20, 20);
       v[17] = 1;
       h.inject(raw(h, v));
     },
     "malformed message"},
    {"HelloAsSend", Role::Passive, no_config,
     [](Harness& h) { h.inject(raw(h, bsdh(0x00, 0, 92, 92))); }, "Hello"},
    {"MSeqGap", Role::Passive, no_config,
     [](Harness& h) {
       h.peer_mseq++;
       h.send_peer(Mid::Data, std::monostate{}, {1});
     },
     "out of order"},
    {"MSeqRepeated", Role::Passive, no_config,
     [](Harness& h) {
       h.send_peer(Mid::Data, std::monostate{}, {1});
       h.peer_mseq--;
       h.send_peer(Mid::Data, std::monostate{}, {2});
     },
     "out of order"},
    {"MSeqAckOfUnsentMessage", Role::Passive, no_config,
     [](Harness& h) {
       auto v = h.msg(Mid::Data, std::monostate{}, {1});
       put32(v, 12, 5);
       h.inject(v);
     },
     "never sent"},
    {"MSeqAckBackwards", Role::Active, no_config,
     [](Harness& h) {
       h.e.send(bytes_of("ab"));
       h.pump();
       h.send_peer(Mid::Data, std::monostate{}, {1});  // acks MSeq 1
       auto v = h.msg(Mid::Data, std::monostate{}, {2});
       put32(v, 12, 0);
       h.inject(v);
     },
     "backwards"},
    {"MessageLargerThanOurReceiveSize", Role::Passive, no_config,
     [](Harness& h) { h.send_peer(Mid::Data, std::monostate{}, big(h.e.local_recv_size())); },
     "exceeds our receive size"},
    {"DataAfterDisConn", Role::Passive, no_config,
     [](Harness& h) {
       h.send_peer(Mid::DisConn);
       h.send_peer(Mid::Data, std::monostate{}, {1});
     },
     "after the peer's DisConn"},
    {"SecondDisConn", Role::Passive, no_config,
     [](Harness& h) {
       h.send_peer(Mid::DisConn);
       h.send_peer(Mid::DisConn);
     },
     "second DisConn"},
    {"OobPresOnEmptyData", Role::Passive, no_config,
     [](Harness& h) { h.send_peer(Mid::Data, std::monostate{}, {}, wire::flags::kOobPres); },
     "malformed message"},
    {"DataDuringSrcAvail", Role::Passive, zcopy_on,
     [](Harness& h) {
       h.send_peer(Mid::SrcAvail, kSa, {1});
       h.send_peer(Mid::Data, std::monostate{}, {2});
     },
     "while a SrcAvail is outstanding"},
    {"SecondSrcAvail", Role::Passive, zcopy_on,
     [](Harness& h) {
       h.send_peer(Mid::SrcAvail, kSa, {1});
       h.send_peer(Mid::SrcAvail, kSa, {1});
     },
     "second SrcAvail"},
    {"CombinedSrcAvailWithoutInline", Role::Passive, zcopy_on,
     [](Harness& h) { h.send_peer(Mid::SrcAvail, kSa); }, "without inline data"},
    {"SrcAvailWithNothingToRead", Role::Passive, zcopy_on,
     [](Harness& h) {
       h.send_peer(Mid::SrcAvail, wire::SrcAvailHeader{3, 1, 0x1000}, {1, 2, 3});
     },
     "leaves nothing to read"},
    {"PipelinedSrcAvailWithInline", Role::Passive, zcopy_on,
     [](Harness& h) {
       h.send_peer(Mid::ModeChange, wire::ModeChangeHeader{false, wire::Mode::Pipelined});
       h.send_peer(Mid::SrcAvail, kSa, {1});
     },
     "Pipelined-mode SrcAvail with"},
    {"SrcAvailTowardsBufferedHalf", Role::Passive, zcopy_on,
     [](Harness& h) {
       h.send_peer(Mid::ModeChange, wire::ModeChangeHeader{false, wire::Mode::Buffered});
       h.send_peer(Mid::SrcAvail, kSa, {1});
     },
     "Buffered"},
    {"DisConnDuringSrcAvail", Role::Passive, zcopy_on,
     [](Harness& h) {
       h.send_peer(Mid::SrcAvail, kSa, {1});
       h.send_peer(Mid::DisConn);
     },
     "DisConn while its SrcAvail"},
    {"ModeChangeDuringSrcAvail", Role::Passive, zcopy_on,
     [](Harness& h) {
       h.send_peer(Mid::SrcAvail, kSa, {1});
       h.send_peer(Mid::ModeChange, wire::ModeChangeHeader{false, wire::Mode::Pipelined});
     },
     "while a SrcAvail"},
    {"RdmaRdComplWithoutSrcAvail", Role::Active, zcopy_on,
     [](Harness& h) { h.send_peer(Mid::RdmaRdCompl, wire::RdmaRdComplHeader{10}); },
     "no SrcAvail was ever sent"},
    {"RdmaRdComplTooLarge", Role::Active, zcopy_on,
     [](Harness& h) {
       static auto buf = big(20000);
       h.e.send(buf);
       h.pump();
       h.send_peer(Mid::RdmaRdCompl, wire::RdmaRdComplHeader{20000});
     },
     "only 19936 are outstanding"},
    {"SendSmWithoutSrcAvail", Role::Active, zcopy_on, [](Harness& h) { h.send_peer(Mid::SendSm); },
     "SendSm but no SrcAvail"},
    {"SinkAvailTowardsCombinedSendHalf", Role::Active, zcopy_on,
     [](Harness& h) {
       h.send_peer(Mid::SinkAvail, wire::SinkAvailHeader{4096, 1, 0x1000, 0});
     },
     "not Pipelined"},
    {"EmptySinkAvail", Role::Active, zcopy_on,
     [](Harness& h) {
       make_pipelined_source(h);
       h.send_peer(Mid::SinkAvail, wire::SinkAvailHeader{0, 1, 0x1000, 0});
     },
     "empty buffer"},
    {"SinkAvailBeyondMaxAdverts", Role::Active, zcopy_on,
     [](Harness& h) {
       make_pipelined_source(h);
       // NonDisc 1: the source's Combined SrcAvail carried inline data (§2, §6).
       h.send_peer(Mid::SinkAvail, wire::SinkAvailHeader{4096, 1, 0x1000, 1});
       h.send_peer(Mid::SinkAvail, wire::SinkAvailHeader{4096, 1, 0x2000, 1});
     },
     "MaxAdverts"},
    {"RdmaWrComplWithoutSinkAvail", Role::Passive, sink_on,
     [](Harness& h) { h.send_peer(Mid::RdmaWrCompl, wire::RdmaWrComplHeader{1}); },
     "no SinkAvail outstanding"},
    {"RdmaWrComplLargerThanAdvert", Role::Passive, sink_on,
     [](Harness& h) {
       h.send_peer(Mid::ModeChange, wire::ModeChangeHeader{false, wire::Mode::Pipelined});
       h.send_peer(Mid::RdmaWrCompl, wire::RdmaWrComplHeader{1U << 30});
     },
     "-byte SinkAvail"},
    {"SinkCancelAckWithoutCancel", Role::Passive, sink_on,
     [](Harness& h) { h.send_peer(Mid::SinkCancelAck); }, "without a SinkAvailCancel"},
    {"ModeChangeOfSendHalf", Role::Passive, no_config,
     [](Harness& h) {
       h.send_peer(Mid::ModeChange, wire::ModeChangeHeader{true, wire::Mode::Pipelined});
     },
     "send half"},
    {"ModeChangeToCurrentMode", Role::Passive, no_config,
     [](Harness& h) {
       h.send_peer(Mid::ModeChange, wire::ModeChangeHeader{false, wire::Mode::Combined});
     },
     "not allowed"},
    {"ChRcvBufAckWithoutRequest", Role::Passive, no_config,
     [](Harness& h) { h.send_peer(Mid::ChRcvBufAck, wire::ChRcvBufAckHeader{8192}); },
     "without a ChRcvBuf"},
    {"SuspComm", Role::Passive, no_config,
     [](Harness& h) { h.send_peer(Mid::SuspComm, wire::SuspCommHeader{0x10001}); },
     "not supported"},
    {"SuspCommAck", Role::Passive, no_config, [](Harness& h) { h.send_peer(Mid::SuspCommAck); },
     "without a SuspComm"},
};

class MalformedPeer : public ::testing::TestWithParam<Case> {};

TEST_P(MalformedPeer, ResetsWithAbortConnAndAReason) {
  const Case& c = GetParam();
  EngineConfig cfg;
  cfg.recv_bufs = 8;
  cfg.recv_size = 4096;
  cfg.max_recv_size = 16384;
  cfg.zcopy_threshold = 0;
  c.config(cfg);
  Harness h(c.role, cfg);
  ASSERT_TRUE(h.establish(8, 4096));
  c.provoke(h);
  h.pump();
  ASSERT_EQ(h.e.state(), State::Reset) << c.name << ": the engine accepted it";
  EXPECT_EQ(h.e.reset_cause(), ResetCause::ProtocolViolation);
  EXPECT_NE(h.e.reset_reason().find(c.expect), std::string_view::npos)
      << "reason was: " << h.e.reset_reason();
  EXPECT_EQ(h.sent_with(Mid::AbortConn).size(), 1U) << "AbortConn tells the peer";
  EXPECT_EQ(h.count(ActionType::Reset), 1U);
  // Every grant to the peer ended.
  std::size_t remote = 0;
  for (const auto& r : h.regions) remote += r.access != 0;
  EXPECT_EQ(h.deregistered.size(), remote);
  // Anything more from the peer is ignored; the application sees ECONNRESET.
  h.send_peer(Mid::Data, std::monostate{}, {1});
  std::uint8_t b[4];
  EXPECT_EQ(h.e.recv(b).error, ECONNRESET);
  EXPECT_EQ(h.e.send(bytes_of("x")).error, ECONNRESET);
}

INSTANTIATE_TEST_SUITE_P(AllCases, MalformedPeer, ::testing::ValuesIn(kCases),
                         [](const auto& tpi) { return std::string(tpi.param.name); });

}  // namespace
}  // namespace sdp::test

// The runner and its reports: the shipped suite loads and passes against the builtin peer, and
// the invariants catch a misbehaving peer (a scripted fake transport breaking one rule each).
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "report.hpp"
#include "runner.hpp"
#include "sdp/wire.hpp"
#include "transport.hpp"

namespace conformance {
namespace {

namespace wire = sdp::wire;

std::vector<LoadedScenario> suite() {
  std::vector<LoadedScenario> v;
  std::string err;
  EXPECT_TRUE(load_scenarios(CONF_SCENARIO_DIR, v, err)) << err;
  return v;
}

TEST(ConformanceSuite, HasAtLeast80CasesEachCitingARule) {
  const auto v = suite();
  EXPECT_GE(v.size(), 80U);
  for (const auto& s : v) {
    ASSERT_FALSE(s.scenario.rule().empty()) << s.scenario.name();
    bool cites = false;
    for (const auto& r : s.scenario.rule()) cites |= r.find("§") != std::string::npos;
    EXPECT_TRUE(cites) << s.scenario.name() << " cites no section of sdp-wire.md";
  }
}

TEST(ConformanceSuite, EveryCasePassesAgainstTheBuiltinPeer) {
  RunOptions opt;
  opt.builtin = true;
  opt.open = [](const Scenario& s, std::string&) {
    return make_builtin_transport(s.peer_config());
  };
  for (const auto& s : suite()) {
    const CaseResult r = run_scenario(s, opt);
    EXPECT_EQ(r.verdict(), PASS) << s.scenario.name() << ": " << r.reason();
  }
}

TEST(ConformanceSuite, NonBuiltinPeerSkipsBuiltinOnlyCases) {
  RunOptions opt;
  opt.builtin = false;
  int opened = 0;
  opt.open = [&](const Scenario&, std::string& e) -> std::unique_ptr<Transport> {
    ++opened;
    e = "no fabric in this test";
    return nullptr;
  };
  int skipped = 0, errors = 0;
  for (const auto& s : suite()) {
    const CaseResult r = run_scenario(s, opt);
    const bool builtin_only = s.scenario.builtin_only() || s.scenario.role() == RAW_ACCEPTS ||
                              s.scenario.has_peer_config();
    if (builtin_only) {
      EXPECT_EQ(r.verdict(), SKIP) << s.scenario.name();
      ++skipped;
    } else {
      EXPECT_EQ(r.verdict(), ERROR) << s.scenario.name();
      EXPECT_NE(r.reason().find("no fabric in this test"), std::string::npos);
      ++errors;
    }
  }
  EXPECT_EQ(opened, errors);
  EXPECT_GT(errors, 40) << "most cases must run against any peer";
}

// ---------------------------------------------------------------------------------------------
// A scripted peer: accepts, then answers each of our SENDs with the next scripted messages.

std::vector<std::uint8_t> msg(std::uint8_t mid, std::uint16_t bufs, std::uint32_t mseq,
                              std::uint32_t ack, std::size_t payload = 0, std::uint8_t flags = 0) {
  std::vector<std::uint8_t> v(16 + payload, 0x5A);
  wire::Bsdh h{mid, flags, bufs, static_cast<std::uint32_t>(v.size()), mseq, ack};
  EXPECT_TRUE(wire::encode_bsdh(h, v).ok());
  return v;
}

class Scripted final : public Transport {
 public:
  explicit Scripted(std::deque<std::vector<std::vector<std::uint8_t>>> replies, std::uint16_t bufs)
      : replies_(std::move(replies)), bufs_(bufs) {}
  std::string describe() const override { return "scripted"; }
  std::uint64_t now_ms() override { return now_; }
  std::optional<Event> poll(std::uint64_t deadline) override {
    if (!ev_.empty()) {
      Event e = ev_.front();
      ev_.pop_front();
      return e;
    }
    now_ = std::max(now_, deadline);
    return std::nullopt;
  }
  bool connect(Service, bool, std::span<const std::uint8_t>, std::string&) override {
    std::vector<std::uint8_t> rep(wire::kHelloAckMessageSize, 0);
    wire::HelloAckHeader hah;
    hah.act_rcv_sz = 4096;
    EXPECT_TRUE(wire::encode_hello_ack({1, 0, bufs_, 0, 0, 0}, hah, rep).ok());
    ev_.push_back({Event::Kind::Established, 0, rep, {}});
    return true;
  }
  bool post_recv(std::uint32_t, std::uint32_t, std::string&) override { return true; }
  bool send(std::span<const std::uint8_t>, std::string&) override {
    if (!replies_.empty()) {
      for (auto& m : replies_.front()) ev_.push_back({Event::Kind::Recv, 0, m, {}});
      replies_.pop_front();
    }
    return true;
  }
  std::optional<LocalRegion> register_region(std::uint32_t, bool, bool, std::string& e) override {
    e = "none";
    return std::nullopt;
  }
  void deregister_region(std::uint64_t) override {}
  bool rdma_read(std::uint64_t, std::uint64_t, std::uint32_t, std::uint32_t,
                 std::string&) override {
    return false;
  }
  bool rdma_write(std::uint64_t, std::uint64_t, std::uint32_t, std::span<const std::uint8_t>,
                  std::string&) override {
    return false;
  }
  void disconnect() override {}

 private:
  std::deque<std::vector<std::vector<std::uint8_t>>> replies_;
  std::deque<Event> ev_;
  std::uint16_t bufs_;
  std::uint64_t now_ = 0;
};

// Connect with 4 receives, send one Data, expect the echo.
Scenario echo_once() {
  Scenario s;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
      R"pb(
        name: "t"
        rule: "§5"
        step { connect { recv_bufs: 4 } }
        step { send { msg { mid: DATA payload_len: 8 } } }
        step {
          expect {
            msg {
              mid: DATA
              payload_len { eq: 8 }
            }
          }
        }
      )pb",
      &s));
  return s;
}

CaseResult run_scripted(const Scenario& s, std::vector<std::vector<std::uint8_t>> reply) {
  RunOptions opt;
  opt.open = [reply](const Scenario&, std::string&) -> std::unique_ptr<Transport> {
    return std::make_unique<Scripted>(std::deque<std::vector<std::vector<std::uint8_t>>>{reply},
                                      16);
  };
  return run_scenario({"test", s}, opt);
}

TEST(ConformanceInvariants, ACorrectReplyPasses) {
  const auto r = run_scripted(echo_once(), {msg(0xFF, 16, 1, 1, 8)});
  EXPECT_EQ(r.verdict(), PASS) << r.reason();
}

TEST(ConformanceInvariants, MSeqGapFails) {
  const auto r = run_scripted(echo_once(), {msg(0xFF, 16, 2, 1, 8)});
  EXPECT_EQ(r.verdict(), FAIL);
  EXPECT_NE(r.reason().find("MSeq 2 after 0"), std::string::npos) << r.reason();
}

TEST(ConformanceInvariants, AckOfAMessageNeverSentFails) {
  const auto r = run_scripted(echo_once(), {msg(0xFF, 16, 1, 7, 8)});
  EXPECT_EQ(r.verdict(), FAIL);
  EXPECT_NE(r.reason().find("acknowledges a message never sent"), std::string::npos) << r.reason();
}

TEST(ConformanceInvariants, MalformedMessageFails) {
  auto m = msg(0xFF, 16, 1, 1, 8);
  m[1] = 0x80;  // a reserved flag bit
  const auto r = run_scripted(echo_once(), {m});
  EXPECT_EQ(r.verdict(), FAIL);
  EXPECT_NE(r.reason().find("malformed"), std::string::npos) << r.reason();
}

TEST(ConformanceInvariants, CreditOverrunFails) {
  // We told the peer of 4 receives (4 more are posted, never advertised): its fifth message
  // before any new MSeqAck is an overrun, whatever the QP could hold.
  Scenario s;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      R"pb(
        name: "t"
        rule: "§5"
        step { connect { recv_bufs: 4 } }
        step { post_recv { count: 4 } }
        step { send { msg { mid: DATA payload_len: 8 bufs: 4 } } }
        step { wait { ms: 10 } }
      )pb",
      &s));
  std::vector<std::vector<std::uint8_t>> five;
  for (std::uint32_t i = 1; i <= 3; ++i) five.push_back(msg(0xFF, 16, i, 1, 8));
  five.push_back(msg(0xFF, 17, 4, 1, 0));  // the last credit: a credit update, allowed
  five.push_back(msg(0xFF, 17, 5, 1, 8));
  const auto r = run_scripted(s, five);
  EXPECT_EQ(r.verdict(), FAIL);
  EXPECT_NE(r.reason().find("credit overrun"), std::string::npos) << r.reason();
  five.pop_back();
  EXPECT_EQ(run_scripted(s, five).verdict(), PASS);
}

TEST(ConformanceInvariants, LastCreditWithPayloadBreaksCa482) {
  // Four credits: the fourth message, with payload, takes the last one.
  Scenario s = echo_once();
  s.mutable_step()->RemoveLast();
  s.add_step()->mutable_wait()->set_ms(10);
  std::vector<std::vector<std::uint8_t>> four;
  for (std::uint32_t i = 1; i <= 4; ++i) four.push_back(msg(0xFF, 16, i, 1, 8));
  const auto r = run_scripted(s, four);
  EXPECT_EQ(r.verdict(), FAIL);
  EXPECT_NE(r.reason().find("CA4-82"), std::string::npos) << r.reason();
  // The same with a credit update as the fourth message (no payload, adds credits) is fine.
  four.back() = msg(0xFF, 17, 4, 1, 0);
  const auto ok = run_scripted(s, four);
  EXPECT_EQ(ok.verdict(), PASS) << ok.reason();
}

TEST(ConformanceMatchers, FieldMismatchNamesTheField) {
  Scenario s = echo_once();
  s.mutable_step(2)->mutable_expect()->mutable_msg()->mutable_bufs()->set_eq(3);
  const auto r = run_scripted(s, {msg(0xFF, 16, 1, 1, 8)});
  EXPECT_EQ(r.verdict(), FAIL);
  EXPECT_NE(r.reason().find("Bufs 16, expected = 3"), std::string::npos) << r.reason();
  s.mutable_step(2)->mutable_expect()->mutable_msg()->mutable_bufs()->mutable_range()->set_min(10);
  s.mutable_step(2)->mutable_expect()->mutable_msg()->mutable_bufs()->mutable_range()->set_max(20);
  EXPECT_EQ(run_scripted(s, {msg(0xFF, 16, 1, 1, 8)}).verdict(), PASS);
}

TEST(ConformanceMatchers, NothingArrivingFailsWithinTheBound) {
  const auto r = run_scripted(echo_once(), {});
  EXPECT_EQ(r.verdict(), FAIL);
  EXPECT_NE(r.reason().find("within the bound"), std::string::npos) << r.reason();
  EXPECT_EQ(r.failed_step(), 3);
}

TEST(ConformanceMatchers, CreditUpdatesAreSkippedUnlessSkipNone) {
  Scenario s = echo_once();
  std::vector<std::vector<std::uint8_t>> r2 = {msg(0xFF, 16, 1, 1, 0), msg(0xFF, 16, 2, 1, 8)};
  EXPECT_EQ(run_scripted(s, r2).verdict(), PASS);
  s.mutable_step(2)->mutable_expect()->set_skip_none(true);
  EXPECT_EQ(run_scripted(s, r2).verdict(), FAIL);
}

TEST(ConformanceMatchers, DeferDataKeepsStreamBytesThatOvertakeAControlMessage) {
  Scenario s;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      R"pb(
        name: "t"
        rule: "§1"
        step { connect { recv_bufs: 4 } }
        step { send { msg { mid: DATA payload_len: 8 } } }
        step {
          expect {
            msg { mid: DIS_CONN }
            defer_data: true
          }
        }
        step { expect_data { bytes: "ZZZZZZZZ" } }
      )pb",
      &s));
  const std::vector<std::vector<std::uint8_t>> reply = {msg(0xFF, 16, 1, 1, 8),
                                                        msg(0x02, 16, 2, 1)};
  const auto ok = run_scripted(s, reply);
  EXPECT_EQ(ok.verdict(), PASS) << ok.reason();
  s.mutable_step(2)->mutable_expect()->set_defer_data(false);
  const auto bad = run_scripted(s, reply);
  EXPECT_EQ(bad.verdict(), FAIL);
  EXPECT_NE(bad.reason().find("expected DisConn"), std::string::npos) << bad.reason();
}

TEST(ConformanceScenarioErrors, RegionOffsetBeyondTheRegionFailsTheStep) {
  Scenario s;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      R"pb(
        name: "t"
        rule: "§6"
        step { connect {} }
        step { register { name: "r" size: 100 remote_read: true } }
        step { send { msg { mid: SRC_AVAIL region: "r" region_offset: 200 payload_len: 1 } } }
      )pb",
      &s));
  RunOptions opt;
  opt.builtin = true;
  opt.open = [](const Scenario& sc, std::string&) {
    return make_builtin_transport(sc.peer_config());
  };
  const auto r = run_scenario({"test", s}, opt);
  EXPECT_EQ(r.verdict(), FAIL);
  EXPECT_EQ(r.failed_step(), 3);
  EXPECT_NE(r.reason().find("beyond region 'r'"), std::string::npos) << r.reason();
}

// ---------------------------------------------------------------------------------------------
// Loading errors

std::string write_tmp(const std::string& name, const std::string& text) {
  const auto p = std::filesystem::temp_directory_path() / name;
  std::ofstream(p) << text;
  return p.string();
}

TEST(ConformanceLoad, ParseErrorsNameTheLine) {
  std::vector<LoadedScenario> v;
  std::string err;
  const auto p = write_tmp("conf_bad.textproto", "scenario {\n  name: \"x\"\n  bogus: 1\n}\n");
  EXPECT_FALSE(load_scenarios(p, v, err));
  EXPECT_NE(err.find("line 3"), std::string::npos) << err;
}

TEST(ConformanceLoad, RefusesScenariosWithoutRuleOrStepsAndDuplicates) {
  std::vector<LoadedScenario> v;
  std::string err;
  EXPECT_FALSE(load_scenarios(
      write_tmp("conf_norule.textproto", "scenario { name: \"a\" step { wait { ms: 1 } } }"), v,
      err));
  EXPECT_NE(err.find("cites no rule"), std::string::npos) << err;
  EXPECT_FALSE(load_scenarios(
      write_tmp("conf_nostep.textproto", "scenario { name: \"a\" rule: \"§1\" }"), v, err));
  EXPECT_NE(err.find("no steps"), std::string::npos) << err;
  EXPECT_FALSE(
      load_scenarios(write_tmp("conf_dup.textproto",
                               "scenario { name: \"a\" rule: \"§1\" step { wait { ms: 1 } } }\n"
                               "scenario { name: \"a\" rule: \"§1\" step { wait { ms: 1 } } }"),
                     v, err));
  EXPECT_NE(err.find("used twice"), std::string::npos) << err;
  EXPECT_FALSE(load_scenarios("/nonexistent/x.textproto", v, err));
  EXPECT_NE(err.find("no such file"), std::string::npos) << err;
}

// ---------------------------------------------------------------------------------------------
// Reports

TEST(ConformanceReport, JunitAndJsonCarryEveryCase) {
  Report r;
  r.set_peer("builtin");
  auto* a = r.add_cases();
  a->set_name("ok");
  a->set_verdict(PASS);
  auto* b = r.add_cases();
  b->set_name("bad <case>");
  b->set_verdict(FAIL);
  b->set_reason("Bufs 3 & \"more\"");
  auto* c = r.add_cases();
  c->set_name("skipped");
  c->set_verdict(SKIP);
  r.set_passed(1);
  r.set_failed(1);
  r.set_skipped(1);
  std::string err;
  const auto dir = std::filesystem::temp_directory_path();
  ASSERT_TRUE(write_junit(r, (dir / "conf.junit.xml").string(), err)) << err;
  std::stringstream x;
  x << std::ifstream(dir / "conf.junit.xml").rdbuf();
  EXPECT_NE(x.str().find("tests=\"3\" failures=\"1\""), std::string::npos) << x.str();
  EXPECT_NE(x.str().find("name=\"bad &lt;case&gt;\""), std::string::npos);
  EXPECT_NE(x.str().find("message=\"Bufs 3 &amp; &quot;more&quot;\""), std::string::npos);
  EXPECT_NE(x.str().find("<skipped"), std::string::npos);
  ASSERT_TRUE(write_json(r, (dir / "conf.json").string(), err)) << err;
  std::stringstream j;
  j << std::ifstream(dir / "conf.json").rdbuf();
  Report back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(j.str(), &back).ok());
  ASSERT_EQ(back.cases_size(), 3);
  EXPECT_EQ(back.cases(1).verdict(), FAIL);
  EXPECT_EQ(back.cases(1).reason(), "Bufs 3 & \"more\"");
  std::ostringstream sum;
  print_summary(r, sum, 0);
  EXPECT_NE(sum.str().find("3 cases: 1 passed, 1 failed, 1 skipped"), std::string::npos)
      << sum.str();
}

}  // namespace
}  // namespace conformance

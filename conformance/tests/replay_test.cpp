// Trace replay: the lab's captures (captures/README.md) turned into scenarios, side by side, step
// by step; broken, cut and foreign captures refused with a reason; the server sides run against
// the builtin peer.
#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "replay.hpp"
#include "runner.hpp"
#include "transport.hpp"

namespace conformance {
namespace {

namespace fs = std::filesystem;

std::string capture(const std::string& name) {
  return std::string(CONF_CAPTURE_DIR) + "/" + name;
}

// The scenario as text for a failure message, long byte strings shortened.
std::string dump(const Scenario& in) {
  Scenario s = in;
  auto shorten = [](std::string* b) {
    if (b->size() > 48) *b = b->substr(0, 16) + "...(" + std::to_string(b->size()) + " bytes)";
  };
  for (Step& st : *s.mutable_step()) {
    if (st.has_send()) shorten(st.mutable_send()->mutable_msg()->mutable_payload());
    if (st.has_expect_data()) shorten(st.mutable_expect_data()->mutable_bytes());
    if (st.has_app() && st.app().has_write_bytes())
      shorten(st.mutable_app()->mutable_write_bytes());
  }
  std::string t;
  google::protobuf::TextFormat::PrintToString(s, &t);
  return t;
}

Scenario replay(const std::string& file, bool client, unsigned connection = 0) {
  ReplayOptions o;
  o.path = capture(file);
  o.client_side = client;
  o.connection = connection;
  Scenario s;
  std::string err;
  EXPECT_TRUE(scenario_from_capture(o, s, err)) << file << ": " << err;
  std::string why;
  EXPECT_TRUE(check_scenario(s, why)) << why;
  return s;
}

// One line per step: its kind and what matters of it.
std::vector<std::string> steps(const Scenario& s) {
  std::vector<std::string> v;
  for (const Step& st : s.step()) {
    std::string k;
    switch (st.kind_case()) {
      case Step::kConnect:
        k = "connect";
        break;
      case Step::kAccept:
        k = "accept";
        break;
      case Step::kSend: {
        const MsgSpec& m = st.send().msg();
        k = "send " + Mid_Name(m.mid());
        if (!m.payload().empty()) k += " " + std::to_string(m.payload().size());
        if (m.payload_len() != 0) k += " len " + std::to_string(m.payload_len());
        break;
      }
      case Step::kExpect:
        k = "expect " + Mid_Name(st.expect().msg().mid());
        break;
      case Step::kExpectData:
        k = "expect_data " + (st.expect_data().bytes().empty()
                                  ? "len " + std::to_string(st.expect_data().len())
                                  : std::to_string(st.expect_data().bytes().size()));
        break;
      case Step::kExpectClose:
        k = "expect_close " + ExpectClose::How_Name(st.expect_close().how());
        break;
      case Step::kRegister:
        k = "register " + st.register_().name() + " " + std::to_string(st.register_().size());
        break;
      case Step::kApp:
        if (st.app().has_write_bytes())
          k = "app write_bytes " + std::to_string(st.app().write_bytes().size());
        else if (st.app().has_write())
          k = "app write " + std::to_string(st.app().write());
        else if (st.app().has_shutdown_send())
          k = "app shutdown_send";
        else if (st.app().has_stop_reading())
          k = "app stop_reading";
        else if (st.app().has_abort())
          k = "app abort";
        else
          k = "app ?";
        break;
      case Step::kDisconnect:
        k = "disconnect";
        break;
      default:
        k = "other " + std::to_string(static_cast<int>(st.kind_case()));
        break;
    }
    v.push_back(k);
  }
  return v;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += "  " + x + "\n";
  return s;
}

#define EXPECT_STEPS(s, ...) \
  EXPECT_EQ(join(steps(s)), join(std::vector<std::string>{__VA_ARGS__})) << dump(s)

// What the replayed side sends and what it expects of the other side's stream, as bytes.
std::string sent_stream(const Scenario& s) {
  std::string b;
  for (const Step& st : s.step())
    if (st.has_send() && st.send().msg().mid() == DATA) b += st.send().msg().payload();
  return b;
}
std::string expected_stream(const Scenario& s) {
  std::string b;
  for (const Step& st : s.step())
    if (st.has_expect_data()) b += st.expect_data().bytes();
  return b;
}
std::uint64_t expected_bytes(const Scenario& s) {
  std::uint64_t n = 0;
  for (const Step& st : s.step())
    if (st.has_expect_data())
      n += st.expect_data().bytes().empty() ? st.expect_data().len()
                                            : st.expect_data().bytes().size();
  return n;
}

// The replayed side never pins what follows this run's exchange.
void expect_tolerant_sends(const Scenario& s) {
  for (const Step& st : s.step()) {
    if (!st.has_send()) continue;
    const MsgSpec& m = st.send().msg();
    EXPECT_FALSE(m.has_bufs() || m.has_len() || m.has_mseq() || m.has_mseq_ack())
        << st.ShortDebugString();
    EXPECT_FALSE(m.mid() == DATA && m.payload().empty() && m.payload_len() == 0)
        << "a credit update was replayed: " << st.note();
  }
}

const Step& step(const Scenario& s, int i) {
  return s.step(i);
}

// ---------------------------------------------------------------------------------------------
// The lab's captures

TEST(ReplayCapture, SetupClientSide) {
  const Scenario s = replay("setup.pcap", true);
  EXPECT_EQ(s.name(), "replay:setup.pcap:client");
  ASSERT_EQ(s.rule_size(), 1);
  EXPECT_EQ(s.rule(0), "sdp-wire.md §1/§4/§5 (replayed trace)");
  EXPECT_EQ(s.role(), RAW_CONNECTS);
  EXPECT_FALSE(s.builtin_only());
  EXPECT_TRUE(s.auto_credits());
  EXPECT_EQ(s.service(), ECHO);  // port 5001 is none of the contract's: echo
  EXPECT_FALSE(s.has_peer_config());
  EXPECT_STEPS(s, "connect", "send DATA 13", "send DIS_CONN", "expect_data 13", "expect DIS_CONN",
               "disconnect");
  ASSERT_EQ(s.step_size(), 6) << dump(s);
  const Connect& c = step(s, 0).connect();
  EXPECT_EQ(c.recv_bufs(), 16U);
  EXPECT_EQ(c.recv_size(), 32784U);
  EXPECT_EQ(c.hello().max_adverts(), 1U);
  EXPECT_EQ(c.hello().des_rem_rcv_sz(), 65552U);
  EXPECT_EQ(c.hello().local_rcv_sz(), 32784U);
  EXPECT_EQ(c.expect(), Connect::ACCEPT);
  EXPECT_EQ(step(s, 1).send().msg().payload(), "hello from b\n");
  EXPECT_FALSE(step(s, 1).send().msg().has_flags());
  EXPECT_EQ(step(s, 3).expect_data().bytes(), "hello from a\n");
  EXPECT_TRUE(step(s, 3).expect_data().auto_zcopy());
  EXPECT_FALSE(step(s, 4).expect().skip_any());
  EXPECT_FALSE(step(s, 4).expect().skip_none());
  EXPECT_NE(step(s, 5).note().find("frame 12"), std::string::npos) << step(s, 5).note();
  expect_tolerant_sends(s);
}

TEST(ReplayCapture, SetupServerSide) {
  const Scenario s = replay("setup.pcap", false);
  EXPECT_EQ(s.name(), "replay:setup.pcap:server");
  EXPECT_EQ(s.role(), RAW_ACCEPTS);
  EXPECT_TRUE(s.builtin_only());
  EXPECT_TRUE(s.auto_credits());
  // The builtin peer's application does what the capture's client did: discard adds nothing.
  EXPECT_EQ(s.service(), DISCARD);
  EXPECT_EQ(s.peer_config().recv_bufs(), 16U);
  EXPECT_EQ(s.peer_config().recv_size(), 32784U);
  EXPECT_STEPS(s, "accept", "app write_bytes 13", "expect_data 13", "app shutdown_send",
               "expect DIS_CONN", "send DATA 13", "send DIS_CONN", "expect_close ANY");
  ASSERT_EQ(s.step_size(), 8) << dump(s);
  const Accept& a = step(s, 0).accept();
  EXPECT_EQ(a.recv_bufs(), 16U);
  EXPECT_EQ(a.recv_size(), 65552U);
  EXPECT_EQ(a.hello_ack().act_rcv_sz(), 65552U);
  EXPECT_EQ(a.hello_ack().max_adverts(), 1U);
  EXPECT_EQ(a.hello_compact(), 1U);
  EXPECT_FALSE(a.reject());
  EXPECT_EQ(step(s, 1).app().write_bytes(), "hello from b\n");
  EXPECT_EQ(step(s, 2).expect_data().bytes(), "hello from b\n");
  EXPECT_EQ(step(s, 5).send().msg().payload(), "hello from a\n");
  expect_tolerant_sends(s);
}

TEST(ReplayCapture, BcopyMovesAllBytesEachWay) {
  const Scenario c = replay("bcopy.pcap", true);
  const Scenario s = replay("bcopy.pcap", false);
  // Data up to the receiver's buffer size: 64 KiB to a (ActRcvSz 65552), 32 KiB to b.
  EXPECT_STEPS(c, "connect", "send DATA 65536", "expect_data 131072", "send DATA 65536",
               "expect_data 98304", "send DATA 65536", "expect_data 32768", "expect DIS_CONN",
               "send DATA 65536", "send DIS_CONN", "disconnect");
  EXPECT_EQ(sent_stream(c).size(), 262144U);
  EXPECT_EQ(expected_bytes(c), 262144U);
  EXPECT_EQ(sent_stream(s).size(), 262144U);
  EXPECT_EQ(expected_bytes(s), 262144U);
  // Each side's replay expects exactly what the other side's replay sends.
  EXPECT_TRUE(sent_stream(c) == expected_stream(s));
  EXPECT_TRUE(sent_stream(s) == expected_stream(c));
  int sends = 0;
  for (const Step& st : s.step())
    if (st.has_send() && st.send().msg().mid() == DATA) {
      ++sends;
      EXPECT_EQ(st.send().msg().payload().size(), 32768U);
    }
  EXPECT_EQ(sends, 8);
  // The client's one credit update (MSeq 6 in its trace) is the runner's business.
  EXPECT_NE(c.summary().find("1 credit updates left to the runner"), std::string::npos)
      << c.summary();
  expect_tolerant_sends(c);
  expect_tolerant_sends(s);
  // The DREQs crossed: the server side sends its own too.
  ASSERT_GT(s.step_size(), 0);
  EXPECT_TRUE(s.step(s.step_size() - 1).has_disconnect()) << dump(s);
  EXPECT_NE(s.step(s.step_size() - 1).note().find("crossed"), std::string::npos);
}

TEST(ReplayCapture, ZcopyClientSideAdvertisesItsOwnMemory) {
  const Scenario s = replay("zcopy.pcap", true);
  // a half-closed first (it had nothing to send); b's SrcAvail, a's two RDMA READs.
  EXPECT_STEPS(s, "connect", "expect DIS_CONN", "register src1 262144", "send SRC_AVAIL len 64",
               "expect RDMA_RD_COMPL", "expect RDMA_RD_COMPL", "send DIS_CONN", "expect_close ANY");
  ASSERT_EQ(s.step_size(), 8) << dump(s);
  EXPECT_TRUE(step(s, 2).register_().remote_read());
  EXPECT_FALSE(step(s, 2).register_().remote_write());
  const MsgSpec& m = step(s, 3).send().msg();
  EXPECT_EQ(m.region(), "src1");
  EXPECT_TRUE(m.inline_from_region());
  EXPECT_EQ(m.payload_len(), 64U);
  EXPECT_EQ(m.ext_len(), 262144U);
  EXPECT_FALSE(m.has_rkey());  // the region's
  EXPECT_FALSE(m.has_va());
  EXPECT_NE(step(s, 3).note().find("pattern"), std::string::npos) << step(s, 3).note();
  // RdmaRdCompl.Len as the capture has them: 131072 + 131008 = the 262144 - 64 inline bytes.
  EXPECT_EQ(step(s, 4).expect().msg().ext_len().eq(), 131072U);
  EXPECT_EQ(step(s, 5).expect().msg().ext_len().eq(), 131008U);
  expect_tolerant_sends(s);
}

TEST(ReplayCapture, ZcopyServerSideReadsByAutoZcopy) {
  const Scenario s = replay("zcopy.pcap", false);
  // The client's data comes after the server's DisConn: the peer's application is given it
  // first (it shuts down once it has read our DisConn and written everything).
  EXPECT_STEPS(s, "accept", "app write 262144", "send DIS_CONN", "expect_data len 262144",
               "expect DIS_CONN", "disconnect");
  ASSERT_EQ(s.step_size(), 6) << dump(s);
  EXPECT_TRUE(step(s, 3).expect_data().auto_zcopy());
  // Its two RdmaRdCompl are the ExpectData's to send.
  for (const Step& st : s.step())
    EXPECT_FALSE(st.has_send() && st.send().msg().mid() == RDMA_RD_COMPL) << dump(s);
  EXPECT_NE(s.summary().find("2 RdmaRdCompl left to auto_zcopy"), std::string::npos) << s.summary();
}

TEST(ReplayCapture, AbortBothSides) {
  const Scenario c = replay("abort.pcap", true);
  EXPECT_STEPS(c, "connect", "register src1 65536", "send SRC_AVAIL len 64", "expect DIS_CONN",
               "expect RDMA_RD_COMPL", "send ABORT_CONN", "disconnect");
  ASSERT_EQ(c.step_size(), 7) << dump(c);
  EXPECT_EQ(step(c, 4).expect().msg().ext_len().eq(), 65472U);

  const Scenario s = replay("abort.pcap", false);
  EXPECT_STEPS(s, "accept", "app write 65536", "expect_data len 65536", "app stop_reading",
               "send DIS_CONN", "app abort", "expect_close ABORTIVE");
}

TEST(ReplayCapture, HalfcloseBothConnections) {
  // (1) b sends 50,000 bytes and half-closes, a still answers, then closes.
  const Scenario c1 = replay("halfclose.pcap", true, 1);
  EXPECT_STEPS(c1, "connect", "send DATA 50000", "send DIS_CONN", "expect_data 27",
               "expect DIS_CONN", "disconnect");
  ASSERT_EQ(c1.step_size(), 6) << dump(c1);
  EXPECT_EQ(step(c1, 3).expect_data().bytes(), "reply after your FIN: 50000");
  EXPECT_EQ(dump(replay("halfclose.pcap", true, 0)), dump(c1));  // 0: the first
  const Scenario s1 = replay("halfclose.pcap", false, 1);
  EXPECT_STEPS(s1, "accept", "app write_bytes 50000", "expect_data 50000", "app shutdown_send",
               "expect DIS_CONN", "send DATA 27", "send DIS_CONN", "expect_close ANY");

  // (2) a sends and half-closes first, b still sends 100,000 bytes (ZCopy) and closes.
  const Scenario c2 = replay("halfclose.pcap", true, 2);
  EXPECT_EQ(c2.name(), "replay:halfclose.pcap:client");
  EXPECT_STEPS(c2, "connect", "expect_data 34", "expect DIS_CONN", "register src1 100000",
               "send SRC_AVAIL len 64", "expect RDMA_RD_COMPL", "send DIS_CONN",
               "expect_close ANY");
  ASSERT_EQ(c2.step_size(), 8) << dump(c2);
  EXPECT_EQ(step(c2, 1).expect_data().bytes(), "server speaks first and shuts down");
  EXPECT_EQ(step(c2, 5).expect().msg().ext_len().eq(), 100000U - 64U);
  const Scenario s2 = replay("halfclose.pcap", false, 2);
  EXPECT_STEPS(s2, "accept", "send DATA 34", "app write 100000", "send DIS_CONN",
               "expect_data len 100000", "expect DIS_CONN", "disconnect");

  ReplayOptions o;
  o.path = capture("halfclose.pcap");
  o.connection = 3;
  Scenario s;
  std::string err;
  EXPECT_FALSE(scenario_from_capture(o, s, err));
  EXPECT_NE(err.find("holds 2"), std::string::npos) << err;
}

TEST(ReplayCapture, NativeInfinibandCapture) {
  const Scenario c = replay("native-ib-sdp-synthetic.erf.pcap", true);
  // 32 + 1000 + 6000 bytes from the active side (6000 in two messages: 4096-byte receives),
  // 200 + 6000 back; both engines' credit updates are left out.
  EXPECT_STEPS(c, "connect", "send DATA 32", "expect_data 200", "send DATA 1000", "send DATA 4080",
               "send DATA 1920", "expect_data 6000", "send DIS_CONN", "expect DIS_CONN",
               "disconnect");
  EXPECT_EQ(c.step(0).connect().recv_size(), 4096U);
  EXPECT_EQ(c.step(0).connect().recv_bufs(), 4U);
  expect_tolerant_sends(c);
  const Scenario s = replay("native-ib-sdp-synthetic.erf.pcap", false);
  EXPECT_EQ(s.step(0).accept().hello_compact(), 0U);  // the full 92-byte Hello
  EXPECT_TRUE(sent_stream(c) == expected_stream(s));
  EXPECT_TRUE(sent_stream(s) == expected_stream(c));
}

// ---------------------------------------------------------------------------------------------
// Captures rewritten by the test: the service port, cut packets, lost packets, garbage

struct Pcap {
  std::string header;                // 24 bytes
  std::vector<std::string> records;  // 16-byte record header + data
};

std::uint32_t le32(const std::string& s, std::size_t off) {
  return static_cast<std::uint32_t>(static_cast<unsigned char>(s[off])) |
         static_cast<std::uint32_t>(static_cast<unsigned char>(s[off + 1])) << 8 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(s[off + 2])) << 16 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(s[off + 3])) << 24;
}
void put_le32(std::string& s, std::size_t off, std::uint32_t v) {
  for (int i = 0; i < 4; ++i)
    s[off + static_cast<std::size_t>(i)] = static_cast<char>(v >> (8 * i));
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

Pcap read_pcap(const std::string& path) {
  const std::string b = slurp(path);
  Pcap p;
  EXPECT_GE(b.size(), 24U);
  if (b.size() < 24) return p;
  EXPECT_EQ(le32(b, 0), 0xA1B2C3D4U) << "the test reads little-endian microsecond pcap only";
  p.header = b.substr(0, 24);
  for (std::size_t off = 24; off + 16 <= b.size();) {
    const std::size_t n = le32(b, off + 8);
    p.records.push_back(b.substr(off, 16 + n));
    off += 16 + n;
  }
  return p;
}

class TempFiles : public ::testing::Test {
 protected:
  std::string path(const std::string& name) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    const fs::path p =
        fs::temp_directory_path() / ("replay_test_" + std::string(info->name()) + "_" + name);
    made_.push_back(p);
    return p.string();
  }
  std::string write(const std::string& name, const std::string& bytes) {
    const std::string p = path(name);
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
  std::string write(const std::string& name, const Pcap& pc) {
    std::string b = pc.header;
    for (const auto& r : pc.records) b += r;
    return write(name, b);
  }
  void TearDown() override {
    std::error_code ec;
    for (const auto& p : made_) fs::remove(p, ec);
  }
  // False with the error, as the replay would say it.
  static bool run(const std::string& file, bool client, Scenario& s, std::string& err,
                  unsigned connection = 0, int service = -1) {
    ReplayOptions o;
    o.path = file;
    o.client_side = client;
    o.connection = connection;
    o.service = service;
    return scenario_from_capture(o, s, err);
  }

 private:
  std::vector<fs::path> made_;
};

using ReplayRewritten = TempFiles;

TEST_F(ReplayRewritten, ServiceFollowsTheDestinationPort) {
  // The REQ's service ID 0x0000000001060000 | 5001: the port is its last two bytes.
  const std::string orig = slurp(capture("setup.pcap"));
  const std::string sid("\x00\x00\x00\x00\x01\x06\x13\x89", 8);
  const std::size_t at = orig.find(sid);
  ASSERT_NE(at, std::string::npos);
  struct Case {
    std::uint16_t port;
    Service service;
  };
  for (const Case& k : {Case{7007, ECHO}, Case{7009, DISCARD}, Case{7019, SOURCE},
                        Case{6119, SOURCE}, Case{7011, ECHO}}) {
    std::string b = orig;
    b[at + 6] = static_cast<char>(k.port >> 8);
    b[at + 7] = static_cast<char>(k.port & 0xFF);
    const std::string f = write("port" + std::to_string(k.port) + ".pcap", b);
    Scenario s;
    std::string err;
    ASSERT_TRUE(run(f, true, s, err)) << err;
    EXPECT_EQ(s.service(), k.service) << k.port;
    EXPECT_NE(s.summary().find("port " + std::to_string(k.port)), std::string::npos) << s.summary();
  }
  // An explicit service wins.
  Scenario s;
  std::string err;
  ASSERT_TRUE(run(capture("setup.pcap"), true, s, err, 0, SOURCE)) << err;
  EXPECT_EQ(s.service(), SOURCE);
}

TEST_F(ReplayRewritten, GarbageIsRefusedWithTheReason) {
  std::string junk;
  std::uint32_t x = 12345;
  for (int i = 0; i < 5000; ++i) {
    x = x * 1103515245U + 12345U;
    junk.push_back(static_cast<char>(x >> 16));
  }
  Scenario s;
  std::string err;
  EXPECT_FALSE(run(write("garbage.pcap", junk), true, s, err));
  EXPECT_NE(err.find("cannot read the capture"), std::string::npos) << err;

  err.clear();
  EXPECT_FALSE(run(write("empty.pcap", ""), true, s, err));
  EXPECT_NE(err.find("cannot read the capture"), std::string::npos) << err;

  err.clear();
  EXPECT_FALSE(run(path("missing.pcap"), false, s, err));
  EXPECT_NE(err.find("cannot read the capture"), std::string::npos) << err;

  // A file cut in the middle of a record.
  const std::string bcopy = slurp(capture("bcopy.pcap"));
  err.clear();
  EXPECT_FALSE(run(write("cut.pcap", bcopy.substr(0, 30000)), true, s, err));
  EXPECT_NE(err.find("truncated"), std::string::npos) << err;
}

TEST_F(ReplayRewritten, CaptureWithoutSdpIsRefused) {
  const std::string other = std::string(CONF_SHARED_DIR) + "/captures-public/rocev2-send-ack.pcap";
  if (!fs::exists(other)) GTEST_SKIP() << other << " is not there";
  Scenario s;
  std::string err;
  EXPECT_FALSE(run(other, true, s, err));
  EXPECT_NE(err.find("no SDP connection"), std::string::npos) << err;

  // Only the frames without the REQ: RC traffic no CM exchange makes SDP.
  Pcap p = read_pcap(capture("setup.pcap"));
  ASSERT_EQ(p.records.size(), 13U);
  p.records.erase(p.records.begin());
  err.clear();
  EXPECT_FALSE(run(write("noreq.pcap", p), true, s, err));
  EXPECT_NE(err.find("no SDP connection"), std::string::npos) << err;
}

TEST_F(ReplayRewritten, SnapLengthCutsPayloadsToLengths) {
  Pcap p = read_pcap(capture("halfclose.pcap"));
  for (auto& r : p.records) {
    if (r.size() > 16 + 600) {
      r.resize(16 + 600);
      put_le32(r, 8, 600);  // captured length; the original length stays
    }
  }
  const std::string f = write("snap600.pcap", p);
  Scenario c, s;
  std::string err;
  ASSERT_TRUE(run(f, true, c, err, 1)) << err;
  // b's 50,000-byte Data (49 packets of 1 KiB) is not whole: replayed by length.
  EXPECT_STEPS(c, "connect", "send DATA len 50000", "send DIS_CONN", "expect_data 27",
               "expect DIS_CONN", "disconnect");
  EXPECT_NE(c.summary().find("not whole"), std::string::npos) << c.summary();
  ASSERT_TRUE(run(f, false, s, err, 1)) << err;
  EXPECT_STEPS(s, "accept", "app write 50000", "expect_data len 50000", "app shutdown_send",
               "expect DIS_CONN", "send DATA 27", "send DIS_CONN", "expect_close ANY");

  // Cut shorter than the CM REQ's Hello: nothing is SDP any more, and the error says why.
  Pcap q = read_pcap(capture("setup.pcap"));
  for (auto& r : q.records) {
    r.resize(16 + 40);
    put_le32(r, 8, 40);
  }
  err.clear();
  EXPECT_FALSE(run(write("snap40.pcap", q), true, c, err));
  EXPECT_NE(err.find("no SDP connection"), std::string::npos) << err;
  EXPECT_NE(err.find("snap length"), std::string::npos) << err;
}

TEST_F(ReplayRewritten, LostPackets) {
  const Pcap p = read_pcap(capture("halfclose.pcap"));
  ASSERT_GT(p.records.size(), 60U);
  Scenario s;
  std::string err;
  {  // A SEND Middle of b's 50,000-byte Data (frame 20) is missing: its header is known.
    Pcap q = p;
    q.records.erase(q.records.begin() + 19);
    ASSERT_TRUE(run(write("nomiddle.pcap", q), true, s, err, 1)) << err;
    EXPECT_STEPS(s, "connect", "send DATA len 50000", "send DIS_CONN", "expect_data 27",
                 "expect DIS_CONN", "disconnect");
  }
  {  // Its SEND Last (frame 52) is missing.
    Pcap q = p;
    q.records.erase(q.records.begin() + 51);
    ASSERT_TRUE(run(write("nolast.pcap", q), false, s, err, 1)) << err;
    EXPECT_STEPS(s, "accept", "app write 50000", "expect_data len 50000", "app shutdown_send",
                 "expect DIS_CONN", "send DATA 27", "send DIS_CONN", "expect_close ANY");
  }
  {  // Its SEND First (frame 4) is missing: the message cannot be known.
    Pcap q = p;
    q.records.erase(q.records.begin() + 3);
    err.clear();
    EXPECT_FALSE(run(write("nofirst.pcap", q), true, s, err, 1));
    EXPECT_NE(err.find("lost"), std::string::npos) << err;
  }
  {  // The REP (frame 2) is missing: the responder's QP is unknown, its messages unfollowable.
    Pcap q = read_pcap(capture("setup.pcap"));
    q.records.erase(q.records.begin() + 1);
    err.clear();
    EXPECT_FALSE(run(write("norep.pcap", q), true, s, err));
    EXPECT_NE(err.find("no CM REP"), std::string::npos) << err;
  }
}

TEST_F(ReplayRewritten, MangledCapturesNeverCrash) {
  // Bytes overwritten at random: every outcome is a scenario or an error with a reason.
  std::uint32_t x = 7;
  auto rnd = [&x] {
    x = x * 1664525U + 1013904223U;
    return x >> 8;
  };
  for (const char* name : {"setup.pcap", "zcopy.pcap", "abort.pcap"}) {
    const std::string orig = slurp(capture(name));
    ASSERT_GT(orig.size(), 100U);
    for (int round = 0; round < 150; ++round) {
      std::string b = orig;
      const int flips = 1 + static_cast<int>(rnd() % 40);
      for (int i = 0; i < flips; ++i) b[rnd() % b.size()] = static_cast<char>(rnd());
      if (round % 10 == 0) b.resize(rnd() % b.size());
      const std::string f = write("mangled.pcap", b);
      for (bool client : {true, false}) {
        Scenario s;
        std::string err;
        if (!run(f, client, s, err)) {
          EXPECT_FALSE(err.empty()) << name << " round " << round;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Against the builtin peer

CaseResult run_builtin(const Scenario& s) {
  RunOptions opt;
  opt.builtin = true;
  opt.open = [](const Scenario& sc, std::string&) {
    return make_builtin_transport(sc.peer_config());
  };
  LoadedScenario ls;
  ls.file = "replay";
  ls.scenario = s;
  return run_scenario(ls, opt);
}

TEST(ReplayRun, ServerSidesPassAgainstTheBuiltinPeer) {
  struct Case {
    const char* file;
    unsigned connection;
  };
  for (const Case& k : {Case{"setup.pcap", 1}, Case{"bcopy.pcap", 1}, Case{"zcopy.pcap", 1},
                        Case{"abort.pcap", 1}, Case{"halfclose.pcap", 1}, Case{"halfclose.pcap", 2},
                        Case{"native-ib-sdp-synthetic.erf.pcap", 1}, Case{"echo.pcap", 1}}) {
    const Scenario s = replay(k.file, false, k.connection);
    const CaseResult r = run_builtin(s);
    EXPECT_EQ(r.verdict(), PASS) << k.file << " connection " << k.connection << ": " << r.reason()
                                 << "\n"
                                 << dump(s);
  }
}

TEST(ReplayRun, ClientSideMeetsTheBuiltinEchoService) {
  // The lab's server was sdpcat, not an echo service: setup and our sends go through, and the
  // first difference is the server's own bytes ("hello from a") where echo returns ours.
  const Scenario s = replay("setup.pcap", true);
  const CaseResult r = run_builtin(s);
  EXPECT_EQ(r.verdict(), FAIL);
  EXPECT_EQ(r.failed_step(), 4) << r.reason();
  EXPECT_NE(r.reason().find("stream byte 11"), std::string::npos) << r.reason();
}

// echo.pcap is sdpcat against sdp-testd's echo service, the peer contract's: its client side
// replays against any peer that keeps the contract, the builtin one included — 100,000 bytes by
// ZCopy each way (our SrcAvail from a registered region, the peer's served by RDMA READ).
TEST(ReplayRun, EchoCaptureClientSidePassesAgainstTheBuiltinPeer) {
  const Scenario s = replay("echo.pcap", true);
  EXPECT_EQ(s.service(), ECHO);
  const CaseResult r = run_builtin(s);
  EXPECT_EQ(r.verdict(), PASS) << r.reason() << "\n" << dump(s);
  std::size_t sent = 0;
  for (const auto& st : s.step())
    if (st.has_register_()) sent += st.register_().size();
  EXPECT_EQ(sent, 100000U) << "the SrcAvail advertises the whole write";
}

}  // namespace
}  // namespace conformance

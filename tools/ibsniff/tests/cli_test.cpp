// The CLI's outputs and options beyond -T fields: -V, -T json, -x, -w with -f, -z conv (checked
// against the engines' own logs of the lab captures), live capture on the loopback interface.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ibsniff/tree.hpp"
#include "tshark.hpp"

namespace ibsniff {
namespace {

namespace fs = std::filesystem;
using test::run;
using test::shell_quote;

const std::string kBin = IBSNIFF_BIN;
std::string cap(const std::string& name) {
  return std::string(IBSNIFF_REPO_CAPTURES) + "/" + name;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) out.push_back(l);
  return out;
}

std::string ibsniff(const std::string& args, int expect_status = 0) {
  int st = 0;
  std::string out = run(kBin + " " + args + " 2>&1", &st);
  EXPECT_EQ(st, expect_status << 8) << args << "\n" << out;
  return out;
}

TEST(IbsniffCli, VerboseTreeNestsFieldsUnderTheirHeaders) {
  const std::string out = ibsniff("-r " + cap("setup.pcap") + " -V -c 1");
  const auto ls = lines(out);
  auto indent_of = [&](const std::string& prefix) -> std::size_t {
    for (const auto& l : ls) {
      const auto at = l.find_first_not_of(' ');
      if (at != std::string::npos && l.compare(at, prefix.size(), prefix) == 0) return at;
    }
    ADD_FAILURE() << "no line starting with " << prefix << " in\n" << out;
    return 0;
  };
  EXPECT_NE(out.find("CM: ConnectRequest"), std::string::npos);
  EXPECT_NE(out.find("infiniband.bth.opcode: 100 (UD Send Only)"), std::string::npos) << out;
  EXPECT_NE(out.find("infiniband.mad.attributeid: 0x0010 (ConnectRequest)"), std::string::npos);
  EXPECT_GT(indent_of("infiniband.bth.opcode:"), indent_of("infiniband.bth:"));
  EXPECT_GT(indent_of("infiniband.cm.req.serviceid.dport:"),
            indent_of("infiniband.cm.req.serviceid:"));
  EXPECT_GT(indent_of("infiniband.bth:"), indent_of("InfiniBand"));
  // Every field -T fields knows for this frame is in the tree, with the same value.
  for (const char* f : {"infiniband.bth.psn", "infiniband.deth.srcqp", "infiniband.cm.req.localqpn",
                        "infiniband_sdp.hh.localrcvsz", "infiniband.invariant.crc"}) {
    const std::string v = ibsniff("-r " + cap("setup.pcap") + " -c 1 -T fields -e " + f);
    ASSERT_GT(v.size(), 1U) << f;
    EXPECT_NE(out.find(std::string(f) + ": " + v.substr(0, v.size() - 1) + "\n"), std::string::npos)
        << f << " = " << v;
  }
}

TEST(IbsniffCli, HexDumpShowsEveryByte) {
  const std::string out = ibsniff("-r " + cap("setup.pcap") + " -c 1 -x");
  // 322-byte frame: 21 rows, the last one at offset 0x140 holding 2 bytes.
  EXPECT_NE(out.find("\n0000  "), std::string::npos) << out;
  EXPECT_NE(out.find("\n0140  "), std::string::npos) << out;
  EXPECT_EQ(out.find("\n0150  "), std::string::npos) << out;
}

TEST(IbsniffCli, JsonHasTsharksLayoutAndTheFieldValues) {
  const std::string file = cap("bcopy.pcap");
  int st = 0;
  const std::string text = run(kBin + " -r " + file + " -T json", &st);
  ASSERT_EQ(st, 0);
  auto j = nlohmann::json::parse(text);
  ASSERT_TRUE(j.is_array());
  const auto psn = lines(ibsniff("-r " + file + " -T fields -e infiniband.bth.psn"));
  ASSERT_EQ(j.size(), psn.size());
  std::size_t sdp = 0;
  for (std::size_t i = 0; i < j.size(); ++i) {
    auto& layers = j[i]["_source"]["layers"];
    EXPECT_EQ(layers["frame"]["frame.number"], std::to_string(i + 1));
    EXPECT_EQ(layers["infiniband"]["infiniband.bth_tree"]["infiniband.bth.psn"], psn[i]);
    if (layers.contains("infiniband_sdp") &&
        layers["infiniband_sdp"].contains("infiniband_sdp.bsdh.mid"))
      ++sdp;
  }
  const auto mids = lines(ibsniff("-r " + file + " -T fields -e infiniband_sdp.bsdh.mid"));
  EXPECT_EQ(sdp, static_cast<std::size_t>(std::count_if(
                     mids.begin(), mids.end(), [](const std::string& s) { return !s.empty(); })));
  // Fields within a header's bytes are in its _tree (infiniband.reserved inside the BTH).
  EXPECT_EQ(j[0]["_source"]["layers"]["infiniband"]["infiniband.bth_tree"]["infiniband.reserved"],
            "00");
}

TEST(IbsniffJson, RepeatedNamesBecomeArraysAndNotesAreListed) {
  const std::uint8_t bytes[] = {0xde, 0xad, 0xbe, 0xef};
  Packet p;
  p.data = bytes;
  p.fields = {Field{FieldId::immdt, 0, 2, 0}, Field{FieldId::immdt, 2, 2, 0}};
  p.notes = {Note{Severity::Error, "frame truncated at byte {0}", 3}};
  const auto j = nlohmann::json::parse(packet_json(p, TimeRef{}));
  const auto& ib = j.at("_source").at("layers").at("infiniband");
  EXPECT_EQ(ib.at("infiniband.immdt"), nlohmann::json::array({"de:ad", "be:ef"}));
  EXPECT_EQ(j.at("_source").at("layers").at("ibsniff").at("ibsniff.notes"),
            nlohmann::json::array({"frame truncated at byte 3"}));
}

TEST(IbsniffCli, WriteWithCaptureFilterKeepsExactlyTheMatchingFrames) {
  const std::string file = cap("bcopy.pcap");
  const fs::path out = fs::temp_directory_path() / ("ibsniff_w_" + std::to_string(getpid()));
  // BTH opcode 0x00 (RC SEND First) is the byte right after the 8-byte UDP header.
  ibsniff("-r " + file + " -f 'udp dst port 4791 and udp[8] = 0' -w " + out.string());
  const auto opcodes = lines(ibsniff("-r " + file + " -T fields -e infiniband.bth.opcode"));
  const auto firsts = static_cast<std::size_t>(std::count(opcodes.begin(), opcodes.end(), "0"));
  ASSERT_GT(firsts, 10U);
  const auto kept = lines(ibsniff("-r " + out.string() + " -T fields -e infiniband.bth.opcode"));
  EXPECT_EQ(kept.size(), firsts);
  for (const auto& k : kept) EXPECT_EQ(k, "0");
  // -P prints while writing; the written file keeps nanosecond timestamps.
  const auto printed = lines(ibsniff("-r " + file + " -c 3 -P -w " + out.string()));
  EXPECT_EQ(printed.size(), 3U);
  EXPECT_EQ(ibsniff("-r " + out.string() + " -T fields -e frame.time_epoch"),
            ibsniff("-r " + file + " -c 3 -T fields -e frame.time_epoch"));
  fs::remove(out);
}

TEST(IbsniffCli, BadInputsGiveClearErrors) {
  EXPECT_NE(ibsniff("-r " + cap("setup.pcap") + " -f 'udp src port'", 1)
                .find("capture filter 'udp src port'"),
            std::string::npos);
  EXPECT_NE(ibsniff("", 1).find("no input"), std::string::npos);
  EXPECT_NE(ibsniff("-r " + cap("setup.pcap") + " -z nosuch", 1).find("-z"), std::string::npos);
  EXPECT_NE(ibsniff("-r " + cap("setup.pcap") + " -w /nonexistent/dir/x.pcap", 1)
                .find("/nonexistent/dir/x.pcap"),
            std::string::npos);
  // A garbage file is refused with libpcap's reason.
  const fs::path junk = fs::temp_directory_path() / ("ibsniff_junk_" + std::to_string(getpid()));
  std::ofstream(junk) << "this is not a capture file at all";
  EXPECT_NE(ibsniff("-r " + junk.string(), 1).find(junk.string()), std::string::npos);
  fs::remove(junk);
}

TEST(IbsniffCli, CaptureCutInTheMiddleOfARecordExitsTwoAfterItsPackets) {
  const fs::path cut = fs::temp_directory_path() / ("ibsniff_cut_" + std::to_string(getpid()));
  const std::string file = cap("setup.pcap");
  fs::copy_file(file, cut, fs::copy_options::overwrite_existing);
  fs::resize_file(cut, fs::file_size(file) - 40);  // the last record loses 40 bytes
  int st = 0;
  const std::string out = run(kBin + " -r " + cut.string() + " 2>&1", &st);
  EXPECT_EQ(st, 2 << 8) << out;
  const auto all = lines(ibsniff("-r " + file));
  const auto got = lines(out);
  ASSERT_EQ(got.size(), all.size());  // every whole record, then the error
  for (std::size_t i = 0; i + 1 < all.size(); ++i) EXPECT_EQ(got[i], all[i]);
  EXPECT_NE(got.back().find("truncated"), std::string::npos) << got.back();
  fs::remove(cut);
}

// -T fields on a file runs decoding and rendering on two threads; with -z conv,ib it runs on one.
// Both print the same lines, with -Y and -c too.
TEST(IbsniffCli, TwoThreadFieldsOutputEqualsTheSingleThreadOne) {
  const std::string e =
      " -T fields -e frame.number -e frame.time_relative -e infiniband.bth.psn"
      " -e infiniband_sdp.bsdh.mid -e ibsniff.sdp.conn -e infiniband.invariant.crc"
      " -e ibsniff.icrc.bad";
  // A copy of setup.pcap with one payload byte changed in every frame: every ICRC is bad, which
  // the rendering thread (the first path) and the decoder (the second) must both report.
  const fs::path bad = fs::temp_directory_path() / ("ibsniff_badcrc_" + std::to_string(getpid()));
  {
    std::ifstream in(cap("setup.pcap"), std::ios::binary);
    std::string b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // pcap: 24-byte file header, then 16-byte record headers; flip byte 60 of each frame.
    for (std::size_t at = 24; at + 16 <= b.size();) {
      std::uint32_t caplen = 0;
      std::memcpy(&caplen, b.data() + at + 8, 4);
      if (caplen > 60) b[at + 16 + 60] = static_cast<char>(b[at + 16 + 60] ^ 0x5a);
      at += 16 + caplen;
    }
    std::ofstream(bad, std::ios::binary) << b;
  }
  const auto flagged = lines(ibsniff("-r " + bad.string() + " -T fields -e ibsniff.icrc.bad"));
  EXPECT_EQ(std::count(flagged.begin(), flagged.end(), "1"), 13);
  for (const std::string name : {"setup", "bcopy", "zcopy", "abort", "halfclose", "BAD"}) {
    SCOPED_TRACE(name);
    const std::string file = name == "BAD" ? bad.string() : cap(name + ".pcap");
    for (const std::string extra : {"", " -Y 'infiniband_sdp || infiniband.aeth'", " -c 37"}) {
      const std::string args = "-r " + file + e + extra;
      const auto two = lines(ibsniff(args));
      const auto one = lines(ibsniff(args + " -z conv,ib"));
      ASSERT_GT(two.size(), 0U);
      ASSERT_GT(one.size(), two.size());  // the statistics table follows
      EXPECT_TRUE(std::equal(two.begin(), two.end(), one.begin())) << args;
      if (extra == " -c 37") {
        const auto all = lines(ibsniff("-r " + file + e));
        EXPECT_EQ(two.size(), std::min<std::size_t>(37, all.size()));
      }
    }
  }
  fs::remove(bad);
}

// The man page renders without groff warnings and documents every option of --help.
TEST(IbsniffMan, DocumentsEveryOption) {
  if (!test::have_command("groff")) GTEST_SKIP() << "groff not installed: man page not checked";
  int st = 0;
  const std::string warnings =
      run(std::string("groff -man -Tutf8 -ww -z ") + IBSNIFF_MAN + " 2>&1", &st);
  EXPECT_EQ(st, 0);
  EXPECT_EQ(warnings, "");
  const std::string page =
      run(std::string("groff -man -Tascii -P-cbou ") + IBSNIFF_MAN + " 2>/dev/null", &st);
  ASSERT_EQ(st, 0);
  std::size_t options = 0;
  for (const auto& l : lines(ibsniff("--help"))) {
    // Option lines: "  -r,--read-file TEXT ...", "  -P   print ...", "  --sdp UINT ..."
    if (l.size() < 3 || l[0] != ' ' || l[1] != ' ' || l[2] != '-') continue;
    const std::string names = l.substr(2, l.find(' ', 2) - 2);
    std::size_t start = 0;
    while (start < names.size()) {
      const std::size_t comma = names.find(',', start);
      const std::string opt = names.substr(start, comma - start);
      EXPECT_NE(page.find(opt), std::string::npos) << opt << " is not in the man page";
      ++options;
      start = comma == std::string::npos ? names.size() : comma + 1;
    }
  }
  EXPECT_GT(options, 25U);
}

// What one host's engine logged it sent (SDP_TRACE), per MID, and the range of Bufs it
// advertised; Hello/HelloAck travel in the CM and are not counted by -z conv.
struct Logged {
  std::map<std::string, std::uint64_t> mids;
  std::uint64_t data_bytes = 0, bufs_min = UINT64_MAX, bufs_max = 0;
};
Logged logged_tx(const std::string& trace) {
  Logged l;
  std::ifstream in(trace);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j["dir"] != "tx" || j["mid"] == "Hello" || j["mid"] == "HelloAck") continue;
    l.mids[j["mid"]]++;
    if (j["mid"] == "Data") l.data_bytes += j["len"].get<std::uint64_t>() - 16;
    l.bufs_min = std::min(l.bufs_min, j["bufs"].get<std::uint64_t>());
    l.bufs_max = std::max(l.bufs_max, j["bufs"].get<std::uint64_t>());
  }
  return l;
}

TEST(IbsniffCli, ConvStatisticsAgreeWithTheEnginesLogs) {
  for (const char* name : {"bcopy", "zcopy", "setup"}) {
    SCOPED_TRACE(name);
    const std::string out = ibsniff("-r " + cap(std::string(name) + ".pcap") + " -q -z conv");
    // The client (host b) is the requester.
    const Logged req = logged_tx(cap(std::string(name) + ".b.trace.jsonl"));
    const Logged rsp = logged_tx(cap(std::string(name) + ".a.trace.jsonl"));
    for (const auto& [dir, l] : {std::pair{"requester -> responder: ", &req},
                                 std::pair{"responder -> requester: ", &rsp}}) {
      const auto at = out.find(dir);
      ASSERT_NE(at, std::string::npos) << out;
      const std::string row = out.substr(at, out.find('\n', out.find('\n', at) + 1) - at);
      std::uint64_t total = 0;
      std::string mids;
      for (const auto& [mid, n] : l->mids) total += n;
      EXPECT_NE(row.find(std::to_string(total) + " messages"), std::string::npos) << row;
      for (const auto& [mid, n] : l->mids)
        EXPECT_NE(row.find(mid + " " + std::to_string(n)), std::string::npos) << row;
      EXPECT_NE(row.find("credits (Bufs) " + std::to_string(l->bufs_min) + ".." +
                         std::to_string(l->bufs_max)),
                std::string::npos)
          << row;
      if (std::string(name) == "bcopy") {
        EXPECT_NE(row.find(std::to_string(l->data_bytes) + " bytes"), std::string::npos) << row;
        EXPECT_NE(row.find("BCopy 100.0% / ZCopy 0.0%"), std::string::npos) << row;
      }
    }
    // The InfiniBand table accounts for every frame with a BTH.
    const auto ops = lines(
        ibsniff("-r " + cap(std::string(name) + ".pcap") + " -T fields -e infiniband.bth.opcode"));
    std::uint64_t frames = 0;
    std::istringstream table(out.substr(out.find("Source")));
    std::string l;
    std::getline(table, l);
    while (std::getline(table, l) && l.rfind("=====", 0) != 0) {
      std::istringstream cols(l);
      std::string src, dst, svc, qp;
      std::uint64_t n = 0;
      cols >> src >> dst >> svc >> qp >> n;
      frames += n;
    }
    EXPECT_EQ(frames,
              static_cast<std::uint64_t>(std::count_if(
                  ops.begin(), ops.end(), [](const std::string& s) { return !s.empty(); })));
  }
}

TEST(IbsniffCli, LiveCaptureOnLoopbackDecodesRoceV2) {
  // A RoCEv2 packet (BTH RC SEND Only to QP 0x11 + 8 bytes + ICRC) sent over UDP to 127.0.0.1.
  int st = 0;
  const std::string probe = run(kBin + " -i lo -c 0 2>&1", &st);
  if (st != 0) GTEST_SKIP() << "live capture on lo not permitted here: " << probe;
  const fs::path out = fs::temp_directory_path() / ("ibsniff_live_" + std::to_string(getpid()));
  FILE* cap_proc = popen((kBin +
                          " -i lo -c 1 -f 'udp dst port 4791' -T fields -e "
                          "infiniband.bth.opcode -e infiniband.bth.destqp -e "
                          "ibsniff.payload > " +
                          out.string() + " 2>&1")
                             .c_str(),
                         "w");
  ASSERT_NE(cap_proc, nullptr);
  const int s = socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(s, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(4791);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const unsigned char pkt[] = {0x04, 0,   0xff, 0xff, 0,   0,   0,   0x11, 0, 0, 0, 1,
                               'l',  'o', 'o',  'p',  'b', 'a', 'c', 'k',  0, 0, 0, 0};
  // Resend until the capture (started asynchronously) has seen one.
  auto seen = [&] {
    std::error_code ec;
    const auto size = fs::file_size(out, ec);
    return !ec && size > 0;
  };
  for (int i = 0; i < 50 && !seen(); ++i) {
    sendto(s, pkt, sizeof pkt, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
    usleep(100000);
  }
  close(s);
  pclose(cap_proc);
  std::ifstream in(out);
  std::string first;
  std::getline(in, first);
  EXPECT_EQ(first, "4\t0x000011\t6c6f6f706261636b");
  fs::remove(out);
}

}  // namespace
}  // namespace ibsniff

// sdp-capgen: runs one SDP session between two libsdp engines over the in-memory pipe fabric and
// writes it as a native InfiniBand capture (pcap, LINKTYPE_ERF, ERF type 21 records) that
// Wireshark/tshark decodes as SDP: CM REQ carrying the engine's Hello, REP carrying its HelloAck,
// RTU, one RC SEND Only per SDP message (with RC ACKs), then CM DREQ/DREP. Optionally writes the
// engines' own log of every SDP message (JSON lines) for tools/capgen/tshark_check.py to compare.
//
// Why: tshark decodes SDP only on native SDP service IDs (0x000000000001PPPP) and only fires its
// Hello heuristic on native IB framing, while the soft-RoCE lab can only carry the IP CM service.
#include <pcap/pcap.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "ib_frames.hpp"
#include "sdp/engine.hpp"
#include "sdp/pipe.hpp"
#include "sdp/trace.hpp"
#include "sdp/wire.hpp"

namespace {

namespace wire = sdp::wire;
namespace trace = sdp::trace;
using Bytes = std::vector<std::uint8_t>;

// Every SDP message must fit one RC SEND Only at the 4096-byte path MTU: engines post 4096-byte
// receive buffers and never build a larger message.
constexpr std::uint32_t kMsgMax = 4096;

constexpr int kActive = 0;
constexpr int kPassive = 1;
const char* const kSideName[2] = {"active", "passive"};

struct WireEvent {
  enum class Kind : std::uint8_t { Req, Rep, Rtu, Sdp, Dreq, Drep };
  Kind kind;
  int side;     // sender
  Bytes bytes;  // Req: the Hello; Rep: the HelloAck; Sdp: the SEND payload
};

struct Session {
  std::vector<WireEvent> events;
  std::string failure;  // empty on success
  std::size_t bytes_each_way[2] = {0, 0};
};

// Deterministic, readable stream contents.
Bytes pattern(std::size_t n, int side, int write_no) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i)
    b[i] = static_cast<std::uint8_t>(
        kAlphabet[(i + static_cast<std::size_t>(side * 7 + write_no)) % (sizeof kAlphabet - 1)]);
  return b;
}

// Delivers everything and lets both applications read all they can, until nothing moves.
bool settle(sdp::PipePair& pipe, Bytes (&rx)[2], bool (&eof)[2]) {
  std::vector<std::uint8_t> buf(64 * 1024);
  for (int round = 0; round < 100000; ++round) {
    pipe.run();
    bool moved = false;
    for (int i = 0; i < 2; ++i) {
      while (!eof[i]) {
        sdp::IoResult r = pipe.engine(i).recv(buf);
        if (r.bytes != 0) {
          rx[i].insert(rx[i].end(), buf.begin(),
                       buf.begin() + static_cast<std::ptrdiff_t>(r.bytes));
          moved = true;
        } else {
          if (r.eof) eof[i] = moved = true;
          break;
        }
      }
      pipe.drain(i);
    }
    if (!moved && pipe.idle()) return true;
  }
  return false;
}

Session run_session(std::uint16_t local_port, std::size_t big, std::uint16_t recv_bufs) {
  Session s;
  sdp::EngineConfig cfg;
  cfg.recv_size = cfg.max_recv_size = cfg.send_slot_size = kMsgMax;
  cfg.recv_bufs = recv_bufs;
  cfg.zcopy_threshold = 0;  // BCopy only: every byte travels in Data messages
  cfg.accept_zcopy = false;
  sdp::PipePair pipe(cfg, cfg);
  // The pipe's independent credit monitor is seeded by PipePair::connect(); the CM exchange is done
  // by hand here (to capture the Hello and HelloAck bytes), so the monitor stays off.
  pipe.set_credit_monitor(false);
  pipe.on_wire = [&s](int side, std::span<const std::uint8_t> msg) {
    s.events.push_back({WireEvent::Kind::Sdp, side, Bytes(msg.begin(), msg.end())});
  };

  // CM exchange, as PipePair::connect() does it: Hello in the REQ, HelloAck in the REP, RTU.
  sdp::Engine::HelloParams hp;
  hp.ip_version = wire::kIpv4;
  hp.local_port = local_port;
  hp.src_ip[10] = hp.src_ip[11] = hp.dst_ip[10] = hp.dst_ip[11] = 0xFF;  // ::ffff:10.0.0.x
  hp.src_ip[12] = hp.dst_ip[12] = 10;
  hp.src_ip[15] = 1;
  hp.dst_ip[15] = 2;
  hp.compact = false;  // native SDP service: the full 92-byte Hello
  auto hello = pipe.active().connect(hp);
  Bytes req(hello.begin(), hello.end());
  pipe.drain(kActive);
  s.events.push_back({WireEvent::Kind::Req, kActive, req});
  auto ack = pipe.passive().accept(req);
  if (ack.empty()) {
    s.failure = "passive side rejected the Hello: " + std::string(pipe.passive().reject_reason());
    return s;
  }
  Bytes rep(ack.begin(), ack.end());
  pipe.drain(kPassive);
  s.events.push_back({WireEvent::Kind::Rep, kPassive, rep});
  if (!pipe.active().on_hello_ack(rep)) {
    s.failure = "active side refused the HelloAck: " + std::string(pipe.active().reset_reason());
    return s;
  }
  pipe.drain(kActive);
  s.events.push_back({WireEvent::Kind::Rtu, kActive, {}});

  // The applications: small, medium and large writes, answers the other way, then DisConn both
  // ways (active first) and the CM disconnect.
  Bytes rx[2], tx[2];
  bool eof[2] = {false, false};
  struct Write {
    int side;
    std::size_t len;
  };
  const Write script[] = {
      {kActive, 32}, {kPassive, 200}, {kActive, 1000}, {kActive, big}, {kPassive, big}};
  int write_no = 0;
  for (const Write& w : script) {
    const Bytes data = pattern(w.len, w.side, ++write_no);
    tx[w.side].insert(tx[w.side].end(), data.begin(), data.end());
    std::size_t sent = 0;
    for (int tries = 0; sent < data.size(); ++tries) {
      if (tries > 10000) {
        s.failure = "write did not complete";
        return s;
      }
      sdp::IoResult r = pipe.engine(w.side).send(std::span(data).subspan(sent));
      if (r.error != 0 && r.error != EAGAIN) {
        s.failure = "send failed with errno " + std::to_string(r.error);
        return s;
      }
      sent += r.bytes;
      pipe.drain(w.side);
      if (!settle(pipe, rx, eof)) {
        s.failure = "the pipe did not settle";
        return s;
      }
    }
  }
  for (int side : {kActive, kPassive}) {
    pipe.engine(side).shutdown_send();
    pipe.drain(side);
    if (!settle(pipe, rx, eof)) {
      s.failure = "the pipe did not settle during the close";
      return s;
    }
  }

  if (!pipe.errors().empty()) {
    s.failure = "pipe error: " + pipe.errors().front();
    return s;
  }
  if (!pipe.closed(kActive) || !pipe.closed(kPassive) || !eof[kActive] || !eof[kPassive]) {
    s.failure = "the connection did not close gracefully";
    return s;
  }
  if (rx[kPassive] != tx[kActive] || rx[kActive] != tx[kPassive]) {
    s.failure = "a side read different bytes than its peer wrote";
    return s;
  }
  s.bytes_each_way[kActive] = tx[kActive].size();
  s.bytes_each_way[kPassive] = tx[kPassive].size();

  // The side whose DisConn went first sends the CM DREQ once both DisConns crossed (the engine's
  // CmDisconnect action); the other answers with DREP.
  int dreq_side = -1;
  for (const WireEvent& e : s.events) {
    if (e.kind == WireEvent::Kind::Sdp && !e.bytes.empty() &&
        e.bytes[0] == static_cast<std::uint8_t>(wire::Mid::DisConn)) {
      dreq_side = e.side;
      break;
    }
  }
  if (dreq_side < 0) {
    s.failure = "no DisConn crossed the wire";
    return s;
  }
  s.events.push_back({WireEvent::Kind::Dreq, dreq_side, {}});
  s.events.push_back({WireEvent::Kind::Drep, 1 - dreq_side, {}});
  return s;
}

// ---- trace (the JSON-lines shape of the verbs binding's SDP_TRACE, plus side/frame) ----------

std::string trace_prefix(std::size_t frame, std::uint64_t t_ms, int side, std::uint32_t qpn) {
  return "{\"t_ms\":" + std::to_string(t_ms) + ",\"frame\":" + std::to_string(frame) +
         ",\"side\":\"" + kSideName[side] + "\",\"qpn\":" + std::to_string(qpn) +
         ",\"dir\":\"tx\",";
}

// ---- capture -------------------------------------------------------------------------------

struct Capture {
  std::vector<Bytes> frames;
  std::vector<std::string> trace;
  std::size_t cm = 0, sdp = 0, acks = 0;
};

constexpr std::uint64_t kStartSec = 1704067200;  // 2024-01-01 00:00:00 UTC: reproducible files
constexpr std::uint64_t kFrameGapUs = 1000;

std::string build_capture(const Session& s, std::uint16_t port, bool acks, Capture& cap) {
  capgen::Endpoint ep[2];
  ep[kActive] = {0x0001, 0x0002c90300a1b201ULL, 0x000048, 0x1a2b3c, 0x6b2f1001};
  ep[kPassive] = {0x0002, 0x0002c90300a1b202ULL, 0x000049, 0x4d5e6f, 0x6b2f2002};
  std::uint32_t psn[2] = {ep[0].start_psn, ep[1].start_psn};
  std::uint32_t gsi_psn[2] = {0, 0};
  std::uint32_t msn[2] = {0, 0};  // messages each side has received (its responder MSN)
  constexpr std::uint64_t kConnTid = 0x00000001'0000c001ULL;
  constexpr std::uint64_t kDiscTid = 0x00000001'0000c002ULL;

  auto gsi = [&](int from, capgen::CmAttr attr, std::uint64_t tid,
                 const std::array<std::uint8_t, capgen::kCmDataSize>& data) {
    const auto mad = capgen::cm_mad(attr, tid, data);
    cap.frames.push_back(capgen::gsi_frame(ep[from], ep[1 - from], gsi_psn[from]++, mad));
    ++cap.cm;
  };
  // Time of the frame just added (frame N is sent at (N - 1) * kFrameGapUs).
  auto t_ms = [&] { return (cap.frames.size() - 1) * kFrameGapUs / 1000; };

  for (const WireEvent& e : s.events) {
    const int from = e.side, to = 1 - e.side;
    switch (e.kind) {
      case WireEvent::Kind::Req: {
        auto h = wire::decode_hello(e.bytes);
        if (!h) return "the engine's Hello does not decode: " + std::string(h.error().reason());
        if (h->compact || e.bytes.size() != wire::kHelloMessageSize)
          return "the engine built a compact Hello";
        gsi(from, capgen::CmAttr::Req, kConnTid,
            capgen::cm_req(ep[from], ep[to], wire::sdp_service_id(port), e.bytes));
        char buf[100];
        std::snprintf(buf, sizeof buf, ",\"cm\":\"REQ\",\"service_id\":\"0x%016llx\"}",
                      static_cast<unsigned long long>(wire::sdp_service_id(port)));
        cap.trace.push_back(trace_prefix(cap.frames.size(), t_ms(), from, ep[from].qpn) +
                            trace::hello_fields(*h) + buf);
        break;
      }
      case WireEvent::Kind::Rep: {
        auto h = wire::decode_hello_ack(e.bytes);
        if (!h) return "the engine's HelloAck does not decode: " + std::string(h.error().reason());
        gsi(from, capgen::CmAttr::Rep, kConnTid, capgen::cm_rep(ep[from], ep[to], e.bytes));
        cap.trace.push_back(trace_prefix(cap.frames.size(), t_ms(), from, ep[from].qpn) +
                            trace::hello_ack_fields(*h) + ",\"cm\":\"REP\"}");
        break;
      }
      case WireEvent::Kind::Rtu:
        gsi(from, capgen::CmAttr::Rtu, kConnTid, capgen::cm_rtu(ep[from], ep[to]));
        break;
      case WireEvent::Kind::Dreq:
        gsi(from, capgen::CmAttr::Dreq, kDiscTid, capgen::cm_dreq(ep[from], ep[to]));
        break;
      case WireEvent::Kind::Drep:
        gsi(from, capgen::CmAttr::Drep, kDiscTid, capgen::cm_drep(ep[from], ep[to]));
        break;
      case WireEvent::Kind::Sdp: {
        wire::Message m;
        wire::Error err;
        if (!wire::decode_message_into(e.bytes, m, err))
          return std::string("the engine sent an invalid SDP message: ") +
                 std::string(err.reason());
        if (e.bytes.size() > kMsgMax) return "an SDP message exceeds the 4096-byte MTU";
        const std::uint32_t send_psn = psn[from];
        psn[from] = (psn[from] + 1) & 0xFFFFFFU;
        cap.frames.push_back(capgen::rc_send_only(ep[from], ep[to], send_psn, e.bytes));
        ++cap.sdp;
        cap.trace.push_back(trace_prefix(cap.frames.size(), t_ms(), from, ep[from].qpn) +
                            trace::bsdh_fields(m.bsdh) +
                            ",\"bytes\":" + std::to_string(e.bytes.size()) + "}");
        ++msn[to];
        if (acks) {
          cap.frames.push_back(capgen::rc_ack(ep[to], ep[from], send_psn, msn[to]));
          ++cap.acks;
        }
        break;
      }
    }
  }
  return {};
}

// ERF type 21 record: 16-byte header (capture-formats.md §1.2) + the frame from its LRH.
Bytes erf_record(const Bytes& frame, std::uint64_t sec, std::uint64_t usec) {
  Bytes r(16 + frame.size(), 0);
  const std::uint64_t ts = (sec << 32) | ((usec << 32) / 1000000);
  for (int i = 0; i < 8; ++i)
    r[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(ts >> (8 * i));
  r[8] = 21;    // TYPE_INFINIBAND
  r[9] = 0x04;  // varying-length record, interface 0
  const auto rlen = static_cast<std::uint16_t>(r.size());
  const auto wlen = static_cast<std::uint16_t>(frame.size());
  r[10] = static_cast<std::uint8_t>(rlen >> 8);
  r[11] = static_cast<std::uint8_t>(rlen);
  r[14] = static_cast<std::uint8_t>(wlen >> 8);
  r[15] = static_cast<std::uint8_t>(wlen);
  std::copy(frame.begin(), frame.end(), r.begin() + 16);
  return r;
}

std::string write_pcap(const std::string& path, const std::vector<Bytes>& frames) {
  pcap_t* dead = pcap_open_dead(DLT_ERF, 65535);
  if (dead == nullptr) return "pcap_open_dead(DLT_ERF) failed";
  pcap_dumper_t* out = pcap_dump_open(dead, path.c_str());
  if (out == nullptr) {
    std::string why = pcap_geterr(dead);
    pcap_close(dead);
    return why;
  }
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const std::uint64_t t_us = i * kFrameGapUs;
    const std::uint64_t sec = kStartSec + t_us / 1000000, usec = t_us % 1000000;
    const Bytes rec = erf_record(frames[i], sec, usec);
    pcap_pkthdr h{};
    h.ts.tv_sec = static_cast<time_t>(sec);
    h.ts.tv_usec = static_cast<suseconds_t>(usec);
    h.caplen = h.len = static_cast<bpf_u_int32>(rec.size());
    pcap_dump(reinterpret_cast<u_char*>(out), &h, rec.data());
  }
  const bool ok = pcap_dump_flush(out) == 0;
  pcap_dump_close(out);
  pcap_close(dead);
  return ok ? std::string() : "write error on " + path;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "sdp-capgen: runs one SDP session between two libsdp engines over the in-memory pipe fabric\n"
      "and writes it as a native InfiniBand capture (pcap, LINKTYPE_ERF 197, ERF type 21 records,\n"
      "LRH-routed, valid ICRC/VCRC) that tshark decodes as SDP:\n"
      "  CM REQ (service ID 0x000000000001PPPP, private data = the engine's 92-byte Hello),\n"
      "  CM REP (private data = the 196-byte HelloAck), CM RTU,\n"
      "  one RC SEND Only per SDP message (4096-byte receive buffers, MTU 4096) and its RC ACK:\n"
      "    active writes 32 and 1000 bytes and --bytes, passive writes 200 and --bytes,\n"
      "    then DisConn both ways (active first),\n"
      "  CM DREQ (active) / DREP (passive).\n"
      "--trace writes the engines' log of every SDP message they emitted, one JSON object a line\n"
      "(keys as the verbs binding's SDP_TRACE, plus side and the capture frame number)."};
  std::string out = "native-ib-sdp.erf.pcap";
  std::string trace_path;
  std::uint16_t port = 7000;
  std::uint16_t local_port = 40000;
  std::size_t big = 6000;
  std::uint16_t recv_bufs = 4;
  bool no_acks = false;
  cli.add_option("-o,--output", out, "capture file to write")->capture_default_str();
  cli.add_option("--trace", trace_path, "also write the SDP message log (JSON lines) here");
  cli.add_option("--port", port, "SDP service port (service ID 0x000000000001PPPP)")
      ->capture_default_str();
  cli.add_option("--local-port", local_port, "the active side's port (Hello LocalPort)")
      ->capture_default_str();
  cli.add_option("--bytes", big, "size of the large write in each direction")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{256} * 1024));
  cli.add_option("--recv-bufs", recv_bufs,
                 "receive buffers each engine posts (its credits); few buffers make the engines "
                 "send credit updates (empty Data messages)")
      ->capture_default_str()
      ->check(CLI::Range(4, 64));
  cli.add_flag("--no-acks", no_acks, "leave out the RC ACK packets");
  CLI11_PARSE(cli, argc, argv);

  const Session s = run_session(local_port, big, recv_bufs);
  if (!s.failure.empty()) {
    std::fprintf(stderr, "sdp-capgen: session failed: %s\n", s.failure.c_str());
    return 1;
  }
  Capture cap;
  if (std::string why = build_capture(s, port, !no_acks, cap); !why.empty()) {
    std::fprintf(stderr, "sdp-capgen: %s\n", why.c_str());
    return 1;
  }
  if (std::string why = write_pcap(out, cap.frames); !why.empty()) {
    std::fprintf(stderr, "sdp-capgen: cannot write %s: %s\n", out.c_str(), why.c_str());
    return 1;
  }
  if (!trace_path.empty()) {
    std::ofstream t(trace_path, std::ios::trunc);
    for (const std::string& line : cap.trace) t << line << '\n';
    t.flush();
    if (!t) {
      std::fprintf(stderr, "sdp-capgen: cannot write %s\n", trace_path.c_str());
      return 1;
    }
  }
  std::printf(
      "sdp-capgen: %s: %zu frames (%zu CM, %zu SDP SENDs, %zu RC ACKs); %zu/%zu stream bytes "
      "active->passive/passive->active\n",
      out.c_str(), cap.frames.size(), cap.cm, cap.sdp, cap.acks, s.bytes_each_way[kActive],
      s.bytes_each_way[kPassive]);
  if (!trace_path.empty())
    std::printf("sdp-capgen: %s: %zu SDP messages\n", trace_path.c_str(), cap.trace.size());
  return 0;
}

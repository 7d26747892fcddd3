// sdp-demo: the project's main job on the embedded default. Two SDP engines connect over the
// in-memory pipe fabric (no HCA needed), exchange a stream in each direction with BCopy and
// ZCopy, close gracefully, and the demo prints what happened on the wire.
#include <infiniband/verbs.h>
#include <zlib.h>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "sdp/pipe.hpp"
#include "sdp/pipe_driver.hpp"
#include "sdp/stats_proto.hpp"

namespace {

std::string rdma_devices() {
  int n = 0;
  ibv_device** list = ibv_get_device_list(&n);
  std::string s;
  for (int i = 0; list != nullptr && i < n; ++i) {
    if (!s.empty()) s += ",";
    s += ibv_get_device_name(list[i]);
  }
  if (list != nullptr) ibv_free_device_list(list);
  return s;
}

std::uint32_t crc(const std::vector<std::uint8_t>& v) {
  return static_cast<std::uint32_t>(
      crc32(0L, v.data(), static_cast<uInt>(v.size())));  // NOLINT: zlib's API is C
}

}  // namespace

int run(int argc, char** argv) {
  CLI::App cli{
      "sdp-demo: moves a byte stream each way through an SDP connection over the in-memory pipe\n"
      "fabric (two sans-I/O engines joined by a simulated RC queue pair) and reports the wire\n"
      "traffic: negotiated Hello/HelloAck values, messages per MID, credits, BCopy/ZCopy split."};
  std::size_t bytes = 4 * 1024 * 1024;
  std::uint32_t zthresh = 64 * 1024;
  std::uint16_t recv_bufs = 16;
  std::uint64_t seed = 1;
  bool json = false;
  bool compact = false;
  bool pipelined = false;
  cli.add_option("-b,--bytes", bytes, "bytes to send in each direction (at most 1 GiB)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 30));
  cli.add_option("-z,--zcopy-threshold", zthresh, "writes of at least this size use ZCopy (0: off)")
      ->capture_default_str();
  cli.add_option("-r,--recv-bufs", recv_bufs, "receive buffers per side (= max credits)")
      ->capture_default_str()
      ->check(CLI::Range(4, 1024));
  cli.add_option("-s,--seed", seed, "seed for data, write/read sizes and interleaving")
      ->capture_default_str();
  cli.add_flag("--compact", compact, "use the IP CM service's compact Hello (32 bytes)");
  cli.add_flag("--pipelined", pipelined,
               "passive side asks for Pipelined mode (SinkAvail / RDMA WRITE)");
  cli.add_flag("--json", json, "print the report as JSON (protobuf JSON mapping)");
  CLI11_PARSE(cli, argc, argv);

  sdp::EngineConfig ca, cb;
  ca.recv_bufs = cb.recv_bufs = recv_bufs;
  ca.zcopy_threshold = cb.zcopy_threshold = zthresh;
  cb.sink_adverts = ca.sink_adverts = pipelined;
  sdp::PipePair pipe(ca, cb);
  sdp::Engine::HelloParams hp;
  hp.local_port = 40000;
  hp.compact = compact;
  hp.src_ip[15] = 1;
  hp.dst_ip[15] = 2;
  hp.src_ip[12] = hp.dst_ip[12] = 10;
  if (!pipe.connect(hp)) {
    std::fprintf(stderr, "sdp-demo: connection refused: %s\n",
                 std::string(pipe.passive().reject_reason()).c_str());
    return 1;
  }
  std::mt19937_64 rng(seed);
  std::vector<std::uint8_t> a(bytes), b(bytes);
  for (auto& x : a) x = static_cast<std::uint8_t>(rng());
  for (auto& x : b) x = static_cast<std::uint8_t>(rng());
  sdp::DriverOptions opt;
  opt.seed = seed;
  opt.max_write = std::max<std::size_t>(zthresh * 2, 64 * 1024);
  auto res = sdp::drive_pipe(pipe, a, b, opt);

  infinisock::sdp::DemoReport rep;
  rep.set_bytes_each_way(bytes);
  rep.set_zcopy_threshold(zthresh);
  rep.set_verified(res.ok);
  rep.set_crc32(crc(a) ^ crc(b));
  rep.set_rdma_devices(rdma_devices());
  *rep.add_connections() = sdp::stats_to_proto(pipe.active());
  *rep.add_connections() = sdp::stats_to_proto(pipe.passive());
  if (json) {
    std::fputs(sdp::to_json(rep).c_str(), stdout);
    std::fputs("\n", stdout);
  } else {
    const std::string dev = rep.rdma_devices();
    fmt::print("RDMA devices: {}\n", dev.empty() ? "none (using the in-memory pipe fabric)" : dev);
    const auto& hh = pipe.passive().peer_hello();
    fmt::print(
        "Hello ({}): version {}.{}, max adverts {}, LocalRcvSz {}, DesRemRcvSz {}, port {}\n",
        compact ? "compact, IP CM" : "full, native SID", hh.major, hh.minor, hh.max_adverts,
        hh.local_rcv_sz, hh.des_rem_rcv_sz, hh.local_port);
    fmt::print("HelloAck: ActRcvSz {}\n", pipe.active().peer_recv_size());
    for (const auto& c : rep.connections()) {
      fmt::print(
          "{:>7}: state {}, sent {} B ({} BCopy, {} ZCopy), received {} B, credits {}..{}, "
          "{} credit updates, {} RDMA reads, {} RDMA writes\n",
          c.role(), c.state(), c.bytes_sent(), c.bcopy_bytes_sent(), c.zcopy_bytes_sent(),
          c.bytes_received(), c.credits_min(), c.credits_max(), c.credit_updates_sent(),
          c.rdma_reads(), c.rdma_writes());
      std::string mids;
      for (const auto& m : c.messages())
        mids += fmt::format(" {}={}/{}", m.mid(), m.sent(), m.received());
      fmt::print("         messages sent/received:{}\n", mids);
    }
    if (!res.ok) fmt::print("failure: {}\n", res.failure);
    fmt::print("verified: {} ({} bytes each way, byte-exact, crc32 {:08x})\n",
               res.ok ? "yes" : "NO", bytes, rep.crc32());
  }
  return res.ok ? 0 : 1;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // e.g. an engine configuration the engine refuses
    std::fprintf(stderr, "sdp-demo: %s\n", e.what());
    return 2;
  }
}

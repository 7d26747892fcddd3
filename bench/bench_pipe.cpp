// Engine cost through a pipe pair, both ends' work on one core, next to memcpy in the same run.
//
//   BM_MessageRate64     64-byte application messages A -> B in batches of 16: send, the
//                        simulated RC delivery, receive completion, recv, repost, credit updates.
//   BM_BCopyStream1MiB   1 MiB pushed A -> B by BCopy (one copy in, the wire copy, one copy out).
//   BM_Memcpy1MiB        memcpy of the same 1 MiB, for the ratio.
//
// After the runs it prints the two figures the project tracks:
//   messages/s per core (goal >= 20 M) and BCopy / (memcpy / 2) (goal >= 0.8).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "sdp/pipe.hpp"

namespace {

sdp::EngineConfig bench_cfg() {
  sdp::EngineConfig c;
  c.recv_bufs = 64;
  c.send_slots = 64;
  c.zcopy_threshold = 0;  // BCopy only
  return c;
}

// Each iteration: the sender writes kBatch messages (each its own SDP Data message: the credits
// allow it), the pipe delivers them, the receiver reads them one recv() per message, and the
// pipe carries back whatever that produced (reposted buffers, credit updates, completions).
constexpr int kBatch = 16;

void BM_MessageRate64(benchmark::State& state) {
  sdp::PipePair p(bench_cfg(), bench_cfg());
  p.set_credit_monitor(false);  // a test oracle, not part of the engine's or the QP's work
  if (!p.connect()) state.SkipWithError("connect failed");
  std::uint8_t msg[64] = {1, 2, 3};
  std::uint8_t out[64];
  std::size_t got = 0;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) benchmark::DoNotOptimize(p.active().send(msg).bytes);
    p.drain(0);
    p.run();
    for (int i = 0; i < kBatch; ++i) got += p.passive().recv(out).bytes;
    p.drain(1);
    p.run();
  }
  if (got != 64 * kBatch * static_cast<std::size_t>(state.iterations()))
    state.SkipWithError("messages lost");
  if (!p.errors().empty()) state.SkipWithError(p.errors().front().c_str());
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.counters["sdp_msgs_per_app_msg"] =
      benchmark::Counter(static_cast<double>(p.active().stats().messages_sent[0xFF] +
                                             p.passive().stats().messages_sent[0xFF]) /
                         static_cast<double>(state.iterations() * kBatch));
}
BENCHMARK(BM_MessageRate64);

constexpr std::int64_t kStreamBytes = 1 << 20;
constexpr std::size_t kStream = static_cast<std::size_t>(kStreamBytes);

// OFED's receive size (32 KiB + BSDH) and its typical posted count (5-9, sdp-wire.md §4): the
// rings stay cache-resident, as they would on a host whose HCA does the wire copy.
sdp::EngineConfig stream_cfg() {
  sdp::EngineConfig c;
  c.recv_bufs = 8;
  c.send_slots = 8;
  c.recv_size = c.max_recv_size = c.send_slot_size = 32784;
  c.zcopy_threshold = 0;  // BCopy only
  return c;
}

void BM_BCopyStream1MiB(benchmark::State& state) {
  sdp::PipePair p(stream_cfg(), stream_cfg());
  p.set_credit_monitor(false);
  if (!p.connect()) state.SkipWithError("connect failed");
  std::vector<std::uint8_t> src(kStream, 0x5A), dst(kStream);
  for (auto _ : state) {
    std::size_t sent = 0, got = 0;
    while (got < kStream) {
      if (sent < kStream) {
        sent += p.active().send({src.data() + sent, kStream - sent}).bytes;
        p.drain(0);
      }
      p.run();
      got += p.passive().recv({dst.data() + got, kStream - got}).bytes;
      p.drain(1);
      p.run();
    }
    benchmark::DoNotOptimize(dst.data());
  }
  if (!p.errors().empty()) state.SkipWithError(p.errors().front().c_str());
  state.SetBytesProcessed(state.iterations() * kStreamBytes);
}
BENCHMARK(BM_BCopyStream1MiB);

void BM_Memcpy1MiB(benchmark::State& state) {
  std::vector<std::uint8_t> src(kStream, 0x5A), dst(kStream);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), kStream);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kStreamBytes);
}
BENCHMARK(BM_Memcpy1MiB);

// Keeps each run's rates so main() can print the ratios.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, double> rate;
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      auto it = r.counters.find("bytes_per_second");
      if (it == r.counters.end()) it = r.counters.find("items_per_second");
      if (it != r.counters.end()) rate[r.benchmark_name()] = it->second;
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RatioReporter rep;
  benchmark::RunSpecifiedBenchmarks(&rep);
  benchmark::Shutdown();
  const double msgs = rep.rate["BM_MessageRate64"];
  const double bcopy = rep.rate["BM_BCopyStream1MiB"];
  const double mcpy = rep.rate["BM_Memcpy1MiB"];
  if (msgs > 0)
    std::printf("message rate: %.2f M 64-byte messages/s per core, both ends (goal >= 20)\n",
                msgs / 1e6);
  if (bcopy > 0 && mcpy > 0)
    std::printf("BCopy %.2f GiB/s, memcpy %.2f GiB/s: BCopy / (memcpy / 2) = %.2f (goal >= 0.8)\n",
                bcopy / (1 << 30), mcpy / (1 << 30), bcopy / (mcpy / 2));
  return 0;
}

// Drives a PipePair like two applications would: each side writes its stream in pieces, reads
// what arrives, half-closes when done, and the fabric's deliveries are interleaved with the
// applications' calls, in order or at random. Used by the demo, the randomized tests and the
// benchmarks, so that all three exercise the same path.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "sdp/pipe.hpp"

namespace sdp {

struct DriverOptions {
  std::uint64_t seed = 1;
  bool random_schedule = true;  // false: fixed round-robin order
  std::size_t min_write = 1, max_write = 256 * 1024;
  std::size_t min_read = 1, max_read = 256 * 1024;
  std::uint64_t max_iterations = 50'000'000;
  bool use_oob = false;  // occasionally send one urgent byte (BCopy writes only)
};

struct DriverResult {
  bool ok = false;
  std::string failure;                    // why not ok
  std::vector<std::uint8_t> received[2];  // stream bytes each side read
  std::uint64_t iterations = 0;
  std::uint64_t zcopy_sends[2] = {0, 0};
  std::uint64_t oob_sent[2] = {0, 0}, oob_received[2] = {0, 0};
};

// Sends streams[0] from the active side to the passive side and streams[1] the other way, then
// closes both directions gracefully. ok means: both sides read exactly what the other wrote, both
// engines reached Closed, and the pipe recorded no error (RC rule or credit violation).
DriverResult drive_pipe(PipePair& pipe, std::span<const std::uint8_t> a_to_b,
                        std::span<const std::uint8_t> b_to_a, const DriverOptions& opt);

// A human-readable dump of both engines (state, credits, queues), for failure messages.
std::string describe(PipePair& pipe);

}  // namespace sdp

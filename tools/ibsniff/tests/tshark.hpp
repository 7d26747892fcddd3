// Running tshark (and the CLI) from the tests: a shell command's output, whether tshark is
// installed, and the heuristic dissectors the comparisons turn off.
#pragma once

#include <array>
#include <cstdio>
#include <string>

namespace ibsniff::test {

// The command's standard output; *status is pclose()'s (-1 when the command could not start).
inline std::string run(const std::string& cmd, int* status) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) {
    *status = -1;
    return out;
  }
  std::array<char, 65536> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
  *status = pclose(f);
  return out;
}

inline bool have_command(const std::string& name) {
  int st = 0;
  run("command -v " + name + " >/dev/null 2>&1", &st);
  return st == 0;
}

inline bool have_tshark() {
  return have_command("tshark");
}

// For paths without a single quote (the test inputs).
inline std::string shell_quote(const std::string& s) {
  return "'" + s + "'";
}

// The unrelated payload heuristics (capture-formats.md §4.3). kDisabledButSdp leaves tshark's SDP
// dissector on (for the SDP comparison); kDisabledHeuristics turns it off too (for the transport
// comparison; the SDP fields are compared by IbsniffSdp.NativeSdpFieldsMatchTshark).
#define IBSNIFF_UNRELATED_HEURISTICS                                                               \
  " --disable-heuristic rpcrdma_infiniband --disable-heuristic smb_direct_infiniband"              \
  " --disable-heuristic nvme_rdma --disable-heuristic lnet_ib --disable-heuristic smcr_infiniband" \
  " --disable-heuristic fc_infiniband --disable-heuristic iser_infiniband"                         \
  " --disable-heuristic mellanox_eoib --disable-heuristic eth_over_ib"                             \
  " --disable-heuristic drbd_rdma --disable-heuristic iser_ib_private"                             \
  " --disable-heuristic nvme_rdma_cm_private --disable-heuristic lnet_ib_cm_private"
inline constexpr const char* kDisabledButSdp = IBSNIFF_UNRELATED_HEURISTICS;
inline constexpr const char* kDisabledHeuristics = IBSNIFF_UNRELATED_HEURISTICS
    " --disable-heuristic sdp_infiniband --disable-heuristic sdp_ib_private";
#undef IBSNIFF_UNRELATED_HEURISTICS

}  // namespace ibsniff::test

// The scenario runner: the raw SDP endpoint that executes a scenario's steps over a Transport and
// checks every message the peer sends against the rules any peer must keep.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "report.pb.h"
#include "scenario.pb.h"
#include "transport.hpp"

namespace conformance {

struct LoadedScenario {
  std::string file;
  Scenario scenario;
};

// Reads every *.textproto under `path` (a directory, sorted by name) or the one file `path`.
// Checks each scenario: a name, at least one rule, unique names, steps present. False with
// `error` (file, line and column for a parse error) otherwise.
bool load_scenarios(const std::string& path, std::vector<LoadedScenario>& out, std::string& error);
// The same checks for scenarios built in memory (trace replay).
bool check_scenario(const Scenario& s, std::string& error);

struct RunOptions {
  bool native_cm = false;  // the run's CM mode for scenarios with cm CM_ANY
  bool builtin = false;    // the peer is the builtin one (builtin_only scenarios run)
  // Opens the transport for one scenario (a fresh connection each time).
  std::function<std::unique_ptr<Transport>(const Scenario&, std::string& error)> open;
};

// Runs one scenario. The result's log holds every message and event, in order.
CaseResult run_scenario(const LoadedScenario& ls, const RunOptions& opt);

// "Data Len 40 Bufs 4 MSeq 3 MSeqAck 2 payload 24" (or the codec's reason for a malformed one).
std::string describe_message(std::span<const std::uint8_t> bytes);

// The byte the source service sends at stream offset i.
inline std::uint8_t pattern_byte(std::uint64_t i) {
  return static_cast<std::uint8_t>(i % 251);
}

}  // namespace conformance

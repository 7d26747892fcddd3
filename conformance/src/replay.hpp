// Trace replay: one side of an SDP connection in a capture, turned into a scenario.
//
// ibsniff's library follows the capture's first SDP connection (or the one asked for). The
// chosen side's messages become Send steps whose MSeq, MSeqAck and Bufs are left to this run's
// exchange (they may differ within the rules); the other side's become expectations: its stream
// bytes in order (Data payloads and SrcAvail'd bytes, whatever the message boundaries), its
// control messages by MID. Credit updates are never expected (their timing is the peer's).
#pragma once

#include <string>

#include "scenario.pb.h"

namespace conformance {

struct ReplayOptions {
  std::string path;         // pcap / pcapng
  bool client_side = true;  // replay the side that sent the CM REQ (else the one that answered)
  unsigned connection = 0;  // 0: the first SDP connection; N: the N-th (1-based)
  int service = -1;         // -1: from the capture's destination port (7007 echo, ...)
};

// Fills `out` with the scenario (name "replay:<file>:<side>"). False with `error` when the file
// cannot be read or holds no SDP connection with a Hello in its CM REQ.
bool scenario_from_capture(const ReplayOptions& opt, Scenario& out, std::string& error);

}  // namespace conformance

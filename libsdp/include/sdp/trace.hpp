// The SDP message trace format: one JSON object per message, shared by the verbs binding's
// SDP_TRACE log, sdp-capgen's trace and the checks that compare them with captures. These
// functions write the JSON members (without braces) for what a message says; callers add their
// own members (time, QP, direction).
#pragma once

#include <string>

#include "sdp/wire.hpp"

namespace sdp::trace {

// "mid":"Data","mid_value":255,"flags":0,"bufs":16,"len":32784,"mseq":7,"mseqack":3
std::string bsdh_fields(const wire::Bsdh& b);
// BSDH members, then "major","minor","ipv","cap","max_adverts","des_rem_rcv_sz","local_rcv_sz",
// "local_port","compact"
std::string hello_fields(const wire::Hello& h);
// BSDH members, then "major","minor","ipv","cap","max_adverts","act_rcv_sz"
std::string hello_ack_fields(const wire::HelloAck& h);

}  // namespace sdp::trace

// Engine statistics as a protobuf message (and so as JSON, through protobuf's JSON mapping).
#pragma once

#include <string>

#include "sdp/engine.hpp"
#include "sdp_stats.pb.h"

namespace sdp {

infinisock::sdp::ConnectionStats stats_to_proto(const Engine& e);
// Compact JSON of any of the project's protobuf messages; throws std::runtime_error on failure.
std::string to_json(const google::protobuf::Message& m, bool pretty = true);

}  // namespace sdp

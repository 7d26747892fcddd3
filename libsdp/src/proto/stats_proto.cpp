#include "sdp/stats_proto.hpp"

#include <google/protobuf/util/json_util.h>

#include <stdexcept>

namespace sdp {

namespace {
const char* mode_name(wire::Mode m) {
  switch (m) {
    case wire::Mode::Buffered:
      return "Buffered";
    case wire::Mode::Combined:
      return "Combined";
    case wire::Mode::Pipelined:
      return "Pipelined";
  }
  return "?";
}
}  // namespace

infinisock::sdp::ConnectionStats stats_to_proto(const Engine& e) {
  const Stats& s = e.stats();
  infinisock::sdp::ConnectionStats p;
  p.set_role(e.role() == Role::Active ? "active" : "passive");
  p.set_state(std::string(state_name(e.state())));
  p.set_send_mode(mode_name(e.send_mode()));
  p.set_recv_mode(mode_name(e.recv_mode()));
  p.set_local_recv_size(e.local_recv_size());
  p.set_peer_recv_size(e.peer_recv_size());
  p.set_send_credits(e.send_credits());
  p.set_credits_min(s.credits_min == UINT32_MAX ? 0 : s.credits_min);
  p.set_credits_max(s.credits_max);
  p.set_bytes_sent(s.bytes_sent);
  p.set_bytes_received(s.bytes_received);
  p.set_bcopy_bytes_sent(s.bcopy_bytes_sent);
  p.set_zcopy_bytes_sent(s.zcopy_bytes_sent);
  p.set_bcopy_bytes_received(s.bcopy_bytes_received);
  p.set_zcopy_bytes_received(s.zcopy_bytes_received);
  p.set_credit_updates_sent(s.credit_updates_sent);
  p.set_rdma_reads(s.rdma_reads);
  p.set_rdma_writes(s.rdma_writes);
  for (unsigned mid = 0; mid < 256; ++mid) {
    if (s.messages_sent[mid] == 0 && s.messages_received[mid] == 0) continue;
    auto* m = p.add_messages();
    m->set_mid(std::string(wire::mid_name(static_cast<std::uint8_t>(mid))));
    m->set_sent(s.messages_sent[mid]);
    m->set_received(s.messages_received[mid]);
  }
  if (e.state() == State::Reset) p.set_reset_reason(std::string(e.reset_reason()));
  return p;
}

std::string to_json(const google::protobuf::Message& m, bool pretty) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opt;
  opt.add_whitespace = pretty;
  opt.always_print_primitive_fields = true;
  opt.preserve_proto_field_names = true;
  auto st = google::protobuf::util::MessageToJsonString(m, &out, opt);
  if (!st.ok()) throw std::runtime_error("protobuf JSON: " + st.ToString());
  return out;
}

}  // namespace sdp

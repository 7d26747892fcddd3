#include "sdp/trace.hpp"

#include <cstdio>

namespace sdp::trace {

std::string bsdh_fields(const wire::Bsdh& b) {
  const std::string_view name = wire::mid_name(b.mid);
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "\"mid\":\"%.*s\",\"mid_value\":%u,\"flags\":%u,\"bufs\":%u,\"len\":%u,\"mseq\":%u,"
                "\"mseqack\":%u",
                static_cast<int>(name.size()), name.data(), b.mid, b.flags, b.bufs, b.len, b.mseq,
                b.mseq_ack);
  return buf;
}

std::string hello_fields(const wire::Hello& h) {
  char buf[300];
  std::snprintf(buf, sizeof buf,
                ",\"major\":%u,\"minor\":%u,\"ipv\":%u,\"cap\":%u,\"max_adverts\":%u,"
                "\"des_rem_rcv_sz\":%u,\"local_rcv_sz\":%u,\"local_port\":%u,\"compact\":%s",
                h.hh.major, h.hh.minor, h.hh.ip_version, h.hh.cap, h.hh.max_adverts,
                h.hh.des_rem_rcv_sz, h.hh.local_rcv_sz, h.hh.local_port,
                h.compact ? "true" : "false");
  return bsdh_fields(h.bsdh) + buf;
}

std::string hello_ack_fields(const wire::HelloAck& h) {
  char buf[200];
  std::snprintf(buf, sizeof buf,
                ",\"major\":%u,\"minor\":%u,\"ipv\":%u,\"cap\":%u,\"max_adverts\":%u,"
                "\"act_rcv_sz\":%u",
                h.hah.major, h.hah.minor, h.hah.ip_version, h.hah.cap, h.hah.max_adverts,
                h.hah.act_rcv_sz);
  return bsdh_fields(h.bsdh) + buf;
}

}  // namespace sdp::trace

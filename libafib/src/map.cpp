#include "map.hpp"

#include <endian.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <cstring>

#include "afib/afib.h"

namespace afib {

bool to_rdma_cm(const sockaddr_ib& sib, bool ib_ports, bool stream, sockaddr_storage* out,
                socklen_t* len, int* ps, std::string* why) {
  std::memset(out, 0, sizeof *out);
  const std::uint8_t* g = sib.sib_addr.sib_raw;
  static const std::uint8_t kV4Prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  const bool v4 = std::memcmp(g, kV4Prefix, 12) == 0;
  if (ib_ports && !v4) {
    std::memcpy(out, &sib, sizeof sib);
    *len = sizeof sib;
    *ps = RDMA_PS_IB;  // the service ID says the rest
    return true;
  }
  std::uint16_t port = 0;
  const afib_sid_kind kind = afib_sid_kind_of(afib_addr_sid(&sib), &port);
  if (stream && kind != AFIB_SID_SDP && kind != AFIB_SID_IP_CM) {
    *why =
        "on RoCE, rdma_cm carries an AF_IB stream only as SDP over the IP CM service: the "
        "service ID must be sdp:PORT or ipcm:PORT";
    return false;
  }
  if (!stream && kind != AFIB_SID_IP_CM && kind != AFIB_SID_IB) {
    *why =
        "on RoCE, rdma_cm carries AF_IB messages in its own port spaces only: the service ID "
        "must be ipcm:PORT or ib:PORT";
    return false;
  }
  *ps = kind == AFIB_SID_IB ? RDMA_PS_IB : RDMA_PS_TCP;
  if (v4) {
    auto* a = reinterpret_cast<sockaddr_in*>(out);
    a->sin_family = AF_INET;
    std::memcpy(&a->sin_addr, g + 12, 4);
    a->sin_port = htons(port);
    *len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(out);
    a->sin6_family = AF_INET6;
    std::memcpy(&a->sin6_addr, g, 16);
    a->sin6_port = htons(port);
    a->sin6_scope_id = static_cast<std::uint32_t>(sib.sib_scope_id);
    *len = sizeof *a;
  }
  return true;
}

void from_rdma_cm(const sockaddr* sa, int kind, sockaddr_ib* out) {
  std::uint8_t gid[16] = {};
  std::uint16_t port = 0;
  if (sa->sa_family == AF_IB) {
    std::memcpy(out, sa, sizeof *out);
    return;
  }
  if (sa->sa_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(sa);
    gid[10] = gid[11] = 0xff;
    std::memcpy(gid + 12, &a->sin_addr, 4);
    port = ntohs(a->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(sa);
    std::memcpy(gid, &a->sin6_addr, 16);
    port = ntohs(a->sin6_port);
  }
  afib_addr_init(out, gid, AFIB_PKEY_DEFAULT, afib_sid(static_cast<afib_sid_kind>(kind), port));
}

Ports local_ports() {
  int n = 0;
  ibv_device** list = ibv_get_device_list(&n);
  bool ib = false;
  for (int i = 0; i < n && !ib; ++i) {
    ibv_context* ctx = ibv_open_device(list[i]);
    if (ctx == nullptr) continue;
    ibv_device_attr attr{};
    if (ibv_query_device(ctx, &attr) == 0) {
      for (std::uint8_t p = 1; p <= attr.phys_port_cnt && !ib; ++p) {
        ibv_port_attr pa{};
        ib = ibv_query_port(ctx, p, &pa) == 0 && pa.link_layer == IBV_LINK_LAYER_INFINIBAND &&
             pa.state == IBV_PORT_ACTIVE;
      }
    }
    ibv_close_device(ctx);
  }
  if (list != nullptr) ibv_free_device_list(list);
  return Ports{n > 0, ib};
}

}  // namespace afib

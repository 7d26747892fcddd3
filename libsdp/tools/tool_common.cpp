#include "tool_common.hpp"

#include <arpa/inet.h>
#include <endian.h>
#include <infiniband/ib.h>
#include <netdb.h>
#include <netinet/in.h>

#include <cstring>
#include <stdexcept>

#include "sdp/sdp.h"

namespace sdptool {

Endpoint resolve(const std::string& host, std::uint16_t port, bool native, bool ipv6) {
  Endpoint ep;
  if (native) {
    auto* ib = reinterpret_cast<sockaddr_ib*>(&ep.addr);
    ib->sib_family = AF_IB;
    ib->sib_pkey = htobe16(0xFFFF);
    ib->sib_sid = htobe64(0x0000000000010000ULL | port);
    ib->sib_sid_mask = htobe64(~0ULL);
    if (!host.empty()) {
      in_addr v4{};
      if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
        std::uint8_t gid[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
        std::memcpy(gid + 12, &v4, 4);
        std::memcpy(&ib->sib_addr, gid, 16);
      } else if (inet_pton(AF_INET6, host.c_str(), &ib->sib_addr) != 1) {
        throw std::runtime_error("native mode needs a GID (IPv6 form) or an IPv4 address, not '" +
                                 host + "'");
      }
    }
    ep.len = sizeof(sockaddr_ib);
    ep.domain = AF_IB;
    return ep;
  }
  addrinfo hints{};
  hints.ai_family = ipv6 ? AF_INET6 : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = host.empty() ? AI_PASSIVE : 0;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  const int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0) throw std::runtime_error("cannot resolve '" + host + "': " + gai_strerror(rc));
  // Prefer IPv4 unless -6 was given (rdma_cm's IP CM service takes either).
  const addrinfo* pick = res;
  for (const addrinfo* a = res; a != nullptr; a = a->ai_next)
    if (a->ai_family == (ipv6 ? AF_INET6 : AF_INET)) {
      pick = a;
      break;
    }
  std::memcpy(&ep.addr, pick->ai_addr, pick->ai_addrlen);
  ep.len = static_cast<socklen_t>(pick->ai_addrlen);
  ep.domain = pick->ai_family;
  freeaddrinfo(res);
  return ep;
}

std::string to_string(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = {};
  switch (sa->sa_family) {
    case AF_INET: {
      const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
      inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
      return std::string(buf) + ":" + std::to_string(ntohs(in->sin_port));
    }
    case AF_INET6: {
      const auto* in = reinterpret_cast<const sockaddr_in6*>(sa);
      inet_ntop(AF_INET6, &in->sin6_addr, buf, sizeof buf);
      return "[" + std::string(buf) + "]:" + std::to_string(ntohs(in->sin6_port));
    }
    case AF_IB: {
      const auto* ib = reinterpret_cast<const sockaddr_ib*>(sa);
      inet_ntop(AF_INET6, &ib->sib_addr, buf, sizeof buf);
      char sid[24];
      std::snprintf(sid, sizeof sid, "%016llx",
                    static_cast<unsigned long long>(be64toh(ib->sib_sid)));
      return std::string(buf) + " sid 0x" + sid;
    }
    default:
      return "?";
  }
}

std::string sdp_error(int fd, int err) {
  std::string s = std::strerror(err);
  const char* d = fd >= 0 ? sdp_error_detail(fd) : "";
  if (d != nullptr && *d != '\0') s += std::string(" (") + d + ")";
  return s;
}

}  // namespace sdptool

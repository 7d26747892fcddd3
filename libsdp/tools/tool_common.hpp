// Shared by the libsdp command-line tools: address parsing and error reporting.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace sdptool {

struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
  int domain = 0;
};

// Builds the address for host:port. `native` selects AF_IB with the native SDP service ID
// 0x000000000001PPPP; the host is then a GID (IPv6 literal) or an IPv4 address, which names
// the RoCE GID ::ffff:a.b.c.d. Otherwise host is resolved as AF_INET/AF_INET6 (IP CM service).
// An empty host means "any" (for listening). Throws std::runtime_error with a clear message.
Endpoint resolve(const std::string& host, std::uint16_t port, bool native, bool ipv6);

// "a.b.c.d:port", "[v6]:port" or "gid/sid" for printing.
std::string to_string(const sockaddr* sa);

// Message for the last failed call on an SDP socket: strerror plus libsdp's detail.
std::string sdp_error(int fd, int err);

}  // namespace sdptool

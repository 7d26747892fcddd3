// libsdp-preload.so: runs unmodified socket programs over SDP. Interposes connect, listen,
// accept/accept4, getsockname, getpeername and getsockopt(SO_ERROR); every other call goes to the
// kernel, because every descriptor the program holds stays a real kernel socket (relay.hpp).
//
// Decisions, per socket, for AF_INET / AF_INET6 stream sockets (TCP):
//  - no RDMA device in the machine: everything stays TCP, at no cost after the first check;
//  - the rules file (LIBSDP_CONFIG_FILE, default SDP_DEFAULT_CONFIG; libsdp.conf(5)) says sdp,
//    tcp or both for the program, the role (server/client), the address and port; no rule →
//    both; a rules file with errors → TCP for everything (and the errors are printed);
//  - client, both: SDP first; when the peer has no SDP listener (CM reject), the address is
//    not on the fabric, or SDP fails otherwise, TCP — for blocking connects in the calling
//    thread, for nonblocking ones in the relay (the program sees EINPROGRESS at once);
//  - server, both: the TCP listener stays and an SDP listener on the same port is added; SDP
//    connections arrive through the same listening descriptor. Server, sdp: TCP clients are
//    refused (closed at accept).
// Loopback destinations always stay TCP (they never reach the fabric).
#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "relay.hpp"
#include "rules.hpp"
#include "sdp/sdp.h"

#ifndef SDP_DEFAULT_CONFIG
#define SDP_DEFAULT_CONFIG "/etc/libsdp.conf"
#endif

namespace sdp::preload {
namespace {

struct Guard {
  Guard() { ++t_internal; }
  ~Guard() { --t_internal; }
};

struct Shim {
  Config config;
  std::unique_ptr<Logger> log;
  std::once_flag device_once;
  bool have_device = false;
  const char* program = "?";

  Shim() {
    Guard g;
    program = program_invocation_short_name;
    config = load_config(std::getenv("LIBSDP_CONFIG_FILE"), SDP_DEFAULT_CONFIG);
    LogConfig lc = config.log;
    if (const char* lvl = std::getenv("LIBSDP_LOG_LEVEL"); lvl != nullptr && *lvl != '\0') {
      const int v = std::atoi(lvl);
      if (v >= 1 && v <= 9) lc.min_level = v;
    }
    log = std::make_unique<Logger>(lc);
    for (const auto& e : config.errors) log->log(level::kError, "%s", e.c_str());
    if (!config.valid())
      log->log(level::kError, "%s: the rules file has errors: every socket stays TCP", program);
    set_log([this](int lvl, const char* msg) { log->log(lvl, "%s: %s", program, msg); });
  }

  bool device() {
    std::call_once(device_once, [this] {
      Guard g;
      if (const char* skip = std::getenv("LIBSDP_SKIP_DEVICE_CHECK"); skip && *skip == '1') {
        have_device = true;  // tests: exercise SDP attempts and fallbacks without a device
        return;
      }
      int n = 0;
      ibv_device** list = ibv_get_device_list(&n);
      if (list != nullptr) ibv_free_device_list(list);
      have_device = n > 0;
      if (!have_device)
        log->log(level::kSummary, "%s: no RDMA device: every socket stays TCP", program);
    });
    return have_device;
  }
};

Shim& shim() {
  static Shim* s = new Shim();  // never destroyed: used until the process exits
  return *s;
}

bool tcp_socket(int fd);
void adopt_inherited_listeners();

// The rules are read when the library loads, so a bad rules file is reported at once; and
// listening sockets inherited through exec get their SDP listener back.
__attribute__((constructor)) void load_at_start() {
  shim();
  Guard g;
  adopt_inherited_listeners();
}

// An AF_INET/AF_INET6 TCP stream socket?
bool tcp_socket(int fd) {
  int type = 0, proto = 0, domain = 0;
  socklen_t l = sizeof type;
  if (libc().getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) != 0 || type != SOCK_STREAM)
    return false;
  l = sizeof domain;
  if (libc().getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l) != 0 ||
      (domain != AF_INET && domain != AF_INET6))
    return false;
  l = sizeof proto;
  return libc().getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &l) == 0 && proto == IPPROTO_TCP;
}

bool is_loopback(const sockaddr* a) {
  if (a->sa_family == AF_INET)
    return (ntohl(reinterpret_cast<const sockaddr_in*>(a)->sin_addr.s_addr) >> 24) == 127;
  if (a->sa_family == AF_INET6) {
    const in6_addr& x = reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(&x)) return true;
    return IN6_IS_ADDR_V4MAPPED(&x) && x.s6_addr[12] == 127;
  }
  return false;
}

// Copies `a` into the caller's buffer, in the socket's family (IPv4 as ::ffff:a.b.c.d for an
// AF_INET6 socket), truncating like the kernel.
void copy_out(int family, const sockaddr_storage& a, sockaddr* out, socklen_t* out_len) {
  if (out == nullptr || out_len == nullptr) return;
  sockaddr_storage v = a;
  socklen_t n = a.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (family == AF_INET6 && a.ss_family == AF_INET) {
    const auto& s4 = reinterpret_cast<const sockaddr_in&>(a);
    sockaddr_in6 s6{};
    s6.sin6_family = AF_INET6;
    s6.sin6_port = s4.sin_port;
    s6.sin6_addr.s6_addr[10] = s6.sin6_addr.s6_addr[11] = 0xff;
    std::memcpy(&s6.sin6_addr.s6_addr[12], &s4.sin_addr, 4);
    std::memcpy(&v, &s6, sizeof s6);
    n = sizeof s6;
  }
  std::memcpy(out, &v, std::min(n, *out_len));
  *out_len = n;
}

int family_of(int fd) {
  int domain = AF_INET;
  socklen_t l = sizeof domain;
  libc().getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l);
  return domain;
}

int do_connect(int fd, const sockaddr* addr, socklen_t len) {
  Shim& s = shim();
  // connect() again on a socket the relay carries: how some programs complete a nonblocking
  // connect after POLLOUT (hiredis, for one). The program's socket is writable as soon as it
  // reaches the relay, so the outcome is waited for here, then answered as the kernel would.
  if (const auto ep = lookup(fd, true)) {
    errno = ep->pending ? EALREADY : ep->error != 0 ? ep->error : EISCONN;
    return -1;
  }
  const std::string where = describe(addr);
  if (is_loopback(addr)) {
    s.log->log(level::kCalls, "%s: connect %s: loopback address: TCP", s.program, where.c_str());
    return libc().connect(fd, addr, len);
  }
  if (!s.config.valid() || !s.device()) return libc().connect(fd, addr, len);
  int line = 0;
  const Use use = decide(s.config, Role::Client, s.program, addr, &line);
  if (line > 0)
    s.log->log(level::kPositive, "%s: connect %s: rule at line %d says %s", s.program,
               where.c_str(), line, name(use));
  else
    s.log->log(level::kNegative, "%s: connect %s: no rule matches: both", s.program, where.c_str());
  if (use == Use::Tcp) return libc().connect(fd, addr, len);

  // The program's socket talks to the relay over loopback: no Nagle there (it would add
  // delayed-ACK stalls to request/response traffic; SDP sends at once anyway).
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const bool nonblocking = (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
  if (nonblocking) {
    if (start_connect(fd, addr, len, use == Use::Both) != 0) {
      const int e = errno;
      s.log->log(level::kWarning, "%s: connect %s: cannot set up the relay (%s): TCP", s.program,
                 where.c_str(), std::strerror(e));
      return libc().connect(fd, addr, len);
    }
    s.log->log(level::kSummary, "%s: connect %s: SDP connect started (nonblocking%s)", s.program,
               where.c_str(), use == Use::Both ? ", TCP if it fails" : "");
    errno = EINPROGRESS;
    return -1;
  }
  const int sd = sdp_socket(addr->sa_family, SOCK_STREAM, 0);
  if (sd >= 0 && sdp_connect(sd, addr, len) == 0) {
    if (adopt_connected(fd, sd, addr, len) != 0) {
      s.log->log(level::kError, "%s: connect %s: cannot set up the relay (%s)", s.program,
                 where.c_str(), std::strerror(errno));
      return -1;
    }
    s.log->log(level::kSummary, "%s: connect %s: SDP", s.program, where.c_str());
    return 0;
  }
  const int e = errno;
  const std::string detail = sd >= 0 ? sdp_error_detail(sd) : "";
  if (sd >= 0) sdp_close(sd);
  if (use == Use::Sdp) {
    s.log->log(level::kSummary, "%s: connect %s: SDP failed (%s%s%s), rule says sdp only",
               s.program, where.c_str(), std::strerror(e), detail.empty() ? "" : ": ",
               detail.c_str());
    errno = e;
    return -1;
  }
  s.log->log(level::kSummary, "%s: connect %s: SDP failed (%s%s%s): TCP", s.program, where.c_str(),
             std::strerror(e), detail.empty() ? "" : ": ", detail.c_str());
  return libc().connect(fd, addr, len);
}

// Gives the listening TCP socket `fd` an SDP listener on the same address when the rules say so.
// `how` names the occasion in the log ("listen", "inherited listener").
void mirror_on_sdp(int fd, int backlog, const char* how) {
  Shim& s = shim();
  if (!s.config.valid() || !s.device()) return;
  sockaddr_storage bound{};
  socklen_t bl = sizeof bound;
  if (libc().getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bl) != 0) return;
  const auto* ba = reinterpret_cast<const sockaddr*>(&bound);
  const std::string where = describe(ba);
  if (is_loopback(ba)) {
    s.log->log(level::kCalls, "%s: %s %s: loopback address: TCP", s.program, how, where.c_str());
    return;
  }
  int line = 0;
  const Use use = decide(s.config, Role::Server, s.program, ba, &line);
  if (line > 0)
    s.log->log(level::kPositive, "%s: %s %s: rule at line %d says %s", s.program, how,
               where.c_str(), line, name(use));
  if (use == Use::Tcp) return;
  const int sd = sdp_socket(bound.ss_family, SOCK_STREAM, 0);
  if (sd < 0 || sdp_bind(sd, ba, bl) != 0 || sdp_listen(sd, backlog) != 0) {
    const int e = errno;
    // An inherited listener whose SDP port is taken: most likely the process that forked this
    // one still listens there (and delivers to this very socket).
    s.log->log(e == EADDRINUSE && how[0] == 'i' ? level::kNegative : level::kWarning,
               "%s: %s %s: no SDP listener (%s): TCP only", s.program, how, where.c_str(),
               std::strerror(e));
    if (sd >= 0) sdp_close(sd);
    return;
  }
  add_listener(fd, sd, use == Use::Sdp);
  s.log->log(level::kSummary, "%s: %s %s: SDP%s", s.program, how, where.c_str(),
             use == Use::Both ? " and TCP" : " only");
}

int do_listen(int fd, int backlog) {
  if (libc().listen(fd, backlog) != 0) return -1;
  mirror_on_sdp(fd, backlog, "listen");
  return 0;
}

// Listening sockets this program image got from the one before it (exec keeps descriptors:
// a server re-executing itself, inetd or systemd handing over its sockets): the SDP listener of
// the old image did not survive exec, so each gets one again.
void adopt_inherited_listeners() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return;
  std::vector<int> fds;
  while (const dirent* e = readdir(d)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end != e->d_name && *end == '\0' && fd != dirfd(d)) fds.push_back(static_cast<int>(fd));
  }
  closedir(d);
  for (const int fd : fds) {
    int listening = 0;
    socklen_t l = sizeof listening;
    if (!tcp_socket(fd) || libc().getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l) != 0 ||
        listening == 0)
      continue;
    mirror_on_sdp(fd, SOMAXCONN, "inherited listener");
  }
}

int do_accept(int fd, sockaddr* addr, socklen_t* len, int flags) {
  const auto sdp_only = listener_sdp_only(fd);
  for (;;) {
    sockaddr_storage from{};
    socklen_t fl = sizeof from;
    const int c = libc().accept4(fd, reinterpret_cast<sockaddr*>(&from), &fl, flags);
    if (c < 0 || !sdp_only) {
      if (c >= 0) copy_out(from.ss_family, from, addr, len);
      return c;
    }
    if (const auto ep = claim_accepted(fd, c)) {
      copy_out(family_of(c), ep->peer, addr, len);
      return c;
    }
    if (!*sdp_only) {
      copy_out(from.ss_family, from, addr, len);
      return c;
    }
    // An `sdp` server: a plain TCP client is turned away.
    shim().log->log(level::kSummary, "%s: accept: refusing TCP client %s (rule says sdp only)",
                    shim().program, describe(reinterpret_cast<sockaddr*>(&from)).c_str());
    linger l{1, 0};
    setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(c);
  }
}

}  // namespace
}  // namespace sdp::preload

using namespace sdp::preload;

extern "C" {

int connect(int fd, const sockaddr* addr, socklen_t len) {
  if (bypass() || addr == nullptr || len < sizeof(sockaddr_in) ||
      (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) || !tcp_socket(fd))
    return libc().connect(fd, addr, len);
  Guard g;
  return do_connect(fd, addr, len);
}

int listen(int fd, int backlog) {
  if (bypass() || !tcp_socket(fd)) return libc().listen(fd, backlog);
  Guard g;
  return do_listen(fd, backlog);
}

int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  if (bypass()) return libc().accept4(fd, addr, len, flags);
  Guard g;
  return do_accept(fd, addr, len, flags);
}

int accept(int fd, sockaddr* addr, socklen_t* len) {
  return accept4(fd, addr, len, 0);
}

int getpeername(int fd, sockaddr* addr, socklen_t* len) {
  if (!bypass()) {
    Guard g;
    if (const auto ep = lookup(fd, true)) {
      if (ep->error != 0) {
        errno = ENOTCONN;
        return -1;
      }
      copy_out(family_of(fd), ep->peer, addr, len);
      return 0;
    }
  }
  return libc().getpeername(fd, addr, len);
}

int getsockname(int fd, sockaddr* addr, socklen_t* len) {
  if (!bypass()) {
    Guard g;
    if (const auto ep = lookup(fd, true); ep && ep->error == 0 && ep->local.ss_family != 0) {
      copy_out(family_of(fd), ep->local, addr, len);
      return 0;
    }
  }
  return libc().getsockname(fd, addr, len);
}

int getsockopt(int fd, int level, int name, void* val, socklen_t* len) {
  if (!bypass() && level == SOL_SOCKET && name == SO_ERROR && val != nullptr && len != nullptr &&
      *len >= sizeof(int)) {
    Guard g;
    if (const auto ep = lookup(fd, true); ep && ep->error != 0) {
      std::memcpy(val, &ep->error, sizeof(int));
      *len = sizeof(int);
      return 0;
    }
  }
  return libc().getsockopt(fd, level, name, val, len);
}

}  // extern "C"

// libafib sockets (afib.h part 2). SOCK_STREAM runs on libsdp: an afib socket is its own
// descriptor, a duplicate of the libsdp socket's (so poll/epoll see the same readiness), made
// once the address family rdma_cm needs is known (bind, listen or connect: DESIGN.md).
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "afib/afib.h"
#include "map.hpp"
#include "sdp/sdp.h"

namespace {

struct Sock {
  std::mutex mu;
  bool nonblock = false;
  int sdp = -1;             // the libsdp socket, once made
  int kind = AFIB_SID_SDP;  // service ID kind given back for addresses rdma_cm reports
  std::string detail;       // afib_error_detail
};

std::mutex& table_mu() {
  static auto* m = new std::mutex;  // never destroyed: sockets may be used until exit
  return *m;
}
std::unordered_map<int, std::shared_ptr<Sock>>& table() {
  static auto* t = new std::unordered_map<int, std::shared_ptr<Sock>>;
  return *t;
}

std::shared_ptr<Sock> find(int fd) {
  std::lock_guard lk(table_mu());
  const auto it = table().find(fd);
  return it == table().end() ? nullptr : it->second;
}

int fail(int e) {
  errno = e;
  return -1;
}

// Makes the libsdp socket for `addr` (once) and puts it behind the afib descriptor `fd`.
// Returns the rdma_cm form of addr in *out / *len; -1 with errno (and s.detail) on failure.
int prepare(int fd, Sock& s, const sockaddr_ib* addr, sockaddr_storage* out, socklen_t* len) {
  if (addr == nullptr || addr->sib_family != AF_IB) {
    s.detail = "not an AF_IB address";
    return fail(EAFNOSUPPORT);
  }
  const afib::Ports ports = afib::local_ports();
  if (!ports.any_device) {
    s.detail =
        "no RDMA device: see ibv_devices; for soft-RoCE, `rdma link add rxe0 type rxe "
        "netdev IFACE`";
    return fail(ENODEV);
  }
  std::string why;
  if (!afib::to_rdma_cm(*addr, ports.infiniband, out, len, &why)) {
    s.detail = why;
    return fail(EADDRNOTAVAIL);
  }
  std::uint16_t port = 0;
  s.kind = afib_sid_kind_of(afib_addr_sid(addr), &port);
  if (s.kind == AFIB_SID_OTHER) s.kind = AFIB_SID_SDP;
  if (s.sdp >= 0) return 0;
  const int sd = sdp_socket(out->ss_family, SOCK_STREAM | (s.nonblock ? SOCK_NONBLOCK : 0), 0);
  if (sd < 0) {
    s.detail = std::string("libsdp: ") + std::strerror(errno);
    return -1;
  }
  if (dup3(sd, fd, O_CLOEXEC) < 0) {  // the afib descriptor now shows the SDP socket's readiness
    const int e = errno;
    sdp_close(sd);
    return fail(e);
  }
  s.sdp = sd;
  return 0;
}

// The socket of fd with its lock, or EBADF / ENOTCONN (no libsdp socket yet) failures.
template <class F>
auto with(int fd, bool need_sdp, F f) -> decltype(f(std::declval<Sock&>())) {
  const auto s = find(fd);
  if (!s) return fail(EBADF);
  std::lock_guard lk(s->mu);
  if (need_sdp && s->sdp < 0) return fail(ENOTCONN);
  return f(*s);
}

// Keeps the libsdp failure text of a call that failed.
void note(Sock& s) {
  const int e = errno;
  const char* d = s.sdp >= 0 ? sdp_error_detail(s.sdp) : "";
  s.detail = d != nullptr && *d != '\0' ? d : std::strerror(e);
  errno = e;
}

}  // namespace

extern "C" {

int afib_socket(int domain, int type, int protocol) {
  if (domain != AF_IB) return fail(EAFNOSUPPORT);
  const int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (base == SOCK_SEQPACKET) return fail(EPROTONOSUPPORT);  // native RC messages: not built yet
  if (base != SOCK_STREAM) return fail(EPROTOTYPE);
  if (protocol != 0) return fail(EPROTONOSUPPORT);
  // Until bind/listen/connect makes the libsdp socket, the descriptor is an empty epoll set.
  const int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) return -1;
  auto s = std::make_shared<Sock>();
  s->nonblock = (type & SOCK_NONBLOCK) != 0;
  std::lock_guard lk(table_mu());
  table()[fd] = std::move(s);
  return fd;
}

int afib_bind(int fd, const struct sockaddr_ib* addr) {
  return with(fd, false, [&](Sock& s) {
    sockaddr_storage a{};
    socklen_t l = 0;
    if (prepare(fd, s, addr, &a, &l) != 0) return -1;
    const int r = sdp_bind(s.sdp, reinterpret_cast<sockaddr*>(&a), l);
    if (r != 0) note(s);
    return r;
  });
}

int afib_listen(int fd, int backlog) {
  return with(fd, false, [&](Sock& s) {
    if (s.sdp < 0) {  // listen without bind: every address, sdp: port chosen by rdma_cm
      sockaddr_ib any{};
      afib_addr_init(&any, nullptr, AFIB_PKEY_DEFAULT, afib_sid(AFIB_SID_SDP, 0));
      sockaddr_storage a{};
      socklen_t l = 0;
      if (prepare(fd, s, &any, &a, &l) != 0) return -1;
    }
    const int r = sdp_listen(s.sdp, backlog);
    if (r != 0) note(s);
    return r;
  });
}

int afib_accept(int fd, struct sockaddr_ib* peer) {
  std::shared_ptr<Sock> s = find(fd);
  if (!s) return fail(EBADF);
  int sdp = -1, kind = AFIB_SID_SDP;
  {
    std::lock_guard lk(s->mu);
    if (s->sdp < 0) return fail(EINVAL);
    sdp = s->sdp;
    kind = s->kind;
  }
  // Not under the lock: a blocking accept waits.
  sockaddr_storage from{};
  socklen_t fl = sizeof from;
  const int c = sdp_accept(sdp, reinterpret_cast<sockaddr*>(&from), &fl);
  if (c < 0) {
    std::lock_guard lk(s->mu);
    note(*s);
    return -1;
  }
  if (peer != nullptr) afib::from_rdma_cm(reinterpret_cast<sockaddr*>(&from), kind, peer);
  auto n = std::make_shared<Sock>();
  n->sdp = c;  // an accepted socket's descriptor is the libsdp socket's own
  n->kind = kind;
  std::lock_guard lk(table_mu());
  table()[c] = std::move(n);
  return c;
}

int afib_connect(int fd, const struct sockaddr_ib* addr) {
  std::shared_ptr<Sock> s = find(fd);
  if (!s) return fail(EBADF);
  sockaddr_storage a{};
  socklen_t l = 0;
  int sdp = -1;
  {
    std::lock_guard lk(s->mu);
    if (prepare(fd, *s, addr, &a, &l) != 0) return -1;
    sdp = s->sdp;
  }
  const int r = sdp_connect(sdp, reinterpret_cast<sockaddr*>(&a), l);  // may block: no lock
  if (r != 0) {
    std::lock_guard lk(s->mu);
    note(*s);
  }
  return r;
}

ssize_t afib_send(int fd, const void* buf, size_t len, int flags) {
  const auto s = find(fd);
  if (!s) return fail(EBADF);
  const int sdp = s->sdp;
  if (sdp < 0) return fail(ENOTCONN);
  return sdp_send(sdp, buf, len, flags);
}

ssize_t afib_recv(int fd, void* buf, size_t len, int flags) {
  const auto s = find(fd);
  if (!s) return fail(EBADF);
  const int sdp = s->sdp;
  if (sdp < 0) return fail(ENOTCONN);
  return sdp_recv(sdp, buf, len, flags);
}

int afib_shutdown(int fd, int how) {
  return with(fd, true, [&](Sock& s) { return sdp_shutdown(s.sdp, how); });
}

int afib_close(int fd) {
  std::shared_ptr<Sock> s;
  {
    std::lock_guard lk(table_mu());
    const auto it = table().find(fd);
    if (it == table().end()) return fail(EBADF);
    s = it->second;
    table().erase(it);
  }
  std::lock_guard lk(s->mu);
  int r = 0;
  if (s->sdp >= 0) r = sdp_close(s->sdp);
  if (s->sdp != fd) close(fd);  // the duplicate (or the placeholder) of a made socket
  return r;
}

int afib_getsockname(int fd, struct sockaddr_ib* addr) {
  return with(fd, true, [&](Sock& s) {
    sockaddr_storage a{};
    socklen_t l = sizeof a;
    if (addr == nullptr) return fail(EFAULT);
    if (sdp_getsockname(s.sdp, reinterpret_cast<sockaddr*>(&a), &l) != 0) return -1;
    afib::from_rdma_cm(reinterpret_cast<sockaddr*>(&a), s.kind, addr);
    return 0;
  });
}

int afib_getpeername(int fd, struct sockaddr_ib* addr) {
  return with(fd, true, [&](Sock& s) {
    sockaddr_storage a{};
    socklen_t l = sizeof a;
    if (addr == nullptr) return fail(EFAULT);
    if (sdp_getpeername(s.sdp, reinterpret_cast<sockaddr*>(&a), &l) != 0) return -1;
    afib::from_rdma_cm(reinterpret_cast<sockaddr*>(&a), s.kind, addr);
    return 0;
  });
}

int afib_poll_events(int fd) {
  const auto s = find(fd);
  if (!s) return fail(EBADF);
  const int sdp = s->sdp;
  if (sdp < 0) return POLLOUT | POLLHUP;  // never connected, as TCP reports
  return sdp_poll_events(sdp);
}

const char* afib_error_detail(int fd) {
  const auto s = find(fd);
  if (!s) return "not an afib socket";
  return s->detail.c_str();
}

}  // extern "C"

// libafib sockets (afib.h part 2; DESIGN.md). SOCK_STREAM runs on libsdp: the afib descriptor
// becomes a duplicate of the libsdp socket's (so poll/epoll see the same readiness) once the
// address family rdma_cm needs is known (bind, listen or connect). SOCK_SEQPACKET runs on
// native RC (rc.hpp): the afib descriptor is the epoll set of its channels.
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
#include "rc.hpp"
#include "sdp/sdp.h"

namespace {

struct Sock {
  std::mutex mu;
  bool nonblock = false;
  std::atomic<int> sdp{-1};            // SOCK_STREAM: the libsdp socket, once made
  std::unique_ptr<afib::RcSocket> rc;  // SOCK_SEQPACKET
  int kind = AFIB_SID_SDP;             // service ID kind given back for reported addresses
  std::string detail;                  // afib_error_detail
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

void add(int fd, std::shared_ptr<Sock> s) {
  std::lock_guard lk(table_mu());
  table()[fd] = std::move(s);
}

int fail(int e) {
  errno = e;
  return -1;
}

// The rdma_cm form of `addr` for this socket (*out, *len, port space *ps); for SOCK_STREAM also
// makes the libsdp socket (once) and puts it behind the afib descriptor `fd`. -1 with errno
// (and s.detail) on failure.
int prepare(int fd, Sock& s, const sockaddr_ib* addr, sockaddr_storage* out, socklen_t* len,
            int* ps) {
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
  if (!afib::to_rdma_cm(*addr, ports.infiniband, s.rc == nullptr, out, len, ps, &why)) {
    s.detail = why;
    return fail(EADDRNOTAVAIL);
  }
  std::uint16_t port = 0;
  s.kind = afib_sid_kind_of(afib_addr_sid(addr), &port);
  if (s.kind == AFIB_SID_OTHER) s.kind = s.rc ? AFIB_SID_IP_CM : AFIB_SID_SDP;
  if (s.rc != nullptr || s.sdp >= 0) return 0;
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

// Keeps the failure text of a call that failed (libsdp's, or the RC socket's).
int note(Sock& s) {
  const int e = errno;
  const char* d = "";
  if (s.rc != nullptr)
    d = s.rc->detail().c_str();
  else if (s.sdp >= 0)
    d = sdp_error_detail(s.sdp);
  s.detail = d != nullptr && *d != '\0' ? d : std::strerror(e);
  errno = e;
  return -1;
}

void report(const sockaddr* sa, int kind, sockaddr_ib* out) {
  if (sa != nullptr && out != nullptr) afib::from_rdma_cm(sa, kind, out);
}

}  // namespace

extern "C" {

int afib_socket(int domain, int type, int protocol) {
  if (domain != AF_IB) return fail(EAFNOSUPPORT);
  const int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (base != SOCK_STREAM && base != SOCK_SEQPACKET) return fail(EPROTOTYPE);
  if (protocol != 0) return fail(EPROTONOSUPPORT);
  // SOCK_STREAM: an empty epoll set until bind/listen/connect makes the libsdp socket.
  const int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) return -1;
  auto s = std::make_shared<Sock>();
  s->nonblock = (type & SOCK_NONBLOCK) != 0;
  if (base == SOCK_SEQPACKET) s->rc = std::make_unique<afib::RcSocket>(fd, s->nonblock);
  add(fd, std::move(s));
  return fd;
}

int afib_bind(int fd, const struct sockaddr_ib* addr) {
  const auto s = find(fd);
  if (!s) return fail(EBADF);
  std::lock_guard lk(s->mu);
  sockaddr_storage a{};
  socklen_t l = 0;
  int ps = 0;
  if (prepare(fd, *s, addr, &a, &l, &ps) != 0) return -1;
  const auto* sa = reinterpret_cast<const sockaddr*>(&a);
  const int r = s->rc ? s->rc->bind(sa, static_cast<rdma_port_space>(ps)) : sdp_bind(s->sdp, sa, l);
  return r != 0 ? note(*s) : 0;
}

int afib_listen(int fd, int backlog) {
  const auto s = find(fd);
  if (!s) return fail(EBADF);
  std::lock_guard lk(s->mu);
  sockaddr_ib any{};  // listening without bind: every address, a port chosen by rdma_cm
  afib_addr_init(&any, nullptr, AFIB_PKEY_DEFAULT,
                 afib_sid(s->rc ? AFIB_SID_IP_CM : AFIB_SID_SDP, 0));
  sockaddr_storage a{};
  socklen_t l = 0;
  int ps = 0;
  if (s->rc) {
    if (prepare(fd, *s, &any, &a, &l, &ps) != 0) return -1;
    return s->rc->listen(backlog, reinterpret_cast<sockaddr*>(&a),
                         static_cast<rdma_port_space>(ps)) != 0
               ? note(*s)
               : 0;
  }
  if (s->sdp < 0 && prepare(fd, *s, &any, &a, &l, &ps) != 0) return -1;
  return sdp_listen(s->sdp, backlog) != 0 ? note(*s) : 0;
}

int afib_accept(int fd, struct sockaddr_ib* peer) {
  const auto s = find(fd);
  if (!s) return fail(EBADF);
  if (s->rc) {
    std::lock_guard lk(s->mu);
    int nfd = -1;
    auto c = s->rc->accept(&nfd);
    if (!c) return note(*s);
    auto n = std::make_shared<Sock>();
    n->kind = s->kind;
    report(c->peer(), n->kind, peer);
    n->rc = std::move(c);
    add(nfd, std::move(n));
    return nfd;
  }
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
    return note(*s);
  }
  report(reinterpret_cast<sockaddr*>(&from), kind, peer);
  auto n = std::make_shared<Sock>();
  n->sdp = c;  // an accepted socket's descriptor is the libsdp socket's own
  n->kind = kind;
  add(c, std::move(n));
  return c;
}

int afib_connect(int fd, const struct sockaddr_ib* addr) {
  const auto s = find(fd);
  if (!s) return fail(EBADF);
  sockaddr_storage a{};
  socklen_t l = 0;
  int ps = 0;
  if (s->rc) {
    std::lock_guard lk(s->mu);
    if (prepare(fd, *s, addr, &a, &l, &ps) != 0) return -1;
    return s->rc->connect(reinterpret_cast<sockaddr*>(&a), static_cast<rdma_port_space>(ps)) != 0
               ? note(*s)
               : 0;
  }
  int sdp = -1;
  {
    std::lock_guard lk(s->mu);
    if (prepare(fd, *s, addr, &a, &l, &ps) != 0) return -1;
    sdp = s->sdp;
  }
  const int r = sdp_connect(sdp, reinterpret_cast<sockaddr*>(&a), l);  // may block: no lock
  if (r != 0) {
    std::lock_guard lk(s->mu);
    return note(*s);
  }
  return 0;
}

ssize_t afib_send(int fd, const void* buf, size_t len, int flags) {
  const auto s = find(fd);
  if (!s) return fail(EBADF);
  if (s->rc) {
    std::lock_guard lk(s->mu);
    const ssize_t r = s->rc->send(buf, len, flags);
    if (r < 0 && errno != EAGAIN) note(*s);
    return r;
  }
  const int sdp = s->sdp;
  if (sdp < 0) return fail(ENOTCONN);
  return sdp_send(sdp, buf, len, flags);
}

ssize_t afib_recv(int fd, void* buf, size_t len, int flags) {
  const auto s = find(fd);
  if (!s) return fail(EBADF);
  if (s->rc) {
    std::lock_guard lk(s->mu);
    const ssize_t r = s->rc->recv(buf, len, flags);
    if (r < 0 && errno != EAGAIN) note(*s);
    return r;
  }
  const int sdp = s->sdp;
  if (sdp < 0) return fail(ENOTCONN);
  return sdp_recv(sdp, buf, len, flags);
}

int afib_shutdown(int fd, int how) {
  const auto s = find(fd);
  if (!s) return fail(EBADF);
  std::lock_guard lk(s->mu);
  if (s->rc) return s->rc->shutdown(how) != 0 ? note(*s) : 0;
  if (s->sdp < 0) return fail(ENOTCONN);
  return sdp_shutdown(s->sdp, how);
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
  if (s->rc) {
    s->rc.reset();  // disconnects, destroys the QP, CQ, region and id
  } else if (s->sdp >= 0) {
    r = sdp_close(s->sdp);
  }
  if (s->sdp != fd) close(fd);  // the RC epoll set, or the duplicate / placeholder of a stream
  return r;
}

int afib_getsockname(int fd, struct sockaddr_ib* addr) {
  const auto s = find(fd);
  if (!s) return fail(EBADF);
  if (addr == nullptr) return fail(EFAULT);
  std::lock_guard lk(s->mu);
  if (s->rc) {
    if (s->rc->local() == nullptr) return fail(EINVAL);
    report(s->rc->local(), s->kind, addr);
    return 0;
  }
  if (s->sdp < 0) return fail(ENOTCONN);
  sockaddr_storage a{};
  socklen_t l = sizeof a;
  if (sdp_getsockname(s->sdp, reinterpret_cast<sockaddr*>(&a), &l) != 0) return -1;
  report(reinterpret_cast<sockaddr*>(&a), s->kind, addr);
  return 0;
}

int afib_getpeername(int fd, struct sockaddr_ib* addr) {
  const auto s = find(fd);
  if (!s) return fail(EBADF);
  if (addr == nullptr) return fail(EFAULT);
  std::lock_guard lk(s->mu);
  if (s->rc) {
    if (!s->rc->connected()) return fail(ENOTCONN);
    report(s->rc->peer(), s->kind, addr);
    return 0;
  }
  if (s->sdp < 0) return fail(ENOTCONN);
  sockaddr_storage a{};
  socklen_t l = sizeof a;
  if (sdp_getpeername(s->sdp, reinterpret_cast<sockaddr*>(&a), &l) != 0) return -1;
  report(reinterpret_cast<sockaddr*>(&a), s->kind, addr);
  return 0;
}

int afib_poll_events(int fd) {
  const auto s = find(fd);
  if (!s) return fail(EBADF);
  if (s->rc) {
    std::lock_guard lk(s->mu);
    return s->rc->poll_events();
  }
  const int sdp = s->sdp;
  if (sdp < 0) return POLLOUT | POLLHUP;  // never connected, as TCP reports
  return sdp_poll_events(sdp);
}

}  // extern "C"

namespace {

// A native-feature call on a SOCK_SEQPACKET socket, under its lock; EOPNOTSUPP on a stream.
template <class F>
auto native(int fd, F f) -> decltype(f(std::declval<afib::RcSocket&>())) {
  const auto s = find(fd);
  if (!s) return fail(EBADF);
  std::lock_guard lk(s->mu);
  if (!s->rc) {
    s->detail = "RDMA operations and regions are for SOCK_SEQPACKET sockets";
    return fail(EOPNOTSUPP);
  }
  const auto r = f(*s->rc);
  if (r < 0 && errno != EAGAIN) note(*s);
  return r;
}

}  // namespace

extern "C" {

int afib_reg(int fd, void* addr, size_t len, int access) {
  return native(fd, [&](afib::RcSocket& rc) { return rc.reg(addr, len, access); });
}

int afib_advertise(int fd, int region) {
  return native(fd, [&](afib::RcSocket& rc) { return rc.advertise(region); });
}

int afib_peer_region(int fd, struct afib_remote* out) {
  if (out == nullptr) return fail(EFAULT);
  return native(fd, [&](afib::RcSocket& rc) { return rc.peer_region(out); });
}

int afib_rdma_write(int fd, int region, size_t offset, const struct afib_remote* to,
                    uint64_t remote_offset, size_t len, uint64_t wr_id, int with_imm,
                    uint32_t imm) {
  if (to == nullptr) return fail(EFAULT);
  return native(fd, [&](afib::RcSocket& rc) {
    return rc.rdma(true, region, offset, *to, remote_offset, len, wr_id, with_imm != 0, imm);
  });
}

int afib_rdma_read(int fd, int region, size_t offset, const struct afib_remote* from,
                   uint64_t remote_offset, size_t len, uint64_t wr_id) {
  if (from == nullptr) return fail(EFAULT);
  return native(fd, [&](afib::RcSocket& rc) {
    return rc.rdma(false, region, offset, *from, remote_offset, len, wr_id, false, 0);
  });
}

ssize_t afib_send_imm(int fd, const void* buf, size_t len, uint32_t imm) {
  return native(fd, [&](afib::RcSocket& rc) { return rc.send(buf, len, 0, &imm); });
}

ssize_t afib_recv_imm(int fd, void* buf, size_t len, int flags, uint32_t* imm, int* has_imm) {
  return native(fd, [&](afib::RcSocket& rc) {
    bool h = false;
    std::uint32_t v = 0;
    const ssize_t r = rc.recv(buf, len, flags, &v, &h);
    if (r >= 0) {
      if (imm != nullptr) *imm = v;
      if (has_imm != nullptr) *has_imm = h ? 1 : 0;
    }
    return r;
  });
}

int afib_completions(int fd, struct afib_completion* out, int n) {
  if (out == nullptr) return fail(EFAULT);
  return native(fd, [&](afib::RcSocket& rc) { return rc.completions(out, n); });
}

int afib_revoke(int fd, int region) {
  return native(fd, [&](afib::RcSocket& rc) { return rc.revoke(region); });
}

const char* afib_error_detail(int fd) {
  const auto s = find(fd);
  if (!s) return "not an afib socket";
  return s->detail.c_str();
}

}  // extern "C"

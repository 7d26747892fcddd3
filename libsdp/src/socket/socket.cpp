// libsdp socket API (sdp/sdp.h) on top of the verbs binding. Blocking, timeouts, readiness and
// descriptor bookkeeping live here; every protocol decision is the engine's.
#include "sdp/sdp.h"

#include <fcntl.h>
#include <infiniband/ib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "../verbs/connection.hpp"
#include "sdp/stats_proto.hpp"

namespace {

using sdp::verbs::CmMode;
using sdp::verbs::Connection;
using sdp::verbs::Listener;
using Clock = std::chrono::steady_clock;

constexpr int kDefaultLingerMs = 10'000;

int env_int(const char* name, int dflt) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return dflt;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  return end != nullptr && *end == '\0' && x >= 0 && x <= 1'000'000 ? static_cast<int>(x) : dflt;
}

struct Sock {
  std::mutex mu;
  std::condition_variable cv;
  bool poller = false;  // one thread sleeps on the descriptor; the others on cv
  int fd = -1;
  int domain = AF_INET;
  bool nonblock = false;
  sdp::verbs::Options opt;
  int poll_spins = 32;
  int linger_ms = kDefaultLingerMs;
  bool linger_abort = false;
  int rcv_timeout_ms = -1, snd_timeout_ms = -1;
  sockaddr_storage bound{};
  bool is_bound = false;
  std::unique_ptr<Listener> lis;
  std::unique_ptr<Connection> conn;
  bool want_write = false;       // a send returned EAGAIN: report writability
  bool connect_pending = false;  // nonblocking connect whose result is not yet reported
  int so_error = 0;              // pending SO_ERROR
  bool shut_rd = false, shut_wr = false;
  std::string detail;

  CmMode mode() const { return domain == AF_IB ? CmMode::Native : CmMode::IpCm; }

  void progress() {
    if (lis) lis->progress();
    if (conn) {
      const auto before = conn->phase();
      conn->progress();
      if (before != Connection::Phase::Done && conn->phase() == Connection::Phase::Done &&
          conn->error() != 0) {
        so_error = conn->error();
        detail = conn->error_text();
      }
    }
  }

  int events() {
    int ev = 0;
    if (lis) return lis->has_ready() ? POLLIN : 0;
    if (!conn) return POLLOUT | POLLHUP;  // never connected, as TCP reports
    const auto ph = conn->phase();
    if (ph == Connection::Phase::Resolving || ph == Connection::Phase::Connecting) return 0;
    const sdp::Engine& e = conn->engine();
    const bool failed = conn->error() != 0;
    if (ph == Connection::Phase::Done && e.state() != sdp::State::Closed &&
        e.state() != sdp::State::Established && e.state() != sdp::State::Closing) {
      // failed setup or reset
      return POLLIN | POLLOUT | POLLERR | POLLHUP;
    }
    if (e.readable() || failed) ev |= POLLIN;
    if (e.oob_pending()) ev |= POLLPRI;
    if (e.peer_closed_send()) ev |= POLLIN | POLLRDHUP;
    if (e.writable() || shut_wr) ev |= POLLOUT;
    if (failed) ev |= POLLERR;
    if (e.state() == sdp::State::Closed || (e.peer_closed_send() && shut_wr)) ev |= POLLHUP;
    return ev;
  }

  void update_attention() {
    const int ev = events();
    bool on = (ev & (POLLIN | POLLPRI | POLLERR | POLLHUP)) != 0;
    if (want_write && (ev & POLLOUT) != 0) on = true;
    if (connect_pending && conn && conn->phase() != Connection::Phase::Resolving &&
        conn->phase() != Connection::Phase::Connecting)
      on = true;
    if (lis) lis->set_attention(on);
    if (conn) conn->set_attention(on);
  }

  // Waits (lock held on entry and exit) until pred() holds, the deadline passes (ETIMEDOUT is
  // not ours to decide: returns EAGAIN), or forever when timeout_ms < 0.
  template <class Pred>
  int wait(std::unique_lock<std::mutex>& lk, int timeout_ms, Pred pred) {
    const auto deadline = timeout_ms < 0 ? Clock::time_point::max()
                                         : Clock::now() + std::chrono::milliseconds(timeout_ms);
    int spins = poll_spins;
    for (;;) {
      progress();
      if (pred()) return 0;
      // Bounded busy polling: the completion queue only (no system call), then sleep.
      bool got = false;
      while (!got && spins > 0 && conn) {
        --spins;
        got = conn->poll_cq() > 0;
      }
      if (got) continue;
      if (Clock::now() >= deadline) return EAGAIN;
      if (!poller) {
        poller = true;
        if (lis) lis->set_attention(false);
        if (conn) conn->set_attention(false);
        int ms = -1;
        if (deadline != Clock::time_point::max())
          ms = static_cast<int>(std::max<std::int64_t>(
              1, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now())
                     .count()));
        pollfd p{fd, POLLIN, 0};
        lk.unlock();
        ::poll(&p, 1, ms);
        lk.lock();
        poller = false;
        progress();
        cv.notify_all();
        spins = poll_spins;
      } else if (deadline == Clock::time_point::max()) {
        cv.wait(lk);
      } else {
        cv.wait_until(lk, deadline);
      }
    }
  }
};

std::mutex g_mu;
std::unordered_map<int, std::shared_ptr<Sock>> g_socks;

std::shared_ptr<Sock> find(int fd) {
  std::lock_guard lk(g_mu);
  auto it = g_socks.find(fd);
  return it == g_socks.end() ? nullptr : it->second;
}

int fail(int e) {
  errno = e;
  return -1;
}

socklen_t addr_len_for(int family) {
  return static_cast<socklen_t>(sdp::verbs::sockaddr_size(static_cast<sa_family_t>(family)));
}

void copy_addr(const sockaddr_storage& ss, sockaddr* out, socklen_t* len) {
  if (out == nullptr || len == nullptr) return;
  const socklen_t n = addr_len_for(ss.ss_family);
  std::memcpy(out, &ss, std::min(n, *len));
  *len = n;
}

// Finishes a call: recomputes readiness and wakes other threads waiting on the socket.
struct CallGuard {
  Sock& s;
  explicit CallGuard(Sock& sock) : s(sock) {}
  ~CallGuard() {
    s.update_attention();
    s.cv.notify_all();
  }
};

int register_sock(std::shared_ptr<Sock> s) {
  std::lock_guard lk(g_mu);
  const int fd = s->fd;
  g_socks[fd] = std::move(s);
  return fd;
}

// Words for a failure to reach the RDMA stack at all.
std::string fabric_error(const char* call, int e) {
  std::string d = std::string(call) + ": " + std::strerror(e);
  if (e == ENODEV || e == ENOENT)
    d += " (no RDMA device: see ibv_devices; for soft-RoCE, `rdma link add rxe0 type rxe netdev "
         "IFACE`)";
  return d;
}

int default_timeout(const Sock& s, int flags, bool for_send) {
  if (s.nonblock || (flags & MSG_DONTWAIT) != 0) return 0;
  return for_send ? s.snd_timeout_ms : s.rcv_timeout_ms;
}

}  // namespace

extern "C" {

int sdp_socket(int domain, int type, int protocol) {
  if (domain != AF_INET && domain != AF_INET6 && domain != AF_IB) return fail(EAFNOSUPPORT);
  const int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (base != SOCK_STREAM) return fail(EPROTOTYPE);
  if (protocol != 0 && protocol != IPPROTO_TCP) return fail(EPROTONOSUPPORT);
  auto s = std::make_shared<Sock>();
  s->domain = domain;
  s->nonblock = (type & SOCK_NONBLOCK) != 0;
  s->poll_spins = env_int("SDP_POLL_SPINS", 32);
  if (const int z = env_int("SDP_ZCOPY_THRESHOLD", -1); z >= 0)
    s->opt.engine.zcopy_threshold = static_cast<std::uint32_t>(z);
  s->fd = epoll_create1(EPOLL_CLOEXEC);  // the socket's descriptor; always close-on-exec
  if (s->fd < 0) return -1;
  return register_sock(std::move(s));
}

int sdp_is_socket(int fd) {
  return find(fd) != nullptr ? 1 : 0;
}

int sdp_bind(int fd, const sockaddr* addr, socklen_t len) {
  auto s = find(fd);
  if (!s) return fail(EBADF);
  std::lock_guard lk(s->mu);
  if (addr == nullptr || len < addr_len_for(addr->sa_family) || addr->sa_family != s->domain)
    return fail(EINVAL);
  if (s->is_bound || s->lis || s->conn) return fail(EINVAL);
  std::memcpy(&s->bound, addr, addr_len_for(addr->sa_family));
  // Bind for real now (as TCP does) so that EADDRINUSE comes from bind().
  auto l = std::make_unique<Listener>(s->opt, s->mode());
  if (int e = l->init(s->fd); e != 0) {
    s->detail = fabric_error("rdma_create_event_channel", e);
    return fail(e);
  }
  if (int e = l->bind(addr); e != 0) {
    s->detail = fabric_error("rdma_bind_addr", e);
    return fail(e == ENODEV ? EADDRNOTAVAIL : e);
  }
  s->bound = l->local_addr();
  s->is_bound = true;
  s->lis = std::move(l);
  return 0;
}

int sdp_listen(int fd, int backlog) {
  auto s = find(fd);
  if (!s) return fail(EBADF);
  std::lock_guard lk(s->mu);
  CallGuard g(*s);
  if (s->conn) return fail(EINVAL);
  if (!s->lis) {
    // Listening without bind: any address, an ephemeral port chosen by rdma_cm.
    sockaddr_storage any{};
    any.ss_family = static_cast<sa_family_t>(s->domain);
    auto l = std::make_unique<Listener>(s->opt, s->mode());
    if (int e = l->init(s->fd); e != 0) {
      s->detail = fabric_error("rdma_create_event_channel", e);
      return fail(e);
    }
    if (int e = l->bind(reinterpret_cast<sockaddr*>(&any)); e != 0) {
      s->detail = fabric_error("rdma_bind_addr", e);
      return fail(e);
    }
    s->lis = std::move(l);
  }
  s->lis->options() = s->opt;
  if (int e = s->lis->listen(backlog <= 0 ? 128 : backlog); e != 0) {
    s->detail = fabric_error("rdma_listen", e);
    return fail(e);
  }
  s->bound = s->lis->local_addr();
  return 0;
}

int sdp_accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  auto s = find(fd);
  if (!s) return fail(EBADF);
  std::unique_lock lk(s->mu);
  CallGuard g(*s);
  if (!s->lis) return fail(EINVAL);
  const int timeout = s->nonblock ? 0 : s->rcv_timeout_ms;
  if (s->wait(lk, timeout, [&] { return s->lis->has_ready(); }) != 0) return fail(EAGAIN);
  auto c = s->lis->pop();
  if (!c) return fail(ECONNABORTED);
  auto n = std::make_shared<Sock>();
  n->domain = s->domain;
  n->opt = s->opt;
  n->poll_spins = s->poll_spins;
  n->linger_ms = s->linger_ms;
  n->linger_abort = s->linger_abort;
  n->nonblock = (flags & SOCK_NONBLOCK) != 0;
  n->fd = c->release_fd();
  copy_addr(c->peer_addr(), addr, len);
  n->conn = std::move(c);
  n->conn->progress();  // completions that arrived while it waited in the queue
  n->update_attention();
  return register_sock(std::move(n));
}

int sdp_accept(int fd, sockaddr* addr, socklen_t* len) {
  return sdp_accept4(fd, addr, len, 0);
}

int sdp_connect(int fd, const sockaddr* addr, socklen_t len) {
  auto s = find(fd);
  if (!s) return fail(EBADF);
  std::unique_lock lk(s->mu);
  CallGuard g(*s);
  if (addr == nullptr || len < addr_len_for(addr->sa_family) || addr->sa_family != s->domain)
    return fail(addr != nullptr && addr->sa_family != s->domain ? EAFNOSUPPORT : EINVAL);
  if (s->lis && s->lis->has_ready()) return fail(EINVAL);
  if (s->conn) {
    const auto ph = s->conn->phase();
    if (ph == Connection::Phase::Resolving || ph == Connection::Phase::Connecting)
      return fail(s->nonblock ? EALREADY : EINPROGRESS);
    if (ph == Connection::Phase::Established || s->conn->error() == 0) return fail(EISCONN);
    s->conn.reset();  // a failed attempt: start again, as Linux allows for TCP
  }
  sockaddr_storage src{};
  const sockaddr* srcp = nullptr;
  if (s->is_bound) {
    src = s->bound;
    srcp = reinterpret_cast<const sockaddr*>(&src);
    s->lis.reset();  // the bound id was only there to reserve the address
  }
  auto c = std::make_unique<Connection>(sdp::Role::Active, s->opt, s->mode());
  if (int e = c->init(s->fd); e != 0) {
    s->detail = fabric_error("rdma_create_event_channel", e);
    return fail(e);
  }
  if (int e = c->start_connect(srcp, addr); e != 0) {
    s->detail = std::string("rdma_resolve_addr: ") + std::strerror(e);
    return fail(e);
  }
  s->conn = std::move(c);
  s->so_error = 0;
  s->detail.clear();
  if (s->nonblock) {
    s->connect_pending = true;
    s->progress();
    return fail(EINPROGRESS);
  }
  s->wait(lk, s->snd_timeout_ms, [&] {
    const auto ph = s->conn->phase();
    return ph == Connection::Phase::Established || ph == Connection::Phase::Done;
  });
  const auto ph = s->conn->phase();
  if (ph == Connection::Phase::Established) return 0;
  if (ph == Connection::Phase::Done) {
    s->detail = s->conn->error_text();
    s->so_error = 0;
    return fail(s->conn->error() != 0 ? s->conn->error() : ECONNREFUSED);
  }
  s->conn.reset();
  return fail(ETIMEDOUT);
}

ssize_t sdp_send(int fd, const void* buf, size_t len, int flags) {
  auto s = find(fd);
  if (!s) return fail(EBADF);
  std::unique_lock lk(s->mu);
  CallGuard g(*s);
  if (!s->conn || s->conn->phase() == Connection::Phase::Resolving ||
      s->conn->phase() == Connection::Phase::Connecting)
    return fail(s->conn ? EAGAIN : ENOTCONN);
  if (s->shut_wr) return fail(EPIPE);
  Connection& c = *s->conn;
  const int timeout = default_timeout(*s, flags, true);
  const bool blocking = timeout != 0;
  const bool oob = (flags & MSG_OOB) != 0;
  const auto* p = static_cast<const std::uint8_t*>(buf);
  std::size_t done = 0;
  while (done < len) {
    s->progress();
    if (c.error() != 0) {
      if (done > 0) break;
      return fail(c.error() == ECONNRESET || c.error() == ETIMEDOUT ? c.error() : EPIPE);
    }
    std::size_t n = len - done;
    const std::uint32_t zt = s->opt.engine.zcopy_threshold;
    // A nonblocking send cannot leave the caller's buffer pinned: keep it below ZCopy.
    if (!blocking && zt != 0 && n >= zt) n = zt - 1;
    const std::uint64_t zdone = c.zcopy_done();
    sdp::IoResult r = c.engine().send({p + done, n}, oob);
    c.run_actions();
    if (r.error == EAGAIN) {
      if (!blocking) {
        s->want_write = true;
        if (done > 0) break;
        return fail(EAGAIN);
      }
      if (s->wait(lk, timeout, [&] { return c.engine().writable() || c.error() != 0; }) != 0) {
        if (done > 0) break;
        return fail(EAGAIN);
      }
      continue;
    }
    if (r.error != 0) {
      if (done > 0) break;
      return fail(r.error);
    }
    if (r.zcopy) {
      // The peer reads straight from the caller's buffer: return only when it is done.
      s->wait(lk, -1, [&] { return c.zcopy_done() > zdone || c.engine_finished(); });
      if (c.zcopy_done() == zdone) return fail(c.error() != 0 ? c.error() : EPIPE);
    }
    done += r.bytes;
    s->want_write = false;
  }
  return static_cast<ssize_t>(done);
}

ssize_t sdp_recv(int fd, void* buf, size_t len, int flags) {
  auto s = find(fd);
  if (!s) return fail(EBADF);
  std::unique_lock lk(s->mu);
  CallGuard g(*s);
  if (!s->conn) return fail(ENOTCONN);
  Connection& c = *s->conn;
  if (c.phase() == Connection::Phase::Resolving || c.phase() == Connection::Phase::Connecting)
    return fail(EAGAIN);
  if ((flags & MSG_OOB) != 0) {
    s->progress();
    std::uint8_t b = 0;
    sdp::IoResult r = c.engine().recv_oob(b);
    if (r.error != 0) return fail(r.error);
    if (len > 0) static_cast<std::uint8_t*>(buf)[0] = b;
    return len > 0 ? 1 : 0;
  }
  const int timeout = default_timeout(*s, flags, false);
  const bool peek = (flags & MSG_PEEK) != 0;
  const bool waitall = (flags & MSG_WAITALL) != 0 && !peek;
  auto* p = static_cast<std::uint8_t*>(buf);
  std::size_t done = 0;
  for (;;) {
    s->progress();
    sdp::IoResult r = c.engine().recv({p + done, len - done}, peek);
    c.run_actions();  // a read frees receive buffers: credits may go back to the peer
    if (r.error == 0 && !r.eof) {
      done += r.bytes;
      if (!waitall || done == len) break;
      continue;
    }
    if (r.eof) break;
    if (r.error != EAGAIN) {
      if (done > 0) break;
      s->so_error = 0;
      return fail(c.error() != 0 ? c.error() : r.error);
    }
    if (done > 0 && !waitall) break;
    if (timeout == 0) {
      if (done > 0) break;
      return fail(EAGAIN);
    }
    if (s->wait(lk, timeout, [&] { return c.engine().readable() || c.engine_finished(); }) != 0) {
      if (done > 0) break;
      return fail(EAGAIN);
    }
    if (!c.engine().readable() && c.engine_finished()) {
      if (done > 0) break;
      if (c.error() != 0) return fail(c.error());
      break;  // closed: end of stream
    }
  }
  return static_cast<ssize_t>(done);
}

int sdp_shutdown(int fd, int how) {
  auto s = find(fd);
  if (!s) return fail(EBADF);
  std::lock_guard lk(s->mu);
  CallGuard g(*s);
  if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR) return fail(EINVAL);
  if (!s->conn || s->conn->phase() != Connection::Phase::Established) {
    if (s->conn && s->conn->phase() == Connection::Phase::Done) return 0;
    return fail(ENOTCONN);
  }
  if ((how == SHUT_WR || how == SHUT_RDWR) && !s->shut_wr) {
    s->shut_wr = true;
    s->conn->engine().shutdown_send();
  }
  if ((how == SHUT_RD || how == SHUT_RDWR) && !s->shut_rd) {
    s->shut_rd = true;
    s->conn->engine().shutdown_recv();
  }
  s->conn->run_actions();
  return 0;
}

int sdp_close(int fd) {
  std::shared_ptr<Sock> s;
  {
    std::lock_guard lk(g_mu);
    auto it = g_socks.find(fd);
    if (it == g_socks.end()) return fail(EBADF);
    s = std::move(it->second);
    g_socks.erase(it);
  }
  std::unique_lock lk(s->mu);
  if (s->conn && s->conn->phase() == Connection::Phase::Established &&
      !s->conn->engine_finished()) {
    Connection& c = *s->conn;
    if (s->linger_abort) {
      c.engine().abort("closed with SO_LINGER 0");
    } else {
      c.engine().close();
    }
    c.run_actions();
    s->wait(lk, s->linger_ms, [&] { return c.engine_finished(); });
    if (!c.engine_finished()) {
      c.engine().abort("close: linger time expired");
      c.run_actions();
    }
    // An abortive end sends its DREQ only after the AbortConn left (the fence, at most 500 ms).
    s->wait(lk, 1000, [&] { return c.disconnect_done(); });
  }
  const int epfd = s->fd;
  s->conn.reset();
  s->lis.reset();
  lk.unlock();
  return ::close(epfd);
}

int sdp_set_nonblock(int fd, int on) {
  auto s = find(fd);
  if (!s) return fail(EBADF);
  std::lock_guard lk(s->mu);
  s->nonblock = on != 0;
  return 0;
}

int sdp_setsockopt(int fd, int level, int name, const void* val, socklen_t len) {
  auto s = find(fd);
  if (!s) return fail(EBADF);
  std::lock_guard lk(s->mu);
  auto as_int = [&](int& out) {
    if (val == nullptr || len < sizeof(int)) return false;
    std::memcpy(&out, val, sizeof(int));
    return true;
  };
  int v = 0;
  if (level == SOL_SOCKET) {
    switch (name) {
      case SO_LINGER: {
        if (val == nullptr || len < sizeof(linger)) return fail(EINVAL);
        linger l{};
        std::memcpy(&l, val, sizeof l);
        s->linger_abort = l.l_onoff != 0 && l.l_linger == 0;
        s->linger_ms = l.l_onoff != 0 ? l.l_linger * 1000 : kDefaultLingerMs;
        return 0;
      }
      case SO_RCVTIMEO:
      case SO_SNDTIMEO: {
        if (val == nullptr || len < sizeof(timeval)) return fail(EINVAL);
        timeval tv{};
        std::memcpy(&tv, val, sizeof tv);
        const int ms = tv.tv_sec == 0 && tv.tv_usec == 0
                           ? -1
                           : static_cast<int>(tv.tv_sec * 1000 + tv.tv_usec / 1000);
        (name == SO_RCVTIMEO ? s->rcv_timeout_ms : s->snd_timeout_ms) = ms;
        return 0;
      }
      case SO_KEEPALIVE:
        if (!as_int(v)) return fail(EINVAL);
        s->opt.engine.keepalive_idle_ms = v != 0 ? 7'200'000U : 0U;
        return 0;
      case SO_REUSEADDR:
      case SO_RCVBUF:
      case SO_SNDBUF:
        return 0;  // accepted; SDP's buffers are SDP_RECV_BUFS x SDP_RECV_SIZE
      default:
        return fail(ENOPROTOOPT);
    }
  }
  if (level == IPPROTO_TCP) return 0;  // TCP_NODELAY and friends: SDP sends at once anyway
  if (level != SOL_SDP) return fail(ENOPROTOOPT);
  if (!as_int(v) || v < 0) return fail(EINVAL);
  const bool before_connect = !s->conn;
  switch (name) {
    case SDP_ZCOPY_THRESHOLD:
      if (!before_connect) return fail(EISCONN);
      s->opt.engine.zcopy_threshold = static_cast<std::uint32_t>(v);
      return 0;
    case SDP_RECV_BUFS:
      if (!before_connect) return fail(EISCONN);
      if (v < 2 || v > 4096) return fail(EINVAL);
      s->opt.engine.recv_bufs = static_cast<std::uint16_t>(v);
      return 0;
    case SDP_RECV_SIZE:
      if (!before_connect) return fail(EISCONN);
      if (v < 64 || v > 1 << 20) return fail(EINVAL);
      s->opt.engine.recv_size = static_cast<std::uint32_t>(v);
      s->opt.engine.max_recv_size = std::max(s->opt.engine.max_recv_size, s->opt.engine.recv_size);
      return 0;
    case SDP_POLL_SPINS:
      s->poll_spins = v;
      return 0;
    case SDP_SINK_ADVERTS:
      if (!before_connect) return fail(EISCONN);
      s->opt.engine.sink_adverts = v != 0;
      return 0;
    case SDP_KEEPALIVE_MS:
      if (!before_connect) return fail(EISCONN);
      s->opt.engine.keepalive_idle_ms = static_cast<std::uint32_t>(v);
      return 0;
    case SDP_OOB_INLINE:
      if (!before_connect) return fail(EISCONN);
      s->opt.engine.oob_inline = v != 0;
      return 0;
    default:
      return fail(ENOPROTOOPT);
  }
}

int sdp_getsockopt(int fd, int level, int name, void* val, socklen_t* len) {
  auto s = find(fd);
  if (!s) return fail(EBADF);
  std::lock_guard lk(s->mu);
  CallGuard g(*s);
  if (val == nullptr || len == nullptr || *len < sizeof(int)) return fail(EINVAL);
  int v = 0;
  if (level == SOL_SOCKET && name == SO_ERROR) {
    s->progress();
    v = s->so_error;
    if (v == 0 && s->conn && s->connect_pending && s->conn->phase() == Connection::Phase::Done)
      v = s->conn->error() != 0 ? s->conn->error() : ECONNREFUSED;
    if (s->conn && s->conn->phase() != Connection::Phase::Resolving &&
        s->conn->phase() != Connection::Phase::Connecting)
      s->connect_pending = false;
    s->so_error = 0;
  } else if (level == SOL_SOCKET && name == SO_TYPE) {
    v = SOCK_STREAM;
  } else if (level == SOL_SOCKET && name == SO_ACCEPTCONN) {
    v = s->lis != nullptr && !s->conn ? 1 : 0;
  } else if (level == SOL_SDP) {
    switch (name) {
      case SDP_ZCOPY_THRESHOLD:
        v = static_cast<int>(s->opt.engine.zcopy_threshold);
        break;
      case SDP_RECV_BUFS:
        v = s->opt.engine.recv_bufs;
        break;
      case SDP_RECV_SIZE:
        v = static_cast<int>(s->opt.engine.recv_size);
        break;
      case SDP_POLL_SPINS:
        v = s->poll_spins;
        break;
      case SDP_SINK_ADVERTS:
        v = s->opt.engine.sink_adverts ? 1 : 0;
        break;
      case SDP_KEEPALIVE_MS:
        v = static_cast<int>(s->opt.engine.keepalive_idle_ms);
        break;
      case SDP_OOB_INLINE:
        v = s->opt.engine.oob_inline ? 1 : 0;
        break;
      default:
        return fail(ENOPROTOOPT);
    }
  } else {
    return fail(ENOPROTOOPT);
  }
  std::memcpy(val, &v, sizeof v);
  *len = sizeof v;
  return 0;
}

int sdp_getsockname(int fd, sockaddr* addr, socklen_t* len) {
  auto s = find(fd);
  if (!s) return fail(EBADF);
  std::lock_guard lk(s->mu);
  if (addr == nullptr || len == nullptr) return fail(EFAULT);
  if (s->conn)
    copy_addr(s->conn->local_addr(), addr, len);
  else if (s->lis)
    copy_addr(s->lis->local_addr(), addr, len);
  else {
    sockaddr_storage any{};
    any.ss_family = static_cast<sa_family_t>(s->domain);
    copy_addr(any, addr, len);
  }
  return 0;
}

int sdp_getpeername(int fd, sockaddr* addr, socklen_t* len) {
  auto s = find(fd);
  if (!s) return fail(EBADF);
  std::lock_guard lk(s->mu);
  if (addr == nullptr || len == nullptr) return fail(EFAULT);
  if (!s->conn || s->conn->phase() != Connection::Phase::Established) return fail(ENOTCONN);
  copy_addr(s->conn->peer_addr(), addr, len);
  return 0;
}

int sdp_poll_events(int fd) {
  auto s = find(fd);
  if (!s) return fail(EBADF);
  std::lock_guard lk(s->mu);
  CallGuard g(*s);
  s->progress();
  const int ev = s->events();
  if (s->connect_pending && s->conn && s->conn->phase() == Connection::Phase::Established)
    s->connect_pending = false;
  return ev;
}

int sdp_get_stats(int fd, sdp_stats* out) {
  auto s = find(fd);
  if (!s) return fail(EBADF);
  if (out == nullptr) return fail(EFAULT);
  std::lock_guard lk(s->mu);
  if (!s->conn) return fail(ENOTCONN);
  const sdp::Engine& e = s->conn->engine();
  const sdp::Stats& st = e.stats();
  std::memset(out, 0, sizeof *out);
  const auto name = sdp::state_name(e.state());
  std::memcpy(out->state, name.data(), std::min(name.size(), sizeof out->state - 1));
  out->cm_mode = s->conn->mode() == CmMode::Native ? SDP_CM_NATIVE : SDP_CM_IP;
  out->send_mode = static_cast<std::uint8_t>(e.send_mode());
  out->recv_mode = static_cast<std::uint8_t>(e.recv_mode());
  out->send_credits = e.send_credits();
  out->credits_min = st.credits_min == UINT32_MAX ? 0 : st.credits_min;
  out->credits_max = st.credits_max;
  out->local_recv_size = e.local_recv_size();
  out->peer_recv_size = e.peer_recv_size();
  out->posted_recvs = e.posted_recvs();
  out->qp_num = s->conn->qp_num();
  out->bytes_sent = st.bytes_sent;
  out->bytes_received = st.bytes_received;
  out->bcopy_bytes_sent = st.bcopy_bytes_sent;
  out->zcopy_bytes_sent = st.zcopy_bytes_sent;
  out->bcopy_bytes_received = st.bcopy_bytes_received;
  out->zcopy_bytes_received = st.zcopy_bytes_received;
  out->credit_updates_sent = st.credit_updates_sent;
  out->rdma_reads = st.rdma_reads;
  out->rdma_writes = st.rdma_writes;
  std::memcpy(out->messages_sent, st.messages_sent, sizeof out->messages_sent);
  std::memcpy(out->messages_received, st.messages_received, sizeof out->messages_received);
  return 0;
}

int sdp_stats_json(int fd, char* buf, size_t len) {
  auto s = find(fd);
  if (!s) return fail(EBADF);
  std::lock_guard lk(s->mu);
  if (!s->conn) return fail(ENOTCONN);
  std::string j;
  try {
    j = sdp::to_json(sdp::stats_to_proto(s->conn->engine()));
  } catch (const std::exception&) {
    return fail(EIO);
  }
  if (len > 0) {
    const std::size_t n = std::min(len - 1, j.size());
    std::memcpy(buf, j.data(), n);
    buf[n] = '\0';
  }
  return static_cast<int>(j.size());
}

const char* sdp_error_detail(int fd) {
  static thread_local std::string out;
  auto s = find(fd);
  if (!s) return "not an SDP socket";
  std::lock_guard lk(s->mu);
  out = s->detail;
  if (out.empty() && s->conn) out = s->conn->error_text();
  return out.c_str();
}

}  // extern "C"

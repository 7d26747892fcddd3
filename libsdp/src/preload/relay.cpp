#include "relay.hpp"

#include "sdp/sdp.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

namespace sdp::preload {

thread_local int t_internal = 0;

namespace {

constexpr std::size_t kBufSize = 256 * 1024;
constexpr auto kConnectWait = std::chrono::seconds(60);

template <typename F>
F sym(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

std::function<void(int, const char*)>& log_hook() {
  static auto* hook = new std::function<void(int, const char*)>();
  return *hook;
}

void logf(int level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void logf(int level, const char* fmt, ...) {
  auto& hook = log_hook();
  if (!hook) return;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  hook(level, buf);
}

std::uint64_t inode_of(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_ino);
}

std::uint16_t port_of(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(a).sin_port);
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
  return 0;
}

bool same_host(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET)
    return reinterpret_cast<const sockaddr_in&>(a).sin_addr.s_addr ==
           reinterpret_cast<const sockaddr_in&>(b).sin_addr.s_addr;
  return std::memcmp(&reinterpret_cast<const sockaddr_in6&>(a).sin6_addr,
                     &reinterpret_cast<const sockaddr_in6&>(b).sin6_addr, sizeof(in6_addr)) == 0;
}

socklen_t len_of(const sockaddr_storage& a) {
  return a.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

sockaddr_storage loopback(int family, std::uint16_t port) {
  sockaddr_storage s{};
  if (family == AF_INET6) {
    auto& a = reinterpret_cast<sockaddr_in6&>(s);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    a.sin6_port = htons(port);
  } else {
    auto& a = reinterpret_cast<sockaddr_in&>(s);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
  }
  return s;
}

std::optional<sockaddr_storage> local_of(int fd) {
  sockaddr_storage s{};
  socklen_t l = sizeof s;
  if (libc().getsockname(fd, reinterpret_cast<sockaddr*>(&s), &l) != 0) return std::nullopt;
  return s;
}

// Where a connection for the listener bound to `bound` is delivered: the wildcard addresses
// become loopback; a specific local address is used as is.
sockaddr_storage delivery_target(const sockaddr_storage& bound) {
  sockaddr_storage t = bound;
  if (bound.ss_family == AF_INET) {
    auto& a = reinterpret_cast<sockaddr_in&>(t);
    if (a.sin_addr.s_addr == htonl(INADDR_ANY)) a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  } else if (bound.ss_family == AF_INET6) {
    auto& a = reinterpret_cast<sockaddr_in6&>(t);
    if (IN6_IS_ADDR_UNSPECIFIED(&a.sin6_addr)) a.sin6_addr = in6addr_loopback;
  }
  return t;
}

void reset_close(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

struct Buffer {
  std::unique_ptr<std::uint8_t[]> data{new std::uint8_t[kBufSize]};
  std::size_t head = 0, tail = 0;
  std::size_t size() const { return tail - head; }
  std::size_t room() const { return kBufSize - tail; }
  void compact() {
    if (head == 0) return;
    std::memmove(data.get(), data.get() + head, size());
    tail -= head;
    head = 0;
  }
};

// Accepted SDP connections, announced to every process of the program: a prefork server (nginx)
// listens in its master, where the relay runs, and accepts in forked workers. The table is a
// MAP_SHARED mapping made before the first listener, so forked children share it; a slot is
// keyed by the loopback port the relay connects from.
struct Slot {
  std::atomic<std::uint32_t> state;  // 0 free, 1 being written or read, 2 ready
  std::uint16_t port;
  sockaddr_storage local, peer;
};
constexpr std::size_t kSlots = 4096;

Slot* shared_slots() {
  static Slot* slots = [] {
    void* m = mmap(nullptr, sizeof(Slot) * kSlots, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return m == MAP_FAILED ? nullptr : static_cast<Slot*>(m);  // zero-filled: all free
  }();
  return slots;
}

bool announce(std::uint16_t port, const Endpoint& ep) {
  Slot* t = shared_slots();
  if (t == nullptr) return false;
  for (std::size_t i = 0; i < kSlots; ++i) {
    Slot& sl = t[(port + i) % kSlots];
    std::uint32_t expected = 0;
    if (!sl.state.compare_exchange_strong(expected, 1)) continue;
    sl.port = port;
    sl.local = ep.local;
    sl.peer = ep.peer;
    sl.state.store(2, std::memory_order_release);
    return true;
  }
  return false;
}

std::optional<Endpoint> take(std::uint16_t port) {
  Slot* t = shared_slots();
  if (t == nullptr) return std::nullopt;
  for (std::size_t i = 0; i < kSlots; ++i) {
    Slot& sl = t[(port + i) % kSlots];
    if (sl.state.load(std::memory_order_acquire) != 2 || sl.port != port) continue;
    std::uint32_t expected = 2;
    if (!sl.state.compare_exchange_strong(expected, 1)) continue;
    Endpoint ep;
    ep.local = sl.local;
    ep.peer = sl.peer;
    sl.state.store(0, std::memory_order_release);
    return ep;
  }
  return std::nullopt;
}

enum class Remote : std::uint8_t { None, Sdp, Tcp };
enum class Phase : std::uint8_t { AwaitLoop, SdpConnecting, TcpConnecting, LoopConnecting, Open };

struct Conn {
  std::uint64_t id = 0;
  Phase phase = Phase::AwaitLoop;
  int loop = -1;  // the relay's end of the loopback connection
  Remote kind = Remote::None;
  int remote = -1;  // libsdp socket, or the fallback TCP socket
  sockaddr_storage peer{};
  bool allow_tcp = false;
  std::uint64_t inode = 0;  // the program's socket (client side); 0 for accepted connections
  std::uint16_t port = 0;   // the program-side local port of the loopback connection
  Buffer up, down;          // program -> peer, peer -> program
  bool loop_eof = false, remote_eof = false, loop_shut = false, remote_shut = false;
  bool sdp_watched = true;  // EPOLLIN on the libsdp socket (level-triggered)
};

struct Listener {
  int sdp = -1;
  bool sdp_only = false;
  sockaddr_storage target{};
  std::uint64_t inode = 0;
};

struct Registered {
  Endpoint ep;
  std::uint64_t conn = 0;
  std::uint16_t port = 0;  // loopback port that identifies the program socket
  bool by_peer = false;    // port is the socket's peer port (accepted) rather than its own
};

class Relay {
 public:
  std::mutex mu;
  std::condition_variable cv;
  bool running = false;
  int ep = -1;
  int loop_listener[2] = {-1, -1};  // AF_INET, AF_INET6
  std::uint64_t next_id = 1;
  std::map<std::uint64_t, std::unique_ptr<Conn>> conns;  // by id
  std::map<int, std::uint64_t> by_fd;                    // relay-side fd -> conn id
  std::map<int, Listener> listeners;                     // SDP listener fd -> listener
  std::map<std::uint16_t, std::uint64_t> awaiting;       // program port -> conn awaiting loop
  std::map<std::uint64_t, bool> listener_modes;          // listening socket inode -> sdp only
  std::map<std::uint64_t, Registered> endpoints;         // program socket inode -> endpoint

  // Starts the thread and the loopback listener of `family` (mu held).
  bool ensure(int family) {
    if (!running) {
      ep = epoll_create1(EPOLL_CLOEXEC);
      if (ep < 0) return false;
      running = true;
      std::thread([this] { run(); }).detach();
    }
    int& l = loop_listener[family == AF_INET6 ? 1 : 0];
    if (l >= 0) return true;
    l = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l < 0) return false;
    const sockaddr_storage a = loopback(family, 0);
    if (bind(l, reinterpret_cast<const sockaddr*>(&a), len_of(a)) != 0 ||
        libc().listen(l, 1024) != 0) {
      close(l);
      l = -1;
      return false;
    }
    watch(l, EPOLLIN);
    return true;
  }

  void watch(int fd, std::uint32_t events) {
    epoll_event e{};
    e.events = events;
    e.data.fd = fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
  }

  Conn& add_conn() {
    auto c = std::make_unique<Conn>();
    c->id = next_id++;
    Conn& ref = *c;
    conns.emplace(ref.id, std::move(c));
    return ref;
  }

  void attach(Conn& c, int fd, Remote kind) {
    if (kind == Remote::None) {
      // No Nagle on the loopback hop: it would only add delayed-ACK stalls (40 ms) to every
      // small request/response exchange.
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      c.loop = fd;
    } else {
      c.kind = kind;
      c.remote = fd;
    }
    by_fd[fd] = c.id;
    watch(fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
  }

  void settle(Conn& c, int error) {
    for (auto& [ino, r] : endpoints)
      if (r.conn == c.id && r.ep.pending) {
        r.ep.pending = false;
        r.ep.error = error;
        r.ep.fallback_tcp = c.kind == Remote::Tcp;
        if (error == 0 && c.remote >= 0) {
          socklen_t l = sizeof r.ep.local;
          if (c.kind == Remote::Sdp)
            sdp_getsockname(c.remote, reinterpret_cast<sockaddr*>(&r.ep.local), &l);
          else
            libc().getsockname(c.remote, reinterpret_cast<sockaddr*>(&r.ep.local), &l);
        }
      }
    cv.notify_all();
  }

  void forget(Conn& c) {
    if (c.loop >= 0) by_fd.erase(c.loop);
    if (c.remote >= 0) by_fd.erase(c.remote);
    for (auto it = endpoints.begin(); it != endpoints.end();)
      it = it->second.conn == c.id ? endpoints.erase(it) : std::next(it);
    if (c.inode == 0 && c.port != 0) take(c.port);  // delivered but never accepted
    conns.erase(c.id);
  }

  // Ends a connection: gracefully (both streams ended) or with a reset of both sides.
  void finish(Conn& c, bool reset) {
    if (c.loop >= 0) {
      if (reset)
        reset_close(c.loop);
      else
        close(c.loop);
    }
    if (c.remote >= 0) {
      if (c.kind == Remote::Sdp) {
        const int s = c.remote;
        if (reset) {
          linger l{1, 0};
          sdp_setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
        // Both streams have ended (or the connection is being reset): the DREQ/DREP exchange
        // left is short. Closed here, on the relay thread: libsdp sockets are used by one
        // thread of the relay only.
        sdp_close(s);
      } else if (reset) {
        reset_close(c.remote);
      } else {
        close(c.remote);
      }
    }
    forget(c);
  }

  void fail_connect(Conn& c, int error) {
    logf(8, "connect to the peer failed (%s): resetting the program's socket",
         std::strerror(error));
    settle(c, error);
    finish(c, true);
  }

  void start_tcp_fallback(Conn& c, int sdp_error) {
    if (c.remote >= 0) {
      by_fd.erase(c.remote);
      sdp_close(c.remote);  // never connected: nothing to wait for
      c.remote = -1;
    }
    if (!c.allow_tcp) return fail_connect(c, sdp_error);
    logf(7, "SDP connect failed (%s): falling back to TCP", std::strerror(sdp_error));
    const int t = socket(c.peer.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (t < 0) return fail_connect(c, errno);
    if (libc().connect(t, reinterpret_cast<const sockaddr*>(&c.peer), len_of(c.peer)) != 0 &&
        errno != EINPROGRESS) {
      const int e = errno;
      close(t);
      return fail_connect(c, e);
    }
    c.phase = Phase::TcpConnecting;
    attach(c, t, Remote::Tcp);
  }

  void start_sdp_connect(Conn& c) {
    const int s = sdp_socket(c.peer.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (s < 0) return start_tcp_fallback(c, errno);
    if (sdp_connect(s, reinterpret_cast<const sockaddr*>(&c.peer), len_of(c.peer)) != 0 &&
        errno != EINPROGRESS) {
      const int e = errno;
      sdp_close(s);
      return start_tcp_fallback(c, e);
    }
    logf(1, "relay: SDP connect in progress (libsdp socket %d)", s);
    c.phase = Phase::SdpConnecting;
    c.kind = Remote::Sdp;
    c.remote = s;
    by_fd[s] = c.id;
    watch(s, EPOLLIN);
    step_connect(c);  // it may already be done
  }

  // Advances a connecting remote; true when the connection is open.
  bool step_connect(Conn& c) {
    int err = 0;
    socklen_t l = sizeof err;
    if (c.phase == Phase::SdpConnecting) {
      const int ev = sdp_poll_events(c.remote);
      logf(1, "relay: SDP connect: events 0x%x", static_cast<unsigned>(ev));
      if ((ev & (POLLOUT | POLLERR | POLLHUP)) == 0) return false;
      sdp_getsockopt(c.remote, SOL_SOCKET, SO_ERROR, &err, &l);
      if (err != 0) {
        start_tcp_fallback(c, err);
        return false;
      }
    } else if (c.phase == Phase::TcpConnecting) {
      libc().getsockopt(c.remote, SOL_SOCKET, SO_ERROR, &err, &l);
      if (err == EINPROGRESS || err == EALREADY) return false;
      if (err != 0) {
        fail_connect(c, err);
        return false;
      }
      // A nonblocking connect in progress reports SO_ERROR 0 too: wait for it to be writable.
      sockaddr_storage p{};
      socklen_t pl = sizeof p;
      if (libc().getpeername(c.remote, reinterpret_cast<sockaddr*>(&p), &pl) != 0) return false;
    } else if (c.phase == Phase::LoopConnecting) {
      libc().getsockopt(c.loop, SOL_SOCKET, SO_ERROR, &err, &l);
      if (err != 0) {
        finish(c, true);  // the program's listener went away
        return false;
      }
    } else {
      return c.phase == Phase::Open;
    }
    if (c.phase != Phase::LoopConnecting)
      logf(7, "connected to the peer over %s", c.kind == Remote::Sdp ? "SDP" : "TCP (fallback)");
    c.phase = Phase::Open;
    settle(c, 0);
    return true;
  }

  ssize_t remote_read(Conn& c, void* buf, std::size_t n) {
    return c.kind == Remote::Sdp ? sdp_recv(c.remote, buf, n, MSG_DONTWAIT)
                                 : recv(c.remote, buf, n, MSG_DONTWAIT);
  }
  ssize_t remote_write(Conn& c, const void* buf, std::size_t n) {
    return c.kind == Remote::Sdp ? sdp_send(c.remote, buf, n, MSG_DONTWAIT)
                                 : send(c.remote, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  int remote_shutdown(Conn& c) {
    return c.kind == Remote::Sdp ? sdp_shutdown(c.remote, SHUT_WR) : shutdown(c.remote, SHUT_WR);
  }

  static bool transient(int e) { return e == EAGAIN || e == EWOULDBLOCK || e == EINTR; }

  // Moves what it can both ways; finishes the connection when both streams have ended.
  void pump(Conn& c) {
    if (c.phase != Phase::Open && !step_connect(c)) return;
    if (c.kind == Remote::Sdp) sdp_poll_events(c.remote);
    for (bool progress = true; progress;) {
      progress = false;
      // program -> peer
      while (!c.loop_eof && c.up.room() > 0) {
        const ssize_t n = recv(c.loop, c.up.data.get() + c.up.tail, c.up.room(), MSG_DONTWAIT);
        if (n > 0) {
          c.up.tail += static_cast<std::size_t>(n);
          progress = true;
        } else if (n == 0) {
          c.loop_eof = true;
        } else if (transient(errno)) {
          break;
        } else {
          logf(3, "program side reset (%s): aborting the connection", std::strerror(errno));
          return finish(c, true);
        }
      }
      while (c.up.size() > 0) {
        const ssize_t n = remote_write(c, c.up.data.get() + c.up.head, c.up.size());
        if (n > 0) {
          c.up.head += static_cast<std::size_t>(n);
          progress = true;
        } else if (n < 0 && transient(errno)) {
          break;
        } else {
          logf(3, "peer side failed (%s): resetting the program's socket", std::strerror(errno));
          return finish(c, true);
        }
      }
      c.up.compact();
      if (c.loop_eof && c.up.size() == 0 && !c.remote_shut) {
        remote_shutdown(c);
        c.remote_shut = true;
      }
      // peer -> program
      while (!c.remote_eof && c.down.room() > 0) {
        const ssize_t n = remote_read(c, c.down.data.get() + c.down.tail, c.down.room());
        if (n > 0) {
          c.down.tail += static_cast<std::size_t>(n);
          progress = true;
        } else if (n == 0) {
          c.remote_eof = true;
        } else if (transient(errno)) {
          break;
        } else {
          logf(3, "peer reset the connection (%s)", std::strerror(errno));
          return finish(c, true);
        }
      }
      while (c.down.size() > 0) {
        const ssize_t n = send(c.loop, c.down.data.get() + c.down.head, c.down.size(),
                               MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
          c.down.head += static_cast<std::size_t>(n);
          progress = true;
        } else if (n < 0 && transient(errno)) {
          break;
        } else {
          logf(3, "program side closed (%s): aborting the connection", std::strerror(errno));
          return finish(c, true);
        }
      }
      c.down.compact();
      if (c.remote_eof && c.down.size() == 0 && !c.loop_shut) {
        shutdown(c.loop, SHUT_WR);
        c.loop_shut = true;
      }
    }
    if (c.loop_eof && c.remote_eof && c.up.size() == 0 && c.down.size() == 0)
      return finish(c, false);
    // The libsdp descriptor is watched level-triggered (it stays readable while the socket has
    // something to say); while the program's side is full there is nothing to do with it, so
    // it is not watched until the program reads (an EPOLLOUT edge on the loopback socket).
    if (c.kind == Remote::Sdp) {
      const bool want = c.down.room() > 0 || c.up.size() > 0;
      if (want != c.sdp_watched) {
        epoll_event e{};
        e.events = want ? std::uint32_t{EPOLLIN} : 0U;
        e.data.fd = c.remote;
        epoll_ctl(ep, EPOLL_CTL_MOD, c.remote, &e);
        c.sdp_watched = want;
      }
    }
  }

  void accept_loop(int l) {
    for (;;) {
      sockaddr_storage from{};
      socklen_t fl = sizeof from;
      const int fd =
          libc().accept4(l, reinterpret_cast<sockaddr*>(&from), &fl, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      const auto it = awaiting.find(port_of(from));
      if (it == awaiting.end() || conns.count(it->second) == 0) {
        close(fd);  // not a program socket we registered
        continue;
      }
      Conn& c = *conns[it->second];
      awaiting.erase(it);
      logf(1, "relay: program socket from port %u reached the relay", port_of(from));
      attach(c, fd, Remote::None);
      if (c.kind == Remote::Sdp && c.remote >= 0) {
        c.phase = Phase::Open;  // connected by the program's thread (blocking connect)
        pump(c);
      } else {
        start_sdp_connect(c);
      }
    }
  }

  void accept_sdp(Listener& ls) {
    for (;;) {
      const int s = sdp_accept4(ls.sdp, nullptr, nullptr, SOCK_NONBLOCK);
      if (s < 0) return;
      const sockaddr_storage& t = ls.target;
      const int l = socket(t.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (l < 0) {
        sdp_close(s);
        continue;
      }
      sockaddr_storage src = loopback(t.ss_family, 0);
      bool is_loop = false;
      if (t.ss_family == AF_INET)
        is_loop = reinterpret_cast<const sockaddr_in&>(t).sin_addr.s_addr == htonl(INADDR_LOOPBACK);
      else
        is_loop = IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<const sockaddr_in6&>(t).sin6_addr);
      if (!is_loop) {  // a specific local address: the connection comes from it
        src = t;
        if (src.ss_family == AF_INET)
          reinterpret_cast<sockaddr_in&>(src).sin_port = 0;
        else
          reinterpret_cast<sockaddr_in6&>(src).sin6_port = 0;
      }
      const auto bound = bind(l, reinterpret_cast<const sockaddr*>(&src), len_of(src)) == 0
                             ? local_of(l)
                             : std::nullopt;
      if (!bound) {
        close(l);
        sdp_close(s);
        continue;
      }
      Conn& c = add_conn();
      c.kind = Remote::Sdp;
      c.remote = s;
      by_fd[s] = c.id;
      watch(s, EPOLLIN);
      c.port = port_of(*bound);
      Registered r;
      r.conn = c.id;
      r.port = c.port;
      socklen_t ll = sizeof r.ep.local, pl = sizeof r.ep.peer;
      sdp_getsockname(s, reinterpret_cast<sockaddr*>(&r.ep.local), &ll);
      sdp_getpeername(s, reinterpret_cast<sockaddr*>(&r.ep.peer), &pl);
      announce(c.port, r.ep);
      c.phase = Phase::LoopConnecting;
      attach(c, l, Remote::None);
      if (libc().connect(l, reinterpret_cast<const sockaddr*>(&t), len_of(t)) != 0 &&
          errno != EINPROGRESS) {
        finish(c, true);
        continue;
      }
      logf(7, "accepted an SDP connection from %s",
           describe(reinterpret_cast<const sockaddr*>(&r.ep.peer)).c_str());
    }
  }

  void run() {
    t_internal = 1;  // the relay's own calls (and libsdp's) never reach the interposers
    std::vector<epoll_event> events(256);
    for (;;) {
      const int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;
      }
      std::lock_guard<std::mutex> lock(mu);
      for (int i = 0; i < n; ++i) {
        const int fd = events[static_cast<std::size_t>(i)].data.fd;
        if (fd == loop_listener[0] || fd == loop_listener[1]) {
          accept_loop(fd);
          continue;
        }
        if (auto l = listeners.find(fd); l != listeners.end()) {
          accept_sdp(l->second);
          continue;
        }
        const auto it = by_fd.find(fd);
        if (it == by_fd.end()) continue;
        const auto c = conns.find(it->second);
        if (c != conns.end()) pump(*c->second);
      }
    }
  }
};

Relay* g_relay = nullptr;
std::once_flag g_once;
std::atomic<bool> g_exiting{false};

// Registered when the relay is first used, so it runs before the libraries' own destructors
// (static objects of libsdp, the finalizers of libibverbs, librdmacm and libnl): the relay thread
// finishes the batch it is working on and is then held on its lock for good, so nothing uses
// those libraries while they are torn down. (Without it, a program that returned from main with
// connections still being relayed crashed now and then in exit: the relay thread in sdp_close or
// ibv_poll_cq against objects exit had freed.)
void at_exit() {
  g_exiting.store(true);
  if (g_relay != nullptr) g_relay->mu.lock();  // never unlocked: the process is ending
}

void atfork_prepare() {
  if (g_relay != nullptr) g_relay->mu.lock();
}
void atfork_parent() {
  if (g_relay != nullptr) g_relay->mu.unlock();
}
void atfork_child() {
  reset_after_fork();
}

Relay& relay() {
  std::call_once(g_once, [] {
    g_relay = new Relay();  // never destroyed: the thread may run until exit
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    std::atexit(at_exit);
  });
  return *g_relay;
}

}  // namespace

bool exiting() noexcept {
  return g_exiting.load(std::memory_order_relaxed);
}

std::string describe(const sockaddr* a) {
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (a->sa_family == AF_INET) {
    const auto* s = reinterpret_cast<const sockaddr_in*>(a);
    inet_ntop(AF_INET, &s->sin_addr, host, sizeof host);
    port = ntohs(s->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  const auto* s = reinterpret_cast<const sockaddr_in6*>(a);
  inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof host);
  port = ntohs(s->sin6_port);
  return "[" + std::string(host) + "]:" + std::to_string(port);
}

const Libc& libc() {
  static const Libc l = [] {
    Libc x;
    x.connect = sym<decltype(x.connect)>("connect");
    x.accept4 = sym<decltype(x.accept4)>("accept4");
    x.listen = sym<decltype(x.listen)>("listen");
    x.getsockname = sym<decltype(x.getsockname)>("getsockname");
    x.getpeername = sym<decltype(x.getpeername)>("getpeername");
    x.getsockopt = sym<decltype(x.getsockopt)>("getsockopt");
    return x;
  }();
  return l;
}

void set_log(std::function<void(int, const char*)> log) {
  log_hook() = std::move(log);
}

namespace {

// Registers the program socket `fd` for a loopback connection to the relay (mu held): makes sure
// it has a local port, and returns the connection.
Conn* register_program_socket(Relay& r, int fd, const sockaddr* peer, socklen_t peer_len) {
  auto local = local_of(fd);
  if (!local) return nullptr;
  const int family = local->ss_family;
  if (!r.ensure(family)) return nullptr;
  if (port_of(*local) == 0) {
    const sockaddr_storage a = loopback(family, 0);
    if (bind(fd, reinterpret_cast<const sockaddr*>(&a), len_of(a)) != 0) return nullptr;
    local = local_of(fd);
    if (!local) return nullptr;
  }
  Conn& c = r.add_conn();
  std::memcpy(&c.peer, peer, std::min<std::size_t>(peer_len, sizeof c.peer));
  c.port = port_of(*local);
  c.inode = inode_of(fd);
  r.awaiting[c.port] = c.id;
  Registered reg;
  reg.conn = c.id;
  reg.port = c.port;
  std::memcpy(&reg.ep.peer, peer, std::min<std::size_t>(peer_len, sizeof reg.ep.peer));
  r.endpoints[c.inode] = reg;
  return &c;
}

int connect_to_relay(Relay& r, int fd, int family) {
  const sockaddr_storage target =
      loopback(family, port_of(*local_of(r.loop_listener[family == AF_INET6 ? 1 : 0])));
  return libc().connect(fd, reinterpret_cast<const sockaddr*>(&target), len_of(target));
}

}  // namespace

int adopt_connected(int fd, int sdp_fd, const sockaddr* peer, socklen_t peer_len) {
  Relay& r = relay();
  int family = 0;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    Conn* c = register_program_socket(r, fd, peer, peer_len);
    if (c == nullptr) {
      const int e = errno;
      sdp_close(sdp_fd);
      errno = e;
      return -1;
    }
    c->kind = Remote::Sdp;
    c->remote = sdp_fd;
    sdp_set_nonblock(sdp_fd, 1);
    r.by_fd[sdp_fd] = c->id;
    r.watch(sdp_fd, EPOLLIN);
    Registered& reg = r.endpoints[c->inode];
    socklen_t l = sizeof reg.ep.local;
    sdp_getsockname(sdp_fd, reinterpret_cast<sockaddr*>(&reg.ep.local), &l);
    family = local_of(fd)->ss_family;
  }
  return connect_to_relay(r, fd, family);  // blocking: the relay accepts it at once
}

int start_connect(int fd, const sockaddr* peer, socklen_t peer_len, bool allow_tcp) {
  Relay& r = relay();
  int family = 0;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    Conn* c = register_program_socket(r, fd, peer, peer_len);
    if (c == nullptr) return -1;
    c->allow_tcp = allow_tcp;
    r.endpoints[c->inode].ep.pending = true;
    family = local_of(fd)->ss_family;
  }
  if (connect_to_relay(r, fd, family) != 0 && errno != EINPROGRESS) return -1;
  return 0;
}

void add_listener(int fd, int sdp_fd, bool sdp_only) {
  Relay& r = relay();
  std::lock_guard<std::mutex> lock(r.mu);
  const auto bound = local_of(fd);
  if (!bound || !r.ensure(bound->ss_family)) {
    sdp_close(sdp_fd);
    return;
  }
  sdp_set_nonblock(sdp_fd, 1);
  Listener ls;
  ls.sdp = sdp_fd;
  ls.sdp_only = sdp_only;
  ls.target = delivery_target(*bound);
  ls.inode = inode_of(fd);
  r.listeners[sdp_fd] = ls;
  r.listener_modes[ls.inode] = sdp_only;
  shared_slots();
  r.watch(sdp_fd, EPOLLIN);
  r.accept_sdp(r.listeners[sdp_fd]);
}

std::optional<bool> listener_sdp_only(int fd) {
  if (g_relay == nullptr) return std::nullopt;
  const std::uint64_t ino = inode_of(fd);
  std::lock_guard<std::mutex> lock(g_relay->mu);
  const auto it = g_relay->listener_modes.find(ino);
  if (it == g_relay->listener_modes.end()) return std::nullopt;
  return it->second;
}

std::optional<Endpoint> claim_accepted(int /*listener_fd*/, int fd) {
  if (g_relay == nullptr) return std::nullopt;
  sockaddr_storage p{};
  socklen_t pl = sizeof p;
  if (libc().getpeername(fd, reinterpret_cast<sockaddr*>(&p), &pl) != 0) return std::nullopt;
  // The relay connects from the very address it connects to (loopback, or the listener's own
  // address): a client from elsewhere is never taken for it.
  const auto self = local_of(fd);
  if (!self || !same_host(*self, p)) return std::nullopt;
  const auto ep = take(port_of(p));
  if (!ep) return std::nullopt;
  std::lock_guard<std::mutex> lock(g_relay->mu);
  Registered r;
  r.ep = *ep;
  r.port = port_of(p);
  r.by_peer = true;
  g_relay->endpoints[inode_of(fd)] = r;
  return r.ep;
}

std::optional<Endpoint> lookup(int fd, bool wait) {
  if (g_relay == nullptr) return std::nullopt;
  {
    // The common case first, with no system call: a process with no relayed socket at all.
    std::lock_guard<std::mutex> lock(g_relay->mu);
    if (g_relay->endpoints.empty()) return std::nullopt;
  }
  const std::uint64_t ino = inode_of(fd);
  Registered reg;
  {
    std::lock_guard<std::mutex> lock(g_relay->mu);
    const auto it = g_relay->endpoints.find(ino);
    if (it == g_relay->endpoints.end()) return std::nullopt;
    reg = it->second;
  }
  // A recycled inode (the socket was closed, another one got its number) has another port:
  // forget the entry.
  sockaddr_storage a{};
  socklen_t al = sizeof a;
  const bool same =
      (reg.by_peer ? libc().getpeername(fd, reinterpret_cast<sockaddr*>(&a), &al)
                   : libc().getsockname(fd, reinterpret_cast<sockaddr*>(&a), &al)) == 0 &&
      port_of(a) == reg.port;
  std::unique_lock<std::mutex> lock(g_relay->mu);
  auto it = g_relay->endpoints.find(ino);
  if (it == g_relay->endpoints.end()) return std::nullopt;
  if (!same) {
    if (it->second.conn == reg.conn && it->second.port == reg.port) g_relay->endpoints.erase(it);
    return std::nullopt;
  }
  if (wait && it->second.ep.pending) {
    const std::uint64_t conn = it->second.conn;
    g_relay->cv.wait_for(lock, kConnectWait, [&] {
      it = g_relay->endpoints.find(ino);
      return it == g_relay->endpoints.end() || it->second.conn != conn || !it->second.ep.pending;
    });
    it = g_relay->endpoints.find(ino);
    if (it == g_relay->endpoints.end()) return std::nullopt;
  }
  return it->second.ep;
}

void reset_after_fork() {
  if (g_relay == nullptr) return;
  // Only the forking thread exists here: the parent's relay thread and its state stay with the
  // parent. Close the child's copies of the relay's descriptors (they would keep the parent's
  // loopback connections and listeners open) and start afresh on the next SDP socket.
  Relay* old = g_relay;
  for (const auto& [fd, id] : old->by_fd) close(fd);
  for (const auto& [fd, ls] : old->listeners) close(fd);
  for (int l : old->loop_listener)
    if (l >= 0) close(l);
  if (old->ep >= 0) close(old->ep);
  new (&old->mu) std::mutex();
  // The old object leaks on purpose (its mutex may have been held at fork time).
  g_relay = new Relay();
  // Endpoints of inherited program sockets stay valid for getpeername in the child, and
  // inherited listeners keep their mode (the parent's relay delivers to them).
  g_relay->endpoints = old->endpoints;
  g_relay->listener_modes = old->listener_modes;
}

}  // namespace sdp::preload

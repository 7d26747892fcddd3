// The preload shim's relay: every SDP connection a legacy program uses is presented to it as a
// real kernel TCP socket connected over the loopback interface to this relay, which moves the
// bytes between that socket and the libsdp socket. The program's descriptor is therefore an
// ordinary socket: epoll (level/edge triggered, EPOLLONESHOT, EPOLLRDHUP, one fd in several epoll
// sets), poll, select, fcntl, dup, fork and exec, MSG_PEEK/MSG_WAITALL, FIONREAD, readv/writev,
// sendfile and TCP socket options all behave as the kernel makes them behave, and the end of
// the stream, half-close (shutdown) and resets travel both ways:
//
//   program fd  <── loopback TCP ──>  relay socket  <── relay thread ──>  libsdp socket  <── RC QP
//
// The relay runs one thread per process (started on first use, again in a forked child). It
// identifies a loopback connection by the program-side socket's local port, registered before
// that socket connects, and records what getpeername/getsockname/SO_ERROR must report for the
// program's socket (keyed by the socket's inode, so dup'ed and inherited descriptors find it).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace sdp::preload {

// Greater than 0 while a thread runs inside the shim or is one of its own threads: the
// interposers then go straight to libc (libsdp and librdmacm make socket calls of their own, and
// the relay's lock must never be taken twice).
extern thread_local int t_internal;

// True once the process has begun to exit (an atexit handler of the relay's): from then on the
// relay thread is stopped (it would otherwise keep using libsdp, libibverbs and librdmacm while
// exit tears them down) and the interposers go straight to libc.
bool exiting() noexcept;
// Whether an interposer passes its call straight to libc.
inline bool bypass() noexcept {
  return t_internal > 0 || exiting();
}

// What the program's socket stands for.
struct Endpoint {
  sockaddr_storage local{};  // SDP (or fallback TCP) local address
  sockaddr_storage peer{};   // the real peer
  int error = 0;             // connect outcome: 0 or an errno (valid when !pending)
  bool pending = false;      // nonblocking connect still running in the relay
  bool fallback_tcp = false;
};

// Real libc functions (resolved with dlsym(RTLD_NEXT)), so the relay and the shim never call
// their own interposers.
struct Libc {
  int (*connect)(int, const sockaddr*, socklen_t) = nullptr;
  int (*accept4)(int, sockaddr*, socklen_t*, int) = nullptr;
  int (*listen)(int, int) = nullptr;
  int (*getsockname)(int, sockaddr*, socklen_t*) = nullptr;
  int (*getpeername)(int, sockaddr*, socklen_t*) = nullptr;
  int (*getsockopt)(int, int, int, void*, socklen_t*) = nullptr;
};
const Libc& libc();

// "10.0.0.1:5000", "[fe80::1]:5000" for log lines.
std::string describe(const sockaddr* a);

// Log hook (level, message); the shim installs its logger.
void set_log(std::function<void(int, const char*)> log);

// A connected SDP socket (sdp_* descriptor) for the program socket `fd` (an unconnected TCP
// socket): connects `fd` to the relay over loopback (blocking) and relays. -1 + errno on failure
// (sdp_fd is closed then).
int adopt_connected(int fd, int sdp_fd, const sockaddr* peer, socklen_t peer_len);

// Nonblocking connect of the program socket `fd` to `peer`: connects `fd` to the relay at once
// and lets the relay run the SDP connect, falling back to TCP when `allow_tcp` and SDP fails.
// Returns 0 (the caller reports EINPROGRESS) or -1 + errno.
int start_connect(int fd, const sockaddr* peer, socklen_t peer_len, bool allow_tcp);

// The program's listening socket `fd` (bound, listening) gets the SDP listener `sdp_fd`: each
// SDP connection accepted there is delivered as a loopback connection to `fd`'s address.
void add_listener(int fd, int sdp_fd, bool sdp_only);
// Whether `fd` is a listener handed to add_listener, and whether it accepts SDP only.
std::optional<bool> listener_sdp_only(int fd);

// After accept on a relay-fed listener: if `fd` is the loopback end of an SDP connection,
// records it and returns its endpoint; nullopt for a plain TCP client.
std::optional<Endpoint> claim_accepted(int listener_fd, int fd);

// The endpoint of a program socket, if it is relayed. With `wait`, a pending connect is waited
// for (up to the connect timeout).
std::optional<Endpoint> lookup(int fd, bool wait);

// Called in a forked child: the parent's relay thread does not exist there.
void reset_after_fork();

}  // namespace sdp::preload

// preload-check: an ordinary socket program (it does not know libsdp) that exercises the socket
// semantics legacy programs rely on, to be run unmodified with and without libsdp-preload.so:
//
//   preload-check server PORT        echo server: epoll edge-triggered, nonblocking accept4,
//                                     EPOLLRDHUP; echoes each connection until the client ends
//                                     its stream, then ends its own
//   preload-check client HOST PORT   the checks below against that server; one line per check
//                                     ("ok NAME" / "FAIL NAME: why"), exit status 1 on a failure
//   preload-check pingpong HOST PORT [N]  N (1000) timed round trips of 32 bytes: p50/p99/max
//   preload-check server-exec PORT   listens, then execs itself to serve on the inherited
//                                     listening socket (the shim must carry it over exec)
//   preload-check fallback HOST PORT  a blocking and a nonblocking connect, timed, each echoed
//                                     (against a server without SDP: the TCP fallback's speed)
//
// Client checks: blocking connect and getpeername/getsockname; writev (3 iovecs) + recv
// MSG_WAITALL of 1 MiB; sendmsg (3 iovecs) + recvfrom; sendto + MSG_DONTWAIT; write/read;
// MSG_PEEK; FIONREAD; poll, ppoll, select and pselect readiness; level-triggered epoll;
// readv/recvmsg with several iovecs; setsockopt TCP_NODELAY / SO_KEEPALIVE / SO_RCVBUF /
// SO_SNDBUF / SO_LINGER and getsockopt back; dup/dup2/dup3 and fcntl (O_NONBLOCK, FD_CLOEXEC);
// fork (the child writes on the inherited socket); fork + exec (the new program echoes on the
// inherited socket); sendfile; one socket in two epoll sets; EPOLLONESHOT; shutdown(SHUT_WR) →
// EOF and EPOLLRDHUP; nonblocking connect (EINPROGRESS, POLLOUT, SO_ERROR); a refused connect.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

int failures = 0;
void check(bool ok, const char* name, const std::string& why = "") {
  if (ok) {
    std::printf("ok %s\n", name);
  } else {
    std::printf("FAIL %s: %s\n", name, why.empty() ? std::strerror(errno) : why.c_str());
    ++failures;
  }
  std::fflush(stdout);
}

sockaddr_storage resolve(const char* host, const char* port, socklen_t* len) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host, port, &hints, &res) != 0 || res == nullptr) {
    std::fprintf(stderr, "preload-check: cannot resolve %s\n", host);
    std::exit(2);
  }
  sockaddr_storage a{};
  std::memcpy(&a, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return a;
}

const char* g_self = "";  // this program's path (for exec)

// ---- server ----

// A listening socket on [::]:port (IPv4 too), or -1.
int listen_on(int port) {
  const int l = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1, zero = 0;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_any;
  a.sin6_port = htons(static_cast<std::uint16_t>(port));
  if (bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(l, 64) != 0) {
    std::perror("preload-check server: bind/listen");
    close(l);
    return -1;
  }
  return l;
}

// The echo server on the listening socket `l`.
int serve_on(int l, int port);

int serve(int port) {
  const int l = listen_on(port);
  return l < 0 ? 2 : serve_on(l, port);
}

// Listens, then execs itself as `serve-fd FD`: the new program image serves on the inherited
// listening socket (as a server re-executing itself, or started with its sockets, does).
int serve_after_exec(const char* self, int port) {
  const int l = listen_on(port);
  if (l < 0) return 2;
  const std::string fd = std::to_string(l), p = std::to_string(port);
  std::fflush(stdout);
  execl(self, "preload-check", "serve-fd", fd.c_str(), p.c_str(), static_cast<char*>(nullptr));
  std::perror("preload-check server-exec: exec");
  return 2;
}

int serve_on(int l, int port) {
  const int ep = epoll_create1(0);
  epoll_event e{};
  e.events = EPOLLIN | EPOLLET;
  e.data.fd = l;
  epoll_ctl(ep, EPOLL_CTL_ADD, l, &e);
  std::printf("listening on %d\n", port);
  std::fflush(stdout);
  std::map<int, std::string> pending;  // bytes not yet echoed
  std::map<int, bool> eof;
  std::vector<char> buf(1 << 16);
  for (;;) {
    epoll_event ev[64];
    const int n = epoll_wait(ep, ev, 64, -1);
    for (int i = 0; i < n; ++i) {
      const int fd = ev[i].data.fd;
      if (fd == l) {
        for (;;) {  // edge-triggered: accept until EAGAIN
          sockaddr_storage from{};
          socklen_t fl = sizeof from;
          const int c = accept4(l, reinterpret_cast<sockaddr*>(&from), &fl, SOCK_NONBLOCK);
          if (c < 0) break;
          epoll_event ce{};
          ce.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
          ce.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
          pending[c].clear();
          eof[c] = false;
        }
        continue;
      }
      for (;;) {  // edge-triggered: read until EAGAIN
        const ssize_t r = recv(fd, buf.data(), buf.size(), 0);
        if (r > 0) {
          pending[fd].append(buf.data(), static_cast<std::size_t>(r));
        } else if (r == 0) {
          eof[fd] = true;
          break;
        } else {
          if (errno != EAGAIN) eof[fd] = true;
          break;
        }
      }
      std::string& p = pending[fd];
      while (!p.empty()) {
        const ssize_t w = send(fd, p.data(), p.size(), MSG_NOSIGNAL);
        if (w <= 0) break;
        p.erase(0, static_cast<std::size_t>(w));
      }
      if (eof[fd] && p.empty()) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        close(fd);
        pending.erase(fd);
        eof.erase(fd);
      }
    }
  }
}

// ---- client ----

bool send_all(int fd, const void* p, std::size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    c += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

std::string pattern(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed) & 0xff);
  return s;
}

int connect_to(const sockaddr_storage& a, socklen_t len) {
  const int fd = socket(a.ss_family, SOCK_STREAM, 0);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&a), len) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Sends `msg` on `out`, reads the echo from `in`, compares.
bool echo(int out, int in, const std::string& msg) {
  if (!send_all(out, msg.data(), msg.size())) return false;
  std::string got(msg.size(), '\0');
  const ssize_t r = recv(in, got.data(), got.size(), MSG_WAITALL);
  return r == static_cast<ssize_t>(msg.size()) && got == msg;
}

int client(const char* host, const char* port_s) {
  socklen_t len = 0;
  const sockaddr_storage a = resolve(host, port_s, &len);

  int fd = connect_to(a, len);
  check(fd >= 0, "blocking connect");
  if (fd < 0) return 1;
  {
    sockaddr_storage p{};
    socklen_t pl = sizeof p;
    const bool ok =
        getpeername(fd, reinterpret_cast<sockaddr*>(&p), &pl) == 0 && p.ss_family == a.ss_family &&
        (a.ss_family == AF_INET ? reinterpret_cast<const sockaddr_in&>(p).sin_port ==
                                          reinterpret_cast<const sockaddr_in&>(a).sin_port &&
                                      reinterpret_cast<const sockaddr_in&>(p).sin_addr.s_addr ==
                                          reinterpret_cast<const sockaddr_in&>(a).sin_addr.s_addr
                                : reinterpret_cast<const sockaddr_in6&>(p).sin6_port ==
                                      reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
    check(ok, "getpeername is the server", "another address");
  }
  {  // writev with 3 iovecs, 1 MiB back with MSG_WAITALL
    const std::string big = pattern(1 << 20, 7);
    iovec iov[3] = {{const_cast<char*>(big.data()), 1000},
                    {const_cast<char*>(big.data()) + 1000, 500000},
                    {const_cast<char*>(big.data()) + 501000, big.size() - 501000}};
    std::size_t sent = 0;
    bool ok = true;
    // writev may be partial: finish with send.
    const ssize_t w = writev(fd, iov, 3);
    ok = w > 0;
    if (ok) sent = static_cast<std::size_t>(w);
    if (ok && sent < big.size()) ok = send_all(fd, big.data() + sent, big.size() - sent);
    std::string got(big.size(), '\0');
    const ssize_t r = ok ? recv(fd, got.data(), got.size(), MSG_WAITALL) : -1;
    check(ok && r == static_cast<ssize_t>(big.size()) && got == big,
          "writev + recv MSG_WAITALL 1 MiB", "echo differs");
  }
  {  // MSG_PEEK, FIONREAD, poll/select/pselect readiness
    send_all(fd, "peekaboo", 8);
    pollfd pf{fd, POLLIN, 0};
    check(poll(&pf, 1, 5000) == 1 && (pf.revents & POLLIN) != 0, "poll POLLIN");
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(fd, &rs);
    timeval tv{5, 0};
    check(select(fd + 1, &rs, nullptr, nullptr, &tv) == 1 && FD_ISSET(fd, &rs), "select");
    FD_ZERO(&rs);
    FD_SET(fd, &rs);
    timespec ts{5, 0};
    check(pselect(fd + 1, &rs, nullptr, nullptr, &ts, nullptr) == 1, "pselect");
    char b[8];
    usleep(100000);  // let all 8 bytes arrive
    int avail = 0;
    check(ioctl(fd, FIONREAD, &avail) == 0 && avail == 8, "ioctl FIONREAD",
          "FIONREAD " + std::to_string(avail));
    const ssize_t p = recv(fd, b, sizeof b, MSG_PEEK | MSG_WAITALL);
    char c[8];
    const ssize_t r = recv(fd, c, sizeof c, MSG_WAITALL);
    check(p == 8 && r == 8 && std::memcmp(b, "peekaboo", 8) == 0 && std::memcmp(c, b, 8) == 0,
          "MSG_PEEK then recv", "peeked bytes differ");
  }
  {  // sendmsg (3 iovecs) + recvfrom; sendto + MSG_DONTWAIT; write + read; ppoll
    char a1[] = "send", a2[] = "msg-", a3[] = "iov";
    iovec sv[3] = {{a1, 4}, {a2, 4}, {a3, 3}};
    msghdr sm{};
    sm.msg_iov = sv;
    sm.msg_iovlen = 3;
    const ssize_t w = sendmsg(fd, &sm, MSG_NOSIGNAL);
    char got[11];
    sockaddr_storage from{};
    socklen_t fl = sizeof from;
    const ssize_t r =
        recvfrom(fd, got, sizeof got, MSG_WAITALL, reinterpret_cast<sockaddr*>(&from), &fl);
    check(w == 11 && r == 11 && std::memcmp(got, "sendmsg-iov", 11) == 0,
          "sendmsg 3 iovecs + recvfrom MSG_WAITALL", "bytes differ");
    const ssize_t t = sendto(fd, "dontwait", 8, MSG_NOSIGNAL, nullptr, 0);
    std::string back;
    char b[8];
    int eagain = 0;
    for (int i = 0; i < 5000 && back.size() < 8; ++i) {  // up to ~5 s
      const ssize_t k = recv(fd, b, sizeof b - back.size(), MSG_DONTWAIT);
      if (k > 0) {
        back.append(b, static_cast<std::size_t>(k));
      } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        ++eagain;
        usleep(1000);
      } else {
        break;
      }
    }
    check(t == 8 && back == "dontwait", "sendto + recv MSG_DONTWAIT (EAGAIN until the echo)",
          "got '" + back + "'");
    const ssize_t ww = write(fd, "rw", 2);
    timespec ts{5, 0};
    pollfd pf{fd, POLLIN, 0};
    const int pr = ppoll(&pf, 1, &ts, nullptr);
    char rb[2];
    std::size_t n = 0;
    while (n < 2) {
      const ssize_t k = read(fd, rb + n, 2 - n);
      if (k <= 0) break;
      n += static_cast<std::size_t>(k);
    }
    check(
        ww == 2 && pr == 1 && (pf.revents & POLLIN) != 0 && n == 2 && std::memcmp(rb, "rw", 2) == 0,
        "write, ppoll POLLIN, read");
  }
  {  // level-triggered epoll: reported again while unread data remains
    const int ep = epoll_create1(0);
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.fd = fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
    send_all(fd, "level", 5);
    epoll_event ev{};
    const int n1 = epoll_wait(ep, &ev, 1, 5000);
    usleep(100000);  // all 5 bytes in
    char one;
    const ssize_t r1 = recv(fd, &one, 1, 0);
    const int n2 = epoll_wait(ep, &ev, 1, 1000);  // 4 bytes left: still readable
    char rest[4];
    const ssize_t r2 = recv(fd, rest, sizeof rest, MSG_WAITALL);
    const int n3 = epoll_wait(ep, &ev, 1, 200);  // drained: nothing
    close(ep);
    check(n1 == 1 && r1 == 1 && n2 == 1 && r2 == 4 && n3 == 0,
          "epoll level-triggered: reported while data remains, not after");
  }
  {  // getsockname: the connection's local address, not the loopback hop's
    sockaddr_storage self{};
    socklen_t sl = sizeof self;
    const bool got = getsockname(fd, reinterpret_cast<sockaddr*>(&self), &sl) == 0;
    bool loop = false;
    if (self.ss_family == AF_INET)
      loop = (ntohl(reinterpret_cast<sockaddr_in&>(self).sin_addr.s_addr) >> 24) == 127;
    else if (self.ss_family == AF_INET6)
      loop = IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<sockaddr_in6&>(self).sin6_addr);
    check(got && self.ss_family == a.ss_family && !loop, "getsockname is a non-loopback address");
  }
  {  // readv and recvmsg with several iovecs
    send_all(fd, "0123456789abcdef", 16);
    char x[4], y[12];
    iovec iv[2] = {{x, sizeof x}, {y, sizeof y}};
    ssize_t got = 0;
    while (got < 16) {
      const ssize_t r = readv(fd, iv, 2);
      if (r <= 0) break;
      got += r;
      // A partial readv: rare on these sizes; shift the iovecs.
      if (got < 16) {
        std::size_t skip = static_cast<std::size_t>(r);
        for (auto& v : iv) {
          const std::size_t k = std::min(skip, v.iov_len);
          v.iov_base = static_cast<char*>(v.iov_base) + k;
          v.iov_len -= k;
          skip -= k;
        }
      }
    }
    check(got == 16 && std::memcmp(x, "0123", 4) == 0 && std::memcmp(y, "456789abcdef", 12) == 0,
          "readv 2 iovecs", "bytes differ");
    send_all(fd, "ABCDEFGH", 8);
    char m[3], n2[5];
    iovec mv[2] = {{m, sizeof m}, {n2, sizeof n2}};
    msghdr mh{};
    mh.msg_iov = mv;
    mh.msg_iovlen = 2;
    const ssize_t r = recvmsg(fd, &mh, MSG_WAITALL);
    check(r == 8 && std::memcmp(m, "ABC", 3) == 0 && std::memcmp(n2, "DEFGH", 5) == 0,
          "recvmsg MSG_WAITALL 2 iovecs", "bytes differ");
  }
  {  // socket options programs set
    int one = 1, sz = 1 << 20;
    linger lg{1, 5};
    check(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0 &&
              setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) == 0 &&
              setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz) == 0 &&
              setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz) == 0 &&
              setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0,
          "setsockopt TCP_NODELAY SO_KEEPALIVE SO_RCVBUF SO_SNDBUF SO_LINGER");
    int err = -1;
    socklen_t el = sizeof err;
    check(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0, "SO_ERROR 0");
    int ka = 0, nd = 0;
    socklen_t kl = sizeof ka, nl = sizeof nd;
    check(getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &ka, &kl) == 0 && ka == 1 &&
              getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nd, &nl) == 0 && nd == 1,
          "getsockopt reads SO_KEEPALIVE and TCP_NODELAY back");
    const int fdfl = fcntl(fd, F_GETFD);
    const bool cloexec = fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) == 0 &&
                         (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0 && fcntl(fd, F_SETFD, fdfl) == 0;
    check(cloexec && echo(fd, fd, "cloexec"), "fcntl FD_CLOEXEC set and cleared");
  }
  {  // dup / dup2 / dup3 / fcntl
    const int d = dup(fd);
    check(d >= 0 && echo(d, fd, "dup"), "dup: write on the copy, read on the original");
    const int d2 = dup2(fd, 100);
    check(d2 == 100 && echo(fd, 100, "dup2"), "dup2");
    const int d3 = dup3(fd, 101, O_CLOEXEC);
    check(d3 == 101 && (fcntl(101, F_GETFD) & FD_CLOEXEC) != 0 && echo(101, d, "dup3"),
          "dup3 O_CLOEXEC");
    close(d);
    close(100);
    close(101);
    const int fl = fcntl(fd, F_GETFL);
    char one_byte[1];
    const bool set = fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
    const ssize_t r = recv(fd, one_byte, 1, 0);
    check(set && r < 0 && errno == EAGAIN, "fcntl O_NONBLOCK: recv EAGAIN");
    fcntl(fd, F_SETFL, fl);
  }
  {  // fork: the child writes on the inherited socket
    const pid_t pid = fork();
    if (pid == 0) _exit(send_all(fd, "from-child", 10) ? 0 : 1);
    int st = 0;
    waitpid(pid, &st, 0);
    char b[10];
    const ssize_t r = recv(fd, b, sizeof b, MSG_WAITALL);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 0 && r == 10 && std::memcmp(b, "from-child", 10) == 0,
          "fork: the child writes, the parent reads the echo", "no echo");
  }
  {  // fork + exec: the exec'd program writes on the inherited socket and reads its echo
    const std::string fd_s = std::to_string(fd);
    const pid_t pid = fork();
    if (pid == 0) {
      execl(g_self, "preload-check", "echo-fd", fd_s.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "fork + exec: the new program echoes on the inherited socket", "its check failed");
  }
  {  // sendfile
    char path[] = "/tmp/preload-check-XXXXXX";
    const int tf = mkstemp(path);
    const std::string data = pattern(100000, 3);
    const bool wrote = tf >= 0 && write(tf, data.data(), data.size()) == 100000;
    off_t off = 0;
    std::size_t left = data.size();
    while (wrote && left > 0) {
      const ssize_t s = sendfile(fd, tf, &off, left);
      if (s <= 0) break;
      left -= static_cast<std::size_t>(s);
    }
    std::string got(data.size(), '\0');
    const ssize_t r = recv(fd, got.data(), got.size(), MSG_WAITALL);
    check(wrote && left == 0 && r == 100000 && got == data, "sendfile 100000 bytes", "differs");
    if (tf >= 0) close(tf);
    unlink(path);
  }
  {  // one socket in two epoll sets; EPOLLONESHOT; EPOLLRDHUP after shutdown(SHUT_WR)
    const int e1 = epoll_create1(0), e2 = epoll_create1(0);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.fd = fd;
    epoll_ctl(e1, EPOLL_CTL_ADD, fd, &ev);
    ev.events = EPOLLIN | EPOLLONESHOT;
    epoll_ctl(e2, EPOLL_CTL_ADD, fd, &ev);
    send_all(fd, "xy", 2);
    epoll_event out{};
    const int n1 = epoll_wait(e1, &out, 1, 5000), n2 = epoll_wait(e2, &out, 1, 5000);
    check(n1 == 1 && n2 == 1, "one socket in two epoll sets");
    check(epoll_wait(e2, &out, 1, 200) == 0, "EPOLLONESHOT: no second event before rearming",
          "second event");
    char b[2];
    recv(fd, b, 2, MSG_WAITALL);
    shutdown(fd, SHUT_WR);  // the server echoes everything, then closes
    bool rdhup = false;
    for (int i = 0; i < 50 && !rdhup; ++i)
      if (epoll_wait(e1, &out, 1, 100) == 1) {
        rdhup = (out.events & EPOLLRDHUP) != 0;
        if (!rdhup) {
          char sink[64];
          recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        }
      }
    check(rdhup, "EPOLLRDHUP after shutdown(SHUT_WR)", "no EPOLLRDHUP");
    char z;
    check(recv(fd, &z, 1, 0) == 0, "EOF after the server closed");
    close(e1);
    close(e2);
    close(fd);
  }
  {  // nonblocking connect
    fd = socket(a.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    const int r = connect(fd, reinterpret_cast<const sockaddr*>(&a), len);
    check(r == 0 || errno == EINPROGRESS, "nonblocking connect: EINPROGRESS");
    pollfd pf{fd, POLLOUT, 0};
    int err = -1;
    socklen_t el = sizeof err;
    check(poll(&pf, 1, 10000) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 &&
              err == 0,
          "nonblocking connect: POLLOUT then SO_ERROR 0");
    const int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    check(echo(fd, fd, pattern(300000, 9)), "nonblocking-connected socket echoes 300000 bytes");
    close(fd);
  }
  {  // a refused connect (the port above has no listener)
    sockaddr_storage b = a;
    if (b.ss_family == AF_INET)
      reinterpret_cast<sockaddr_in&>(b).sin_port =
          htons(static_cast<std::uint16_t>(ntohs(reinterpret_cast<sockaddr_in&>(b).sin_port) + 1));
    else
      reinterpret_cast<sockaddr_in6&>(b).sin6_port = htons(
          static_cast<std::uint16_t>(ntohs(reinterpret_cast<sockaddr_in6&>(b).sin6_port) + 1));
    const int s = socket(b.ss_family, SOCK_STREAM, 0);
    const int r = connect(s, reinterpret_cast<const sockaddr*>(&b), len);
    check(r != 0 && errno == ECONNREFUSED, "connect to a port without listener: ECONNREFUSED");
    close(s);
  }
  std::printf("%s: %d failure(s)\n", failures == 0 ? "PASS" : "FAIL", failures);
  return failures == 0 ? 0 : 1;
}

// Round trips of a 32-byte message on one connection, timed: the latency a request/response
// program sees. Prints "pingpong: N round trips, p50 X us, p99 Y us, max Z us".
int pingpong(const char* host, const char* port_s, int n) {
  socklen_t len = 0;
  const sockaddr_storage a = resolve(host, port_s, &len);
  const int fd = connect_to(a, len);
  if (fd < 0) {
    std::printf("FAIL pingpong: connect: %s\n", std::strerror(errno));
    return 1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const std::string msg(32, 'p');
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    if (!echo(fd, fd, msg)) {
      std::printf("FAIL pingpong: round trip %d: %s\n", i, std::strerror(errno));
      return 1;
    }
    us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  close(fd);
  std::sort(us.begin(), us.end());
  auto at = [&](double q) {
    return us[static_cast<std::size_t>(q * static_cast<double>(us.size() - 1))];
  };
  std::printf("pingpong: %d round trips, p50 %.0f us, p99 %.0f us, max %.0f us\n", n, at(0.5),
              at(0.99), us.back());
  return 0;
}

// `fallback HOST PORT`: against a server with no SDP listener, a blocking and a nonblocking
// connect (poll POLLOUT, SO_ERROR), each timed and followed by an echo. Prints
// "fallback: blocking connect N ms, nonblocking connect M ms" and exits 1 on a failure.
int fallback(const char* host, const char* port_s) {
  socklen_t len = 0;
  const sockaddr_storage a = resolve(host, port_s, &len);
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::duration d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  };
  auto t0 = Clock::now();
  const int b = connect_to(a, len);
  const auto blocking_ms = ms(Clock::now() - t0);
  const bool b_ok = b >= 0 && echo(b, b, "blocking");
  if (b >= 0) close(b);
  const int n = socket(a.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
  t0 = Clock::now();
  const int r = connect(n, reinterpret_cast<const sockaddr*>(&a), len);
  pollfd pf{n, POLLOUT, 0};
  int err = -1;
  socklen_t el = sizeof err;
  const bool n_conn = (r == 0 || errno == EINPROGRESS) && poll(&pf, 1, 30000) == 1 &&
                      getsockopt(n, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0;
  const auto nonblocking_ms = ms(Clock::now() - t0);
  bool n_ok = false;
  if (n_conn) {
    fcntl(n, F_SETFL, fcntl(n, F_GETFL) & ~O_NONBLOCK);
    n_ok = echo(n, n, "nonblocking");
  }
  close(n);
  std::printf("fallback: blocking connect %lld ms%s, nonblocking connect %lld ms%s\n",
              static_cast<long long>(blocking_ms), b_ok ? "" : " (FAILED)",
              static_cast<long long>(nonblocking_ms), n_ok ? "" : " (FAILED)");
  return b_ok && n_ok ? 0 : 1;
}

// `echo-fd FD`, run by the client's fork + exec check: a message and its echo on FD.
int echo_fd(int fd) {
  return echo(fd, fd, "after-exec") ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  char self[4096];
  const ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
  self[sl > 0 ? sl : 0] = '\0';
  g_self = self;
  if (argc == 3 && std::strcmp(argv[1], "server-exec") == 0)
    return serve_after_exec(self, std::atoi(argv[2]));
  if (argc == 4 && std::strcmp(argv[1], "serve-fd") == 0)
    return serve_on(std::atoi(argv[2]), std::atoi(argv[3]));
  if (argc == 3 && std::strcmp(argv[1], "echo-fd") == 0) return echo_fd(std::atoi(argv[2]));
  if (argc == 4 && std::strcmp(argv[1], "fallback") == 0) return fallback(argv[2], argv[3]);
  if (argc >= 4 && std::strcmp(argv[1], "pingpong") == 0)
    return pingpong(argv[2], argv[3], argc > 4 ? std::max(1, std::atoi(argv[4])) : 1000);
  if (argc == 3 && std::strcmp(argv[1], "server") == 0) return serve(std::atoi(argv[2]));
  if (argc == 4 && std::strcmp(argv[1], "client") == 0) return client(argv[2], argv[3]);
  std::fprintf(stderr,
               "usage: preload-check server PORT | preload-check client HOST PORT |\n"
               "       preload-check pingpong HOST PORT [N] | preload-check server-exec PORT |\n"
               "       preload-check fallback HOST PORT\n"
               "(a plain socket program: run it with and without libsdp-preload.so)\n");
  return 2;
}

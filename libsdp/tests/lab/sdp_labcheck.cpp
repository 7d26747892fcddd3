// sdp-labcheck: the client (and a few servers) of the lab tests. Each subcommand checks one
// behaviour of libsdp over a real fabric and exits 0 only when it holds, printing one line
// "labcheck <name>: PASS|FAIL <details>".
//
//   messages HOST PORT [N]        N small messages (1..1024 bytes, seq-numbered) through an echo
//                                 service; every echoed byte checked, in order
//   concurrent HOST PORT [N]      N connections at once, nonblocking, driven by poll() on the
//                                 sockets' descriptors; each sends 64 KiB to echo and checks it
//   refused HOST PORT [MAX_MS]    connect to a port without a listener, 5 times: ECONNREFUSED
//                                 within MAX_MS each time
//   unreachable HOST PORT [MAX_MS] connect to an address nobody answers: EHOSTUNREACH or
//                                 ETIMEDOUT within MAX_MS
//   reset HOST PORT FLAG [MAX_MS] stream to a discard service until the peer is killed (the
//                                 file FLAG appears when it is): ECONNRESET within MAX_MS of that;
//                                 creates FLAG.streaming once the first bytes are sent
//   source HOST PORT [BYTES]      reads BYTES (default 1 MiB) from sdp-testd's source service and
//                                 checks its pattern (byte i = i mod 251), then closes early
//   abort HOST PORT [BYTES]       sends BYTES (default 65536), then closes abortively
//                                 (SO_LINGER 0: AbortConn, then the CM DREQ)
//   halfclose-server PORT         serves the two half-close scenarios below (one connection each)
//   halfclose HOST PORT           (1) client shuts down its send side first, then still reads
//                                 the server's reply; (2) the server shuts down first, the
//                                 client still sends and the server still reads
#include <poll.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../../tools/tool_common.hpp"
#include "sdp/sdp.h"

namespace {

using Clock = std::chrono::steady_clock;

int pass(const char* name, const std::string& what) {
  std::printf("labcheck %s: PASS %s\n", name, what.c_str());
  return 0;
}
int fail(const char* name, const std::string& what) {
  std::printf("labcheck %s: FAIL %s\n", name, what.c_str());
  return 1;
}
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

int connect_to(const std::string& host, int port, bool nonblock = false) {
  auto ep = sdptool::resolve(host, static_cast<std::uint16_t>(port), false, false);
  int s = sdp_socket(ep.domain, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
  if (s < 0) return -1;
  if (sdp_connect(s, reinterpret_cast<sockaddr*>(&ep.addr), ep.len) != 0 &&
      !(nonblock && errno == EINPROGRESS)) {
    const int e = errno;
    std::fprintf(stderr, "connect: %s\n", sdptool::sdp_error(s, e).c_str());
    sdp_close(s);
    errno = e;
    return -1;
  }
  return s;
}

bool send_all(int s, const void* p, std::size_t n) {
  return sdp_send(s, p, n, 0) == static_cast<ssize_t>(n);
}
bool recv_all(int s, void* p, std::size_t n) {
  return sdp_recv(s, p, n, MSG_WAITALL) == static_cast<ssize_t>(n);
}
std::uint8_t pattern(std::uint32_t seq, std::uint32_t i) {
  return static_cast<std::uint8_t>((seq * 131U + i * 7U) & 0xFF);
}

int messages(const std::string& host, int port, int n) {
  int s = connect_to(host, port);
  if (s < 0) return fail("messages", std::string("connect: ") + std::strerror(errno));
  // Messages: [seq u32][len u32][len bytes]; sizes cycle through 1..1024. A reader thread would
  // hide ordering problems less well than reading back in lockstep windows of 64 messages.
  std::uint64_t bytes = 0;
  std::vector<std::uint8_t> msg(8 + 1024), back(8 + 1024);
  constexpr int kWindow = 64;
  for (int base = 0; base < n; base += kWindow) {
    const int end = std::min(n, base + kWindow);
    for (int k = base; k < end; ++k) {
      const auto seq = static_cast<std::uint32_t>(k);
      const std::uint32_t len = 1 + (seq * 37U) % 1024U;
      std::memcpy(msg.data(), &seq, 4);
      std::memcpy(msg.data() + 4, &len, 4);
      for (std::uint32_t i = 0; i < len; ++i) msg[8 + i] = pattern(seq, i);
      if (!send_all(s, msg.data(), 8 + len))
        return fail("messages", "send #" + std::to_string(k) + ": " + std::strerror(errno));
      bytes += 8 + len;
    }
    for (int k = base; k < end; ++k) {
      std::uint32_t seq = 0, len = 0;
      if (!recv_all(s, back.data(), 8))
        return fail("messages",
                    "echo of #" + std::to_string(k) + " missing: " + std::strerror(errno));
      std::memcpy(&seq, back.data(), 4);
      std::memcpy(&len, back.data() + 4, 4);
      if (seq != static_cast<std::uint32_t>(k))
        return fail("messages", "out of order: expected #" + std::to_string(k) + ", got #" +
                                    std::to_string(seq));
      if (len != 1 + (seq * 37U) % 1024U || !recv_all(s, back.data() + 8, len))
        return fail("messages", "bad length for #" + std::to_string(k));
      for (std::uint32_t i = 0; i < len; ++i)
        if (back[8 + i] != pattern(seq, i))
          return fail("messages",
                      "byte " + std::to_string(i) + " of #" + std::to_string(k) + " corrupted");
    }
  }
  sdp_stats st{};
  sdp_get_stats(s, &st);
  sdp_shutdown(s, SHUT_WR);
  char c;
  const ssize_t eof = sdp_recv(s, &c, 1, 0);
  sdp_close(s);
  if (eof != 0) return fail("messages", "no end of stream after the echo");
  return pass("messages", std::to_string(n) + " messages, " + std::to_string(bytes) +
                              " bytes, in order; Data messages sent " +
                              std::to_string(st.messages_sent[0xFF]) + ", received " +
                              std::to_string(st.messages_received[0xFF]));
}

int concurrent(const std::string& host, int port, int n) {
  constexpr std::size_t kBytes = 64 * 1024;
  struct Conn {
    int s = -1;
    bool connected = false, shut = false, done = false;
    std::size_t sent = 0, got = 0;
  };
  std::vector<Conn> cs(static_cast<std::size_t>(n));
  std::vector<std::uint8_t> out(kBytes), in(kBytes);
  for (std::size_t i = 0; i < kBytes; ++i) out[i] = static_cast<std::uint8_t>(i % 253);
  const auto t0 = Clock::now();
  std::uint64_t woken = 0, stalls = 0;
  for (auto& c : cs) {
    c.s = connect_to(host, port, true);
    if (c.s < 0) return fail("concurrent", std::string("socket/connect: ") + std::strerror(errno));
  }
  // Half the sockets wait in one epoll set, half in a poll() array: both must work on the
  // sockets' descriptors.
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  for (std::size_t k = 0; k < cs.size(); k += 2) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = k;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[k].s, &ev) != 0)
      return fail("concurrent", std::string("epoll_ctl: ") + std::strerror(errno));
  }
  int finished = 0;
  while (finished < n) {
    if (ms_since(t0) > 240'000) return fail("concurrent", "not finished after 240 s");
    std::vector<pollfd> pfds;
    pfds.push_back({ep, POLLIN, 0});
    for (std::size_t k = 1; k < cs.size(); k += 2)
      if (!cs[k].done) pfds.push_back({cs[k].s, POLLIN, 0});
    const bool sweep = ::poll(pfds.data(), pfds.size(), 2000) == 0;
    std::vector<bool> ready(cs.size(), false);
    epoll_event evs[64];
    const int ne = epoll_wait(ep, evs, 64, 0);
    for (int i = 0; i < ne; ++i) ready[evs[i].data.u64] = true;
    for (std::size_t i = 1; i < pfds.size(); ++i)
      if (pfds[i].revents != 0)
        for (std::size_t k = 1; k < cs.size(); k += 2)
          if (cs[k].s == pfds[i].fd) ready[k] = true;
    for (std::size_t k = 0; k < cs.size(); ++k) {
      Conn& c = cs[k];
      // Only sockets whose descriptor woke us are served. After 2 s with no wakeup at all,
      // every socket is looked at: one that then makes progress had work its descriptor did not
      // report (a stall), which fails the test.
      if (c.done) continue;
      if (ready[k]) ++woken;
      if (!ready[k] && !sweep) continue;
      const std::size_t before = c.sent + c.got + (c.connected ? 1 : 0);
      const int ev = sdp_poll_events(c.s);
      if (!c.connected) {
        if ((ev & POLLERR) != 0) {
          int err = 0;
          socklen_t len = sizeof err;
          sdp_getsockopt(c.s, SOL_SOCKET, SO_ERROR, &err, &len);
          return fail("concurrent", "connection " + std::to_string(k) +
                                        " failed: " + sdptool::sdp_error(c.s, err));
        }
        if ((ev & POLLOUT) == 0) continue;
        c.connected = true;
      }
      while (c.sent < kBytes) {
        const ssize_t w = sdp_send(c.s, out.data() + c.sent, kBytes - c.sent, 0);
        if (w < 0) {
          if (errno == EAGAIN) break;
          return fail("concurrent", "send: " + sdptool::sdp_error(c.s, errno));
        }
        c.sent += static_cast<std::size_t>(w);
      }
      if (c.sent == kBytes && !c.shut) {
        sdp_shutdown(c.s, SHUT_WR);
        c.shut = true;
      }
      for (;;) {
        const ssize_t r = sdp_recv(c.s, in.data(), kBytes, 0);
        if (r < 0) {
          if (errno == EAGAIN) break;
          return fail("concurrent", "recv: " + sdptool::sdp_error(c.s, errno));
        }
        if (r == 0) {
          if (c.got != kBytes)
            return fail("concurrent", "connection " + std::to_string(k) + " ended after " +
                                          std::to_string(c.got) + " bytes");
          c.done = true;
          ++finished;
          break;
        }
        for (ssize_t i = 0; i < r; ++i)
          if (in[static_cast<std::size_t>(i)] != out[c.got + static_cast<std::size_t>(i)])
            return fail("concurrent", "corrupted echo on connection " + std::to_string(k));
        c.got += static_cast<std::size_t>(r);
      }
      if (!ready[k] && (c.done || c.sent + c.got + (c.connected ? 1 : 0) != before)) ++stalls;
    }
  }
  for (auto& c : cs) sdp_close(c.s);
  ::close(ep);
  if (woken == 0) return fail("concurrent", "no descriptor ever reported readiness");
  if (stalls != 0)
    return fail("concurrent",
                std::to_string(stalls) + " times a socket had work its descriptor did not report");
  return pass("concurrent", std::to_string(n) +
                                " connections at once (half in epoll, half in "
                                "poll), " +
                                std::to_string(kBytes) + " bytes echoed on each, " +
                                std::to_string(static_cast<long>(ms_since(t0))) + " ms, " +
                                std::to_string(woken) + " wakeups, no stall");
}

int refused(const std::string& host, int port, double max_ms) {
  // Five attempts: each must fail with ECONNREFUSED (the CM REJ), none may take max_ms.
  std::vector<double> times;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = Clock::now();
    int s = connect_to(host, port);
    const int e = errno;
    const double ms = ms_since(t0);
    if (s >= 0) {
      sdp_close(s);
      return fail("refused", "connected to a port with no listener");
    }
    if (e != ECONNREFUSED) return fail("refused", std::string("errno ") + std::strerror(e));
    if (ms > max_ms)
      return fail("refused", "ECONNREFUSED after " + std::to_string(ms) + " ms (limit " +
                                 std::to_string(max_ms) + ")");
    times.push_back(ms);
  }
  std::sort(times.begin(), times.end());
  return pass("refused", "ECONNREFUSED 5 times, min " + std::to_string(static_cast<int>(times[0])) +
                             " ms, median " + std::to_string(static_cast<int>(times[2])) +
                             " ms, max " + std::to_string(static_cast<int>(times[4])) + " ms");
}

int unreachable(const std::string& host, int port, double max_ms) {
  const auto t0 = Clock::now();
  int s = connect_to(host, port);
  const int e = errno;
  const double ms = ms_since(t0);
  if (s >= 0) {
    sdp_close(s);
    return fail("unreachable", "connected to a host that does not exist");
  }
  if (e != EHOSTUNREACH && e != ETIMEDOUT && e != ENETUNREACH)
    return fail("unreachable", std::string("errno ") + std::strerror(e));
  if (ms > max_ms)
    return fail("unreachable", std::string(std::strerror(e)) + " after " + std::to_string(ms) +
                                   " ms (limit " + std::to_string(max_ms) + ")");
  return pass("unreachable", std::string(std::strerror(e)) + " after " +
                                 std::to_string(static_cast<int>(ms)) + " ms");
}

int reset(const std::string& host, int port, const std::string& flag, double max_ms) {
  int s = connect_to(host, port);
  if (s < 0) return fail("reset", std::string("connect: ") + std::strerror(errno));
  std::vector<std::uint8_t> buf(64 * 1024, 0x5A);
  // Blocking sends that give up after 200 ms, so that the flag file is checked meanwhile.
  timeval tv{0, 200'000};
  sdp_setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  std::uint64_t sent = 0;
  Clock::time_point seen{};
  bool flagged = false;
  const auto t0 = Clock::now();
  for (;;) {
    struct stat st {};
    if (!flagged && ::stat(flag.c_str(), &st) == 0) {
      flagged = true;
      seen = Clock::now();
    }
    if (flagged && ms_since(seen) > max_ms)
      return fail("reset", "no error " + std::to_string(max_ms) + " ms after the peer was killed");
    if (ms_since(t0) > 300'000) return fail("reset", "the peer was never killed");
    const ssize_t w = sdp_send(s, buf.data(), buf.size(), 0);
    if (w >= 0 || errno == EAGAIN) {
      if (sent == 0 && w > 0) {
        // Tell the lab script that the stream is running: it kills the peer after this.
        if (std::FILE* f = std::fopen((flag + ".streaming").c_str(), "w")) std::fclose(f);
      }
      sent += w > 0 ? static_cast<std::uint64_t>(w) : 0;
      continue;
    }
    const int e = errno;
    const std::string detail = sdptool::sdp_error(s, e);
    sdp_close(s);
    if (!flagged) {
      // The error may come before we notice the flag file: it must exist by now.
      if (::stat(flag.c_str(), &st) != 0)
        return fail("reset", "send failed before the peer was killed: " + detail);
      seen = Clock::now();
    }
    if (e != ECONNRESET) return fail("reset", "expected ECONNRESET, got " + detail);
    return pass("reset", "ECONNRESET " + std::to_string(static_cast<int>(ms_since(seen))) +
                             " ms after the kill was seen (" + std::to_string(sent) +
                             " bytes sent): " + detail);
  }
}

int source(const std::string& host, int port, int bytes) {
  int s = connect_to(host, port);
  if (s < 0) return fail("source", std::string("connect: ") + std::strerror(errno));
  std::vector<std::uint8_t> buf(64 * 1024);
  std::int64_t pos = 0;
  while (pos < bytes) {
    const auto want = static_cast<std::size_t>(
        std::min<std::int64_t>(static_cast<std::int64_t>(buf.size()), bytes - pos));
    const ssize_t r = sdp_recv(s, buf.data(), want, 0);
    if (r <= 0)
      return fail("source", "stream ended after " + std::to_string(pos) + " bytes: " +
                                (r == 0 ? std::string("EOF") : sdptool::sdp_error(s, errno)));
    for (ssize_t i = 0; i < r; ++i)
      if (buf[static_cast<std::size_t>(i)] != static_cast<std::uint8_t>((pos + i) % 251))
        return fail("source", "byte " + std::to_string(pos + i) + " breaks the pattern");
    pos += r;
  }
  // Closing with unread data aborts (as TCP's RST): the source sees a reset, we see no error.
  if (sdp_close(s) != 0) return fail("source", std::string("close: ") + std::strerror(errno));
  return pass("source", std::to_string(bytes) + " bytes of the source pattern, in order");
}

int abort_client(const std::string& host, int port, int bytes) {
  int s = connect_to(host, port);
  if (s < 0) return fail("abort", std::string("connect: ") + std::strerror(errno));
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(bytes), 0x41);
  if (!send_all(s, buf.data(), buf.size()))
    return fail("abort", std::string("send: ") + std::strerror(errno));
  linger l{1, 0};
  sdp_setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  if (sdp_close(s) != 0) return fail("abort", std::string("close: ") + std::strerror(errno));
  return pass("abort", "sent " + std::to_string(bytes) + " bytes, then closed with SO_LINGER 0");
}

int halfclose_server(int port) {
  auto ep = sdptool::resolve("", static_cast<std::uint16_t>(port), false, false);
  int l = sdp_socket(ep.domain, SOCK_STREAM, 0);
  if (l < 0 || sdp_bind(l, reinterpret_cast<sockaddr*>(&ep.addr), ep.len) != 0 ||
      sdp_listen(l, 4) != 0)
    return fail("halfclose-server", std::string("listen: ") + std::strerror(errno));
  std::printf("listening\n");
  std::fflush(stdout);
  // (1) the client half-closes first: read to EOF, then answer, then close.
  int c = sdp_accept(l, nullptr, nullptr);
  if (c < 0) return fail("halfclose-server", "accept 1");
  std::string got;
  char buf[4096];
  for (;;) {
    const ssize_t r = sdp_recv(c, buf, sizeof buf, 0);
    if (r < 0) return fail("halfclose-server", std::string("recv 1: ") + std::strerror(errno));
    if (r == 0) break;
    got.append(buf, static_cast<std::size_t>(r));
  }
  const std::string reply = "reply after your FIN: " + std::to_string(got.size());
  if (!send_all(c, reply.data(), reply.size()))
    return fail("halfclose-server",
                std::string("send after peer's DisConn: ") + std::strerror(errno));
  sdp_close(c);
  // (2) the server half-closes first: send, shut down, then keep reading until the client's EOF.
  c = sdp_accept(l, nullptr, nullptr);
  if (c < 0) return fail("halfclose-server", "accept 2");
  const std::string hello = "server speaks first and shuts down";
  if (!send_all(c, hello.data(), hello.size()) || sdp_shutdown(c, SHUT_WR) != 0)
    return fail("halfclose-server", "send/shutdown 2");
  got.clear();
  for (;;) {
    const ssize_t r = sdp_recv(c, buf, sizeof buf, 0);
    if (r < 0)
      return fail("halfclose-server",
                  std::string("recv after own shutdown: ") + std::strerror(errno));
    if (r == 0) break;
    got.append(buf, static_cast<std::size_t>(r));
  }
  sdp_close(c);
  sdp_close(l);
  if (got != std::string(100'000, 'c'))
    return fail("halfclose-server", "got " + std::to_string(got.size()) +
                                        " bytes after own "
                                        "shutdown, expected 100000");
  return pass("halfclose-server", "both half-close orders served");
}

int halfclose(const std::string& host, int port) {
  // (1) client half-closes first.
  int s = connect_to(host, port);
  if (s < 0) return fail("halfclose", "connect 1");
  const std::string req(50'000, 'q');
  if (!send_all(s, req.data(), req.size()) || sdp_shutdown(s, SHUT_WR) != 0)
    return fail("halfclose", "send/shutdown 1");
  if (sdp_send(s, "x", 1, 0) != -1 || errno != EPIPE)
    return fail("halfclose", "send after shutdown(SHUT_WR) did not fail with EPIPE");
  std::string got;
  char buf[4096];
  for (;;) {
    const ssize_t r = sdp_recv(s, buf, sizeof buf, 0);
    if (r < 0)
      return fail("halfclose", std::string("recv after own shutdown: ") + std::strerror(errno));
    if (r == 0) break;
    got.append(buf, static_cast<std::size_t>(r));
  }
  sdp_close(s);
  if (got != "reply after your FIN: 50000")
    return fail("halfclose", "case 1: unexpected reply '" + got + "'");
  // (2) server half-closes first; we read its EOF, then still send.
  s = connect_to(host, port);
  if (s < 0) return fail("halfclose", "connect 2");
  got.clear();
  for (;;) {
    const ssize_t r = sdp_recv(s, buf, sizeof buf, 0);
    if (r < 0) return fail("halfclose", std::string("recv 2: ") + std::strerror(errno));
    if (r == 0) break;
    got.append(buf, static_cast<std::size_t>(r));
  }
  if (got != "server speaks first and shuts down")
    return fail("halfclose", "case 2: unexpected data '" + got + "'");
  if ((sdp_poll_events(s) & POLLRDHUP) == 0)
    return fail("halfclose", "case 2: POLLRDHUP not reported after the peer's DisConn");
  const std::string more(100'000, 'c');
  if (!send_all(s, more.data(), more.size()))
    return fail("halfclose",
                std::string("send after the peer's shutdown: ") + std::strerror(errno));
  sdp_shutdown(s, SHUT_WR);
  if (sdp_close(s) != 0) return fail("halfclose", "close 2");
  return pass("halfclose",
              "client-first and server-first half-close both carried data after "
              "the first DisConn");
}

int usage() {
  std::fprintf(stderr,
               "usage: sdp-labcheck messages HOST PORT [N] | concurrent HOST PORT [N] |\n"
               "       refused HOST PORT [MAX_MS] | unreachable HOST PORT [MAX_MS] | reset HOST "
               "PORT FLAGFILE [MAX_MS] |\n"
               "       source HOST PORT [BYTES] | abort HOST PORT [BYTES] | halfclose-server PORT "
               "| halfclose HOST PORT\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string cmd = argv[1];
  auto arg_int = [&](int i, int dflt) { return argc > i ? std::atoi(argv[i]) : dflt; };
  try {
    if (cmd == "halfclose-server") return halfclose_server(std::atoi(argv[2]));
    if (argc < 4) return usage();
    const std::string host = argv[2];
    const int port = std::atoi(argv[3]);
    if (cmd == "messages") return messages(host, port, arg_int(4, 10'000));
    if (cmd == "concurrent") return concurrent(host, port, arg_int(4, 100));
    if (cmd == "refused") return refused(host, port, arg_int(4, 1000));
    if (cmd == "unreachable") return unreachable(host, port, arg_int(4, 10000));
    if (cmd == "reset" && argc >= 5) return reset(host, port, argv[4], arg_int(5, 5000));
    if (cmd == "halfclose") return halfclose(host, port);
    if (cmd == "abort") return abort_client(host, port, arg_int(4, 65536));
    if (cmd == "source") return source(host, port, arg_int(4, 1 << 20));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sdp-labcheck: %s\n", e.what());
    return 2;
  }
  return usage();
}

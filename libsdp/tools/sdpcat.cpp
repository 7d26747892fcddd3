// sdpcat: netcat over SDP. Connects to (or listens for) one SDP peer, copies stdin to the peer and
// the peer's bytes to stdout; half-closes when stdin ends and exits when both directions are done.
#include <poll.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "sdp/sdp.h"
#include "tool_common.hpp"

namespace {

bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// Fills buf from fd until it is full or the input ends; returns bytes read, -1 on error.
ssize_t read_full(int fd, char* buf, std::size_t n) {
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::read(fd, buf + got, n - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  return static_cast<ssize_t>(got);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "sdpcat: netcat over the Sockets Direct Protocol (libsdp). Copies stdin to the peer and "
      "the peer's bytes to stdout; at the end of stdin it half-closes (SDP DisConn) and keeps "
      "reading until the peer closes too.\n\n"
      "  sdpcat -l 5000 > out          listen on port 5000 (any address), one connection\n"
      "  sdpcat 10.99.0.1 5000 < in    connect\n"
      "  sdpcat --native 10.99.0.1 5000   native SDP service ID 0x10000|port (AF_IB)\n",
      "sdpcat"};
  bool listen = false, native = false, ipv6 = false, stats = false, quiet = false;
  bool no_stdin = false, sink_adverts = false;
  std::vector<std::string> pos;
  std::string host;
  int port = -1;
  long long zcopy = -1;
  int recv_bufs = 0, recv_size = 0;
  std::size_t chunk = 1 << 20;
  app.add_flag("-l,--listen", listen, "Listen for one connection instead of connecting");
  app.add_flag("--native", native,
               "Native SDP service ID through AF_IB addressing (default: rdma_cm IP CM service)");
  app.add_flag("-6", ipv6, "Prefer IPv6 when resolving HOST");
  app.add_option("--zcopy-threshold", zcopy,
                 "Sends of at least this many bytes go zero-copy (peer RDMA-reads our buffer); "
                 "0 turns ZCopy off (default: libsdp's, 65536)")
      ->check(CLI::Range(0LL, 1LL << 30));
  app.add_option("--chunk", chunk, "Bytes read from stdin per send (default 1 MiB)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
  app.add_option("--recv-bufs", recv_bufs, "Receive buffers to post (the peer's credits)")
      ->check(CLI::Range(2, 4096));
  app.add_option("--recv-size", recv_size, "Bytes per receive buffer, BSDH included")
      ->check(CLI::Range(64, 1 << 20));
  app.add_flag("--sink-adverts", sink_adverts,
               "As data sink, ask for Pipelined mode (SinkAvail + RDMA WRITE)");
  app.add_flag("--stats", stats,
               "Print the connection's SDP statistics (JSON) to stderr at the end");
  app.add_flag("-n,--no-stdin", no_stdin, "Send nothing: half-close at once and only receive");
  app.add_flag("-q,--quiet", quiet, "No progress messages on stderr");
  app.add_option("args", pos, "[HOST] PORT: HOST to connect to (or, with -l, to listen on)")
      ->required()
      ->expected(1, 2);
  CLI11_PARSE(app, argc, argv);
  // One positional means PORT (listen on any address); two mean HOST PORT.
  if (pos.size() == 2) host = pos[0];
  try {
    std::size_t used = 0;
    port = std::stoi(pos.back(), &used);
    if (used != pos.back().size()) throw std::invalid_argument("trailing characters");
  } catch (...) {
    std::fprintf(stderr, "sdpcat: bad port '%s'\n", pos.back().c_str());
    return 2;
  }
  if (port < 1 || port > 65535) {
    std::fprintf(stderr, "sdpcat: port %d out of range 1..65535\n", port);
    return 2;
  }
  if (!listen && host.empty()) {
    std::fprintf(stderr, "sdpcat: connecting needs HOST PORT (or use -l to listen)\n");
    return 2;
  }
  sdptool::Endpoint ep;
  try {
    ep = sdptool::resolve(host, static_cast<std::uint16_t>(port), native, ipv6);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sdpcat: %s\n", e.what());
    return 2;
  }
  int s = sdp_socket(ep.domain, SOCK_STREAM, 0);
  if (s < 0) {
    std::fprintf(stderr, "sdpcat: socket: %s\n", std::strerror(errno));
    return 1;
  }
  auto setopt = [&](int name, long long v) {
    const int x = static_cast<int>(v);
    if (sdp_setsockopt(s, SOL_SDP, name, &x, sizeof x) != 0)
      std::fprintf(stderr, "sdpcat: setsockopt: %s\n", std::strerror(errno));
  };
  if (zcopy >= 0) setopt(SDP_ZCOPY_THRESHOLD, zcopy);
  if (recv_bufs > 0) setopt(SDP_RECV_BUFS, recv_bufs);
  if (recv_size > 0) setopt(SDP_RECV_SIZE, recv_size);
  if (sink_adverts) setopt(SDP_SINK_ADVERTS, 1);

  int c = -1;
  const auto t0 = std::chrono::steady_clock::now();
  if (listen) {
    if (sdp_bind(s, reinterpret_cast<sockaddr*>(&ep.addr), ep.len) != 0 || sdp_listen(s, 1) != 0) {
      std::fprintf(stderr, "sdpcat: listen on %s: %s\n",
                   sdptool::to_string(reinterpret_cast<sockaddr*>(&ep.addr)).c_str(),
                   sdptool::sdp_error(s, errno).c_str());
      return 1;
    }
    if (!quiet) std::fprintf(stderr, "sdpcat: listening on port %d\n", port);
    sockaddr_storage peer{};
    socklen_t plen = sizeof peer;
    c = sdp_accept(s, reinterpret_cast<sockaddr*>(&peer), &plen);
    if (c < 0) {
      std::fprintf(stderr, "sdpcat: accept: %s\n", sdptool::sdp_error(s, errno).c_str());
      return 1;
    }
    sdp_close(s);
    if (!quiet)
      std::fprintf(stderr, "sdpcat: connection from %s\n",
                   sdptool::to_string(reinterpret_cast<sockaddr*>(&peer)).c_str());
  } else {
    if (sdp_connect(s, reinterpret_cast<sockaddr*>(&ep.addr), ep.len) != 0) {
      const int e = errno;
      std::fprintf(stderr, "sdpcat: connect to %s: %s\n",
                   sdptool::to_string(reinterpret_cast<sockaddr*>(&ep.addr)).c_str(),
                   sdptool::sdp_error(s, e).c_str());
      sdp_close(s);
      return 1;
    }
    c = s;
    if (!quiet) std::fprintf(stderr, "sdpcat: connected\n");
  }
  // stdin -> peer on a thread (blocking sends, so large ones can go zero-copy).
  std::atomic<int> send_err{0};
  std::atomic<unsigned long long> sent{0};
  std::thread tx([&] {
    if (!no_stdin) {
      std::vector<char> buf(chunk);
      for (;;) {
        const ssize_t n = read_full(0, buf.data(), buf.size());
        if (n < 0) {
          send_err = errno;
          break;
        }
        if (n == 0) break;
        if (sdp_send(c, buf.data(), static_cast<std::size_t>(n), 0) != n) {
          send_err = errno != 0 ? errno : EIO;
          break;
        }
        sent += static_cast<unsigned long long>(n);
      }
    }
    if (send_err == 0) sdp_shutdown(c, SHUT_WR);
  });

  int rc = 0;
  unsigned long long received = 0;
  std::vector<char> buf(1 << 20);
  for (;;) {
    const ssize_t n = sdp_recv(c, buf.data(), buf.size(), 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "sdpcat: recv: %s\n", sdptool::sdp_error(c, errno).c_str());
      rc = 1;
      break;
    }
    if (!write_all(1, buf.data(), static_cast<std::size_t>(n))) {
      std::fprintf(stderr, "sdpcat: write to stdout: %s\n", std::strerror(errno));
      rc = 1;
      break;
    }
    received += static_cast<unsigned long long>(n);
  }
  if (rc != 0) {
    // Unblock the sender: an abortive close makes its send fail.
    linger l{1, 0};
    sdp_setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    sdp_shutdown(c, SHUT_RDWR);
  }
  tx.join();
  if (send_err != 0) {
    std::fprintf(stderr, "sdpcat: send: %s\n", sdptool::sdp_error(c, send_err).c_str());
    rc = 1;
  }
  if (stats) {
    std::string j(64 * 1024, '\0');
    const int n = sdp_stats_json(c, j.data(), j.size());
    if (n > 0) std::fprintf(stderr, "%s\n", j.c_str());
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (sdp_close(c) != 0 && rc == 0) {
    std::fprintf(stderr, "sdpcat: close: %s\n", std::strerror(errno));
    rc = 1;
  }
  if (!quiet)
    std::fprintf(stderr, "sdpcat: sent %llu bytes, received %llu bytes in %.2f s\n",
                 static_cast<unsigned long long>(sent), received, secs);
  return rc;
}

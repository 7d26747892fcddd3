// sdp-testd: the reference SDP test peer. Runs the services the conformance suite (and the lab
// tests) drive, each on its own port, every connection on its own thread:
//
//   echo     port BASE+7   returns every byte; half-closes after the peer's DisConn
//   discard  port BASE+9   reads and drops everything until the peer's DisConn, then closes
//   source   port BASE+19  sends a byte pattern (byte i = i mod 251) until the peer goes away,
//                          or exactly --source-bytes bytes and then closes
//
// BASE is --port-base (default 7000: echo 7007, discard 7009, source 7019).
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sdp/sdp.h"
#include "tool_common.hpp"

namespace {

enum class Service { Echo, Discard, Source };
const char* name(Service s) {
  return s == Service::Echo ? "echo" : s == Service::Discard ? "discard" : "source";
}

struct Config {
  bool verbose = false;
  bool stats = false;
  unsigned long long source_bytes = 0;
  std::size_t buf = 1 << 20;
};

std::mutex g_log_mu;
std::atomic<unsigned long long> g_conns{0};

void log(const char* fmt, const std::string& a, const std::string& b = "") {
  std::lock_guard lk(g_log_mu);
  std::fprintf(stderr, fmt, a.c_str(), b.c_str());
  std::fflush(stderr);
}

void serve(Service svc, int c, const Config& cfg) {
  std::vector<unsigned char> buf(cfg.buf);
  unsigned long long in = 0, out = 0;
  std::string err;
  if (svc == Service::Source) {
    unsigned long long pos = 0;
    for (;;) {
      std::size_t n = buf.size();
      if (cfg.source_bytes != 0) {
        if (pos >= cfg.source_bytes) break;
        n = static_cast<std::size_t>(std::min<unsigned long long>(n, cfg.source_bytes - pos));
      }
      for (std::size_t i = 0; i < n; ++i) buf[i] = static_cast<unsigned char>((pos + i) % 251);
      const ssize_t w = sdp_send(c, buf.data(), n, 0);
      if (w < 0) {
        if (cfg.source_bytes != 0) err = sdptool::sdp_error(c, errno);
        break;
      }
      pos += static_cast<unsigned long long>(w);
      out += static_cast<unsigned long long>(w);
    }
    sdp_shutdown(c, SHUT_WR);
    // Drain until the peer closes, so that our close is graceful.
    while (sdp_recv(c, buf.data(), buf.size(), 0) > 0) {
    }
  } else {
    for (;;) {
      const ssize_t n = sdp_recv(c, buf.data(), buf.size(), 0);
      if (n == 0) break;
      if (n < 0) {
        err = sdptool::sdp_error(c, errno);
        break;
      }
      in += static_cast<unsigned long long>(n);
      if (svc == Service::Echo) {
        if (sdp_send(c, buf.data(), static_cast<std::size_t>(n), 0) != n) {
          err = sdptool::sdp_error(c, errno);
          break;
        }
        out += static_cast<unsigned long long>(n);
      }
    }
    if (err.empty()) sdp_shutdown(c, SHUT_WR);
  }
  if (cfg.stats) {
    std::string j(64 * 1024, '\0');
    if (sdp_stats_json(c, j.data(), j.size()) > 0) log("%s%s\n", j.c_str());
  }
  sdp_close(c);
  if (cfg.verbose || !err.empty())
    log("sdp-testd: %s\n", std::string(name(svc)) + ": in " + std::to_string(in) + " out " +
                               std::to_string(out) + (err.empty() ? "" : " error: " + err));
}

int open_listener(const sdptool::Endpoint& ep, const char* what, long long zcopy) {
  int s = sdp_socket(ep.domain, SOCK_STREAM, 0);
  if (s < 0) {
    std::fprintf(stderr, "sdp-testd: %s: socket: %s\n", what, std::strerror(errno));
    return -1;
  }
  if (zcopy >= 0) {
    // Accepted connections inherit the listener's options.
    const int z = static_cast<int>(zcopy);
    sdp_setsockopt(s, SOL_SDP, SDP_ZCOPY_THRESHOLD, &z, sizeof z);
  }
  if (sdp_bind(s, reinterpret_cast<const sockaddr*>(&ep.addr), ep.len) != 0 ||
      sdp_listen(s, 1024) != 0) {
    std::fprintf(stderr, "sdp-testd: %s: listen on %s: %s\n", what,
                 sdptool::to_string(reinterpret_cast<const sockaddr*>(&ep.addr)).c_str(),
                 sdptool::sdp_error(s, errno).c_str());
    sdp_close(s);
    return -1;
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "sdp-testd: the reference SDP test peer (echo, discard and source services), each "
      "connection served on its own thread until the process is stopped.\n"
      "Ports: echo BASE+7, discard BASE+9, source BASE+19 (BASE = --port-base, default 7000).",
      "sdp-testd"};
  int base = 7000;
  std::string bind_host;
  bool native = false, ipv6 = false;
  long long zcopy = -1;
  Config cfg;
  long long max_conns = 0;
  app.add_option("--port-base", base, "Base port (default 7000)")->check(CLI::Range(0, 65535 - 19));
  app.add_option("--bind", bind_host, "Address to listen on (default: any)");
  app.add_flag("--native", native, "Native SDP service IDs through AF_IB (default: IP CM service)");
  app.add_flag("-6", ipv6, "Listen on IPv6");
  app.add_option("--zcopy-threshold", zcopy, "ZCopy threshold for sends (0: off)")
      ->check(CLI::Range(0LL, 1LL << 30));
  app.add_option("--source-bytes", cfg.source_bytes,
                 "source: send exactly this many bytes, then close (default: until the peer "
                 "goes away)");
  app.add_option("--max-conns", max_conns,
                 "Exit after serving this many connections in all (default: run forever)");
  app.add_flag("-v,--verbose", cfg.verbose, "One line per finished connection");
  app.add_flag("--stats", cfg.stats, "Print each connection's SDP statistics (JSON) at its end");
  CLI11_PARSE(app, argc, argv);
  signal(SIGPIPE, SIG_IGN);

  const Service svcs[] = {Service::Echo, Service::Discard, Service::Source};
  const int offs[] = {7, 9, 19};
  std::vector<std::thread> loops;
  std::atomic<long long> served{0};
  for (int i = 0; i < 3; ++i) {
    sdptool::Endpoint ep;
    try {
      ep = sdptool::resolve(bind_host, static_cast<std::uint16_t>(base + offs[i]), native, ipv6);
      if (bind_host.empty() && !native && ipv6) ep.domain = AF_INET6;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "sdp-testd: %s\n", e.what());
      return 2;
    }
    const int s = open_listener(ep, name(svcs[i]), zcopy);
    if (s < 0) return 1;
    std::fprintf(stderr, "sdp-testd: %s on port %d\n", name(svcs[i]), base + offs[i]);
    loops.emplace_back([&, s, svc = svcs[i]] {
      for (;;) {
        const int c = sdp_accept(s, nullptr, nullptr);
        if (c < 0) {
          if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) continue;
          std::fprintf(stderr, "sdp-testd: accept: %s\n", std::strerror(errno));
          std::exit(1);
        }
        ++g_conns;
        std::thread([svc, c, &cfg, &served, max_conns] {
          serve(svc, c, cfg);
          if (max_conns > 0 && ++served >= max_conns) std::exit(0);
        }).detach();
      }
    });
  }
  std::fflush(stderr);
  for (auto& t : loops) t.join();
  return 0;
}

#include "sdp/pipe_driver.hpp"

#include <algorithm>
#include <cerrno>
#include <random>

namespace sdp {

std::string describe(PipePair& pipe) {
  std::string s;
  for (int i = 0; i < 2; ++i) {
    Engine& e = pipe.engine(i);
    s += (i == 0 ? "active: " : "passive: ");
    s += std::string(state_name(e.state()));
    s += " credits=" + std::to_string(e.send_credits()) +
         " posted=" + std::to_string(e.posted_recvs()) +
         " readable=" + std::to_string(e.readable_bytes()) +
         " zcopy_busy=" + std::to_string(e.zcopy_busy()) +
         " writable=" + std::to_string(e.writable()) +
         " peer_closed=" + std::to_string(e.peer_closed_send());
    if (e.state() == State::Reset) s += " reset: " + std::string(e.reset_reason());
    s += "\n";
  }
  for (const auto& err : pipe.errors()) s += "pipe error: " + err + "\n";
  return s;
}

namespace {

struct App {
  std::span<const std::uint8_t> out;
  std::size_t sent = 0;
  bool shut = false;
  bool eof = false;
  std::vector<std::uint8_t> buf;
};

}  // namespace

DriverResult drive_pipe(PipePair& pipe, std::span<const std::uint8_t> a_to_b,
                        std::span<const std::uint8_t> b_to_a, const DriverOptions& opt) {
  DriverResult res;
  std::mt19937_64 rng(opt.seed);
  App app[2];
  app[0].out = a_to_b;
  app[1].out = b_to_a;
  std::vector<std::uint8_t> rbuf(opt.max_read);
  std::uint64_t now = 0;
  auto pick = [&](std::size_t lo, std::size_t hi) {
    return std::uniform_int_distribution<std::size_t>(lo, hi)(rng);
  };
  auto fail = [&](std::string why) {
    res.ok = false;
    res.failure = std::move(why) + "\n" + describe(pipe);
    return res;
  };

  // One application step on side i: try to write, then to read. True if anything moved.
  auto app_step = [&](int i) {
    Engine& e = pipe.engine(i);
    App& a = app[i];
    bool moved = false;
    if (a.sent < a.out.size() && e.writable()) {
      std::size_t n = std::min(pick(opt.min_write, opt.max_write), a.out.size() - a.sent);
      const bool oob =
          opt.use_oob && n < 4096 && res.oob_received[1 - i] == res.oob_sent[i] && pick(0, 9) == 0;
      IoResult r = e.send(a.out.subspan(a.sent, n), oob);
      if (r.error != 0 && r.error != EAGAIN) return false;
      if (oob && r.bytes == n) res.oob_sent[i]++;
      if (r.zcopy) res.zcopy_sends[i]++;
      a.sent += r.bytes;
      moved = r.bytes != 0;
    }
    if (a.sent == a.out.size() && !a.shut && !e.zcopy_busy()) {
      e.shutdown_send();
      a.shut = true;
      moved = true;
    }
    if (!a.eof) {
      if (e.oob_pending() && e.at_oob_mark()) {
        std::uint8_t b = 0;
        if (e.recv_oob(b).error == 0) {
          a.buf.push_back(b);  // the urgent byte, kept in stream position for the check
          res.oob_received[i]++;
          moved = true;
        }
      }
      const std::size_t want = pick(opt.min_read, opt.max_read);
      IoResult r = e.recv({rbuf.data(), want});
      if (r.bytes != 0) {
        a.buf.insert(a.buf.end(), rbuf.begin(),
                     rbuf.begin() + static_cast<std::ptrdiff_t>(r.bytes));
        moved = true;
      } else if (r.eof) {
        a.eof = true;
        moved = true;
      }
    }
    pipe.drain(i);
    return moved;
  };

  std::uint64_t stuck = 0;
  for (res.iterations = 0; res.iterations < opt.max_iterations; ++res.iterations) {
    if (!pipe.errors().empty()) return fail("pipe error");
    if (pipe.reset(0) || pipe.reset(1)) return fail("a connection was reset");
    const bool apps_done = app[0].eof && app[1].eof && app[0].shut && app[1].shut;
    if (apps_done && pipe.idle() && pipe.closed(0) && pipe.closed(1)) break;
    bool moved = false;
    if (opt.random_schedule) {
      const std::size_t c = pick(0, 5);
      if (c < 2)
        moved = app_step(static_cast<int>(c));
      else
        moved = pipe.step(rng);
      if (!moved) moved = pipe.step(rng) || app_step(0) || app_step(1);
    } else {
      moved = app_step(0);
      moved = app_step(1) || moved;
      if (!pipe.idle()) {
        pipe.run();
        moved = true;
      }
    }
    if (moved) {
      stuck = 0;
      continue;
    }
    // Nothing can move: only a timer can help (cancel timeouts, close timeouts).
    if (++stuck > 3) return fail("deadlock: nothing can progress");
    now += 1000;
    pipe.tick(now);
  }
  if (res.iterations >= opt.max_iterations) return fail("did not finish within the step bound");
  res.received[0] = std::move(app[0].buf);
  res.received[1] = std::move(app[1].buf);
  // received[1] is what the passive side read: the active side's stream.
  if (res.received[1].size() != a_to_b.size() ||
      !std::equal(a_to_b.begin(), a_to_b.end(), res.received[1].begin()))
    return fail("passive side read different bytes than the active side wrote");
  if (res.received[0].size() != b_to_a.size() ||
      !std::equal(b_to_a.begin(), b_to_a.end(), res.received[0].begin()))
    return fail("active side read different bytes than the passive side wrote");
  res.ok = true;
  return res;
}

}  // namespace sdp

// The pipe fabric: two SDP engines joined in memory by a simulated RC queue pair.
//
// It executes the engines' actions the way an RC QP would and enforces RC's rules, recording any
// breach in errors(): a SEND with no posted receive (the RNR a real HCA would raise with
// rnr_retry 0), a SEND longer than the receive buffer, local addresses outside a registered
// region, RDMA outside the remote grant (wrong R_Key, out of range, missing access right, or after
// deregistration). Operations in each direction are delivered in posting order; `step()` lets a
// test interleave deliveries, completions and application calls at random.
//
// It also monitors credits independently of the engines: from the BSDHs it has delivered to each
// side, it recomputes that side's send credits when the side posts a SEND and records a violation
// if a message went out without a credit, or used the last credit for anything but a message
// that carries no payload and gives the peer more credits (CA4-82).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "sdp/engine.hpp"

namespace sdp {

class PipePair {
 public:
  PipePair(const EngineConfig& active_cfg, const EngineConfig& passive_cfg);

  Engine& active() noexcept { return side_[0].engine; }
  Engine& passive() noexcept { return side_[1].engine; }
  Engine& engine(int i) noexcept { return side_[i].engine; }

  // Runs the CM exchange (Hello in the REQ, HelloAck in the REP). False when the passive side
  // rejected the Hello (reject_reason() says why) or the active side refused the HelloAck.
  bool connect(const Engine::HelloParams& p = {});

  // Executes the actions an engine emitted; call after driving an engine directly.
  void drain(int side) {
    if (!side_[side].engine.actions().empty()) drain_actions(side);
  }
  void drain_all() {
    drain(0);
    drain(1);
  }
  // Delivers everything pending, in order, until nothing moves (bounded; a livelock is an error).
  void run();
  // One random pending delivery or completion. False when nothing is pending.
  bool step(std::mt19937_64& rng);
  bool idle() const noexcept;
  // Advances both engines' clocks.
  void tick(std::uint64_t now_ms);

  const std::vector<std::string>& errors() const noexcept { return errors_; }
  std::uint64_t access_violations() const noexcept { return access_violations_; }
  std::uint64_t keepalives(int side) const noexcept { return side_[side].keepalives; }
  std::uint64_t zcopy_done(int side) const noexcept { return side_[side].zcopy_done; }
  bool established(int side) const noexcept { return side_[side].established; }
  bool closed(int side) const noexcept { return side_[side].closed; }
  bool reset(int side) const noexcept { return side_[side].reset; }
  std::size_t registered_remote_regions(int side) const noexcept;

  // The independent credit monitor (on by default). Benchmarks turn it off to time the engine.
  void set_credit_monitor(bool on) noexcept { monitor_ = on; }

  // Called with every SEND payload as it crosses the wire (side = sender).
  std::function<void(int side, std::span<const std::uint8_t> msg)> on_wire;

  // Test hooks: act as a (possibly malicious) peer on the wire.
  // Performs an RDMA READ from `side`'s memory as its peer would: true if RC allowed it.
  bool peer_rdma_read(int side, std::uint64_t va, std::uint32_t rkey, std::span<std::uint8_t> out);
  bool peer_rdma_write(int side, std::uint64_t va, std::uint32_t rkey,
                       std::span<const std::uint8_t> in);
  // Queues a raw SEND from `from` to its peer, bypassing `from`'s engine (a buggy or hostile
  // peer). It is unsignaled: no send completion.
  void inject_send(int from, std::span<const std::uint8_t> msg);

 private:
  // A FIFO on a power-of-two ring that grows when full (std::deque costs more per element).
  template <class T>
  class Fifo {
   public:
    bool empty() const noexcept { return head_ == tail_; }
    std::size_t size() const noexcept { return tail_ - head_; }
    T& front() noexcept { return buf_[head_ & mask_]; }
    void pop_front() noexcept { ++head_; }
    void push_back(const T& v) {
      if (tail_ - head_ == buf_.size()) grow();
      buf_[tail_++ & mask_] = v;
    }

   private:
    void grow() {
      std::vector<T> n(buf_.empty() ? 64 : buf_.size() * 2);
      for (std::size_t i = head_, k = 0; i != tail_; ++i, ++k) n[k] = buf_[i & mask_];
      tail_ -= head_;
      head_ = 0;
      buf_ = std::move(n);
      mask_ = buf_.size() - 1;
    }
    std::vector<T> buf_;
    std::size_t head_ = 0, tail_ = 0, mask_ = 0;
  };
  struct Region {
    std::uint64_t id;
    std::uint8_t* addr;
    std::size_t len;
    std::uint8_t access;
    std::uint32_t rkey;
  };
  struct Recv {
    std::uint64_t wr_id;
    std::uint8_t* addr;
    std::uint32_t len;
  };
  enum class OpType : std::uint8_t { Send, Read, Write, Disconnect };
  struct Op {
    OpType type;
    std::uint64_t wr_id;
    std::uint8_t* addr;
    std::uint32_t len;
    std::uint64_t remote_va;
    std::uint32_t rkey;
    bool signaled = true;  // Send: produce a send completion
  };
  enum class CqType : std::uint8_t { SendDone, RecvDone, RdmaDone, Error, CmDisconnect };
  struct Cqe {
    CqType type;
    std::uint64_t wr_id;
    std::uint32_t len;
    const std::uint8_t* addr;  // RecvDone: the receive buffer
  };
  struct Side {
    explicit Side(Role r, const EngineConfig& c) : engine(r, c), cfg(c) {}
    Engine engine;
    EngineConfig cfg;
    std::vector<Region> regions;
    Fifo<Recv> rq;
    Fifo<Op> out;
    Fifo<Cqe> cq;
    std::size_t last_region = 0;  // local_ok() checks the last region hit first
    // credit monitor: what this side has received from its peer
    std::uint32_t mon_bufs = 0, mon_ack = 0, mon_last_mseq = 0;        // from the peer's messages
    std::uint32_t mon_rx_mseq = 0, mon_adv_bufs = 0, mon_adv_ack = 0;  // CA4-82 bookkeeping
    std::uint64_t keepalives = 0, zcopy_done = 0;
    bool established = false, closed = false, reset = false, dead = false;
  };

  bool local_ok(Side& s, const std::uint8_t* addr, std::size_t len) const noexcept;
  // The address `va` names inside a region `s` granted with R_Key `rkey` and the `need` rights
  // for `len` bytes, or nullptr when RC would answer with a remote access error.
  std::uint8_t* granted(const Side& s, std::uint64_t va, std::size_t len, std::uint32_t rkey,
                        std::uint8_t need) const noexcept;
  void error(std::string msg);
  void drain_actions(int side);
  void deliver(int from);
  void complete(int side);
  void monitor_post(int side, const std::uint8_t* msg, std::uint32_t len);

  Side side_[2];
  std::deque<std::vector<std::uint8_t>> injected_;
  std::vector<std::string> errors_;
  std::uint64_t access_violations_ = 0;
  std::uint32_t next_rkey_ = 0x1000;
  bool monitor_ = true;
};

}  // namespace sdp

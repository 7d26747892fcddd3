// --peer builtin: libsdp's engine as the peer under test, joined to the raw endpoint by an
// in-memory RC queue pair, on a virtual clock (timers fire as soon as nothing else is pending).
//
// The simulation keeps RC's rules on both sides: a SEND needs a posted receive at the other end
// (else RNR: rnr_retry is 0 for SDP) that is large enough; RDMA must fall inside a region the
// target registered with the right access and an R_Key still valid; a remote access error breaks
// both queue pairs. The peer's application runs the service of the peer contract (echo, discard,
// source) and the scenario's app actions.
#include <algorithm>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "sdp/engine.hpp"
#include "sdp/wire.hpp"
#include "transport.hpp"

namespace conformance {

namespace {

using sdp::Action;
using sdp::ActionType;
using sdp::Engine;
using sdp::EngineConfig;

sdp::EngineConfig engine_config(const PeerConfig& pc) {
  EngineConfig c;
  if (pc.has_recv_bufs()) c.recv_bufs = static_cast<std::uint16_t>(pc.recv_bufs());
  if (pc.has_recv_size()) {
    c.recv_size = pc.recv_size();
    c.max_recv_size = std::max(c.max_recv_size, pc.recv_size());
  }
  if (pc.has_zcopy_threshold()) c.zcopy_threshold = pc.zcopy_threshold();
  if (pc.has_accept_zcopy()) c.accept_zcopy = pc.accept_zcopy();
  if (pc.has_sink_adverts()) c.sink_adverts = pc.sink_adverts();
  if (pc.has_keepalive_idle_ms()) c.keepalive_idle_ms = pc.keepalive_idle_ms();
  if (pc.has_zcopy_cancel_ms()) c.zcopy_cancel_ms = pc.zcopy_cancel_ms();
  if (pc.has_cancel_response_ms()) c.cancel_response_ms = pc.cancel_response_ms();
  if (pc.has_disconnect_timeout_ms()) c.disconnect_timeout_ms = pc.disconnect_timeout_ms();
  if (pc.has_oob_inline()) c.oob_inline = pc.oob_inline();
  if (pc.has_credit_reserve()) c.credit_reserve = static_cast<std::uint16_t>(pc.credit_reserve());
  if (pc.has_max_adverts()) c.max_adverts = static_cast<std::uint8_t>(pc.max_adverts());
  if (pc.has_desired_peer_recv_size()) c.desired_peer_recv_size = pc.desired_peer_recv_size();
  return c;
}

class Builtin final : public Transport {
 public:
  explicit Builtin(const PeerConfig& pc) : cfg_(engine_config(pc)) {
    // A pattern buffer any source write can take a slice of: byte j = j mod 251.
    pattern_.resize(251 + kChunk);
    for (std::size_t j = 0; j < pattern_.size(); ++j)
      pattern_[j] = static_cast<std::uint8_t>(j % 251);
  }

  std::string describe() const override { return "builtin (libsdp engine over the pipe fabric)"; }
  bool builtin() const noexcept override { return true; }
  std::uint64_t now_ms() override { return now_; }

  std::string peer_state() const override {
    if (!engine_) return "never connected";
    std::string s = std::string("engine ") + std::string(sdp::state_name(engine_->state()));
    if (!engine_->reset_reason().empty()) s += " (" + std::string(engine_->reset_reason()) + ")";
    return s;
  }

  bool connect(Service service, bool native_cm, std::span<const std::uint8_t> pd,
               std::string& error) override {
    const std::size_t area =
        native_cm ? sdp::wire::kHelloMessageSize : sdp::wire::kIpCmPrivateDataSize;
    if (pd.size() > area) {
      error = "private data of " + std::to_string(pd.size()) + " bytes exceeds the " +
              std::to_string(area) + " the CM REQ holds in this mode";
      return false;
    }
    service_ = service;
    engine_ = std::make_unique<Engine>(sdp::Role::Passive, cfg_);
    std::vector<std::uint8_t> req(area, 0);
    std::copy(pd.begin(), pd.end(), req.begin());
    auto ack = engine_->accept(req);
    if (ack.empty()) {
      push({Event::Kind::Rejected, 0, {}, "CM REJ: " + std::string(engine_->reject_reason())});
      engine_.reset();
      return true;
    }
    std::vector<std::uint8_t> rep(sdp::wire::kHelloAckMessageSize, 0);
    std::copy(ack.begin(), ack.end(), rep.begin());
    // The REP reaches us before anything the peer sends on the QP.
    push({Event::Kind::Established, 0, rep, {}});
    up_ = true;
    drain();
    return true;
  }

  bool await_peer_connect(Service service, bool compact, std::string& error) override {
    (void)error;
    service_ = service;
    engine_ = std::make_unique<Engine>(sdp::Role::Active, cfg_);
    Engine::HelloParams hp;
    hp.compact = compact;
    hp.local_port = 40001;
    hp.src_ip[12] = 10, hp.src_ip[13] = 99, hp.src_ip[15] = 1;
    hp.dst_ip[12] = 10, hp.dst_ip[13] = 99, hp.dst_ip[15] = 2;
    auto hello = engine_->connect(hp);
    std::vector<std::uint8_t> req(
        compact ? sdp::wire::kIpCmPrivateDataSize : sdp::wire::kHelloMessageSize, 0);
    std::copy(hello.begin(), hello.end(), req.begin());
    drain();
    push({Event::Kind::HelloRequest, 0, req, {}});
    return true;
  }

  void answer_peer(std::span<const std::uint8_t> pd, bool reject) override {
    if (!engine_) return;
    if (reject) {
      engine_->abort("CM REJ from the raw endpoint");
      engine_->clear_actions();
      engine_.reset();
      return;
    }
    std::vector<std::uint8_t> rep(std::max(pd.size(), sdp::wire::kHelloAckMessageSize), 0);
    std::copy(pd.begin(), pd.end(), rep.begin());
    const bool ok = engine_->on_hello_ack(rep);
    drain();
    if (!ok) {
      push({Event::Kind::PeerRefused, 0, {}, std::string(engine_->reset_reason())});
      return;
    }
    up_ = true;
    push({Event::Kind::Established, 0, {}, {}});
  }

  bool post_recv(std::uint32_t count, std::uint32_t size, std::string& error) override {
    (void)error;
    for (std::uint32_t i = 0; i < count; ++i) raw_rq_.push_back(size);
    return true;
  }

  bool send(std::span<const std::uint8_t> bytes, std::string& error) override {
    (void)error;
    if (raw_dead_) {
      push({Event::Kind::SendError, 0, {}, "our QP is in the error state (flushed)"});
      return true;
    }
    if (!engine_ || !up_ || engine_dead_) return true;  // the peer's QP is gone: flushed silently
    if (eng_rq_.empty()) {
      // RNR NAK; with rnr_retry 0 our QP goes to error.
      raw_dead_ = true;
      push({Event::Kind::SendError,
            0,
            {},
            "RNR: the peer had no receive posted for our SEND (credit overrun)"});
      return true;
    }
    const Recv r = eng_rq_.front();
    eng_rq_.pop_front();
    if (bytes.size() > r.len) {
      // Local length error at the responder; both QPs break.
      raw_dead_ = true;
      push({Event::Kind::SendError,
            0,
            {},
            "remote invalid request: a " + std::to_string(bytes.size()) +
                "-byte SEND into the peer's " + std::to_string(r.len) + "-byte receive"});
      engine_->on_completion_error(r.wr_id, "local length error");
      after_engine_call();
      return true;
    }
    std::memcpy(r.addr, bytes.data(), bytes.size());
    engine_->on_recv(r.wr_id, static_cast<std::uint32_t>(bytes.size()));
    after_engine_call();
    return true;
  }

  std::optional<LocalRegion> register_region(std::uint32_t len, bool rr, bool rw,
                                             std::string& error) override {
    (void)error;
    auto mem = std::make_unique<std::uint8_t[]>(len);
    for (std::uint32_t i = 0; i < len; ++i) mem[i] = static_cast<std::uint8_t>(i % 251);
    RawRegion reg;
    reg.id = ++next_region_;
    reg.addr = mem.get();
    reg.len = len;
    reg.access = static_cast<std::uint8_t>((rr ? sdp::access::kRemoteRead : 0) |
                                           (rw ? sdp::access::kRemoteWrite : 0));
    reg.rkey = (rr || rw) ? (next_rkey_ += 0x1000) : 0;
    reg.mem = std::move(mem);
    LocalRegion out{reg.id, reg.addr, len, reinterpret_cast<std::uintptr_t>(reg.addr), reg.rkey};
    raw_regions_.push_back(std::move(reg));
    return out;
  }

  void deregister_region(std::uint64_t id) override {
    std::erase_if(raw_regions_, [&](const RawRegion& r) { return r.id == id; });
  }

  bool rdma_read(std::uint64_t id, std::uint64_t va, std::uint32_t rkey, std::uint32_t len,
                 std::string& error) override {
    (void)error;
    rdma(id, va, rkey, len, true, {});
    return true;
  }
  bool rdma_write(std::uint64_t id, std::uint64_t va, std::uint32_t rkey,
                  std::span<const std::uint8_t> data, std::string& error) override {
    (void)error;
    rdma(id, va, rkey, static_cast<std::uint32_t>(data.size()), false, data);
    return true;
  }

  void disconnect() override {
    if (engine_ && up_ && !engine_dead_) {
      engine_->on_cm_disconnect();
      after_engine_call();
    }
    raw_dead_ = true;
  }

  bool app(const App& a, std::string& error) override {
    if (!engine_ || !up_) {
      error = "the peer is not connected";
      return false;
    }
    switch (a.act_case()) {
      case App::kWrite:
        app_write_ += a.write();
        break;
      case App::kWriteBytes:
        extra_.insert(extra_.end(), a.write_bytes().begin(), a.write_bytes().end());
        break;
      case App::kWriteOob: {
        if (a.write_oob() == 0) {
          error = "write_oob needs at least 1 byte";
          return false;
        }
        std::vector<std::uint8_t> d(a.write_oob());
        for (std::size_t i = 0; i < d.size(); ++i) d[i] = static_cast<std::uint8_t>(0x80 + i % 64);
        auto r = engine_->send(d, true);
        if (r.bytes != d.size()) {
          error = "the engine took " + std::to_string(r.bytes) + " of the urgent write (errno " +
                  std::to_string(r.error) + ")";
          after_engine_call();
          return false;
        }
        break;
      }
      case App::kShutdownSend:
        want_shutdown_ = true;
        break;
      case App::kClose:
        engine_->close();
        break;
      case App::kAbort:
        engine_->abort("aborted by the peer's application (scenario)");
        break;
      case App::kStopReading:
        reading_ = false;
        break;
      case App::kResumeReading:
        reading_ = true;
        break;
      case App::ACT_NOT_SET:
        error = "empty app action";
        return false;
    }
    after_engine_call();
    return true;
  }

  std::optional<Event> poll(std::uint64_t deadline) override {
    for (int guard = 0; guard < 1'000'000; ++guard) {
      if (!events_.empty()) {
        // Time passes while messages flow (100 per millisecond), so that a bound expires even
        // when the peer never goes idle (an endless source fed with credits).
        if (++delivered_ % 100 == 0) tick_to(std::min(deadline, now_ + 1));
        Event e = std::move(events_.front());
        events_.pop_front();
        return e;
      }
      if (!cq_.empty()) {
        complete_one();
        continue;
      }
      if (run_app()) continue;
      if (!events_.empty() || !cq_.empty()) continue;
      if (now_ >= deadline) return std::nullopt;
      std::uint64_t next = deadline;
      if (engine_ && up_ && !engine_dead_) next = std::min(next, engine_->next_deadline_ms());
      tick_to(std::max(now_ + (next <= now_ ? 1 : 0), std::min(next, deadline)));
    }
    push({Event::Kind::TransportError, 0, {}, "builtin peer livelock (no progress)"});
    Event e = std::move(events_.front());
    events_.pop_front();
    return e;
  }

 private:
  static constexpr std::size_t kChunk = 256 * 1024;
  struct Recv {
    std::uint64_t wr_id;
    std::uint8_t* addr;
    std::uint32_t len;
  };
  struct EngRegion {
    std::uint64_t id;
    std::uint8_t* addr;
    std::size_t len;
    std::uint8_t access;
    std::uint32_t rkey;
  };
  struct RawRegion {
    std::uint64_t id = 0;
    std::uint8_t* addr = nullptr;
    std::uint32_t len = 0;
    std::uint8_t access = 0;
    std::uint32_t rkey = 0;
    std::unique_ptr<std::uint8_t[]> mem;
  };
  enum class Cq : std::uint8_t { SendDone, RdmaDone, RdmaError };
  struct Completion {
    Cq type;
    std::uint64_t wr_id;
  };

  void push(Event e) { events_.push_back(std::move(e)); }

  void tick_to(std::uint64_t t) {
    if (t <= now_) return;
    now_ = t;
    if (engine_ && up_ && !engine_dead_) {
      engine_->tick(now_);
      drain();
    }
  }

  void after_engine_call() { drain(); }

  void drain() {
    if (!engine_) return;
    for (std::size_t k = 0; k < engine_->actions().size(); ++k) {
      const Action a = engine_->actions()[k];
      switch (a.type) {
        case ActionType::RegisterRegion: {
          const std::uint32_t rkey = a.access != 0 ? (next_rkey_ += 0x1000) : 0;
          eng_regions_.push_back({a.id, a.addr, a.len, a.access, rkey});
          if (a.access != 0) engine_->on_region_registered(a.id, rkey);
          break;
        }
        case ActionType::DeregisterRegion:
          std::erase_if(eng_regions_, [&](const EngRegion& r) { return r.id == a.id; });
          break;
        case ActionType::PostRecv:
          eng_rq_.push_back({a.id, a.addr, a.len});
          break;
        case ActionType::PostSend:
          engine_send(a);
          break;
        case ActionType::RdmaRead:
        case ActionType::RdmaWrite:
          engine_rdma(a);
          break;
        case ActionType::Keepalive:
          if (!raw_dead_) push({Event::Kind::Keepalive, 0, {}, {}});
          break;
        case ActionType::CmDisconnect:
          if (!cm_sent_) {
            cm_sent_ = true;
            push({Event::Kind::Disconnected, 0, {}, "CM DREQ from the peer"});
          }
          break;
        case ActionType::Established:
          break;
        case ActionType::Closed:
        case ActionType::Reset:
          engine_dead_ = true;
          break;
        case ActionType::ZcopyDone:
          break;
      }
    }
    engine_->clear_actions();
  }

  void engine_send(const Action& a) {
    if (raw_dead_ || engine_dead_) return;  // flushed
    if (raw_rq_.empty()) {
      push({Event::Kind::TransportError,
            0,
            {},
            "RNR: the peer sent " + std::string(sdp::wire::mid_name(a.addr[0])) +
                " with no receive posted at the raw endpoint"});
      raw_dead_ = true;
      engine_->on_completion_error(a.id, "RNR retry exceeded");
      return;
    }
    const std::uint32_t size = raw_rq_.front();
    raw_rq_.pop_front();
    if (a.len > size) {
      push({Event::Kind::TransportError,
            0,
            {},
            "the peer sent a " + std::to_string(a.len) + "-byte SEND into our " +
                std::to_string(size) + "-byte receive (local length error)"});
      raw_dead_ = true;
      engine_->on_completion_error(a.id, "remote invalid request");
      return;
    }
    push({Event::Kind::Recv, 0, std::vector<std::uint8_t>(a.addr, a.addr + a.len), {}});
    if (a.signaled) cq_.push_back({Cq::SendDone, a.id});
  }

  // The address `va` names inside one of `regions` granted with R_Key `rkey` and the `need`
  // rights for `len` bytes, or nullptr when RC would answer with a remote access error.
  template <class Regions>
  static std::uint8_t* granted(Regions& regions, std::uint64_t va, std::size_t len,
                               std::uint32_t rkey, std::uint8_t need) {
    for (auto& r : regions) {
      if (r.rkey != rkey || r.rkey == 0 || (r.access & need) != need) continue;
      const auto base = reinterpret_cast<std::uintptr_t>(r.addr);
      if (va >= base && len <= r.len && va - base <= r.len - len) return r.addr + (va - base);
    }
    return nullptr;
  }

  void engine_rdma(const Action& a) {
    if (raw_dead_ || engine_dead_) return;
    const bool rd = a.type == ActionType::RdmaRead;
    std::uint8_t* p = granted(raw_regions_, a.remote_va, a.len, a.rkey,
                              rd ? sdp::access::kRemoteRead : sdp::access::kRemoteWrite);
    if (p == nullptr) {
      push({Event::Kind::TransportError,
            0,
            {},
            std::string("peer RDMA ") + (rd ? "READ" : "WRITE") + " of " + std::to_string(a.len) +
                " bytes outside our grant (R_Key " + std::to_string(a.rkey) + ")"});
      raw_dead_ = true;
      cq_.push_back({Cq::RdmaError, a.id});
      return;
    }
    if (rd)
      std::memcpy(a.addr, p, a.len);
    else
      std::memcpy(p, a.addr, a.len);
    cq_.push_back({Cq::RdmaDone, a.id});
  }

  void rdma(std::uint64_t id, std::uint64_t va, std::uint32_t rkey, std::uint32_t len, bool rd,
            std::span<const std::uint8_t> data) {
    if (raw_dead_) {
      push({Event::Kind::RdmaError, id, {}, "our QP is in the error state (flushed)"});
      return;
    }
    std::uint8_t* p = nullptr;
    if (engine_ && up_ && !engine_dead_)
      p = granted(eng_regions_, va, len, rkey,
                  rd ? sdp::access::kRemoteRead : sdp::access::kRemoteWrite);
    if (p == nullptr) {
      // Remote access error: our QP and the peer's both go to the error state.
      raw_dead_ = true;
      push({Event::Kind::RdmaError,
            id,
            {},
            "remote access error (the peer's HCA refused R_Key " + std::to_string(rkey) + ")"});
      if (engine_ && up_ && !engine_dead_) {
        engine_->on_completion_error(0, "remote access error on an incoming RDMA");
        after_engine_call();
      }
      return;
    }
    Event e{Event::Kind::RdmaDone, id, {}, {}};
    if (rd)
      e.data.assign(p, p + len);
    else
      std::memcpy(p, data.data(), len);
    push(std::move(e));
  }

  void complete_one() {
    const Completion c = cq_.front();
    cq_.pop_front();
    if (!engine_ || engine_dead_) return;
    switch (c.type) {
      case Cq::SendDone:
        engine_->on_send_complete(c.wr_id);
        break;
      case Cq::RdmaDone:
        engine_->on_rdma_complete(c.wr_id);
        break;
      case Cq::RdmaError:
        engine_->on_completion_error(c.wr_id, "remote access error");
        break;
    }
    drain();
  }

  // The peer's application. True when it did something.
  bool run_app() {
    if (!engine_ || !up_ || engine_dead_) return false;
    bool did = false;
    if (reading_) {
      std::uint8_t buf[65536];
      for (;;) {
        auto r = engine_->recv(buf);
        if (r.error != 0) {
          // At the urgent mark (or nothing to read): the urgent byte, echoed as urgent.
          std::uint8_t b = 0;
          if (service_ == ECHO && engine_->oob_pending() && engine_->recv_oob(b).error == 0) {
            echo_.push_back(b);
            echo_oob_.push_back(echo_sent_ + echo_.size());
            did = true;
            continue;
          }
          break;
        }
        if (r.eof) {
          if (!peer_eof_) {
            peer_eof_ = true;
            did = true;
            if (service_ != SOURCE) want_shutdown_ = true;
          }
          break;
        }
        did = true;
        if (service_ == ECHO) echo_.insert(echo_.end(), buf, buf + r.bytes);
      }
      drain();
    }
    did |= write_some();
    if (want_shutdown_ && !shut_ && echo_.empty() && app_write_ == 0 && extra_.empty()) {
      shut_ = true;
      engine_->shutdown_send();
      drain();
      did = true;
    }
    return did;
  }

  bool write_some() {
    bool did = false;
    // Echo: return what came, by BCopy (below the ZCopy threshold), urgent bytes as urgent.
    while (!echo_.empty() && engine_->writable()) {
      std::size_t n = echo_.size();
      if (cfg_.zcopy_threshold != 0) n = std::min<std::size_t>(n, cfg_.zcopy_threshold - 1);
      bool oob = false;
      if (!echo_oob_.empty()) {
        n = std::min(n, echo_oob_.front() - echo_sent_);
        oob = n == echo_oob_.front() - echo_sent_;
      }
      std::vector<std::uint8_t> d(echo_.begin(), echo_.begin() + static_cast<std::ptrdiff_t>(n));
      auto r = engine_->send(d, oob && n == d.size());
      drain();
      if (r.bytes == 0) break;
      echo_.erase(echo_.begin(), echo_.begin() + static_cast<std::ptrdiff_t>(r.bytes));
      echo_sent_ += r.bytes;
      if (!echo_oob_.empty() && echo_sent_ >= echo_oob_.front()) echo_oob_.pop_front();
      did = true;
    }
    // A write of the ZCopy threshold or more pins its buffer until ZcopyDone: extra_hold_ is not
    // touched again while the engine is busy with it.
    while (!extra_.empty() && engine_->writable() && !engine_->zcopy_busy()) {
      extra_hold_.assign(extra_.begin(), extra_.end());
      auto r = engine_->send(extra_hold_);
      drain();
      if (r.bytes == 0) break;
      extra_.erase(extra_.begin(), extra_.begin() + static_cast<std::ptrdiff_t>(r.bytes));
      did = true;
    }
    // Source pattern: the service's endless stream, or the scenario's `write N`.
    const bool endless = service_ == SOURCE && !want_shutdown_;
    while ((endless || app_write_ != 0) && engine_->writable() && !engine_->zcopy_busy()) {
      std::size_t n = kChunk;
      if (!endless) n = std::min<std::size_t>(n, app_write_);
      const std::size_t off = static_cast<std::size_t>(src_pos_ % 251);
      auto r = engine_->send({pattern_.data() + off, n});
      drain();
      if (r.bytes == 0) break;
      src_pos_ += r.bytes;
      if (!endless) app_write_ -= std::min<std::uint64_t>(app_write_, r.bytes);
      did = true;
    }
    return did;
  }

  EngineConfig cfg_;
  std::unique_ptr<Engine> engine_;
  Service service_ = ECHO;
  bool up_ = false, engine_dead_ = false, raw_dead_ = false, cm_sent_ = false;
  std::uint64_t now_ = 0, delivered_ = 0;
  std::deque<Event> events_;
  std::deque<Completion> cq_;
  std::deque<std::uint32_t> raw_rq_;
  std::deque<Recv> eng_rq_;
  std::vector<EngRegion> eng_regions_;
  std::vector<RawRegion> raw_regions_;
  std::uint64_t next_region_ = 0;
  std::uint32_t next_rkey_ = 0x5000;
  // application
  bool reading_ = true, peer_eof_ = false, want_shutdown_ = false, shut_ = false;
  std::vector<std::uint8_t> echo_, extra_, extra_hold_;
  std::deque<std::size_t> echo_oob_;  // echo positions (1-based, cumulative) of urgent bytes
  std::size_t echo_sent_ = 0;
  std::uint64_t app_write_ = 0, src_pos_ = 0;
  std::vector<std::uint8_t> pattern_;
};

}  // namespace

std::unique_ptr<Transport> make_builtin_transport(const PeerConfig& cfg) {
  return std::make_unique<Builtin>(cfg);
}

}  // namespace conformance

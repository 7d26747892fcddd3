#include "sdp/pipe.hpp"

#include "sdp/bytes.hpp"

#include <algorithm>
#include <cstring>

namespace sdp {

PipePair::PipePair(const EngineConfig& active_cfg, const EngineConfig& passive_cfg)
    : side_{Side(Role::Active, active_cfg), Side(Role::Passive, passive_cfg)} {}

void PipePair::error(std::string msg) {
  errors_.push_back(std::move(msg));
}

bool PipePair::connect(const Engine::HelloParams& p) {
  auto hello = active().connect(p);
  drain(0);
  // Credit monitor seeds: each side's first credits come from the other's Hello / HelloAck.
  side_[1].mon_bufs = be::get16(hello.data() + 2);
  side_[0].mon_adv_bufs = side_[1].mon_bufs;
  // The REQ private data area: 92 bytes natively, 56 after the IP CM header.
  std::vector<std::uint8_t> req(p.compact ? wire::kIpCmPrivateDataSize : wire::kHelloMessageSize);
  std::copy(hello.begin(), hello.end(), req.begin());
  auto ack = passive().accept(req);
  if (ack.empty()) return false;
  std::vector<std::uint8_t> rep(wire::kHelloAckMessageSize);
  std::copy(ack.begin(), ack.end(), rep.begin());
  side_[0].mon_bufs = be::get16(ack.data() + 2);
  side_[1].mon_adv_bufs = side_[0].mon_bufs;
  drain(1);
  const bool ok = active().on_hello_ack(rep);
  drain(0);
  return ok;
}

bool PipePair::local_ok(Side& s, const std::uint8_t* addr, std::size_t len) const noexcept {
  auto inside = [&](const Region& r) { return addr >= r.addr && addr + len <= r.addr + r.len; };
  if (s.last_region < s.regions.size() && inside(s.regions[s.last_region])) return true;
  for (std::size_t i = 0; i < s.regions.size(); ++i) {
    if (inside(s.regions[i])) {
      s.last_region = i;
      return true;
    }
  }
  return false;
}

std::uint8_t* PipePair::granted(const Side& s, std::uint64_t va, std::size_t len,
                                std::uint32_t rkey, std::uint8_t need) const noexcept {
  for (const Region& r : s.regions) {
    if (r.rkey != rkey || r.rkey == 0 || (r.access & need) != need) continue;
    const auto base = reinterpret_cast<std::uintptr_t>(r.addr);
    if (va >= base && len <= r.len && va - base <= r.len - len) return r.addr + (va - base);
  }
  return nullptr;
}

std::size_t PipePair::registered_remote_regions(int side) const noexcept {
  return static_cast<std::size_t>(std::count_if(side_[side].regions.begin(),
                                                side_[side].regions.end(),
                                                [](const Region& r) { return r.access != 0; }));
}

void PipePair::monitor_post(int side, const std::uint8_t* msg, std::uint32_t len) {
  Side& s = side_[side];
  if (len < wire::kBsdhSize) {
    error("side " + std::to_string(side) + " posted a SEND shorter than a BSDH");
    return;
  }
  const std::uint32_t mseq = be::get32(msg + 8);
  if (mseq != s.mon_last_mseq + 1)
    error("side " + std::to_string(side) + " posted MSeq " + std::to_string(mseq) + " after " +
          std::to_string(s.mon_last_mseq));
  s.mon_last_mseq = mseq;
  // Credits before this message: Bufs − (MSeq of the last message sent − MSeqAck).
  const std::int64_t credits =
      static_cast<std::int64_t>(s.mon_bufs) - static_cast<std::int64_t>(mseq - 1 - s.mon_ack);
  const std::uint8_t mid = msg[0];
  const bool payload =
      (mid == 0xFF || mid == 0xFE || mid == 0xFD) && len > wire::kBsdhSize + (mid == 0xFE   ? 16U
                                                                              : mid == 0xFD ? 20U
                                                                                            : 0U);
  const std::uint32_t bufs = be::get16(msg + 2);
  const std::uint32_t ack = be::get32(msg + 12);
  // What the peer believes of this side's buffers before this message arrives.
  const std::int64_t believed = static_cast<std::int64_t>(s.mon_adv_bufs) -
                                static_cast<std::int64_t>(s.mon_rx_mseq - s.mon_adv_ack);
  if (credits < 1) {
    error("credit violation: side " + std::to_string(side) + " sent MID " + std::to_string(mid) +
          " (MSeq " + std::to_string(mseq) + ") with " + std::to_string(credits) + " credits");
  } else if (credits == 1 && (payload || static_cast<std::int64_t>(bufs) <= believed)) {
    // CA4-82: with one credit, only a message that adds credits and carries no ULP payload.
    error("CA4-82 violation: side " + std::to_string(side) + " used its last credit for MID " +
          std::to_string(mid) + (payload ? " with payload" : " that adds no credit"));
  }
  s.mon_adv_bufs = bufs;
  s.mon_adv_ack = ack;
}

void PipePair::drain_actions(int i) {
  Side& s = side_[i];
  // Handlers may call back into the engine (on_region_registered), which appends actions: walk by
  // index, re-reading the vector each time, and clear once at the end.
  for (std::size_t k = 0; k < s.engine.actions().size(); ++k) {
    if (k > 1'000'000) {
      error("engine keeps emitting actions (livelock)");
      break;
    }
    const Action a = s.engine.actions()[k];
    switch (a.type) {
      case ActionType::RegisterRegion: {
        const std::uint32_t rkey = a.access != 0 ? (next_rkey_ += 0x101) : 0;
        s.regions.push_back({a.id, a.addr, a.len, a.access, rkey});
        if (a.access != 0) s.engine.on_region_registered(a.id, rkey);
        break;
      }
      case ActionType::DeregisterRegion: {
        auto it = std::find_if(s.regions.begin(), s.regions.end(),
                               [&](const Region& r) { return r.id == a.id; });
        if (it == s.regions.end())
          error("deregistering unknown region " + std::to_string(a.id));
        else
          s.regions.erase(it);
        break;
      }
      case ActionType::PostRecv:
        if (!local_ok(s, a.addr, a.len)) error("PostRecv outside any registered region");
        s.rq.push_back({a.id, a.addr, a.len});
        break;
      case ActionType::PostSend:
        if (!local_ok(s, a.addr, a.len)) error("PostSend outside any registered region");
        if (monitor_) monitor_post(i, a.addr, a.len);
        s.out.push_back({OpType::Send, a.id, a.addr, a.len, 0, 0, a.signaled});
        break;
      case ActionType::RdmaRead:
      case ActionType::RdmaWrite:
        if (!local_ok(s, a.addr, a.len)) error("RDMA with a local buffer outside any region");
        s.out.push_back({a.type == ActionType::RdmaRead ? OpType::Read : OpType::Write, a.id,
                         a.addr, a.len, a.remote_va, a.rkey});
        break;
      case ActionType::Keepalive:
        s.keepalives++;
        break;
      case ActionType::CmDisconnect:
        s.out.push_back({OpType::Disconnect, 0, nullptr, 0, 0, 0});
        break;
      case ActionType::Established:
        s.established = true;
        break;
      case ActionType::Closed:
        s.closed = true;
        s.dead = true;
        break;
      case ActionType::Reset:
        s.reset = true;
        s.dead = true;
        break;
      case ActionType::ZcopyDone:
        s.zcopy_done++;
        break;
    }
  }
  s.engine.clear_actions();
}

void PipePair::deliver(int from) {
  Side& s = side_[from];
  Side& peer = side_[1 - from];
  const Op op = s.out.front();
  s.out.pop_front();
  switch (op.type) {
    case OpType::Send: {
      if (peer.dead) return;  // the peer's QP is gone: the SEND is flushed
      if (peer.rq.empty()) {
        error("RNR: side " + std::to_string(from) + " sent a message (MID " +
              std::to_string(op.addr[0]) + ") with no receive posted at the peer");
        s.cq.push_back({CqType::Error, op.wr_id, 0, nullptr});
        return;
      }
      const Recv r = peer.rq.front();
      peer.rq.pop_front();
      if (op.len > r.len) {
        error("SEND of " + std::to_string(op.len) + " bytes into a " + std::to_string(r.len) +
              "-byte receive buffer");
        return;
      }
      std::memcpy(r.addr, op.addr, op.len);
      if (on_wire) on_wire(from, {op.addr, op.len});
      peer.cq.push_back({CqType::RecvDone, r.wr_id, op.len, r.addr});
      if (op.signaled) s.cq.push_back({CqType::SendDone, op.wr_id, 0, nullptr});
      return;
    }
    case OpType::Read:
    case OpType::Write: {
      const bool rd = op.type == OpType::Read;
      std::uint8_t* remote = peer.dead ? nullptr
                                       : granted(peer, op.remote_va, op.len, op.rkey,
                                                 rd ? access::kRemoteRead : access::kRemoteWrite);
      if (remote == nullptr) {
        ++access_violations_;
        error(std::string("remote access error: RDMA ") + (rd ? "READ" : "WRITE") +
              " outside the peer's grant");
        s.cq.push_back({CqType::Error, op.wr_id, 0, nullptr});
        return;
      }
      if (rd)
        std::memcpy(op.addr, remote, op.len);
      else
        std::memcpy(remote, op.addr, op.len);
      s.cq.push_back({CqType::RdmaDone, op.wr_id, op.len, nullptr});
      return;
    }
    case OpType::Disconnect:
      // The binding delivers a CM DREQ/DREP only after draining the QP's completions, so it
      // queues behind the receive completions already there.
      peer.cq.push_back({CqType::CmDisconnect, 0, 0, nullptr});
      return;
  }
}

void PipePair::complete(int i) {
  Side& s = side_[i];
  const Cqe c = s.cq.front();
  s.cq.pop_front();
  if (s.dead) return;
  switch (c.type) {
    case CqType::SendDone:
      s.engine.on_send_complete(c.wr_id);
      break;
    case CqType::RdmaDone:
      s.engine.on_rdma_complete(c.wr_id);
      break;
    case CqType::Error:
      s.engine.on_completion_error(c.wr_id, "remote access / RNR error");
      break;
    case CqType::CmDisconnect:
      s.engine.on_cm_disconnect();
      break;
    case CqType::RecvDone: {
      // Credit monitor: this side now knows the peer's Bufs and MSeqAck from this message.
      if (monitor_ && c.len >= wire::kBsdhSize) {
        const std::uint8_t* m = c.addr;
        s.mon_bufs = be::get16(m + 2);
        s.mon_ack = be::get32(m + 12);
        s.mon_rx_mseq = be::get32(m + 8);
      }
      s.engine.on_recv(c.wr_id, c.len);
      break;
    }
  }
  drain(i);
}

bool PipePair::idle() const noexcept {
  for (const Side& s : side_)
    if (!s.out.empty() || !s.cq.empty()) return false;
  return true;
}

void PipePair::run() {
  drain_all();
  for (std::uint64_t n = 0; !idle(); ++n) {
    if (n > 50'000'000) {
      error("pipe never went idle (livelock)");
      return;
    }
    for (int i = 0; i < 2; ++i) {
      while (!side_[i].out.empty()) deliver(i);
      while (!side_[i].cq.empty()) complete(i);
    }
  }
}

bool PipePair::step(std::mt19937_64& rng) {
  drain_all();
  int choices[4];
  int n = 0;
  for (int i = 0; i < 2; ++i) {
    if (!side_[i].out.empty()) choices[n++] = i;
    if (!side_[i].cq.empty()) choices[n++] = 2 + i;
  }
  if (n == 0) return false;
  const int c = choices[std::uniform_int_distribution<int>(0, n - 1)(rng)];
  if (c < 2)
    deliver(c);
  else
    complete(c - 2);
  return true;
}

void PipePair::tick(std::uint64_t now_ms) {
  for (int i = 0; i < 2; ++i) {
    side_[i].engine.tick(now_ms);
    drain(i);
  }
}

bool PipePair::peer_rdma_read(int side, std::uint64_t va, std::uint32_t rkey,
                              std::span<std::uint8_t> out) {
  const std::uint8_t* remote = granted(side_[side], va, out.size(), rkey, access::kRemoteRead);
  if (remote == nullptr) return false;
  std::memcpy(out.data(), remote, out.size());
  return true;
}

void PipePair::inject_send(int from, std::span<const std::uint8_t> msg) {
  injected_.emplace_back(msg.begin(), msg.end());
  auto& v = injected_.back();
  side_[from].out.push_back(
      {OpType::Send, 0, v.data(), static_cast<std::uint32_t>(v.size()), 0, 0, false});
}

bool PipePair::peer_rdma_write(int side, std::uint64_t va, std::uint32_t rkey,
                               std::span<const std::uint8_t> in) {
  std::uint8_t* remote = granted(side_[side], va, in.size(), rkey, access::kRemoteWrite);
  if (remote == nullptr) return false;
  std::memcpy(remote, in.data(), in.size());
  return true;
}

}  // namespace sdp

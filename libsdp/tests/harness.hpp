// A hand-driven peer for engine tests: the test plays the remote SDP side byte by byte.
//
// The harness owns one Engine, executes its actions like a tiny RC QP would (receives are queued,
// sends are captured and decoded), and lets the test inject any message — valid or not — into the
// engine's next posted receive buffer.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "sdp/engine.hpp"
#include "sdp/wire.hpp"

namespace sdp::test {

struct SentMsg {
  std::vector<std::uint8_t> bytes;
  wire::Bsdh bsdh;
  std::uint64_t wr_id = 0;
  bool solicited = false;
  std::uint8_t mid() const { return bsdh.mid; }
  std::size_t payload_size() const {
    return bytes.size() - wire::kBsdhSize -
           (wire::mid_defined(bsdh.mid) ? wire::ext_header_size(static_cast<wire::Mid>(bsdh.mid))
                                        : 0);
  }
  template <class H>
  H ext() const {
    auto r = wire::decode_message(bytes);
    EXPECT_TRUE(r.ok()) << r.error().reason();
    return std::get<H>(r->ext);
  }
};

class Harness {
 public:
  explicit Harness(Role role, EngineConfig cfg = {}) : e(role, cfg), cfg_(cfg) {}

  Engine e;

  // Brings the engine to Established with the peer advertising `peer_bufs` buffers of
  // `peer_size` bytes. Returns false if the engine refused.
  bool establish(std::uint16_t peer_bufs = 8, std::uint32_t peer_size = 4096) {
    if (e.role() == Role::Active) {
      auto hello = e.connect({});
      hello_.assign(hello.begin(), hello.end());
      pump();
      std::vector<std::uint8_t> rep(wire::kHelloAckMessageSize);
      wire::Bsdh b{};
      b.mid = 0x01;
      b.bufs = peer_bufs;
      wire::HelloAckHeader hah{};
      hah.act_rcv_sz = peer_size;
      EXPECT_TRUE(wire::encode_hello_ack(b, hah, rep).ok());
      const bool ok = e.on_hello_ack(rep);
      pump();
      return ok;
    }
    std::vector<std::uint8_t> req(wire::kHelloMessageSize);
    wire::Bsdh b{};
    b.mid = 0x00;
    b.bufs = peer_bufs;
    wire::HelloHeader hh{};
    hh.local_rcv_sz = peer_size;
    hh.des_rem_rcv_sz = 0;
    EXPECT_TRUE(wire::encode_hello(b, hh, false, req).ok());
    auto ack = e.accept(req);
    pump();
    return !ack.empty();
  }

  // Executes pending actions: queues receives, captures sends (auto-completing them unless
  // hold_sends), answers registrations with an R_Key.
  void pump() {
    while (!e.actions().empty()) {
      std::vector<Action> acts(e.actions().begin(), e.actions().end());
      e.clear_actions();
      for (const Action& a : acts) {
        actions.push_back(a);
        switch (a.type) {
          case ActionType::PostRecv:
            recvs.push_back(a);
            break;
          case ActionType::PostSend: {
            SentMsg m;
            m.bytes.assign(a.addr, a.addr + a.len);
            auto h = wire::peek_bsdh(m.bytes);
            EXPECT_TRUE(h.ok());
            m.bsdh = *h;
            m.wr_id = a.id;
            m.solicited = a.solicited;
            sent.push_back(m);
            unacked_sends.push_back(a.id);
            break;
          }
          case ActionType::RegisterRegion:
            regions.push_back(a);
            if (a.access != 0)
              e.on_region_registered(a.id, static_cast<std::uint32_t>(0x500 + a.id));
            break;
          case ActionType::DeregisterRegion:
            deregistered.push_back(a.id);
            break;
          case ActionType::RdmaRead:
          case ActionType::RdmaWrite:
            rdma.push_back(a);
            break;
          default:
            break;
        }
      }
      if (!hold_sends) complete_sends();
    }
  }

  void complete_sends() {
    while (!unacked_sends.empty()) {
      const std::uint64_t id = unacked_sends.front();
      unacked_sends.pop_front();
      e.on_send_complete(id);
    }
  }

  // Injects raw bytes as the next received message. Returns false if no receive was posted.
  bool inject(const std::vector<std::uint8_t>& msg) {
    if (recvs.empty()) return false;
    const Action r = recvs.front();
    recvs.pop_front();
    EXPECT_LE(msg.size(), r.len);
    std::memcpy(r.addr, msg.data(), std::min<std::size_t>(msg.size(), r.len));
    e.on_recv(r.id, static_cast<std::uint32_t>(msg.size()));
    pump();
    return true;
  }

  // Builds a message from the peer with the next MSeq, acking everything we have seen.
  std::vector<std::uint8_t> msg(wire::Mid mid, wire::ExtHeader ext = std::monostate{},
                                std::vector<std::uint8_t> payload = {}, std::uint8_t flags = 0,
                                std::uint16_t bufs = 8) {
    wire::Message m{};
    m.bsdh.mid = static_cast<std::uint8_t>(mid);
    m.bsdh.flags = flags;
    m.bsdh.bufs = bufs;
    m.bsdh.mseq = ++peer_mseq;
    m.bsdh.mseq_ack = last_sent_mseq();
    m.ext = ext;
    m.payload = payload;
    std::vector<std::uint8_t> out(wire::encoded_size(m));
    auto r = wire::encode_message(m, out);
    EXPECT_TRUE(r.ok()) << r.error().reason();
    return out;
  }
  bool send_peer(wire::Mid mid, wire::ExtHeader ext = std::monostate{},
                 std::vector<std::uint8_t> payload = {}, std::uint8_t flags = 0,
                 std::uint16_t bufs = 8) {
    return inject(msg(mid, ext, std::move(payload), flags, bufs));
  }

  std::uint32_t last_sent_mseq() const { return sent.empty() ? 0 : sent.back().bsdh.mseq; }
  std::vector<SentMsg> sent_with(wire::Mid mid) const {
    std::vector<SentMsg> v;
    for (const auto& m : sent)
      if (m.mid() == static_cast<std::uint8_t>(mid)) v.push_back(m);
    return v;
  }
  std::size_t count(ActionType t) const {
    std::size_t n = 0;
    for (const auto& a : actions) n += a.type == t;
    return n;
  }
  std::string read_all() {
    std::string s;
    char buf[65536];
    for (;;) {
      auto r = e.recv({reinterpret_cast<std::uint8_t*>(buf), sizeof buf});
      pump();
      if (r.bytes == 0) break;
      s.append(buf, r.bytes);
    }
    return s;
  }

  std::deque<Action> recvs;
  std::vector<SentMsg> sent;
  std::deque<std::uint64_t> unacked_sends;
  std::vector<Action> regions, rdma, actions;
  std::vector<std::uint64_t> deregistered;
  std::vector<std::uint8_t> hello_;
  std::uint32_t peer_mseq = 0;
  bool hold_sends = false;
  EngineConfig cfg_;
};

inline std::vector<std::uint8_t> bytes_of(const std::string& s) {
  return std::vector<std::uint8_t>(s.begin(), s.end());
}

}  // namespace sdp::test

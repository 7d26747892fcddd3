// libFuzzer target: one engine fed an arbitrary sequence of peer messages, completions,
// application calls and timer ticks. Whatever arrives, the engine must not crash, must not touch
// memory outside what it owns (ASan), and must keep its own invariants:
//   - it never posts a SEND without a credit (Bufs − (MSeq sent − MSeqAck) >= 1 before each);
//   - MSeq of its SENDs increases by exactly one;
//   - after Reset or Closed it posts nothing more;
//   - every remote-access grant it made is deregistered once it is reset.
//
// Input format (all choices taken modulo their range, so every input is valid):
//   byte 0: role (bit 0), peer receive buffers, peer receive size selector
//   then records: op byte, followed by op-specific bytes.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <set>
#include <vector>

#include "sdp/bytes.hpp"
#include "sdp/engine.hpp"
#include "sdp/wire.hpp"

namespace {

struct Reader {
  const std::uint8_t* p;
  std::size_t n;
  bool empty() const { return n == 0; }
  std::uint8_t u8() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  std::uint32_t u16() { return (std::uint32_t{u8()} << 8) | u8(); }
  std::uint32_t u32() { return (u16() << 16) | u16(); }
};

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "engine invariant broken: %s\n", what);
  std::abort();
}

struct Peer {
  sdp::Engine& e;
  std::deque<sdp::Action> recvs;
  std::deque<std::uint64_t> sends;
  std::deque<sdp::Action> rdma;
  std::set<std::uint64_t> remote_grants;
  std::uint32_t last_mseq = 0;
  std::uint32_t peer_bufs = 0, peer_ack = 0;  // what the engine last received
  std::uint32_t mseq = 0;                     // the fuzzer-peer's MSeq
  bool ended = false;

  void pump() {
    for (int guard = 0; !e.actions().empty(); ++guard) {
      if (guard > 100) fail("actions never settle");
      std::vector<sdp::Action> acts(e.actions().begin(), e.actions().end());
      e.clear_actions();
      for (const sdp::Action& a : acts) {
        if (ended && (a.type == sdp::ActionType::PostSend || a.type == sdp::ActionType::RdmaRead ||
                      a.type == sdp::ActionType::RdmaWrite))
          fail("work posted after the connection ended");
        switch (a.type) {
          case sdp::ActionType::PostRecv:
            recvs.push_back(a);
            break;
          case sdp::ActionType::PostSend: {
            if (a.len < 16) fail("SEND shorter than a BSDH");
            const std::uint32_t m = sdp::be::get32(a.addr + 8);
            if (m != last_mseq + 1) fail("MSeq not consecutive");
            const std::int64_t credits = static_cast<std::int64_t>(peer_bufs) -
                                         static_cast<std::int64_t>(last_mseq - peer_ack);
            // AbortConn is sent from the engine's own view of credits at the moment it gave up,
            // which may predate the rejected message this monitor already counted.
            if (credits < 1 && a.addr[0] != 0x03) fail("SEND without a credit");
            last_mseq = m;
            sends.push_back(a.id);
            break;
          }
          case sdp::ActionType::RegisterRegion:
            if (a.access != 0) {
              remote_grants.insert(a.id);
              e.on_region_registered(a.id, static_cast<std::uint32_t>(a.id * 7));
            }
            break;
          case sdp::ActionType::DeregisterRegion:
            remote_grants.erase(a.id);
            break;
          case sdp::ActionType::RdmaRead:
          case sdp::ActionType::RdmaWrite:
            rdma.push_back(a);
            break;
          case sdp::ActionType::Reset:
          case sdp::ActionType::Closed:
            ended = true;
            break;
          default:
            break;
        }
      }
    }
    if (e.state() == sdp::State::Reset && !remote_grants.empty())
      fail("a remote grant outlived the connection");
  }

  void inject(std::vector<std::uint8_t> msg, bool fix) {
    if (recvs.empty()) return;  // the real HCA would RNR; the peer may not send
    const sdp::Action r = recvs.front();
    recvs.pop_front();
    if (msg.size() > r.len) msg.resize(r.len);
    if (fix && msg.size() >= 16) {  // make MSeq/MSeqAck right so deeper states are reached
      sdp::be::put32(msg.data() + 4, static_cast<std::uint32_t>(msg.size()));
      sdp::be::put32(msg.data() + 8, ++mseq);
      sdp::be::put32(msg.data() + 12, last_mseq);
    }
    if (!msg.empty()) std::memcpy(r.addr, msg.data(), msg.size());
    if (msg.size() >= 16 && e.state() == sdp::State::Established) {
      // What the engine will believe after this message, if it accepts it.
      peer_bufs = sdp::be::get16(msg.data() + 2);
      peer_ack = sdp::be::get32(msg.data() + 12);
    }
    e.on_recv(r.id, static_cast<std::uint32_t>(msg.size()));
    pump();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Reader in{data, size};
  const std::uint8_t setup = in.u8();
  sdp::EngineConfig cfg;
  cfg.recv_bufs = static_cast<std::uint16_t>(4 + (setup >> 4));
  cfg.recv_size = 4096;
  cfg.max_recv_size = 8192;
  cfg.send_slots = 4;
  cfg.send_slot_size = 4096;
  cfg.zcopy_threshold = (setup & 2) ? 1000 : 0;
  cfg.sink_adverts = (setup & 4) != 0;
  cfg.zcopy_chunk = 4096;
  cfg.zcopy_staging = 8192;
  cfg.keepalive_idle_ms = 100;
  cfg.zcopy_cancel_ms = 50;
  cfg.cancel_response_ms = 100;
  const bool active = (setup & 1) != 0;
  sdp::Engine e(active ? sdp::Role::Active : sdp::Role::Passive, cfg);
  Peer peer{e};
  const std::uint16_t peer_bufs = static_cast<std::uint16_t>(2 + (in.u8() & 15));
  if (active) {
    e.connect({});
    peer.pump();
    std::vector<std::uint8_t> rep(sdp::wire::kHelloAckMessageSize);
    sdp::wire::Bsdh b{};
    b.mid = 1;
    b.bufs = peer_bufs;
    sdp::wire::HelloAckHeader hah{};
    hah.act_rcv_sz = 64 + (in.u16() & 8191);
    if (!sdp::wire::encode_hello_ack(b, hah, rep).ok()) std::abort();
    if (!e.on_hello_ack(rep)) return 0;
  } else {
    std::vector<std::uint8_t> req(sdp::wire::kHelloMessageSize);
    sdp::wire::Bsdh b{};
    b.bufs = peer_bufs;
    sdp::wire::HelloHeader hh{};
    hh.local_rcv_sz = 64 + (in.u16() & 8191);
    if (!sdp::wire::encode_hello(b, hh, false, req).ok()) std::abort();
    if (e.accept(req).empty()) return 0;
  }
  peer.peer_bufs = peer_bufs;
  peer.pump();

  static std::vector<std::uint8_t> app(1 << 16, 0xA5);  // stays valid across ZCopy grants
  std::vector<std::uint8_t> rbuf(1 << 16);
  std::uint64_t now = 0;
  while (!in.empty()) {
    const std::uint8_t op = in.u8();
    switch (op % 10) {
      case 0:
      case 1: {  // peer message: length, then bytes
        const std::size_t len = in.u8() + ((op & 0x80) ? 256U * (in.u8() & 31) : 0U);
        std::vector<std::uint8_t> msg(len);
        for (auto& x : msg) x = in.u8();
        peer.inject(std::move(msg), (op & 0x10) == 0);
        break;
      }
      case 2: {  // application send
        const std::size_t n = in.u16() & 0xFFFF;
        e.send({app.data(), n}, (op & 0x20) != 0);
        peer.pump();
        break;
      }
      case 3: {
        const std::size_t n = in.u16();
        e.recv({rbuf.data(), n}, (op & 0x20) != 0);
        std::uint8_t u;
        e.recv_oob(u);
        peer.pump();
        break;
      }
      case 4:
        while (!peer.sends.empty()) {
          e.on_send_complete(peer.sends.front());
          peer.sends.pop_front();
          peer.pump();
        }
        break;
      case 5:
        if (!peer.rdma.empty()) {
          const sdp::Action a = peer.rdma.front();
          peer.rdma.pop_front();
          if (op & 0x40)
            e.on_completion_error(a.id, "fuzz");
          else
            e.on_rdma_complete(a.id);
          peer.pump();
        }
        break;
      case 6:
        now += in.u8() * 4U;
        e.tick(now);
        peer.pump();
        break;
      case 7:
        if (op & 0x10)
          e.shutdown_send();
        else if (op & 0x20)
          e.shutdown_recv();
        else
          e.close();
        peer.pump();
        break;
      case 8:
        e.on_cm_disconnect();
        peer.pump();
        break;
      case 9:
        if (op & 0x80) {
          e.abort("fuzz");
          peer.pump();
        } else if (op & 0x40) {  // a receive completion the engine may not have posted
          e.on_recv(in.u8(), in.u16());
          peer.pump();
        } else {  // a bogus completion id must not crash either
          e.on_send_complete(in.u32());
          peer.pump();
        }
        break;
    }
  }
  return 0;
}

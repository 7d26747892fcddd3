#include "sdp_follow.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace ibsniff::sdp {

namespace {

constexpr std::size_t kIpCmHeaderSize = wire::kIpCmHeaderSize;  // 36
constexpr std::size_t kMaxMessage = std::size_t{16} << 20;      // larger SENDs are not SDP here

// RC SEND opcodes: First, Middle, Last, Last w/ Imm, Only, Only w/ Imm, Last w/ Inv, Only w/ Inv.
enum class SendPart : std::uint8_t { None, First, Middle, Last, Only };
SendPart send_part(std::uint8_t opcode) noexcept {
  switch (opcode) {
    case 0x00:
      return SendPart::First;
    case 0x01:
      return SendPart::Middle;
    case 0x02:
    case 0x03:
    case 0x16:
      return SendPart::Last;
    case 0x04:
    case 0x05:
    case 0x17:
      return SendPart::Only;
    default:
      return SendPart::None;
  }
}

// 24-bit PSN arithmetic.
constexpr std::uint32_t psn_next(std::uint32_t p) noexcept {
  return (p + 1) & 0xFFFFFF;
}
constexpr bool psn_after(std::uint32_t a, std::uint32_t b) noexcept {
  const std::uint32_t d = (a - b) & 0xFFFFFF;
  return d != 0 && d < 0x800000;
}

}  // namespace

Address Address::lid(std::uint16_t l) {
  Address a;
  a.kind = Kind::Lid;
  a.bytes[14] = static_cast<std::uint8_t>(l >> 8);
  a.bytes[15] = static_cast<std::uint8_t>(l);
  return a;
}

Address Address::gid(std::span<const std::uint8_t, 16> g) {
  Address a;
  a.kind = Kind::Gid;
  std::copy(g.begin(), g.end(), a.bytes.begin());
  return a;
}

Address Address::ipv4(std::span<const std::uint8_t, 4> v4) {
  Address a;
  a.kind = Kind::Gid;
  a.bytes[10] = 0xFF;
  a.bytes[11] = 0xFF;
  std::copy(v4.begin(), v4.end(), a.bytes.begin() + 12);
  return a;
}

bool send_starts_message(std::uint8_t opcode) noexcept {
  const SendPart part = send_part(opcode);
  return part == SendPart::First || part == SendPart::Only;
}

std::string to_string(const Address& a) {
  switch (a.kind) {
    case Address::Kind::None:
      return "-";
    case Address::Kind::Lid:
      return "LID " + std::to_string((a.bytes[14] << 8) | a.bytes[15]);
    case Address::Kind::Gid:
      break;
  }
  char buf[INET6_ADDRSTRLEN] = {};
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
  if (std::memcmp(a.bytes.data(), kMapped, sizeof kMapped) == 0)
    inet_ntop(AF_INET, a.bytes.data() + 12, buf, sizeof buf);
  else
    inet_ntop(AF_INET6, a.bytes.data(), buf, sizeof buf);
  return buf;
}

const char* setup_name(Setup s) noexcept {
  switch (s) {
    case Setup::Native:
      return "native SDP";
    case Setup::IpCm:
      return "IP CM";
    case Setup::Forced:
      return "forced";
  }
  return "?";
}

void Follower::force_qp(std::uint32_t qpn) {
  if (std::find(forced_.begin(), forced_.end(), qpn) == forced_.end()) forced_.push_back(qpn);
}

Connection* Follower::find_by_comm_id(std::uint32_t a, std::uint32_t b) {
  for (auto it = conns_.rbegin(); it != conns_.rend(); ++it) {
    for (std::uint32_t id : {a, b})
      if (id != 0 && (it->comm_id[0] == id || it->comm_id[1] == id)) return &*it;
  }
  return nullptr;
}

const Connection* Follower::on_cm(const CmEvent& ev, std::string* note) {
  auto say = [&](std::string s) {
    if (note != nullptr) *note = std::move(s);
  };
  switch (ev.kind) {
    case CmKind::Req: {
      if (auto it = by_tid_.find(ev.transaction_id); it != by_tid_.end())
        return &conns_[it->second];  // a retransmitted REQ
      Setup setup = Setup::Native;
      wire::Hello hello{};
      if (wire::is_sdp_service_id(ev.service_id)) {
        auto h = wire::decode_hello(ev.private_data);
        if (h)
          hello = *h;
        else
          say("SDP service ID, but the REQ's private data is not a valid Hello: " +
              std::string(h.error().reason()));
      } else if (wire::is_ipcm_service_id(ev.service_id) &&
                 ev.private_data.size() > kIpCmHeaderSize) {
        auto h = wire::decode_hello(ev.private_data.subspan(kIpCmHeaderSize));
        if (!h) return nullptr;  // another ULP over the IP CM service
        setup = Setup::IpCm;
        hello = *h;
      } else {
        return nullptr;
      }
      Connection& c = conns_.emplace_back();  // in place: a Connection is 4 KiB
      c.id = static_cast<std::uint32_t>(conns_.size());
      c.setup = setup;
      c.hello = hello;
      c.service_id = ev.service_id;
      c.addr[0] = ev.src;
      c.addr[1] = ev.dst;
      c.qpn[0] = ev.local_qpn;
      c.comm_id[0] = ev.local_comm_id;
      c.transaction_id = ev.transaction_id;
      const std::size_t idx = conns_.size() - 1;
      by_tid_[ev.transaction_id] = idx;
      // Packets to the requester come from the responder (direction 1).
      bind(ev.src, ev.local_qpn, idx, 1);
      return &c;
    }
    case CmKind::Rep: {
      auto it = by_tid_.find(ev.transaction_id);
      if (it == by_tid_.end()) return nullptr;
      Connection& c = conns_[it->second];
      c.qpn[1] = ev.local_qpn;
      c.comm_id[1] = ev.local_comm_id;
      c.established = true;
      auto h = wire::decode_hello_ack(ev.private_data);
      if (h) {
        c.hello_ack = *h;
        c.have_hello_ack = true;
      } else {
        say("the REP's private data is not a valid HelloAck: " + std::string(h.error().reason()));
      }
      bind(c.addr[1], ev.local_qpn, it->second, 0);
      return &c;
    }
    case CmKind::Rtu: {
      auto it = by_tid_.find(ev.transaction_id);
      return it == by_tid_.end() ? nullptr : &conns_[it->second];
    }
    case CmKind::Rej: {
      auto it = by_tid_.find(ev.transaction_id);
      if (it == by_tid_.end()) return nullptr;
      Connection& c = conns_[it->second];
      c.closed = true;
      for (int side = 0; side < 2; ++side) {
        auto e = by_qp_.find(EndpointKey{c.addr[side], c.qpn[side]});
        if (e != by_qp_.end() && e->second.conn == it->second) by_qp_.erase(e);
      }
      last_ = nullptr;
      return &c;
    }
    case CmKind::Dreq:
    case CmKind::Drep: {
      Connection* c = find_by_comm_id(ev.local_comm_id, ev.remote_comm_id);
      if (c != nullptr) c->closed = true;
      return c;
    }
    case CmKind::Other:
      return nullptr;
  }
  return nullptr;
}

void Follower::update_stats(Connection& c, int dir, const wire::Message& m) {
  ConnStats& s = c.stats;
  s.messages[dir][m.bsdh.mid]++;
  s.bufs_min[dir] = std::min<std::uint32_t>(s.bufs_min[dir], m.bsdh.bufs);
  s.bufs_max[dir] = std::max<std::uint32_t>(s.bufs_max[dir], m.bsdh.bufs);
  s.bytes[dir] += m.payload.size();
  if (const auto* src = std::get_if<wire::SrcAvailHeader>(&m.ext)) {
    // SrcAH.Len counts the inline bytes too; the rest is RDMA-read by the sink.
    if (src->len > m.payload.size()) {
      s.zcopy_bytes[dir] += src->len - m.payload.size();
      s.bytes[dir] += src->len - m.payload.size();
    }
  } else if (const auto* wr = std::get_if<wire::RdmaWrComplHeader>(&m.ext)) {
    s.zcopy_bytes[dir] += wr->len;  // Pipelined mode: bytes RDMA-written into a SinkAvail
    s.bytes[dir] += wr->len;
  }
}

SdpResult Follower::complete(Endpoint& ep, std::span<const std::uint8_t> bytes) {
  SdpResult r;
  Connection& c = conns_[ep.conn];
  r.conn = &c;
  r.direction = ep.direction;
  r.bytes = bytes;
  if (wire::decode_message_into(bytes, r.message, r.error)) {
    r.kind = SdpResult::Kind::Message;
    update_stats(c, ep.direction, r.message);
  } else {
    r.kind = SdpResult::Kind::Malformed;
  }
  return r;
}

void Follower::bind(const Address& addr, std::uint32_t qpn, std::size_t conn, int direction) {
  Endpoint& ep = by_qp_[EndpointKey{addr, qpn}];
  std::vector<std::uint8_t> buf = std::move(ep.rx.buf);
  buf.clear();
  ep = Endpoint{conn, direction, {}};
  ep.rx.buf = std::move(buf);
  last_ = nullptr;
}

Follower::Endpoint* Follower::endpoint(const Address& dst, std::uint32_t qpn) {
  const EndpointKey key{dst, qpn};
  if (last_ != nullptr && last_key_ == key) return last_;  // most packets follow one on the same QP
  auto it = by_qp_.find(key);
  if (it == by_qp_.end()) it = by_qp_.find(EndpointKey{Address{}, qpn});  // forced
  if (it == by_qp_.end()) return nullptr;
  last_key_ = key;
  last_ = &it->second;
  return last_;
}

Follower::Endpoint* Follower::add_forced(const RcPacket& p) {
  Connection& c = conns_.emplace_back();
  c.id = static_cast<std::uint32_t>(conns_.size());
  c.setup = Setup::Forced;
  c.addr[0] = p.src;
  c.addr[1] = p.dst;
  c.qpn[1] = p.dest_qp;
  c.established = true;
  last_ = nullptr;
  return &by_qp_.emplace(EndpointKey{Address{}, p.dest_qp}, Endpoint{conns_.size() - 1, 0, {}})
              .first->second;
}

SdpResult Follower::on_rc(const RcPacket& p) {
  Endpoint* found = endpoint(p.dst, p.dest_qp);
  if (found == nullptr) {
    if (std::find(forced_.begin(), forced_.end(), p.dest_qp) == forced_.end()) return {};
    found = add_forced(p);
  }
  Endpoint& ep = *found;
  Reassembly& rx = ep.rx;
  const SendPart part = send_part(p.opcode);
  SdpResult r;
  r.conn = &conns_[ep.conn];
  r.direction = ep.direction;
  if (part == SendPart::None) {
    r.kind = SdpResult::Kind::NonSend;
    return r;
  }
  // A retransmission repeats a PSN already seen (or an older one).
  if (rx.have_send_psn && !psn_after(p.psn, rx.last_send_psn)) {
    r.kind = SdpResult::Kind::Duplicate;
    r.note = "retransmitted SEND (PSN " + std::to_string(p.psn) + ")";
    return r;
  }
  rx.have_send_psn = true;
  rx.last_send_psn = p.psn;
  auto drop = [&](std::string why) {
    rx.active = false;
    rx.buf.clear();
    r.kind = SdpResult::Kind::Dropped;
    r.note = std::move(why);
    return r;
  };
  switch (part) {
    case SendPart::Only:
      if (rx.active) {
        rx.active = false;
        rx.buf.clear();
        SdpResult done = complete(ep, p.payload);
        done.note = "SEND Only while a multi-packet SEND was unfinished: that message is lost";
        return done;
      }
      return complete(ep, p.payload);
    case SendPart::First: {
      std::string lost;
      if (rx.active) lost = "SEND First while a multi-packet SEND was unfinished: that one is lost";
      rx.buf.assign(p.payload.begin(), p.payload.end());
      rx.active = true;
      rx.next_psn = psn_next(p.psn);
      r.kind = SdpResult::Kind::Fragment;
      r.bytes = {rx.buf.data(), rx.buf.size()};
      r.note = std::move(lost);
      return r;
    }
    case SendPart::Middle:
    case SendPart::Last: {
      if (!rx.active)
        return drop("SEND " + std::string(part == SendPart::Middle ? "Middle" : "Last") +
                    " without its First (the capture starts mid-message, or packets are missing)");
      if (p.psn != rx.next_psn)
        return drop("missing packets in a multi-packet SEND (PSN " + std::to_string(p.psn) +
                    ", expected " + std::to_string(rx.next_psn) + "): message dropped");
      if (rx.buf.size() + p.payload.size() > kMaxMessage)
        return drop("multi-packet SEND larger than 16 MiB: not an SDP message, dropped");
      rx.buf.insert(rx.buf.end(), p.payload.begin(), p.payload.end());
      rx.next_psn = psn_next(p.psn);
      if (part == SendPart::Middle) {
        r.kind = SdpResult::Kind::Fragment;
        r.bytes = {rx.buf.data(), rx.buf.size()};
        return r;
      }
      rx.active = false;
      return complete(ep, {rx.buf.data(), rx.buf.size()});
    }
    case SendPart::None:
      break;
  }
  return r;
}

}  // namespace ibsniff::sdp

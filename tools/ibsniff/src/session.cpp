#include "ibsniff/session.hpp"

#include <algorithm>
#include <variant>

#include "ibsniff/cm.hpp"
#include "sdp/wire.hpp"

namespace ibsniff {

namespace {

namespace wire = ::sdp::wire;
using F = FieldId;

void push(Packet& p, FieldId id, std::size_t off, std::size_t len, std::uint64_t v) {
  p.fields.push_back(
      Field{id, static_cast<std::uint32_t>(off), static_cast<std::uint32_t>(len), v});
}

// Offset of a view into the packet's frame.
std::size_t offset_in(const Packet& p, std::span<const std::uint8_t> s) {
  return static_cast<std::size_t>(s.data() - p.data.data());
}

// The BSDH of the message at frame offset `off`. The flag bits are taken from the Flags byte
// (tshark 4.0 reads its oobpres/oobpend/reqpipe from Bufs and Len, capture-formats.md §5 item 11).
void bsdh_fields(Packet& p, std::size_t off, const wire::Bsdh& b) {
  const auto o = static_cast<std::uint32_t>(off);
  auto flag = [&](unsigned bit) -> std::uint64_t { return (b.flags & bit) != 0 ? 1 : 0; };
  p.fields.insert(
      p.fields.end(),  // in one go: a push_back each is a call each
      {Field{F::sdp_bsdh_mid, o, 1, b.mid}, Field{F::sdp_bsdh_flags, o + 1, 1, b.flags},
       Field{F::sdp_bsdh_oobpres, o + 1, 1, flag(wire::flags::kOobPres)},
       Field{F::sdp_bsdh_oobpend, o + 1, 1, flag(wire::flags::kOobPend)},
       Field{F::sdp_bsdh_reqpipe, o + 1, 1, flag(wire::flags::kReqPipe)},
       Field{F::sdp_bsdh_bufs, o + 2, 2, b.bufs}, Field{F::sdp_bsdh_len, o + 4, 4, b.len},
       Field{F::sdp_bsdh_mseq, o + 8, 4, b.mseq},
       Field{F::sdp_bsdh_mseqack, o + 12, 4, b.mseq_ack}});
  p.sdp_mid = b.mid;
}

// The HH at frame offset `off` (after the BSDH); the compact form (IP CM) ends at LocalPort.
void hh_fields(Packet& p, std::size_t off, const wire::HelloHeader& h, bool compact) {
  push(p, F::sdp_hh_majv, off, 1, h.major);
  push(p, F::sdp_hh_minv, off, 1, h.minor);
  push(p, F::sdp_hh_ipv, off + 1, 1, h.ip_version);
  push(p, F::sdp_hh_cap, off + 1, 1, h.cap);
  push(p, F::sdp_hh_cap_invalidate, off + 1, 1, (h.cap & wire::cap::kInvalidate) != 0 ? 1 : 0);
  push(p, F::sdp_hh_cap_extmaxadverts, off + 1, 1,
       (h.cap & wire::cap::kExtMaxAdverts) != 0 ? 1 : 0);
  push(p, F::sdp_hh_maxadverts, off + 3, 1, h.max_adverts);
  push(p, F::sdp_hh_desremrcvsz, off + 4, 4, h.des_rem_rcv_sz);
  push(p, F::sdp_hh_localrcvsz, off + 8, 4, h.local_rcv_sz);
  push(p, F::sdp_hh_localport, off + 12, 2, h.local_port);
  if (compact) return;
  push(p, F::sdp_hh_src_ip, off + 16, 16, 0);
  push(p, F::sdp_hh_dst_ip, off + 32, 16, 0);
  // Reserved (zero, the codec checks) unless Cap says ExtMaxAdverts.
  push(p, F::sdp_hh_extmaxadverts, off + 50, 2, h.ext_max_adverts);
}

// The extended header of a SEND message at frame offset `off` (after the BSDH).
struct ExtFields {
  Packet& p;
  std::size_t off;
  void operator()(std::monostate) const {}
  void operator()(const wire::HelloHeader&) const {}  // CM private data, never a SEND
  void operator()(const wire::HelloAckHeader& h) const {
    push(p, F::sdp_hah_majv, off, 1, h.major);
    push(p, F::sdp_hah_minv, off, 1, h.minor);
    push(p, F::sdp_hah_ipv, off + 1, 1, h.ip_version);
    push(p, F::sdp_hah_cap, off + 1, 1, h.cap);
    push(p, F::sdp_hah_maxadverts, off + 3, 1, h.max_adverts);
    push(p, F::sdp_hah_actrcvsz, off + 4, 4, h.act_rcv_sz);
  }
  void operator()(const wire::SrcAvailHeader& h) const {
    push(p, F::sdp_srcah_len, off, 4, h.len);
    push(p, F::sdp_srcah_rkey, off + 4, 4, h.rkey);
    push(p, F::sdp_srcah_va, off + 8, 8, h.va);
  }
  void operator()(const wire::SinkAvailHeader& h) const {
    push(p, F::sdp_sinkah_len, off, 4, h.len);
    push(p, F::sdp_sinkah_rkey, off + 4, 4, h.rkey);
    push(p, F::sdp_sinkah_va, off + 8, 8, h.va);
    push(p, F::sdp_sinkah_nondisc, off + 16, 4, h.non_disc);
  }
  void operator()(const wire::RdmaWrComplHeader& h) const {
    push(p, F::sdp_rwch_len, off, 4, h.len);
  }
  void operator()(const wire::RdmaRdComplHeader& h) const {
    push(p, F::sdp_rrch_rdmardsz, off, 4, h.len);
  }
  void operator()(const wire::ModeChangeHeader& h) const {
    push(p, F::sdp_mch_mode, off, 1, (h.send_half ? 0x8U : 0U) | static_cast<unsigned>(h.mode));
  }
  void operator()(const wire::ChRcvBufHeader& h) const {
    push(p, F::sdp_crbh_desrcvsz, off, 4, h.size);
  }
  void operator()(const wire::ChRcvBufAckHeader& h) const {
    push(p, F::sdp_crbah_actrcvsz, off, 4, h.size);
  }
  void operator()(const wire::SuspCommHeader& h) const {
    push(p, F::sdp_suspch_serviceid, off, 8, h.service_id);
  }
};

// A decoded message (or the start of one) at frame offset `off`: BSDH, extended header, and the
// ULP payload bytes it has in this packet (`m.payload` views into the packet).
void message_fields(Packet& p, std::size_t off, const wire::Message& m) {
  bsdh_fields(p, off, m.bsdh);
  std::visit(ExtFields{p, off + wire::kBsdhSize}, m.ext);
  if (!m.payload.empty()) push(p, F::sdp_data, offset_in(p, m.payload), m.payload.size(), 0);
}

// A packet continuing a multi-packet SEND: `so_far` is the message up to and including this
// packet's `len` payload bytes (at frame offset `off`). The bytes past the message's headers are
// ULP data when its MID carries any.
void continuation_fields(Packet& p, std::size_t off, std::size_t len,
                         std::span<const std::uint8_t> so_far) {
  if (so_far.empty() || so_far.size() < len) return;
  const auto mid = static_cast<wire::Mid>(so_far[0]);
  if (!wire::mid_carries_payload(mid)) return;
  const std::size_t pos = so_far.size() - len;  // this packet's first byte in the message
  const std::size_t start = std::max(pos, wire::kBsdhSize + wire::ext_header_size(mid));
  if (start < so_far.size()) push(p, F::sdp_data, off + (start - pos), so_far.size() - start, 0);
}

}  // namespace

sdp::Address sdp_address(const Packet& p, const Address& a) {
  const std::uint8_t* d = p.data.data();
  switch (a.kind) {
    case AddrKind::Lid:
      return sdp::Address::lid(a.lid);
    case AddrKind::Gid:
    case AddrKind::Ipv6:
      if (a.off + 16 <= p.data.size())
        return sdp::Address::gid(std::span<const std::uint8_t, 16>(d + a.off, 16));
      break;
    case AddrKind::Ipv4:
      if (a.off + 4 <= p.data.size())
        return sdp::Address::ipv4(std::span<const std::uint8_t, 4>(d + a.off, 4));
      break;
    case AddrKind::None:
      break;
  }
  return {};
}

void Session::add_note(Packet& p, Severity s, std::string text) {
  if (notes_used_ >= note_text_.size()) return;
  std::string& t = note_text_[notes_used_++];
  t = std::move(text);
  p.notes.push_back(Note{s, "{2}", 0, 0, t.c_str()});
}

void Session::malformed(Packet& p, std::size_t off, std::span<const std::uint8_t> bytes,
                        const char* what, std::string_view reason) {
  if (auto b = wire::peek_bsdh(bytes)) bsdh_fields(p, off, *b);
  add_note(p, Severity::Error, std::string("malformed SDP ") + what + ": " + std::string(reason));
}

bool Session::sdp_hello(Packet& p, std::size_t off, std::span<const std::uint8_t> bytes) {
  const auto h = wire::decode_hello(bytes);
  if (!h) {
    malformed(p, off, bytes, "Hello", h.error().reason());
    return false;
  }
  bsdh_fields(p, off, h->bsdh);
  hh_fields(p, off + wire::kBsdhSize, h->hh, h->compact);
  return true;
}

bool Session::sdp_hello_ack(Packet& p, std::size_t off, std::span<const std::uint8_t> bytes) {
  const auto h = wire::decode_hello_ack(bytes);
  if (!h) {
    malformed(p, off, bytes, "HelloAck", h.error().reason());
    return false;
  }
  bsdh_fields(p, off, h->bsdh);
  ExtFields{p, off + wire::kBsdhSize}(h->hah);
  return true;
}

void Session::cm(Packet& p) {
  sdp::CmEvent ev = decode_cm(p);
  if (ev.kind == sdp::CmKind::Other) return;
  ev.transaction_id = p.mad_tid;
  ev.src = sdp_address(p, p.src);
  ev.dst = sdp_address(p, p.dst);
  std::string note;
  const sdp::Connection* conn = follower_.on_cm(ev, &note);
  bool hello_ok = true;
  if (conn != nullptr) {
    p.fields.push_back(Field{FieldId::sdp_conn, 0, 0, conn->id});
    const std::size_t priv = offset_in(p, ev.private_data);
    if (ev.kind == sdp::CmKind::Req) {
      // The Hello: at the start of the private data (native), or after the IP CM header.
      const std::size_t skip = conn->setup == sdp::Setup::IpCm ? wire::kIpCmHeaderSize : 0;
      const auto hello = ev.private_data.size() >= skip ? ev.private_data.subspan(skip)
                                                        : std::span<const std::uint8_t>{};
      hello_ok = sdp_hello(p, priv + skip, hello);
    } else if (ev.kind == sdp::CmKind::Rep) {
      hello_ok = sdp_hello_ack(p, priv, ev.private_data);
    }
  }
  // The follower's note about an invalid Hello / HelloAck repeats the error just noted.
  if (!note.empty() && hello_ok) add_note(p, Severity::Warn, "SDP: " + note);
}

void Session::rc(Packet& p) {
  if (p.payload_end < p.payload_off + p.pad || p.payload_end > p.data.size()) return;
  sdp::RcPacket rp;
  rp.src = sdp_address(p, p.src);
  rp.dst = sdp_address(p, p.dst);
  rp.opcode = p.opcode;
  rp.dest_qp = p.dest_qp;
  rp.psn = p.psn;
  rp.payload = p.data.subspan(p.payload_off, p.payload_end - p.pad - p.payload_off);
  const sdp::SdpResult r = follower_.on_rc(rp);
  if (r.kind == sdp::SdpResult::Kind::NotSdp) return;
  p.fields.insert(p.fields.end(),
                  {Field{FieldId::sdp_conn, 0, 0, r.conn->id},
                   Field{FieldId::sdp_dir, 0, 0, static_cast<std::uint64_t>(r.direction)}});
  using Kind = sdp::SdpResult::Kind;
  // As tshark does, the BSDH (and the extended header) is shown on the packet that carries it:
  // SEND Only, or the First of a multi-packet SEND, decoded there as far as it goes.
  const bool starts = sdp::send_starts_message(p.opcode);
  if (starts && r.kind == Kind::Message) {
    message_fields(p, p.payload_off, r.message);
  } else if (starts && r.kind == Kind::Malformed) {
    malformed(p, p.payload_off, rp.payload, "message", r.error.reason());
  } else if (starts && r.kind == Kind::Fragment) {
    wire::Message m;
    wire::Error e;
    if (wire::decode_message_prefix_into(rp.payload, m, e))
      message_fields(p, p.payload_off, m);
    else
      malformed(p, p.payload_off, rp.payload, "message", e.reason());
  } else if (r.kind == Kind::Fragment || r.kind == Kind::Message) {
    continuation_fields(p, p.payload_off, rp.payload.size(), r.bytes);
  } else if (r.kind == Kind::Malformed) {
    add_note(p, Severity::Error, "malformed SDP message: " + std::string(r.error.reason()));
  }
  if (!r.note.empty())
    add_note(p, r.kind == Kind::Duplicate ? Severity::Info : Severity::Warn, "SDP: " + r.note);
}

void Session::process(Packet& p) {
  notes_used_ = 0;
  if (!p.has_bth) return;
  if (p.has_mad) {
    if (p.mad_class == 0x07) cm(p);
    return;
  }
  if (p.opcode < 0x20 && sdp_) rc(p);  // RC transport
}

}  // namespace ibsniff

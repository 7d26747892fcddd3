#include "ibsniff/session.hpp"

#include <algorithm>

#include "sdp/bytes.hpp"

namespace ibsniff {

namespace {

using ::sdp::be::get16;
using ::sdp::be::get24;
using ::sdp::be::get32;
using ::sdp::be::get64;

constexpr std::size_t kCmData = 232;  // CM attribute data after the 24-byte MAD header

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

void Session::sdp_bsdh_fields(Packet& p, std::size_t off, std::size_t avail) {
  if (avail < 16) return;
  const std::uint8_t* b = p.data.data() + off;
  auto add = [&](FieldId id, std::size_t o, std::size_t n, std::uint64_t v) {
    p.fields.push_back(
        Field{id, static_cast<std::uint32_t>(off + o), static_cast<std::uint32_t>(n), v});
  };
  add(FieldId::sdp_bsdh_mid, 0, 1, b[0]);
  add(FieldId::sdp_bsdh_flags, 1, 1, b[1]);
  add(FieldId::sdp_bsdh_bufs, 2, 2, get16(b + 2));
  add(FieldId::sdp_bsdh_len, 4, 4, get32(b + 4));
  add(FieldId::sdp_bsdh_mseq, 8, 4, get32(b + 8));
  add(FieldId::sdp_bsdh_mseqack, 12, 4, get32(b + 12));
  p.sdp_mid = b[0];
}

void Session::sdp_hello_fields(Packet& p, std::size_t off, bool full) {
  const std::uint8_t* h = p.data.data() + off;  // the HH, after the BSDH
  auto add = [&](FieldId id, std::size_t o, std::size_t n, std::uint64_t v) {
    p.fields.push_back(
        Field{id, static_cast<std::uint32_t>(off + o), static_cast<std::uint32_t>(n), v});
  };
  add(FieldId::sdp_hh_majv, 0, 1, h[0] >> 4);
  add(FieldId::sdp_hh_minv, 0, 1, h[0] & 0x0F);
  add(FieldId::sdp_hh_ipv, 1, 1, h[1] >> 4);
  add(FieldId::sdp_hh_cap, 1, 1, h[1] & 0x0F);
  add(FieldId::sdp_hh_maxadverts, 3, 1, h[3]);
  add(FieldId::sdp_hh_desremrcvsz, 4, 4, get32(h + 4));
  add(FieldId::sdp_hh_localrcvsz, 8, 4, get32(h + 8));
  add(FieldId::sdp_hh_localport, 12, 2, get16(h + 12));
  if (full) {
    add(FieldId::sdp_hh_src_ip, 16, 16, 0);
    add(FieldId::sdp_hh_dst_ip, 32, 16, 0);
  }
}

void Session::cm(Packet& p) {
  const std::size_t base = std::size_t{p.mad_off} + 24;
  if (base + kCmData > p.data.size()) return;  // the decoder already noted the short MAD
  const std::uint8_t* c = p.data.data() + base;
  auto add = [&](FieldId id, std::size_t o, std::size_t n, std::uint64_t v) {
    p.fields.push_back(
        Field{id, static_cast<std::uint32_t>(base + o), static_cast<std::uint32_t>(n), v});
  };
  sdp::CmEvent ev;
  ev.transaction_id = p.mad_tid;
  ev.src = sdp_address(p, p.src);
  ev.dst = sdp_address(p, p.dst);
  ev.local_comm_id = get32(c);
  ev.remote_comm_id = get32(c + 4);
  std::size_t priv = 0, priv_len = 0;
  switch (p.mad_attr) {
    case 0x0010: {  // REQ
      ev.kind = sdp::CmKind::Req;
      ev.service_id = get64(c + 8);
      ev.local_qpn = get24(c + 32);
      add(FieldId::cm_req, 0, 4, ev.local_comm_id);
      add(FieldId::cm_req_serviceid, 8, 8, ev.service_id);
      add(FieldId::cm_req_localqpn, 32, 3, ev.local_qpn);
      add(FieldId::cm_req_startpsn, 44, 3, get24(c + 44));
      add(FieldId::cm_req_pkey, 48, 2, get16(c + 48));
      add(FieldId::cm_req_prim_locallid, 52, 2, get16(c + 52));
      add(FieldId::cm_req_prim_remotelid, 54, 2, get16(c + 54));
      add(FieldId::cm_req_prim_localgid, 56, 16, 0);
      add(FieldId::cm_req_prim_remotegid, 72, 16, 0);
      priv = 140;
      priv_len = 92;
      add(FieldId::cm_req_private, priv, priv_len, 0);
      if (::sdp::wire::is_ipcm_service_id(ev.service_id)) {
        const std::uint8_t* h = c + priv;
        add(FieldId::cm_req_ip_cm_majv, priv, 1, h[0] >> 4);
        add(FieldId::cm_req_ip_cm_minv, priv, 1, h[0] & 0x0F);
        add(FieldId::cm_req_ip_cm_ipv, priv + 1, 1, h[1] >> 4);
        add(FieldId::cm_req_ip_cm_sport, priv + 2, 2, get16(h + 2));
        if ((h[1] >> 4) == 6) {
          add(FieldId::cm_req_ip_cm_sip6, priv + 4, 16, 0);
          add(FieldId::cm_req_ip_cm_dip6, priv + 20, 16, 0);
        } else {
          add(FieldId::cm_req_ip_cm_sip4, priv + 16, 4, 0);
          add(FieldId::cm_req_ip_cm_dip4, priv + 32, 4, 0);
        }
        add(FieldId::cm_req_ip_cm_private, priv + 36, priv_len - 36, 0);
      }
      break;
    }
    case 0x0013:  // REP
      ev.kind = sdp::CmKind::Rep;
      ev.local_qpn = get24(c + 12);
      add(FieldId::cm_rep, 0, 4, ev.local_comm_id);
      add(FieldId::cm_rep_remotecommid, 4, 4, ev.remote_comm_id);
      add(FieldId::cm_rep_localqpn, 12, 3, ev.local_qpn);
      add(FieldId::cm_rep_startpsn, 20, 3, get24(c + 20));
      priv = 36;
      priv_len = 196;
      add(FieldId::cm_rep_private, priv, priv_len, 0);
      break;
    case 0x0014:  // RTU
      ev.kind = sdp::CmKind::Rtu;
      add(FieldId::cm_rtu_localcommid, 0, 4, ev.local_comm_id);
      add(FieldId::cm_rtu_remotecommid, 4, 4, ev.remote_comm_id);
      break;
    case 0x0012:  // REJ
      ev.kind = sdp::CmKind::Rej;
      add(FieldId::cm_rej_localcommid, 0, 4, ev.local_comm_id);
      add(FieldId::cm_rej_remotecommid, 4, 4, ev.remote_comm_id);
      add(FieldId::cm_rej_reason, 10, 2, get16(c + 10));
      add(FieldId::cm_rej_private, 84, 148, 0);
      break;
    case 0x0015:  // DREQ
      ev.kind = sdp::CmKind::Dreq;
      add(FieldId::cm_dreq_localcommid, 0, 4, ev.local_comm_id);
      add(FieldId::cm_dreq_remotecommid, 4, 4, ev.remote_comm_id);
      break;
    case 0x0016:  // DREP
      ev.kind = sdp::CmKind::Drep;
      add(FieldId::cm_drsp_localcommid, 0, 4, ev.local_comm_id);
      add(FieldId::cm_drsp_remotecommid, 4, 4, ev.remote_comm_id);
      break;
    default:
      return;
  }
  ev.private_data = {c + priv, priv_len};
  std::string note;
  const sdp::Connection* conn = follower_.on_cm(ev, &note);
  if (!note.empty()) add_note(p, Severity::Warn, "SDP: " + note);
  if (conn == nullptr) return;
  p.fields.push_back(Field{FieldId::sdp_conn, 0, 0, conn->id});
  if (ev.kind == sdp::CmKind::Req) {
    // The Hello: at the start of the private data (native), or after the IP CM header.
    const std::size_t at = base + priv + (conn->setup == sdp::Setup::IpCm ? 36 : 0);
    sdp_bsdh_fields(p, at, 32);
    sdp_hello_fields(p, at + 16, conn->setup != sdp::Setup::IpCm);
  } else if (ev.kind == sdp::CmKind::Rep) {
    sdp_bsdh_fields(p, base + priv, 16);  // the HelloAck's BSDH
  }
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
  p.fields.push_back(Field{FieldId::sdp_conn, 0, 0, r.conn->id});
  p.fields.push_back(Field{FieldId::sdp_dir, 0, 0, static_cast<std::uint64_t>(r.direction)});
  // As tshark does, the BSDH is shown on the packet that carries it (SEND First / Only).
  if (sdp::send_starts_message(p.opcode) && r.kind != sdp::SdpResult::Kind::Duplicate)
    sdp_bsdh_fields(p, p.payload_off, rp.payload.size());
  if (r.kind == sdp::SdpResult::Kind::Malformed)
    add_note(p, Severity::Error, "malformed SDP message: " + std::string(r.error.reason()));
  if (!r.note.empty())
    add_note(p, r.kind == sdp::SdpResult::Kind::Duplicate ? Severity::Info : Severity::Warn,
             "SDP: " + r.note);
}

void Session::process(Packet& p) {
  notes_used_ = 0;
  if (!p.has_bth) return;
  if (p.has_mad) {
    if (p.mad_class == 0x07) cm(p);
    return;
  }
  if (p.opcode < 0x20) rc(p);  // RC transport
}

}  // namespace ibsniff

#include "ibsniff/cm.hpp"

#include <algorithm>
#include <bit>
#include <span>

#include "ibsniff/decoder.hpp"
#include "sdp/wire.hpp"

namespace ibsniff {
namespace {

using F = FieldId;

constexpr std::size_t kCmData = 232;  // CM attribute data after the 24-byte MAD header

// CM attribute IDs.
enum class Attr : std::uint16_t {
  Req = 0x0010,
  Mra = 0x0011,
  Rej = 0x0012,
  Rep = 0x0013,
  Rtu = 0x0014,
  Dreq = 0x0015,
  Drep = 0x0016,
  SidrReq = 0x0017,
  SidrRep = 0x0018,
  Lap = 0x0019,
  Apr = 0x001A,
};

// A field of a CM message: its offset and length in the 232-byte attribute data. Its value is
// read big-endian and masked / shifted as the field table says. Layouts: IBA Vol 1 ch. 12.6
// (capture-formats.md §2.6; Linux drivers/infiniband/core/cm_msgs.h).
struct Spec {
  FieldId id;
  std::uint8_t off;
  std::uint8_t len;
};

// REQ: LocalCommID, ServiceID, then the connection parameters up to the primary path (52).
constexpr Spec kReqHead[] = {{F::cm_req, 0, 4}, {F::reserved, 4, 4}, {F::cm_req_serviceid, 8, 8}};
// The parts of an IP CM service ID (Annex A11: prefix 0x0000000001, protocol, port).
constexpr Spec kReqServiceIdParts[] = {{F::cm_req_serviceid_prefix, 8, 5},
                                       {F::cm_req_serviceid_protocol, 13, 1},
                                       {F::cm_req_serviceid_dport, 14, 2}};
constexpr Spec kReqParams[] = {
    {F::cm_req_localcaguid, 16, 8},    {F::reserved, 24, 4},
    {F::cm_req_localqkey, 28, 4},      {F::cm_req_localqpn, 32, 3},
    {F::cm_req_responderres, 35, 1},   {F::cm_req_localeecn, 36, 3},
    {F::cm_req_initdepth, 39, 1},      {F::cm_req_remoteeecn, 40, 3},
    {F::cm_req_remoteresptout, 43, 1}, {F::cm_req_transpsvctype, 43, 1},
    {F::cm_req_e2eflowctrl, 43, 1},    {F::cm_req_startpsn, 44, 3},
    {F::cm_req_localresptout, 47, 1},  {F::cm_req_retrcount, 47, 1},
    {F::cm_req_pkey, 48, 2},           {F::cm_req_pppmtu, 50, 1},
    {F::cm_req_rdcexist, 50, 1},       {F::cm_req_rnrretrcount, 50, 1},
    {F::cm_req_maxcmretr, 51, 1},      {F::cm_req_srq, 51, 1},
    {F::cm_req_ext_transport, 51, 1},
};
// A REQ path (44 bytes; primary at 52, alternate at 96), offsets relative to its start:
// LocalLID, RemoteLID, LocalGID 4, RemoteGID 20, FlowLabel(20b)/rsvd(6b)/PacketRate(6b) 36,
// TrafficClass 40, HopLimit 41, SL(4b)/SubnetLocal(1b)/rsvd(3b) 42, LocalACKTimeout(5b)/rsvd 43.
// The primary GIDs are added apart (tshark shows them as IPv4 on RoCEv2/IPv4). tshark 4.0 names
// the alternate path's last reserved bits alt_reserved1, like the ones before them.
constexpr std::size_t kReqPrimaryPath = 52, kReqAltPath = 96, kPathLocalGid = 4,
                      kPathRemoteGid = 20;
constexpr Spec kReqPrimary[] = {
    {F::cm_req_prim_locallid, 0, 2},      {F::cm_req_prim_remotelid, 2, 2},
    {F::cm_req_prim_flowlabel, 36, 4},    {F::cm_req_prim_reserved0, 36, 4},
    {F::cm_req_prim_pktrate, 36, 4},      {F::cm_req_prim_tfcclass, 40, 1},
    {F::cm_req_prim_hoplim, 41, 1},       {F::cm_req_prim_sl, 42, 1},
    {F::cm_req_prim_subnetlocal, 42, 1},  {F::cm_req_prim_reserved1, 42, 1},
    {F::cm_req_prim_localacktout, 43, 1}, {F::cm_req_prim_reserved2, 43, 1},
};
constexpr Spec kReqAlternate[] = {
    {F::cm_req_alt_locallid, 0, 2},      {F::cm_req_alt_remotelid, 2, 2},
    {F::cm_req_alt_localgid, 4, 16},     {F::cm_req_alt_remotegid, 20, 16},
    {F::cm_req_alt_flowlabel, 36, 4},    {F::cm_req_alt_reserved0, 36, 4},
    {F::cm_req_alt_pktrate, 36, 4},      {F::cm_req_alt_tfcclass, 40, 1},
    {F::cm_req_alt_hoplim, 41, 1},       {F::cm_req_alt_sl, 42, 1},
    {F::cm_req_alt_subnetlocal, 42, 1},  {F::cm_req_alt_reserved1, 42, 1},
    {F::cm_req_alt_localacktout, 43, 1}, {F::cm_req_alt_reserved1, 43, 1},
};
constexpr std::size_t kReqPrivate = 140;  // 92 bytes

constexpr Spec kRep[] = {
    {F::cm_rep, 0, 4},
    {F::cm_rep_remotecommid, 4, 4},
    {F::cm_rep_localqkey, 8, 4},
    {F::cm_rep_localqpn, 12, 3},
    {F::reserved, 15, 1},
    {F::cm_rep_localeecn, 16, 3},
    {F::reserved, 19, 1},
    {F::cm_rep_startpsn, 20, 3},
    {F::reserved, 23, 1},
    {F::cm_rep_respres, 24, 1},
    {F::cm_rep_initdepth, 25, 1},
    {F::cm_rep_tgtackdelay, 26, 1},
    {F::cm_rep_failoveracc, 26, 1},
    {F::cm_rep_e2eflowctrl, 26, 1},
    {F::cm_rep_rnrretrcount, 27, 1},
    {F::cm_rep_srq, 27, 1},
    {F::cm_rep_reserved, 27, 1},
    {F::cm_rep_localcaguid, 28, 8},
    {F::cm_rep_private, 36, 196},
};
constexpr Spec kRtu[] = {
    {F::cm_rtu_localcommid, 0, 4}, {F::cm_rtu_remotecommid, 4, 4}, {F::cm_rtu_private, 8, 224}};
constexpr Spec kRej[] = {
    {F::cm_rej_localcommid, 0, 4}, {F::cm_rej_remotecommid, 4, 4}, {F::cm_rej_msgrej, 8, 1},
    {F::cm_rej_reserved0, 8, 1},   {F::cm_rej_rejinfolen, 9, 1},   {F::cm_rej_reserved1, 9, 1},
    {F::cm_rej_reason, 10, 2},     {F::cm_rej_ari, 12, 72},        {F::cm_rej_private, 84, 148},
};
// tshark 4.0 names DREQ's RemoteQPN/EECN infiniband.cm.req.remoteqpneecn.
constexpr Spec kDreq[] = {{F::cm_dreq_localcommid, 0, 4},
                          {F::cm_dreq_remotecommid, 4, 4},
                          {F::cm_req_remoteqpneecn, 8, 3},
                          {F::reserved, 11, 1},
                          {F::cm_dreq_private, 12, 220}};
constexpr Spec kDrep[] = {
    {F::cm_drsp_localcommid, 0, 4}, {F::cm_drsp_remotecommid, 4, 4}, {F::cm_drsp_private, 8, 224}};
// MRA: LocalCommID, RemoteCommID, MsgMRAed(2b)/rsvd 8, ServiceTimeout(5b)/rsvd 9, private 10.
constexpr Spec kMra[] = {{F::cm_mra_localcommid, 0, 4},
                         {F::cm_mra_remotecommid, 4, 4},
                         {F::cm_mra_msgmraed, 8, 1},
                         {F::cm_mra_servicetimeout, 9, 1},
                         {F::cm_mra_private, 10, 222}};
// LAP: LocalCommID, RemoteCommID, rsvd 8, RemoteQPN/EECN(3) 12 + RemoteCMResponseTimeout(5b)
// 15, rsvd 16, then the alternate path at 20 in LAP's own arrangement (the flow-label word holds
// FlowLabel(20b)/rsvd(4b)/TrafficClass(8b), then HopLimit, rsvd(2b)/PacketRate(6b), SL/SubnetLocal,
// LocalACKTimeout), private data at 64.
constexpr Spec kLap[] = {
    {F::cm_lap_localcommid, 0, 4},       {F::cm_lap_remotecommid, 4, 4},
    {F::cm_lap_remoteqpneecn, 12, 3},    {F::cm_lap_remoteresptout, 15, 1},
    {F::cm_lap_alt_locallid, 20, 2},     {F::cm_lap_alt_remotelid, 22, 2},
    {F::cm_lap_alt_localgid, 24, 16},    {F::cm_lap_alt_remotegid, 40, 16},
    {F::cm_lap_alt_flowlabel, 56, 4},    {F::cm_lap_alt_tfcclass, 59, 1},
    {F::cm_lap_alt_hoplim, 60, 1},       {F::cm_lap_alt_pktrate, 61, 1},
    {F::cm_lap_alt_sl, 62, 1},           {F::cm_lap_alt_subnetlocal, 62, 1},
    {F::cm_lap_alt_localacktout, 63, 1}, {F::cm_lap_private, 64, 168},
};
// APR: LocalCommID, RemoteCommID, AdditionalInfoLength 8, APStatus 9, rsvd 10, Info(72) 12.
constexpr Spec kApr[] = {{F::cm_apr_localcommid, 0, 4}, {F::cm_apr_remotecommid, 4, 4},
                         {F::cm_apr_infolen, 8, 1},     {F::cm_apr_apstatus, 9, 1},
                         {F::cm_apr_info, 12, 72},      {F::cm_apr_private, 84, 148}};
// SIDR_REQ: RequestID, P_Key 4, rsvd 6, ServiceID 8, private data 16.
constexpr Spec kSidrReq[] = {{F::cm_sidr_req_requestid, 0, 4},
                             {F::cm_sidr_req_pkey, 4, 2},
                             {F::cm_sidr_req_serviceid, 8, 8},
                             {F::cm_sidr_req_private, 16, 216}};
constexpr std::size_t kSidrReqPrivate = 16;
// SIDR_REP: RequestID, Status 4, AdditionalInfoLength 5, rsvd 6, QPN(3) 8, ServiceID 12,
// Q_Key 20, ClassPortInfo / additional info (72) 24, private data 96.
constexpr Spec kSidrRep[] = {
    {F::cm_sidr_rep_requestid, 0, 4},  {F::cm_sidr_rep_status, 4, 1},
    {F::cm_sidr_rep_infolen, 5, 1},    {F::cm_sidr_rep_qpn, 8, 3},
    {F::cm_sidr_rep_serviceid, 12, 8}, {F::cm_sidr_rep_qkey, 20, 4},
    {F::cm_sidr_rep_info, 24, 72},     {F::cm_sidr_rep_private, 96, 136},
};

// The IP CM header (Annex A11) at the start of a REQ's or SIDR_REQ's private data:
// MajV/MinV, IPV(4b)/rsvd, SrcPort, SrcIP(16) 4, DstIP(16) 20, consumer private data 36.
struct IpCmIds {
  FieldId majv, minv, ipv, reserved, sport, sip4, dip4, sip6, dip6, consumer;
};
constexpr IpCmIds kReqIpCm{F::cm_req_ip_cm_majv,     F::cm_req_ip_cm_minv,  F::cm_req_ip_cm_ipv,
                           F::cm_req_ip_cm_reserved, F::cm_req_ip_cm_sport, F::cm_req_ip_cm_sip4,
                           F::cm_req_ip_cm_dip4,     F::cm_req_ip_cm_sip6,  F::cm_req_ip_cm_dip6,
                           F::cm_req_ip_cm_private};
constexpr IpCmIds kSidrIpCm{F::cm_sidr_req_ip_cm_majv,  F::cm_sidr_req_ip_cm_minv,
                            F::cm_sidr_req_ip_cm_ipv,   F::cm_sidr_req_ip_cm_reserved,
                            F::cm_sidr_req_ip_cm_sport, F::cm_sidr_req_ip_cm_sip4,
                            F::cm_sidr_req_ip_cm_dip4,  F::cm_sidr_req_ip_cm_sip6,
                            F::cm_sidr_req_ip_cm_dip6,  F::cm_sidr_req_ip_cm_private};

// Adds fields of the attribute data at frame offset `base`, of which `avail` bytes were captured:
// a field that does not lie wholly within them is left out.
class CmFields {
 public:
  CmFields(Packet& p, std::size_t base, std::size_t avail) : p_(p), base_(base), avail_(avail) {}

  bool has(std::size_t off, std::size_t len) const { return off <= avail_ && len <= avail_ - off; }

  // Big-endian value of [off, off+len), len <= 8; 0 when not captured.
  std::uint64_t read(std::size_t off, std::size_t len) const {
    if (!has(off, len)) return 0;
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < len; ++i) v = (v << 8) | p_.data[base_ + off + i];
    return v;
  }

  void add(FieldId id, std::size_t off, std::size_t len) {
    if (!has(off, len)) return;
    const FieldDef& def = field_def(id);
    std::uint64_t v = 0;
    switch (def.type) {
      case Ft::U8:
      case Ft::U16:
      case Ft::U24:
      case Ft::U32:
      case Ft::U64:
        v = read(off, len);
        if (def.mask != 0) v = (v & def.mask) >> std::countr_zero(def.mask);
        break;
      default:  // bytes and addresses are rendered from the frame
        break;
    }
    p_.fields.push_back(
        Field{id, static_cast<std::uint32_t>(base_ + off), static_cast<std::uint32_t>(len), v});
  }

  void add(std::span<const Spec> specs, std::size_t at = 0) {
    for (const Spec& s : specs) add(s.id, at + s.off, s.len);
  }

  // The IP CM header at `at` and the consumer private data after it, to the end of the data.
  void ip_cm(std::size_t at, const IpCmIds& f) {
    add(f.majv, at, 1);
    add(f.minv, at, 1);
    add(f.ipv, at + 1, 1);
    add(f.reserved, at + 1, 1);
    add(f.sport, at + 2, 2);
    if ((read(at + 1, 1) >> 4) == 4) {  // IPv4: the last 4 bytes of each 16-byte address
      add(f.sip4, at + 16, 4);
      add(f.dip4, at + 32, 4);
    } else {
      add(f.sip6, at + 4, 16);
      add(f.dip6, at + 20, 16);
    }
    constexpr std::size_t kHdr = ::sdp::wire::kIpCmHeaderSize;
    add(f.consumer, at + kHdr, kCmData - at - kHdr);
  }

  // Private data [off, off+len) as far as captured (a view into the frame, possibly empty).
  std::span<const std::uint8_t> bytes(std::size_t off, std::size_t len) const {
    off = std::min(off, avail_);
    return p_.data.subspan(base_ + off, std::min(len, avail_ - off));
  }

 private:
  Packet& p_;
  std::size_t base_, avail_;
};

}  // namespace

sdp::CmEvent decode_cm(Packet& p) {
  sdp::CmEvent ev;
  const std::size_t base = std::size_t{p.mad_off} + 24;
  const std::size_t mad_end = std::size_t{p.payload_off} + p.payload().size();
  const std::size_t avail = mad_end > base ? std::min(mad_end - base, kCmData) : 0;
  CmFields out(p, base, avail);
  // Where the private data starts (it runs to the end of the data): the SDP follower needs the
  // fixed part before it.
  std::size_t priv = 0;
  switch (static_cast<Attr>(p.mad_attr)) {
    case Attr::Req: {
      out.add(kReqHead);
      ev.kind = sdp::CmKind::Req;
      ev.service_id = out.read(8, 8);
      ev.local_qpn = static_cast<std::uint32_t>(out.read(32, 3));
      const bool ip_cm = out.has(8, 8) && ::sdp::wire::is_ipcm_service_id(ev.service_id);
      if (ip_cm) out.add(kReqServiceIdParts);
      out.add(kReqParams);
      out.add(kReqPrimary, kReqPrimaryPath);
      // tshark 4.0 shows the primary GIDs as IPv4 addresses (their last 4 bytes) when the REQ
      // itself travels over IPv4 (RoCEv2), as IPv6 otherwise.
      if (p.dst.kind == AddrKind::Ipv4) {
        out.add(F::cm_req_prim_localgid_ipv4, kReqPrimaryPath + kPathLocalGid + 12, 4);
        out.add(F::cm_req_prim_remotegid_ipv4, kReqPrimaryPath + kPathRemoteGid + 12, 4);
      } else {
        out.add(F::cm_req_prim_localgid, kReqPrimaryPath + kPathLocalGid, 16);
        out.add(F::cm_req_prim_remotegid, kReqPrimaryPath + kPathRemoteGid, 16);
      }
      out.add(kReqAlternate, kReqAltPath);
      priv = kReqPrivate;
      // With an IP CM service ID the private data is shown as the IP CM request (tshark).
      out.add(ip_cm ? F::cm_req_ip_cm : F::cm_req_private, priv, kCmData - priv);
      if (ip_cm) out.ip_cm(priv, kReqIpCm);
      break;
    }
    case Attr::Rep:
      out.add(kRep);
      ev.kind = sdp::CmKind::Rep;
      ev.local_qpn = static_cast<std::uint32_t>(out.read(12, 3));
      priv = 36;
      break;
    case Attr::Rtu:
      out.add(kRtu);
      ev.kind = sdp::CmKind::Rtu;
      priv = 8;
      break;
    case Attr::Rej:
      out.add(kRej);
      ev.kind = sdp::CmKind::Rej;
      priv = 84;
      break;
    case Attr::Dreq:
      out.add(kDreq);
      ev.kind = sdp::CmKind::Dreq;
      priv = 12;
      break;
    case Attr::Drep:
      out.add(kDrep);
      ev.kind = sdp::CmKind::Drep;
      priv = 8;
      break;
    case Attr::Mra:
      out.add(kMra);
      break;
    case Attr::Lap:
      out.add(kLap);
      break;
    case Attr::Apr:
      out.add(kApr);
      break;
    case Attr::SidrReq:
      out.add(kSidrReq);
      if (out.has(8, 8) && ::sdp::wire::is_ipcm_service_id(out.read(8, 8)))
        out.ip_cm(kSidrReqPrivate, kSidrIpCm);
      break;
    case Attr::SidrRep:
      out.add(kSidrRep);
      break;
    default:
      return ev;  // ClassPortInfo and undefined attributes: not decoded
  }
  if (avail < kCmData) {
    p.notes.push_back(Note{Severity::Error, "CM {2} truncated: {0} of its {1} data bytes captured",
                           avail, kCmData, cm_attr_name(p.mad_attr)});
  }
  if (ev.kind == sdp::CmKind::Other) return ev;
  if (!out.has(0, priv)) {  // too short for the SDP follower
    ev.kind = sdp::CmKind::Other;
    return ev;
  }
  ev.local_comm_id = static_cast<std::uint32_t>(out.read(0, 4));
  ev.remote_comm_id = static_cast<std::uint32_t>(out.read(4, 4));
  ev.private_data = out.bytes(priv, kCmData - priv);
  return ev;
}

}  // namespace ibsniff

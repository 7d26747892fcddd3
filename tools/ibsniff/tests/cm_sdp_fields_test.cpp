// CM and SDP field decoding on hand-built frames: every CM message type (REQ, MRA, REJ, REP, RTU,
// DREQ, DREP, SIDR_REQ, SIDR_REP, LAP, APR) and every SDP MID, asserting the rendered values, and
// truncated / malformed variants asserting an Error note.
//
// The CM attribute data is a byte pattern (byte i = 7i + 3) so that every field reads a distinct
// value; the expected renderings of infiniband.cm.* fields are tshark 4.0's for the same bytes
// (checked with tshark on these frames while writing the test, and by
// IbsniffTshark.SyntheticCmMessagesMatchTshark), except where a comment says otherwise.
#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "frames.hpp"
#include "ibsniff/decoder.hpp"
#include "ibsniff/render.hpp"
#include "ibsniff/session.hpp"
#include "sdp/wire.hpp"

namespace ibsniff {
namespace {

using test::Bytes;
namespace wire = ::sdp::wire;

// A decoded packet with its notes formatted while the Session that made them was alive (a
// Session's notes point into it until its next packet).
struct Decoded : Packet {
  std::vector<std::pair<Severity, std::string>> note_text;
};

// Decodes the frames in order through one Session; frames stay alive for the whole program.
std::vector<Decoded> decode_all(const std::vector<Bytes>& frames, int linktype) {
  static std::deque<Bytes> store;
  Session session;
  std::vector<Decoded> out;
  for (const Bytes& f : frames) {
    const Bytes& kept = store.emplace_back(f);
    Decoded d;
    d.number = out.size() + 1;
    d.linktype = linktype;
    d.data = kept;
    d.wire_len = static_cast<std::uint32_t>(kept.size());
    decode(d);
    session.process(d);
    for (const auto& n : d.notes) d.note_text.emplace_back(n.severity, format_note(n));
    out.push_back(std::move(d));
  }
  return out;
}
Decoded decoded(const Bytes& frame, int linktype) {
  return decode_all({frame}, linktype).front();
}

std::string field(const Packet& p, const char* name) {
  const auto id = field_by_name(name);
  EXPECT_TRUE(id.has_value()) << name;
  std::string out;
  if (id) render_occurrences(p, *id, TimeRef{}, 0, out);
  return out;
}

std::string notes(const Decoded& p) {
  std::string s;
  for (const auto& [severity, text] : p.note_text) s += text + "; ";
  return s;
}
bool has_error(const Decoded& p, const std::string& needle) {
  for (const auto& [severity, text] : p.note_text)
    if (severity == Severity::Error && text.find(needle) != std::string::npos) return true;
  return false;
}
// No Warn or Error notes.
bool clean(const Decoded& p) {
  for (const auto& [severity, text] : p.note_text)
    if (severity != Severity::Info) return false;
  return true;
}

// The 232 bytes of CM attribute data: byte i = 7i + 3.
Bytes pattern() {
  return test::byte_pattern(232);
}
void set_be(Bytes& b, std::size_t off, std::uint64_t v, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    b[off + i] = static_cast<std::uint8_t>(v >> (8 * (n - 1 - i)));
}
// Lowercase hex of d[off, off+len), as Bytes fields render.
std::string hex(const Bytes& d, std::size_t off, std::size_t len) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (std::size_t i = off; i < off + len; ++i) {
    s += digits[d[i] >> 4];
    s += digits[d[i] & 0xF];
  }
  return s;
}

constexpr std::uint64_t kIpCmSid = 0x0000000001061d2fULL;  // IP CM, TCP, port 7471

// ---- CM ----

TEST(IbsniffCm, ReqEveryFieldWithIpCmHeader) {
  Bytes d = pattern();
  set_be(d, 8, kIpCmSid, 8);
  d[141] = 0x40;  // IP CM IPV 4
  const Decoded p = decoded(test::cm_rocev2(0x0010, d), kLinkEthernet);
  EXPECT_TRUE(clean(p)) << notes(p);
  EXPECT_EQ(info(p), "CM: ConnectRequest");
  const std::pair<const char*, std::string> want[] = {
      {"infiniband.cm.req", "0x030a1118"},
      // BTH byte 4, DETH byte 4, MAD bytes 18-19, then REQ bytes 4-7 and 24-27
      {"infiniband.reserved", "00,00,0000,1f262d34,abb2b9c0"},
      {"infiniband.cm.req.serviceid", "0x0000000001061d2f"},
      {"infiniband.cm.req.serviceid.prefix", "0000000001"},
      {"infiniband.cm.req.serviceid.protocol", "0x06"},
      {"infiniband.cm.req.serviceid.dport", "0x1d2f"},
      {"infiniband.cm.req.localcaguid", "0x737a81888f969da4"},
      {"infiniband.cm.req.localqkey", "0xc7ced5dc"},
      {"infiniband.cm.req.localqpn", "0xe3eaf1"},
      {"infiniband.cm.req.responderres", "0xf8"},
      {"infiniband.cm.req.localeecn", "0xff060d"},
      {"infiniband.cm.req.initdepth", "0x14"},
      {"infiniband.cm.req.remoteeecn", "0x1b2229"},
      {"infiniband.cm.req.remoteresptout", "0x06"},
      {"infiniband.cm.req.transpsvctype", "0x00"},
      {"infiniband.cm.req.e2eflowctrl", "0x00"},
      {"infiniband.cm.req.startpsn", "0x373e45"},
      {"infiniband.cm.req.localresptout", "0x09"},
      {"infiniband.cm.req.retrcount", "0x04"},
      {"infiniband.cm.req.pkey", "0x535a"},
      {"infiniband.cm.req.pppmtu", "0x06"},
      {"infiniband.cm.req.rdcexist", "0x00"},
      {"infiniband.cm.req.rnrretrcount", "0x01"},
      {"infiniband.cm.req.maxcmretr", "0x06"},
      {"infiniband.cm.req.srq", "0x01"},
      {"infiniband.cm.req.ext_transport", "0x00"},
      {"infiniband.cm.req.prim_locallid", "28534"},
      {"infiniband.cm.req.prim_remotelid", "32132"},
      // RoCEv2 over IPv4: the GIDs' last 4 bytes as IPv4 (tshark)
      {"infiniband.cm.req.prim_localgid_ipv4", "223.230.237.244"},
      {"infiniband.cm.req.prim_remotegid_ipv4", "79.86.93.100"},
      {"infiniband.cm.req.prim_localgid", ""},
      // The word 0x6b727980: FlowLabel 0x6b727, reserved 0x26, PacketRate 0 (tshark 4.0.17 shows
      // 0x000006b7, 0x00000001, 0x0000002b: see captures_test.cpp, flow_label)
      {"infiniband.cm.req.prim_flowlabel", "0x0006b727"},
      {"infiniband.cm.req.prim_reserved0", "0x00000026"},
      {"infiniband.cm.req.prim_pktrate", "0x00000000"},
      {"infiniband.cm.req.prim_tfcclass", "0x87"},
      {"infiniband.cm.req.prim_hoplim", "0x8e"},
      {"infiniband.cm.req.prim_sl", "0x09"},
      {"infiniband.cm.req.prim_subnetlocal", "0x00"},
      {"infiniband.cm.req.prim_reserved1", "0x05"},
      {"infiniband.cm.req.prim_localacktout", "0x13"},
      {"infiniband.cm.req.prim_reserved2", "0x04"},
      {"infiniband.cm.req.alt_locallid", "41898"},
      {"infiniband.cm.req.alt_remotelid", "45496"},
      {"infiniband.cm.req.alt_localgid", "bfc6cdd4dbe2e9f0f7fe050c131a2128"},
      {"infiniband.cm.req.alt_remotegid", "2f363d444b525960676e757c838a9198"},
      {"infiniband.cm.req.alt_flowlabel", "0x0009fa6a"},  // word 0x9fa6adb4
      {"infiniband.cm.req.alt_reserved0", "0x00000036"},
      {"infiniband.cm.req.alt_pktrate", "0x00000034"},
      {"infiniband.cm.req.alt_tfcclass", "0xbb"},
      {"infiniband.cm.req.alt_hoplim", "0xc2"},
      {"infiniband.cm.req.alt_sl", "0x0c"},
      {"infiniband.cm.req.alt_subnetlocal", "0x01"},
      {"infiniband.cm.req.alt_reserved1", "0x01,0x00"},  // tshark's name for both reserved fields
      {"infiniband.cm.req.alt_localacktout", "0x1a"},
      {"infiniband.cm.req.ip_cm", hex(d, 140, 92)},
      {"infiniband.cm.req.private", ""},  // shown as ip_cm with an IP CM service ID
      {"infiniband.cm.req.ip_cm.majv", "0x0d"},
      {"infiniband.cm.req.ip_cm.minv", "0x07"},
      {"infiniband.cm.req.ip_cm.ipv", "0x04"},
      {"infiniband.cm.req.ip_cm.reserved", "0x00"},
      {"infiniband.cm.req.ip_cm.sport", "0xe5ec"},
      {"infiniband.cm.req.ip_cm.sip4", "71.78.85.92"},
      {"infiniband.cm.req.ip_cm.dip4", "183.190.197.204"},
      {"infiniband.cm.req.ip_cm.sip6", ""},
      {"infiniband.cm.req.ip_cm.private", hex(d, 176, 56)},
  };
  for (const auto& [name, value] : want) EXPECT_EQ(field(p, name), value) << name;
}

TEST(IbsniffCm, ReqGidsAndIpCmAddressesAsIpv6) {
  Bytes d = pattern();
  set_be(d, 8, kIpCmSid, 8);
  d[141] = 0x60;  // IP CM IPV 6
  const Bytes gid = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 2, 0xc9, 3, 0, 0xa1, 0xb2, 1};
  std::copy(gid.begin(), gid.end(), d.begin() + 56);
  for (bool native : {true, false}) {
    const Decoded p =
        decoded(native ? test::cm_native(0x0010, d, 1, 1, 2) : test::cm_rocev2(0x0010, d, true),
                native ? kLinkInfiniband : kLinkEthernet);
    EXPECT_TRUE(clean(p)) << notes(p);
    EXPECT_EQ(field(p, "infiniband.cm.req.prim_localgid"), "fe80::2:c903:a1:b201");
    EXPECT_EQ(field(p, "infiniband.cm.req.prim_localgid_ipv4"), "");
    EXPECT_EQ(field(p, "infiniband.cm.req.ip_cm.sip6"), "f3fa:108:f16:1d24:2b32:3940:474e:555c");
    EXPECT_EQ(field(p, "infiniband.cm.req.ip_cm.dip6"), "636a:7178:7f86:8d94:9ba2:a9b0:b7be:c5cc");
    EXPECT_EQ(field(p, "infiniband.cm.req.ip_cm.sip4"), "");
  }
}

TEST(IbsniffCm, ReqWithOtherServiceIdShowsPlainPrivateData) {
  Bytes d = pattern();
  set_be(d, 8, 0x1000000000000404ULL, 8);  // IPoIB-CM
  const Decoded p = decoded(test::cm_native(0x0010, d, 1, 1, 2), kLinkInfiniband);
  EXPECT_TRUE(clean(p)) << notes(p);
  EXPECT_EQ(field(p, "infiniband.cm.req.serviceid"), "0x1000000000000404");
  EXPECT_EQ(field(p, "infiniband.cm.req.serviceid.prefix"), "");
  EXPECT_EQ(field(p, "infiniband.cm.req.private"), hex(d, 140, 92));
  EXPECT_EQ(field(p, "infiniband.cm.req.ip_cm"), "");
  EXPECT_EQ(field(p, "infiniband.cm.req.ip_cm.majv"), "");
}

TEST(IbsniffCm, RepRtuRejDreqDrep) {
  const Bytes d = pattern();
  const Decoded rep = decoded(test::cm_native(0x0013, d, 1, 1, 2), kLinkInfiniband);
  EXPECT_EQ(info(rep), "CM: ConnectReply");
  const std::pair<const char*, std::string> want_rep[] = {
      {"infiniband.cm.rep", "0x030a1118"},
      {"infiniband.cm.rep.remotecommid", "0x1f262d34"},
      {"infiniband.cm.rep.localqkey", "0x3b424950"},
      {"infiniband.cm.rep.localqpn", "0x575e65"},
      {"infiniband.cm.rep.localeecn", "0x737a81"},
      {"infiniband.cm.rep.startpsn", "0x8f969d"},
      {"infiniband.reserved", "00,00,0000,6c,88,a4"},
      {"infiniband.cm.rep.respres", "0xab"},
      {"infiniband.cm.rep.initdepth", "0xb2"},
      {"infiniband.cm.rep.tgtackdelay", "0x17"},
      {"infiniband.cm.rep.failoveracc", "0x00"},
      {"infiniband.cm.rep.e2eflowctrl", "0x01"},
      {"infiniband.cm.rep.rnrretrcount", "0x06"},
      {"infiniband.cm.rep.srq", "0x00"},
      {"infiniband.cm.rep.reserved", "0x00"},
      {"infiniband.cm.rep.localcaguid", "0xc7ced5dce3eaf1f8"},
      {"infiniband.cm.rep.private", hex(d, 36, 196)},
  };
  for (const auto& [name, value] : want_rep) EXPECT_EQ(field(rep, name), value) << name;

  const Decoded rtu = decoded(test::cm_native(0x0014, d, 1, 1, 2), kLinkInfiniband);
  EXPECT_EQ(field(rtu, "infiniband.cm.rtu.localcommid"), "0x030a1118");
  EXPECT_EQ(field(rtu, "infiniband.cm.rtu.remotecommid"), "0x1f262d34");
  EXPECT_EQ(field(rtu, "infiniband.cm.rtu.private"), hex(d, 8, 224));
  EXPECT_EQ(field(rtu, "infiniband.reserved"), "00,00,0000");

  const Decoded rej = decoded(test::cm_native(0x0012, d, 1, 1, 2), kLinkInfiniband);
  const std::pair<const char*, std::string> want_rej[] = {
      {"infiniband.cm.rej.localcommid", "0x030a1118"},
      {"infiniband.cm.rej.remotecommid", "0x1f262d34"},
      {"infiniband.cm.rej.msgrej", "0x00"},
      {"infiniband.cm.rej.reserved0", "0x03"},  // tshark's mask 0x03 (of 6 reserved bits)
      {"infiniband.cm.rej.rejinfolen", "0x21"},
      {"infiniband.cm.rej.reserved1", "0x00"},
      {"infiniband.cm.rej.reason", "0x4950"},
      {"infiniband.cm.rej.ari", hex(d, 12, 72)},
      {"infiniband.cm.rej.private", hex(d, 84, 148)},
  };
  for (const auto& [name, value] : want_rej) EXPECT_EQ(field(rej, name), value) << name;

  const Decoded dreq = decoded(test::cm_native(0x0015, d, 1, 1, 2), kLinkInfiniband);
  EXPECT_EQ(field(dreq, "infiniband.cm.dreq.localcommid"), "0x030a1118");
  EXPECT_EQ(field(dreq, "infiniband.cm.dreq.remotecommid"), "0x1f262d34");
  EXPECT_EQ(field(dreq, "infiniband.cm.req.remoteqpneecn"), "0x3b4249");  // tshark's name
  EXPECT_EQ(field(dreq, "infiniband.reserved"), "00,00,0000,50");
  EXPECT_EQ(field(dreq, "infiniband.cm.dreq.private"), hex(d, 12, 220));

  const Decoded drep = decoded(test::cm_native(0x0016, d, 1, 1, 2), kLinkInfiniband);
  EXPECT_EQ(field(drep, "infiniband.cm.drsp.localcommid"), "0x030a1118");
  EXPECT_EQ(field(drep, "infiniband.cm.drsp.remotecommid"), "0x1f262d34");
  EXPECT_EQ(field(drep, "infiniband.cm.drsp.private"), hex(d, 8, 224));
  for (const Decoded* p : {&rep, &rtu, &rej, &dreq, &drep}) EXPECT_TRUE(clean(*p)) << notes(*p);
}

TEST(IbsniffCm, MraLapApr) {
  Bytes d = pattern();
  const Decoded mra = decoded(test::cm_native(0x0011, d, 1, 1, 2), kLinkInfiniband);
  EXPECT_EQ(info(mra), "CM: MsgRcptAck");
  EXPECT_EQ(field(mra, "ibsniff.cm.mra.localcommid"), "0x030a1118");
  EXPECT_EQ(field(mra, "ibsniff.cm.mra.remotecommid"), "0x1f262d34");
  EXPECT_EQ(field(mra, "ibsniff.cm.mra.msgmraed"), "0x00");        // 0x3b >> 6
  EXPECT_EQ(field(mra, "ibsniff.cm.mra.servicetimeout"), "0x08");  // 0x42 >> 3
  EXPECT_EQ(field(mra, "ibsniff.cm.mra.private"), hex(d, 10, 222));
  d[8] = 0x80;  // MsgMRAed 2 (REP)
  EXPECT_EQ(field(decoded(test::cm_native(0x0011, d, 1, 1, 2), kLinkInfiniband),
                  "ibsniff.cm.mra.msgmraed"),
            "0x02");

  d = pattern();
  const Bytes gid1 = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 2, 0xc9, 3, 0, 0xa1, 0xb2, 1};
  Bytes gid2 = gid1;
  gid2[15] = 2;
  std::copy(gid1.begin(), gid1.end(), d.begin() + 24);
  std::copy(gid2.begin(), gid2.end(), d.begin() + 40);
  const Decoded lap = decoded(test::cm_native(0x0019, d, 1, 1, 2), kLinkInfiniband);
  EXPECT_EQ(info(lap), "CM: LoadAlternatePath");
  const std::pair<const char*, std::string> want_lap[] = {
      {"ibsniff.cm.lap.localcommid", "0x030a1118"},
      {"ibsniff.cm.lap.remotecommid", "0x1f262d34"},
      {"ibsniff.cm.lap.remoteqpneecn", "0x575e65"},
      {"ibsniff.cm.lap.remoteresptout", "0x0d"},  // 0x6c >> 3
      {"ibsniff.cm.lap.alt_locallid", "36758"},
      {"ibsniff.cm.lap.alt_remotelid", "40356"},
      {"ibsniff.cm.lap.alt_localgid", "fe80::2:c903:a1:b201"},
      {"ibsniff.cm.lap.alt_remotegid", "fe80::2:c903:a1:b202"},
      {"ibsniff.cm.lap.alt_flowlabel", "0x0008b929"},  // word 0x8b9299a0 >> 12
      {"ibsniff.cm.lap.alt_tfcclass", "0xa0"},         // the word's last byte
      {"ibsniff.cm.lap.alt_hoplim", "0xa7"},
      {"ibsniff.cm.lap.alt_pktrate", "0x2e"},  // 0xae & 0x3f
      {"ibsniff.cm.lap.alt_sl", "0x0b"},
      {"ibsniff.cm.lap.alt_subnetlocal", "0x00"},
      {"ibsniff.cm.lap.alt_localacktout", "0x17"},
      {"ibsniff.cm.lap.private", hex(d, 64, 168)},
  };
  for (const auto& [name, value] : want_lap) EXPECT_EQ(field(lap, name), value) << name;

  d = pattern();
  const Decoded apr = decoded(test::cm_native(0x001A, d, 1, 1, 2), kLinkInfiniband);
  EXPECT_EQ(info(apr), "CM: AlternatePathResponse");
  EXPECT_EQ(field(apr, "ibsniff.cm.apr.localcommid"), "0x030a1118");
  EXPECT_EQ(field(apr, "ibsniff.cm.apr.remotecommid"), "0x1f262d34");
  EXPECT_EQ(field(apr, "ibsniff.cm.apr.infolen"), "0x3b");
  EXPECT_EQ(field(apr, "ibsniff.cm.apr.apstatus"), "0x42");
  EXPECT_EQ(field(apr, "ibsniff.cm.apr.info"), hex(d, 12, 72));
  EXPECT_EQ(field(apr, "ibsniff.cm.apr.private"), hex(d, 84, 148));
  for (const Decoded* p : {&mra, &lap, &apr}) {
    EXPECT_TRUE(clean(*p)) << notes(*p);
    // tshark decodes none of these: no infiniband.cm.* field, no reserved field of the body
    EXPECT_EQ(field(*p, "infiniband.reserved"), "00,00,0000");
  }
}

TEST(IbsniffCm, SidrReqAndRep) {
  Bytes d = pattern();
  set_be(d, 8, wire::sdp_service_id(7000), 8);  // an SDP service ID: no connection, no SDP
  Decoded p = decoded(test::cm_native(0x0017, d, 1, 1, 2), kLinkInfiniband);
  EXPECT_TRUE(clean(p)) << notes(p);
  EXPECT_EQ(info(p), "CM: ServiceIDResReq");
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_req.requestid"), "0x030a1118");
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_req.pkey"), "0x1f26");
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_req.serviceid"), "0x0000000000011b58");
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_req.private"), hex(d, 16, 216));
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_req.ip_cm.ipv"), "");
  EXPECT_EQ(field(p, "ibsniff.sdp.conn"), "");
  EXPECT_EQ(field(p, "infiniband_sdp.bsdh.mid"), "");

  // rdma_cm's UDP port space resolves with SIDR and puts the IP CM header in its private data.
  set_be(d, 8, 0x0000000001113039ULL, 8);
  d[16] = 0x00;
  d[17] = 0x40;
  p = decoded(test::cm_native(0x0017, d, 1, 1, 2), kLinkInfiniband);
  EXPECT_TRUE(clean(p)) << notes(p);
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_req.private"), hex(d, 16, 216));
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_req.ip_cm.majv"), "0x00");
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_req.ip_cm.ipv"), "0x04");
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_req.ip_cm.sport"), "0x8188");
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_req.ip_cm.sip4"), "227.234.241.248");  // bytes 32-35
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_req.ip_cm.dip4"), "83.90.97.104");     // bytes 48-51
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_req.ip_cm.private"), hex(d, 52, 180));

  d = pattern();
  p = decoded(test::cm_native(0x0018, d, 1, 1, 2), kLinkInfiniband);
  EXPECT_TRUE(clean(p)) << notes(p);
  EXPECT_EQ(info(p), "CM: ServiceIDResReqResp");
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_rep.requestid"), "0x030a1118");
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_rep.status"), "0x1f");
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_rep.infolen"), "0x26");
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_rep.qpn"), "0x3b4249");
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_rep.serviceid"), "0x575e656c737a8188");
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_rep.qkey"), "0x8f969da4");
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_rep.info"), hex(d, 24, 72));
  EXPECT_EQ(field(p, "ibsniff.cm.sidr_rep.private"), hex(d, 96, 136));
}

// A MAD cut anywhere: an Error note naming the message, only fields that were captured, nothing
// read past the MAD.
TEST(IbsniffCm, TruncatedMessagesGiveAnErrorAndNoFieldPastTheEnd) {
  const Bytes d = pattern();
  for (std::uint16_t attr = 0x0010; attr <= 0x001A; ++attr) {
    for (std::size_t mad_size = 24; mad_size <= 256; ++mad_size) {
      SCOPED_TRACE(testing::Message()
                   << "attr 0x" << std::hex << attr << std::dec << " MAD " << mad_size);
      const Decoded p = decoded(test::cm_native(attr, d, 1, 1, 2, mad_size), kLinkInfiniband);
      const std::size_t mad_end = p.payload_off + p.payload().size();
      for (const Field& f : p.fields) {
        const std::string_view name = field_def(f.id).name;
        if (name.starts_with("infiniband.cm.") || name.starts_with("ibsniff.cm.")) {
          EXPECT_LE(f.off + f.len, mad_end) << name;
        }
      }
      if (mad_size < 256) {
        EXPECT_TRUE(has_error(p, std::string("CM ") + cm_attr_name(attr) + " truncated: " +
                                     std::to_string(mad_size - 24) + " of its 232 data bytes"))
            << notes(p);
      } else {
        EXPECT_TRUE(clean(p)) << notes(p);
      }
    }
  }
  // The fields before the cut are there, the ones across it are not.
  const Decoded p = decoded(test::cm_native(0x0010, d, 1, 1, 2, 24 + 52), kLinkInfiniband);
  EXPECT_EQ(field(p, "infiniband.cm.req.pkey"), "0x535a");
  EXPECT_EQ(field(p, "infiniband.cm.req.ext_transport"), "0x00");
  EXPECT_EQ(field(p, "infiniband.cm.req.prim_locallid"), "");
  EXPECT_EQ(field(p, "infiniband.cm.req.private"), "");
}

// ---- SDP ----

wire::Bsdh bsdh(wire::Mid mid, std::uint8_t flags = 0, std::uint16_t bufs = 0x0103) {
  wire::Bsdh b;
  b.mid = static_cast<std::uint8_t>(mid);
  b.flags = flags;
  b.bufs = bufs;
  b.mseq = 0x01020304;
  b.mseq_ack = 0x0a0b0c0d;
  return b;
}

Bytes encode(const wire::Message& m) {
  Bytes out(wire::encoded_size(m));
  const auto n = wire::encode_message(m, out);
  EXPECT_TRUE(n.ok()) << n.error().reason();
  return out;
}

wire::HelloHeader hello_header() {
  wire::HelloHeader hh;
  hh.major = 2;
  hh.minor = 2;
  hh.ip_version = 4;
  hh.cap = wire::cap::kInvalidate | wire::cap::kExtMaxAdverts;
  hh.max_adverts = 3;
  hh.des_rem_rcv_sz = 32784;
  hh.local_rcv_sz = 16400;
  hh.local_port = 40000;
  hh.src_ip[15] = 1;
  hh.src_ip[12] = 10;
  hh.dst_ip[15] = 2;
  hh.dst_ip[12] = 10;
  hh.ext_max_adverts = 0x0102;
  return hh;
}

Bytes hello(bool compact = false) {
  Bytes out(compact ? wire::kCompactHelloMessageSize : wire::kHelloMessageSize);
  EXPECT_TRUE(wire::encode_hello(bsdh(wire::Mid::Hello, 0, 8), hello_header(), compact, out).ok());
  return out;
}

Bytes hello_ack() {
  wire::HelloAckHeader hah;
  hah.major = 2;
  hah.minor = 2;
  hah.ip_version = 6;
  hah.cap = 1;
  hah.max_adverts = 4;
  hah.act_rcv_sz = 65552;
  Bytes out(wire::kHelloAckMessageSize);
  EXPECT_TRUE(wire::encode_hello_ack(bsdh(wire::Mid::HelloAck, 0, 9), hah, out).ok());
  return out;
}

TEST(IbsniffSdpFields, HelloAndHelloAck) {
  const auto ps = decode_all(test::sdp_connection(hello(), hello_ack(), {}), kLinkInfiniband);
  ASSERT_EQ(ps.size(), 5U);
  const Decoded& req = ps[0];
  EXPECT_TRUE(clean(req)) << notes(req);
  EXPECT_EQ(info(req), "CM: ConnectRequest(SDP Hello)");
  const std::pair<const char*, const char*> want_req[] = {
      {"infiniband_sdp.bsdh.mid", "0x00"},
      {"infiniband_sdp.bsdh.flags", "0x00"},
      {"ibsniff.sdp.bsdh.oobpres", "0x00"},
      {"infiniband_sdp.bsdh.bufs", "8"},
      {"infiniband_sdp.bsdh.len", "92"},
      {"infiniband_sdp.bsdh.mseq", "0x01020304"},
      {"infiniband_sdp.bsdh.mseqack", "0x0a0b0c0d"},
      {"infiniband_sdp.hh.majv", "0x02"},
      {"infiniband_sdp.hh.minv", "0x02"},
      {"infiniband_sdp.hh.ipv", "0x04"},
      {"infiniband_sdp.hh.cap", "0x03"},
      {"infiniband_sdp.hh.cap_invalidate", "0x01"},
      {"infiniband_sdp.hh.cap_extmaxadverts", "0x01"},
      {"infiniband_sdp.hh.maxadverts", "0x03"},
      {"infiniband_sdp.hh.desremrcvsz", "32784"},
      {"infiniband_sdp.hh.localrcvsz", "16400"},
      {"infiniband_sdp.hh.localport", "40000"},
      {"infiniband_sdp.hh.src_ip", "::10.0.0.1"},
      {"infiniband_sdp.hh.dst_ip", "::10.0.0.2"},
      {"infiniband_sdp.hh.extmaxadverts", "0x0102"},
      {"ibsniff.sdp.conn", "1"},
  };
  for (const auto& [name, value] : want_req) EXPECT_EQ(field(req, name), value) << name;

  const Decoded& rep = ps[1];
  EXPECT_TRUE(clean(rep)) << notes(rep);
  EXPECT_EQ(info(rep), "CM: ConnectReply(SDP HelloAck)");
  const std::pair<const char*, const char*> want_rep[] = {
      {"infiniband_sdp.bsdh.mid", "0x01"},
      {"infiniband_sdp.bsdh.bufs", "9"},
      {"infiniband_sdp.bsdh.len", "196"},
      {"ibsniff.sdp.hah.majv", "0x02"},
      {"ibsniff.sdp.hah.minv", "0x02"},
      {"ibsniff.sdp.hah.ipv", "0x06"},
      {"ibsniff.sdp.hah.cap", "0x01"},
      {"ibsniff.sdp.hah.maxadverts", "0x04"},
      {"ibsniff.sdp.hah.actrcvsz", "65552"},
      {"infiniband_sdp.hh.majv", ""},
      {"infiniband.cm.rep.localqpn", "0x000049"},
  };
  for (const auto& [name, value] : want_rep) EXPECT_EQ(field(rep, name), value) << name;
  // RTU, DREQ, DREP carry no SDP message (tshark's phantom Hello, §5 item 10, is not copied).
  for (std::size_t i = 2; i < 5; ++i) {
    EXPECT_TRUE(clean(ps[i])) << notes(ps[i]);
    EXPECT_EQ(field(ps[i], "infiniband_sdp.bsdh.mid"), "");
  }
}

TEST(IbsniffSdpFields, CompactHelloAfterTheIpCmHeader) {
  Bytes d(232, 0);
  set_be(d, 8, kIpCmSid, 8);
  set_be(d, 32, 0x11, 3);
  d[141] = 0x40;
  const Bytes h = hello(true);
  std::copy(h.begin(), h.end(), d.begin() + 140 + 36);
  const Decoded p = decoded(test::cm_rocev2(0x0010, d), kLinkEthernet);
  EXPECT_TRUE(clean(p)) << notes(p);
  EXPECT_EQ(field(p, "infiniband_sdp.bsdh.len"), "32");
  EXPECT_EQ(field(p, "infiniband_sdp.hh.localport"), "40000");
  EXPECT_EQ(field(p, "infiniband_sdp.hh.src_ip"), "");  // in the IP CM header instead
  EXPECT_EQ(field(p, "infiniband_sdp.hh.extmaxadverts"), "");
  EXPECT_EQ(field(p, "infiniband.cm.req.ip_cm.private"), hex(d, 176, 56));
}

TEST(IbsniffSdpFields, MalformedHelloIsAnErrorWithTheCodecsReason) {
  Bytes bad = hello();
  bad[16 + 3] = 0;  // MaxAdverts 0
  const auto ps = decode_all(test::sdp_connection(bad, hello_ack(), {}), kLinkInfiniband);
  EXPECT_TRUE(has_error(ps[0], "malformed SDP Hello: HH.MaxAdverts must be > 0")) << notes(ps[0]);
  EXPECT_EQ(ps[0].notes.size(), 1U) << notes(ps[0]);         // not repeated as a follower warning
  EXPECT_EQ(field(ps[0], "infiniband_sdp.bsdh.len"), "92");  // the BSDH as read
  EXPECT_EQ(field(ps[0], "infiniband_sdp.hh.maxadverts"), "");
  Bytes bad_ack = hello_ack();
  bad_ack[4 + 3] = 100;  // BSDH.Len
  const auto qs = decode_all(test::sdp_connection(hello(), bad_ack, {}), kLinkInfiniband);
  EXPECT_TRUE(has_error(qs[1], "malformed SDP HelloAck: HelloAck BSDH.Len 100 (must be 196)"))
      << notes(qs[1]);
  EXPECT_EQ(field(qs[1], "ibsniff.sdp.hah.actrcvsz"), "");
  // A REQ cut inside its Hello.
  auto frames = test::sdp_connection(hello(), hello_ack(), {});
  Bytes req(232, 0);
  set_be(req, 8, test::kSdpServiceId, 8);
  const Bytes h = hello();
  std::copy(h.begin(), h.end(), req.begin() + 140);
  frames[0] = test::cm_native(0x0010, req, 0x00000001deadbeefULL, 1, 2, 24 + 140 + 40);
  const auto rs = decode_all(frames, kLinkInfiniband);
  EXPECT_TRUE(has_error(rs[0], "CM ConnectRequest truncated: 180 of its 232 data bytes"))
      << notes(rs[0]);
  EXPECT_TRUE(has_error(rs[0], "malformed SDP Hello: full Hello needs 92 bytes, 40 received"))
      << notes(rs[0]);
}

// One SEND Only per MID, in both directions, every extended header field checked.
TEST(IbsniffSdpFields, EveryMessage) {
  using wire::Mid;
  static const std::uint8_t kPayload[] = {'s', 'd', 'p', '!', 0x00, 0xff};
  struct Case {
    wire::Message m;
    std::vector<std::pair<const char*, std::string>> want;
  };
  auto msg = [](Mid mid, wire::ExtHeader ext = {}, std::span<const std::uint8_t> payload = {},
                std::uint8_t flags = 0) {
    return wire::Message{bsdh(mid, flags), ext, payload};
  };
  const std::vector<Case> cases = {
      {msg(Mid::Data, {}, kPayload, wire::flags::kOobPres | wire::flags::kOobPend),
       {{"infiniband_sdp.bsdh.flags", "0x03"},
        {"ibsniff.sdp.bsdh.oobpres", "0x01"},
        {"ibsniff.sdp.bsdh.oobpend", "0x01"},
        {"ibsniff.sdp.bsdh.reqpipe", "0x00"},
        {"infiniband_sdp.bsdh.len", "22"},
        {"ibsniff.sdp.data", "7364702100ff"}}},
      {msg(Mid::Data), {{"infiniband_sdp.bsdh.len", "16"}, {"ibsniff.sdp.data", ""}}},
      {msg(Mid::DisConn), {{"infiniband_sdp.bsdh.mid", "0x02"}}},
      {msg(Mid::AbortConn), {{"infiniband_sdp.bsdh.mid", "0x03"}}},
      {msg(Mid::SendSm, {}, {}, wire::flags::kOobPend),
       {{"infiniband_sdp.bsdh.mid", "0x04"}, {"ibsniff.sdp.bsdh.oobpend", "0x01"}}},
      {msg(Mid::RdmaWrCompl, wire::RdmaWrComplHeader{70000}), {{"ibsniff.sdp.rwch.len", "70000"}}},
      {msg(Mid::RdmaRdCompl, wire::RdmaRdComplHeader{65536}, {}, wire::flags::kReqPipe),
       {{"ibsniff.sdp.rrch.rdmardsz", "65536"},
        {"ibsniff.sdp.bsdh.reqpipe", "0x01"},
        {"ibsniff.sdp.bsdh.oobpres", "0x00"}}},
      {msg(Mid::ModeChange, wire::ModeChangeHeader{true, wire::Mode::Combined}),
       {{"ibsniff.sdp.mch.mode", "0x09"}}},  // COMB_SEND
      {msg(Mid::ModeChange, wire::ModeChangeHeader{false, wire::Mode::Pipelined}),
       {{"ibsniff.sdp.mch.mode", "0x02"}}},  // PIPE_RECV
      {msg(Mid::SrcAvailCancel), {{"infiniband_sdp.bsdh.mid", "0x08"}}},
      {msg(Mid::SinkAvailCancel), {{"infiniband_sdp.bsdh.mid", "0x09"}}},
      {msg(Mid::SinkCancelAck), {{"infiniband_sdp.bsdh.mid", "0x0a"}}},
      {msg(Mid::ChRcvBuf, wire::ChRcvBufHeader{131088}), {{"ibsniff.sdp.crbh.desrcvsz", "131088"}}},
      {msg(Mid::ChRcvBufAck, wire::ChRcvBufAckHeader{65552}),
       {{"ibsniff.sdp.crbah.actrcvsz", "65552"}}},
      {msg(Mid::SuspComm, wire::SuspCommHeader{0x0000000000011b59ULL}),
       {{"ibsniff.sdp.suspch.serviceid", "0x0000000000011b59"}}},
      {msg(Mid::SuspCommAck), {{"infiniband_sdp.bsdh.mid", "0x0e"}}},
      {msg(Mid::SinkAvail, wire::SinkAvailHeader{0x100000, 0x11223344, 0x7f0012345678ULL, 7},
           kPayload),
       {{"ibsniff.sdp.sinkah.len", "1048576"},
        {"ibsniff.sdp.sinkah.rkey", "0x11223344"},
        {"ibsniff.sdp.sinkah.va", "0x00007f0012345678"},
        {"ibsniff.sdp.sinkah.nondisc", "7"},
        {"ibsniff.sdp.data", "7364702100ff"}}},
      {msg(Mid::SrcAvail, wire::SrcAvailHeader{65536, 0xdeadbeef, 0x0123456789abcdefULL}, kPayload),
       {{"infiniband_sdp.bsdh.mid", "0xfe"},
        {"infiniband_sdp.bsdh.len", "38"},
        {"ibsniff.sdp.srcah.len", "65536"},
        {"ibsniff.sdp.srcah.rkey", "0xdeadbeef"},
        {"ibsniff.sdp.srcah.va", "0x0123456789abcdef"},
        {"ibsniff.sdp.data", "7364702100ff"}}},
  };
  std::vector<std::pair<int, Bytes>> sends;
  for (std::size_t i = 0; i < cases.size(); ++i)
    sends.emplace_back(static_cast<int>(i % 2), encode(cases[i].m));
  const auto ps = decode_all(test::sdp_connection(hello(), hello_ack(), sends), kLinkInfiniband);
  ASSERT_EQ(ps.size(), 3 + cases.size() + 2);
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Decoded& p = ps[3 + i];
    const auto mid = cases[i].m.bsdh.mid;
    SCOPED_TRACE(std::string(wire::mid_name(mid)));
    EXPECT_TRUE(clean(p)) << notes(p);
    EXPECT_NE(info(p).find("(SDP " + std::string(wire::mid_name(mid)) + ")"), std::string::npos)
        << info(p);
    EXPECT_EQ(field(p, "ibsniff.sdp.dir"), std::to_string(i % 2));
    EXPECT_EQ(field(p, "infiniband_sdp.bsdh.bufs"), "259");
    EXPECT_EQ(field(p, "infiniband_sdp.bsdh.mseq"), "0x01020304");
    EXPECT_EQ(field(p, "infiniband_sdp.bsdh.mseqack"), "0x0a0b0c0d");
    for (const auto& [name, value] : cases[i].want) EXPECT_EQ(field(p, name), value) << name;
  }
}

TEST(IbsniffSdpFields, MalformedMessageIsAnErrorWithTheCodecsReason) {
  Bytes unknown = encode(wire::Message{bsdh(wire::Mid::DisConn), {}, {}});
  unknown[0] = 0x42;
  Bytes payload_on_disconn = encode(wire::Message{bsdh(wire::Mid::DisConn), {}, {}});
  payload_on_disconn.push_back(1);
  payload_on_disconn[7] = 17;
  const auto ps = decode_all(
      test::sdp_connection(hello(), hello_ack(), {{0, unknown}, {1, payload_on_disconn}}),
      kLinkInfiniband);
  EXPECT_TRUE(has_error(ps[3], "malformed SDP message: unknown MID 0x42")) << notes(ps[3]);
  EXPECT_EQ(field(ps[3], "infiniband_sdp.bsdh.mid"), "0x42");  // the BSDH as read
  EXPECT_TRUE(has_error(ps[4], "malformed SDP message: DisConn carries 1 payload bytes"))
      << notes(ps[4]);
  EXPECT_EQ(field(ps[4], "ibsniff.sdp.data"), "");
}

// A SrcAvail sent as SEND First / Middle / Last: the headers on the First packet (decoded there),
// ULP data on every packet, the message validated when complete.
TEST(IbsniffSdpFields, MultiPacketSendShowsHeadersOnTheFirstPacketAndDataOnAll) {
  Bytes inline_bytes(2000);
  for (std::size_t i = 0; i < inline_bytes.size(); ++i)
    inline_bytes[i] = static_cast<std::uint8_t>(i);
  const Bytes whole = encode(wire::Message{
      bsdh(wire::Mid::SrcAvail), wire::SrcAvailHeader{100000, 0x1234, 0x5678}, inline_bytes});
  ASSERT_EQ(whole.size(), 2032U);
  auto frames = test::sdp_connection(hello(), hello_ack(), {});
  frames.resize(3);  // REQ, REP, RTU
  const std::pair<std::uint8_t, std::size_t> parts[] = {{0x00, 0}, {0x01, 1024}, {0x02, 1536}};
  for (std::size_t k = 0; k < 3; ++k) {
    test::BthSpec s;
    s.opcode = parts[k].first;
    s.destqp = test::kSdpResponderQpn;
    s.psn = 100 + static_cast<std::uint32_t>(k);
    const std::size_t from = parts[k].second, to = k < 2 ? parts[k + 1].second : whole.size();
    frames.push_back(test::native(s, {},
                                  Bytes(whole.begin() + static_cast<std::ptrdiff_t>(from),
                                        whole.begin() + static_cast<std::ptrdiff_t>(to)),
                                  false, 0, 2, 1));
  }
  const auto ps = decode_all(frames, kLinkInfiniband);
  const Decoded &first = ps[3], &middle = ps[4], &last = ps[5];
  for (const Decoded* p : {&first, &middle, &last}) EXPECT_TRUE(clean(*p)) << notes(*p);
  EXPECT_EQ(info(first), "RC Send First QP=0x000049 (SDP SrcAvail)");
  EXPECT_EQ(field(first, "infiniband_sdp.bsdh.len"), "2032");
  EXPECT_EQ(field(first, "ibsniff.sdp.srcah.len"), "100000");
  EXPECT_EQ(field(first, "ibsniff.sdp.srcah.rkey"), "0x00001234");
  EXPECT_EQ(field(first, "ibsniff.sdp.srcah.va"), "0x0000000000005678");
  EXPECT_EQ(field(first, "ibsniff.sdp.data"), hex(inline_bytes, 0, 1024 - 32));
  EXPECT_EQ(field(middle, "infiniband_sdp.bsdh.mid"), "");
  EXPECT_EQ(field(middle, "ibsniff.sdp.data"), hex(inline_bytes, 1024 - 32, 512));
  EXPECT_EQ(field(last, "ibsniff.sdp.data"), hex(inline_bytes, 1536 - 32, 2032 - 1536));

  // A First whose header the codec refuses: the BSDH as read and an Error note there.
  Bytes bad = whole;
  bad[1] = wire::flags::kOobPres;  // only Data may carry OOB_PRES
  frames.resize(3);
  test::BthSpec s;
  s.opcode = 0x00;
  s.destqp = test::kSdpResponderQpn;
  frames.push_back(test::native(s, {}, Bytes(bad.begin(), bad.begin() + 1024), false, 0, 2, 1));
  const auto qs = decode_all(frames, kLinkInfiniband);
  EXPECT_TRUE(has_error(qs[3], "malformed SDP message: OOB_PRES set on SrcAvail")) << notes(qs[3]);
  EXPECT_EQ(field(qs[3], "infiniband_sdp.bsdh.flags"), "0x01");
  EXPECT_EQ(field(qs[3], "ibsniff.sdp.srcah.len"), "");
}

}  // namespace
}  // namespace ibsniff

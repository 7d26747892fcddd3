// Decoder unit tests on hand-built frames (frames.hpp computes lengths and CRCs independently).
#include <gtest/gtest.h>

#include <deque>
#include <random>
#include <string>

#include "frames.hpp"
#include "ibsniff/decoder.hpp"
#include "ibsniff/render.hpp"

namespace ibsniff {
namespace {

using test::BthSpec;
using test::Bytes;

// Frames stay alive for the whole test program (a Packet only views its frame).
Packet decoded(const Bytes& frame_in, int linktype) {
  static std::deque<Bytes> store;
  const Bytes& frame = store.emplace_back(frame_in);
  Packet p;
  p.number = 1;
  p.linktype = linktype;
  p.data = frame;
  p.wire_len = static_cast<std::uint32_t>(frame.size());
  decode(p);
  return p;
}

std::string field(const Packet& p, const char* name) {
  std::string out;
  render_occurrences(p, *field_by_name(name), TimeRef{}, 0, out);
  return out;
}

std::string notes(const Packet& p) {
  std::string s;
  for (const auto& n : p.notes) s += format_note(n) + "; ";
  return s;
}

bool has_note(const Packet& p, const std::string& needle) {
  return notes(p).find(needle) != std::string::npos;
}

// Extended header bytes by name, with distinctive values.
Bytes reth() {
  Bytes b;
  test::put64(b, 0x00007f0000001000ULL);
  test::put32(b, 0x1234);
  test::put32(b, 8);
  return b;
}
Bytes atomiceth() {
  Bytes b;
  test::put64(b, 0x1000);
  test::put32(b, 0x55);
  test::put64(b, 7);
  test::put64(b, 9);
  return b;
}
using test::deth;
const Bytes kAeth = {0x1f, 0, 0, 1};  // ACK, credit 31, MSN 1
const Bytes kImm = {0xde, 0xad, 0xbe, 0xef};
const Bytes kRdeth = {0, 0, 0, 5};
const Bytes kXrceth = {0, 0, 0, 9};
const Bytes kAtomicAck = {0, 0, 0, 0, 0, 0, 0, 42};
const Bytes kPayload = {'h', 'e', 'l', 'l', 'o'};

struct OpCase {
  std::uint8_t opcode;
  Bytes ext;
  bool payload;
  const char* name;
  std::vector<const char*> fields;  // present
};

std::vector<OpCase> all_opcodes() {
  struct Base {
    std::uint8_t n;
    const char* name;
    Bytes ext;
    bool payload;
    std::vector<const char*> fields;
    bool uc, rd_xrc, response;
  };
  const Bytes ieth = {0, 0, 0x12, 0x34};
  const std::vector<Base> base = {
      {0x00, "Send First", {}, true, {}, true, true, false},
      {0x01, "Send Middle", {}, true, {}, true, true, false},
      {0x02, "Send Last", {}, true, {}, true, true, false},
      {0x03, "Send Last Immediate", kImm, true, {"infiniband.immdt"}, true, true, false},
      {0x04, "Send Only", {}, true, {}, true, true, false},
      {0x05, "Send Only Immediate", kImm, true, {"infiniband.immdt"}, true, true, false},
      {0x06, "RDMA Write First", reth(), true, {"infiniband.reth.va"}, true, true, false},
      {0x07, "RDMA Write Middle", {}, true, {}, true, true, false},
      {0x08, "RDMA Write Last", {}, true, {}, true, true, false},
      {0x09, "RDMA Write Last Immediate", kImm, true, {"infiniband.immdt"}, true, true, false},
      {0x0A, "RDMA Write Only", reth(), true, {"infiniband.reth.r_key"}, true, true, false},
      {0x0B,
       "RDMA Write Only Immediate",
       test::cat({reth(), kImm}),
       true,
       {"infiniband.reth.dmalen", "infiniband.immdt"},
       true,
       true,
       false},
      {0x0C, "RDMA Read Request", reth(), false, {"infiniband.reth.va"}, false, true, false},
      {0x0D, "RDMA Read Response First", kAeth, true, {"infiniband.aeth.msn"}, false, true, true},
      {0x0E, "RDMA Read Response Middle", {}, true, {}, false, true, true},
      {0x0F,
       "RDMA Read Response Last",
       kAeth,
       true,
       {"infiniband.aeth.syndrome"},
       false,
       true,
       true},
      {0x10, "RDMA Read Response Only", kAeth, true, {"infiniband.aeth"}, false, true, true},
      {0x11,
       "Acknowledge",
       kAeth,
       false,
       {"infiniband.aeth.syndrome.credit_count"},
       false,
       true,
       true},
      {0x12,
       "Atomic Acknowledge",
       test::cat({kAeth, kAtomicAck}),
       false,
       {"infiniband.atomicacketh.origremdt"},
       false,
       true,
       true},
      {0x13,
       "Compare Swap",
       atomiceth(),
       false,
       {"infiniband.atomiceth.cmpdt"},
       false,
       true,
       false},
      {0x14, "Fetch Add", atomiceth(), false, {"infiniband.atomiceth.swapdt"}, false, true, false},
  };
  std::vector<OpCase> cases;
  for (const auto& b : base) {
    cases.push_back({b.n, b.ext, b.payload, "RC", b.fields});
    if (b.uc)
      cases.push_back({static_cast<std::uint8_t>(0x20 + b.n), b.ext, b.payload, "UC", b.fields});
    if (b.rd_xrc) {
      auto f = b.fields;
      f.push_back("infiniband.rdeth.eecnxt");
      if (!b.response) f.push_back("infiniband.deth.q_key");
      cases.push_back({static_cast<std::uint8_t>(0x40 + b.n),
                       test::cat({kRdeth, b.response ? Bytes{} : deth(0x1111, 0x33), b.ext}),
                       b.payload, "RD", f});
      auto fx = b.fields;
      if (!b.response) fx.push_back("ibsniff.xrceth.xrcsrq");
      cases.push_back({static_cast<std::uint8_t>(0xA0 + b.n),
                       test::cat({b.response ? Bytes{} : kXrceth, b.ext}), b.payload, "XRC", fx});
    }
  }
  cases.push_back({0x16, ieth, true, "RC", {"infiniband.ieth"}});
  cases.push_back({0x17, ieth, true, "RC", {"infiniband.ieth"}});
  cases.push_back({0xB6, test::cat({kXrceth, ieth}), true, "XRC", {"infiniband.ieth"}});
  cases.push_back({0x55,
                   test::cat({kRdeth, deth(0x1111, 0x33)}),
                   false,
                   "RD",
                   {"infiniband.rdeth.eecnxt", "infiniband.deth.srcqp"}});
  cases.push_back({0x64, deth(), true, "UD", {"infiniband.deth.q_key"}});
  cases.push_back({0x65, test::cat({deth(), kImm}), true, "UD", {"infiniband.immdt"}});
  cases.push_back({0x81, Bytes(16, 0), false, "CNP", {}});
  return cases;
}

TEST(IbsniffDecode, EveryOpcodeOnEveryEncapsulation) {
  int n = 0;
  for (const auto& c : all_opcodes()) {
    BthSpec s;
    s.opcode = c.opcode;
    s.destqp = 0x123;
    const Bytes payload = c.payload ? kPayload : Bytes{};
    const std::pair<Bytes, int> frames[] = {
        {test::native(s, c.ext, payload), kLinkInfiniband},
        {test::erf(test::native(s, c.ext, payload, true)), kLinkErf},
        {test::rocev2(s, c.ext, payload), kLinkEthernet},
        {test::rocev1(s, c.ext, payload), kLinkEthernet},
    };
    for (const auto& [frame, lt] : frames) {
      SCOPED_TRACE(testing::Message()
                   << "opcode 0x" << std::hex << int{c.opcode} << " link " << std::dec << lt);
      const Packet p = decoded(frame, lt);
      EXPECT_EQ(p.notes.size(), 0U) << notes(p);
      ASSERT_TRUE(p.has_bth);
      EXPECT_EQ(p.opcode, c.opcode);
      EXPECT_EQ(p.dest_qp, 0x123U);
      EXPECT_EQ(p.icrc, CrcStatus::Good);
      EXPECT_EQ(p.vcrc, lt == kLinkEthernet ? CrcStatus::Absent : CrcStatus::Good);
      const auto pl = p.payload();
      EXPECT_EQ(Bytes(pl.begin(), pl.end()), payload);
      for (const char* f : c.fields) EXPECT_FALSE(field(p, f).empty()) << f;
      const std::string name = opcode_name(c.opcode);
      EXPECT_EQ(name.rfind(c.name, 0), 0U) << name;
      EXPECT_EQ(field(p, "infiniband.bth.opcode"), std::to_string(c.opcode));
      ++n;
    }
  }
  EXPECT_EQ(n, 4 * 82);
}

TEST(IbsniffDecode, ExtendedHeaderValuesRenderLikeTshark) {
  BthSpec s;
  s.opcode = 0x0B;  // RC RDMA Write Only Immediate
  s.se = true;
  s.ackreq = true;
  s.destqp = 0x200;
  s.psn = 13896277;
  const Packet p = decoded(test::native(s, test::cat({reth(), kImm}), kPayload, false, 0, 7, 72),
                           kLinkInfiniband);
  EXPECT_EQ(field(p, "infiniband.lrh.vl"), "0x00");
  EXPECT_EQ(field(p, "infiniband.lrh.lnh"), "0x02");
  EXPECT_EQ(field(p, "infiniband.lrh.dlid"), "7");
  EXPECT_EQ(field(p, "infiniband.lrh.slid"), "72");
  EXPECT_EQ(field(p, "infiniband.lrh.pktlen"),
            "13");  // (LRH 8 + BTH 12 + RETH 16 + ImmDt 4 + 5 + pad 3 + ICRC 4) / 4
  EXPECT_EQ(field(p, "infiniband.bth.se"), "1");
  EXPECT_EQ(field(p, "infiniband.bth.m"), "0");
  EXPECT_EQ(field(p, "infiniband.bth.padcnt"), "3");
  EXPECT_EQ(field(p, "infiniband.bth.a"), "1");
  EXPECT_EQ(field(p, "infiniband.bth.p_key"), "65535");
  EXPECT_EQ(field(p, "infiniband.bth.destqp"), "0x000200");
  EXPECT_EQ(field(p, "infiniband.bth.psn"), "13896277");
  EXPECT_EQ(field(p, "infiniband.reth.va"), "0x00007f0000001000");
  EXPECT_EQ(field(p, "infiniband.reth.r_key"), "0x00001234");
  EXPECT_EQ(field(p, "infiniband.reth.dmalen"), "8");
  EXPECT_EQ(field(p, "infiniband.immdt"), "deadbeef");
  EXPECT_EQ(field(p, "ibsniff.payload"), "68656c6c6f000000");  // pad included
  EXPECT_EQ(field(p, "infiniband.reserved"), "00");
  EXPECT_EQ(info(p), "RC RDMA Write Only Immediate QP=0x000200 ");

  s.opcode = 0x64;
  const Packet ud = decoded(test::native(s, deth(), kPayload), kLinkInfiniband);
  EXPECT_EQ(field(ud, "infiniband.deth.q_key"), "0x0000000080010000");
  EXPECT_EQ(field(ud, "infiniband.deth.srcqp"), "0x00000022");
  EXPECT_EQ(field(ud, "infiniband.reserved"), "00,00");

  s.opcode = 0x13;
  const Packet at = decoded(test::native(s, atomiceth(), {}), kLinkInfiniband);
  EXPECT_EQ(field(at, "infiniband.reth.va"), "0x0000000000001000");
  EXPECT_EQ(field(at, "infiniband.reth.r_key"), "0x00000055");
  EXPECT_EQ(field(at, "infiniband.atomiceth.swapdt"), "7");
  EXPECT_EQ(field(at, "infiniband.atomiceth.cmpdt"), "9");

  s.opcode = 0x12;
  const Packet aa = decoded(test::native(s, test::cat({kAeth, kAtomicAck}), {}), kLinkInfiniband);
  EXPECT_EQ(field(aa, "infiniband.atomicacketh.origremdt"), "42");

  s.opcode = 0xA4;
  const Packet x = decoded(test::native(s, kXrceth, kPayload), kLinkInfiniband);
  EXPECT_EQ(field(x, "ibsniff.xrceth.xrcsrq"), "0x000009");
  EXPECT_EQ(info(x), "XRC Send Only QP=0x000200 ");

  s.opcode = 0x41;
  const Packet rd =
      decoded(test::native(s, test::cat({kRdeth, deth(0x1111, 0x33)}), kPayload), kLinkInfiniband);
  EXPECT_EQ(field(rd, "infiniband.rdeth.eecnxt"), "5");
  EXPECT_EQ(field(rd, "infiniband.deth.srcqp"), "0x00000033");

  s.opcode = 0x81;
  s.fecn_becn = 0x40;
  const Packet cnp = decoded(test::rocev2(s, Bytes(16, 0), {}), kLinkEthernet);
  EXPECT_EQ(cnp.notes.size(), 0U) << notes(cnp);
  EXPECT_EQ(field(cnp, "ibsniff.bth.becn"), "1");
  EXPECT_EQ(info(cnp), "CNP QP=0x000200 ");
}

TEST(IbsniffDecode, AethSyndromes) {
  struct Case {
    std::uint8_t syndrome;
    const char* sub;
    const char* value;
  } cases[] = {
      {0x05, "infiniband.aeth.syndrome.credit_count", "5"},   // ACK, 5 credits
      {0x1f, "infiniband.aeth.syndrome.credit_count", "31"},  // ACK, invalid credits
      {0x2e, "infiniband.aeth.syndrome.timer", "14"},         // RNR NAK, timer 14
      {0x60, "infiniband.aeth.syndrome.error_code", "0"},     // NAK PSN sequence error
      {0x61, "infiniband.aeth.syndrome.error_code", "1"},     // NAK invalid request
      {0x62, "infiniband.aeth.syndrome.error_code", "2"},     // NAK remote access error
      {0x63, "infiniband.aeth.syndrome.error_code", "3"},     // NAK remote operational error
      {0x64, "infiniband.aeth.syndrome.error_code", "4"},     // NAK invalid RD request
      {0x45, "infiniband.aeth.syndrome.reserved_value", "5"},
  };
  for (const auto& c : cases) {
    BthSpec s;
    s.opcode = 0x11;
    const Packet p = decoded(test::rocev2(s, {c.syndrome, 0, 1, 2}, {}), kLinkEthernet);
    EXPECT_EQ(p.notes.size(), 0U) << notes(p);
    EXPECT_EQ(field(p, "infiniband.aeth.syndrome"), std::to_string(c.syndrome));
    EXPECT_EQ(field(p, "infiniband.aeth.syndrome.opcode"), std::to_string(c.syndrome >> 5));
    EXPECT_EQ(field(p, c.sub), c.value);
    EXPECT_EQ(field(p, "infiniband.aeth.msn"), "258");
  }
}

TEST(IbsniffDecode, Encapsulations) {
  BthSpec s;
  const Bytes ip4 = test::rocev2_ip(s, {}, kPayload, false, 69);  // source port < 4791 (§5.2)
  const Bytes ip6 = test::rocev2_ip(s, {}, kPayload, true);
  const Bytes v1 = test::rocev1(s, {}, kPayload);
  const Bytes grh_on(v1.begin() + 14, v1.end());  // RoCEv1 without its Ethernet header
  const std::pair<Bytes, int> frames[] = {
      {test::rocev2(s, {}, kPayload, false, 69), kLinkEthernet},
      {test::rocev2(s, {}, kPayload, true, 0xc123, 1), kLinkEthernet},
      {test::rocev2(s, {}, kPayload, false, 0xc123, 2), kLinkEthernet},  // QinQ
      {test::rocev1(s, {}, kPayload, 1), kLinkEthernet},
      {test::sll(0x0800, ip4), kLinkLinuxSll},
      {test::sll(0x86dd, ip6), kLinkLinuxSll},
      {test::sll2(0x0800, ip4), kLinkLinuxSll2},
      {test::sll2(0x86dd, ip6), kLinkLinuxSll2},
      {test::sll2(0x8915, grh_on), kLinkLinuxSll2},
      {ip4, kLinkRaw},
      {ip6, kLinkIpv6},
      {test::erf(test::native(s, {}, kPayload), true), kLinkErf},  // ERF extension header
      {test::native(s, {}, kPayload, true), kLinkInfiniband},
  };
  for (const auto& [frame, lt] : frames) {
    const Packet p = decoded(frame, lt);
    SCOPED_TRACE(testing::Message() << "link " << lt << " size " << frame.size());
    EXPECT_EQ(p.notes.size(), 0U) << notes(p);
    EXPECT_TRUE(p.has_bth);
    EXPECT_EQ(p.icrc, CrcStatus::Good);
    const auto pl = p.payload();
    EXPECT_EQ(Bytes(pl.begin(), pl.end()), kPayload);
  }
  const Packet v = decoded(test::rocev2(s, {}, kPayload, false, 0xc000, 2), kLinkEthernet);
  EXPECT_EQ(field(v, "vlan.id"), "100,101");
  EXPECT_EQ(field(v, "ip.src"), "10.0.0.1");
  EXPECT_EQ(field(v, "udp.dstport"), "4791");
  const Packet g = decoded(test::rocev1(s, {}, kPayload), kLinkEthernet);
  EXPECT_EQ(g.proto, Proto::RoCE);
  EXPECT_EQ(field(g, "infiniband.grh.sgid"), "fe80::2:c903:0:1101");
  EXPECT_EQ(field(g, "infiniband.grh.tclass"), "1");
  EXPECT_EQ(field(g, "infiniband.grh.flowlabel"), "144470");
  EXPECT_EQ(render_address(g, g.src), "GID: fe80::2:c903:0:1101");
  const Packet e = decoded(test::erf(test::native(s, {}, kPayload)), kLinkErf);
  EXPECT_EQ(field(e, "frame.time_epoch"), "1700000000.500000000");
  EXPECT_EQ(field(e, "frame.len"), std::to_string(e.data.size() - 16));
  // Ethernet padding after a short RoCEv2 frame is not taken for the ICRC.
  Bytes padded = test::rocev2(s, {}, {});
  padded.resize(std::max<std::size_t>(padded.size(), 60) + 8, 0);
  const Packet pp = decoded(padded, kLinkEthernet);
  EXPECT_EQ(pp.notes.size(), 0U) << notes(pp);
  EXPECT_EQ(pp.icrc, CrcStatus::Good);
  // Not InfiniBand: no notes, no BTH.
  Bytes arp = {0, 1, 2, 3, 4, 5, 0, 6, 7, 8, 9, 10, 0x08, 0x06, 0, 1};
  const Packet a = decoded(arp, kLinkEthernet);
  EXPECT_FALSE(a.has_bth);
  EXPECT_TRUE(a.notes.empty());
}

TEST(IbsniffDecode, RawPacketsCarryOnlyAVcrc) {
  Bytes f = {0x00, 0x00, 0, 4, 0, 4, 0, 1, 0, 0, 0x08, 0x00, 1, 2, 3, 4};  // LNH 0, RWH IPv4
  const std::uint16_t v = test::ref_vcrc(f);
  f.push_back(static_cast<std::uint8_t>(v));
  f.push_back(static_cast<std::uint8_t>(v >> 8));
  Packet p = decoded(f, kLinkInfiniband);
  EXPECT_EQ(p.notes.size(), 0U) << notes(p);
  EXPECT_FALSE(p.has_bth);
  EXPECT_EQ(p.icrc, CrcStatus::Absent);
  EXPECT_EQ(p.vcrc, CrcStatus::Good);
  EXPECT_EQ(field(p, "infiniband.rwh.etype"), "0x0800");
  EXPECT_EQ(field(p, "infiniband.rawdata"), "01020304");
  f[1] = 0x01;  // LNH 1: raw IPv6, no RWH (VCRC now wrong)
  p = decoded(f, kLinkInfiniband);
  EXPECT_EQ(p.vcrc, CrcStatus::Bad);
  EXPECT_EQ(field(p, "infiniband.rawdata"), "0000080001020304");
}

TEST(IbsniffDecode, MadAndCmHeader) {
  BthSpec s;
  s.opcode = 0x64;
  s.destqp = 1;
  Bytes mad = test::mad(0x07, 0x0010, Bytes(232, 0xab));
  for (bool native : {true, false}) {
    const Packet p = native ? decoded(test::native(s, deth(), mad), kLinkInfiniband)
                            : decoded(test::rocev2(s, deth(), mad), kLinkEthernet);
    EXPECT_EQ(p.notes.size(), 0U) << notes(p);
    EXPECT_TRUE(p.has_mad);
    EXPECT_EQ(p.mad_class, 0x07);
    EXPECT_EQ(p.mad_attr, 0x0010);
    EXPECT_EQ(field(p, "infiniband.mad.mgmtclass"), "0x07");
    EXPECT_EQ(field(p, "infiniband.mad.classversion"), "0x02");
    EXPECT_EQ(field(p, "infiniband.mad.attributeid"), "0x0010");
    EXPECT_EQ(field(p, "infiniband.mad.transactionid"), "0x1122334455667788");
    EXPECT_EQ(field(p, "ibsniff.payload"), "");
    EXPECT_EQ(info(p), "CM: ConnectRequest");
  }
  mad.resize(100);
  const Packet shortmad = decoded(test::native(s, deth(), mad), kLinkInfiniband);
  EXPECT_TRUE(has_note(shortmad, "MAD of 100 bytes")) << notes(shortmad);
}

// Packet::want: only the fields asked for are recorded (the summary members are set anyway); a
// CRC is verified only when its verdict field is asked for.
TEST(IbsniffDecode, WantRecordsOnlyTheFieldsAskedFor) {
  BthSpec s;
  s.opcode = 0x0A;  // RDMA Write Only: RETH
  Bytes f = test::native(s, reth(), kPayload);
  f[8 + 12 + 16] ^= 1;  // a payload bit: ICRC and VCRC both wrong
  const Packet full = decoded(f, kLinkInfiniband);
  ASSERT_EQ(full.icrc, CrcStatus::Bad);
  ASSERT_EQ(full.vcrc, CrcStatus::Bad);

  FieldSet want;
  want.add(FieldId::reth_r_key);
  want.add(FieldId::bth_psn);
  want.add(FieldId::frame_len);
  Packet p;
  p.number = 1;
  p.linktype = kLinkInfiniband;
  p.data = f;
  p.wire_len = static_cast<std::uint32_t>(f.size());
  p.want = want.data();
  decode(p);
  ASSERT_EQ(p.fields.size(), 3U);
  for (const Field& x : p.fields) {
    EXPECT_TRUE(want.has(x.id)) << field_def(x.id).name;
    const Field* y = full.find(x.id);
    ASSERT_NE(y, nullptr);
    EXPECT_EQ(x.value, y->value);
    EXPECT_EQ(x.off, y->off);
  }
  EXPECT_TRUE(p.has_bth);  // the summary is there
  EXPECT_EQ(p.opcode, 0x0A);
  EXPECT_EQ(p.dest_qp, full.dest_qp);
  EXPECT_EQ(p.payload_off, full.payload_off);
  // No verdict asked for: the CRCs are not checked, no note.
  EXPECT_EQ(p.icrc, CrcStatus::Unchecked);
  EXPECT_EQ(p.vcrc, CrcStatus::Unchecked);
  EXPECT_FALSE(has_note(p, "CRC bad")) << notes(p);
  // Asked for: checked and flagged as in a full decode.
  want.add(FieldId::icrc_bad);
  want.add(FieldId::vcrc_bad);
  decode(p);
  EXPECT_EQ(p.icrc, CrcStatus::Bad);
  EXPECT_EQ(p.vcrc, CrcStatus::Bad);
  EXPECT_EQ(field(p, "ibsniff.icrc.bad"), "1");
  EXPECT_EQ(field(p, "ibsniff.vcrc.bad"), "1");
  EXPECT_EQ(p.fields.size(), 5U);
  // Deferred, the check done by finish_icrc honours the set the same way.
  p.defer_icrc = true;
  decode(p);
  EXPECT_EQ(field(p, "ibsniff.icrc.bad"), "");
  finish_icrc(p);
  EXPECT_EQ(p.icrc, CrcStatus::Bad);
  EXPECT_EQ(field(p, "ibsniff.icrc.bad"), "1");

  // ERF: frame.len / frame.cap_len come from the ERF header, whichever fields are recorded.
  FieldSet lens;
  lens.add(FieldId::frame_cap_len);
  const Bytes e = test::erf(test::native(s, reth(), kPayload));
  Packet q;
  q.linktype = kLinkErf;
  q.data = e;
  q.wire_len = static_cast<std::uint32_t>(e.size());
  q.want = lens.data();
  decode(q);
  EXPECT_EQ(field(q, "frame.cap_len"), std::to_string(e.size() - 16));
  EXPECT_EQ(field(q, "frame.len"), "");
}

TEST(IbsniffDecode, BadCrcsAreFlagged) {
  BthSpec s;
  Bytes f = test::native(s, {}, kPayload);
  f[8 + 12] ^= 1;  // payload bit: ICRC and VCRC both wrong
  Packet p = decoded(f, kLinkInfiniband);
  EXPECT_EQ(p.icrc, CrcStatus::Bad);
  EXPECT_EQ(p.vcrc, CrcStatus::Bad);
  EXPECT_EQ(field(p, "ibsniff.icrc.bad"), "1");
  EXPECT_EQ(field(p, "ibsniff.vcrc.bad"), "1");
  EXPECT_TRUE(has_note(p, "ICRC bad")) << notes(p);
  EXPECT_TRUE(has_note(p, "VCRC bad")) << notes(p);
  EXPECT_TRUE(p.crc_bad());
  EXPECT_FALSE(p.has_error());

  Bytes v = test::native(s, {}, kPayload);
  v.back() ^= 0xff;  // VCRC only
  p = decoded(v, kLinkInfiniband);
  EXPECT_EQ(p.icrc, CrcStatus::Good);
  EXPECT_EQ(p.vcrc, CrcStatus::Bad);

  Bytes r = test::rocev2(s, {}, kPayload);
  r[r.size() - 1] ^= 0x80;  // ICRC byte
  p = decoded(r, kLinkEthernet);
  EXPECT_EQ(p.icrc, CrcStatus::Bad);
  EXPECT_TRUE(has_note(p, "ICRC bad")) << notes(p);

  // Variant fields do not enter the ICRC: VL, FECN/BECN, IPv4 TOS/TTL/checksum, UDP checksum.
  Bytes vl = test::native(s, {}, kPayload);
  vl[0] = 0xf0;
  EXPECT_EQ(decoded(vl, kLinkInfiniband).icrc, CrcStatus::Good);
  Bytes ttl = test::rocev2(s, {}, kPayload);
  ttl[14 + 1] = 0x03;  // ECN CE
  ttl[14 + 8] = 1;
  ttl[14 + 10] = 0;
  ttl[14 + 20 + 6] = 0x12;
  ttl[14 + 28 + 4] = 0x80;  // FECN
  p = decoded(ttl, kLinkEthernet);
  EXPECT_EQ(p.icrc, CrcStatus::Good) << notes(p);
  EXPECT_EQ(field(p, "ibsniff.bth.fecn"), "1");
  Bytes ip = test::rocev2(s, {}, kPayload);
  ip[14 + 12] ^= 1;  // source address is invariant
  EXPECT_EQ(decoded(ip, kLinkEthernet).icrc, CrcStatus::Bad);
}

TEST(IbsniffDecode, LyingLengthsGiveNotes) {
  BthSpec s;
  // LRH PktLen larger than the frame.
  Bytes f = test::native(s, {}, kPayload);
  f[5] = static_cast<std::uint8_t>(f[5] + 4);
  Packet p = decoded(f, kLinkInfiniband);
  EXPECT_TRUE(has_note(p, "LRH PktLen claims")) << notes(p);
  EXPECT_TRUE(p.has_error());
  // LRH PktLen smaller than the frame.
  f = test::native(s, {}, kPayload);
  f[5] = static_cast<std::uint8_t>(f[5] - 1);
  p = decoded(f, kLinkInfiniband);
  EXPECT_TRUE(has_note(p, "after the VCRC")) << notes(p);
  f[5] = 1;
  p = decoded(f, kLinkInfiniband);
  EXPECT_TRUE(has_note(p, "shorter than the LRH")) << notes(p);
  // GRH PayLen larger than what follows.
  f = test::native(s, {}, kPayload, true);
  f[8 + 5] = static_cast<std::uint8_t>(f[8 + 5] + 40);
  p = decoded(f, kLinkInfiniband);
  EXPECT_TRUE(has_note(p, "GRH PayLen")) << notes(p);
  Bytes v1 = test::rocev1(s, {}, kPayload);
  v1[14 + 5] = 0xff;
  p = decoded(v1, kLinkEthernet);
  EXPECT_TRUE(has_note(p, "GRH PayLen 255 exceeds")) << notes(p);
  // IPv4 total length, IPv6 payload length, UDP length.
  Bytes r = test::rocev2(s, {}, kPayload);
  r[14 + 2] = 0x7f;
  p = decoded(r, kLinkEthernet);
  EXPECT_TRUE(has_note(p, "IPv4 total length")) << notes(p);
  r = test::rocev2(s, {}, kPayload);
  r[14 + 3] = 10;
  p = decoded(r, kLinkEthernet);
  EXPECT_TRUE(has_note(p, "less than its header length")) << notes(p);
  r = test::rocev2(s, {}, kPayload, true);
  r[14 + 4] = 0x7f;
  p = decoded(r, kLinkEthernet);
  EXPECT_TRUE(has_note(p, "IPv6 payload length")) << notes(p);
  r = test::rocev2(s, {}, kPayload);
  r[14 + 20 + 4] = 0x7f;
  p = decoded(r, kLinkEthernet);
  EXPECT_TRUE(has_note(p, "UDP length")) << notes(p);
  r[14 + 20 + 4] = 0;
  r[14 + 20 + 5] = 4;
  p = decoded(r, kLinkEthernet);
  EXPECT_TRUE(has_note(p, "UDP length 4 < 8")) << notes(p);
  // PadCnt larger than the payload.
  s.opcode = 0x11;
  r = test::rocev2(s, kAeth, {});
  r[14 + 28 + 1] = 0x30;
  p = decoded(r, kLinkEthernet);
  EXPECT_TRUE(has_note(p, "PadCnt 3 exceeds")) << notes(p);
  // An RDMA READ request cut inside its RETH.
  s.opcode = 0x0C;
  Bytes rr = test::native(s, reth(), {});
  rr.resize(rr.size() - 12);
  p = decoded(rr, kLinkInfiniband);
  EXPECT_TRUE(p.has_error()) << notes(p);
}

// Every strict prefix of a valid frame decodes with at least one error note, and never crashes.
TEST(IbsniffDecode, TruncationAtEveryByte) {
  BthSpec s;
  s.opcode = 0x0B;
  const Bytes ext = test::cat({reth(), kImm});
  const std::pair<Bytes, int> frames[] = {
      {test::native(s, ext, kPayload), kLinkInfiniband},
      {test::erf(test::native(s, ext, kPayload, true), true), kLinkErf},
      {test::rocev2(s, ext, kPayload, false, 0xc000, 1), kLinkEthernet},
      {test::rocev2(s, ext, kPayload, true), kLinkEthernet},
      {test::rocev1(s, ext, kPayload), kLinkEthernet},
      {test::sll2(0x0800, test::rocev2_ip(s, ext, kPayload)), kLinkLinuxSll2},
      {test::sll(0x86dd, test::rocev2_ip(s, ext, kPayload, true)), kLinkLinuxSll},
  };
  for (const auto& [frame, lt] : frames) {
    for (std::size_t n = 0; n < frame.size(); ++n) {
      const Bytes cut(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(n));
      const Packet p = decoded(cut, lt);
      EXPECT_TRUE(p.has_error()) << "link " << lt << " length " << n << ": " << notes(p);
    }
    EXPECT_FALSE(decoded(frame, lt).has_error());
  }
}

TEST(IbsniffDecode, RandomBytesNeverCrash) {
  std::mt19937 rng(7);
  Packet p;
  Bytes buf;
  for (int lt :
       {kLinkEthernet, kLinkErf, kLinkInfiniband, kLinkLinuxSll, kLinkLinuxSll2, kLinkRaw}) {
    for (int i = 0; i < 3000; ++i) {
      buf.resize(rng() % 160);
      for (auto& b : buf) b = static_cast<std::uint8_t>(rng());
      // Bias towards the interesting paths.
      if (lt == kLinkEthernet && buf.size() > 14) {
        buf[12] = (i % 2) != 0 ? 0x89 : 0x08;
        buf[13] = (i % 2) != 0 ? 0x15 : 0x00;
      }
      if (lt == kLinkErf && buf.size() > 9) buf[8] = (i % 3) == 0 ? 0x95 : 21;
      p.linktype = lt;
      p.data = buf;
      decode(p);
      std::string out;
      for (const auto& f : p.fields) render_field(p, f, TimeRef{}, out);
      for (const auto& n : p.notes) out += format_note(n);
      (void)summary_line(p, TimeRef{});
    }
  }
  SUCCEED();
}

TEST(IbsniffDecode, ReusedPacketDoesNotGrow) {
  BthSpec s;
  const Bytes f = test::rocev2(s, {}, kPayload);
  Packet p;
  p.linktype = kLinkEthernet;
  p.data = f;
  decode(p);
  const auto fields_cap = p.fields.capacity();
  const auto* fields_data = p.fields.data();
  for (int i = 0; i < 100; ++i) decode(p);
  EXPECT_EQ(p.fields.capacity(), fields_cap);
  EXPECT_EQ(p.fields.data(), fields_data);
}

TEST(IbsniffFields, NamesAreUniqueAndFound) {
  const auto table = field_table();
  for (std::size_t i = 0; i < table.size(); ++i) {
    auto id = field_by_name(table[i].name);
    ASSERT_TRUE(id.has_value()) << table[i].name;
    EXPECT_EQ(static_cast<std::size_t>(*id), i) << table[i].name << " is not unique";
  }
  EXPECT_FALSE(field_by_name("infiniband.bth.nosuch").has_value());
}

}  // namespace
}  // namespace ibsniff

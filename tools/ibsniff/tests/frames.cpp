#include "frames.hpp"

#include <algorithm>

namespace ibsniff::test {

std::uint32_t ref_crc32(const Bytes& b) {
  std::uint32_t crc = 0xffffffffU;
  for (auto x : b) {
    crc ^= x;
    for (int i = 0; i < 8; ++i) crc = (crc & 1U) != 0 ? (crc >> 1) ^ 0xEDB88320U : crc >> 1;
  }
  return ~crc;
}

std::uint16_t ref_vcrc(const Bytes& b) {
  unsigned crc = 0xffff;
  for (auto x : b) {
    crc ^= x;
    for (int i = 0; i < 8; ++i) crc = (crc & 1U) != 0 ? (crc >> 1) ^ 0xD008U : crc >> 1;
  }
  return static_cast<std::uint16_t>(crc ^ 0xffffU);
}

void put16(Bytes& b, unsigned v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v));
}
void put24(Bytes& b, unsigned v) {
  b.push_back(static_cast<std::uint8_t>(v >> 16));
  put16(b, v & 0xffffU);
}
void put32(Bytes& b, std::uint32_t v) {
  put16(b, v >> 16);
  put16(b, v & 0xffffU);
}
void put64(Bytes& b, std::uint64_t v) {
  put32(b, static_cast<std::uint32_t>(v >> 32));
  put32(b, static_cast<std::uint32_t>(v));
}
static void put_le32(Bytes& b, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

static std::size_t pad_of(std::size_t n) {
  return (4 - n % 4) % 4;
}

Bytes bth(const BthSpec& s, std::size_t payload_len) {
  Bytes b;
  b.push_back(s.opcode);
  b.push_back(
      static_cast<std::uint8_t>((s.se ? 0x80 : 0) | (s.m ? 0x40 : 0) | (pad_of(payload_len) << 4)));
  put16(b, s.pkey);
  b.push_back(s.fecn_becn);
  put24(b, s.destqp);
  b.push_back(s.ackreq ? 0x80 : 0);
  put24(b, s.psn);
  return b;
}

Bytes grh(std::uint16_t paylen, std::uint8_t nxthdr, std::uint8_t sgid_last,
          std::uint8_t dgid_last) {
  Bytes g = {0x60, 0x12, 0x34, 0x56};  // IPVer 6, TClass 0x01, FlowLabel 0x23456
  put16(g, paylen);
  g.push_back(nxthdr);
  g.push_back(64);
  Bytes gid = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 2, 0xc9, 3, 0, 0, 0x11, 0};
  gid[15] = sgid_last;
  g.insert(g.end(), gid.begin(), gid.end());
  gid[15] = dgid_last;
  g.insert(g.end(), gid.begin(), gid.end());
  return g;
}

// BTH..pad with masked copies for the ICRC.
static Bytes transport(const BthSpec& s, const Bytes& ext, const Bytes& payload) {
  Bytes t = cat({bth(s, payload.size()), ext, payload});
  t.insert(t.end(), pad_of(payload.size()), 0);
  return t;
}
static Bytes masked_bth_part(Bytes t) {
  t[4] = 0xff;
  return t;
}
static Bytes masked_grh(Bytes g) {
  g[0] |= 0x0f;
  g[1] = g[2] = g[3] = 0xff;
  g[7] = 0xff;
  return g;
}
static const Bytes kOnes8(8, 0xff);

Bytes native(const BthSpec& s, const Bytes& ext, const Bytes& payload, bool with_grh,
             std::uint8_t vl, std::uint16_t dlid, std::uint16_t slid) {
  const Bytes t = transport(s, ext, payload);
  const Bytes g = with_grh ? grh(static_cast<std::uint16_t>(t.size() + 4)) : Bytes{};
  const std::size_t words = (8 + g.size() + t.size() + 4) / 4;
  Bytes lrh = {static_cast<std::uint8_t>(vl << 4), static_cast<std::uint8_t>(with_grh ? 3 : 2)};
  put16(lrh, dlid);
  put16(lrh, static_cast<unsigned>(words));
  put16(lrh, slid);
  Bytes icrc_in;
  if (with_grh) {
    icrc_in = cat({kOnes8, masked_grh(g), masked_bth_part(t)});
  } else {
    Bytes ml = lrh;
    ml[0] |= 0xf0;
    icrc_in = cat({ml, masked_bth_part(t)});
  }
  Bytes f = cat({lrh, g, t});
  put_le32(f, ref_crc32(icrc_in));
  const std::uint16_t v = ref_vcrc(f);
  f.push_back(static_cast<std::uint8_t>(v));
  f.push_back(static_cast<std::uint8_t>(v >> 8));
  return f;
}

static Bytes ethernet(std::uint16_t type, unsigned vlan_tags) {
  Bytes e = {0, 1, 2, 3, 4, 5, 0, 6, 7, 8, 9, 10};
  for (unsigned i = 0; i < vlan_tags; ++i) {
    put16(e, i == 0 && vlan_tags > 1 ? 0x88a8 : 0x8100);
    put16(e, 0x2000 | (100 + i));  // PCP 1, VID 100+i
  }
  put16(e, type);
  return e;
}

Bytes rocev2_ip(const BthSpec& s, const Bytes& ext, const Bytes& payload, bool ipv6,
                std::uint16_t sport) {
  const Bytes t = transport(s, ext, payload);
  Bytes udp;
  put16(udp, sport);
  put16(udp, 4791);
  put16(udp, static_cast<unsigned>(8 + t.size() + 4));
  put16(udp, 0);
  Bytes ip;
  Bytes mip;
  if (ipv6) {
    ip = {0x60, 0x12, 0x34, 0x56};
    put16(ip, static_cast<unsigned>(udp.size() + t.size() + 4));
    ip.push_back(17);
    ip.push_back(64);
    for (int a = 0; a < 2; ++a) {
      Bytes addr = {0xfd, 0, 0, 0, 0, 0, 0, 0,
                    0,    0, 0, 0, 0, 0, 0, static_cast<std::uint8_t>(1 + a)};
      ip.insert(ip.end(), addr.begin(), addr.end());
    }
    mip = masked_grh(ip);
  } else {
    ip = {0x45, 0x02};  // ECN ECT(0)
    put16(ip, static_cast<unsigned>(20 + udp.size() + t.size() + 4));
    put16(ip, 0x1234);
    put16(ip, 0x4000);  // DF
    ip.push_back(64);
    ip.push_back(17);
    put16(ip, 0xbeef);  // checksum (not checked)
    ip.insert(ip.end(), {10, 0, 0, 1, 10, 0, 0, 2});
    mip = ip;
    mip[1] = 0xff;
    mip[8] = 0xff;
    mip[10] = mip[11] = 0xff;
  }
  Bytes mudp = udp;
  mudp[6] = mudp[7] = 0xff;
  Bytes f = cat({ip, udp, t});
  put_le32(f, ref_crc32(cat({kOnes8, mip, mudp, masked_bth_part(t)})));
  return f;
}

Bytes rocev2(const BthSpec& s, const Bytes& ext, const Bytes& payload, bool ipv6,
             std::uint16_t sport, unsigned vlan_tags) {
  return cat(
      {ethernet(ipv6 ? 0x86dd : 0x0800, vlan_tags), rocev2_ip(s, ext, payload, ipv6, sport)});
}

Bytes rocev1(const BthSpec& s, const Bytes& ext, const Bytes& payload, unsigned vlan_tags) {
  const Bytes t = transport(s, ext, payload);
  const Bytes g = grh(static_cast<std::uint16_t>(t.size() + 4));
  Bytes f = cat({ethernet(0x8915, vlan_tags), g, t});
  put_le32(f, ref_crc32(cat({kOnes8, masked_grh(g), masked_bth_part(t)})));
  return f;
}

Bytes byte_pattern(std::size_t n) {
  Bytes d(n);
  for (std::size_t i = 0; i < n; ++i) d[i] = static_cast<std::uint8_t>(i * 7 + 3);
  return d;
}

Bytes deth(std::uint32_t qkey, std::uint32_t srcqp) {
  Bytes b;
  put32(b, qkey);
  b.push_back(0);
  put24(b, srcqp);
  return b;
}

Bytes mad(std::uint8_t mgmt_class, std::uint16_t attr, const Bytes& data, std::uint64_t tid,
          std::uint8_t method, std::size_t size) {
  Bytes m = {1, mgmt_class, 2, method, 0, 0, 0, 0};
  put64(m, tid);
  put16(m, attr);
  put16(m, 0);
  put32(m, 0);
  m.insert(m.end(), data.begin(), data.end());
  m.resize(size, 0);
  return m;
}

// Writes the `n` low bytes of v big-endian at b[off].
static void set_be(Bytes& b, std::size_t off, std::uint64_t v, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    b[off + i] = static_cast<std::uint8_t>(v >> (8 * (n - 1 - i)));
}

static BthSpec ud_to_qp1() {
  BthSpec s;
  s.opcode = 0x64;  // UD SEND Only
  s.destqp = 1;
  return s;
}

Bytes cm_native(std::uint16_t attr, const Bytes& data, std::uint64_t tid, std::uint16_t slid,
                std::uint16_t dlid, std::size_t mad_size) {
  return native(ud_to_qp1(), deth(0x80010000, 1), mad(0x07, attr, data, tid, 0x03, mad_size), false,
                0, dlid, slid);
}

Bytes cm_rocev2(std::uint16_t attr, const Bytes& data, bool ipv6) {
  return rocev2(ud_to_qp1(), deth(0x80010000, 1), mad(0x07, attr, data), ipv6);
}

std::vector<Bytes> sdp_connection(const Bytes& hello, const Bytes& hello_ack,
                                  const std::vector<std::pair<int, Bytes>>& sends) {
  constexpr std::uint64_t kTid = 0x00000001deadbeefULL;
  constexpr std::uint32_t kCommId[2] = {0x6b2f1001, 0x6b2f2002};
  constexpr std::uint16_t kLid[2] = {1, 2};
  constexpr std::uint32_t kQpn[2] = {kSdpRequesterQpn, kSdpResponderQpn};
  auto ids = [&](int from) {  // LocalCommID, RemoteCommID
    Bytes d;
    put32(d, kCommId[from]);
    put32(d, kCommId[1 - from]);
    return d;
  };
  auto cm = [&](std::uint16_t attr, const Bytes& data, int from) {
    return cm_native(attr, data, kTid, kLid[from], kLid[1 - from]);
  };
  std::vector<Bytes> out;
  Bytes req(232, 0);
  set_be(req, 0, kCommId[0], 4);
  set_be(req, 8, kSdpServiceId, 8);
  set_be(req, 32, kQpn[0], 3);
  set_be(req, 52, kLid[0], 2);  // primary local / remote LID
  set_be(req, 54, kLid[1], 2);
  std::copy_n(hello.begin(), std::min<std::size_t>(hello.size(), 92), req.begin() + 140);
  out.push_back(cm(0x0010, req, 0));
  Bytes rep = ids(1);
  rep.resize(36, 0);
  set_be(rep, 12, kQpn[1], 3);
  rep.insert(rep.end(), hello_ack.begin(), hello_ack.end());
  out.push_back(cm(0x0013, rep, 1));
  out.push_back(cm(0x0014, ids(0), 0));
  std::uint32_t psn[2] = {100, 200};
  for (const auto& [from, payload] : sends) {
    BthSpec s;
    s.destqp = kQpn[1 - from];
    s.psn = psn[from]++;
    out.push_back(native(s, {}, payload, false, 0, kLid[1 - from], kLid[from]));
  }
  Bytes dreq = ids(0);
  put24(dreq, kQpn[1]);
  out.push_back(cm(0x0015, dreq, 0));
  out.push_back(cm(0x0016, ids(1), 1));
  return out;
}

Bytes erf(const Bytes& ib, bool ext_header) {
  Bytes h;
  put_le32(h, 0x80000000U);  // 0.5 s
  put_le32(h, 1700000000U);
  h.push_back(static_cast<std::uint8_t>(21 | (ext_header ? 0x80 : 0)));
  h.push_back(0x04);
  put16(h, static_cast<unsigned>(16 + (ext_header ? 8 : 0) + ib.size() + 6));  // rlen lies
  put16(h, 0);
  put16(h, static_cast<unsigned>(ib.size()));
  if (ext_header) h.insert(h.end(), {0x01, 0, 0, 0, 0, 0, 0, 0});
  return cat({h, ib});
}

Bytes sll(std::uint16_t proto, const Bytes& l3) {
  Bytes h = {0, 0, 0, 1, 0, 6, 0, 1, 2, 3, 4, 5, 0, 0};
  put16(h, proto);
  return cat({h, l3});
}

Bytes sll2(std::uint16_t proto, const Bytes& l3) {
  Bytes h;
  put16(h, proto);
  put16(h, 0);
  put32(h, 2);  // ifindex
  h.insert(h.end(), {0, 1, 0, 6, 0, 1, 2, 3, 4, 5, 0, 0});
  return cat({h, l3});
}

}  // namespace ibsniff::test

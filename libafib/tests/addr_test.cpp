// libafib addressing: service IDs, sockaddr_ib building, the text form both ways (every field,
// defaults, canonical output) and its errors, resolution without a device.
#include <arpa/inet.h>
#include <endian.h>
#include <gtest/gtest.h>
#include <infiniband/verbs.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "afib/afib.h"

namespace {

std::string format(const sockaddr_ib& a) {
  char buf[AFIB_ADDRSTRLEN];
  const int n = afib_addr_format(&a, buf, sizeof buf);
  EXPECT_GT(n, 0);
  EXPECT_LT(n, AFIB_ADDRSTRLEN);
  return buf;
}

sockaddr_ib parse_ok(const char* text) {
  sockaddr_ib a{};
  char err[256] = "";
  EXPECT_EQ(afib_addr_parse(text, &a, err, sizeof err), 0) << text << ": " << err;
  return a;
}

std::string parse_error(const char* text) {
  sockaddr_ib a{};
  char err[256] = "";
  errno = 0;
  EXPECT_EQ(afib_addr_parse(text, &a, err, sizeof err), -1) << "'" << text << "' parsed";
  EXPECT_EQ(errno, EINVAL) << text;
  return err;
}

TEST(AfibSid, KindsAndPorts) {
  EXPECT_EQ(afib_sid(AFIB_SID_SDP, 5000), 0x0000000000011388ULL);
  EXPECT_EQ(afib_sid(AFIB_SID_IP_CM, 5000), 0x0000000001061388ULL);
  EXPECT_EQ(afib_sid(AFIB_SID_IB, 5000), 0x00000000013F1388ULL);
  EXPECT_EQ(afib_sid(AFIB_SID_OTHER, 5000), 0U);
  for (const auto kind : {AFIB_SID_SDP, AFIB_SID_IP_CM, AFIB_SID_IB}) {
    for (const unsigned port : {0U, 1U, 7007U, 65535U}) {
      std::uint16_t p = 1234;
      EXPECT_EQ(afib_sid_kind_of(afib_sid(kind, static_cast<std::uint16_t>(port)), &p), kind);
      EXPECT_EQ(p, port);
    }
  }
  std::uint16_t p = 77;
  EXPECT_EQ(afib_sid_kind_of(0x1000000000000404ULL, &p), AFIB_SID_OTHER);  // IPoIB-CM
  EXPECT_EQ(p, 77);                                                        // untouched
  EXPECT_EQ(afib_sid_kind_of(0x0000000100011388ULL, nullptr),
            AFIB_SID_OTHER);  // not the exact mask
  EXPECT_EQ(afib_sid_kind_of(0x0000000000011388ULL, nullptr), AFIB_SID_SDP);
}

TEST(AfibAddr, InitSetsNetworkOrderFields) {
  const std::uint8_t gid[16] = {0xfe, 0x80, 0,    0,    0, 0, 0,    0,
                                0,    0x02, 0xc9, 0x03, 0, 0, 0x11, 0x01};
  sockaddr_ib a;
  std::memset(&a, 0x5a, sizeof a);
  afib_addr_init(&a, gid, 0x8001, afib_sid(AFIB_SID_SDP, 7007));
  EXPECT_EQ(a.sib_family, AF_IB);
  EXPECT_EQ(a.sib_pkey, htobe16(0x8001));
  EXPECT_EQ(std::memcmp(a.sib_addr.sib_raw, gid, 16), 0);
  EXPECT_EQ(a.sib_sid, htobe64(0x0000000000011b5fULL));
  EXPECT_EQ(a.sib_sid_mask, htobe64(~0ULL));
  EXPECT_EQ(a.sib_scope_id, 0U);
  EXPECT_EQ(a.sib_flowinfo, 0U);
  EXPECT_EQ(afib_addr_pkey(&a), 0x8001);
  EXPECT_EQ(afib_addr_sid(&a), 0x0000000000011b5fULL);
  EXPECT_EQ(afib_addr_sid_mask(&a), ~0ULL);
}

TEST(AfibAddr, TextFormRoundTrips) {
  // Canonical texts print back unchanged.
  for (const char* text : {
           "[fe80::2:c903:0:1101]:0x0000000000011b5f",
           "[::ffff:10.99.0.1]:0x0000000001061388",
           "[fe80::5054:ff:fe99:1]:0x00000000013f0007/0xffffffffffff0000",
           "[fe80::1]:0x1000000000000404,pkey=0x8001",
           "[fe80::1]:0x0000000000000000,scope=2,flow=0x12345",
           "[::]:0xffffffffffffffff/0x0000000000000000,pkey=0x7fff,scope=18446744073709551615",
       }) {
    SCOPED_TRACE(text);
    const sockaddr_ib a = parse_ok(text);
    EXPECT_EQ(format(a), text);
  }
  // Other spellings: the same address, printed canonically.
  struct Case {
    const char* in;
    const char* out;
  };
  for (const Case& c : {
           Case{"[FE80:0:0:0:2:C903:0:1101]:sdp:7007", "[fe80::2:c903:0:1101]:0x0000000000011b5f"},
           Case{"[::ffff:10.99.0.1]:ipcm:5000", "[::ffff:10.99.0.1]:0x0000000001061388"},
           Case{"[::ffff:10.99.0.1]:tcp:5000", "[::ffff:10.99.0.1]:0x0000000001061388"},
           Case{"[fe80::1]:ib:7", "[fe80::1]:0x00000000013f0007"},
           Case{"[fe80::1]:72071", "[fe80::1]:0x0000000000011987"},
           Case{"[fe80::1]:0X11987,pkey=65535", "[fe80::1]:0x0000000000011987"},
           Case{"[fe80::1]:0x11987/18446744073709551615", "[fe80::1]:0x0000000000011987"},
           Case{"[fe80::1]:sdp:0,flow=0,scope=0,pkey=0xffff", "[fe80::1]:0x0000000000010000"},
           Case{"[fe80::1]:sdp:1,flow=7,pkey=32769",
                "[fe80::1]:0x0000000000010001,pkey=0x8001,flow=0x00007"},
       }) {
    SCOPED_TRACE(c.in);
    EXPECT_EQ(format(parse_ok(c.in)), c.out);
  }
  // Fields as parsed.
  const sockaddr_ib a = parse_ok("[fe80::1]:sdp:7007/0xffff,pkey=0x8001,scope=3,flow=0xabcde");
  EXPECT_EQ(a.sib_family, AF_IB);
  EXPECT_EQ(afib_addr_sid(&a), 0x0000000000011b5fULL);
  EXPECT_EQ(afib_addr_sid_mask(&a), 0xffffULL);
  EXPECT_EQ(afib_addr_pkey(&a), 0x8001);
  EXPECT_EQ(a.sib_scope_id, 3U);
  EXPECT_EQ(be32toh(a.sib_flowinfo), 0xabcdeU);
  EXPECT_EQ(a.sib_addr.sib_raw[0], 0xfe);
  EXPECT_EQ(a.sib_addr.sib_raw[15], 0x01);
}

TEST(AfibAddr, FormatTruncatesLikeSnprintf) {
  const sockaddr_ib a = parse_ok("[fe80::2:c903:0:1101]:sdp:7007,pkey=0x8001");
  const std::string full = format(a);
  char small[10];
  EXPECT_EQ(afib_addr_format(&a, small, sizeof small), static_cast<int>(full.size()));
  EXPECT_EQ(std::string(small), full.substr(0, 9));
  EXPECT_EQ(afib_addr_format(&a, nullptr, 0), static_cast<int>(full.size()));
  sockaddr_ib not_ib = a;
  not_ib.sib_family = AF_INET6;
  errno = 0;
  EXPECT_EQ(afib_addr_format(&not_ib, small, sizeof small), -1);
  EXPECT_EQ(errno, EAFNOSUPPORT);
}

TEST(AfibAddr, BadTextIsRefusedWithTheReason) {
  struct Case {
    const char* text;
    const char* reason;  // a part of the message
  };
  for (const Case& c : {
           Case{"", "expected '[' and a GID at column 1"},
           Case{"fe80::1:sdp:1", "expected '[' and a GID at column 1"},
           Case{"[fe80::1:sdp:1", "has no ']'"},
           Case{"[fe80::g]:sdp:1", "bad GID 'fe80::g' at column 2"},
           Case{"[10.0.0.1]:sdp:1", "bad GID '10.0.0.1'"},
           Case{"[]:sdp:1", "bad GID ''"},
           Case{"[fe80::1]", "expected ':' and a service ID at column 10"},
           Case{"[fe80::1]sdp:1", "expected ':' and a service ID at column 10"},
           Case{"[fe80::1]:", "bad service ID '' at column 11"},
           Case{"[fe80::1]:0x", "bad service ID '0x'"},
           Case{"[fe80::1]:0x10000000000000000", "bad service ID '0x10000000000000000'"},
           Case{"[fe80::1]:18446744073709551616", "bad service ID"},
           Case{"[fe80::1]:-1", "bad service ID '-1'"},
           Case{"[fe80::1]:+1", "bad service ID '+1'"},
           Case{"[fe80::1]:12ab", "bad service ID '12ab'"},
           Case{"[fe80::1]:sdp:", "bad port '' at column 15"},
           Case{"[fe80::1]:sdp:65536", "bad port '65536'"},
           Case{"[fe80::1]:sdp:0x10", "bad port '0x10'"},
           Case{"[fe80::1]:smb:445", "bad service ID 'smb:445'"},
           Case{"[fe80::1]:sdp:1/", "bad service ID mask ''"},
           Case{"[fe80::1]:sdp:1/0xzz", "bad service ID mask '0xzz' at column 17"},
           Case{"[fe80::1]:sdp:1,", "unknown option '' at column 17"},
           Case{"[fe80::1]:sdp:1,qkey=1", "unknown option 'qkey' at column 17 (pkey, scope, flow)"},
           Case{"[fe80::1]:sdp:1,pkey", "bad pkey ''"},
           Case{"[fe80::1]:sdp:1,pkey=0x10000",
                "bad pkey '0x10000' at column 22: a number up to 0xffff"},
           Case{"[fe80::1]:sdp:1,flow=0x100000", "bad flow '0x100000'"},
           Case{"[fe80::1]:sdp:1,scope=x", "bad scope 'x'"},
           Case{"[fe80::1]:sdp:1,pkey=1,pkey=2", "option 'pkey' given twice"},
           Case{"[fe80::1]:sdp:1 ", "bad port '1 '"},
       }) {
    SCOPED_TRACE(c.text);
    const std::string err = parse_error(c.text);
    EXPECT_NE(err.find(c.reason), std::string::npos) << "got: " << err;
  }
  errno = 0;
  EXPECT_EQ(afib_addr_parse(nullptr, nullptr, nullptr, 0), -1);  // no buffer for the reason: fine
  EXPECT_EQ(errno, EINVAL);
}

TEST(AfibResolve, NoDeviceOrNoNameIsAClearError) {
  sockaddr_ib a{};
  char err[256] = "";
  errno = 0;
  EXPECT_EQ(
      afib_resolve("no-such-host.invalid", afib_sid(AFIB_SID_SDP, 1), 1000, &a, err, sizeof err),
      -1);
  EXPECT_NE(errno, 0);
  EXPECT_NE(std::string(err).find("no-such-host.invalid"), std::string::npos) << err;
  int n = 0;
  ibv_device** list = ibv_get_device_list(&n);
  if (list != nullptr) ibv_free_device_list(list);
  if (n > 0) GTEST_SKIP() << "an RDMA device is present: the no-device error is not checked here";
  err[0] = '\0';
  errno = 0;
  EXPECT_EQ(afib_resolve("192.0.2.1", afib_sid(AFIB_SID_SDP, 1), 1000, &a, err, sizeof err), -1);
  EXPECT_EQ(errno, ENODEV) << err;
  EXPECT_NE(std::string(err).find("no RDMA device"), std::string::npos) << err;
}

}  // namespace

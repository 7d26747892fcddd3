// Display filters (filter.hpp): the operators, precedence and value types on hand-built packets,
// every compile error with its message, no allocation while matching, and agreement with tshark's
// -Y on the public captures.
#include "ibsniff/filter.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "ibsniff/reader.hpp"
#include "ibsniff/session.hpp"
#include "tshark.hpp"

// Counts heap allocations, for the no-allocation test below. Not under AddressSanitizer, which
// owns operator new itself (and GCC then flags the malloc/free pairing below).
#if defined(__SANITIZE_ADDRESS__)
#define IBSNIFF_COUNT_ALLOCATIONS 0
#else
#define IBSNIFF_COUNT_ALLOCATIONS 1
#endif
namespace {
std::atomic<std::size_t> g_allocations{0};
}  // namespace

#if IBSNIFF_COUNT_ALLOCATIONS
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
#endif

namespace ibsniff {
namespace {

namespace fs = std::filesystem;

// A packet built field by field; bytes-like fields get their bytes appended to the frame.
class Built {
 public:
  Built& num(FieldId id, std::uint64_t v) {
    p_.fields.push_back(Field{id, 0, 0, v});
    return *this;
  }
  Built& bytes(FieldId id, const std::vector<std::uint8_t>& b) {
    const auto off = static_cast<std::uint32_t>(data_.size());
    data_.insert(data_.end(), b.begin(), b.end());
    p_.fields.push_back(Field{id, off, static_cast<std::uint32_t>(b.size()), 0});
    return *this;
  }
  Built& ipv6(FieldId id, const char* text) {
    std::vector<std::uint8_t> a(16);
    EXPECT_EQ(inet_pton(AF_INET6, text, a.data()), 1) << text;
    return bytes(id, a);
  }
  Built& time(std::int64_t sec, std::uint32_t nsec) {
    p_.ts_sec = sec;
    p_.ts_nsec = nsec;
    num(FieldId::frame_time_epoch, 0);
    return num(FieldId::frame_time_relative, 0);
  }
  const Packet& packet() {
    p_.data = data_;
    return p_;
  }

 private:
  std::vector<std::uint8_t> data_;
  Packet p_;
};

std::optional<Filter> compile(std::string_view expr) {
  std::string err;
  auto f = Filter::compile(expr, &err);
  EXPECT_TRUE(f) << "'" << expr << "': " << err;
  return f;
}

bool match(std::string_view expr, const Packet& p, const TimeRef& ref = {}) {
  const auto f = compile(expr);
  return f && f->matches(p, ref);
}

std::string error_of(std::string_view expr) {
  std::string err;
  EXPECT_FALSE(Filter::compile(expr, &err)) << "'" << expr << "' compiled";
  return err;
}

// An RC packet: opcode 10, PSN 200, SE clear, A set, a 12-byte BTH, one AETH, two LRH DLIDs.
const Packet& rc_packet() {
  static Built b;
  static bool built = false;
  if (!built) {
    built = true;
    b.num(FieldId::frame_number, 7)
        .num(FieldId::frame_len, 94)
        .bytes(FieldId::ip_src, {192, 168, 65, 5})
        .bytes(FieldId::ip_dst, {192, 168, 65, 4})
        .num(FieldId::lrh_dlid, 4)
        .num(FieldId::lrh_dlid, 7)
        .bytes(FieldId::bth,
               {0x0a, 0x20, 0xff, 0xff, 0x00, 0x00, 0x00, 0x11, 0x80, 0x8c, 0x84, 0xdd})
        .num(FieldId::bth_opcode, 10)
        .num(FieldId::bth_se, 0)
        .num(FieldId::bth_a, 1)
        .num(FieldId::bth_destqp, 0x11)
        .num(FieldId::bth_psn, 200)
        .bytes(FieldId::reserved, {0x00})
        .bytes(FieldId::reserved, {0x00, 0x00})
        .num(FieldId::reth_va, 0xffffffffffffffffULL)
        .num(FieldId::reth_dmalen, 4096)
        .bytes(FieldId::payload, {'h', 'e', 'l', 'l', 'o', 0x00, '"', '\\', 0xfe})
        .ipv6(FieldId::grh_sgid, "fe80::2:c903:0:1f2d");
  }
  return b.packet();
}

TEST(IbsniffFilter, IntegerRelations) {
  const Packet& p = rc_packet();
  EXPECT_TRUE(match("infiniband.bth.opcode == 10", p));
  EXPECT_TRUE(match("infiniband.bth.opcode eq 10", p));
  EXPECT_TRUE(match("infiniband.bth.opcode any_eq 10", p));
  EXPECT_FALSE(match("infiniband.bth.opcode == 11", p));
  EXPECT_TRUE(match("infiniband.bth.opcode != 11", p));
  EXPECT_TRUE(match("infiniband.bth.opcode ne 11", p));
  EXPECT_FALSE(match("infiniband.bth.opcode != 10", p));
  EXPECT_TRUE(match("infiniband.bth.psn > 199", p));
  EXPECT_FALSE(match("infiniband.bth.psn gt 200", p));
  EXPECT_TRUE(match("infiniband.bth.psn >= 200", p));
  EXPECT_TRUE(match("infiniband.bth.psn ge 200", p));
  EXPECT_FALSE(match("infiniband.bth.psn >= 201", p));
  EXPECT_TRUE(match("infiniband.bth.psn < 201", p));
  EXPECT_FALSE(match("infiniband.bth.psn lt 200", p));
  EXPECT_TRUE(match("infiniband.bth.psn <= 200", p));
  EXPECT_TRUE(match("infiniband.bth.psn le 200", p));
  EXPECT_FALSE(match("infiniband.bth.psn <= 199", p));
  // Number forms: hex, binary, '+', the largest values of the type.
  EXPECT_TRUE(match("infiniband.bth.opcode == 0x0a", p));
  EXPECT_TRUE(match("infiniband.bth.opcode == 0X0A", p));
  EXPECT_TRUE(match("infiniband.bth.opcode == 0b1010", p));
  EXPECT_TRUE(match("infiniband.bth.opcode == +10", p));
  EXPECT_TRUE(match("infiniband.bth.opcode < 255", p));
  EXPECT_TRUE(match("infiniband.bth.destqp < 0xffffff", p));
  EXPECT_TRUE(match("infiniband.bth.destqp == 17", p));
  EXPECT_TRUE(match("infiniband.reth.va == 18446744073709551615", p));
  EXPECT_TRUE(match("infiniband.reth.va == 0xffffffffffffffff", p));
  EXPECT_TRUE(match("infiniband.reth.dmalen >= 1024", p));
  EXPECT_TRUE(match("frame.number == 7", p));
  EXPECT_TRUE(match("infiniband.bth.opcode==10&&infiniband.bth.psn==200", p));  // no blanks
}

// Several occurrences: infiniband.lrh.dlid is 4 and 7 here.
TEST(IbsniffFilter, OccurrencesAnyAndAll) {
  const Packet& p = rc_packet();
  EXPECT_TRUE(match("infiniband.lrh.dlid == 7", p));   // any
  EXPECT_TRUE(match("infiniband.lrh.dlid == 4", p));   // any
  EXPECT_TRUE(match("infiniband.lrh.dlid > 5", p));    // any
  EXPECT_TRUE(match("infiniband.lrh.dlid < 5", p));    // any
  EXPECT_FALSE(match("infiniband.lrh.dlid != 4", p));  // all_ne: 4 is there
  EXPECT_FALSE(match("infiniband.lrh.dlid all_ne 7", p));
  EXPECT_TRUE(match("infiniband.lrh.dlid != 5", p));
  EXPECT_TRUE(match("infiniband.lrh.dlid !== 4", p));  // any_ne: 7 differs
  EXPECT_TRUE(match("infiniband.lrh.dlid ~= 4", p));
  EXPECT_TRUE(match("infiniband.lrh.dlid any_ne 4", p));
  EXPECT_FALSE(match("infiniband.lrh.dlid === 4", p));  // all_eq
  EXPECT_FALSE(match("infiniband.lrh.dlid all_eq 4", p));
  EXPECT_TRUE(match("infiniband.bth.opcode === 10", p));
  EXPECT_FALSE(match("infiniband.bth.opcode !== 10", p));
  EXPECT_TRUE(match("infiniband.lrh.dlid in {5, 7}", p));
  EXPECT_FALSE(match("infiniband.lrh.dlid not in {5, 7}", p));
  EXPECT_TRUE(match("infiniband.lrh.dlid not in {5, 6}", p));
}

// A comparison on a field the packet lacks is false, `!=` included; `not in` and `!` are true.
TEST(IbsniffFilter, AbsentFields) {
  const Packet& p = rc_packet();
  for (const char* op : {"==", "!=", "!==", "===", ">", ">=", "<", "<="})
    EXPECT_FALSE(match(std::string("infiniband.aeth.syndrome ") + op + " 0", p)) << op;
  EXPECT_FALSE(match("infiniband.aeth.syndrome in {0..255}", p));
  EXPECT_FALSE(match("infiniband.aeth", p));
  EXPECT_FALSE(match("infiniband.immdt contains 00", p));
  EXPECT_TRUE(match("infiniband.aeth.syndrome not in {0}", p));
  EXPECT_TRUE(match("!(infiniband.aeth.syndrome == 0)", p));
  EXPECT_TRUE(match("!infiniband.aeth", p));
  EXPECT_TRUE(match("not infiniband.aeth", p));
}

TEST(IbsniffFilter, PresenceIgnoresTheValue) {
  const Packet& p = rc_packet();
  EXPECT_TRUE(match("infiniband.bth.se", p));  // present, although SE is clear
  EXPECT_TRUE(match("infiniband.bth", p));
  EXPECT_TRUE(match("infiniband.bth.opcode", p));
  EXPECT_FALSE(match("infiniband.deth", p));
  EXPECT_TRUE(match("infiniband.bth.psn > 100 && infiniband.bth.se", p));
}

TEST(IbsniffFilter, ProtocolNamesTestForAnyOfTheirFields) {
  const Packet& p = rc_packet();
  EXPECT_TRUE(match("infiniband", p));
  EXPECT_TRUE(match("frame && infiniband", p));
  EXPECT_FALSE(match("infiniband_sdp", p));
  EXPECT_FALSE(match("!infiniband", p));
  EXPECT_EQ(error_of("infiniband == 1"),
            "infiniband at column 1 is a protocol: it can only be tested for presence");
  EXPECT_EQ(error_of("infini"), "unknown field 'infini' at column 1");
}

// add_fields_to: every field a filter reads (a protocol name: each of its fields), nothing more.
TEST(IbsniffFilter, AddsTheFieldsItReadsToASet) {
  const auto f = compile(
      "infiniband.bth.opcode == 4 && !(ip.src == 1.2.3.4) || infiniband_sdp || ibsniff.icrc.bad "
      "|| infiniband.aeth.msn in {1, 2..5}");
  ASSERT_TRUE(f);
  FieldSet set;
  f->add_fields_to(set);
  std::size_t sdp = 0;
  for (std::size_t i = 0; i < field_table().size(); ++i) {
    const auto id = static_cast<FieldId>(i);
    const std::string_view name = field_def(id).name;
    const bool expected = name.starts_with("infiniband_sdp.") || id == FieldId::bth_opcode ||
                          id == FieldId::ip_src || id == FieldId::icrc_bad ||
                          id == FieldId::aeth_msn;
    EXPECT_EQ(set.has(id), expected) << name;
    if (name.starts_with("infiniband_sdp.")) ++sdp;
  }
  EXPECT_GT(sdp, 15U);
  EXPECT_TRUE(set.any_sdp());
  FieldSet plain;
  compile("frame.number > 3")->add_fields_to(plain);
  EXPECT_TRUE(plain.has(FieldId::frame_number));
  EXPECT_FALSE(plain.any_sdp());
}

TEST(IbsniffFilter, PrecedenceParenthesesAndNot) {
  const Packet& p = rc_packet();
  const char* t = "infiniband.bth.opcode == 10";  // true
  const char* f = "infiniband.bth.opcode == 11";  // false
  const auto expr = [](std::initializer_list<std::string_view> parts) {
    std::string s;
    for (const auto part : parts) s += part;
    return s;
  };
  // a || b && c is a || (b && c).
  EXPECT_TRUE(match(expr({t, " || ", f, " && ", f}), p));
  EXPECT_FALSE(match(expr({"(", t, " || ", f, ") && ", f}), p));
  EXPECT_TRUE(match(expr({f, " && ", f, " || ", t}), p));
  EXPECT_FALSE(match(expr({f, " && (", f, " || ", t, ")"}), p));
  EXPECT_TRUE(match(expr({t, " or ", f, " and ", f}), p));
  EXPECT_TRUE(match(expr({f, " or ", f, " or ", f, " or ", t}), p));
  EXPECT_FALSE(match(expr({t, " and ", t, " and ", t, " and ", f}), p));
  // ! binds tighter than && and applies to a whole comparison.
  EXPECT_FALSE(match(expr({"!", t, " && ", t}), p));
  EXPECT_TRUE(match(expr({"!", f, " && ", t}), p));
  EXPECT_TRUE(match(expr({"!(", t, " && ", f, ")"}), p));
  EXPECT_TRUE(match(expr({"not ", f}), p));
  EXPECT_TRUE(match(expr({"!!", t}), p));
  EXPECT_TRUE(match(expr({"not not ", t}), p));
  EXPECT_FALSE(match(expr({"! ! !", t}), p));
  EXPECT_TRUE(match(expr({"((((", t, "))))"}), p));
  EXPECT_TRUE(match(expr({"(", f, ")||(", t, ")"}), p));
}

TEST(IbsniffFilter, BooleanValues) {
  Built b;
  b.num(FieldId::bth_se, 0).num(FieldId::bth_a, 1);
  const Packet& p = b.packet();
  EXPECT_TRUE(match("infiniband.bth.se == 0", p));
  EXPECT_TRUE(match("infiniband.bth.se == false", p));
  EXPECT_TRUE(match("infiniband.bth.se == FALSE", p));
  EXPECT_FALSE(match("infiniband.bth.se == true", p));
  EXPECT_TRUE(match("infiniband.bth.a == 1", p));
  EXPECT_TRUE(match("infiniband.bth.a == true", p));
  EXPECT_TRUE(match("infiniband.bth.a == True", p));
  EXPECT_TRUE(match("infiniband.bth.a == 2", p));  // non-zero is true, as in tshark
  EXPECT_FALSE(match("infiniband.bth.a > 1", p));
  EXPECT_TRUE(match("infiniband.bth.se < 2", p));
  EXPECT_TRUE(match("infiniband.bth.a > false", p));
  EXPECT_TRUE(match("infiniband.bth.a != 0", p));
}

TEST(IbsniffFilter, Ipv4Values) {
  const Packet& p = rc_packet();
  EXPECT_TRUE(match("ip.src == 192.168.65.5", p));
  EXPECT_FALSE(match("ip.src == 192.168.65.4", p));
  EXPECT_TRUE(match("ip.src != 192.168.65.4", p));
  EXPECT_TRUE(match("ip.src == 192.168.65.0/24", p));
  EXPECT_TRUE(match("ip.src == 192.168.0.0/16", p));
  EXPECT_FALSE(match("ip.src == 192.168.64.0/24", p));
  EXPECT_TRUE(match("ip.src == 192.168.64.0/23", p));
  EXPECT_TRUE(match("ip.src == 1.2.3.4/0", p));
  EXPECT_TRUE(match("ip.src == 192.168.65.5/32", p));
  EXPECT_TRUE(match("ip.src > 192.168.65.4", p));  // numeric order
  EXPECT_TRUE(match("ip.src > 10.255.255.255", p));
  EXPECT_FALSE(match("ip.src > 192.168.65.5", p));
  EXPECT_TRUE(match("ip.src in {10.0.0.1, 192.168.65.4..192.168.65.9}", p));
  EXPECT_FALSE(match("ip.src in {192.168.65.6..192.168.65.9}", p));
  EXPECT_TRUE(match("ip.src in {192.168.0.0/16}", p));
}

TEST(IbsniffFilter, Ipv6Values) {
  const Packet& p = rc_packet();
  EXPECT_TRUE(match("infiniband.grh.sgid == fe80::2:c903:0:1f2d", p));
  EXPECT_TRUE(match("infiniband.grh.sgid == FE80:0:0:0:2:C903:0:1F2D", p));
  EXPECT_FALSE(match("infiniband.grh.sgid == fe80::2:c903:0:1f2e", p));
  EXPECT_TRUE(match("infiniband.grh.sgid == fe80::/64", p));
  EXPECT_TRUE(match("infiniband.grh.sgid == fe80::2:c903:0:1f20/124", p));
  EXPECT_FALSE(match("infiniband.grh.sgid == fe80::2:c903:0:1f00/124", p));
  EXPECT_TRUE(match("infiniband.grh.sgid == fe80::2:c903:0:1f00/120", p));
  EXPECT_TRUE(match("infiniband.grh.sgid == fe80::2:c903:0:1f2c/127", p));
  EXPECT_TRUE(match("infiniband.grh.sgid == ::/0", p));
  EXPECT_TRUE(match("infiniband.grh.sgid > fe80::1", p));
  EXPECT_TRUE(match("infiniband.grh.sgid < ff02::1", p));
  EXPECT_TRUE(match("infiniband.grh.sgid != ::ffff:10.0.0.1", p));
  EXPECT_TRUE(match("infiniband.grh.sgid in {::1, fe80::/10}", p));
}

TEST(IbsniffFilter, BytesValues) {
  const Packet& p = rc_packet();
  EXPECT_TRUE(match("infiniband.bth == 0a:20:ff:ff:00:00:00:11:80:8c:84:dd", p));
  EXPECT_TRUE(match("infiniband.bth == 0a-20-ff-ff-00-00-00-11-80-8c-84-dd", p));
  EXPECT_TRUE(match("infiniband.bth == 0a.20.ff.ff.00.00.00.11.80.8c.84.dd", p));
  EXPECT_TRUE(match("infiniband.bth == 0a20ffff00000011808c84DD", p));
  EXPECT_TRUE(match("infiniband.bth == a:20:ff:ff:0:0:0:11:80:8c:84:dd", p));
  EXPECT_FALSE(match("infiniband.bth == 0a:20:ff:ff:00:00:00:11:80:8c:84", p));
  EXPECT_TRUE(match("infiniband.bth contains 8c:84", p));
  EXPECT_TRUE(match("infiniband.bth contains 0a", p));
  EXPECT_TRUE(match("infiniband.bth contains dd", p));
  EXPECT_FALSE(match("infiniband.bth contains 84:8c", p));
  EXPECT_TRUE(match("infiniband.bth contains \"\\x8c\\x84\"", p));
  EXPECT_TRUE(match("infiniband.bth contains \"\"", p));
  // tshark's order for bytes: the shorter sequence first, then the bytes.
  EXPECT_TRUE(match("infiniband.bth > 64:00", p));
  EXPECT_FALSE(match("infiniband.bth < 0d", p));
  EXPECT_TRUE(match("infiniband.bth < 0b:00:00:00:00:00:00:00:00:00:00:00", p));
  EXPECT_TRUE(match("infiniband.bth >= 0a:20:ff:ff:00:00:00:11:80:8c:84:dd", p));
  // Strings and escapes.
  EXPECT_TRUE(match("ibsniff.payload contains \"hello\"", p));
  EXPECT_TRUE(match("ibsniff.payload contains \"llo\\x00\\\"\\\\\\376\"", p));
  EXPECT_TRUE(match("ibsniff.payload contains \"o\\0\"", p));
  EXPECT_FALSE(match("ibsniff.payload contains \"help\"", p));
  EXPECT_TRUE(match("ibsniff.payload == \"hello\\x00\\\"\\\\\\xfe\"", p));
  // Several occurrences: 00 and 00:00.
  EXPECT_TRUE(match("infiniband.reserved == 00", p));
  EXPECT_TRUE(match("infiniband.reserved == 0000", p));
  EXPECT_FALSE(match("infiniband.reserved != 00", p));
  EXPECT_TRUE(match("infiniband.reserved !== 00", p));
  EXPECT_FALSE(match("infiniband.reserved === 00", p));
  EXPECT_TRUE(match("infiniband.reserved in {01, 00:00}", p));
}

TEST(IbsniffFilter, TimeValues) {
  Built b;
  b.time(1756719551, 558857000);
  const Packet& p = b.packet();
  EXPECT_TRUE(match("frame.time_epoch == 1756719551.558857", p));
  EXPECT_TRUE(match("frame.time_epoch == 1756719551.558857000", p));
  EXPECT_FALSE(match("frame.time_epoch == 1756719551.558857001", p));
  EXPECT_TRUE(match("frame.time_epoch > 1756719551", p));
  EXPECT_TRUE(match("frame.time_epoch < 1756719552", p));
  EXPECT_TRUE(match("frame.time_epoch in {1756719551..1756719552}", p));
  TimeRef ref;
  ref.set = true;
  ref.sec = 1756719551;
  ref.nsec = 554171000;
  EXPECT_TRUE(match("frame.time_relative == 0.004686", p, ref));
  EXPECT_TRUE(match("frame.time_relative > 0.004", p, ref));
  EXPECT_FALSE(match("frame.time_relative >= 1", p, ref));
  EXPECT_TRUE(match("frame.time_relative > -1", p, ref));
  EXPECT_TRUE(match("frame.time_relative == 0", p));  // no reference: the first packet
  // A packet before the reference: a negative relative time.
  ref.sec = 1756719552;
  ref.nsec = 0;
  EXPECT_TRUE(match("frame.time_relative == -0.441143", p, ref));
  EXPECT_TRUE(match("frame.time_relative < -0.44", p, ref));
  EXPECT_TRUE(match("frame.time_relative > -0.45", p, ref));
}

TEST(IbsniffFilter, Sets) {
  const Packet& p = rc_packet();
  EXPECT_TRUE(match("infiniband.bth.opcode in {4, 10, 12}", p));
  EXPECT_TRUE(match("infiniband.bth.opcode in {4,10}", p));
  EXPECT_TRUE(match("infiniband.bth.opcode in {0x0a}", p));
  EXPECT_FALSE(match("infiniband.bth.opcode in {4, 12}", p));
  EXPECT_TRUE(match("infiniband.bth.opcode in {1..5, 9..11}", p));
  EXPECT_TRUE(match("infiniband.bth.opcode in {10 .. 10}", p));
  EXPECT_FALSE(match("infiniband.bth.opcode in {11..20}", p));
  EXPECT_FALSE(match("infiniband.bth.opcode in {12..4}", p));  // an empty range
  EXPECT_TRUE(match("infiniband.bth.opcode not in {4, 12}", p));
  EXPECT_FALSE(match("infiniband.bth.opcode not in {4, 10}", p));
  EXPECT_TRUE(match("!infiniband.bth.opcode in {4, 12}", p));
  EXPECT_TRUE(match("infiniband.reth.dmalen >= 1024 || infiniband.bth.opcode in {12, 16}", p));
}

struct ErrorCase {
  const char* expr;
  const char* message;
};

TEST(IbsniffFilter, CompileErrors) {
  const ErrorCase cases[] = {
      {"", "empty filter expression"},
      {" \t ", "empty filter expression"},
      // Unknown fields.
      {"infiniband.bth.opcod == 4", "unknown field 'infiniband.bth.opcod' at column 1"},
      {"ip.src == 1.2.3.4 && infiniband.bth.opcod",
       "unknown field 'infiniband.bth.opcod' at column 22"},
      {"ipx", "unknown field 'ipx' at column 1"},
      // Structure.
      {"(infiniband.bth.opcode == 4",
       "missing ')' for the '(' at column 1: found end of expression at column 28"},
      {"((ip.src) ip.dst)", "missing ')' for the '(' at column 1: found 'ip.dst' at column 11"},
      {"infiniband.bth.opcode == 4)", "unexpected ')' at column 27"},
      {"infiniband.bth.opcode == 4 4", "unexpected '4' at column 28"},
      {"ip.src ip.dst", "unexpected 'ip.dst' at column 8"},
      {"()", "expected a field name, '(' or '!' at column 2, found ')'"},
      {"&& ip.src", "expected a field name, '(' or '!' at column 1, found '&&'"},
      {"ip.src &&", "expected a field name, '(' or '!' at column 10, found end of expression"},
      {"ip.src or", "expected a field name, '(' or '!' at column 10, found end of expression"},
      {"!", "expected a field name, '(' or '!' at column 2, found end of expression"},
      {"and", "expected a field name, '(' or '!' at column 1, found 'and'"},
      {"ip.src == 1.2.3.4 and in", "expected a field name, '(' or '!' at column 23, found 'in'"},
      {"infiniband.bth.opcode ==",
       "expected a value after '==' at column 25, found end of expression"},
      {"infiniband.bth.opcode gt (", "expected a value after 'gt' at column 26, found '('"},
      // Operators that tshark has and this subset does not, and typos.
      {"ip.src = 1.2.3.4", "unexpected '=' at column 8 (did you mean '=='?)"},
      {"infiniband.bth.opcode & 4",
       "unexpected '&' at column 23 (bitwise and is not supported; '&&' is logical and)"},
      {"ip.src | ip.dst", "unexpected '|' at column 8 (did you mean '||'?)"},
      {"ibsniff.payload matches \"x\"",
       "'matches' at column 17: regular expressions are not supported"},
      {"ibsniff.payload ~ \"x\"",
       "unexpected '~' at column 17 (regular expressions are not supported)"},
      {"infiniband.bth[0:2] == 0a:20",
       "unexpected '[' at column 15 (field slices are not supported)"},
      {"ip.src == $x", "unexpected '$' at column 11"},
      {"ip.src == ip.dst", "comparing with another field ('ip.dst' at column 11) is not supported"},
      {"infiniband.bth.opcode contains 4",
       "'contains' at column 23 needs a bytes field; infiniband.bth.opcode is an unsigned integer"},
      {"ip.src contains 01",
       "'contains' at column 8 needs a bytes field; ip.src is an IPv4 address"},
      // Sets.
      {"infiniband.bth.opcode in {4 10}",
       "expected ',' or '}' (set elements are separated by commas) at column 29, found '10'"},
      {"infiniband.bth.opcode in {}", "expected a value in the set at column 27, found '}'"},
      {"infiniband.bth.opcode in {4,}", "expected a value in the set at column 29, found '}'"},
      {"infiniband.bth.opcode in {4", "expected ',' or '}' at column 28, found end of expression"},
      {"infiniband.bth.opcode in 4", "expected '{' after 'in' at column 26, found '4'"},
      {"infiniband.bth.opcode in {4..}", "expected a value after '..' at column 30, found '}'"},
      {"infiniband.bth.opcode not 4", "expected 'in' after 'not' at column 27, found '4'"},
      {"infiniband.bth.opcode in {4, 300}",
       "invalid value '300' for infiniband.bth.opcode at column 30: out of range (0..255)"},
      // Values of each type.
      {"infiniband.bth.opcode == 256",
       "invalid value '256' for infiniband.bth.opcode at column 26: out of range (0..255)"},
      {"infiniband.bth.destqp == 0x1000000",
       "invalid value '0x1000000' for infiniband.bth.destqp at column 26: out of range "
       "(0..16777215)"},
      {"infiniband.reth.va == 18446744073709551616",
       "invalid value '18446744073709551616' for infiniband.reth.va at column 23: out of range "
       "(0..18446744073709551615)"},
      {"infiniband.bth.opcode == 010",
       "invalid value '010' for infiniband.bth.opcode at column 26: a leading 0 means octal to "
       "tshark, and octal is not supported"},
      {"infiniband.bth.opcode == -1",
       "invalid value '-1' for infiniband.bth.opcode at column 26: expected an unsigned 8-bit "
       "integer (0..255; decimal, 0x hex or 0b binary)"},
      {"infiniband.bth.opcode == 0x",
       "invalid value '0x' for infiniband.bth.opcode at column 26: expected an unsigned 8-bit "
       "integer (0..255; decimal, 0x hex or 0b binary)"},
      {"infiniband.bth.psn == 1e3",
       "invalid value '1e3' for infiniband.bth.psn at column 23: expected an unsigned 24-bit "
       "integer (0..16777215; decimal, 0x hex or 0b binary)"},
      {"infiniband.bth.opcode == \"4\"",
       "invalid value '\"4\"' for infiniband.bth.opcode at column 26: a string is a value for a "
       "bytes field only; infiniband.bth.opcode is an unsigned integer"},
      {"infiniband.bth.se == maybe",
       "invalid value 'maybe' for infiniband.bth.se at column 22: expected a boolean (true, "
       "false or an integer)"},
      {"ip.src == 192.168.65",
       "invalid value '192.168.65' for ip.src at column 11: expected an IPv4 address (a.b.c.d or "
       "a.b.c.d/bits)"},
      {"ip.src == 192.168.65.256",
       "invalid value '192.168.65.256' for ip.src at column 11: expected an IPv4 address "
       "(a.b.c.d or a.b.c.d/bits)"},
      {"ip.src == 192.168.065.5",
       "invalid value '192.168.065.5' for ip.src at column 11: expected an IPv4 address "
       "(a.b.c.d or a.b.c.d/bits)"},
      {"ip.src == 192.168.65.5/33",
       "invalid value '192.168.65.5/33' for ip.src at column 11: expected an IPv4 address "
       "(a.b.c.d or a.b.c.d/bits)"},
      {"infiniband.grh.sgid == fe80:::1",
       "invalid value 'fe80:::1' for infiniband.grh.sgid at column 24: expected an IPv6 address "
       "(optionally /bits)"},
      {"infiniband.grh.sgid == fe80::/129",
       "invalid value 'fe80::/129' for infiniband.grh.sgid at column 24: expected an IPv6 "
       "address (optionally /bits)"},
      {"infiniband.bth == 0a2",
       "invalid value '0a2' for infiniband.bth at column 19: expected bytes (aa:bb:cc, "
       "aa-bb-cc, aa.bb.cc, aabbcc or a \"string\")"},
      {"infiniband.bth == 0a:2g",
       "invalid value '0a:2g' for infiniband.bth at column 19: expected bytes (aa:bb:cc, "
       "aa-bb-cc, aa.bb.cc, aabbcc or a \"string\")"},
      {"infiniband.bth == 0a::20",
       "invalid value '0a::20' for infiniband.bth at column 19: expected bytes (aa:bb:cc, "
       "aa-bb-cc, aa.bb.cc, aabbcc or a \"string\")"},
      {"infiniband.bth == 0a:20-ff",
       "invalid value '0a:20-ff' for infiniband.bth at column 19: expected bytes (aa:bb:cc, "
       "aa-bb-cc, aa.bb.cc, aabbcc or a \"string\")"},
      {"infiniband.bth contains \"a\\qb\"",
       "invalid value '\"a\\qb\"' for infiniband.bth at column 25: bad escape sequence at "
       "column 27"},
      {"infiniband.bth contains \"abc", "unterminated string at column 25"},
      {"frame.time_relative < 0.0000000001",
       "invalid value '0.0000000001' for frame.time_relative at column 23: expected a time in "
       "decimal seconds (at most 9 decimals)"},
      {"frame.time_relative < 1e-3",
       "invalid value '1e-3' for frame.time_relative at column 23: expected a time in decimal "
       "seconds (at most 9 decimals)"},
      {"frame.time_epoch == 1.",
       "invalid value '1.' for frame.time_epoch at column 21: expected a time in decimal "
       "seconds (at most 9 decimals)"},
  };
  for (const auto& c : cases) EXPECT_EQ(error_of(c.expr), c.message) << "'" << c.expr << "'";
  // Without an error string.
  EXPECT_FALSE(Filter::compile("ip.src ==", nullptr));
}

TEST(IbsniffFilter, NestingLimitAndLongChains) {
  const Packet& p = rc_packet();
  std::string deep = std::string(150, '(') + "ip.src" + std::string(150, ')');
  EXPECT_TRUE(match(deep, p));
  deep = std::string(1000, '(') + "ip.src" + std::string(1000, ')');
  EXPECT_EQ(error_of(deep), "expression nested too deeply at column 201");
  EXPECT_EQ(error_of(std::string(1000, '!') + "ip.src"),
            "expression nested too deeply at column 201");
  // Long || / && chains are walked in a loop, not by recursion.
  std::string chain = "infiniband.bth.opcode == 0";
  for (int i = 1; i < 20000; ++i) chain += " || infiniband.bth.opcode == " + std::to_string(i % 9);
  chain += " || infiniband.bth.opcode == 10";
  EXPECT_TRUE(match(chain, p));
  std::string all = "ip.src";
  for (int i = 0; i < 20000; ++i) all += " && infiniband.bth.opcode == 10";
  EXPECT_TRUE(match(all, p));
}

TEST(IbsniffFilter, MatchingDoesNotAllocate) {
  if (!IBSNIFF_COUNT_ALLOCATIONS) GTEST_SKIP() << "allocations are not counted under ASan";
  const Packet& p = rc_packet();
  TimeRef ref;
  const auto f = compile(
      "(infiniband.bth.opcode in {4, 10..12} && ip.src == 192.168.65.0/24 && infiniband.bth "
      "contains 8c:84 && infiniband.grh.sgid == fe80::/64) || frame.time_relative > 1 || "
      "infiniband.lrh.dlid != 4 || !infiniband.aeth");
  ASSERT_TRUE(f);
  const std::size_t before = g_allocations.load();
  bool all = true;
  for (int i = 0; i < 1000; ++i) all = f->matches(p, ref) && all;
  EXPECT_EQ(g_allocations.load(), before);
  EXPECT_TRUE(all);
}

// The compiled filter owns its values: copies and moves outlive the expression text.
TEST(IbsniffFilter, FilterOwnsItsValues) {
  const Packet& p = rc_packet();
  std::optional<Filter> kept;
  {
    std::string expr = "infiniband.bth contains \"\\x8c\\x84\" && infiniband.grh.sgid == fe80::/64";
    kept = compile(expr);
    expr.assign(expr.size(), 'x');
  }
  ASSERT_TRUE(kept);
  const Filter copy = *kept;
  kept.reset();
  EXPECT_TRUE(copy.matches(p));
}

// ---- agreement with tshark ----

// The frame numbers tshark printed, one a line; other lines (its "Running as user root"
// warning) are skipped.
std::vector<std::uint64_t> numbers(const std::string& text) {
  std::vector<std::uint64_t> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty() && line.find_first_not_of("0123456789") == std::string::npos)
      out.push_back(std::stoull(line));
  return out;
}

std::vector<std::uint64_t> ibsniff_frames(const fs::path& file, const Filter& f) {
  std::vector<std::uint64_t> out;
  std::string err;
  auto r = Reader::open(file.string(), &err);
  EXPECT_TRUE(r) << err;
  if (!r) return out;
  Packet p;
  Session session;
  TimeRef ref;
  while (r->next(p, &err)) {
    session.process(p);
    ref.observe(p);
    if (f.matches(p, ref)) out.push_back(p.number);
  }
  EXPECT_TRUE(err.empty()) << err;
  return out;
}

// Filters on fields both tools decode the same way (the field comparison of captures_test.cpp).
const char* const kAgreementFilters[] = {
    "infiniband.bth.opcode == 4",
    "infiniband.bth.opcode != 17",
    "infiniband.bth.psn > 100 && infiniband.bth.se",
    "!infiniband.aeth",
    "infiniband.reth.dmalen >= 1024 || infiniband.bth.opcode in {12, 16}",
    "ip.src == 192.168.65.5",
    "ip.dst == 192.168.2.0/24 and not infiniband.bth.a == 1",
    "infiniband.bth.opcode in {0..5, 13..15} && frame.len > 100",
    "infiniband.aeth.syndrome.credit_count <= 5 || infiniband.aeth.syndrome ne 31",
    "infiniband.lrh.dlid in {1..4} and infiniband.bth.destqp == 0x000001",
    "infiniband.grh.dgid == ff12:401b::/32 || infiniband.grh.sgid == fe80::2:c902:24:f636",
    "infiniband.mad.mgmtclass == 0x07 && infiniband.mad.attributeid == 0x0010",
    "infiniband.bth contains 80:00 && !(infiniband.bth.psn < 60)",
    "frame.time_relative >= 0.005 && frame.time_relative < 1",
    "infiniband.deth.q_key == 0x80010000 or infiniband.bth.p_key != 65535",
    "infiniband.reserved === 00 && infiniband.bth.opcode <= 0x11",
    "infiniband.reserved !== 00",
    "infiniband.reserved != 0000",  // all_ne: false on the MAD frames, whose reserved include 0000
    "udp.srcport < 4791 and udp.dstport == 4791",
    "infiniband && !(ip && udp)",
    "ip and not udp",
    "(infiniband.bth.opcode == 0 || infiniband.bth.opcode == 3) && infiniband.bth.psn >= 10",
};

TEST(IbsniffFilterTshark, PublicCapturesAgreeWithTshark) {
  if (!test::have_tshark()) GTEST_SKIP() << "tshark not installed: filter agreement skipped";
  const fs::path dir = IBSNIFF_PUBLIC_CAPTURES;
  if (!fs::is_directory(dir)) GTEST_SKIP() << "public captures not found at " << dir;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".pcap") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  ASSERT_FALSE(files.empty());
  std::size_t matched = 0;
  for (const char* expr : kAgreementFilters) {
    SCOPED_TRACE(expr);
    const auto f = compile(expr);
    if (!f) continue;
    std::size_t any = 0;
    for (const auto& file : files) {
      SCOPED_TRACE(file.filename().string());
      // --disable-protocol tftp: tshark then decodes the RoCEv2 frames it would otherwise take
      // for TFTP (capture-formats.md §5 item 2) as ibsniff does.
      int st = 0;
      const std::string out =
          test::run("tshark -n -r " + test::shell_quote(file.string()) + test::kDisabledHeuristics +
                        " --disable-protocol tftp -Y " + test::shell_quote(expr) +
                        " -T fields -e frame.number 2>&1",
                    &st);
      ASSERT_EQ(st, 0) << out;
      const auto theirs = numbers(out);
      EXPECT_EQ(ibsniff_frames(file, *f), theirs);
      any += theirs.size();
    }
    EXPECT_GT(any, 0U) << "no frame matches: the filter tests nothing";
    matched += any;
  }
  EXPECT_GT(matched, 0U);
}

}  // namespace
}  // namespace ibsniff

// libsdp.conf rules and the logger of the preload shim (libsdp/src/preload/rules.hpp).
#include "preload/rules.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using sdp::preload::Config;
using sdp::preload::decide;
using sdp::preload::load_config;
using sdp::preload::LogConfig;
using sdp::preload::Logger;
using sdp::preload::parse_config;
using sdp::preload::Role;
using sdp::preload::Rule;
using sdp::preload::Use;

constexpr const char* kUseSyntax =
    "(expected: use sdp|tcp|both server|client PROGRAM ADDRESS[/PREFIX]:PORT[-PORT])";

// A socket address of either family, as the shim passes it.
struct Addr {
  sockaddr_storage ss{};
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&ss); }
};

Addr v4(const char* ip, std::uint16_t port) {
  Addr a;
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(port);
  EXPECT_EQ(inet_pton(AF_INET, ip, &in.sin_addr), 1) << ip;
  std::memcpy(&a.ss, &in, sizeof in);
  return a;
}

Addr v6(const char* ip, std::uint16_t port) {
  Addr a;
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  in6.sin6_port = htons(port);
  EXPECT_EQ(inet_pton(AF_INET6, ip, &in6.sin6_addr), 1) << ip;
  std::memcpy(&a.ss, &in6, sizeof in6);
  return a;
}

// Parses one file that must be valid.
Config ok(std::string_view text) {
  Config c = parse_config(text, "t.conf");
  EXPECT_TRUE(c.valid()) << (c.errors.empty() ? "" : c.errors.front());
  return c;
}

// The single error of a one-line (or more) file.
std::string error_of(std::string_view text) {
  const Config c = parse_config(text, "libsdp.conf");
  EXPECT_EQ(c.errors.size(), 1U) << text;
  return c.errors.empty() ? "" : c.errors.front();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A fresh directory for one test's files, removed at the end.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = testing::TempDir() + "preload_rules_XXXXXX";
    char* d = mkdtemp(tmpl.data());
    EXPECT_NE(d, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Captures what is written to fd 2 while it lives.
class StderrCapture {
 public:
  explicit StderrCapture(const std::string& path) : path_(path) {
    std::fflush(stderr);
    saved_ = dup(2);
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
  }
  ~StderrCapture() { restore(); }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;
  std::string text() {
    restore();
    return read_file(path_);
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    dup2(saved_, 2);
    close(saved_);
    saved_ = -1;
  }
  std::string path_;
  int saved_ = -1;
};

std::string pid_prefix() {
  return "libsdp[" + std::to_string(getpid()) + "]: ";
}

// --- grammar ---------------------------------------------------------------------------------

TEST(PreloadRulesParse, UseRuleFields) {
  const Config c = ok("use sdp server mysqld 192.168.10.7/24:3306\n");
  ASSERT_EQ(c.rules.size(), 1U);
  const Rule& r = c.rules[0];
  EXPECT_EQ(r.use, Use::Sdp);
  EXPECT_EQ(r.role, Role::Server);
  EXPECT_EQ(r.program_glob, "mysqld");
  EXPECT_EQ(r.family, AF_INET);
  EXPECT_EQ(r.addr[0], 192);
  EXPECT_EQ(r.addr[1], 168);
  EXPECT_EQ(r.addr[2], 10);
  EXPECT_EQ(r.addr[3], 7);
  EXPECT_EQ(r.prefix_bits, 24U);
  EXPECT_EQ(r.port_lo, 3306);
  EXPECT_EQ(r.port_hi, 3306);
  EXPECT_EQ(r.line, 1);
  EXPECT_FALSE(c.log.set);
}

TEST(PreloadRulesParse, TransportsAndRoleSynonyms) {
  const Config c =
      ok("use sdp server * *:*\n"
         "use tcp listen * *:*\n"
         "use both client * *:*\n"
         "use sdp connect * *:*\n");
  ASSERT_EQ(c.rules.size(), 4U);
  EXPECT_EQ(c.rules[0].use, Use::Sdp);
  EXPECT_EQ(c.rules[1].use, Use::Tcp);
  EXPECT_EQ(c.rules[2].use, Use::Both);
  EXPECT_EQ(c.rules[0].role, Role::Server);
  EXPECT_EQ(c.rules[1].role, Role::Server);
  EXPECT_EQ(c.rules[2].role, Role::Client);
  EXPECT_EQ(c.rules[3].role, Role::Client);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(c.rules[static_cast<std::size_t>(i)].line, i + 1);
}

TEST(PreloadRulesParse, AddressForms) {
  const Config c =
      ok("use both client * *:*\n"
         "use both client * 10.1.2.3:80\n"
         "use both client * [fe80::1]:5000\n"
         "use both client * [fe80::1]/10:5000-5010\n"
         "use both client * 0.0.0.0/0:1\n"
         "use both client * [::ffff:10.0.0.1]/120:*\n");
  ASSERT_EQ(c.rules.size(), 6U);
  EXPECT_EQ(c.rules[0].family, AF_UNSPEC);
  EXPECT_EQ(c.rules[0].port_lo, 0);
  EXPECT_EQ(c.rules[0].port_hi, 65535);
  EXPECT_EQ(c.rules[1].family, AF_INET);
  EXPECT_EQ(c.rules[1].prefix_bits, 32U);
  EXPECT_EQ(c.rules[2].family, AF_INET6);
  EXPECT_EQ(c.rules[2].prefix_bits, 128U);
  EXPECT_EQ(c.rules[2].addr[0], 0xfe);
  EXPECT_EQ(c.rules[2].addr[1], 0x80);
  EXPECT_EQ(c.rules[2].addr[15], 1);
  EXPECT_EQ(c.rules[3].prefix_bits, 10U);
  EXPECT_EQ(c.rules[3].port_lo, 5000);
  EXPECT_EQ(c.rules[3].port_hi, 5010);
  EXPECT_EQ(c.rules[4].prefix_bits, 0U);
  EXPECT_EQ(c.rules[4].port_lo, 1);
  EXPECT_EQ(c.rules[4].port_hi, 1);
  EXPECT_EQ(c.rules[5].family, AF_INET6);
  EXPECT_EQ(c.rules[5].addr[10], 0xff);
  EXPECT_EQ(c.rules[5].addr[12], 10);
  EXPECT_EQ(c.rules[5].prefix_bits, 120U);
}

TEST(PreloadRulesParse, PortForms) {
  const Config c =
      ok("use both client * *:0\n"
         "use both client * *:65535\n"
         "use both client * *:0-65535\n"
         "use both client * *:7-7\n");
  ASSERT_EQ(c.rules.size(), 4U);
  EXPECT_EQ(c.rules[0].port_lo, 0);
  EXPECT_EQ(c.rules[0].port_hi, 0);
  EXPECT_EQ(c.rules[1].port_lo, 65535);
  EXPECT_EQ(c.rules[2].port_lo, 0);
  EXPECT_EQ(c.rules[2].port_hi, 65535);
  EXPECT_EQ(c.rules[3].port_lo, 7);
  EXPECT_EQ(c.rules[3].port_hi, 7);
}

TEST(PreloadRulesParse, CommentsBlankLinesCrlfTabs) {
  const Config c =
      ok("# a comment\r\n"
         "\r\n"
         "   \t  \n"
         "\tuse\tsdp  server\t* *:1   # trailing comment\r\n"
         "    # indented comment\n"
         "use tcp client prog#x *:2\n"  // '#' inside a word is not a comment
         "log destination file /tmp/a#b.log\r\n"
         "use both client * *:3");  // no final newline
  ASSERT_EQ(c.rules.size(), 3U);
  EXPECT_EQ(c.rules[0].line, 4);
  EXPECT_EQ(c.rules[0].use, Use::Sdp);
  EXPECT_EQ(c.rules[0].port_lo, 1);
  EXPECT_EQ(c.rules[1].program_glob, "prog#x");
  EXPECT_EQ(c.rules[1].line, 6);
  EXPECT_EQ(c.log.path, "/tmp/a#b.log");
  EXPECT_EQ(c.rules[2].line, 8);
  EXPECT_EQ(c.rules[2].port_lo, 3);
}

TEST(PreloadRulesParse, EmptyFileIsValidWithNoRules) {
  const Config c = ok("");
  EXPECT_TRUE(c.rules.empty());
  EXPECT_FALSE(c.log.set);
  EXPECT_EQ(c.log.min_level, 9);
  EXPECT_EQ(c.log.dest, LogConfig::Dest::Stderr);
}

TEST(PreloadRulesParse, LogStatements) {
  Config c = ok("log min-level 4\n");
  EXPECT_TRUE(c.log.set);
  EXPECT_EQ(c.log.min_level, 4);
  EXPECT_EQ(c.log.dest, LogConfig::Dest::Stderr);

  c = ok("log destination syslog\n");
  EXPECT_EQ(c.log.dest, LogConfig::Dest::Syslog);
  EXPECT_EQ(c.log.min_level, 9);

  c = ok("log destination file /var/log/libsdp.log min-level 1\n");
  EXPECT_EQ(c.log.dest, LogConfig::Dest::File);
  EXPECT_EQ(c.log.path, "/var/log/libsdp.log");
  EXPECT_EQ(c.log.min_level, 1);

  c = ok("log min-level 7 destination stderr\n");  // either order
  EXPECT_EQ(c.log.dest, LogConfig::Dest::Stderr);
  EXPECT_EQ(c.log.min_level, 7);

  // A later statement changes only what it names.
  c = ok("log destination file /tmp/x.log min-level 3\nlog min-level 8\n");
  EXPECT_EQ(c.log.dest, LogConfig::Dest::File);
  EXPECT_EQ(c.log.path, "/tmp/x.log");
  EXPECT_EQ(c.log.min_level, 8);
  c = ok("log destination file /tmp/x.log min-level 3\nlog destination stderr\n");
  EXPECT_EQ(c.log.dest, LogConfig::Dest::Stderr);
  EXPECT_EQ(c.log.path, "");
  EXPECT_EQ(c.log.min_level, 3);
}

TEST(PreloadRulesParse, Names) {
  EXPECT_STREQ(sdp::preload::name(Use::Sdp), "sdp");
  EXPECT_STREQ(sdp::preload::name(Use::Tcp), "tcp");
  EXPECT_STREQ(sdp::preload::name(Use::Both), "both");
  EXPECT_STREQ(sdp::preload::name(Role::Server), "server");
  EXPECT_STREQ(sdp::preload::name(Role::Client), "client");
}

// --- errors ----------------------------------------------------------------------------------

TEST(PreloadRulesErrors, KeywordsAndStructure) {
  EXPECT_EQ(error_of("usee sdp server * *:*\n"),
            "libsdp.conf:1: unknown keyword 'usee' (expected use or log)");
  EXPECT_EQ(error_of("\n\nUSE sdp server * *:*\n"),
            "libsdp.conf:3: unknown keyword 'USE' (expected use or log)");
  EXPECT_EQ(error_of("use sdpx server * *:*\n"),
            "libsdp.conf:1: unknown transport 'sdpx' (expected sdp, tcp or both)");
  EXPECT_EQ(error_of("use SDP server * *:*\n"),
            "libsdp.conf:1: unknown transport 'SDP' (expected sdp, tcp or both)");
  EXPECT_EQ(error_of("use sdp accept * *:*\n"),
            "libsdp.conf:1: unknown role 'accept' (expected server, listen, client or connect)");
  EXPECT_EQ(error_of("use sdpx\n"),
            "libsdp.conf:1: unknown transport 'sdpx' (expected sdp, tcp or both)");
  EXPECT_EQ(error_of("use\n"), std::string("libsdp.conf:1: incomplete 'use' rule ") + kUseSyntax);
  EXPECT_EQ(error_of("use sdp server *\n"),
            std::string("libsdp.conf:1: incomplete 'use' rule ") + kUseSyntax);
  EXPECT_EQ(error_of("use sdp server * *:* extra\n"),
            std::string("libsdp.conf:1: unexpected 'extra' after the end of the 'use' rule ") +
                kUseSyntax);
  EXPECT_EQ(error_of("use sdp server * 10.0.0.1 :80\n"),
            "libsdp.conf:1: missing ':PORT' in '10.0.0.1' (expected ADDRESS[/PREFIX]:PORT[-PORT])");
}

TEST(PreloadRulesErrors, NulByte) {
  const std::string text("use sdp server * *:*\0\n", 22);
  EXPECT_EQ(error_of(text), "libsdp.conf:1: the line contains a NUL byte (is this a text file?)");
}

TEST(PreloadRulesErrors, Addresses) {
  EXPECT_EQ(error_of("use sdp client * 10.0.0.300:80\n"),
            "libsdp.conf:1: bad address '10.0.0.300'");
  EXPECT_EQ(error_of("use sdp client * 10.1:80\n"), "libsdp.conf:1: bad address '10.1'");
  EXPECT_EQ(error_of("use sdp client * host.example:80\n"),
            "libsdp.conf:1: bad address 'host.example'");
  EXPECT_EQ(error_of("use sdp client * :80\n"), "libsdp.conf:1: bad address ''");
  EXPECT_EQ(error_of("use sdp client * [fe80::zz]:80\n"),
            "libsdp.conf:1: bad IPv6 address 'fe80::zz'");
  EXPECT_EQ(error_of("use sdp client * [10.0.0.1]:80\n"),
            "libsdp.conf:1: bad IPv6 address '10.0.0.1'");
  EXPECT_EQ(error_of("use sdp client * [fe80::1:5000\n"),
            "libsdp.conf:1: bad address '[fe80::1:5000' (missing ']' after the IPv6 address)");
  EXPECT_EQ(error_of("use sdp client * [fe80::1]x:5\n"),
            "libsdp.conf:1: bad address '[fe80::1]x:5' (expected '/PREFIX' or ':PORT' after ']')");
  EXPECT_EQ(
      error_of("use sdp client * [fe80::1]\n"),
      "libsdp.conf:1: missing ':PORT' in '[fe80::1]' (expected ADDRESS[/PREFIX]:PORT[-PORT])");
  EXPECT_EQ(error_of("use sdp client * fe80::1:5000\n"),
            "libsdp.conf:1: bad address:port 'fe80::1:5000' (write an IPv6 address in brackets, "
            "e.g. [fe80::1]/64:5000)");
  EXPECT_EQ(error_of("use sdp client * */8:80\n"),
            "libsdp.conf:1: a prefix makes no sense on the address '*' (it matches any address)");
}

TEST(PreloadRulesErrors, Prefixes) {
  EXPECT_EQ(error_of("use sdp client * 10.0.0.0/40:80\n"),
            "libsdp.conf:1: prefix /40 is longer than 32 bits for an IPv4 address");
  EXPECT_EQ(error_of("use sdp client * [fe80::]/129:80\n"),
            "libsdp.conf:1: prefix /129 is longer than 128 bits for an IPv6 address");
  EXPECT_EQ(error_of("use sdp client * 10.0.0.0/x:80\n"),
            "libsdp.conf:1: bad prefix '/x' (expected /BITS)");
  EXPECT_EQ(error_of("use sdp client * 10.0.0.0/:80\n"),
            "libsdp.conf:1: bad prefix '/' (expected /BITS)");
  EXPECT_EQ(error_of("use sdp client * 10.0.0.0/1000:80\n"),
            "libsdp.conf:1: bad prefix '/1000' (expected /BITS)");
  EXPECT_EQ(error_of("use sdp client * [fe80::]/-1:80\n"),
            "libsdp.conf:1: bad prefix '/-1' (expected /BITS)");
}

TEST(PreloadRulesErrors, Ports) {
  EXPECT_EQ(error_of("use sdp client * *:70000\n"),
            "libsdp.conf:1: bad port '70000' (expected 0..65535, PORT-PORT or *)");
  EXPECT_EQ(error_of("use sdp client * *:\n"),
            "libsdp.conf:1: bad port '' (expected 0..65535, PORT-PORT or *)");
  EXPECT_EQ(error_of("use sdp client * *:http\n"),
            "libsdp.conf:1: bad port 'http' (expected 0..65535, PORT-PORT or *)");
  EXPECT_EQ(error_of("use sdp client * *:+80\n"),
            "libsdp.conf:1: bad port '+80' (expected 0..65535, PORT-PORT or *)");
  EXPECT_EQ(error_of("\n\n\n\nuse sdp client * *:9000-80\n"),
            "libsdp.conf:5: bad port range '9000-80' (the first port is above the last)");
  EXPECT_EQ(error_of("use sdp client * *:5000-\n"),
            "libsdp.conf:1: bad port range '5000-' (expected PORT-PORT, 0..65535)");
  EXPECT_EQ(error_of("use sdp client * *:1-70000\n"),
            "libsdp.conf:1: bad port range '1-70000' (expected PORT-PORT, 0..65535)");
  EXPECT_EQ(error_of("use sdp client * *:*-5\n"),
            "libsdp.conf:1: bad port range '*-5' (expected PORT-PORT, 0..65535)");
}

TEST(PreloadRulesErrors, Log) {
  EXPECT_EQ(error_of("log\n"),
            "libsdp.conf:1: 'log' needs 'destination stderr|syslog|file PATH' and/or "
            "'min-level 1..9'");
  EXPECT_EQ(error_of("log destination\n"),
            "libsdp.conf:1: missing destination after 'destination' (expected stderr, syslog "
            "or file PATH)");
  EXPECT_EQ(error_of("log destination console\n"),
            "libsdp.conf:1: unknown log destination 'console' (expected stderr, syslog or file)");
  EXPECT_EQ(error_of("log destination file\n"),
            "libsdp.conf:1: missing file name after 'destination file'");
  EXPECT_EQ(error_of("log destination file libsdp.log\n"),
            "libsdp.conf:1: log file 'libsdp.log' is not an absolute path");
  EXPECT_EQ(error_of("log min-level\n"),
            "libsdp.conf:1: missing level after 'min-level' (expected 1..9)");
  EXPECT_EQ(error_of("log min-level 12\n"), "libsdp.conf:1: min-level 12 out of range (1..9)");
  EXPECT_EQ(error_of("log min-level 0\n"), "libsdp.conf:1: min-level 0 out of range (1..9)");
  EXPECT_EQ(error_of("log min-level 99999999999999\n"),
            "libsdp.conf:1: min-level 99999999999999 out of range (1..9)");
  EXPECT_EQ(error_of("log min-level high\n"),
            "libsdp.conf:1: bad min-level 'high' (expected a number 1..9)");
  EXPECT_EQ(error_of("log min-level -1\n"),
            "libsdp.conf:1: bad min-level '-1' (expected a number 1..9)");
  EXPECT_EQ(error_of("log level 3\n"),
            "libsdp.conf:1: unknown log option 'level' (expected destination or min-level)");
  EXPECT_EQ(error_of("log min-level 3 destination\n"),
            "libsdp.conf:1: missing destination after 'destination' (expected stderr, syslog "
            "or file PATH)");
}

TEST(PreloadRulesErrors, EveryBadLineIsReportedAndGoodLinesAreKept) {
  const Config c = parse_config(
      "use sdp server * *:1\n"
      "use sdpx server * *:*\n"
      "log min-level 4\n"
      "log min-level 12 destination syslog\n"  // a bad statement changes nothing
      "use tcp client * *:9000-80\n"
      "use both client * *:2\n",
      "/etc/libsdp.conf");
  EXPECT_FALSE(c.valid());
  ASSERT_EQ(c.errors.size(), 3U);
  EXPECT_EQ(c.errors[0],
            "/etc/libsdp.conf:2: unknown transport 'sdpx' (expected sdp, tcp or both)");
  EXPECT_EQ(c.errors[1], "/etc/libsdp.conf:4: min-level 12 out of range (1..9)");
  EXPECT_EQ(c.errors[2],
            "/etc/libsdp.conf:5: bad port range '9000-80' (the first port is above the last)");
  ASSERT_EQ(c.rules.size(), 2U);
  EXPECT_EQ(c.rules[0].line, 1);
  EXPECT_EQ(c.rules[1].line, 6);
  // The valid log statement holds, so the shim can report the errors where it was told to.
  EXPECT_TRUE(c.log.set);
  EXPECT_EQ(c.log.min_level, 4);
  EXPECT_EQ(c.log.dest, LogConfig::Dest::Stderr);
}

TEST(PreloadRulesErrors, TooManyErrorsStopsAfterTwenty) {
  std::string text;
  for (int i = 0; i < 50; ++i) text += "bogus\n";
  const Config c = parse_config(text, "f");
  ASSERT_EQ(c.errors.size(), 21U);
  EXPECT_EQ(c.errors[19], "f:20: unknown keyword 'bogus' (expected use or log)");
  EXPECT_EQ(c.errors[20], "f: too many errors; the rest is not checked");

  std::string twenty;
  for (int i = 0; i < 20; ++i) twenty += "bogus\n";
  EXPECT_EQ(parse_config(twenty, "f").errors.size(), 20U);  // exactly 20: no extra line
}

// --- decisions -------------------------------------------------------------------------------

TEST(PreloadRulesDecide, NoRulesOrNoMatchGivesBoth) {
  int line = -1;
  EXPECT_EQ(decide(ok(""), Role::Client, "curl", v4("10.0.0.1", 80).get(), &line), Use::Both);
  EXPECT_EQ(line, 0);
  const Config c = ok("use sdp client curl *:*\n");
  line = -1;
  EXPECT_EQ(decide(c, Role::Client, "wget", v4("10.0.0.1", 80).get(), &line), Use::Both);
  EXPECT_EQ(line, 0);
  EXPECT_EQ(decide(c, Role::Server, "curl", v4("10.0.0.1", 80).get(), &line), Use::Both);
  EXPECT_EQ(decide(c, Role::Client, "curl", v4("10.0.0.1", 80).get(), &line), Use::Sdp);
  EXPECT_EQ(line, 1);
  EXPECT_EQ(decide(c, Role::Client, "curl", v4("10.0.0.1", 80).get()), Use::Sdp);  // no out
}

TEST(PreloadRulesDecide, FirstMatchWins) {
  const Config c =
      ok("# header\n"
         "use tcp client * *:22\n"
         "use sdp client * 10.0.0.0/8:*\n"
         "use both client * *:*\n"
         "use sdp client * *:22\n");
  int line = 0;
  EXPECT_EQ(decide(c, Role::Client, "ssh", v4("10.0.0.5", 22).get(), &line), Use::Tcp);
  EXPECT_EQ(line, 2);
  EXPECT_EQ(decide(c, Role::Client, "app", v4("10.0.0.5", 80).get(), &line), Use::Sdp);
  EXPECT_EQ(line, 3);
  EXPECT_EQ(decide(c, Role::Client, "app", v4("11.0.0.5", 80).get(), &line), Use::Both);
  EXPECT_EQ(line, 4);
}

TEST(PreloadRulesDecide, RolesAndSynonyms) {
  const Config c =
      ok("use sdp listen * *:5000\n"
         "use tcp connect * *:5000\n");
  int line = 0;
  EXPECT_EQ(decide(c, Role::Server, "p", v4("0.0.0.0", 5000).get(), &line), Use::Sdp);
  EXPECT_EQ(line, 1);
  EXPECT_EQ(decide(c, Role::Client, "p", v4("10.0.0.1", 5000).get(), &line), Use::Tcp);
  EXPECT_EQ(line, 2);
}

TEST(PreloadRulesDecide, ProgramGlobs) {
  const Config c =
      ok("use sdp client bench* *:*\n"
         "use tcp client ?sh *:*\n"
         "use sdp server [mp]ysqld *:*\n"
         "use tcp client exact *:*\n");
  const Addr a = v4("10.0.0.1", 1);
  EXPECT_EQ(decide(c, Role::Client, "bench", a.get()), Use::Sdp);
  EXPECT_EQ(decide(c, Role::Client, "benchmark-x", a.get()), Use::Sdp);
  EXPECT_EQ(decide(c, Role::Client, "xbench", a.get()), Use::Both);
  EXPECT_EQ(decide(c, Role::Client, "ssh", a.get()), Use::Tcp);
  EXPECT_EQ(decide(c, Role::Client, "sh", a.get()), Use::Both);
  EXPECT_EQ(decide(c, Role::Client, "sshd", a.get()), Use::Both);
  EXPECT_EQ(decide(c, Role::Server, "mysqld", a.get()), Use::Sdp);
  EXPECT_EQ(decide(c, Role::Server, "pysqld", a.get()), Use::Sdp);
  EXPECT_EQ(decide(c, Role::Server, "nysqld", a.get()), Use::Both);
  EXPECT_EQ(decide(c, Role::Client, "exact", a.get()), Use::Tcp);
  EXPECT_EQ(decide(c, Role::Client, "Exact", a.get()), Use::Both);  // case-sensitive
  // A long name (past the internal buffer) still matches.
  EXPECT_EQ(decide(c, Role::Client, "bench" + std::string(400, 'x'), a.get()), Use::Sdp);
  EXPECT_EQ(decide(c, Role::Client, std::string(400, 'x'), a.get()), Use::Both);
  // A name that is a prefix of the string_view's storage is matched by its length only.
  const std::string_view part = std::string_view("exactly").substr(0, 5);
  EXPECT_EQ(decide(c, Role::Client, part, a.get()), Use::Tcp);
}

TEST(PreloadRulesDecide, Ipv4Prefixes) {
  const Config c =
      ok("use sdp client * 192.168.10.0/24:*\n"
         "use tcp client * 10.1.2.3:*\n"
         "use sdp server * 172.16.0.0/12:*\n"
         "use tcp server * 1.2.3.255/31:*\n"  // host bits beyond the prefix are ignored
         "use sdp server * 9.9.9.9/0:*\n");
  EXPECT_EQ(decide(c, Role::Client, "p", v4("192.168.10.0", 1).get()), Use::Sdp);
  EXPECT_EQ(decide(c, Role::Client, "p", v4("192.168.10.255", 1).get()), Use::Sdp);
  EXPECT_EQ(decide(c, Role::Client, "p", v4("192.168.11.1", 1).get()), Use::Both);
  EXPECT_EQ(decide(c, Role::Client, "p", v4("10.1.2.3", 1).get()), Use::Tcp);
  EXPECT_EQ(decide(c, Role::Client, "p", v4("10.1.2.4", 1).get()), Use::Both);
  EXPECT_EQ(decide(c, Role::Server, "p", v4("172.31.255.255", 1).get()), Use::Sdp);
  EXPECT_EQ(decide(c, Role::Server, "p", v4("172.32.0.0", 1).get()), Use::Sdp);  // via /0
  EXPECT_EQ(decide(c, Role::Server, "p", v4("1.2.3.254", 1).get()), Use::Tcp);
  EXPECT_EQ(decide(c, Role::Server, "p", v4("1.2.3.253", 1).get()), Use::Sdp);  // via /0
  // An IPv4 rule does not match a (non-mapped) IPv6 peer; /0 IPv4 neither.
  EXPECT_EQ(decide(c, Role::Server, "p", v6("2001:db8::1", 1).get()), Use::Both);
}

TEST(PreloadRulesDecide, Ipv6PrefixesAndMappedAddresses) {
  const Config c =
      ok("use sdp client * [fe80::]/10:*\n"
         "use tcp client * [2001:db8::1]:*\n"
         "use sdp client * 10.0.0.0/8:*\n"
         "use tcp client * [::ffff:192.168.0.0]/112:*\n"
         "use sdp server * [::]/0:*\n");
  EXPECT_EQ(decide(c, Role::Client, "p", v6("fe80::1", 1).get()), Use::Sdp);
  EXPECT_EQ(decide(c, Role::Client, "p", v6("febf:ffff::1", 1).get()), Use::Sdp);
  EXPECT_EQ(decide(c, Role::Client, "p", v6("fec0::1", 1).get()), Use::Both);
  EXPECT_EQ(decide(c, Role::Client, "p", v6("2001:db8::1", 1).get()), Use::Tcp);
  EXPECT_EQ(decide(c, Role::Client, "p", v6("2001:db8::2", 1).get()), Use::Both);
  // An IPv4-mapped IPv6 peer matches IPv4 rules...
  EXPECT_EQ(decide(c, Role::Client, "p", v6("::ffff:10.9.8.7", 1).get()), Use::Sdp);
  EXPECT_EQ(decide(c, Role::Client, "p", v6("::ffff:11.9.8.7", 1).get()), Use::Both);
  // ... and an IPv4 peer matches IPv6 rules written for the mapped form.
  EXPECT_EQ(decide(c, Role::Client, "p", v4("192.168.3.4", 1).get()), Use::Tcp);
  EXPECT_EQ(decide(c, Role::Client, "p", v6("::ffff:192.168.3.4", 1).get()), Use::Tcp);
  // Not mapped: ::a.b.c.d (compatible) and 64:ff9b::/96 do not match IPv4 rules.
  EXPECT_EQ(decide(c, Role::Client, "p", v6("::10.9.8.7", 1).get()), Use::Both);
  EXPECT_EQ(decide(c, Role::Client, "p", v6("64:ff9b::10.9.8.7", 1).get()), Use::Both);
  // [::]/0 is every address, IPv4 ones (as mapped) included.
  EXPECT_EQ(decide(c, Role::Server, "p", v6("2001:db8::9", 1).get()), Use::Sdp);
  EXPECT_EQ(decide(c, Role::Server, "p", v4("10.0.0.1", 1).get()), Use::Sdp);
}

TEST(PreloadRulesDecide, PortRangesAndStar) {
  const Config c =
      ok("use sdp client * *:5000-5999\n"
         "use tcp client * 10.0.0.1:80\n"
         "use both client * 10.0.0.1:*\n"
         "use sdp server * [::1]:0\n");
  int line = 0;
  EXPECT_EQ(decide(c, Role::Client, "p", v4("1.1.1.1", 4999).get(), &line), Use::Both);
  EXPECT_EQ(line, 0);
  EXPECT_EQ(decide(c, Role::Client, "p", v4("1.1.1.1", 5000).get(), &line), Use::Sdp);
  EXPECT_EQ(decide(c, Role::Client, "p", v6("::1", 5999).get(), &line), Use::Sdp);
  EXPECT_EQ(decide(c, Role::Client, "p", v4("1.1.1.1", 6000).get(), &line), Use::Both);
  EXPECT_EQ(decide(c, Role::Client, "p", v4("10.0.0.1", 80).get(), &line), Use::Tcp);
  EXPECT_EQ(line, 2);
  EXPECT_EQ(decide(c, Role::Client, "p", v4("10.0.0.1", 81).get(), &line), Use::Both);
  EXPECT_EQ(line, 3);
  EXPECT_EQ(decide(c, Role::Client, "p", v4("10.0.0.1", 65535).get(), &line), Use::Both);
  EXPECT_EQ(line, 3);
  EXPECT_EQ(decide(c, Role::Server, "p", v6("::1", 0).get(), &line), Use::Sdp);
  EXPECT_EQ(line, 4);
}

TEST(PreloadRulesDecide, UnknownAddressMatchesOnlyStarStar) {
  const Config c =
      ok("use sdp client * 10.0.0.1:*\n"
         "use tcp client * *:80\n"
         "use sdp client * *:*\n");
  int line = 0;
  EXPECT_EQ(decide(c, Role::Client, "p", nullptr, &line), Use::Sdp);
  EXPECT_EQ(line, 3);
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  EXPECT_EQ(decide(c, Role::Client, "p", reinterpret_cast<const sockaddr*>(&un), &line), Use::Sdp);
  EXPECT_EQ(line, 3);
  EXPECT_EQ(decide(ok("use sdp client * *:80\n"), Role::Client, "p", nullptr), Use::Both);
}

TEST(PreloadRulesDecide, InvalidConfigGivesTcpForEverySocket) {
  const Config c = parse_config(
      "use sdp client * *:*\n"
      "use sdp server * *:*\n"
      "use bogus client * *:*\n",
      "x");
  ASSERT_FALSE(c.valid());
  ASSERT_EQ(c.rules.size(), 2U);  // the good rules were read, but are not used
  int line = -1;
  EXPECT_EQ(decide(c, Role::Client, "p", v4("10.0.0.1", 1).get(), &line), Use::Tcp);
  EXPECT_EQ(line, 0);
  EXPECT_EQ(decide(c, Role::Server, "p", v6("::1", 1).get(), &line), Use::Tcp);
  EXPECT_EQ(decide(c, Role::Server, "p", nullptr, &line), Use::Tcp);
  // rule_matches() itself ignores validity.
  EXPECT_TRUE(sdp::preload::rule_matches(c.rules[0], Role::Client, "p", nullptr));
}

// --- loading ---------------------------------------------------------------------------------

TEST(PreloadRulesLoad, MissingDefaultIsNotAnError) {
  TempDir dir;
  const Config c = load_config(nullptr, dir.file("absent.conf"));
  EXPECT_TRUE(c.valid());
  EXPECT_TRUE(c.rules.empty());
  EXPECT_EQ(decide(c, Role::Client, "p", v4("10.0.0.1", 1).get()), Use::Both);
  // An empty LIBSDP_CONFIG_FILE counts as unset.
  EXPECT_TRUE(load_config("", dir.file("absent.conf")).valid());
  // A default under a missing directory is missing too.
  EXPECT_TRUE(load_config(nullptr, dir.file("no/such/dir/libsdp.conf")).valid());
}

TEST(PreloadRulesLoad, MissingExplicitFileIsAnError) {
  TempDir dir;
  const std::string path = dir.file("absent.conf");
  errno = 1234;
  const Config c = load_config(path.c_str(), SDP_EXAMPLE_CONF);
  EXPECT_EQ(errno, 1234);  // errno is the program's: left alone
  ASSERT_EQ(c.errors.size(), 1U);
  EXPECT_EQ(c.errors[0],
            path + ": cannot open the rules file (LIBSDP_CONFIG_FILE): No such file or directory");
  EXPECT_TRUE(c.rules.empty());
  EXPECT_EQ(decide(c, Role::Client, "p", v4("10.0.0.1", 1).get()), Use::Tcp);
}

TEST(PreloadRulesLoad, ExplicitFileWinsOverDefaultAndNamesItsErrors) {
  TempDir dir;
  const std::string path = dir.file("mine.conf");
  std::ofstream(path) << "use tcp client * *:*\nuse sdpx server * *:*\n";
  const Config c = load_config(path.c_str(), SDP_EXAMPLE_CONF);
  ASSERT_EQ(c.errors.size(), 1U);
  EXPECT_EQ(c.errors[0], path + ":2: unknown transport 'sdpx' (expected sdp, tcp or both)");
  ASSERT_EQ(c.rules.size(), 1U);
  EXPECT_EQ(c.rules[0].use, Use::Tcp);

  std::ofstream(path) << "use tcp client * *:*\n";
  const Config good = load_config(path.c_str(), dir.file("absent.conf"));
  EXPECT_TRUE(good.valid());
  EXPECT_EQ(decide(good, Role::Client, "p", v4("10.0.0.1", 1).get()), Use::Tcp);
  // As the default file, read the same way.
  const Config dflt = load_config(nullptr, path);
  EXPECT_TRUE(dflt.valid());
  EXPECT_EQ(dflt.rules.size(), 1U);
}

TEST(PreloadRulesLoad, UnreadableFilesAreErrors) {
  TempDir dir;
  const std::string d = dir.file("subdir");
  ASSERT_EQ(mkdir(d.c_str(), 0700), 0);
  Config c = load_config(nullptr, d);  // a directory as the default: exists, so an error
  ASSERT_EQ(c.errors.size(), 1U);
  EXPECT_EQ(c.errors[0], d + ": cannot read the rules file: Is a directory");

  const std::string big = dir.file("big.conf");
  {
    std::ofstream out(big);
    const std::string comment = "# " + std::string(1000, 'x') + "\n";
    for (int i = 0; i < 1100; ++i) out << comment;
  }
  c = load_config(big.c_str(), "");
  ASSERT_EQ(c.errors.size(), 1U);
  EXPECT_EQ(c.errors[0], big + ": the rules file (LIBSDP_CONFIG_FILE) is larger than 1 MiB");
}

TEST(PreloadRulesLoad, ShippedExampleParsesWithTheDefaults) {
  const Config c = load_config(SDP_EXAMPLE_CONF, "");
  ASSERT_TRUE(c.valid()) << c.errors.front();
  ASSERT_EQ(c.rules.size(), 2U);
  EXPECT_EQ(c.rules[0].use, Use::Both);
  EXPECT_EQ(c.rules[0].role, Role::Server);
  EXPECT_EQ(c.rules[0].program_glob, "*");
  EXPECT_EQ(c.rules[0].family, AF_UNSPEC);
  EXPECT_EQ(c.rules[1].role, Role::Client);
  EXPECT_EQ(c.log.dest, LogConfig::Dest::Stderr);
  EXPECT_EQ(c.log.min_level, 9);

  // Its commented examples parse too, once uncommented.
  std::istringstream in(read_file(SDP_EXAMPLE_CONF));
  std::string line, examples;
  int count = 0;
  bool in_examples = false;
  while (std::getline(in, line)) {
    if (line.rfind("# Examples", 0) == 0) in_examples = true;
    if (!in_examples) continue;
    if (line.rfind("#   use ", 0) == 0 || line.rfind("#   log ", 0) == 0) {
      examples += line.substr(4) + "\n";
      ++count;
    }
  }
  EXPECT_GE(count, 6);
  const Config ex = parse_config(examples, "examples");
  EXPECT_TRUE(ex.valid()) << (ex.errors.empty() ? "" : ex.errors.front());
}

// --- the man page ----------------------------------------------------------------------------

std::string run(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  *status = pclose(p);
  return out;
}

TEST(PreloadRulesMan, RendersCleanlyAndItsExamplesParse) {
  int st = 0;
  if (run("command -v groff >/dev/null 2>&1", &st); st == 0) {
    const std::string warnings =
        run(std::string("groff -man -Tutf8 -ww -z ") + SDP_CONF_MAN + " 2>&1", &st);
    EXPECT_EQ(st, 0);
    EXPECT_EQ(warnings, "");
  }
  // The lines of the .EX blocks: rules and log statements must parse, error lines must be
  // what the parser says for the line they quote.
  std::istringstream in(read_file(SDP_CONF_MAN));
  std::string line, statements;
  bool in_example = false;
  int errors_checked = 0;
  const auto unescape = [](std::string s) {
    for (const auto& [from, to] : {std::pair<std::string, std::string>{"\\-", "-"},
                                   std::pair<std::string, std::string>{"\\(aq", "'"}}) {
      for (std::size_t p = s.find(from); p != std::string::npos; p = s.find(from, p))
        s.replace(p, from.size(), to);
    }
    return s;
  };
  while (std::getline(in, line)) {
    if (line == ".EX") in_example = true;
    if (line == ".EE") in_example = false;
    if (!in_example) continue;
    line = unescape(line);
    if (line.rfind("use ", 0) == 0 || line.rfind("log ", 0) == 0) statements += line + "\n";
    if (line.rfind("/etc/libsdp.conf:", 0) == 0) ++errors_checked;
  }
  const Config c = parse_config(statements, "man");
  EXPECT_TRUE(c.valid()) << (c.errors.empty() ? "" : c.errors.front());
  EXPECT_GE(c.rules.size(), 10U);
  EXPECT_EQ(errors_checked, 4);
}

// --- the logger ------------------------------------------------------------------------------

TEST(PreloadLogger, WritesLinesToAFileCreatedWith0600) {
  TempDir dir;
  const std::string path = dir.file("libsdp.log");
  const mode_t old = umask(022);
  {
    LogConfig lc;
    lc.dest = LogConfig::Dest::File;
    lc.path = path;
    lc.min_level = 1;
    Logger log(lc);
    EXPECT_EQ(log.destination(), LogConfig::Dest::File);
    log.log(7, "connect to %s:%d: %s (rule at line %d)", "10.0.0.1", 5000, "sdp", 4);
    log.log(1, "with a newline\n");  // not doubled
  }
  umask(old);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U);
  const std::string p = pid_prefix();
  EXPECT_EQ(read_file(path),
            p + "connect to 10.0.0.1:5000: sdp (rule at line 4)\n" + p + "with a newline\n");

  // Append mode: a second logger keeps what is there.
  {
    LogConfig lc;
    lc.dest = LogConfig::Dest::File;
    lc.path = path;
    Logger log(lc);
    log.log(9, "again");
  }
  EXPECT_EQ(read_file(path), p + "connect to 10.0.0.1:5000: sdp (rule at line 4)\n" + p +
                                 "with a newline\n" + p + "again\n");
}

TEST(PreloadLogger, LevelFiltering) {
  TempDir dir;
  const std::string path = dir.file("levels.log");
  LogConfig lc;
  lc.dest = LogConfig::Dest::File;
  lc.path = path;
  lc.min_level = 4;
  {
    Logger log(lc);
    EXPECT_FALSE(log.enabled(1));
    EXPECT_FALSE(log.enabled(3));
    EXPECT_TRUE(log.enabled(4));
    EXPECT_TRUE(log.enabled(9));
    for (int level = 1; level <= 9; ++level) log.log(level, "level %d", level);
  }
  const std::string p = pid_prefix();
  std::string want;
  for (int level = 4; level <= 9; ++level) want += p + "level " + std::to_string(level) + "\n";
  EXPECT_EQ(read_file(path), want);

  // The default: errors only.
  const Logger dflt(LogConfig{});
  EXPECT_FALSE(dflt.enabled(8));
  EXPECT_TRUE(dflt.enabled(9));
  EXPECT_EQ(dflt.destination(), LogConfig::Dest::Stderr);
}

TEST(PreloadLogger, LongMessagesAreCutAndErrnoIsKept) {
  TempDir dir;
  const std::string path = dir.file("long.log");
  LogConfig lc;
  lc.dest = LogConfig::Dest::File;
  lc.path = path;
  {
    Logger log(lc);
    errno = 4321;
    log.log(9, "%s", std::string(5000, 'a').c_str());
    EXPECT_EQ(errno, 4321);
  }
  const std::string text = read_file(path);
  EXPECT_EQ(text.size(), 1023U);  // 1 KiB buffer, less its NUL
  EXPECT_EQ(text.rfind(pid_prefix() + "aaa", 0), 0U);
  EXPECT_EQ(text.substr(text.size() - 5), "a...\n");
}

TEST(PreloadLogger, ConcurrentLinesDoNotInterleave) {
  TempDir dir;
  const std::string path = dir.file("threads.log");
  LogConfig lc;
  lc.dest = LogConfig::Dest::File;
  lc.path = path;
  lc.min_level = 1;
  constexpr int kThreads = 8, kLines = 500;
  {
    Logger log(lc);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&log, t] {
        const std::string body(100, static_cast<char>('a' + t));
        for (int i = 0; i < kLines; ++i) log.log(2, "t%d %s", t, body.c_str());
      });
    }
    for (auto& th : threads) th.join();
  }
  std::istringstream in(read_file(path));
  std::string line;
  int n = 0;
  const std::string p = pid_prefix();
  while (std::getline(in, line)) {
    ++n;
    ASSERT_EQ(line.rfind(p + "t", 0), 0U) << line;
    const int t = line[p.size() + 1] - '0';
    ASSERT_EQ(line,
              p + "t" + std::to_string(t) + " " + std::string(100, static_cast<char>('a' + t)));
  }
  EXPECT_EQ(n, kThreads * kLines);
}

TEST(PreloadLogger, SymlinkIsRefusedAndStderrIsUsed) {
  TempDir dir;
  const std::string target = dir.file("target.log"), link = dir.file("link.log");
  std::ofstream(target) << "precious\n";
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  StderrCapture cap(dir.file("stderr.txt"));
  {
    LogConfig lc;
    lc.dest = LogConfig::Dest::File;
    lc.path = link;
    Logger log(lc);
    EXPECT_EQ(log.destination(), LogConfig::Dest::Stderr);
    log.log(9, "to stderr");
  }
  const std::string p = pid_prefix();
  EXPECT_EQ(cap.text(), p + "cannot log to the file '" + link +
                            "': it is a symbolic link; logging to stderr\n" + p + "to stderr\n");
  EXPECT_EQ(read_file(target), "precious\n");
}

TEST(PreloadLogger, OtherUnsafeFilesAreRefused) {
  TempDir dir;
  StderrCapture cap(dir.file("stderr.txt"));
  std::string want;
  const std::string p = pid_prefix();
  const auto try_file = [&](const std::string& path) {
    LogConfig lc;
    lc.dest = LogConfig::Dest::File;
    lc.path = path;
    const Logger log(lc);
    EXPECT_EQ(log.destination(), LogConfig::Dest::Stderr) << path;
  };
  try_file("/dev/null");
  want += p + "cannot log to the file '/dev/null': it is not a regular file; logging to stderr\n";
  const std::string missing_dir = dir.file("none/x.log");
  try_file(missing_dir);
  want += p + "cannot log to the file '" + missing_dir +
          "': No such file or directory; logging to stderr\n";
  try_file("");
  want += p + "cannot log to the file '': no file name; logging to stderr\n";
  if (geteuid() == 0) {  // root can make a file that belongs to someone else
    const std::string other = dir.file("other.log");
    std::ofstream(other) << "";
    ASSERT_EQ(chown(other.c_str(), 65534, 65534), 0);
    try_file(other);
    want += p + "cannot log to the file '" + other +
            "': it is owned by another user; logging to stderr\n";
  }
  EXPECT_EQ(cap.text(), want);
}

TEST(PreloadLogger, StderrDestination) {
  TempDir dir;
  StderrCapture cap(dir.file("stderr.txt"));
  {
    LogConfig lc;
    lc.min_level = 8;
    Logger log(lc);
    log.log(7, "hidden");
    log.log(8, "warning %u", 3U);
  }
  EXPECT_EQ(cap.text(), pid_prefix() + "warning 3\n");
}

TEST(PreloadLogger, SyslogDestinationDoesNotWriteToStderr) {
  TempDir dir;
  StderrCapture cap(dir.file("stderr.txt"));
  {
    LogConfig lc;
    lc.dest = LogConfig::Dest::Syslog;
    lc.min_level = 9;
    Logger log(lc);
    EXPECT_EQ(log.destination(), LogConfig::Dest::Syslog);
    log.log(9, "preload_rules_test: syslog destination check");
  }
  EXPECT_EQ(cap.text(), "");
}

}  // namespace

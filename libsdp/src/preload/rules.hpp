// Rules and logging of the LD_PRELOAD shim (libsdp-preload.so): the libsdp.conf(5) grammar,
// the per-socket decision (SDP, TCP or both) and the "libsdp[PID]: ..." logger.
//
// Standalone: depends on nothing else in libsdp, only on libc, so that the shim can use it
// before anything else is set up. See libsdp/man/libsdp.conf.5 for the file format.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sdp::preload {

// What a matching rule asks for: SDP only, TCP only, or SDP with TCP fallback.
enum class Use { Sdp, Tcp, Both };
// Which side of a connection a rule applies to: listen() (server) or connect() (client).
enum class Role { Server, Client };

// "sdp", "tcp", "both" / "server", "client" (for log messages).
const char* name(Use use) noexcept;
const char* name(Role role) noexcept;

// One `use` statement.
struct Rule {
  Use use = Use::Both;
  Role role = Role::Server;
  std::string program_glob;  // fnmatch(3) pattern against the program's short name; "*" = any
  // Address: family AF_UNSPEC for `*` (any address, IPv4 or IPv6), else AF_INET (addr[0..3])
  // or AF_INET6 (addr[0..15]), network byte order; the first prefix_bits bits are compared
  // (32 / 128 when no /prefix was written). Host bits beyond the prefix are kept as written.
  int family = AF_UNSPEC;
  std::array<std::uint8_t, 16> addr{};
  unsigned prefix_bits = 0;
  std::uint16_t port_lo = 0, port_hi = 65535;  // inclusive; `*` = 0-65535
  int line = 0;                                // line of the rule in its file (1-based)
};

struct LogConfig {
  enum class Dest { Stderr, Syslog, File } dest = Dest::Stderr;
  std::string path;   // Dest::File only
  int min_level = 9;  // 1 (debug, most output) .. 9 (errors only)
  bool set = false;   // a `log` statement was seen
};

// Log levels of the `log ... min-level N` statement (a message is written when level >= N).
namespace level {
inline constexpr int kError = 9;
inline constexpr int kWarning = 8;
inline constexpr int kSummary = 7;   // connect/listen summary
inline constexpr int kPositive = 4;  // a rule matched (positive match)
inline constexpr int kNegative = 3;  // a rule did not match (negative match)
inline constexpr int kCalls = 2;     // calls and returns
inline constexpr int kDebug = 1;
}  // namespace level

struct Config {
  std::vector<Rule> rules;  // in file order; the first match wins
  LogConfig log;
  // "FILE:LINE: message" for a problem on a line, "FILE: message" for the file itself.
  std::vector<std::string> errors;
  bool valid() const { return errors.empty(); }
};

// Parses libsdp.conf text; file_name only labels the messages. Never throws: every problem
// becomes one entry of errors (at most one per line; the bad line is skipped, parsing goes on).
Config parse_config(std::string_view text, std::string_view file_name) noexcept;

// Reads and parses path_or_null (the value of LIBSDP_CONFIG_FILE; nullptr or "" = not set),
// else default_path. A missing default file is not an error (no rules: everything is `both`);
// a missing (or unreadable) explicitly named file is. Never throws.
Config load_config(const char* path_or_null, std::string_view default_path) noexcept;

// The transport for a socket of `program` (its short name: basename of argv[0] or
// /proc/self/comm) that listens on / connects to addr (AF_INET or AF_INET6; an IPv4-mapped
// IPv6 address ::ffff:a.b.c.d also matches IPv4 rules). The first matching rule wins; no
// match gives Use::Both. addr may be nullptr (or another family): then only rules with the
// address `*` and the port `*` match.
//
// An invalid config (!c.valid()) gives Use::Tcp for every socket: the program still runs,
// over TCP. *rule_line (when not null) receives the matching rule's line, or 0 when no rule
// matched or the config is invalid.
Use decide(const Config& c, Role role, std::string_view program, const sockaddr* addr,
           int* rule_line = nullptr) noexcept;

// Whether one rule matches (ignores Rule::use and the config's validity).
bool rule_matches(const Rule& r, Role role, std::string_view program,
                  const sockaddr* addr) noexcept;

// Writes "libsdp[PID]: message\n" lines, with one write(2) per line (thread-safe; lines of
// concurrent threads do not interleave), to stderr, syslog (openlog("libsdp", LOG_PID, LOG_USER),
// priority from the level) or a file opened in append mode. A message longer than 1 KiB is
// cut. A disabled level costs a comparison: nothing is formatted or allocated.
//
// The file is opened with O_NOFOLLOW and created with mode 0600; a symbolic link, something
// other than a regular file, or a file owned by another user is refused with a message on
// stderr, and the logger then writes to stderr.
class Logger {
 public:
  explicit Logger(const LogConfig& config) noexcept;
  ~Logger();
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  void log(int level, const char* fmt, ...) noexcept __attribute__((format(printf, 3, 4)));
  bool enabled(int level) const noexcept { return level >= min_level_; }
  // Where lines actually go (Stderr when the file was refused).
  LogConfig::Dest destination() const noexcept { return dest_; }

 private:
  LogConfig::Dest dest_;
  int min_level_;
  int fd_ = 2;  // Stderr: 2; File: the file (owned)
};

}  // namespace sdp::preload

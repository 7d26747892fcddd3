#include "preload/rules.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <optional>

namespace sdp::preload {

const char* name(Use use) noexcept {
  switch (use) {
    case Use::Sdp:
      return "sdp";
    case Use::Tcp:
      return "tcp";
    case Use::Both:
      return "both";
  }
  return "?";
}

const char* name(Role role) noexcept {
  return role == Role::Server ? "server" : "client";
}

namespace {

constexpr std::size_t kMaxErrors = 20;             // then parsing stops
constexpr std::size_t kMaxFileSize = 1024 * 1024;  // load_config refuses bigger files

// Keeps errno across a call (a preloaded library must not change the program's errno).
class ErrnoGuard {
 public:
  ErrnoGuard() noexcept : saved_(errno) {}
  ~ErrnoGuard() { errno = saved_; }
  ErrnoGuard(const ErrnoGuard&) = delete;
  ErrnoGuard& operator=(const ErrnoGuard&) = delete;

 private:
  int saved_;
};

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

// Whitespace-separated tokens of one line; a token that starts with '#' starts a comment.
std::vector<std::string_view> tokenize(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_space(line[i])) ++i;
    if (i == line.size() || line[i] == '#') break;
    const std::size_t start = i;
    while (i < line.size() && !is_space(line[i])) ++i;
    out.push_back(line.substr(start, i - start));
  }
  return out;
}

// A decimal number of at most max_digits digits (no sign, no spaces); nullopt otherwise.
std::optional<unsigned long> parse_number(std::string_view s, std::size_t max_digits) {
  if (s.empty() || s.size() > max_digits) return std::nullopt;
  unsigned long v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<unsigned long>(c - '0');
  }
  return v;
}

std::optional<std::uint16_t> parse_port(std::string_view s) {
  const auto v = parse_number(s, 5);
  if (!v || *v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(*v);
}

std::string quoted(std::string_view s) {
  std::string out = "'";
  out += s;
  out += '\'';
  return out;
}

constexpr std::string_view kUseSyntax =
    "use sdp|tcp|both server|client PROGRAM ADDRESS[/PREFIX]:PORT[-PORT]";

// Parses "ADDRESS[/PREFIX]:PORT[-PORT]" into r; returns the error message or "".
std::string parse_address_port(std::string_view tok, Rule& r) {
  std::string_view host, prefix, ports;
  bool has_prefix = false, bracketed = false;
  if (!tok.empty() && tok.front() == '[') {
    const std::size_t close = tok.find(']');
    if (close == std::string_view::npos)
      return "bad address " + quoted(tok) + " (missing ']' after the IPv6 address)";
    bracketed = true;
    host = tok.substr(1, close - 1);
    std::string_view rest = tok.substr(close + 1);
    const std::size_t colon = rest.find(':');
    if (colon == std::string_view::npos)
      return "missing ':PORT' in " + quoted(tok) + " (expected ADDRESS[/PREFIX]:PORT[-PORT])";
    ports = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
    if (!rest.empty()) {
      if (rest.front() != '/')
        return "bad address " + quoted(tok) + " (expected '/PREFIX' or ':PORT' after ']')";
      has_prefix = true;
      prefix = rest.substr(1);
    }
  } else {
    const std::size_t colon = tok.find(':');
    if (colon == std::string_view::npos)
      return "missing ':PORT' in " + quoted(tok) + " (expected ADDRESS[/PREFIX]:PORT[-PORT])";
    if (tok.find(':', colon + 1) != std::string_view::npos)
      return "bad address:port " + quoted(tok) +
             " (write an IPv6 address in brackets, e.g. [fe80::1]/64:5000)";
    host = tok.substr(0, colon);
    ports = tok.substr(colon + 1);
    const std::size_t slash = host.find('/');
    if (slash != std::string_view::npos) {
      has_prefix = true;
      prefix = host.substr(slash + 1);
      host = host.substr(0, slash);
    }
  }

  if (host == "*" && !bracketed) {
    if (has_prefix) return "a prefix makes no sense on the address '*' (it matches any address)";
    r.family = AF_UNSPEC;
    r.prefix_bits = 0;
  } else {
    const std::string text(host);
    const int family = bracketed ? AF_INET6 : AF_INET;
    if (text.empty() || inet_pton(family, text.c_str(), r.addr.data()) != 1)
      return std::string(bracketed ? "bad IPv6 address " : "bad address ") + quoted(host);
    r.family = family;
    const unsigned max_bits = family == AF_INET ? 32 : 128;
    r.prefix_bits = max_bits;
    if (has_prefix) {
      const auto bits = parse_number(prefix, 3);
      if (!bits) return "bad prefix " + quoted("/" + std::string(prefix)) + " (expected /BITS)";
      if (*bits > max_bits)
        return "prefix /" + std::string(prefix) + " is longer than " + std::to_string(max_bits) +
               " bits for an " + (family == AF_INET ? "IPv4" : "IPv6") + " address";
      r.prefix_bits = static_cast<unsigned>(*bits);
    }
  }

  if (ports == "*") {
    r.port_lo = 0;
    r.port_hi = 65535;
    return {};
  }
  const std::size_t dash = ports.find('-');
  if (dash == std::string_view::npos) {
    const auto p = parse_port(ports);
    if (!p) return "bad port " + quoted(ports) + " (expected 0..65535, PORT-PORT or *)";
    r.port_lo = r.port_hi = *p;
    return {};
  }
  const auto lo = parse_port(ports.substr(0, dash)), hi = parse_port(ports.substr(dash + 1));
  if (!lo || !hi) return "bad port range " + quoted(ports) + " (expected PORT-PORT, 0..65535)";
  if (*lo > *hi) return "bad port range " + quoted(ports) + " (the first port is above the last)";
  r.port_lo = *lo;
  r.port_hi = *hi;
  return {};
}

std::string parse_use(const std::vector<std::string_view>& t, int line, Config& c) {
  Rule r;
  r.line = line;
  if (t.size() > 1) {
    if (t[1] == "sdp") {
      r.use = Use::Sdp;
    } else if (t[1] == "tcp") {
      r.use = Use::Tcp;
    } else if (t[1] == "both") {
      r.use = Use::Both;
    } else {
      return "unknown transport " + quoted(t[1]) + " (expected sdp, tcp or both)";
    }
  }
  if (t.size() > 2) {
    if (t[2] == "server" || t[2] == "listen") {
      r.role = Role::Server;
    } else if (t[2] == "client" || t[2] == "connect") {
      r.role = Role::Client;
    } else {
      return "unknown role " + quoted(t[2]) + " (expected server, listen, client or connect)";
    }
  }
  if (t.size() < 5) return "incomplete 'use' rule (expected: " + std::string(kUseSyntax) + ")";
  r.program_glob = std::string(t[3]);
  if (std::string err = parse_address_port(t[4], r); !err.empty()) return err;
  if (t.size() > 5)
    return "unexpected " + quoted(t[5]) +
           " after the end of the 'use' rule (expected: " + std::string(kUseSyntax) + ")";
  c.rules.push_back(std::move(r));
  return {};
}

std::string parse_log(const std::vector<std::string_view>& t, Config& c) {
  LogConfig l = c.log;
  if (t.size() == 1)
    return "'log' needs 'destination stderr|syslog|file PATH' and/or 'min-level 1..9'";
  for (std::size_t i = 1; i < t.size(); ++i) {
    if (t[i] == "destination") {
      if (i + 1 == t.size())
        return "missing destination after 'destination' (expected stderr, syslog or file PATH)";
      const std::string_view d = t[++i];
      if (d == "stderr") {
        l.dest = LogConfig::Dest::Stderr;
        l.path.clear();
      } else if (d == "syslog") {
        l.dest = LogConfig::Dest::Syslog;
        l.path.clear();
      } else if (d == "file") {
        if (i + 1 == t.size()) return "missing file name after 'destination file'";
        const std::string_view p = t[++i];
        if (p.front() != '/') return "log file " + quoted(p) + " is not an absolute path";
        l.dest = LogConfig::Dest::File;
        l.path = std::string(p);
      } else {
        return "unknown log destination " + quoted(d) + " (expected stderr, syslog or file)";
      }
    } else if (t[i] == "min-level") {
      if (i + 1 == t.size()) return "missing level after 'min-level' (expected 1..9)";
      const std::string_view v = t[++i];
      const auto n = parse_number(v, 9);
      if (!n) {
        bool digits = !v.empty();
        for (const char ch : v) digits = digits && ch >= '0' && ch <= '9';
        if (!digits) return "bad min-level " + quoted(v) + " (expected a number 1..9)";
      }
      if (!n || *n < 1 || *n > 9) return "min-level " + std::string(v) + " out of range (1..9)";
      l.min_level = static_cast<int>(*n);
    } else {
      return "unknown log option " + quoted(t[i]) + " (expected destination or min-level)";
    }
  }
  l.set = true;
  c.log = std::move(l);
  return {};
}

Config parse_config_impl(std::string_view text, std::string_view file_name) {
  Config c;
  int line = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    ++line;
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view l = text.substr(pos, end - pos);
    pos = end + 1;

    std::string err;
    if (l.find('\0') != std::string_view::npos) {
      err = "the line contains a NUL byte (is this a text file?)";
    } else {
      const auto t = tokenize(l);
      if (t.empty()) continue;
      if (t[0] == "use") {
        err = parse_use(t, line, c);
      } else if (t[0] == "log") {
        err = parse_log(t, c);
      } else {
        err = "unknown keyword " + quoted(t[0]) + " (expected use or log)";
      }
    }
    if (err.empty()) continue;
    c.errors.push_back(std::string(file_name) + ":" + std::to_string(line) + ": " + err);
    if (c.errors.size() == kMaxErrors && pos < text.size()) {
      c.errors.push_back(std::string(file_name) + ": too many errors; the rest is not checked");
      break;
    }
  }
  return c;
}

Config out_of_memory() noexcept {
  Config c;
  try {
    c.errors.emplace_back("libsdp: out of memory reading the rules");
  } catch (...) {  // an empty-but-invalid config cannot be built; no rules is all we can do
  }
  return c;
}

// The address of a socket as both forms used in matching.
struct SockAddr {
  bool ip = false;  // AF_INET or AF_INET6
  bool has_v4 = false;
  std::array<std::uint8_t, 4> v4{};
  std::array<std::uint8_t, 16> v6{};  // IPv4 as ::ffff:a.b.c.d
  std::uint16_t port = 0;
};

SockAddr read_sockaddr(const sockaddr* a) {
  SockAddr s;
  if (a == nullptr) return s;
  if (a->sa_family == AF_INET) {
    sockaddr_in in{};
    std::memcpy(&in, a, sizeof in);
    s.ip = s.has_v4 = true;
    std::memcpy(s.v4.data(), &in.sin_addr, 4);
    s.v6[10] = s.v6[11] = 0xff;
    std::memcpy(s.v6.data() + 12, &in.sin_addr, 4);
    s.port = ntohs(in.sin_port);
  } else if (a->sa_family == AF_INET6) {
    sockaddr_in6 in6{};
    std::memcpy(&in6, a, sizeof in6);
    s.ip = true;
    std::memcpy(s.v6.data(), &in6.sin6_addr, 16);
    static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(s.v6.data(), kMapped, sizeof kMapped) == 0) {
      s.has_v4 = true;
      std::memcpy(s.v4.data(), s.v6.data() + 12, 4);
    }
    s.port = ntohs(in6.sin6_port);
  }
  return s;
}

bool prefix_equal(const std::uint8_t* a, const std::uint8_t* b, unsigned bits) {
  const unsigned full = bits / 8, rest = bits % 8;
  if (std::memcmp(a, b, full) != 0) return false;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xffU << (8 - rest));
  return (a[full] & mask) == (b[full] & mask);
}

}  // namespace

Config parse_config(std::string_view text, std::string_view file_name) noexcept {
  try {
    return parse_config_impl(text, file_name);
  } catch (...) {
    return out_of_memory();
  }
}

Config load_config(const char* path_or_null, std::string_view default_path) noexcept {
  const ErrnoGuard keep_errno;
  try {
    const bool named = path_or_null != nullptr && *path_or_null != '\0';
    const std::string path = named ? std::string(path_or_null) : std::string(default_path);
    const std::string how = named ? " (LIBSDP_CONFIG_FILE)" : "";
    const auto fail = [&](const std::string& what, int err) {
      Config c;
      c.errors.push_back(path + ": " + what + how + ": " + std::strerror(err));
      return c;
    };
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
      if (!named && (errno == ENOENT || errno == ENOTDIR)) return Config{};
      return fail("cannot open the rules file", errno);
    }
    std::string text;
    char buf[8192];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int err = errno;
        ::close(fd);
        return fail("cannot read the rules file", err);
      }
      if (n == 0) break;
      text.append(buf, static_cast<std::size_t>(n));
      if (text.size() > kMaxFileSize) {
        ::close(fd);
        Config c;
        c.errors.push_back(path + ": the rules file" + how + " is larger than 1 MiB");
        return c;
      }
    }
    ::close(fd);
    return parse_config_impl(text, path);
  } catch (...) {
    return out_of_memory();
  }
}

bool rule_matches(const Rule& r, Role role, std::string_view program,
                  const sockaddr* addr) noexcept {
  if (r.role != role) return false;

  const SockAddr s = read_sockaddr(addr);
  if (!s.ip) {
    if (r.family != AF_UNSPEC || r.port_lo != 0 || r.port_hi != 65535) return false;
  } else {
    if (s.port < r.port_lo || s.port > r.port_hi) return false;
    if (r.family == AF_INET) {
      if (!s.has_v4 || !prefix_equal(s.v4.data(), r.addr.data(), r.prefix_bits)) return false;
    } else if (r.family == AF_INET6) {
      if (!prefix_equal(s.v6.data(), r.addr.data(), r.prefix_bits)) return false;
    }
  }

  if (r.program_glob == "*") return true;
  char name_buf[256];
  if (program.size() < sizeof name_buf) {
    std::memcpy(name_buf, program.data(), program.size());
    name_buf[program.size()] = '\0';
    return ::fnmatch(r.program_glob.c_str(), name_buf, 0) == 0;
  }
  try {
    const std::string p(program);
    return ::fnmatch(r.program_glob.c_str(), p.c_str(), 0) == 0;
  } catch (...) {
    return false;
  }
}

Use decide(const Config& c, Role role, std::string_view program, const sockaddr* addr,
           int* rule_line) noexcept {
  if (rule_line != nullptr) *rule_line = 0;
  if (!c.valid()) return Use::Tcp;
  for (const Rule& r : c.rules) {
    if (rule_matches(r, role, program, addr)) {
      if (rule_line != nullptr) *rule_line = r.line;
      return r.use;
    }
  }
  return Use::Both;
}

// --- Logger ----------------------------------------------------------------------------------

namespace {

void write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

int syslog_priority(int level) {
  if (level >= level::kError) return LOG_ERR;
  if (level >= level::kWarning) return LOG_WARNING;
  if (level >= level::kSummary) return LOG_NOTICE;
  if (level >= level::kNegative) return LOG_INFO;
  return LOG_DEBUG;
}

// Opens the log file; returns the fd, or -1 with *why set.
int open_log_file(const std::string& path, const char** why) {
  if (path.empty()) {
    *why = "no file name";
    return -1;
  }
  const int fd =
      ::open(path.c_str(),
             O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0600);
  if (fd < 0) {
    *why = errno == ELOOP ? "it is a symbolic link" : std::strerror(errno);
    return -1;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *why = "it is not a regular file";
  } else if (st.st_uid != ::geteuid()) {
    *why = "it is owned by another user";
  } else {
    return fd;
  }
  ::close(fd);
  return -1;
}

}  // namespace

Logger::Logger(const LogConfig& config) noexcept
    : dest_(config.dest), min_level_(config.min_level) {
  const ErrnoGuard keep_errno;
  if (dest_ == LogConfig::Dest::File) {
    const char* why = "";
    fd_ = open_log_file(config.path, &why);
    if (fd_ < 0) {
      fd_ = 2;
      dest_ = LogConfig::Dest::Stderr;
      char buf[1024];
      const int n = std::snprintf(buf, sizeof buf,
                                  "libsdp[%d]: cannot log to the file '%s': %s; logging to "
                                  "stderr\n",
                                  static_cast<int>(::getpid()), config.path.c_str(), why);
      if (n > 0) write_all(2, buf, std::min(static_cast<std::size_t>(n), sizeof buf - 1));
    }
  } else if (dest_ == LogConfig::Dest::Syslog) {
    ::openlog("libsdp", LOG_PID, LOG_USER);
  }
}

Logger::~Logger() {
  if (dest_ == LogConfig::Dest::File && fd_ > 2) ::close(fd_);
}

void Logger::log(int level, const char* fmt, ...) noexcept {
  if (!enabled(level)) return;
  const ErrnoGuard keep_errno;
  char buf[1024];
  std::size_t len = 0;
  if (dest_ != LogConfig::Dest::Syslog) {
    const int n = std::snprintf(buf, sizeof buf, "libsdp[%d]: ", static_cast<int>(::getpid()));
    len = n > 0 ? static_cast<std::size_t>(n) : 0;
  }
  const std::size_t room = sizeof buf - 1 - len;  // keeps one byte for the '\n'
  va_list ap;
  va_start(ap, fmt);
  const int m = std::vsnprintf(buf + len, room, fmt, ap);
  va_end(ap);
  if (m > 0) {
    const auto wanted = static_cast<std::size_t>(m);
    if (wanted < room) {
      len += wanted;
    } else {  // cut: end with "..."
      len += room - 1;
      std::memcpy(buf + len - 3, "...", 3);
    }
  }
  while (len > 0 && buf[len - 1] == '\n') --len;
  if (dest_ == LogConfig::Dest::Syslog) {
    buf[len] = '\0';
    ::syslog(syslog_priority(level), "%s", buf);
    return;
  }
  buf[len++] = '\n';
  write_all(fd_, buf, len);
}

}  // namespace sdp::preload

// libafib addressing: sockaddr_ib built, parsed, printed and resolved (afib.h).
#include <arpa/inet.h>
#include <endian.h>
#include <netdb.h>
#include <rdma/rdma_cma.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "afib/afib.h"

namespace {

constexpr std::uint64_t kAllOnes = ~std::uint64_t{0};

// Writes the reason into err (when given), sets errno, returns -1.
int fail(char* err, std::size_t err_len, int e, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
int fail(char* err, std::size_t err_len, int e, const char* fmt, ...) {
  if (err != nullptr && err_len > 0) {
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
  }
  errno = e;
  return -1;
}

// An unsigned number: 0x-prefixed hexadecimal or decimal, the whole of `s`, at most `max`.
bool number(std::string_view s, std::uint64_t max, std::uint64_t* out) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
    base = 16;
  }
  if (s.empty() || s.front() == '+' || s.front() == '-') return false;
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc{} || end != s.data() + s.size() || v > max) return false;
  *out = v;
  return true;
}

struct SidName {
  const char* prefix;
  enum afib_sid_kind kind;
};
constexpr SidName kSidNames[] = {{"sdp:", AFIB_SID_SDP},
                                 {"ipcm:", AFIB_SID_IP_CM},
                                 {"tcp:", AFIB_SID_IP_CM},
                                 {"ib:", AFIB_SID_IB}};

}  // namespace

extern "C" {

uint64_t afib_sid(enum afib_sid_kind kind, uint16_t port) {
  switch (kind) {
    case AFIB_SID_SDP:
      return 0x0000000000010000ULL | port;
    case AFIB_SID_IP_CM:
      return (std::uint64_t{RDMA_PS_TCP} << 16) | port;
    case AFIB_SID_IB:
      return (std::uint64_t{RDMA_PS_IB} << 16) | port;
    case AFIB_SID_OTHER:
      break;
  }
  return 0;
}

enum afib_sid_kind afib_sid_kind_of(uint64_t sid, uint16_t* port) {
  enum afib_sid_kind k = AFIB_SID_OTHER;
  switch (sid >> 16) {
    case 0x1:
      k = AFIB_SID_SDP;
      break;
    case RDMA_PS_TCP:
      k = AFIB_SID_IP_CM;
      break;
    case RDMA_PS_IB:
      k = AFIB_SID_IB;
      break;
    default:
      return AFIB_SID_OTHER;
  }
  if (port != nullptr) *port = static_cast<std::uint16_t>(sid & 0xffffU);
  return k;
}

void afib_addr_init(struct sockaddr_ib* addr, const uint8_t gid[16], uint16_t pkey, uint64_t sid) {
  std::memset(addr, 0, sizeof *addr);
  addr->sib_family = AF_IB;
  addr->sib_pkey = htobe16(pkey);
  if (gid != nullptr) std::memcpy(addr->sib_addr.sib_raw, gid, 16);
  addr->sib_sid = htobe64(sid);
  addr->sib_sid_mask = htobe64(kAllOnes);
}

uint16_t afib_addr_pkey(const struct sockaddr_ib* addr) {
  return be16toh(addr->sib_pkey);
}
uint64_t afib_addr_sid(const struct sockaddr_ib* addr) {
  return be64toh(addr->sib_sid);
}
uint64_t afib_addr_sid_mask(const struct sockaddr_ib* addr) {
  return be64toh(addr->sib_sid_mask);
}

int afib_addr_parse(const char* text, struct sockaddr_ib* addr, char* err, size_t err_len) {
  if (text == nullptr || addr == nullptr)
    return fail(err, err_len, EINVAL, "no text or no address");
  const std::string_view all(text);
  std::string_view s = all;
  auto col = [&](std::string_view at) { return static_cast<int>(at.data() - all.data()) + 1; };
  if (s.empty() || s.front() != '[')
    return fail(err, err_len, EINVAL,
                "expected '[' and a GID at column 1 (the form is [GID]:SID[/MASK][,pkey=P]"
                "[,scope=S][,flow=F])");
  const std::size_t close = s.find(']');
  if (close == std::string_view::npos)
    return fail(err, err_len, EINVAL, "the GID's '[' at column 1 has no ']'");
  const std::string gid_text(s.substr(1, close - 1));
  std::uint8_t gid[16];
  if (inet_pton(AF_INET6, gid_text.c_str(), gid) != 1)
    return fail(err, err_len, EINVAL, "bad GID '%s' at column 2: not an IPv6-notation address",
                gid_text.c_str());
  s.remove_prefix(close + 1);
  if (s.empty() || s.front() != ':')
    return fail(err, err_len, EINVAL, "expected ':' and a service ID at column %d", col(s));
  s.remove_prefix(1);
  const std::size_t sid_end = s.find_first_of("/,");
  std::string_view sid_text = s.substr(0, sid_end);
  std::uint64_t sid = 0;
  bool named = false;
  for (const SidName& n : kSidNames) {
    if (!sid_text.starts_with(n.prefix)) continue;
    named = true;
    std::uint64_t port = 0;
    const std::string_view p = sid_text.substr(std::strlen(n.prefix));
    if (p.starts_with("0x") || p.starts_with("0X") || !number(p, 0xffff, &port))
      return fail(err, err_len, EINVAL, "bad port '%.*s' at column %d: a decimal 0..65535",
                  static_cast<int>(p.size()), p.data(), col(p));
    sid = afib_sid(n.kind, static_cast<std::uint16_t>(port));
  }
  if (!named && !number(sid_text, kAllOnes, &sid))
    return fail(err, err_len, EINVAL,
                "bad service ID '%.*s' at column %d: 0x and up to 16 hex digits, a decimal, or "
                "sdp:PORT, ipcm:PORT, tcp:PORT, ib:PORT",
                static_cast<int>(sid_text.size()), sid_text.data(), col(sid_text));
  s.remove_prefix(sid_text.size());
  std::uint64_t mask = kAllOnes, pkey = AFIB_PKEY_DEFAULT, scope = 0, flow = 0;
  if (!s.empty() && s.front() == '/') {
    s.remove_prefix(1);
    const std::string_view m = s.substr(0, s.find(','));
    if (!number(m, kAllOnes, &mask))
      return fail(err, err_len, EINVAL, "bad service ID mask '%.*s' at column %d",
                  static_cast<int>(m.size()), m.data(), col(m));
    s.remove_prefix(m.size());
  }
  bool seen[3] = {false, false, false};
  while (!s.empty()) {
    if (s.front() != ',')
      return fail(err, err_len, EINVAL, "unexpected '%.*s' at column %d",
                  static_cast<int>(s.size()), s.data(), col(s));
    s.remove_prefix(1);
    const std::string_view item = s.substr(0, s.find(','));
    const std::size_t eq = item.find('=');
    const std::string_view key = item.substr(0, eq);
    const std::string_view value =
        eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1);
    struct Opt {
      const char* name;
      std::uint64_t max;
      std::uint64_t* out;
    };
    const Opt opts[] = {
        {"pkey", 0xffff, &pkey}, {"scope", kAllOnes, &scope}, {"flow", 0xfffff, &flow}};
    int which = -1;
    for (int i = 0; i < 3; ++i)
      if (key == opts[i].name) which = i;
    if (which < 0)
      return fail(err, err_len, EINVAL, "unknown option '%.*s' at column %d (pkey, scope, flow)",
                  static_cast<int>(key.size()), key.data(), col(item));
    if (seen[which])
      return fail(err, err_len, EINVAL, "option '%s' given twice (column %d)", opts[which].name,
                  col(item));
    seen[which] = true;
    if (eq == std::string_view::npos || !number(value, opts[which].max, opts[which].out))
      return fail(err, err_len, EINVAL, "bad %s '%.*s' at column %d: a number up to 0x%llx",
                  opts[which].name, static_cast<int>(value.size()), value.data(),
                  col(eq == std::string_view::npos ? item : value),
                  static_cast<unsigned long long>(opts[which].max));
    s.remove_prefix(item.size());
  }
  afib_addr_init(addr, gid, static_cast<std::uint16_t>(pkey), sid);
  addr->sib_sid_mask = htobe64(mask);
  addr->sib_scope_id = scope;
  addr->sib_flowinfo = htobe32(static_cast<std::uint32_t>(flow));
  return 0;
}

int afib_addr_format(const struct sockaddr_ib* addr, char* buf, size_t len) {
  if (addr == nullptr || addr->sib_family != AF_IB) {
    errno = EAFNOSUPPORT;
    return -1;
  }
  char gid[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, addr->sib_addr.sib_raw, gid, sizeof gid);
  std::string s = "[";
  s += gid;
  char tail[96];
  std::snprintf(tail, sizeof tail, "]:0x%016llx",
                static_cast<unsigned long long>(afib_addr_sid(addr)));
  s += tail;
  if (afib_addr_sid_mask(addr) != kAllOnes) {
    std::snprintf(tail, sizeof tail, "/0x%016llx",
                  static_cast<unsigned long long>(afib_addr_sid_mask(addr)));
    s += tail;
  }
  if (afib_addr_pkey(addr) != AFIB_PKEY_DEFAULT) {
    std::snprintf(tail, sizeof tail, ",pkey=0x%04x", afib_addr_pkey(addr));
    s += tail;
  }
  if (addr->sib_scope_id != 0) {
    std::snprintf(tail, sizeof tail, ",scope=%llu",
                  static_cast<unsigned long long>(addr->sib_scope_id));
    s += tail;
  }
  if (be32toh(addr->sib_flowinfo) != 0) {
    std::snprintf(tail, sizeof tail, ",flow=0x%05x", be32toh(addr->sib_flowinfo));
    s += tail;
  }
  if (len > 0) {
    const std::size_t n = std::min(s.size(), len - 1);
    std::memcpy(buf, s.data(), n);
    buf[n] = '\0';
  }
  return static_cast<int>(s.size());
}

int afib_resolve(const char* host, uint64_t sid, int timeout_ms, struct sockaddr_ib* addr,
                 char* err, size_t err_len) {
  if (host == nullptr || addr == nullptr)
    return fail(err, err_len, EINVAL, "no host or no address");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (const int g = getaddrinfo(host, nullptr, &hints, &res); g != 0 || res == nullptr)
    return fail(err, err_len, g == EAI_SYSTEM ? errno : EHOSTUNREACH,
                "cannot resolve '%s' to an address: %s", host, gai_strerror(g));
  sockaddr_storage dst{};
  std::memcpy(&dst, res->ai_addr, std::min<std::size_t>(res->ai_addrlen, sizeof dst));
  freeaddrinfo(res);
  rdma_cm_id* id = nullptr;
  // No event channel: rdma_cm runs the resolution synchronously.
  if (rdma_create_id(nullptr, &id, nullptr, RDMA_PS_TCP) != 0) {
    const int e = errno;
    return fail(err, err_len, e, "rdma_cm: %s%s", std::strerror(e),
                e == ENODEV ? " (no RDMA device: see ibv_devices; for soft-RoCE, `rdma link add "
                              "rxe0 type rxe netdev IFACE`)"
                            : "");
  }
  const int r = rdma_resolve_addr(id, nullptr, reinterpret_cast<sockaddr*>(&dst), timeout_ms);
  const int e = r != 0 ? errno : ENETUNREACH;
  if (r != 0 || id->verbs == nullptr) {
    rdma_destroy_id(id);
    const int code = e == ENODEV ? ENETUNREACH : e;
    return fail(err, err_len, code, "no RDMA port reaches '%s' (%s)", host, std::strerror(e));
  }
  const rdma_ib_addr& ib = id->route.addr.addr.ibaddr;
  // rdma_cm reports no P_Key (0) for a RoCE port, whose packets carry the default partition's.
  const std::uint16_t pkey = be16toh(ib.pkey) != 0 ? be16toh(ib.pkey) : AFIB_PKEY_DEFAULT;
  afib_addr_init(addr, ib.dgid.raw, pkey, sid);
  rdma_destroy_id(id);
  return 0;
}

}  // extern "C"

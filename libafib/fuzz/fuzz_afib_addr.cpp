// libFuzzer target over libafib's address text form: any input either parses or is refused with
// a reason; what parses prints canonically, and the canonical text parses back to the same
// address and prints the same.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "afib/afib.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);  // stops at a NUL
  sockaddr_ib a{};
  char err[256];
  err[0] = '\0';
  if (afib_addr_parse(text.c_str(), &a, err, sizeof err) != 0) {
    if (err[0] == '\0') std::abort();  // a refusal always says why
    return 0;
  }
  char once[AFIB_ADDRSTRLEN], twice[AFIB_ADDRSTRLEN];
  const int n = afib_addr_format(&a, once, sizeof once);
  if (n <= 0 || n >= AFIB_ADDRSTRLEN) std::abort();
  sockaddr_ib b{};
  if (afib_addr_parse(once, &b, err, sizeof err) != 0) std::abort();
  if (std::memcmp(&a, &b, sizeof a) != 0) std::abort();
  if (afib_addr_format(&b, twice, sizeof twice) != n || std::strcmp(once, twice) != 0) std::abort();
  return 0;
}

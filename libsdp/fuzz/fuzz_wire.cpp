// libFuzzer target for the SDP wire codec.
//
// Runs every decoder on the input. Whatever a decoder accepts must re-encode to exactly the bytes
// it came from (decode is strict, so there is one valid byte image per decoded value); any
// difference aborts. Seeds: corpus/wire (written by make_wire_corpus.py).
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "sdp/wire.hpp"

namespace {

using namespace sdp::wire;

void check(bool ok) {
  if (!ok) std::abort();
}

// A failed decode must still produce a terminated, non-empty reason and a known error code.
void check_error(const Error& e) {
  check(e.code != Errc::Ok);
  check(errc_name(e.code) != "Unknown");
  check(!e.reason().empty() && e.reason().size() < e.text.size());
}

bool all_zero(std::span<const std::uint8_t> s) {
  for (std::uint8_t b : s) {
    if (b != 0) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);

  // peek_bsdh -> encode_bsdh reproduces the first 16 bytes verbatim.
  const auto peek = peek_bsdh(in);
  if (peek.ok()) {
    std::array<std::uint8_t, kBsdhSize> out{};
    const auto n = encode_bsdh(*peek, out);
    check(n.ok() && *n == kBsdhSize && std::memcmp(out.data(), data, kBsdhSize) == 0);
    (void)mid_name(peek->mid);
  } else {
    check(size < kBsdhSize && peek.error().code == Errc::TooShort);
  }

  // decode_message -> encode_message reproduces the whole input.
  const auto msg = decode_message(in);
  if (msg.ok()) {
    check(mid_defined(msg->bsdh.mid) && msg->bsdh.len == size);
    check(encoded_size(*msg) == size);
    static std::array<std::uint8_t, 1 << 16> out;
    if (size <= out.size()) {
      const auto n = encode_message(*msg, out);
      check(n.ok() && *n == size && std::memcmp(out.data(), data, size) == 0);
    }
  } else {
    check_error(msg.error());
  }

  // decode_hello -> encode_hello reproduces the Hello; everything after it is zero.
  const auto hello = decode_hello(in);
  if (hello.ok()) {
    std::array<std::uint8_t, kHelloMessageSize> out{};
    const auto n = encode_hello(hello->bsdh, hello->hh, hello->compact, out);
    check(n.ok() && *n == hello->bsdh.len && *n <= size);
    check(*n == (hello->compact ? kCompactHelloMessageSize : kHelloMessageSize));
    check(std::memcmp(out.data(), data, *n) == 0 && all_zero(in.subspan(*n)));
  } else {
    check_error(hello.error());
  }

  // decode_hello_ack -> encode_hello_ack reproduces the HelloAck; the rest is zero.
  const auto ack = decode_hello_ack(in);
  if (ack.ok()) {
    std::array<std::uint8_t, kHelloAckMessageSize> out{};
    const auto n = encode_hello_ack(ack->bsdh, ack->hah, out);
    check(n.ok() && *n == kHelloAckMessageSize && *n <= size);
    check(std::memcmp(out.data(), data, *n) == 0 && all_zero(in.subspan(*n)));
  } else {
    check_error(ack.error());
  }
  return 0;
}

// libFuzzer target: the display-filter compiler on arbitrary text, and every filter that
// compiles evaluated on a packet holding a field of each type (one of them reaching past the end
// of its frame). Nothing may crash, recurse without bound or read outside the frame (ASan); a
// rejected expression must come with a message.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "ibsniff/filter.hpp"

namespace {

const ibsniff::Packet& sample() {
  static const std::uint8_t kFrame[] = {
      0x0a, 0x20, 0xff, 0xff, 0x00, 0x00, 0x00, 0x11, 0x80, 0x8c, 0x84, 0xdd, 192, 168, 65,   5,
      0xfe, 0x80, 0,    0,    0,    0,    0,    0,    0,    2,    0xc9, 0x03, 0,   0,   0x1f, 0x2d};
  static ibsniff::Packet p = [] {
    using ibsniff::FieldId;
    ibsniff::Packet q;
    q.number = 1;
    q.ts_sec = 1700000000;
    q.ts_nsec = 5;
    q.data = kFrame;
    q.fields = {{FieldId::frame_number, 0, 0, 1},
                {FieldId::frame_time_epoch, 0, 0, 0},
                {FieldId::frame_time_relative, 0, 0, 0},
                {FieldId::bth, 0, 12, 0},
                {FieldId::bth_opcode, 0, 1, 10},
                {FieldId::bth_se, 1, 1, 0},
                {FieldId::bth_psn, 9, 3, 0x8c84dd},
                {FieldId::lrh_dlid, 0, 0, 4},
                {FieldId::lrh_dlid, 0, 0, 7},
                {FieldId::reth_va, 0, 0, ~std::uint64_t{0}},
                {FieldId::ip_src, 12, 4, 0},
                {FieldId::ip_dst, 30, 4, 0},  // past the end
                {FieldId::grh_sgid, 16, 16, 0},
                {FieldId::grh_dgid, 20, 16, 0},  // past the end
                {FieldId::payload, 12, 100, 0}};
    return q;
  }();
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view expr(reinterpret_cast<const char*>(data), size);
  std::string error;
  const auto filter = ibsniff::Filter::compile(expr, &error);
  if (!filter) {
    if (error.empty()) {
      std::fprintf(stderr, "rejected without a message\n");
      std::abort();
    }
    return 0;
  }
  ibsniff::TimeRef ref;
  (void)filter->matches(sample(), ref);
  ref.observe(sample());
  (void)filter->matches(sample(), ref);
  return 0;
}

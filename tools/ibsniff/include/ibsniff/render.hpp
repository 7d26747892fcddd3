// Text output: field values rendered like `tshark -T fields` (capture-formats.md §4.5), the
// one-line packet summary and notes. Only called when an output asks for it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ibsniff/packet.hpp"

namespace ibsniff {

// The reference for frame.time_relative: the first packet's time.
struct TimeRef {
  bool set = false;
  std::int64_t sec = 0;
  std::uint32_t nsec = 0;
  void observe(const Packet& p) {
    if (set) return;
    set = true;
    sec = p.ts_sec;
    nsec = p.ts_nsec;
  }
};

// Appends one field value as tshark renders it.
void render_field(const Packet& p, const Field& f, const TimeRef& ref, std::string& out);
// Appends the occurrences of `id` from the `i`-th field on (render_occurrences' general case).
void render_occurrences_from(const Packet& p, std::uint32_t i, const TimeRef& ref, int occurrence,
                             std::string& out);
// Appends every occurrence of `id`, joined with `,` (tshark's -E occurrence=a); `occurrence` 0
// = all, 1.. = that occurrence, -1 = the last. Inline: in a `-T fields` loop most columns are
// absent from a given packet, and cost one index lookup.
inline void render_occurrences(const Packet& p, FieldId id, const TimeRef& ref, int occurrence,
                               std::string& out) {
  const std::uint32_t i = p.first_of(id);
  if (i == Packet::kNoField) return;
  if (occurrence == 1 || (occurrence <= 0 && p.next_of(i) == Packet::kNoField))
    render_field(p, p.fields[i], ref, out);  // the first, or the only one (of all, or the last)
  else
    render_occurrences_from(p, i, ref, occurrence, out);
}

// A whole `-T fields` line: for each column its field's occurrences as render_occurrences
// renders them, `sep` between the columns, then a newline. The same text as a
// render_occurrences call per column (and a separator append between them), with less work per
// column: one pass over the packet's fields, no occurrence index, the line formatted in a buffer
// of its own and appended at once. Allocates only while its buffers grow.
class FieldsLine {
 public:
  FieldsLine(std::span<const FieldId> columns, std::string_view sep, int occurrence);
  void append(const Packet& p, const TimeRef& ref, std::string& out);

 private:
  static constexpr std::uint32_t kNone = UINT32_MAX;
  std::vector<FieldId> columns_;
  std::string sep_;
  int occurrence_ = 0;
  std::vector<std::uint32_t> column_of_;  // per FieldId: its first column, or kNone
  std::vector<std::uint32_t> same_as_;    // per column: an earlier column of the same field
  bool has_repeats_ = false;              // some column's same_as_ is set
  std::vector<const FieldDef*> defs_;     // per column: its field's definition
  // Per packet: each column's occurrences as a chain through next_ (field indices).
  std::vector<std::uint32_t> first_, last_, count_, next_;
  std::vector<char> buf_;
};
// "LID: 7", "GID: fe80::1", "10.0.0.1" …
std::string render_address(const Packet& p, const Address& a);
// Protocol column: "InfiniBand", "RoCE", "RRoCE" or "Other".
const char* proto_name(Proto proto);
// Info column like tshark's ("RC Send Only QP=0x000011 ", "CM: ConnectRequest").
std::string info(const Packet& p);
// A note's text with its arguments.
std::string format_note(const Note& n);
// "   12   0.004686 192.168.65.5 → 192.168.65.4 RRoCE 94 RC RDMA Write Only QP=0x000011 "
// followed by " [note; note]" when the packet has notes.
std::string summary_line(const Packet& p, const TimeRef& ref);

}  // namespace ibsniff

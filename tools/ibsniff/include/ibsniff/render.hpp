// Text output: field values rendered like `tshark -T fields` (capture-formats.md §4.5), the
// one-line packet summary and notes. Only called when an output asks for it.
#pragma once

#include <cstdint>
#include <span>
#include <string>

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
// Appends every occurrence of `id`, joined with `,` (tshark's -E occurrence=a); `occurrence` 0
// = all, 1.. = that occurrence, -1 = the last.
void render_occurrences(const Packet& p, FieldId id, const TimeRef& ref, int occurrence,
                        std::string& out);
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

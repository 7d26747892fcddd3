// One decoded frame: compact field records into the frame's bytes plus notes. A Packet is reused
// across frames (clear() keeps the vectors' capacity), so decoding does not allocate once the
// vectors have grown to the largest frame's needs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "ibsniff/fields.hpp"

namespace ibsniff {

// A decoded field: where it lies in the frame and, for integer fields, its value (already masked
// and shifted). Bytes/IPv4/IPv6 fields are rendered from the frame bytes at [off, off+len).
struct Field {
  FieldId id;
  std::uint32_t off;
  std::uint32_t len;
  std::uint64_t value;
};

enum class Severity : std::uint8_t { Info, Warn, Error };

// A note on a packet. `text` is a static fmt format string whose arguments are {0} = a, {1} = b,
// {2} = subject (a static string naming the header concerned); it is formatted only when printed.
struct Note {
  Severity severity;
  const char* text;
  std::uint64_t a = 0, b = 0;
  const char* subject = "";
};

// Unchecked: the CRC is there but was not verified, the output showing no verdict (Packet::want
// without ibsniff.icrc.bad / ibsniff.vcrc.bad).
enum class CrcStatus : std::uint8_t { Absent, Unchecked, Good, Bad };
enum class Proto : std::uint8_t { Other, InfiniBand, RoCE, RRoCE };
enum class AddrKind : std::uint8_t { None, Lid, Gid, Ipv4, Ipv6 };

struct Address {
  AddrKind kind = AddrKind::None;
  std::uint32_t off = 0;  // into the frame (Gid/Ipv4/Ipv6)
  std::uint16_t lid = 0;  // Lid
};

struct Packet {
  // Set by the reader.
  std::uint64_t number = 0;
  std::int64_t ts_sec = 0;
  std::uint32_t ts_nsec = 0;
  std::uint32_t wire_len = 0;
  int linktype = 0;
  std::span<const std::uint8_t> data;

  // Set by the decoder.
  std::vector<Field> fields;
  std::vector<Note> notes;
  Proto proto = Proto::Other;
  Address src, dst;
  bool has_bth = false;
  std::uint8_t opcode = 0;
  std::uint32_t dest_qp = 0;
  std::uint32_t psn = 0;
  std::uint32_t src_qp = 0;  // DETH source QP when present
  bool has_deth = false;
  // Offsets in `data`: BTH, first byte after the extended headers (payload), end of payload
  // including pad, and the pad count.
  std::uint32_t bth_off = 0, payload_off = 0, payload_end = 0;
  std::uint8_t pad = 0;
  CrcStatus icrc = CrcStatus::Absent, vcrc = CrcStatus::Absent;
  bool has_mad = false;
  std::uint32_t mad_off = 0;
  std::uint8_t mad_class = 0, mad_method = 0;
  std::uint16_t mad_attr = 0;
  std::uint64_t mad_tid = 0;
  // Input to the decoder, kept across clear(): leave the ICRC check to finish_icrc()
  // (decoder.hpp), so that another thread can do it. The invariant.crc field is added anyway.
  bool defer_icrc = false;
  // Input to the decoder, kept across clear(): when set, one byte per FieldId (FieldSet::data())
  // and the decoder records only the fields whose byte is nonzero — for an output that reads
  // nothing else (-T fields). The summary members above and below are set in any case, except
  // that an ICRC / VCRC is verified only when ibsniff.icrc.bad / ibsniff.vcrc.bad is in the set
  // (CrcStatus::Unchecked otherwise). nullptr: every field, every check.
  const std::uint8_t* want = nullptr;
  // Set by the decoder when it left the ICRC check for later: how to compute it.
  bool icrc_deferred = false;
  std::uint8_t icrc_kind = 0;
  std::uint32_t icrc_start = 0, icrc_off = 0;
  // Set by the SDP layer (Session): the MID of the SDP message this packet starts (-1: none).
  std::int16_t sdp_mid = -1;

  void clear() {
    fields.clear();
    notes.clear();
    proto = Proto::Other;
    src = dst = Address{};
    has_bth = has_deth = has_mad = false;
    opcode = 0;
    dest_qp = psn = src_qp = 0;
    bth_off = payload_off = payload_end = 0;
    pad = 0;
    icrc = vcrc = CrcStatus::Absent;
    icrc_deferred = false;
    mad_off = 0;
    sdp_mid = -1;
    mad_class = mad_method = 0;
    mad_attr = 0;
    mad_tid = 0;
    index_valid_ = false;
  }
  // The BTH payload (after the extended headers, pad bytes excluded); empty without a BTH.
  std::span<const std::uint8_t> payload() const {
    if (!has_bth || payload_end < payload_off + pad) return {};
    return data.subspan(payload_off, payload_end - payload_off - pad);
  }
  const Field* find(FieldId id) const {
    for (const auto& f : fields)
      if (f.id == id) return &f;
    return nullptr;
  }
  bool has_error() const {
    for (const auto& n : notes)
      if (n.severity == Severity::Error) return true;
    return false;
  }
  bool crc_bad() const { return icrc == CrcStatus::Bad || vcrc == CrcStatus::Bad; }

  // The occurrences of a field in `fields`, in order, in O(1) each: first_of(id), then
  // next_of(i) of the previous one, until kNoField. The index behind them is built on first use
  // (O(fields)) and rebuilt when `fields` has grown since or clear() ran; code that otherwise
  // edits `fields` in place (removes or replaces records) calls clear() first. Not for
  // concurrent use of one Packet (the index is built lazily).
  static constexpr std::uint32_t kNoField = UINT32_MAX;
  std::uint32_t first_of(FieldId id) const {
    if (!index_valid_ || index_size_ != fields.size()) build_index();
    const std::uint64_t s = index_first_[static_cast<std::size_t>(id)];
    return (s >> 32) == index_gen_ ? static_cast<std::uint32_t>(s) : kNoField;
  }
  std::uint32_t next_of(std::uint32_t i) const { return index_next_[i]; }

 private:
  // index_first_[id]: (generation << 32) | index of the first occurrence; entries of another
  // generation are stale (so a rebuild does not clear the table). index_next_[i]: the next
  // occurrence of fields[i].id after i.
  mutable std::vector<std::uint64_t> index_first_;
  mutable std::vector<std::uint32_t> index_next_;
  mutable std::uint32_t index_gen_ = 0;
  mutable std::size_t index_size_ = 0;
  mutable bool index_valid_ = false;

  [[gnu::noinline]] void build_index() const {
    if (index_first_.empty() || index_gen_ == UINT32_MAX) {
      index_first_.assign(static_cast<std::size_t>(FieldId::count_), 0);
      index_gen_ = 0;
    }
    const std::uint64_t tag = std::uint64_t{++index_gen_} << 32;
    const std::size_t n = fields.size();
    index_next_.resize(n);
    const Field* f = fields.data();
    std::uint64_t* first = index_first_.data();
    std::uint32_t* next = index_next_.data();
    for (std::size_t i = n; i-- > 0;) {  // backwards: each id's chain ends up in order
      std::uint64_t& slot = first[static_cast<std::size_t>(f[i].id)];
      const std::uint64_t s = slot;
      next[i] = (s & ~std::uint64_t{UINT32_MAX}) == tag ? static_cast<std::uint32_t>(s) : kNoField;
      slot = tag | i;
    }
    index_size_ = n;
    index_valid_ = true;
  }
};

}  // namespace ibsniff

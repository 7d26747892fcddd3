// -z conv: per-conversation statistics. InfiniBand conversations are keyed by (source address,
// destination address, transport, destination QP) — a packet names only its destination QP, so
// the two directions of an RC connection are two rows. SDP connections come from the SDP layer
// (both directions, bytes, messages per MID, credit range, BCopy/ZCopy share).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "ibsniff/packet.hpp"
#include "sdp_follow.hpp"

namespace ibsniff {

class ConvTable {
 public:
  void observe(const Packet& p);
  // The InfiniBand conversation table.
  std::string format_ib() const;
  // The SDP connection table.
  static std::string format_sdp(const sdp::Follower& follower);

 private:
  struct Key {
    sdp::Address src, dst;
    std::uint8_t transport = 0;  // opcode >> 5
    std::uint32_t qp = 0;
    bool operator==(const Key&) const = default;
  };
  struct Hash {
    std::size_t operator()(const Key& k) const noexcept;
  };
  struct Row {
    std::uint64_t frames = 0, bytes = 0, payload = 0;
    std::uint64_t first = 0;  // order of appearance
    std::int64_t t0_sec = 0, t1_sec = 0;
    std::uint32_t t0_nsec = 0, t1_nsec = 0;
  };
  std::unordered_map<Key, Row, Hash> rows_;
};

}  // namespace ibsniff

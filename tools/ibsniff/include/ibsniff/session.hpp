// The stateful layers above the frame decoder: CM field decoding (cm.hpp) and SDP (connections
// followed through the CM by the SDP follower; Hello, HelloAck and every message decoded with
// libsdp's codec into BSDH, extended-header and data fields). A Session sees the packets of one
// capture in order.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "ibsniff/packet.hpp"
#include "sdp_follow.hpp"

namespace ibsniff {

// A packet address (LRH LID, GRH GID, IP address) as the SDP layer keys connections by.
sdp::Address sdp_address(const Packet& p, const Address& a);

class Session {
 public:
  // Treat RC traffic to this QP as SDP even without its CM exchange (--sdp QP).
  void force_sdp_qp(std::uint32_t qpn) { follower_.force_qp(qpn); }
  // Whether RC packets are followed as SDP (default: on). Off — for an output that shows no SDP
  // field (FieldSet::any_sdp()) and no SDP statistics — SDP messages are not decoded: no SDP
  // fields, notes or Packet::sdp_mid, and the follower counts no messages. CM is decoded in any
  // case.
  void set_sdp(bool on) noexcept { sdp_ = on; }
  // Adds CM and SDP fields and notes to an already decoded packet.
  void process(Packet& p);
  const sdp::Follower& follower() const noexcept { return follower_; }

 private:
  sdp::Follower follower_;
  bool sdp_ = true;
  // Text of this packet's dynamic notes (a note's subject points here until the next packet).
  std::array<std::string, 4> note_text_;
  std::size_t notes_used_ = 0;

  void cm(Packet& p);
  void rc(Packet& p);
  void add_note(Packet& p, Severity s, std::string text);
  // The Hello / HelloAck (CM private data) at frame offset `off`, decoded with libsdp's codec:
  // false, with an Error note, when the codec refuses it.
  bool sdp_hello(Packet& p, std::size_t off, std::span<const std::uint8_t> bytes);
  bool sdp_hello_ack(Packet& p, std::size_t off, std::span<const std::uint8_t> bytes);
  // An SDP message the codec refused: its BSDH as read, and an Error note with the reason.
  void malformed(Packet& p, std::size_t off, std::span<const std::uint8_t> bytes, const char* what,
                 std::string_view reason);
};

}  // namespace ibsniff

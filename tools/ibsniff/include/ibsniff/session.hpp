// The stateful layers above the frame decoder: CM field decoding (REQ, REP, RTU, REJ, DREQ, DREP
// with their private data and the IP CM header) and SDP (connections followed through the CM by
// the SDP follower, messages decoded with libsdp's codec). A Session sees the packets of one
// capture in order.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "ibsniff/packet.hpp"
#include "sdp_follow.hpp"

namespace ibsniff {

// A packet address (LRH LID, GRH GID, IP address) as the SDP layer keys connections by.
sdp::Address sdp_address(const Packet& p, const Address& a);

class Session {
 public:
  // Treat RC traffic to this QP as SDP even without its CM exchange (--sdp QP).
  void force_sdp_qp(std::uint32_t qpn) { follower_.force_qp(qpn); }
  // Adds CM and SDP fields and notes to an already decoded packet.
  void process(Packet& p);
  const sdp::Follower& follower() const noexcept { return follower_; }

 private:
  sdp::Follower follower_;
  // Text of this packet's dynamic notes (a note's subject points here until the next packet).
  std::array<std::string, 4> note_text_;
  std::size_t notes_used_ = 0;

  void cm(Packet& p);
  void rc(Packet& p);
  void add_note(Packet& p, Severity s, std::string text);
  void sdp_bsdh_fields(Packet& p, std::size_t off, std::size_t avail);
  void sdp_hello_fields(Packet& p, std::size_t off, bool full);
};

}  // namespace ibsniff

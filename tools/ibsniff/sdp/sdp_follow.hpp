// Following SDP connections in a capture (ibsniff's SDP layer, independent of the packet decoder).
//
// The decoder feeds it two kinds of events, in capture order:
//  - CM messages (REQ, REP, RTU, DREQ, DREP, REJ) with their transaction ID, communication IDs,
//    service ID, local QPN and private data, plus the packet's addresses;
//  - RC packets (opcode, destination QP, PSN, payload) with their addresses.
// A connection is SDP when its REQ's service ID is a native SDP service ID (0x000000000001PPPP, by
// exact mask) or when it is the IP CM service (0x0000000001PPxxxx) and the private data after the
// 36-byte IP CM header is a valid Hello. Its REP names the responder's QPN; from then on every RC
// SEND to either QP is an SDP message, reassembled across SEND First/Middle/Last and decoded with
// libsdp's codec (the same one the library and the conformance harness use). forced QPs (ibsniff
// --sdp QP) are SDP without a CM exchange in the capture.
//
// Nothing here allocates per packet once a connection's reassembly buffer has grown, and nothing
// trusts the capture: a missing packet, a duplicate, a lying length or a malformed SDP message
// yields a note, and following goes on.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <deque>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "sdp/wire.hpp"

namespace ibsniff::sdp {

namespace wire = ::sdp::wire;

// A network address as the packet carries it: a GID (native IB with GRH, RoCEv1), an IPv4 or IPv6
// address (RoCEv2; IPv4 as ::ffff:a.b.c.d), or a LID (native IB without GRH, in the last 2 bytes
// with kind Lid). Only equality matters here.
struct Address {
  enum class Kind : std::uint8_t { None, Lid, Gid };
  Kind kind = Kind::None;
  std::array<std::uint8_t, 16> bytes{};
  friend bool operator==(const Address&, const Address&) = default;
  static Address lid(std::uint16_t lid);
  static Address gid(std::span<const std::uint8_t, 16> g);
  static Address ipv4(std::span<const std::uint8_t, 4> a);
};

enum class CmKind : std::uint8_t { Req, Rep, Rtu, Dreq, Drep, Rej, Other };

struct CmEvent {
  CmKind kind = CmKind::Other;
  std::uint64_t transaction_id = 0;
  std::uint32_t local_comm_id = 0, remote_comm_id = 0;
  std::uint64_t service_id = 0;  // REQ
  std::uint32_t local_qpn = 0;   // REQ, REP
  Address src, dst;              // of the packet carrying the MAD
  std::span<const std::uint8_t> private_data;
};

struct RcPacket {
  Address src, dst;
  std::uint8_t opcode = 0;  // BTH opcode (RC: 0x00..0x1F)
  std::uint32_t dest_qp = 0;
  std::uint32_t psn = 0;
  std::span<const std::uint8_t> payload;  // after the BTH's extended headers, pad removed
};

// How a connection was recognised.
enum class Setup : std::uint8_t { Native, IpCm, Forced };

struct ConnStats {
  std::uint64_t bytes[2] = {0, 0};  // ULP payload bytes in SDP Data/SrcAvail/SinkAvail, per dir
  std::uint64_t zcopy_bytes[2] = {0, 0};  // bytes announced by SrcAvail (RDMA-read by the sink)
  std::uint64_t messages[2][256] = {};    // per direction and MID
  std::uint32_t bufs_min[2] = {UINT32_MAX, UINT32_MAX}, bufs_max[2] = {0, 0};
};

struct Connection {
  std::uint32_t id = 0;  // 1, 2, ... in order of appearance
  Setup setup = Setup::Native;
  std::uint64_t service_id = 0;
  Address addr[2];  // [0] requester (active side), [1] responder
  std::uint32_t qpn[2] = {0, 0};
  std::uint32_t comm_id[2] = {0, 0};  // CM communication IDs: requester's (REQ), responder's (REP)
  std::uint64_t transaction_id = 0;
  bool established = false;  // REP seen
  bool closed = false;       // DREQ/DREP seen
  wire::Hello hello{};
  wire::HelloAck hello_ack{};
  bool have_hello_ack = false;
  ConnStats stats;
};

// What on_rc() found.
struct SdpResult {
  enum class Kind : std::uint8_t {
    NotSdp,     // no SDP connection for this QP
    Fragment,   // part of a multi-packet SEND, kept for reassembly
    Message,    // a complete SDP message: `message` (views into `bytes`)
    Malformed,  // a complete SEND that is not a valid SDP message: `error`
    NonSend,    // RDMA READ/WRITE/ACK traffic of an SDP connection (no SDP header)
    Duplicate,  // a retransmitted SEND packet (PSN not after the last one): ignored
    Dropped,    // a SEND packet that cannot be reassembled (see `note`)
  };
  Kind kind = Kind::NotSdp;
  const Connection* conn = nullptr;
  int direction = 0;  // 0: requester -> responder, 1: responder -> requester
  // The whole SDP message: a view into the packet (SEND Only) or into the follower's reassembly
  // buffer (valid until the next on_rc() for the same QP). `message` views into it too. For a
  // Fragment: the part of the message reassembled so far, this packet's payload included.
  std::span<const std::uint8_t> bytes;
  wire::Message message{};
  wire::Error error;  // its text is written only on an error (not cleared per packet)
  std::string note;   // a gap, a duplicate, an unexpected opcode (empty when none)
};

class Follower {
 public:
  // A CM message. Returns the SDP connection it belongs to (nullptr when none), and for a REQ or
  // REP of an SDP connection the decoded Hello / HelloAck is in the connection.
  const Connection* on_cm(const CmEvent& ev, std::string* note = nullptr);
  // An RC packet.
  SdpResult on_rc(const RcPacket& p);
  // Treat traffic to this QP as SDP (the CM exchange is not in the capture).
  void force_qp(std::uint32_t qpn);

  // In order of appearance; a deque, so that a Connection (4 KiB) stays where it is.
  const std::deque<Connection>& connections() const noexcept { return conns_; }

 private:
  struct Reassembly {
    std::vector<std::uint8_t> buf;
    bool active = false;         // a SEND First was seen, its Last not yet
    std::uint32_t next_psn = 0;  // PSN the next Middle/Last must carry
    bool have_send_psn = false;
    std::uint32_t last_send_psn = 0;  // PSN of the last SEND packet (retransmissions repeat it)
  };
  struct Endpoint {  // one receiving QP of a connection
    std::size_t conn = 0;
    int direction = 0;  // direction of packets addressed to this QP
    Reassembly rx;
  };

  // Packets are matched by destination address and QPN (a packet names only its destination
  // QP, and QPNs are unique per HCA only: rxe gives both ends of a first connection QPN 0x11).
  struct EndpointKey {
    Address addr;
    std::uint32_t qpn = 0;
    bool operator==(const EndpointKey&) const = default;
  };
  struct KeyHash {
    std::size_t operator()(const EndpointKey& k) const noexcept {
      std::uint64_t lo = 0, hi = 0;  // the address as two words: two multiplies, not sixteen
      std::memcpy(&lo, k.addr.bytes.data(), sizeof lo);
      std::memcpy(&hi, k.addr.bytes.data() + sizeof lo, sizeof hi);
      const std::uint64_t h = (lo * 0x9E3779B97F4A7C15ULL) ^ (hi * 0xC2B2AE3D27D4EB4FULL) ^
                              (std::uint64_t{k.qpn} * 0x165667B19E3779F9ULL);
      return static_cast<std::size_t>(h ^ (h >> 32));
    }
  };

  std::deque<Connection> conns_;
  std::unordered_map<EndpointKey, Endpoint, KeyHash> by_qp_;
  std::unordered_map<std::uint64_t, std::size_t> by_tid_;  // REQ transaction ID -> connection
  std::vector<std::uint32_t> forced_;
  // The endpoint the last RC packet went to (nullptr: none), reset whenever by_qp_ changes.
  EndpointKey last_key_;
  Endpoint* last_ = nullptr;

  // The endpoint for (addr, qpn) reset to a new connection's (its reassembly buffer, if it had
  // one, is kept for reuse: the QPN has been reused).
  void bind(const Address& addr, std::uint32_t qpn, std::size_t conn, int direction);
  // The endpoint packets to (dst, qpn) belong to (or to a forced qpn), nullptr when none.
  Endpoint* endpoint(const Address& dst, std::uint32_t qpn);
  // A connection for traffic to a forced QP (out of line: a Connection is 4 KiB).
  [[gnu::noinline]] Endpoint* add_forced(const RcPacket& p);

  void update_stats(Connection& c, int dir, const wire::Message& m);
  SdpResult complete(Endpoint& ep, std::span<const std::uint8_t> bytes);
  Connection* find_by_comm_id(std::uint32_t a, std::uint32_t b);
};

// True for the RC SEND opcodes whose payload starts a message (First, Only, Only with
// Immediate, Only with Invalidate): the packets that carry an SDP message's BSDH.
bool send_starts_message(std::uint8_t opcode) noexcept;

// "LID 7", "192.168.65.4" (IPv4-mapped GIDs), "fe80::1", "-" (none) for printing.
std::string to_string(const Address& a);

// "native SDP" / "IP CM" / "forced" for printing.
const char* setup_name(Setup s) noexcept;

}  // namespace ibsniff::sdp

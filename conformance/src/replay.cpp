// Trace replay (replay.hpp): ibsniff's reader, decoder and SDP follower pull one SDP connection's
// messages out of a capture; they become a scenario that has the raw endpoint play one side.
//
// How the capture's messages map onto steps:
//  - the replayed side's messages are Send steps with the capture's MID, flags, extended header
//    fields and payload bytes; Bufs, Len, MSeq and MSeqAck are left to this run's exchange. Its
//    credit updates (empty Data) are left out: the scenario has auto_credits, so the runner
//    reposts receives and updates credits itself. The RdmaRdCompl it sent for the other side's
//    SrcAvail are left out too: the ExpectData that takes that SrcAvail reads the data and answers
//    with RdmaRdCompl itself (auto_zcopy). Its own SrcAvail needs memory of ours: a Register step
//    first, and the SrcAvail names that region, its inline bytes taken from it (the region holds
//    the i mod 251 pattern, so those bytes differ from the capture's).
//  - the other side's messages become expectations, in the order the capture has them between two
//    messages of the replayed side: its stream bytes (Data payloads, SrcAvail inline and announced
//    bytes) as one ExpectData per run of data messages (exact bytes when all of them are in the
//    capture, else their number), its control messages as Expect steps matching the MID (and the
//    length its RdmaRdCompl / RdmaWrCompl report). An AbortConn is an ExpectClose ABORTIVE.
//  - the teardown: a Disconnect step when the replayed side sent a CM DREQ (also when the DREQs
//    crossed), an ExpectClose (ANY after their DisConn, else ABORTIVE) when only the other side
//    did.
//  - the server side (RAW_ACCEPTS, builtin peer only): the builtin peer's engine is the client,
//    and its application (service DISCARD unless asked otherwise, so that it adds nothing of its
//    own) is made to do what the capture's client did: App write_bytes (or App write N where the
//    capture does not hold the bytes) before each of its stream runs, App shutdown_send before its
//    DisConn, App abort before its AbortConn. The application shuts its send side by itself once
//    it has read our DisConn and written what it was given, so what the client wrote after our
//    DisConn is handed to it before we send ours, and if the client never sent DisConn it stops
//    reading first. Its engine gets the capture's Hello settings (peer_config).
//
// A capture that cannot be read, holds no SDP connection (or not the one asked for), lost a
// message whose headers are not in it, or holds a malformed one is refused with the reason; a
// message whose payload is only partly captured (snap length, lost packets after its first) is
// replayed by length.
#include "replay.hpp"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "ibsniff/cm.hpp"
#include "ibsniff/packet.hpp"
#include "ibsniff/reader.hpp"
#include "ibsniff/session.hpp"
#include "sdp/wire.hpp"
#include "sdp_follow.hpp"

namespace conformance {

namespace {

namespace wire = ::sdp::wire;
namespace sn = ::ibsniff::sdp;

constexpr std::uint32_t kMaxRecvBufs = 64;  // receives a Connect / Accept posts at most
// An ExpectData run is closed before it grows past this (the scenario stays a sane size).
constexpr std::uint64_t kMaxRun = std::uint64_t{1} << 28;

// ------------------------------------------------------------------------------------------------
// What the capture holds for the connection replayed

// One SDP message of the connection.
struct CapMessage {
  int dir = 0;  // 0: requester -> responder, 1: responder -> requester
  std::uint64_t frame = 0;
  wire::Bsdh bsdh{};
  wire::ExtHeader ext{};
  std::vector<std::uint8_t> payload;  // the payload bytes the capture holds
  std::uint32_t payload_total = 0;    // the payload the message carried (BSDH.Len - headers)
  bool whole = true;                  // false: some of its packets are not (all) in the capture
  bool complete() const { return whole && payload.size() == payload_total; }
};

// A CM message of the connection after the REQ / REP.
struct CapCm {
  sn::CmKind kind = sn::CmKind::Other;
  int dir = 0;
  std::uint64_t frame = 0;
};

using CapEvent = std::variant<CapMessage, CapCm>;

struct CapConn {
  std::uint32_t id = 0;  // the follower's connection number
  sn::Setup setup = sn::Setup::Native;
  std::uint64_t service_id = 0;
  wire::Hello hello{};
  bool have_rep = false;
  bool have_hello_ack = false;
  wire::HelloAck hello_ack{};
  bool rejected = false;
  std::vector<CapEvent> events;  // in capture order
  std::vector<std::string> notes;
};

const char* side_name(int dir) {
  return dir == 0 ? "client" : "server";
}

std::string frame_str(std::uint64_t frame) {
  return "frame " + std::to_string(frame);
}

std::size_t header_size(std::uint8_t mid) {
  return wire::kBsdhSize + wire::ext_header_size(static_cast<wire::Mid>(mid));
}

// A message of a multi-packet SEND being reassembled, as far as its first packet told.
struct Partial {
  bool valid = false;      // a SEND First decoded as a message prefix
  bool dropped = false;    // the follower dropped the message in progress (later parts ignored)
  bool truncated = false;  // a packet of it was cut short by the capture's snap length
  std::uint64_t frame = 0;
  wire::Message head{};
  std::vector<std::uint8_t> payload;  // the payload bytes of its first packet
};

class Extractor {
 public:
  Extractor(const ReplayOptions& opt, CapConn& out) : opt_(opt), out_(out) {}

  bool run(std::string& error) {
    std::string err;
    std::unique_ptr<ibsniff::Reader> reader = ibsniff::Reader::open(opt_.path, &err);
    if (!reader) {
      error = "cannot read the capture: " + (err.empty() ? "unknown error" : err);
      return false;
    }
    ibsniff::Packet p;
    const unsigned want = opt_.connection == 0 ? 1 : opt_.connection;
    for (;;) {
      err.clear();
      if (!reader->next(p, &err)) {
        if (!err.empty()) {
          error = "capture unreadable after " + std::to_string(frames_) +
                  " frames (truncated or corrupt file?): " + err;
          return false;
        }
        break;
      }
      ++frames_;
      if (p.wire_len > p.data.size()) ++cut_;
      if (!p.has_bth) continue;
      if (p.has_mad) {
        if (p.mad_class == 0x07) cm(p, want);
      } else if (p.opcode < 0x20 && out_.id != 0) {
        if (!rc(p, error)) return false;
      }
    }
    for (int dir = 0; dir < 2; ++dir)
      if (partial_[dir].valid) flush_partial(dir, "the capture ends in the middle of the message");
    if (out_.id == 0) {
      if (frames_ == 0)
        error = "the capture holds no packets";
      else if (sdp_seen_ == 0)
        error = "no SDP connection in the capture's " + std::to_string(frames_) +
                " frames (no CM REQ with an SDP service ID or an IP CM REQ carrying a Hello)" +
                (cut_ > 0 ? "; " + std::to_string(cut_) +
                                " frames are cut short by the capture's snap length"
                          : std::string());
      else
        error = "SDP connection " + std::to_string(want) + " asked for, but the " +
                "capture holds " + std::to_string(sdp_seen_) + " with a valid Hello";
      return false;
    }
    return true;
  }

 private:
  const ReplayOptions& opt_;
  CapConn& out_;
  sn::Follower follower_;
  std::uint64_t frames_ = 0;
  std::uint64_t cut_ = 0;        // frames the snap length cut short
  unsigned sdp_seen_ = 0;        // SDP connections with a valid Hello so far
  std::uint32_t last_conn_ = 0;  // the follower's last connection number seen in a REQ
  Partial partial_[2];

  void cm(ibsniff::Packet& p, unsigned want) {
    sn::CmEvent ev = ibsniff::decode_cm(p);
    if (ev.kind == sn::CmKind::Other) return;
    ev.transaction_id = p.mad_tid;
    ev.src = ibsniff::sdp_address(p, p.src);
    ev.dst = ibsniff::sdp_address(p, p.dst);
    std::string note;
    const sn::Connection* c = follower_.on_cm(ev, &note);
    if (c == nullptr) return;
    if (ev.kind == sn::CmKind::Req && c->id > last_conn_) {  // a new connection (not a resent REQ)
      last_conn_ = c->id;
      const bool valid = c->setup == sn::Setup::IpCm || (c->setup == sn::Setup::Native &&
                                                         wire::decode_hello(ev.private_data).ok());
      if (valid && ++sdp_seen_ == want && out_.id == 0) {
        out_.id = c->id;
        out_.setup = c->setup;
        out_.service_id = c->service_id;
        out_.hello = c->hello;
      }
      return;
    }
    if (out_.id == 0 || c->id != out_.id) return;
    switch (ev.kind) {
      case sn::CmKind::Rep:
        if (out_.have_rep) return;  // a resent REP
        out_.have_rep = true;
        out_.have_hello_ack = c->have_hello_ack;
        out_.hello_ack = c->hello_ack;
        if (!c->have_hello_ack)
          out_.notes.push_back(
              frame_str(p.number) + ": " +
              (note.empty() ? std::string("the REP holds no valid HelloAck") : note));
        return;
      case sn::CmKind::Rej:
        out_.rejected = true;
        out_.events.emplace_back(CapCm{ev.kind, 1, p.number});
        return;
      case sn::CmKind::Dreq:
      case sn::CmKind::Drep: {
        // The sender's communication ID is its local one; by address when the IDs do not tell.
        int dir = 0;
        if (ev.local_comm_id != 0 && ev.local_comm_id == c->comm_id[1])
          dir = 1;
        else if (ev.local_comm_id != 0 && ev.local_comm_id == c->comm_id[0])
          dir = 0;
        else
          dir = ev.src == c->addr[1] && !(ev.src == c->addr[0]) ? 1 : 0;
        out_.events.emplace_back(CapCm{ev.kind, dir, p.number});
        return;
      }
      default:
        return;
    }
  }

  // The message in progress in `dir` (its payload only partly in the capture) as a message.
  void flush_partial(int dir, const std::string& why) {
    Partial& pa = partial_[dir];
    if (!pa.valid) return;
    CapMessage m;
    m.dir = dir;
    m.frame = pa.frame;
    m.bsdh = pa.head.bsdh;
    m.ext = pa.head.ext;
    const std::size_t hdr = header_size(m.bsdh.mid);
    m.payload_total = m.bsdh.len > hdr ? static_cast<std::uint32_t>(m.bsdh.len - hdr) : 0;
    m.payload = std::move(pa.payload);
    m.whole = false;
    if (m.payload.size() > m.payload_total) m.payload.resize(m.payload_total);
    out_.notes.push_back(frame_str(pa.frame) + ": " + side_name(dir) + "'s " +
                         std::string(wire::mid_name(m.bsdh.mid)) +
                         " is not whole in the capture (" + why +
                         "): its payload is replayed by length");
    out_.events.emplace_back(std::move(m));
    pa = Partial{};
    pa.dropped = true;
  }

  bool rc(ibsniff::Packet& p, std::string& error) {
    if (p.payload_end < p.payload_off + p.pad || p.payload_end > p.data.size()) return true;
    sn::RcPacket rp;
    rp.src = ibsniff::sdp_address(p, p.src);
    rp.dst = ibsniff::sdp_address(p, p.dst);
    rp.opcode = p.opcode;
    rp.dest_qp = p.dest_qp;
    rp.psn = p.psn;
    rp.payload = p.data.subspan(p.payload_off, p.payload_end - p.pad - p.payload_off);
    const sn::SdpResult r = follower_.on_rc(rp);
    if (r.kind == sn::SdpResult::Kind::NotSdp || r.conn == nullptr || r.conn->id != out_.id)
      return true;
    const int dir = r.direction;
    Partial& pa = partial_[dir];
    const bool truncated = p.wire_len > p.data.size();
    const bool starts = sn::send_starts_message(p.opcode);
    using Kind = sn::SdpResult::Kind;
    if (starts &&
        (r.kind == Kind::Message || r.kind == Kind::Fragment || r.kind == Kind::Malformed)) {
      if (pa.valid) flush_partial(dir, "its last packets are missing");
      pa = Partial{};
    }
    switch (r.kind) {
      case Kind::Message: {
        CapMessage m;
        m.dir = dir;
        m.frame = starts ? p.number : pa.frame;
        m.bsdh = r.message.bsdh;
        m.ext = r.message.ext;
        m.payload.assign(r.message.payload.begin(), r.message.payload.end());
        m.payload_total = static_cast<std::uint32_t>(r.message.payload.size());
        out_.events.emplace_back(std::move(m));
        pa = Partial{};
        return true;
      }
      case Kind::Fragment:
        if (starts) {
          wire::Message head;
          wire::Error e;
          pa.frame = p.number;
          pa.truncated = truncated;
          if (wire::decode_message_prefix_into(r.bytes, head, e)) {
            pa.valid = true;
            pa.head = head;
            pa.payload.assign(head.payload.begin(), head.payload.end());
            pa.head.payload = {};
          } else {
            error = frame_str(p.number) + ": the " + side_name(dir) + "'s SDP message " +
                    (truncated ? "has its headers cut off by the capture's snap length: "
                               : "is malformed: ") +
                    std::string(e.reason());
            return false;
          }
        } else {
          pa.truncated = pa.truncated || truncated;
        }
        return true;
      case Kind::Malformed: {
        // A message cut short by the capture's snap length: its headers are there, its payload
        // is not whole.
        wire::Message head;
        wire::Error e;
        const bool cut = truncated || (!starts && pa.truncated);
        if (cut && wire::decode_message_prefix_into(r.bytes, head, e) &&
            head.bsdh.len > r.bytes.size()) {
          pa.valid = true;
          pa.frame = starts ? p.number : pa.frame;
          pa.head = head;
          pa.payload.assign(head.payload.begin(), head.payload.end());
          pa.head.payload = {};
          flush_partial(dir, "the capture cut its packets short");
          pa = Partial{};
          return true;
        }
        error =
            frame_str(p.number) + ": the " + side_name(dir) + "'s SDP message " +
            (cut ? "has its headers cut off by the capture's snap length: " : "is malformed: ") +
            std::string(r.error.reason());
        return false;
      }
      case Kind::Dropped:
        if (pa.valid) {
          flush_partial(dir, r.note);
          return true;
        }
        if (pa.dropped) return true;  // later packets of a message already given up
        error = frame_str(p.number) + ": a message of the " + side_name(dir) +
                " is lost in the capture: " + r.note;
        return false;
      case Kind::NotSdp:
      case Kind::NonSend:
      case Kind::Duplicate:
        return true;
    }
    return true;
  }
};

// ------------------------------------------------------------------------------------------------
// The scenario

std::optional<Service> service_for_port(std::uint16_t port) {
  switch (port % 100) {
    case 7:
      return ECHO;
    case 9:
      return DISCARD;
    case 19:
      return SOURCE;
    default:
      return std::nullopt;
  }
}

// The MsgSpec fields of an extended header.
struct ExtToSpec {
  MsgSpec& m;
  void operator()(std::monostate) const {}
  void operator()(const wire::HelloHeader&) const {}
  void operator()(const wire::HelloAckHeader&) const {}
  void operator()(const wire::SrcAvailHeader& h) const {
    m.set_ext_len(h.len);
    m.set_rkey(h.rkey);
    m.set_va(h.va);
  }
  void operator()(const wire::SinkAvailHeader& h) const {
    m.set_ext_len(h.len);
    m.set_rkey(h.rkey);
    m.set_va(h.va);
    m.set_non_disc(h.non_disc);
  }
  void operator()(const wire::RdmaWrComplHeader& h) const { m.set_ext_len(h.len); }
  void operator()(const wire::RdmaRdComplHeader& h) const { m.set_ext_len(h.len); }
  void operator()(const wire::ModeChangeHeader& h) const {
    m.set_mch_byte((h.send_half ? 0x80U : 0U) | (static_cast<unsigned>(h.mode) << 4));
  }
  void operator()(const wire::ChRcvBufHeader& h) const { m.set_ext_len(h.size); }
  void operator()(const wire::ChRcvBufAckHeader& h) const { m.set_ext_len(h.size); }
  void operator()(const wire::SuspCommHeader& h) const { m.set_service_id(h.service_id); }
};

void set_mid(MsgSpec& m, std::uint8_t mid) {
  if (Mid_IsValid(mid))
    m.set_mid(static_cast<Mid>(mid));
  else
    m.set_mid_raw(mid);
}

std::string describe(const CapMessage& m) {
  std::string s = frame_str(m.frame) + ": " + std::string(wire::mid_name(m.bsdh.mid));
  if (const auto* h = std::get_if<wire::SrcAvailHeader>(&m.ext))
    s += " (" + std::to_string(h->len) + " bytes, " + std::to_string(m.payload_total) + " inline)";
  else if (m.payload_total > 0)
    s += " (" + std::to_string(m.payload_total) + " payload bytes)";
  return s;
}

// A write of the peer's application (server replays, builtin peer): exact bytes, or a count of
// pattern bytes where the capture does not hold them.
struct AppWrite {
  bool exact = true;
  std::string bytes;
  std::uint64_t len = 0;
};

void add_write(std::vector<AppWrite>& v, const CapMessage& m, std::uint64_t total, bool exact) {
  if (exact) {
    if (v.empty() || !v.back().exact) v.push_back(AppWrite{});
    v.back().bytes.append(m.payload.begin(), m.payload.end());
    v.back().len += total;
    return;
  }
  if (v.empty() || v.back().exact) v.push_back(AppWrite{false, {}, 0});
  v.back().len += total;
}

class Builder {
 public:
  Builder(const ReplayOptions& opt, const CapConn& c, Scenario& out)
      : opt_(opt), c_(c), s_(out), me_(opt.client_side ? 0 : 1), drive_app_(!opt.client_side) {}

  bool build(std::string& error) {
    const std::string base = std::filesystem::path(opt_.path).filename().string();
    s_.Clear();
    s_.set_name("replay:" + base + ":" + side_name(me_));
    s_.add_rule("sdp-wire.md §1/§4/§5 (replayed trace)");
    const auto port = static_cast<std::uint16_t>(c_.service_id & 0xFFFF);
    // The client side talks to the peer's service on the capture's port; on the server side the
    // builtin peer's application does what the capture's client did (App steps), so it runs
    // discard, which adds nothing of its own.
    Service service = ECHO;
    if (opt_.service >= 0 && opt_.service <= 2)
      service = static_cast<Service>(opt_.service);
    else if (drive_app_)
      service = DISCARD;
    else if (auto sv = service_for_port(port))
      service = *sv;
    s_.set_service(service);
    s_.set_role(opt_.client_side ? RAW_CONNECTS : RAW_ACCEPTS);
    s_.set_builtin_only(!opt_.client_side);
    s_.set_cm(CM_ANY);
    s_.set_auto_credits(true);
    if (drive_app_) {
      // The peer's engine offers what the capture's client offered.
      PeerConfig& pc = *s_.mutable_peer_config();
      if (c_.hello.bsdh.bufs != 0) pc.set_recv_bufs(c_.hello.bsdh.bufs);
      if (c_.hello.hh.local_rcv_sz != 0) pc.set_recv_size(c_.hello.hh.local_rcv_sz);
      pc.set_max_adverts(c_.hello.hh.max_adverts);
    }

    if (!c_.have_rep && !c_.rejected) {
      error = "SDP connection " + std::to_string(c_.id) +
              " has no CM REP in the capture (its messages cannot be followed)";
      return false;
    }
    if (!opt_.client_side && !c_.rejected && !c_.have_hello_ack) {
      error = "the server side cannot be replayed: the REP of connection " + std::to_string(c_.id) +
              " holds no valid HelloAck";
      return false;
    }
    setup_step();
    if (c_.rejected) {
      summary(port, service);
      return true;
    }
    if (drive_app_) plan();

    for (std::size_t i = 0; i < c_.events.size(); ++i) {
      const CapEvent& ev = c_.events[i];
      if (const auto* m = std::get_if<CapMessage>(&ev)) {
        if (ended_) continue;  // after an AbortConn: only the CM teardown matters
        if (m->dir == me_)
          mine(*m, i);
        else
          theirs(*m, i);
      } else {
        const CapCm& cm = std::get<CapCm>(ev);
        if (cm.kind == sn::CmKind::Dreq && dreq_frame_[cm.dir] == 0) {
          dreq_frame_[cm.dir] = cm.frame;
          if (first_dreq_ < 0) first_dreq_ = cm.dir;
        }
      }
    }
    close_run();
    teardown();
    summary(port, service);
    return true;
  }

 private:
  static constexpr std::size_t kNone = SIZE_MAX;
  const ReplayOptions& opt_;
  const CapConn& c_;
  Scenario& s_;
  const int me_;
  const bool drive_app_;  // server side: the builtin peer's application acts as the client did
  bool ended_ = false;    // an AbortConn ended the connection
  int first_dreq_ = -1;
  std::uint64_t dreq_frame_[2] = {0, 0};  // each side's first CM DREQ (0: none)
  bool their_disconn_ = false;
  bool my_abort_ = false;
  unsigned regions_ = 0;
  std::uint64_t their_zcopy_pending_ = 0;  // their SrcAvail'd bytes our RdmaRdCompl not yet took
  unsigned sent_ = 0, expected_ = 0, skipped_credit_ = 0, skipped_rdcompl_ = 0;
  // The open run of their stream bytes.
  std::uint64_t run_len_ = 0;
  std::vector<std::uint8_t> run_bytes_;
  bool run_exact_ = true;
  bool run_oob_ = false;
  std::uint64_t run_frame_ = 0;
  unsigned run_msgs_ = 0;
  std::vector<AppWrite> run_writes_;  // what the peer's application writes for this run
  // The peer's application (drive_app_). It shuts its send side by itself once it has read our
  // DisConn and written all it was given: what the capture's client wrote after our DisConn is
  // handed to it before we send ours, and when the client never sent DisConn, it stops reading
  // first (so that it does not send one).
  std::size_t my_disconn_at_ = kNone;  // the event index of our first DisConn
  std::vector<bool> early_;            // their stream messages written before our DisConn
  std::vector<AppWrite> early_writes_;
  bool their_disconn_any_ = false;

  Step& add(std::string note) {
    Step& st = *s_.add_step();
    if (!note.empty()) st.set_note(std::move(note));
    return st;
  }

  void plan() {
    early_.assign(c_.events.size(), false);
    for (std::size_t i = 0; i < c_.events.size(); ++i) {
      const auto* m = std::get_if<CapMessage>(&c_.events[i]);
      if (m == nullptr) continue;
      const auto mid = static_cast<wire::Mid>(m->bsdh.mid);
      if (mid == wire::Mid::AbortConn) break;
      if (mid == wire::Mid::DisConn && m->dir != me_) their_disconn_any_ = true;
      if (mid == wire::Mid::DisConn && m->dir == me_ && my_disconn_at_ == kNone) my_disconn_at_ = i;
      if (m->dir == me_ || my_disconn_at_ == kNone) continue;
      std::uint64_t total = 0;
      bool exact = false;
      if (!stream_size(*m, total, exact) || total == 0) continue;
      early_[i] = true;
      add_write(early_writes_, *m, total, exact);
    }
  }

  // The stream bytes one of their messages carries (false: none of the kind).
  static bool stream_size(const CapMessage& m, std::uint64_t& total, bool& exact) {
    const auto mid = static_cast<wire::Mid>(m.bsdh.mid);
    if (mid == wire::Mid::Data) {
      total = m.payload_total;
      exact = m.complete();
      return true;
    }
    if (mid == wire::Mid::SrcAvail) {
      const auto* h = std::get_if<wire::SrcAvailHeader>(&m.ext);
      total = h != nullptr ? std::max(h->len, m.payload_total) : 0;
      // The announced bytes past the inline ones travel by RDMA READ: not SDP messages.
      exact = m.complete() && total == m.payload_total;
      return true;
    }
    return false;
  }

  void app_writes(const std::vector<AppWrite>& writes, const std::string& why) {
    for (const AppWrite& w : writes) {
      if (w.exact) {
        add("the peer's application writes what the capture's client sent " + why)
            .mutable_app()
            ->set_write_bytes(w.bytes);
        continue;
      }
      for (std::uint64_t left = w.len; left > 0;) {
        const auto n = static_cast<std::uint32_t>(std::min<std::uint64_t>(left, UINT32_MAX));
        add("the peer's application writes as many bytes as the capture's client sent " + why +
            " (pattern bytes: the capture does not hold them all)")
            .mutable_app()
            ->set_write(n);
        left -= n;
      }
    }
  }

  void setup_step() {
    if (opt_.client_side) {
      const wire::Hello& h = c_.hello;
      Step& st = add("the capture's CM REQ (Hello Bufs " + std::to_string(h.bsdh.bufs) +
                     ", LocalRcvSz " + std::to_string(h.hh.local_rcv_sz) + ")");
      Connect& cn = *st.mutable_connect();
      cn.set_recv_bufs(std::min<std::uint32_t>(h.bsdh.bufs, kMaxRecvBufs));
      cn.set_recv_size(h.hh.local_rcv_sz);
      HelloSpec& hs = *cn.mutable_hello();
      hs.set_max_adverts(h.hh.max_adverts);
      hs.set_des_rem_rcv_sz(h.hh.des_rem_rcv_sz);
      hs.set_local_rcv_sz(h.hh.local_rcv_sz);
      cn.set_expect(c_.rejected ? Connect::REJECT : Connect::ACCEPT);
      return;
    }
    Step& st = add(c_.rejected ? std::string("the capture's server rejected the CM REQ")
                               : "the capture's CM REP (HelloAck Bufs " +
                                     std::to_string(c_.hello_ack.bsdh.bufs) + ", ActRcvSz " +
                                     std::to_string(c_.hello_ack.hah.act_rcv_sz) + ")");
    Accept& ac = *st.mutable_accept();
    ac.set_hello_compact(c_.hello.compact ? 1 : 0);
    if (c_.rejected) {
      ac.set_reject(true);
      return;
    }
    const wire::HelloAck& ha = c_.hello_ack;
    ac.set_recv_bufs(std::min<std::uint32_t>(ha.bsdh.bufs, kMaxRecvBufs));
    ac.set_recv_size(ha.hah.act_rcv_sz);
    HelloAckSpec& hs = *ac.mutable_hello_ack();
    hs.set_max_adverts(ha.hah.max_adverts);
    hs.set_act_rcv_sz(ha.hah.act_rcv_sz);
  }

  // ---- the replayed side's messages

  void mine(const CapMessage& m, std::size_t index) {
    const auto mid = static_cast<wire::Mid>(m.bsdh.mid);
    if (mid == wire::Mid::Data && m.payload_total == 0) {
      ++skipped_credit_;  // a credit update: the runner sends its own (auto_credits)
      return;
    }
    if (mid == wire::Mid::RdmaRdCompl && their_zcopy_pending_ > 0) {
      // Our answer to their SrcAvail: the ExpectData taking it answers by itself (auto_zcopy).
      const auto* h = std::get_if<wire::RdmaRdComplHeader>(&m.ext);
      const std::uint64_t took = h != nullptr ? h->len : their_zcopy_pending_;
      their_zcopy_pending_ -= std::min(took, their_zcopy_pending_);
      ++skipped_rdcompl_;
      return;
    }
    close_run();
    ++sent_;
    if (mid == wire::Mid::SrcAvail || mid == wire::Mid::SinkAvail) {
      advert(m);
      return;
    }
    if (drive_app_ && index == my_disconn_at_) {
      app_writes(early_writes_,
                 "after our DisConn (given before it: the application shuts "
                 "down once it has read our DisConn and written all it has)");
      if (!their_disconn_any_)
        add("the capture's client never sent DisConn: the peer's application must not read "
            "ours (it would shut down)")
            .mutable_app()
            ->set_stop_reading(true);
    }
    Step& st = add(describe(m) + " from the replayed " + side_name(me_));
    MsgSpec& ms = *st.mutable_send()->mutable_msg();
    set_mid(ms, m.bsdh.mid);
    if (m.bsdh.flags != 0) ms.set_flags(m.bsdh.flags);
    std::visit(ExtToSpec{ms}, m.ext);
    payload(ms, m);
    if (mid == wire::Mid::AbortConn) {
      my_abort_ = true;
      ended_ = true;
    }
  }

  static void payload(MsgSpec& ms, const CapMessage& m) {
    if (m.payload_total == 0) return;
    if (m.complete())
      ms.set_payload(std::string(m.payload.begin(), m.payload.end()));
    else
      ms.set_payload_len(m.payload_total);
  }

  // Our SrcAvail / SinkAvail: a region of ours first.
  void advert(const CapMessage& m) {
    const bool src = m.bsdh.mid == static_cast<std::uint8_t>(wire::Mid::SrcAvail);
    std::uint32_t len = 0;
    std::optional<std::uint32_t> non_disc;
    if (const auto* h = std::get_if<wire::SrcAvailHeader>(&m.ext)) len = h->len;
    if (const auto* h = std::get_if<wire::SinkAvailHeader>(&m.ext)) {
      len = h->len;
      non_disc = h->non_disc;
    }
    const std::string name = (src ? "src" : "sink") + std::to_string(++regions_);
    Step& reg = add("memory for the " + describe(m));
    Register& r = *reg.mutable_register_();
    r.set_name(name);
    r.set_size(std::max<std::uint32_t>({len, m.payload_total, 1}));
    r.set_remote_read(src);
    r.set_remote_write(!src);

    std::string note = describe(m) + " from the replayed " + side_name(me_);
    if (src && m.payload_total > 0)
      note += "; its " + std::to_string(m.payload_total) +
              " inline bytes come from the region (pattern i mod 251), not from the capture";
    Step& st = add(std::move(note));
    MsgSpec& ms = *st.mutable_send()->mutable_msg();
    set_mid(ms, m.bsdh.mid);
    if (m.bsdh.flags != 0) ms.set_flags(m.bsdh.flags);
    ms.set_ext_len(len);
    if (non_disc) ms.set_non_disc(*non_disc);
    ms.set_region(name);
    if (src) {
      ms.set_inline_from_region(true);
      if (m.payload_total > 0) ms.set_payload_len(m.payload_total);
    } else {
      payload(ms, m);
    }
  }

  // ---- the other side's messages

  void theirs(const CapMessage& m, std::size_t index) {
    const auto mid = static_cast<wire::Mid>(m.bsdh.mid);
    std::uint64_t total = 0;
    bool exact = false;
    if (stream_size(m, total, exact)) {
      if (total == 0) return;  // a credit update (empty Data): never expected
      stream(m, total, exact, drive_app_ && !early_[index]);
      if ((m.bsdh.flags & wire::flags::kOobPres) != 0) run_oob_ = true;
      if (mid == wire::Mid::SrcAvail) their_zcopy_pending_ += total - m.payload_total;
      return;
    }
    close_run();
    ++expected_;
    const std::string what = describe(m) + " from the " + side_name(1 - me_);
    if (mid == wire::Mid::AbortConn) {
      if (drive_app_)
        add("the peer's application aborts, as the capture's client did")
            .mutable_app()
            ->set_abort(true);
      add(what).mutable_expect_close()->set_how(ExpectClose::ABORTIVE);
      ended_ = true;
      return;
    }
    if (mid == wire::Mid::DisConn && drive_app_ && index < my_disconn_at_)
      add("the peer's application shuts its send side down, as the capture's client did")
          .mutable_app()
          ->set_shutdown_send(true);
    Expect& ex = *add(what).mutable_expect();
    ex.set_defer_data(true);  // the peer's stream bytes may overtake this control message
    MsgMatch& mm = *ex.mutable_msg();
    if (Mid_IsValid(m.bsdh.mid))
      mm.set_mid(static_cast<Mid>(m.bsdh.mid));
    else
      mm.set_mid_raw(m.bsdh.mid);
    if (const auto* h = std::get_if<wire::RdmaRdComplHeader>(&m.ext))
      mm.mutable_ext_len()->set_eq(h->len);
    if (const auto* h = std::get_if<wire::RdmaWrComplHeader>(&m.ext))
      mm.mutable_ext_len()->set_eq(h->len);
    if (mid == wire::Mid::DisConn) their_disconn_ = true;
  }

  // Their stream bytes: `total` of them, the capture's payload bytes exact when `exact`.
  void stream(const CapMessage& m, std::uint64_t total, bool exact, bool write) {
    if (run_len_ > 0 && run_len_ + total > kMaxRun) close_run();
    if (run_len_ == 0) run_frame_ = m.frame;
    ++run_msgs_;
    run_len_ += total;
    if (!exact) run_exact_ = false;
    if (run_exact_) run_bytes_.insert(run_bytes_.end(), m.payload.begin(), m.payload.end());
    if (write) add_write(run_writes_, m, total, exact);
  }

  void close_run() {
    if (run_len_ == 0) return;
    ++expected_;
    const std::string what = std::to_string(run_len_) + " stream bytes from the " +
                             side_name(1 - me_) + " (" + std::to_string(run_msgs_) + " message" +
                             (run_msgs_ == 1 ? "" : "s") + " from " + frame_str(run_frame_) + ")";
    app_writes(run_writes_, "from " + frame_str(run_frame_));
    Step& st = add(what + (run_exact_ ? "" : "; not all in the capture: checked by count"));
    ExpectData& ed = *st.mutable_expect_data();
    if (run_exact_ && run_bytes_.size() == run_len_)
      ed.set_bytes(std::string(run_bytes_.begin(), run_bytes_.end()));
    else
      ed.set_len(static_cast<std::uint32_t>(std::min<std::uint64_t>(run_len_, UINT32_MAX)));
    ed.set_auto_zcopy(true);
    if (run_oob_) ed.set_allow_oob(true);
    run_len_ = 0;
    run_bytes_.clear();
    run_exact_ = true;
    run_oob_ = false;
    run_msgs_ = 0;
    run_writes_.clear();
  }

  // ---- the end

  void teardown() {
    if (ended_ && !my_abort_) return;  // their AbortConn: ExpectClose ABORTIVE already
    if (first_dreq_ < 0) return;       // the capture ends before the CM teardown
    if (dreq_frame_[me_] != 0) {
      // Ours, also when the DREQs crossed: the peer may be waiting for it.
      std::string note = frame_str(dreq_frame_[me_]) + ": the " + side_name(me_) + "'s CM DREQ";
      if (dreq_frame_[1 - me_] != 0)
        note += " (the " + std::string(side_name(1 - me_)) + "'s crossed it, " +
                frame_str(dreq_frame_[1 - me_]) + ")";
      add(note).mutable_disconnect();
      return;
    }
    // Their DisConn was an Expect of its own: the close that follows may be any (the runner's
    // GRACEFUL wants to see the DisConn itself). A DREQ without their DisConn is abortive.
    ExpectClose& ec =
        *add(frame_str(dreq_frame_[1 - me_]) + ": the " + side_name(1 - me_) + "'s CM DREQ")
             .mutable_expect_close();
    ec.set_how(their_disconn_ || my_abort_ ? ExpectClose::ANY : ExpectClose::ABORTIVE);
    ++expected_;
  }

  void summary(std::uint16_t port, Service service) {
    std::string s = "replays the " + std::string(side_name(me_)) + " side of connection " +
                    std::to_string(c_.id) + " (" + sn::setup_name(c_.setup) + ", port " +
                    std::to_string(port) + ", peer service " + Service_Name(service) +
                    "): " + std::to_string(sent_) + " messages sent, " + std::to_string(expected_) +
                    " expectations";
    if (skipped_credit_ > 0)
      s += ", " + std::to_string(skipped_credit_) + " credit updates left to the runner";
    if (skipped_rdcompl_ > 0)
      s += ", " + std::to_string(skipped_rdcompl_) + " RdmaRdCompl left to auto_zcopy";
    if (c_.rejected)
      s = "replays a rejected connection setup (" + std::string(side_name(me_)) + ")";
    for (const std::string& n : c_.notes) s += "; " + n;
    s_.set_summary(s);
  }
};

}  // namespace

bool scenario_from_capture(const ReplayOptions& opt, Scenario& out, std::string& error) {
  error.clear();
  CapConn conn;
  Extractor ex(opt, conn);
  if (!ex.run(error)) return false;
  Builder b(opt, conn, out);
  return b.build(error);
}

}  // namespace conformance

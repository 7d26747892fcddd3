// One SDP connection as a sans-I/O state machine.
//
// The engine never touches a queue pair. A binding (verbs, pipe) feeds it events — CM private data,
// receive/send/RDMA completions, application writes and reads, shutdown, abort, timer ticks — and
// executes the actions it emits (post this send buffer, post this receive buffer, RDMA-read this
// remote range, register/deregister memory, connection established/closed/reset). Every protocol
// rule of SDP lives here: Hello/HelloAck negotiation, credits (Bufs/MSeq/MSeqAck), BCopy
// segmentation and reassembly, ZCopy (SrcAvail/RDMA READ and SinkAvail/RDMA WRITE with their
// cancels), ChRcvBuf, DisConn half-close, AbortConn, keepalive and urgent data.
//
// Memory: the engine owns its send ring, control ring, receive ring and ZCopy staging area. It
// announces each with a RegisterRegion action before first use (local access only). Memory the
// peer may reach (a SrcAvail'd application buffer, a SinkAvail'd staging window) is registered per
// advert with remote access, and deregistered as soon as the grant ends.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sdp/wire.hpp"

namespace sdp {

struct EngineConfig {
  // Size of each receive buffer we post, BSDH included (announced as LocalRcvSz / ActRcvSz).
  std::uint32_t recv_size = 32784;
  // Largest receive buffer size we accept to switch to on the peer's ChRcvBuf. Receive buffers
  // are allocated at this size so that a resize never has to wait for old buffers.
  std::uint32_t max_recv_size = 65552;
  // Receive buffers kept posted: the most credits the peer can have.
  std::uint16_t recv_bufs = 16;
  // Send ring: slots of send_slot_size bytes (the largest message we ever send); the count is
  // rounded up to a power of two.
  std::uint16_t send_slots = 16;
  std::uint32_t send_slot_size = 65552;
  // Credits kept back from data for control messages (data needs credits > reserve). Lowered
  // for a peer with few buffers to max(1, peer's Hello Bufs / 2), so that data can always flow.
  std::uint16_t credit_reserve = 2;
  // A write of at least this many bytes goes by ZCopy (SrcAvail / RDMA); 0 turns ZCopy off.
  std::uint32_t zcopy_threshold = 64 * 1024;
  // Inline bytes sent with a Combined-mode SrcAvail (at least 1 by the annex's rule).
  std::uint32_t zcopy_inline = 64;
  // Accept the peer's SrcAvail and pull by RDMA READ; if false, answer SendSm (peer sends BCopy).
  bool accept_zcopy = true;
  // As a data sink, ask for Pipelined mode (REQ_PIPE) and advertise SinkAvail windows.
  bool sink_adverts = false;
  // As a data source, follow a sink's REQ_PIPE (ModeChange to Pipelined, RDMA WRITE to SinkAvail).
  bool allow_pipelined = true;
  // Staging area for data pulled or pushed by RDMA on the receive side.
  std::uint32_t zcopy_staging = 512 * 1024;
  std::uint32_t zcopy_chunk = 128 * 1024;  // largest single RDMA READ / SinkAvail window
  std::uint8_t max_adverts = 1;
  // Receive size we ask the peer to switch to with ChRcvBuf after setup (0: never ask).
  std::uint32_t desired_peer_recv_size = 0;
  // Timers (milliseconds of the clock given to tick()).
  std::uint32_t keepalive_idle_ms = 0;          // 0: keepalive off
  std::uint32_t zcopy_cancel_ms = 1000;         // advert with no progress -> cancel it
  std::uint32_t cancel_response_ms = 60000;     // cancel unanswered -> reset
  std::uint32_t disconnect_timeout_ms = 60000;  // DisConn/DREQ unanswered -> reset
  // Deliver urgent bytes in the normal stream instead of holding them for read_oob().
  bool oob_inline = false;
};

// Minimum receive size we accept from a peer: every control message must fit.
inline constexpr std::uint32_t kMinRecvSize = 64;
inline constexpr std::uint8_t kVersionMajor = 2;
inline constexpr std::uint8_t kVersionMinor = 2;

enum class Role : std::uint8_t { Active, Passive };

enum class State : std::uint8_t {
  Idle,         // created
  HelloSent,    // active: Hello built, waiting for HelloAck
  Established,  // data may flow (half-closes tracked separately)
  Closing,      // both DisConns exchanged, CM disconnect in progress
  Closed,       // clean end
  Reset,        // abortive end (see reset_reason())
};
std::string_view state_name(State s) noexcept;

enum class ActionType : std::uint8_t {
  RegisterRegion,    // region id, addr, len, remote flags; remote ones need on_region_registered
  DeregisterRegion,  // region id
  PostRecv,          // wr_id, addr, len
  PostSend,          // wr_id, addr, len, solicited, signaled
  RdmaRead,          // wr_id, local addr, len, remote va, rkey
  RdmaWrite,         // wr_id, local addr, len, remote va, rkey
  Keepalive,         // zero-length unsignalled RDMA WRITE (no SGE, VA/R_Key 0)
  Established,       // connection usable
  CmDisconnect,      // send CM DREQ (or answer it with DREP)
  Closed,            // clean close finished: release the QP
  Reset,             // abortive close: release the QP; reason in reset_reason()
  ZcopyDone,         // the zero-copy application buffer given to send() may be reused
};
std::string_view action_name(ActionType t) noexcept;

namespace access {
inline constexpr std::uint8_t kLocal = 0;
inline constexpr std::uint8_t kRemoteRead = 1;
inline constexpr std::uint8_t kRemoteWrite = 2;
}  // namespace access

struct Action {
  ActionType type{};
  std::uint8_t access = 0;  // RegisterRegion
  bool solicited = false;   // PostSend
  std::uint32_t len = 0;
  std::uint64_t id = 0;  // wr_id, or region id
  std::uint8_t* addr = nullptr;
  std::uint64_t remote_va = 0;
  std::uint32_t rkey = 0;
  // PostSend: ask for a send completion. Unsignaled sends get none; on an RC QP the completion
  // of a signaled send also completes every send posted before it (on_send_complete frees them).
  bool signaled = true;
};

// Why a connection was reset, in the errno spirit of the socket layer.
enum class ResetCause : std::uint8_t {
  None,
  PeerAbort,          // AbortConn, CM DREQ before DisConn, or transport error: ECONNRESET
  ProtocolViolation,  // the peer broke a rule; we sent AbortConn: ECONNRESET (EPROTO in stats)
  LocalAbort,         // abort() called
  Timeout,            // a timer expired (cancel unanswered, disconnect unanswered): ETIMEDOUT
  TransportError,     // a completion with error status: ECONNRESET
};

struct Stats {
  std::uint64_t bytes_sent = 0, bytes_received = 0;  // ULP bytes
  std::uint64_t bcopy_bytes_sent = 0, zcopy_bytes_sent = 0;
  std::uint64_t bcopy_bytes_received = 0, zcopy_bytes_received = 0;
  std::uint64_t messages_sent[256] = {}, messages_received[256] = {};  // by MID
  std::uint64_t credit_updates_sent = 0;
  std::uint64_t rdma_reads = 0, rdma_writes = 0;
  std::uint32_t credits_min = UINT32_MAX, credits_max = 0;  // our send credits seen at post time
};

// Result of an application call. `error` is 0 or an errno value (EAGAIN, EPIPE, ECONNRESET, ...).
struct IoResult {
  std::size_t bytes = 0;
  int error = 0;
  bool eof = false;    // read: the peer's DisConn was reached (bytes == 0)
  bool zcopy = false;  // send: the buffer is pinned until a ZcopyDone action
};

class Engine {
 public:
  Engine(Role role, const EngineConfig& cfg = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // --- connection setup -------------------------------------------------------------------
  // Active side: posts receives and builds the Hello for the CM REQ private data. `compact` selects
  // the IP CM service form (32 bytes). src/dst IP are 16-byte fields (IPv4 in the last 4 bytes).
  struct HelloParams {
    std::uint8_t ip_version = wire::kIpv4;
    std::uint16_t local_port = 0;
    std::array<std::uint8_t, 16> src_ip{};
    std::array<std::uint8_t, 16> dst_ip{};
    bool compact = false;
  };
  std::span<const std::uint8_t> connect(const HelloParams& p);
  // Active side: the CM REP private data. On a bad HelloAck the engine resets and returns false.
  bool on_hello_ack(std::span<const std::uint8_t> rep_private_data);
  // Passive side: the CM REQ private data. On success returns the HelloAck for the CM REP (and the
  // connection is established); on failure returns an empty span and reject_reason() says why
  // (send a CM REJ).
  std::span<const std::uint8_t> accept(std::span<const std::uint8_t> req_private_data);
  std::string_view reject_reason() const noexcept { return reject_reason_; }
  // What the peer's Hello said (passive) — addresses, port, sizes.
  const wire::HelloHeader& peer_hello() const noexcept { return peer_hello_; }

  // --- completions from the fabric ---------------------------------------------------------
  void on_recv(std::uint64_t wr_id, std::uint32_t byte_len);
  // A signaled send finished: it and every send posted before it are complete.
  void on_send_complete(std::uint64_t wr_id);
  void on_rdma_complete(std::uint64_t wr_id);  // RDMA READ or WRITE we posted finished
  void on_completion_error(std::uint64_t wr_id, std::string_view what);
  void on_region_registered(std::uint64_t region_id, std::uint32_t rkey);
  // The CM said DREQ (or DREP for ours). Deliver it only after every completion the QP produced
  // before it, so that the peer's last messages (its DisConn) are seen first.
  void on_cm_disconnect();

  // --- application -------------------------------------------------------------------------
  // Queues bytes for sending. BCopy copies them and returns; a send of at least zcopy_threshold
  // bytes is ZCopy: the whole buffer is accepted, stays pinned, and must not change until the
  // ZcopyDone action. Returns EAGAIN when nothing can be taken now, EPIPE after shutdown_send.
  IoResult send(std::span<const std::uint8_t> data, bool oob = false);
  // Copies received stream bytes out. EAGAIN when none; eof at the peer's DisConn.
  IoResult recv(std::span<std::uint8_t> out, bool peek = false);
  // Urgent byte (when not oob_inline). EINVAL when none is pending.
  IoResult recv_oob(std::uint8_t& byte);
  bool at_oob_mark() const noexcept;
  bool oob_pending() const noexcept { return oob_byte_valid_; }
  std::size_t readable_bytes() const noexcept { return rx_ready_bytes_; }
  bool readable() const noexcept;  // recv would not return EAGAIN
  bool writable() const noexcept;  // send would take at least one byte
  void shutdown_send();            // DisConn after all queued data
  void shutdown_recv();            // further incoming data aborts the connection (RFC 1122)
  void close();                    // both, abortive if unread data remains
  void abort(std::string_view why = "aborted by the application");
  // Timers: `now_ms` is a monotonic clock. next_deadline_ms() is when tick() is next needed
  // (UINT64_MAX: never).
  void tick(std::uint64_t now_ms);
  std::uint64_t next_deadline_ms() const noexcept;

  // --- actions -----------------------------------------------------------------------------
  // Actions emitted so far, in order. The binding executes them, then calls clear_actions().
  // Engine calls made while executing them (on_region_registered, typically) append to the list:
  // walk it by index and clear once at the end (PipePair::drain shows how).
  std::span<const Action> actions() const noexcept { return actions_; }
  void clear_actions() noexcept { actions_.clear(); }

  // --- state -------------------------------------------------------------------------------
  Role role() const noexcept { return role_; }
  State state() const noexcept { return state_; }
  ResetCause reset_cause() const noexcept { return reset_cause_; }
  std::string_view reset_reason() const noexcept { return reset_reason_; }
  bool peer_closed_send() const noexcept { return rx_disconn_; }
  const Stats& stats() const noexcept { return stats_; }
  // Credits as the annex defines them: Bufs − (last sent MSeq − MSeqAck) from the peer's last BSDH.
  std::int64_t send_credits() const noexcept {
    return static_cast<std::int64_t>(peer_bufs_) -
           static_cast<std::int64_t>(static_cast<std::uint32_t>(tx_mseq_ - peer_ack_));
  }
  std::uint32_t peer_recv_size() const noexcept { return peer_rcv_sz_; }
  std::uint32_t local_recv_size() const noexcept { return local_rcv_sz_; }
  std::uint32_t posted_recvs() const noexcept { return rx_posted_; }
  wire::Mode send_mode() const noexcept { return tx_mode_; }
  wire::Mode recv_mode() const noexcept { return rx_mode_; }
  bool zcopy_busy() const noexcept;

 private:
  // ---- send rings ----
  struct TxSlot {
    std::uint32_t len = 0;  // payload bytes (Data) or inline bytes (SrcAvail)
    std::uint8_t flags = 0;
    bool sealed = false;
  };
  // Pending control messages, sent in this order when credits allow.
  struct PendingCtrl {
    enum : std::uint16_t {
      kChRcvBufAck = 1U << 0,
      kRdCompl = 1U << 1,  // rdma_rd_compl bytes read and not yet reported
      kSendSm = 1U << 2,
      kSinkCancelAck = 1U << 3,
      kWrCompl = 1U << 4,  // rdma_wr_compl bytes written
      kModeChange = 1U << 5,
      kSrcAvailCancel = 1U << 6,
      kSinkAvailCancel = 1U << 7,
      kChRcvBuf = 1U << 8,
      kSinkAvail = 1U << 9,
    };
    std::uint16_t bits = 0;
    std::uint32_t chrcvbuf_ack_size = 0;
    std::uint32_t rdma_rd_compl = 0;
    std::uint32_t rdma_wr_compl = 0;
    wire::ModeChangeHeader mode{};
    bool any() const noexcept { return bits != 0; }
    bool has(std::uint16_t b) const noexcept { return (bits & b) != 0; }
    void set(std::uint16_t b) noexcept { bits = static_cast<std::uint16_t>(bits | b); }
    void clear(std::uint16_t b) noexcept { bits = static_cast<std::uint16_t>(bits & ~b); }
  };
  // ZCopy source: one application buffer being sent by SrcAvail/RDMA READ or RDMA WRITE.
  struct ZcopySource {
    bool active = false;
    const std::uint8_t* buf = nullptr;
    std::uint32_t len = 0;
    std::uint32_t done = 0;  // bytes the sink has (inline + read + written + bcopy fallback)
    bool fallback = false;   // SendSm/cancel: the rest goes by BCopy
    // current SrcAvail advert
    bool advertised = false;   // SrcAvail posted, not finished
    bool adv_pending = false;  // waiting for registration / credits to post SrcAvail
    std::uint64_t region = 0;  // region id of the current grant (0: none)
    std::uint32_t rkey = 0;
    bool rkey_ready = false;
    std::uint32_t adv_off = 0;  // offset of the advert's byte 0 in buf
    std::uint32_t adv_len = 0;  // SrcAH.Len
    std::uint32_t adv_inline = 0;
    std::uint32_t reported = 0;  // RdmaRdCompl bytes for this advert
    std::uint32_t adv_mseq = 0;  // MSeq of the SrcAvail
    bool cancel_sent = false;
    std::uint32_t cancel_mseq = 0;
    std::uint64_t deadline = UINT64_MAX;
    // RDMA WRITE into a SinkAvail
    bool writing = false;
    std::uint32_t write_len = 0;
  };
  // A SinkAvail the peer gave us (we are the source).
  struct PeerSinkAdvert {
    bool valid = false;
    std::uint32_t len = 0, rkey = 0;
    std::uint64_t va = 0;
  };
  // A SrcAvail the peer gave us (we are the sink).
  struct PeerSrcAdvert {
    bool active = false;
    std::uint32_t mseq = 0;
    std::uint64_t va = 0;
    std::uint32_t rkey = 0;
    std::uint32_t remote_len = 0;  // bytes to RDMA-read (SrcAH.Len minus inline)
    std::uint32_t issued = 0;      // bytes of reads posted
    std::uint32_t completed = 0;   // bytes of reads completed
    bool cancelled = false;        // SrcAvailCancel received
  };
  // Our SinkAvail (we are the sink).
  struct OwnSinkAdvert {
    bool outstanding = false;
    bool cancel_sent = false;
    std::uint32_t chunk = 0;  // staging chunk it points at
    std::uint32_t len = 0;
    std::uint64_t region = 0;
    std::uint32_t rkey = 0;
    bool rkey_ready = false;
    std::uint64_t deadline = UINT64_MAX;
  };
  // One readable piece of the receive stream.
  struct RxEntry {
    std::uint8_t* data = nullptr;
    std::uint32_t len = 0;
    std::uint32_t slot = 0;  // receive slot, or kStagingEntry | chunk
  };
  struct InflightRead {
    std::uint32_t chunk = 0, len = 0;
  };

  void post_initial_recvs();
  void adopt_peer_setup(std::uint32_t peer_rcv_sz, std::uint16_t bufs, std::uint8_t max_adverts);
  void post_recv(std::uint32_t slot);
  void pump();
  bool send_credit_ok(bool data) const noexcept;
  bool post_ctrl(wire::Mid mid, const wire::ExtHeader& ext, std::uint8_t flags = 0);
  void post_tx(std::uint8_t* buf, std::uint32_t len, std::uint64_t wr_id, std::uint8_t mid,
               std::uint8_t flags, bool solicited, bool signaled = true);
  void post_pending_ctrl();
  void post_data_slots();
  void post_data_slot();
  bool data_send_signaled() const noexcept;
  void maybe_credit_update();
  // What the peer believes of our buffers: our last Bufs − (its MSeq since our last MSeqAck).
  std::int64_t peer_believed_credits() const noexcept {
    return static_cast<std::int64_t>(adv_bufs_) -
           static_cast<std::int64_t>(static_cast<std::uint32_t>(rx_mseq_ - adv_ack_));
  }
  std::uint32_t max_payload() const noexcept {
    return std::min(peer_rcv_sz_, cfg_.send_slot_size) -
           static_cast<std::uint32_t>(wire::kBsdhSize);
  }
  void handle_message(std::uint32_t slot, std::span<const std::uint8_t> msg);
  void handle_data(std::uint32_t slot, const wire::Message& m);
  void handle_src_avail(std::uint32_t slot, const wire::Message& m);
  void handle_sink_avail(std::uint32_t slot, const wire::Message& m);
  bool accept_stream_payload(std::uint32_t slot, const wire::Message& m, std::size_t hdr_len);
  std::size_t copy_into_ring(const std::uint8_t* src, std::size_t n, bool oob);
  // Bytes in the slot being filled (0 when the ring is full or the slot is empty).
  std::uint32_t open_len() const noexcept {
    return tx_fill_ - tx_done_ >= tx_n_ ? 0 : tx_slots_[tx_fill_ & tx_mask_].len;
  }
  void handle_rdma_rd_compl(const wire::Message& m);
  void handle_rdma_wr_compl(const wire::Message& m);
  void handle_send_sm(const wire::Message& m);
  void handle_src_avail_cancel();
  void handle_sink_avail_cancel();
  void handle_sink_cancel_ack();
  void handle_mode_change(const wire::Message& m);
  void handle_chrcvbuf(const wire::Message& m);
  void handle_chrcvbuf_ack(const wire::Message& m);
  void handle_disconn();
  void violation(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
  void do_reset(ResetCause cause, std::string_view why, bool send_abort);
  void emit(const Action& a) { actions_.push_back(a); }
  // An action with no buffer: state changes, keepalive, or a region id to deregister.
  void emit_simple(ActionType t, std::uint64_t id = 0) {
    emit({t, 0, false, 0, id, nullptr, 0, 0});
  }
  void finish_close();
  void set_established();
  void push_rx(std::uint8_t* data, std::uint32_t len, std::uint32_t slot);
  void start_rdma_reads();
  void maybe_advertise_sink();
  void release_own_sink_advert();
  void zcopy_start_advert();
  void zcopy_end_grant();
  void zcopy_after_progress();
  void zcopy_fallback_copy();
  void zcopy_try_write();
  void check_close_progress();
  bool tx_idle() const noexcept;
  std::uint64_t new_region_id() noexcept { return ++region_seq_; }

  Role role_;
  EngineConfig cfg_;
  State state_ = State::Idle;
  ResetCause reset_cause_ = ResetCause::None;
  std::string reset_reason_;
  std::string reject_reason_;
  std::vector<Action> actions_;
  Stats stats_;
  std::uint64_t region_seq_ = 16;  // ids <= 16 name the fixed pools

  // Negotiated
  wire::HelloHeader peer_hello_{};
  std::uint32_t peer_rcv_sz_ = 0;   // largest message the peer accepts
  std::uint32_t local_rcv_sz_ = 0;  // largest message the peer may send us
  std::uint8_t peer_max_adverts_ = 1;
  bool chrcvbuf_requested_ = false;
  std::array<std::uint8_t, wire::kHelloAckMessageSize> cm_buf_{};

  // Credits / sequence
  std::uint32_t tx_mseq_ = 0;          // MSeq of the last message we sent
  std::uint32_t rx_mseq_ = 0;          // MSeq of the last message we received
  std::uint32_t peer_bufs_ = 0;        // Bufs from the peer's last BSDH
  std::uint32_t peer_ack_ = 0;         // MSeqAck from the peer's last BSDH
  std::uint32_t adv_bufs_ = 0;         // Bufs we last advertised
  std::uint32_t adv_ack_ = 0;          // MSeqAck we last sent
  std::uint32_t rx_posted_ = 0;        // receives posted and not completed
  std::uint32_t reserve_ = 0;          // credits data leaves for control messages
  std::int64_t update_threshold_ = 0;  // see maybe_credit_update()

  // Memory
  std::unique_ptr<std::uint8_t[]> rx_mem_, tx_mem_, ctrl_mem_, stg_mem_;
  std::uint32_t rx_buf_size_ = 0;             // physical size of each receive buffer
  std::vector<std::uint8_t> rx_slot_posted_;  // 1 while a receive buffer is posted
  std::vector<TxSlot> tx_slots_;
  std::uint32_t tx_n_ = 0, tx_mask_ = 0;  // send ring size (a power of two) and its mask
  std::uint32_t tx_done_ = 0, tx_post_ = 0, tx_fill_ = 0;  // data ring counters
  std::uint32_t ctrl_done_ = 0, ctrl_post_ = 0;            // control ring counters
  PendingCtrl pend_;

  // Receive stream
  std::vector<RxEntry> rxq_;  // ring
  std::uint32_t rxq_head_ = 0, rxq_tail_ = 0, rxq_mask_ = 0;
  std::uint32_t rxq_off_ = 0;  // bytes of the head entry already read
  std::size_t rx_ready_bytes_ = 0;
  bool rx_disconn_ = false;
  bool rx_shut_ = false;
  bool oob_byte_valid_ = false;
  std::uint8_t oob_byte_ = 0;
  std::uint64_t oob_mark_ = 0;
  std::uint64_t rx_consumed_ = 0;
  std::uint64_t rx_stream_ = 0;

  // ZCopy
  ZcopySource zs_;
  PeerSinkAdvert peer_sink_;
  PeerSrcAdvert peer_src_;
  OwnSinkAdvert own_sink_;
  std::uint32_t stg_chunks_ = 0;
  std::uint32_t stg_head_ = 0, stg_tail_ = 0;  // chunk counters: oldest in use, next free
  std::vector<InflightRead> reads_;            // FIFO of RDMA READs in flight
  std::uint32_t reads_head_ = 0, reads_tail_ = 0, reads_mask_ = 0;
  bool want_pipelined_ = false;  // source: the sink asked (REQ_PIPE)
  bool sink_flow_ = false;       // sink: zero-copy traffic seen, worth advertising

  // Send side / close
  bool tx_shut_ = false;
  bool tx_disconn_sent_ = false;
  bool disconn_first_ = false;
  bool dreq_sent_ = false;
  std::uint64_t data_msgs_sent_ = 0;
  std::uint64_t data_msgs_received_ = 0;
  wire::Mode tx_mode_ = wire::Mode::Combined;
  wire::Mode rx_mode_ = wire::Mode::Combined;

  // Timers
  std::uint64_t now_ms_ = 0;
  std::uint64_t last_activity_ms_ = 0;
  std::uint64_t close_deadline_ms_ = UINT64_MAX;
};

}  // namespace sdp

// SDP connection engine: see sdp/engine.hpp for the model, docs/engine.md for the rules applied.
#include "sdp/engine.hpp"

#include "sdp/bytes.hpp"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace sdp {

namespace {

constexpr std::uint32_t kCtrlSlots = 32;
constexpr std::uint32_t kCtrlSlotSize = 64;  // largest control message: SinkAvail, 36 bytes
constexpr unsigned kTagShift = 60;
constexpr std::uint64_t kTagData = 1ULL << kTagShift;
constexpr std::uint64_t kTagCtrl = 2ULL << kTagShift;
constexpr std::uint64_t kTagRead = 3ULL << kTagShift;
constexpr std::uint64_t kTagWrite = 4ULL << kTagShift;
constexpr std::uint64_t kTagMask = 0xFULL << kTagShift;
constexpr std::uint32_t kStagingEntry = 0x8000'0000U;
// Fixed region ids for the engine's pools.
constexpr std::uint64_t kRegionRx = 1, kRegionTx = 2, kRegionCtrl = 3, kRegionStaging = 4;

using be::put16;
using be::put32;
using be::put64;

void check_config(const EngineConfig& c) {
  auto fail = [](const char* what) { throw std::invalid_argument(what); };
  if (c.recv_size < kMinRecvSize) fail("EngineConfig.recv_size must be >= 64");
  if (c.max_recv_size < c.recv_size) fail("EngineConfig.max_recv_size must be >= recv_size");
  if (c.credit_reserve == 0) fail("EngineConfig.credit_reserve must be >= 1 (CA4-82)");
  if (c.recv_bufs < c.credit_reserve + 2U)
    fail("EngineConfig.recv_bufs must exceed credit_reserve + 1");
  if (c.send_slots < 2) fail("EngineConfig.send_slots must be >= 2");
  if (c.send_slot_size < kMinRecvSize) fail("EngineConfig.send_slot_size must be >= 64");
  if (c.zcopy_threshold == 1) fail("EngineConfig.zcopy_threshold must be 0 (off) or >= 2");
  if (c.zcopy_inline == 0) fail("EngineConfig.zcopy_inline must be >= 1");
  if (c.zcopy_chunk == 0 || c.zcopy_staging < c.zcopy_chunk)
    fail("EngineConfig.zcopy_staging must hold at least one zcopy_chunk");
  if (c.max_adverts == 0) fail("EngineConfig.max_adverts must be >= 1");
}

}  // namespace

std::string_view state_name(State s) noexcept {
  switch (s) {
    case State::Idle:
      return "Idle";
    case State::HelloSent:
      return "HelloSent";
    case State::Established:
      return "Established";
    case State::Closing:
      return "Closing";
    case State::Closed:
      return "Closed";
    case State::Reset:
      return "Reset";
  }
  return "?";
}

std::string_view action_name(ActionType t) noexcept {
  switch (t) {
    case ActionType::RegisterRegion:
      return "RegisterRegion";
    case ActionType::DeregisterRegion:
      return "DeregisterRegion";
    case ActionType::PostRecv:
      return "PostRecv";
    case ActionType::PostSend:
      return "PostSend";
    case ActionType::RdmaRead:
      return "RdmaRead";
    case ActionType::RdmaWrite:
      return "RdmaWrite";
    case ActionType::Keepalive:
      return "Keepalive";
    case ActionType::Established:
      return "Established";
    case ActionType::CmDisconnect:
      return "CmDisconnect";
    case ActionType::Closed:
      return "Closed";
    case ActionType::Reset:
      return "Reset";
    case ActionType::ZcopyDone:
      return "ZcopyDone";
  }
  return "?";
}

Engine::Engine(Role role, const EngineConfig& cfg) : role_(role), cfg_(cfg) {
  check_config(cfg_);
  const std::int64_t b = cfg_.recv_bufs;
  update_threshold_ =
      std::max<std::int64_t>(b / 2, std::min<std::int64_t>(cfg_.credit_reserve, b - 2));
  actions_.reserve(64);
}

Engine::~Engine() = default;

// ---------------------------------------------------------------------------------------------
// Setup

void Engine::post_initial_recvs() {
  rx_buf_size_ = cfg_.max_recv_size;
  const std::size_t rx_bytes = std::size_t{cfg_.recv_bufs} * rx_buf_size_;
  rx_mem_ = std::make_unique<std::uint8_t[]>(rx_bytes);
  emit({ActionType::RegisterRegion, access::kLocal, false, static_cast<std::uint32_t>(rx_bytes),
        kRegionRx, rx_mem_.get(), 0, 0});
  // Rings are powers of two so that every index is a mask, not a division, on the hot path.
  tx_n_ = std::bit_ceil(std::uint32_t{cfg_.send_slots});
  tx_mask_ = tx_n_ - 1;
  const std::size_t tx_bytes = std::size_t{tx_n_} * cfg_.send_slot_size;
  tx_mem_ = std::make_unique<std::uint8_t[]>(tx_bytes);
  tx_slots_.assign(tx_n_, TxSlot{});
  emit({ActionType::RegisterRegion, access::kLocal, false, static_cast<std::uint32_t>(tx_bytes),
        kRegionTx, tx_mem_.get(), 0, 0});
  ctrl_mem_ = std::make_unique<std::uint8_t[]>(std::size_t{kCtrlSlots} * kCtrlSlotSize);
  emit({ActionType::RegisterRegion, access::kLocal, false, kCtrlSlots * kCtrlSlotSize, kRegionCtrl,
        ctrl_mem_.get(), 0, 0});
  if (cfg_.accept_zcopy || cfg_.sink_adverts) {  // staging serves the sink side only
    stg_chunks_ = cfg_.zcopy_staging / cfg_.zcopy_chunk;
    const std::size_t stg_bytes = std::size_t{stg_chunks_} * cfg_.zcopy_chunk;
    stg_mem_ = std::make_unique<std::uint8_t[]>(stg_bytes);
    emit({ActionType::RegisterRegion, access::kLocal, false, static_cast<std::uint32_t>(stg_bytes),
          kRegionStaging, stg_mem_.get(), 0, 0});
  }
  rx_slot_posted_.assign(cfg_.recv_bufs, 0);
  rxq_.assign(std::bit_ceil(cfg_.recv_bufs + stg_chunks_ + 2U), RxEntry{});
  rxq_mask_ = static_cast<std::uint32_t>(rxq_.size() - 1);
  reads_.assign(std::bit_ceil(stg_chunks_ + 1U), InflightRead{});
  reads_mask_ = static_cast<std::uint32_t>(reads_.size() - 1);
  for (std::uint32_t i = 0; i < cfg_.recv_bufs; ++i) post_recv(i);
}

void Engine::post_recv(std::uint32_t slot) {
  emit({ActionType::PostRecv, 0, false, rx_buf_size_, slot,
        rx_mem_.get() + std::size_t{slot} * rx_buf_size_, 0, 0});
  rx_slot_posted_[slot] = 1;
  ++rx_posted_;
}

std::span<const std::uint8_t> Engine::connect(const HelloParams& p) {
  if (role_ != Role::Active || state_ != State::Idle)
    throw std::logic_error("Engine::connect: only once, on an active engine");
  post_initial_recvs();
  local_rcv_sz_ = cfg_.recv_size;
  wire::Bsdh b{};
  b.mid = static_cast<std::uint8_t>(wire::Mid::Hello);
  b.bufs = static_cast<std::uint16_t>(rx_posted_);
  wire::HelloHeader hh{};
  hh.major = kVersionMajor;
  hh.minor = kVersionMinor;
  hh.ip_version = p.ip_version;
  hh.max_adverts = cfg_.max_adverts;
  hh.des_rem_rcv_sz = cfg_.send_slot_size;
  hh.local_rcv_sz = cfg_.recv_size;
  hh.local_port = p.local_port;
  hh.src_ip = p.src_ip;
  hh.dst_ip = p.dst_ip;
  auto r = wire::encode_hello(b, hh, p.compact, cm_buf_);
  if (!r) throw std::invalid_argument(std::string(r.error().reason()));
  adv_bufs_ = rx_posted_;
  adv_ack_ = 0;
  stats_.messages_sent[0]++;
  state_ = State::HelloSent;
  return {cm_buf_.data(), *r};
}

namespace {

// Checks what Hello and HelloAck have in common; false with `why` filled when the peer's setup
// message must be refused. `what` names the message, `size_name` its receive-size field.
bool setup_acceptable(const char* what, const char* size_name, const wire::Bsdh& b,
                      std::uint8_t major, std::uint8_t minor, std::uint32_t rcv_sz,
                      std::span<char> why) {
  if (major != kVersionMajor) {
    std::snprintf(why.data(), why.size(), "%s version %u.%u unsupported (need %u.x)", what, major,
                  minor, kVersionMajor);
  } else if (rcv_sz < kMinRecvSize) {
    std::snprintf(why.data(), why.size(), "%s %s %u below the %u-byte minimum", what, size_name,
                  rcv_sz, kMinRecvSize);
  } else if (b.bufs < 2) {
    std::snprintf(why.data(), why.size(),
                  "%s advertises %u receive buffers: data needs at least 2 (CA4-82)", what, b.bufs);
  } else if (b.mseq != 0 || b.mseq_ack != 0) {
    std::snprintf(why.data(), why.size(), "%s MSeq/MSeqAck must be 0 (got %u/%u)", what, b.mseq,
                  b.mseq_ack);
  } else {
    return true;
  }
  return false;
}

}  // namespace

void Engine::adopt_peer_setup(std::uint32_t peer_rcv_sz, std::uint16_t bufs,
                              std::uint8_t max_adverts) {
  peer_rcv_sz_ = peer_rcv_sz;
  peer_bufs_ = bufs;
  reserve_ = std::clamp<std::uint32_t>(peer_bufs_ / 2, 1, cfg_.credit_reserve);
  peer_max_adverts_ = std::max<std::uint8_t>(max_adverts, 1);
}

bool Engine::on_hello_ack(std::span<const std::uint8_t> pd) {
  if (state_ != State::HelloSent) return false;
  auto r = wire::decode_hello_ack(pd);
  char why[160];
  if (!r) {
    std::snprintf(why, sizeof why, "bad HelloAck: %s", r.error().text.data());
  } else if (setup_acceptable("HelloAck", "ActRcvSz", r->bsdh, r->hah.major, r->hah.minor,
                              r->hah.act_rcv_sz, why)) {
    adopt_peer_setup(r->hah.act_rcv_sz, r->bsdh.bufs, r->hah.max_adverts);
    stats_.messages_received[1]++;
    set_established();
    return true;
  }
  do_reset(ResetCause::ProtocolViolation, why, false);
  return false;
}

std::span<const std::uint8_t> Engine::accept(std::span<const std::uint8_t> pd) {
  if (role_ != Role::Passive || state_ != State::Idle)
    throw std::logic_error("Engine::accept: only once, on a passive engine");
  auto r = wire::decode_hello(pd);
  char why[160];
  if (!r) {
    std::snprintf(why, sizeof why, "bad Hello: %s", r.error().text.data());
  } else if (setup_acceptable("Hello", "LocalRcvSz", r->bsdh, r->hh.major, r->hh.minor,
                              r->hh.local_rcv_sz, why)) {
    peer_hello_ = r->hh;
    adopt_peer_setup(r->hh.local_rcv_sz, r->bsdh.bufs, r->hh.max_adverts);
    // Honour the requester's desired size for our buffers within what we allocate.
    std::uint32_t act = cfg_.recv_size;
    if (r->hh.des_rem_rcv_sz != 0)
      act = std::clamp(r->hh.des_rem_rcv_sz, kMinRecvSize, cfg_.max_recv_size);
    local_rcv_sz_ = act;
    stats_.messages_received[0]++;
    post_initial_recvs();
    wire::Bsdh b{};
    b.mid = static_cast<std::uint8_t>(wire::Mid::HelloAck);
    b.bufs = static_cast<std::uint16_t>(rx_posted_);
    wire::HelloAckHeader hah{};
    hah.major = kVersionMajor;
    hah.minor = kVersionMinor;
    hah.max_adverts = cfg_.max_adverts;
    hah.act_rcv_sz = local_rcv_sz_;
    auto e = wire::encode_hello_ack(b, hah, cm_buf_);
    if (!e) throw std::logic_error(std::string(e.error().reason()));
    adv_bufs_ = rx_posted_;
    adv_ack_ = 0;
    stats_.messages_sent[1]++;
    set_established();
    return {cm_buf_.data(), *e};
  }
  reject_reason_ = why;
  state_ = State::Reset;
  reset_cause_ = ResetCause::ProtocolViolation;
  reset_reason_ = why;
  return {};
}

void Engine::set_established() {
  state_ = State::Established;
  last_activity_ms_ = now_ms_;
  emit_simple(ActionType::Established);
  if (cfg_.desired_peer_recv_size > peer_rcv_sz_) pend_.set(PendingCtrl::kChRcvBuf);
  pump();
}

// ---------------------------------------------------------------------------------------------
// Credits

// Data (and SrcAvail) keep `credit_reserve` credits back for control messages (fewer when the
// peer posts few buffers: reserve_ = clamp(peer's initial Bufs / 2, 1, credit_reserve); never 0,
// so that data never takes the last credit, CA4-82). A control message
// needs 2 credits, or 1 if it gives the peer more credits than it knows of (CA4-82).
bool Engine::send_credit_ok(bool data) const noexcept {
  const std::int64_t c = send_credits();
#ifdef SDP_TEST_BREAK_CREDIT_RULE
  // Test-only build (conformance/CMakeLists.txt, sdp-conformance-broken): data may take the last
  // credit, breaking CA4-82, so that the conformance suite can prove it catches it.
  if (data) return c >= 1;
#endif
  if (data) return c > reserve_;
  return c >= 2 || (c == 1 && static_cast<std::int64_t>(rx_posted_) > peer_believed_credits());
}

void Engine::post_tx(std::uint8_t* buf, std::uint32_t len, std::uint64_t wr_id, std::uint8_t mid,
                     std::uint8_t flags, bool solicited, bool signaled) {
  const std::int64_t c = send_credits();
  const auto cu = static_cast<std::uint32_t>(std::max<std::int64_t>(c, 0));
  stats_.credits_min = std::min(stats_.credits_min, cu);
  stats_.credits_max = std::max(stats_.credits_max, cu);
  const std::uint32_t bufs = std::min<std::uint32_t>(rx_posted_, 0xFFFF);
  buf[0] = mid;
  buf[1] = flags;
  put16(buf + 2, static_cast<std::uint16_t>(bufs));
  put32(buf + 4, len);
  put32(buf + 8, ++tx_mseq_);
  put32(buf + 12, rx_mseq_);
  adv_bufs_ = bufs;
  adv_ack_ = rx_mseq_;
  stats_.messages_sent[mid]++;
  last_activity_ms_ = now_ms_;
  Action a{ActionType::PostSend, 0, solicited, len, wr_id, buf, 0, 0};
  a.signaled = signaled;
  emit(a);
}

bool Engine::post_ctrl(wire::Mid mid, const wire::ExtHeader& ext, std::uint8_t flags) {
  if (ctrl_post_ - ctrl_done_ >= kCtrlSlots) return false;
  std::uint8_t* buf = ctrl_mem_.get() + std::size_t{ctrl_post_ % kCtrlSlots} * kCtrlSlotSize;
  wire::Message m{};
  m.bsdh.mid = static_cast<std::uint8_t>(mid);
  m.ext = ext;
  auto r = wire::encode_message(m, {buf, kCtrlSlotSize});
  if (!r) throw std::logic_error(std::string(r.error().reason()));
  const bool solicited = mid != wire::Mid::Data && mid != wire::Mid::DisConn;
  post_tx(buf, static_cast<std::uint32_t>(*r), kTagCtrl | ctrl_post_,
          static_cast<std::uint8_t>(mid), flags, solicited);
  ++ctrl_post_;
  return true;
}

// A credit update (empty Data) goes out when it gives the peer at least 2 credits it does not know
// of and the peer believes it has at most T credits, T = max(B / 2, min(credit_reserve, B − 2))
// for our B receive buffers:
//  - no stall: a peer whose data reserve is at most T gets an update whenever it is stuck and our
//    application has read everything (then posted = B, and B − T >= 2). Our own engines keep a
//    reserve <= B / 2; OFED's 2 and gen1's 3 fit once B >= 4 or 6.
//  - no ping-pong: a received update leaves a gap of exactly 1 (the buffer it used), which is
//    not enough to answer it.
void Engine::maybe_credit_update() {
  if (state_ != State::Established) return;
  const std::int64_t believed = peer_believed_credits();
  if (static_cast<std::int64_t>(rx_posted_) - believed < 2 || believed > update_threshold_) return;
  if (send_credits() < 1) return;  // with exactly 1, this message adds credits: allowed
  if (post_ctrl(wire::Mid::Data, std::monostate{})) stats_.credit_updates_sent++;
}

// ---------------------------------------------------------------------------------------------
// Sending

void Engine::post_pending_ctrl() {
  auto ok = [this] { return send_credit_ok(false) && ctrl_post_ - ctrl_done_ < kCtrlSlots; };
  if (pend_.has(PendingCtrl::kChRcvBufAck) && ok()) {
    post_ctrl(wire::Mid::ChRcvBufAck, wire::ChRcvBufAckHeader{pend_.chrcvbuf_ack_size});
    pend_.clear(PendingCtrl::kChRcvBufAck);
  }
  if (pend_.has(PendingCtrl::kRdCompl) && ok()) {
    const bool req_pipe = cfg_.sink_adverts && rx_mode_ == wire::Mode::Combined;
    post_ctrl(wire::Mid::RdmaRdCompl, wire::RdmaRdComplHeader{pend_.rdma_rd_compl},
              req_pipe ? wire::flags::kReqPipe : 0);
    pend_.clear(PendingCtrl::kRdCompl);
    pend_.rdma_rd_compl = 0;
  }
  if (pend_.has(PendingCtrl::kSendSm) && !pend_.has(PendingCtrl::kRdCompl) && ok()) {
    post_ctrl(wire::Mid::SendSm, std::monostate{});
    pend_.clear(PendingCtrl::kSendSm);
  }
  if (pend_.has(PendingCtrl::kSinkCancelAck) && ok()) {
    post_ctrl(wire::Mid::SinkCancelAck, std::monostate{});
    pend_.clear(PendingCtrl::kSinkCancelAck);
  }
  if (pend_.has(PendingCtrl::kWrCompl) && ok()) {
    post_ctrl(wire::Mid::RdmaWrCompl, wire::RdmaWrComplHeader{pend_.rdma_wr_compl});
    pend_.clear(PendingCtrl::kWrCompl);
    pend_.rdma_wr_compl = 0;
  }
  if (pend_.has(PendingCtrl::kModeChange) && ok()) {
    post_ctrl(wire::Mid::ModeChange, pend_.mode);
    pend_.clear(PendingCtrl::kModeChange);
    if (!pend_.mode.send_half) tx_mode_ = pend_.mode.mode;  // the peer's receive half = our send
  }
  if (pend_.has(PendingCtrl::kSrcAvailCancel) && ok()) {
    post_ctrl(wire::Mid::SrcAvailCancel, std::monostate{});
    pend_.clear(PendingCtrl::kSrcAvailCancel);
    zs_.cancel_mseq = tx_mseq_;
  }
  if (pend_.has(PendingCtrl::kSinkAvailCancel) && ok()) {
    post_ctrl(wire::Mid::SinkAvailCancel, std::monostate{});
    pend_.clear(PendingCtrl::kSinkAvailCancel);
  }
  if (pend_.has(PendingCtrl::kChRcvBuf) && ok()) {
    post_ctrl(wire::Mid::ChRcvBuf, wire::ChRcvBufHeader{cfg_.desired_peer_recv_size});
    pend_.clear(PendingCtrl::kChRcvBuf);
    chrcvbuf_requested_ = true;
  }
  if (pend_.has(PendingCtrl::kSinkAvail) && own_sink_.rkey_ready && ok()) {
    wire::SinkAvailHeader h{};
    h.len = own_sink_.len;
    h.rkey = own_sink_.rkey;
    h.va = reinterpret_cast<std::uintptr_t>(
        stg_mem_.get() + std::size_t{own_sink_.chunk % stg_chunks_} * cfg_.zcopy_chunk);
    h.non_disc = static_cast<std::uint32_t>(data_msgs_received_);
    post_ctrl(wire::Mid::SinkAvail, h);
    pend_.clear(PendingCtrl::kSinkAvail);
    own_sink_.deadline = now_ms_ + cfg_.zcopy_cancel_ms;
  }
}

std::size_t Engine::copy_into_ring(const std::uint8_t* src, std::size_t n, bool oob) {
  const std::uint32_t nslots = tx_n_;
  const std::uint32_t maxp = max_payload();
  std::size_t done = 0;
  while (done < n) {
    if (tx_fill_ - tx_done_ >= nslots) break;
    TxSlot& s = tx_slots_[tx_fill_ & tx_mask_];
    const std::uint32_t room = maxp - s.len;
    if (room == 0 || s.flags != 0) {
      ++tx_fill_;
      continue;
    }
    const auto k = static_cast<std::uint32_t>(std::min<std::size_t>(room, n - done));
    std::memcpy(tx_mem_.get() + std::size_t{tx_fill_ & tx_mask_} * cfg_.send_slot_size +
                    wire::kBsdhSize + s.len,
                src + done, k);
    s.len += k;
    done += k;
    if (oob && done == n) {
      s.flags = wire::flags::kOobPres | wire::flags::kOobPend;
      ++tx_fill_;  // the urgent byte ends its message
    } else if (s.len == maxp) {
      ++tx_fill_;
    }
  }
  return done;
}

bool Engine::tx_idle() const noexcept {
  return tx_post_ == tx_fill_ && open_len() == 0 && !zs_.active;
}

// Data sends ask for a completion every 8th send, and whenever half the ring would otherwise be
// waiting for one: the ring never fills with sends nobody will report, and 7 in 8 completions
// (a CQE, a poll, a call) are saved, as verbs applications do with IBV_SEND_SIGNALED.
bool Engine::data_send_signaled() const noexcept {
  return (tx_post_ & 7U) == 7U || tx_post_ + 1 - tx_done_ >= tx_n_ / 2;
}

// Posts the sealed slot at tx_post_ as a Data message.
void Engine::post_data_slot() {
  TxSlot& s = tx_slots_[tx_post_ & tx_mask_];
  std::uint8_t* buf = tx_mem_.get() + std::size_t{tx_post_ & tx_mask_} * cfg_.send_slot_size;
  post_tx(buf, s.len + static_cast<std::uint32_t>(wire::kBsdhSize), kTagData | tx_post_, 0xFF,
          s.flags, (s.flags & wire::flags::kOobPres) != 0, data_send_signaled());
  stats_.bytes_sent += s.len;
  stats_.bcopy_bytes_sent += s.len;
  ++data_msgs_sent_;
  peer_sink_.valid = false;  // a Data message consumes the peer's pending SinkAvail
  ++tx_post_;
}

void Engine::post_data_slots() {
  for (;;) {
    if (zs_.advertised || zs_.writing) break;  // the stream continues after the advert
    if (!send_credit_ok(true)) break;          // queued bytes keep coalescing meanwhile
    if (tx_post_ == tx_fill_) {
      if (open_len() == 0) break;
      ++tx_fill_;  // credits are here: send the partly filled slot now (no Nagle)
    }
    post_data_slot();
  }
}

// Posts whatever the credits allow, in protocol order. Called after every event, so each step
// is guarded by a cheap test of whether it has anything to do.
void Engine::pump() {
  if (state_ != State::Established) return;
  if (pend_.any()) {
    post_pending_ctrl();
    if (state_ != State::Established) return;
  }
  if (zs_.active) zcopy_after_progress();
  if (tx_post_ != tx_fill_ || open_len() != 0) post_data_slots();
  if (zs_.active) zcopy_after_progress();  // a drained ring may let the advert go now
  if (want_pipelined_ && cfg_.allow_pipelined && tx_mode_ == wire::Mode::Combined && !zs_.active &&
      !pend_.has(PendingCtrl::kModeChange)) {
    pend_.mode = {false, wire::Mode::Pipelined};  // PIPE_RECV: the peer's receive half
    pend_.set(PendingCtrl::kModeChange);
    want_pipelined_ = false;
  }
  if (pend_.any()) post_pending_ctrl();  // what the steps above queued (RdmaWrCompl, ModeChange)
  if (tx_shut_ && !tx_disconn_sent_ && tx_idle() && !pend_.any() && send_credit_ok(false) &&
      post_ctrl(wire::Mid::DisConn, std::monostate{})) {
    tx_disconn_sent_ = true;
    disconn_first_ = !rx_disconn_;
    check_close_progress();
    if (state_ != State::Established) return;
  }
  maybe_credit_update();
}

IoResult Engine::send(std::span<const std::uint8_t> data, bool oob) {
  // Fast path, the common case of a small write on an idle stream: nothing queued or pending,
  // a free slot and a data credit. Exactly what the general path below would do, minus the
  // bookkeeping it needs for queued bytes.
  const std::size_t n = data.size();
  if (state_ == State::Established && !tx_shut_ && !oob && !zs_.active && pend_.bits == 0 &&
      tx_post_ == tx_fill_ && n != 0 && n <= max_payload() &&
      (cfg_.zcopy_threshold == 0 || n < cfg_.zcopy_threshold) && tx_fill_ - tx_done_ < tx_n_ &&
      tx_slots_[tx_fill_ & tx_mask_].len == 0 && send_credit_ok(true)) {
    TxSlot& slot = tx_slots_[tx_fill_ & tx_mask_];
    std::memcpy(
        tx_mem_.get() + std::size_t{tx_fill_ & tx_mask_} * cfg_.send_slot_size + wire::kBsdhSize,
        data.data(), n);
    slot.len = static_cast<std::uint32_t>(n);
    ++tx_fill_;
    post_data_slot();
    return {n, 0, false, false};
  }
  IoResult r{};
  switch (state_) {
    case State::Idle:
    case State::HelloSent:
      r.error = ENOTCONN;
      return r;
    case State::Reset:
      r.error = ECONNRESET;
      return r;
    case State::Closing:
    case State::Closed:
      r.error = EPIPE;
      return r;
    case State::Established:
      break;
  }
  if (tx_shut_) {
    r.error = EPIPE;
    return r;
  }
  if (data.empty()) return r;
  if (zs_.active) {
    r.error = EAGAIN;
    return r;
  }
  if (!oob && cfg_.zcopy_threshold != 0 && data.size() >= cfg_.zcopy_threshold &&
      data.size() <= UINT32_MAX) {
    zs_ = ZcopySource{};
    zs_.active = true;
    zs_.buf = data.data();
    zs_.len = static_cast<std::uint32_t>(data.size());
    r.bytes = data.size();
    r.zcopy = true;
    pump();
    return r;
  }
  // With oob, only the last byte is urgent: if the ring takes part of the data, the urgent byte
  // is marked when the caller sends the rest (oob again).
  r.bytes = copy_into_ring(data.data(), data.size(), oob);
  if (r.bytes == 0) r.error = EAGAIN;
  pump();
  return r;
}

// ---------------------------------------------------------------------------------------------
// ZCopy source

void Engine::zcopy_start_advert() {
  const std::uint32_t remaining = zs_.len - zs_.done;
  std::uint32_t inl = 0;
  if (tx_mode_ == wire::Mode::Combined) {
    if (remaining < 2) {
      zs_.fallback = true;  // SrcAH.Len must exceed the inline bytes: one byte goes by BCopy
      return;
    }
    inl = std::min({cfg_.zcopy_inline, remaining - 1,
                    max_payload() - static_cast<std::uint32_t>(wire::kSrcAvailHeaderSize)});
  }
  zs_.region = new_region_id();
  zs_.rkey_ready = false;
  zs_.adv_off = zs_.done;
  zs_.adv_len = remaining;
  zs_.adv_inline = inl;
  zs_.reported = 0;
  zs_.adv_pending = true;
  emit({ActionType::RegisterRegion, access::kRemoteRead, false, remaining, zs_.region,
        const_cast<std::uint8_t*>(zs_.buf + zs_.done), 0, 0});
}

void Engine::zcopy_end_grant() {
  if (zs_.region != 0) emit_simple(ActionType::DeregisterRegion, zs_.region);
  zs_.region = 0;
  zs_.rkey_ready = false;
  zs_.advertised = false;
  zs_.adv_pending = false;
  zs_.cancel_sent = false;
  zs_.deadline = UINT64_MAX;
}

void Engine::zcopy_try_write() {
  const std::uint32_t n = std::min(zs_.len - zs_.done, peer_sink_.len);
  zs_.region = new_region_id();
  emit({ActionType::RegisterRegion, access::kLocal, false, n, zs_.region,
        const_cast<std::uint8_t*>(zs_.buf + zs_.done), 0, 0});
  emit({ActionType::RdmaWrite, 0, false, n, kTagWrite | zs_.region,
        const_cast<std::uint8_t*>(zs_.buf + zs_.done), peer_sink_.va, peer_sink_.rkey});
  peer_sink_.valid = false;
  zs_.writing = true;
  zs_.write_len = n;
  pend_.rdma_wr_compl = n;  // posted after the WRITE: RC keeps them in order
  pend_.set(PendingCtrl::kWrCompl);
  stats_.rdma_writes++;
}

void Engine::zcopy_fallback_copy() {
  const std::size_t k = copy_into_ring(zs_.buf + zs_.done, zs_.len - zs_.done, false);
  zs_.done += static_cast<std::uint32_t>(k);
}

void Engine::zcopy_after_progress() {
  if (!zs_.active) return;
  if (zs_.fallback && zs_.done < zs_.len) zcopy_fallback_copy();
  if (zs_.done == zs_.len && !zs_.writing && !zs_.advertised && !zs_.adv_pending) {
    zs_.active = false;
    emit({ActionType::ZcopyDone, 0, false, zs_.len, 0, const_cast<std::uint8_t*>(zs_.buf), 0, 0});
    return;
  }
  if (zs_.fallback || zs_.writing || zs_.advertised) return;
  // A new advert waits until all data queued before it is on the wire, and until a pending
  // ModeChange is, since the mode decides whether the SrcAvail carries inline bytes.
  if (tx_post_ != tx_fill_ || open_len() != 0 || pend_.has(PendingCtrl::kModeChange)) return;
  if (!zs_.adv_pending) {
    if (tx_mode_ == wire::Mode::Pipelined && peer_sink_.valid) {
      zcopy_try_write();
      return;
    }
    zcopy_start_advert();
    if (zs_.fallback) {
      zcopy_fallback_copy();
      return;
    }
  }
  // Post the SrcAvail once the grant has its R_Key and the credits allow a data message.
  if (!zs_.rkey_ready || !send_credit_ok(true) || tx_fill_ - tx_done_ >= tx_n_) return;
  const std::uint32_t idx = tx_fill_ & tx_mask_;
  std::uint8_t* buf = tx_mem_.get() + std::size_t{idx} * cfg_.send_slot_size;
  put32(buf + 16, zs_.adv_len);
  put32(buf + 20, zs_.rkey);
  put64(buf + 24, reinterpret_cast<std::uintptr_t>(zs_.buf + zs_.adv_off));
  std::memcpy(buf + 32, zs_.buf + zs_.adv_off, zs_.adv_inline);
  tx_slots_[idx].len = 16 + zs_.adv_inline;  // bookkeeping only
  post_tx(buf, 32 + zs_.adv_inline, kTagData | tx_fill_, 0xFE, 0, false, data_send_signaled());
  ++tx_fill_;
  ++tx_post_;
  stats_.bytes_sent += zs_.adv_inline;
  stats_.bcopy_bytes_sent += zs_.adv_inline;
  // A SrcAvail with inline bytes carries data: the sink's NonDisc counts it (gen1 does too).
  if (zs_.adv_inline != 0) ++data_msgs_sent_;
  zs_.adv_mseq = tx_mseq_;
  zs_.adv_pending = false;
  zs_.advertised = true;
  zs_.deadline = now_ms_ + cfg_.zcopy_cancel_ms;
}

bool Engine::zcopy_busy() const noexcept {
  return zs_.active;
}

// ---------------------------------------------------------------------------------------------
// Receiving

void Engine::on_recv(std::uint64_t wr_id, std::uint32_t byte_len) {
  // Flushed after close/reset. While Closing (both DisConns exchanged, the CM teardown under way)
  // a message still counts: AbortConn resets, stream data after the DisConn is a violation (§7).
  if (state_ != State::Established && state_ != State::Closing) return;
  if (wr_id >= cfg_.recv_bufs || rx_slot_posted_[wr_id] == 0) {
    do_reset(ResetCause::TransportError, "receive completion for a buffer that is not posted",
             false);
    return;
  }
  const auto slot = static_cast<std::uint32_t>(wr_id);
  rx_slot_posted_[slot] = 0;
  --rx_posted_;
  last_activity_ms_ = now_ms_;
  if (byte_len > local_rcv_sz_) {
    violation("message of %u bytes exceeds our receive size %u", byte_len, local_rcv_sz_);
    return;
  }
  handle_message(slot, {rx_mem_.get() + std::size_t{slot} * rx_buf_size_, byte_len});
  // New credits matter only to work that waits; with none, all that is left is a credit update.
  if (tx_post_ != tx_fill_ || open_len() != 0 || pend_.any() || zs_.active || want_pipelined_ ||
      (tx_shut_ && !tx_disconn_sent_))
    pump();
  else
    maybe_credit_update();
}

void Engine::handle_message(std::uint32_t slot, std::span<const std::uint8_t> msg) {
  wire::Message m;
  wire::Error err;
  if (!wire::decode_message_into(msg, m, err)) {
    violation("malformed message: %s", err.text.data());
    return;
  }
  const wire::Bsdh& h = m.bsdh;
  if (h.mseq != rx_mseq_ + 1) {
    violation("MSeq %u out of order (expected %u)", h.mseq, rx_mseq_ + 1);
    return;
  }
  if (wire::seq_after(h.mseq_ack, tx_mseq_)) {
    violation("MSeqAck %u acknowledges a message never sent (last MSeq %u)", h.mseq_ack, tx_mseq_);
    return;
  }
  if (wire::seq_after(peer_ack_, h.mseq_ack)) {
    violation("MSeqAck went backwards (%u after %u)", h.mseq_ack, peer_ack_);
    return;
  }
  // The peer may send only with a credit we granted: our last Bufs − (its messages since our
  // last MSeqAck). A buffer that happens to be posted does not make an overrun legal (§5).
  if (peer_believed_credits() < 1) {
    violation(
        "credit overrun: MSeq %u sent with no credit (we advertised %u buffers at MSeqAck %u)",
        h.mseq, adv_bufs_, adv_ack_);
    return;
  }
  rx_mseq_ = h.mseq;
  peer_bufs_ = h.bufs;
  peer_ack_ = h.mseq_ack;
  stats_.messages_received[h.mid]++;
  switch (static_cast<wire::Mid>(h.mid)) {
    case wire::Mid::Data:
      handle_data(slot, m);
      return;
    case wire::Mid::SrcAvail:
      handle_src_avail(slot, m);
      return;
    case wire::Mid::SinkAvail:
      handle_sink_avail(slot, m);
      return;
    case wire::Mid::DisConn:
      handle_disconn();
      break;
    case wire::Mid::AbortConn:
      do_reset(ResetCause::PeerAbort, "connection reset by peer (AbortConn)", false);
      return;
    case wire::Mid::SendSm:
      handle_send_sm(m);
      break;
    case wire::Mid::RdmaWrCompl:
      handle_rdma_wr_compl(m);
      break;
    case wire::Mid::RdmaRdCompl:
      handle_rdma_rd_compl(m);
      break;
    case wire::Mid::ModeChange:
      handle_mode_change(m);
      break;
    case wire::Mid::SrcAvailCancel:
      handle_src_avail_cancel();
      break;
    case wire::Mid::SinkAvailCancel:
      handle_sink_avail_cancel();
      break;
    case wire::Mid::SinkCancelAck:
      handle_sink_cancel_ack();
      break;
    case wire::Mid::ChRcvBuf:
      handle_chrcvbuf(m);
      break;
    case wire::Mid::ChRcvBufAck:
      handle_chrcvbuf_ack(m);
      break;
    case wire::Mid::SuspComm:
      do_reset(ResetCause::ProtocolViolation,
               "peer sent SuspComm: socket duplication/migration is not supported", true);
      return;
    case wire::Mid::SuspCommAck:
      violation("SuspCommAck without a SuspComm");
      return;
    case wire::Mid::Hello:
    case wire::Mid::HelloAck:
      violation("%s sent as a SEND", wire::mid_name(h.mid).data());
      return;
  }
  if (state_ == State::Established) post_recv(slot);
}

void Engine::push_rx(std::uint8_t* data, std::uint32_t len, std::uint32_t slot) {
  rxq_[rxq_tail_ & rxq_mask_] = {data, len, slot};
  ++rxq_tail_;
  rx_ready_bytes_ += len;
  rx_stream_ += len;
  stats_.bytes_received += len;
}

// Payload of a Data (or SinkAvail) message: stream bytes, maybe ending with the urgent byte.
bool Engine::accept_stream_payload(std::uint32_t slot, const wire::Message& m,
                                   std::size_t hdr_len) {
  if (rx_disconn_) {
    violation("%s after the peer's DisConn", wire::mid_name(m.bsdh.mid).data());
    return false;
  }
  if (peer_src_.active) {
    violation("%s while a SrcAvail is outstanding", wire::mid_name(m.bsdh.mid).data());
    return false;
  }
  if (rx_shut_) {
    do_reset(ResetCause::LocalAbort, "data arrived after the receive half was shut down", true);
    return false;
  }
  if (own_sink_.outstanding) {  // a Data message discards our SinkAvail
    release_own_sink_advert();
    sink_flow_ = false;
  }
  ++data_msgs_received_;
  auto len = static_cast<std::uint32_t>(m.payload.size());
  std::uint8_t* data = rx_mem_.get() + std::size_t{slot} * rx_buf_size_ + hdr_len;
  if (m.bsdh.flags & wire::flags::kOobPres) {
    oob_byte_ = data[len - 1];
    oob_byte_valid_ = true;
    if (!cfg_.oob_inline) {
      --len;
      oob_mark_ = rx_stream_ + len;
    } else {
      oob_mark_ = rx_stream_ + len - 1;
    }
  }
  stats_.bcopy_bytes_received += len;
  if (len == 0) return true;
  push_rx(data, len, slot);
  return false;
}

void Engine::handle_data(std::uint32_t slot, const wire::Message& m) {
  if (m.payload.empty()) {  // credit update
    post_recv(slot);
    return;
  }
  if (accept_stream_payload(slot, m, wire::kBsdhSize) && state_ == State::Established)
    post_recv(slot);
}

void Engine::handle_src_avail(std::uint32_t slot, const wire::Message& m) {
  const auto& h = std::get<wire::SrcAvailHeader>(m.ext);
  const auto inl = static_cast<std::uint32_t>(m.payload.size());
  if (rx_disconn_) return violation("SrcAvail after the peer's DisConn");
  if (rx_shut_) {
    do_reset(ResetCause::LocalAbort, "data arrived after the receive half was shut down", true);
    return;
  }
  if (rx_mode_ == wire::Mode::Buffered)
    return violation("SrcAvail while our receive half is Buffered");
  if (peer_src_.active) return violation("second SrcAvail while one is outstanding");
  if (rx_mode_ == wire::Mode::Combined && inl == 0)
    return violation("Combined-mode SrcAvail without inline data");
  if (rx_mode_ == wire::Mode::Pipelined && inl != 0)
    return violation("Pipelined-mode SrcAvail with %u inline bytes", inl);
  if (h.len <= inl) return violation("SrcAvail Len %u leaves nothing to read", h.len);
  if (own_sink_.outstanding) {
    // Crossing adverts (Pipelined, so no inline bytes are lost): we drop the SrcAvail and say so
    // with SendSm. A source that took our SinkAvail has already ended this advert and ignores
    // the SendSm; one that found our SinkAvail stale sends the rest by BCopy.
    post_recv(slot);
    pend_.set(PendingCtrl::kSendSm);
    return;
  }
  sink_flow_ = true;
  if (inl != 0) {
    ++data_msgs_received_;  // a data-carrying message for NonDisc (§2, §6)
    push_rx(rx_mem_.get() + std::size_t{slot} * rx_buf_size_ + wire::kBsdhSize +
                wire::kSrcAvailHeaderSize,
            inl, slot);
    stats_.bcopy_bytes_received += inl;
  } else {
    post_recv(slot);
  }
  if (!cfg_.accept_zcopy || stg_chunks_ == 0) {
    pend_.set(PendingCtrl::kSendSm);  // refuse: the source sends the rest as Data
    return;
  }
  peer_src_ = PeerSrcAdvert{};
  peer_src_.active = true;
  peer_src_.mseq = m.bsdh.mseq;
  peer_src_.va = h.va + inl;
  peer_src_.rkey = h.rkey;
  peer_src_.remote_len = h.len - inl;
  start_rdma_reads();
}

void Engine::start_rdma_reads() {
  while (peer_src_.active && !peer_src_.cancelled && peer_src_.issued < peer_src_.remote_len &&
         stg_tail_ - stg_head_ < stg_chunks_) {
    const std::uint32_t n = std::min(cfg_.zcopy_chunk, peer_src_.remote_len - peer_src_.issued);
    const std::uint32_t chunk = stg_tail_ % stg_chunks_;
    reads_[reads_tail_++ & reads_mask_] = {chunk, n};
    emit({ActionType::RdmaRead, 0, false, n, kTagRead | stg_tail_,
          stg_mem_.get() + std::size_t{chunk} * cfg_.zcopy_chunk, peer_src_.va + peer_src_.issued,
          peer_src_.rkey});
    ++stg_tail_;
    peer_src_.issued += n;
    stats_.rdma_reads++;
  }
}

void Engine::handle_src_avail_cancel() {
  if (!peer_src_.active) return;  // crossed with our last RdmaRdCompl or SendSm
  peer_src_.cancelled = true;
  if (peer_src_.completed == peer_src_.issued) {
    peer_src_.active = false;
    pend_.set(PendingCtrl::kSendSm);  // after the RdmaRdCompl for what was read (post order)
  }
}

void Engine::on_rdma_complete(std::uint64_t wr_id) {
  if (state_ != State::Established && state_ != State::Closing) return;
  const std::uint64_t tag = wr_id & kTagMask;
  if (tag == kTagRead) {
    if (!peer_src_.active || peer_src_.completed >= peer_src_.issued) {
      do_reset(ResetCause::TransportError, "RDMA READ completion with none in flight", false);
      return;
    }
    // Reads complete in the order they were posted; the oldest in flight is at reads_head_.
    const InflightRead rd = reads_[reads_head_ & reads_mask_];
    ++reads_head_;
    push_rx(stg_mem_.get() + std::size_t{rd.chunk} * cfg_.zcopy_chunk, rd.len,
            kStagingEntry | rd.chunk);
    stats_.zcopy_bytes_received += rd.len;
    peer_src_.completed += rd.len;
    pend_.rdma_rd_compl += rd.len;
    pend_.set(PendingCtrl::kRdCompl);
    if (peer_src_.completed == peer_src_.remote_len) {
      peer_src_.active = false;
    } else if (peer_src_.cancelled && peer_src_.completed == peer_src_.issued) {
      peer_src_.active = false;
      pend_.set(PendingCtrl::kSendSm);
    }
    start_rdma_reads();
  } else if (tag == kTagWrite) {
    if (!zs_.writing) {
      do_reset(ResetCause::TransportError, "RDMA WRITE completion with none in flight", false);
      return;
    }
    zs_.writing = false;
    zs_.done += zs_.write_len;
    stats_.bytes_sent += zs_.write_len;
    stats_.zcopy_bytes_sent += zs_.write_len;
    emit_simple(ActionType::DeregisterRegion, zs_.region);
    zs_.region = 0;
  } else {
    do_reset(ResetCause::TransportError, "RDMA completion with an unknown work request id", false);
    return;
  }
  pump();
}

void Engine::handle_rdma_rd_compl(const wire::Message& m) {
  const auto n = std::get<wire::RdmaRdComplHeader>(m.ext).len;
  if (!zs_.advertised) {
    if (stats_.messages_sent[0xFE] == 0) violation("RdmaRdCompl but no SrcAvail was ever sent");
    return;  // refers to an advert already ended (crossed with a cancel)
  }
  if (wire::seq_after(zs_.adv_mseq, m.bsdh.mseq_ack)) return;  // older advert
  const std::uint32_t left = zs_.adv_len - zs_.adv_inline - zs_.reported;
  if (n > left)
    return violation("RdmaRdCompl reports %u bytes but only %u are outstanding", n, left);
  zs_.reported += n;
  zs_.deadline = now_ms_ + cfg_.zcopy_cancel_ms;
  stats_.bytes_sent += n;
  stats_.zcopy_bytes_sent += n;
  if (m.bsdh.flags & wire::flags::kReqPipe) want_pipelined_ = true;
  if (zs_.reported == zs_.adv_len - zs_.adv_inline) {
    zs_.done = zs_.adv_off + zs_.adv_len;
    zcopy_end_grant();
  }
}

void Engine::handle_send_sm(const wire::Message& m) {
  if (!zs_.advertised) {
    if (stats_.messages_sent[0xFE] == 0) violation("SendSm but no SrcAvail was ever sent");
    return;
  }
  if (wire::seq_after(zs_.adv_mseq, m.bsdh.mseq_ack)) return;  // refers to an older advert
  zs_.done = zs_.adv_off + zs_.adv_inline + zs_.reported;
  zcopy_end_grant();
  zs_.fallback = true;
}

void Engine::handle_sink_avail(std::uint32_t slot, const wire::Message& m) {
  const auto& h = std::get<wire::SinkAvailHeader>(m.ext);
  if (tx_mode_ != wire::Mode::Pipelined) {
    violation("SinkAvail while our send half is not Pipelined");
    return;
  }
  if (h.len == 0) {
    violation("SinkAvail advertises an empty buffer");
    return;
  }
  if (!m.payload.empty()) {
    if (!accept_stream_payload(slot, m, wire::kBsdhSize + wire::kSinkAvailHeaderSize)) {
      if (state_ != State::Established) return;
    } else if (state_ == State::Established) {
      post_recv(slot);
    }
  } else {
    post_recv(slot);
  }
  if (state_ != State::Established) return;
  if (h.non_disc != static_cast<std::uint32_t>(data_msgs_sent_)) return;  // stale advert
  if (peer_sink_.valid) {
    violation("SinkAvail beyond our MaxAdverts (%u)", cfg_.max_adverts);
    return;
  }
  peer_sink_ = {true, h.len, h.rkey, h.va};
  if (zs_.advertised) {
    // A fresh SinkAvail invalidates our SrcAvail (the sink dropped it): continue by WRITE.
    zs_.done = zs_.adv_off + zs_.adv_inline + zs_.reported;
    zcopy_end_grant();
  } else if (zs_.adv_pending) {
    zcopy_end_grant();  // the SrcAvail was not sent yet: write into the window instead
  }
}

void Engine::handle_sink_avail_cancel() {
  if (!peer_sink_.valid) return;  // already consumed by a WRITE or a Data message
  peer_sink_.valid = false;
  pend_.set(PendingCtrl::kSinkCancelAck);
}

void Engine::maybe_advertise_sink() {
  if (!cfg_.sink_adverts || rx_mode_ != wire::Mode::Pipelined || !sink_flow_ ||
      own_sink_.outstanding || peer_src_.active || rx_disconn_ || rx_shut_ ||
      state_ != State::Established || stg_chunks_ == 0 || stg_tail_ - stg_head_ >= stg_chunks_)
    return;
  own_sink_ = OwnSinkAdvert{};
  own_sink_.outstanding = true;
  own_sink_.chunk = stg_tail_++;
  own_sink_.len = cfg_.zcopy_chunk;
  own_sink_.region = new_region_id();
  pend_.set(PendingCtrl::kSinkAvail);
  emit({ActionType::RegisterRegion, access::kRemoteWrite, false, own_sink_.len, own_sink_.region,
        stg_mem_.get() + std::size_t{own_sink_.chunk % stg_chunks_} * cfg_.zcopy_chunk, 0, 0});
}

void Engine::release_own_sink_advert() {
  emit_simple(ActionType::DeregisterRegion, own_sink_.region);
  --stg_tail_;  // the advert's chunk is the newest one: nothing was staged after it
  own_sink_.outstanding = false;
  own_sink_.cancel_sent = false;
  pend_.clear(PendingCtrl::kSinkAvail);
  pend_.clear(PendingCtrl::kSinkAvailCancel);
}

void Engine::handle_rdma_wr_compl(const wire::Message& m) {
  const auto n = std::get<wire::RdmaWrComplHeader>(m.ext).len;
  if (!own_sink_.outstanding || pend_.has(PendingCtrl::kSinkAvail))
    return violation("RdmaWrCompl with no SinkAvail outstanding");
  if (n > own_sink_.len)
    return violation("RdmaWrCompl reports %u bytes for a %u-byte SinkAvail", n, own_sink_.len);
  if (rx_disconn_) return violation("RdmaWrCompl after the peer's DisConn");
  emit_simple(ActionType::DeregisterRegion, own_sink_.region);
  own_sink_.outstanding = false;
  own_sink_.cancel_sent = false;
  pend_.clear(PendingCtrl::kSinkAvailCancel);
  if (n == 0) {
    --stg_tail_;
  } else {
    const std::uint32_t chunk = own_sink_.chunk % stg_chunks_;
    push_rx(stg_mem_.get() + std::size_t{chunk} * cfg_.zcopy_chunk, n, kStagingEntry | chunk);
    stats_.zcopy_bytes_received += n;
  }
  maybe_advertise_sink();
}

void Engine::handle_sink_cancel_ack() {
  // cancel_sent is cleared whenever the advert ends, so it also implies one is outstanding.
  if (!own_sink_.cancel_sent) return violation("SinkCancelAck without a SinkAvailCancel");
  release_own_sink_advert();
}

void Engine::handle_mode_change(const wire::Message& m) {
  const auto& h = std::get<wire::ModeChangeHeader>(m.ext);
  if (!h.send_half) {
    const wire::Mode from = rx_mode_;
    const bool ok = (from == wire::Mode::Combined && h.mode == wire::Mode::Pipelined) ||
                    (from == wire::Mode::Pipelined && h.mode == wire::Mode::Combined) ||
                    (from == wire::Mode::Combined && h.mode == wire::Mode::Buffered);
    if (!ok)
      return violation("ModeChange of our receive half from mode %u to %u is not allowed",
                       static_cast<unsigned>(from), static_cast<unsigned>(h.mode));
    if (peer_src_.active) return violation("ModeChange while a SrcAvail is outstanding");
    if (own_sink_.outstanding && h.mode != wire::Mode::Pipelined) release_own_sink_advert();
    rx_mode_ = h.mode;
    if (rx_mode_ == wire::Mode::Pipelined) {
      sink_flow_ = true;
      maybe_advertise_sink();
    }
  } else {
    if (!(tx_mode_ == wire::Mode::Buffered && h.mode == wire::Mode::Combined))
      return violation("ModeChange of our send half from mode %u to %u is not allowed",
                       static_cast<unsigned>(tx_mode_), static_cast<unsigned>(h.mode));
    tx_mode_ = h.mode;
  }
}

void Engine::handle_chrcvbuf(const wire::Message& m) {
  const auto size = std::get<wire::ChRcvBufHeader>(m.ext).size;
  // Grow when asked for more and we can; the buffers are already allocated at max_recv_size.
  if (size > local_rcv_sz_ && size <= rx_buf_size_) local_rcv_sz_ = size;
  pend_.set(PendingCtrl::kChRcvBufAck);
  pend_.chrcvbuf_ack_size = local_rcv_sz_;
}

void Engine::handle_chrcvbuf_ack(const wire::Message& m) {
  if (!chrcvbuf_requested_) return violation("ChRcvBufAck without a ChRcvBuf");
  chrcvbuf_requested_ = false;
  const auto size = std::get<wire::ChRcvBufAckHeader>(m.ext).size;
  if (size > peer_rcv_sz_) peer_rcv_sz_ = size;  // adopt only a larger size
}

void Engine::handle_disconn() {
  if (rx_disconn_) return violation("second DisConn");
  if (peer_src_.active) return violation("DisConn while its SrcAvail is outstanding");
  rx_disconn_ = true;
  if (own_sink_.outstanding) release_own_sink_advert();
  check_close_progress();
}

// ---------------------------------------------------------------------------------------------
// Application reads

IoResult Engine::recv(std::span<std::uint8_t> out, bool peek) {
  IoResult r{};
  if (state_ == State::Reset) {
    r.error = ECONNRESET;
    return r;
  }
  if (state_ == State::Idle || state_ == State::HelloSent) {
    r.error = ENOTCONN;
    return r;
  }
  std::size_t want = out.size();
  if (oob_byte_valid_ && !cfg_.oob_inline && rx_consumed_ < oob_mark_)
    want = std::min<std::size_t>(want, oob_mark_ - rx_consumed_);  // stop at the urgent mark
  std::size_t n = 0;
  std::uint32_t head = rxq_head_;
  std::uint32_t off = rxq_off_;
  while (n < want && head != rxq_tail_) {
    const RxEntry& e = rxq_[head & rxq_mask_];
    const std::size_t k = std::min<std::size_t>(e.len - off, want - n);
    std::memcpy(out.data() + n, e.data + off, k);
    n += k;
    off += static_cast<std::uint32_t>(k);
    if (off == e.len) {
      if (!peek) {
        if (e.slot & kStagingEntry) {
          ++stg_head_;
        } else if (state_ == State::Established) {
          post_recv(e.slot);
        }
      }
      ++head;
      off = 0;
    }
  }
  r.bytes = n;
  if (!peek) {
    rxq_head_ = head;
    rxq_off_ = off;
    rx_ready_bytes_ -= n;
    rx_consumed_ += n;
    if (n != 0) {
      if (peer_src_.active) start_rdma_reads();
      if (cfg_.sink_adverts) maybe_advertise_sink();
      // Reposted buffers change only what we can tell the peer: a credit update, or a control
      // message (DisConn included) that was waiting to be allowed to use our last credit.
      if (pend_.any() || (tx_shut_ && !tx_disconn_sent_))
        pump();
      else
        maybe_credit_update();
    }
  }
  if (n == 0 && !out.empty()) {
    if (rx_disconn_)
      r.eof = true;
    else
      r.error = EAGAIN;
  }
  return r;
}

IoResult Engine::recv_oob(std::uint8_t& byte) {
  IoResult r{};
  if (!oob_byte_valid_ || cfg_.oob_inline) {
    r.error = EINVAL;
    return r;
  }
  byte = oob_byte_;
  oob_byte_valid_ = false;
  r.bytes = 1;
  return r;
}

bool Engine::at_oob_mark() const noexcept {
  return oob_byte_valid_ && rx_consumed_ == oob_mark_;
}

bool Engine::readable() const noexcept {
  return rx_ready_bytes_ != 0 || rx_disconn_ || state_ == State::Reset || state_ == State::Closed;
}

bool Engine::writable() const noexcept {
  if (state_ != State::Established || tx_shut_ || zs_.active) return false;
  if (tx_fill_ - tx_done_ >= tx_n_) return false;
  return tx_fill_ - tx_done_ + 1 < tx_n_ || open_len() < max_payload();
}

// ---------------------------------------------------------------------------------------------
// Completions, close, timers

void Engine::on_send_complete(std::uint64_t wr_id) {
  if (state_ == State::Reset || state_ == State::Closed) return;
  const std::uint64_t tag = wr_id & kTagMask;
  if (tag == kTagData) {
    // Completes this send and all data sends before it (unsignaled ones have no completion).
    const auto c = static_cast<std::uint32_t>(wr_id);
    if (c - tx_done_ >= tx_post_ - tx_done_) {
      do_reset(ResetCause::TransportError, "send completion for a send not in flight", false);
      return;
    }
    do {
      tx_slots_[tx_done_ & tx_mask_] = TxSlot{};
    } while (tx_done_++ != c);
  } else if (tag == kTagCtrl) {
    if (static_cast<std::uint32_t>(wr_id) != ctrl_done_ || ctrl_done_ == ctrl_post_) {
      do_reset(ResetCause::TransportError, "send completion out of order", false);
      return;
    }
    ++ctrl_done_;
  } else {
    do_reset(ResetCause::TransportError, "send completion with an unknown work request id", false);
    return;
  }
  // Freed ring space only matters to work that was waiting for it.
  if (zs_.active || pend_.any() || (tx_shut_ && !tx_disconn_sent_)) pump();
}

void Engine::on_completion_error(std::uint64_t /*wr_id*/, std::string_view what) {
  std::string why = "transport error: ";
  why += what;
  do_reset(ResetCause::TransportError, why, false);
}

void Engine::on_region_registered(std::uint64_t region_id, std::uint32_t rkey) {
  if (zs_.region == region_id && region_id != 0) {
    zs_.rkey = rkey;
    zs_.rkey_ready = true;
  } else if (own_sink_.outstanding && own_sink_.region == region_id) {
    own_sink_.rkey = rkey;
    own_sink_.rkey_ready = true;
  }
  pump();
}

void Engine::check_close_progress() {
  if (state_ != State::Established || !tx_disconn_sent_ || !rx_disconn_) return;
  state_ = State::Closing;
  close_deadline_ms_ = now_ms_ + cfg_.disconnect_timeout_ms;
  if (disconn_first_) {
    dreq_sent_ = true;
    emit_simple(ActionType::CmDisconnect);
  }
}

// Ends a graceful close: our side of the CM exchange (DREQ, or DREP to theirs) if not sent yet.
void Engine::finish_close() {
  if (!dreq_sent_) emit_simple(ActionType::CmDisconnect);
  dreq_sent_ = true;
  state_ = State::Closed;
  emit_simple(ActionType::Closed);
}

void Engine::on_cm_disconnect() {
  if (state_ == State::Closing) {
    finish_close();  // their DREQ (we answer DREP) or the DREP to ours
    return;
  }
  if (state_ == State::Established || state_ == State::HelloSent)
    do_reset(ResetCause::PeerAbort, "connection reset by peer (CM disconnect before DisConn)",
             false);
}

void Engine::shutdown_send() {
  if (state_ != State::Established && state_ != State::HelloSent && state_ != State::Idle) return;
  tx_shut_ = true;
  pump();
}

void Engine::shutdown_recv() {
  if (rx_shut_) return;
  rx_shut_ = true;
  if (state_ != State::Established) return;
  if (peer_src_.active) {
    do_reset(ResetCause::LocalAbort, "receive half shut down during a zero-copy transfer", true);
    return;
  }
  if (own_sink_.outstanding && !own_sink_.cancel_sent && !pend_.has(PendingCtrl::kSinkAvail)) {
    own_sink_.cancel_sent = true;
    pend_.set(PendingCtrl::kSinkAvailCancel);
  } else if (own_sink_.outstanding && pend_.has(PendingCtrl::kSinkAvail)) {
    release_own_sink_advert();
  }
  pump();
}

void Engine::close() {
  if (state_ == State::Idle || state_ == State::HelloSent) {
    do_reset(ResetCause::LocalAbort, "closed before the connection was established", false);
    return;
  }
  if (state_ != State::Established) return;
  if (rx_ready_bytes_ != 0) {
    do_reset(ResetCause::LocalAbort, "closed with unread data", true);
    return;
  }
  close_deadline_ms_ = now_ms_ + cfg_.disconnect_timeout_ms;
  shutdown_recv();
  shutdown_send();
}

void Engine::abort(std::string_view why) {
  do_reset(ResetCause::LocalAbort, why, true);
}

void Engine::violation(const char* fmt, ...) {
  char buf[200];
  int k = std::snprintf(buf, sizeof buf, "protocol violation by peer: ");
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf + k, sizeof buf - static_cast<std::size_t>(k), fmt, ap);
  va_end(ap);
  do_reset(ResetCause::ProtocolViolation, buf, true);
}

void Engine::do_reset(ResetCause cause, std::string_view why, bool send_abort) {
  if (state_ == State::Reset || state_ == State::Closed) return;
  const bool connected = state_ == State::Established || state_ == State::Closing;
  // AbortConn keeps the credit rules like any message (CA4-82: its last credit only if it gives
  // the peer more); without the credit the CM DREQ alone ends the connection, as OFED does.
  if (send_abort && connected && send_credit_ok(false))
    post_ctrl(wire::Mid::AbortConn, std::monostate{});
  state_ = State::Reset;
  reset_cause_ = cause;
  reset_reason_ = std::string(why);
  // Every grant to the peer ends now.
  if (zs_.region != 0) emit_simple(ActionType::DeregisterRegion, zs_.region);
  zs_.region = 0;
  if (own_sink_.outstanding) emit_simple(ActionType::DeregisterRegion, own_sink_.region);
  own_sink_.outstanding = false;
  if (zs_.active) {
    zs_.active = false;
    emit({ActionType::ZcopyDone, 0, false, zs_.done, 0, const_cast<std::uint8_t*>(zs_.buf), 0, 0});
  }
  if (connected) emit_simple(ActionType::CmDisconnect);
  emit_simple(ActionType::Reset);
}

void Engine::tick(std::uint64_t now_ms) {
  now_ms_ = now_ms;
  if (state_ == State::Closing && now_ms >= close_deadline_ms_) {
    finish_close();  // the peer never finished the CM exchange (OFED sends DREQ anyway)
    return;
  }
  if (state_ != State::Established) return;
  if (now_ms >= close_deadline_ms_) {
    do_reset(ResetCause::Timeout, "close timed out waiting for the peer's DisConn", true);
    return;
  }
  if (zs_.advertised && now_ms >= zs_.deadline) {
    if (!zs_.cancel_sent) {
      zs_.cancel_sent = true;
      pend_.set(PendingCtrl::kSrcAvailCancel);
      zs_.deadline = now_ms + cfg_.cancel_response_ms;
    } else {
      do_reset(ResetCause::Timeout, "SrcAvailCancel unanswered", true);
      return;
    }
  }
  if (own_sink_.outstanding && !pend_.has(PendingCtrl::kSinkAvail) &&
      now_ms >= own_sink_.deadline) {
    if (!own_sink_.cancel_sent) {
      own_sink_.cancel_sent = true;
      pend_.set(PendingCtrl::kSinkAvailCancel);
      own_sink_.deadline = now_ms + cfg_.cancel_response_ms;
      sink_flow_ = false;
    } else {
      do_reset(ResetCause::Timeout, "SinkAvailCancel unanswered", true);
      return;
    }
  }
  if (cfg_.keepalive_idle_ms != 0 && now_ms - last_activity_ms_ >= cfg_.keepalive_idle_ms) {
    emit_simple(ActionType::Keepalive);
    last_activity_ms_ = now_ms;
  }
  pump();
}

std::uint64_t Engine::next_deadline_ms() const noexcept {
  std::uint64_t d = UINT64_MAX;
  if (state_ == State::Closing) return close_deadline_ms_;
  if (state_ != State::Established) return d;
  d = std::min(d, close_deadline_ms_);
  if (zs_.advertised) d = std::min(d, zs_.deadline);
  if (own_sink_.outstanding && !pend_.has(PendingCtrl::kSinkAvail))
    d = std::min(d, own_sink_.deadline);
  if (cfg_.keepalive_idle_ms != 0) d = std::min(d, last_activity_ms_ + cfg_.keepalive_idle_ms);
  return d;
}

}  // namespace sdp

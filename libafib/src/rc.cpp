#include "rc.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>

namespace afib {
namespace {

// The CM private data of a SOCK_SEQPACKET connection (REQ and REP alike): who we are and the
// largest message we receive. Network byte order.
struct Hello {
  std::uint32_t magic;  // "AFIB"
  std::uint16_t version;
  std::uint16_t reserved;
  std::uint32_t slot;   // largest message this side receives
  std::uint32_t slots;  // receive buffers it keeps posted
};
constexpr std::uint32_t kMagic = 0x41464942;    // "AFIB"
constexpr std::uint64_t kRecvTag = 1ULL << 32;  // wr_id: tag | slot
constexpr std::uint64_t kOpTag = 1ULL << 33;    // wr_id: tag | RDMA operation number
// Control messages (a SEND with immediate value kMagic and a body): a region advertised, one
// revoked. Network byte order.
constexpr std::uint8_t kAdvert = 1, kRevoked = 2;
struct AdvertBody {
  std::uint32_t id, rkey, access, reserved;
  std::uint64_t addr, len;
};
std::uint64_t hton64(std::uint64_t v) {
  return (std::uint64_t{htonl(static_cast<std::uint32_t>(v))} << 32) |
         htonl(static_cast<std::uint32_t>(v >> 32));
}

int nonblock_fd(int fd) {
  const int fl = fcntl(fd, F_GETFL);
  return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

void watch(int epfd, int fd) {
  epoll_event e{};
  e.events = EPOLLIN;
  e.data.fd = fd;
  epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e);
}

Hello make_hello() {
  return Hello{htonl(kMagic), htons(1), 0, htonl(RcSocket::kSlot), htonl(RcSocket::kRecvSlots)};
}

// The peer's largest message from its private data; 0 when it is not ours.
std::uint32_t peer_slot(const void* data, std::uint8_t len) {
  Hello h{};
  if (data == nullptr || len < sizeof h) return 0;
  std::memcpy(&h, data, sizeof h);
  if (ntohl(h.magic) != kMagic || ntohs(h.version) != 1) return 0;
  return ntohl(h.slot);
}

// One protection domain per device, shared by the process's sockets (never freed: rdma_cm keeps
// the device contexts open for the process's life).
ibv_pd* shared_pd(ibv_context* ctx) {
  static auto* mu = new std::mutex;
  static auto* pds = new std::map<ibv_context*, ibv_pd*>;
  std::lock_guard lk(*mu);
  ibv_pd*& pd = (*pds)[ctx];
  if (pd == nullptr) pd = ibv_alloc_pd(ctx);
  return pd;
}

const char* event_name(rdma_cm_event_type t) {
  return rdma_event_str(t);
}

}  // namespace

RcSocket::RcSocket(int epfd, bool nonblock) : epfd_(epfd), nonblock_(nonblock) {
  attention_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (attention_ >= 0) watch(epfd_, attention_);
}

void RcSocket::update_attention() {
  bool on = !ready_.empty() || !done_.empty() || !adverts_.empty() || !requests_.empty() ||
            peer_ended_ || error_ != 0 || state_ == State::Closed;
  if (want_write_ && !free_send_.empty()) on = true;
  if (connecting_nb_ && (state_ == State::Open || state_ == State::Closed)) on = true;
  if (attention_ < 0 || on == attention_on_) return;
  std::uint64_t v = 1;
  if (on) {
    [[maybe_unused]] const auto n = ::write(attention_, &v, sizeof v);
  } else {
    [[maybe_unused]] const auto n = ::read(attention_, &v, sizeof v);
  }
  attention_on_ = on;
}

RcSocket::~RcSocket() {
  for (rdma_cm_id* r : requests_) {
    rdma_reject(r, nullptr, 0);
    rdma_destroy_id(r);
  }
  if (id_ != nullptr) {
    if (state_ == State::Open) rdma_disconnect(id_);
    if (id_->qp != nullptr) rdma_destroy_qp(id_);
  }
  if (cq_ != nullptr) ibv_destroy_cq(cq_);
  if (comp_ != nullptr) ibv_destroy_comp_channel(comp_);
  if (mr_ != nullptr) ibv_dereg_mr(mr_);
  for (auto& [n, mr] : regions_) ibv_dereg_mr(mr);
  if (id_ != nullptr) rdma_destroy_id(id_);
  if (ch_ != nullptr) rdma_destroy_event_channel(ch_);
  if (attention_ >= 0) ::close(attention_);
}

int RcSocket::fail(int e, std::string why) {
  detail_ = std::move(why);
  errno = e;
  return -1;
}

int RcSocket::channel() {
  if (ch_ != nullptr) return 0;
  ch_ = rdma_create_event_channel();
  if (ch_ == nullptr) {
    const int e = errno;
    return fail(e, std::string("rdma_create_event_channel: ") + std::strerror(e) +
                       (e == ENODEV ? " (no RDMA device)" : ""));
  }
  nonblock_fd(ch_->fd);
  watch(epfd_, ch_->fd);
  return 0;
}

int RcSocket::bind(const sockaddr* a, rdma_port_space ps) {
  if (state_ != State::Idle) return fail(EINVAL, "already bound or connected");
  if (channel() != 0) return -1;
  if (rdma_create_id(ch_, &id_, this, ps) != 0) return fail(errno, "rdma_create_id failed");
  if (rdma_bind_addr(id_, const_cast<sockaddr*>(a)) != 0) {
    const int e = errno;
    return fail(e == ENODEV ? EADDRNOTAVAIL : e,
                std::string("rdma_bind_addr: ") + std::strerror(e));
  }
  state_ = State::Bound;
  return 0;
}

int RcSocket::listen(int backlog, const sockaddr* any, rdma_port_space ps) {
  if (state_ == State::Idle && bind(any, ps) != 0) return -1;
  if (state_ != State::Bound) return fail(EINVAL, "not bound, or connected");
  if (rdma_listen(id_, backlog > 0 ? backlog : 128) != 0)
    return fail(errno, std::string("rdma_listen: ") + std::strerror(errno));
  state_ = State::Listening;
  return 0;
}

int RcSocket::setup_qp() {
  ibv_context* ctx = id_->verbs;
  if (ctx == nullptr) return fail(ENODEV, "no RDMA device behind the address");
  ibv_pd* pd = shared_pd(ctx);
  if (pd == nullptr) return fail(errno, "ibv_alloc_pd failed");
  comp_ = ibv_create_comp_channel(ctx);
  if (comp_ == nullptr) return fail(errno, "ibv_create_comp_channel failed");
  nonblock_fd(comp_->fd);
  watch(epfd_, comp_->fd);
  cq_ = ibv_create_cq(ctx, static_cast<int>(kRecvSlots + kSendSlots) + 8, this, comp_, 0);
  if (cq_ == nullptr) return fail(errno, "ibv_create_cq failed");
  ibv_req_notify_cq(cq_, 0);
  armed_ = true;
  ibv_qp_init_attr qa{};
  qa.send_cq = qa.recv_cq = cq_;
  qa.qp_type = IBV_QPT_RC;
  qa.cap.max_send_wr = kSendSlots + 4;
  qa.cap.max_recv_wr = kRecvSlots;
  qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
  qa.sq_sig_all = 1;
  if (rdma_create_qp(id_, pd, &qa) != 0) return fail(errno, "rdma_create_qp failed");
  const std::size_t bytes = std::size_t{kSlot} * (kRecvSlots + kSendSlots);
  mem_.reset(new std::uint8_t[bytes]);
  const unsigned local_only = IBV_ACCESS_LOCAL_WRITE;  // no remote key for the slots
  mr_ = ibv_reg_mr(pd, mem_.get(), bytes, local_only);
  if (mr_ == nullptr) return fail(errno, "ibv_reg_mr failed");
  for (std::uint32_t i = 0; i < kRecvSlots; ++i)
    if (post_recv(i) != 0) return fail(errno, "ibv_post_recv failed");
  for (std::uint32_t i = 0; i < kSendSlots; ++i) free_send_.push_back(kRecvSlots + i);
  return 0;
}

int RcSocket::post_recv(std::uint32_t slot) {
  ibv_sge sge{reinterpret_cast<std::uintptr_t>(mem_.get() + std::size_t{slot} * kSlot), kSlot,
              mr_->lkey};
  ibv_recv_wr wr{};
  ibv_recv_wr* bad = nullptr;
  wr.wr_id = kRecvTag | slot;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  return ibv_post_recv(id_->qp, &wr, &bad);
}

void RcSocket::on_event(rdma_cm_event* ev) {
  switch (ev->event) {
    case RDMA_CM_EVENT_ADDR_RESOLVED:
      if (rdma_resolve_route(id_, 2000) != 0) {
        error_ = errno == ENODEV ? ENETUNREACH : errno;
        detail_ = std::string("rdma_resolve_route: ") + std::strerror(errno);
        state_ = State::Closed;
      }
      break;
    case RDMA_CM_EVENT_ROUTE_RESOLVED: {
      if (setup_qp() != 0) {
        error_ = errno;
        state_ = State::Closed;
        break;
      }
      const Hello h = make_hello();
      rdma_conn_param p{};
      p.private_data = &h;
      p.private_data_len = sizeof h;
      p.responder_resources = p.initiator_depth = 1;
      p.retry_count = 7;
      p.rnr_retry_count = 7;  // a receiver out of buffers makes the sender wait, not fail
      if (rdma_connect(id_, &p) != 0) {
        error_ = errno;
        detail_ = std::string("rdma_connect: ") + std::strerror(errno);
        state_ = State::Closed;
        break;
      }
      state_ = State::Connecting;
      break;
    }
    case RDMA_CM_EVENT_ESTABLISHED:
      if (active_) {  // the REP's private data (the passive side read the REQ's at accept)
        peer_slot_ = peer_slot(ev->param.conn.private_data, ev->param.conn.private_data_len);
        if (peer_slot_ == 0) peer_slot_ = kSlot;
      }
      state_ = State::Open;
      break;
    case RDMA_CM_EVENT_CONNECT_REQUEST:
      requests_.push_back(ev->id);  // the event's private data is read at accept
      break;
    case RDMA_CM_EVENT_REJECTED:
      error_ = ECONNREFUSED;
      detail_ = "CM REJ (reason " + std::to_string(ev->status) + ")";
      state_ = State::Closed;
      break;
    case RDMA_CM_EVENT_DISCONNECTED:
      peer_ended_ = true;
      if (state_ == State::Open) state_ = State::Closed;
      break;
    case RDMA_CM_EVENT_ADDR_ERROR:
    case RDMA_CM_EVENT_ROUTE_ERROR:
    case RDMA_CM_EVENT_UNREACHABLE:
    case RDMA_CM_EVENT_CONNECT_ERROR:
      error_ = ev->event == RDMA_CM_EVENT_UNREACHABLE ? ETIMEDOUT : EHOSTUNREACH;
      detail_ = std::string(event_name(ev->event)) + " (status " + std::to_string(ev->status) + ")";
      state_ = State::Closed;
      break;
    default:
      break;
  }
}

void RcSocket::progress() {
  poll_once();
  update_attention();
}

void RcSocket::poll_once() {
  rdma_cm_event* ev = nullptr;
  while (ch_ != nullptr && rdma_get_cm_event(ch_, &ev) == 0) {
    if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST) {
      // Keep the peer's slot size with the request: copied before the event is acked.
      const std::uint32_t ps =
          peer_slot(ev->param.conn.private_data, ev->param.conn.private_data_len);
      ev->id->context = reinterpret_cast<void*>(static_cast<std::uintptr_t>(ps));
    } else if (ev->id != id_) {
      // A listener: an event of a connection request not accepted yet (the peer gave up, or
      // went away). Not the listener's own state: the request is dropped.
      rdma_cm_id* gone = ev->id;
      rdma_ack_cm_event(ev);
      for (auto it = requests_.begin(); it != requests_.end(); ++it) {
        if (*it != gone) continue;
        requests_.erase(it);
        rdma_destroy_id(gone);
        break;
      }
      continue;
    }
    on_event(ev);
    rdma_ack_cm_event(ev);
  }
  if (cq_ == nullptr) return;
  ibv_cq* cq = nullptr;
  void* ctx = nullptr;
  while (ibv_get_cq_event(comp_, &cq, &ctx) == 0) {
    ibv_ack_cq_events(cq_, 1);
    armed_ = false;
  }
  for (;;) {
    ibv_wc wc[16];
    const int n = ibv_poll_cq(cq_, 16, wc);
    for (int i = 0; i < n; ++i) {
      const ibv_wc& w = wc[i];
      if ((w.wr_id & kOpTag) != 0) {  // an RDMA READ/WRITE of this side
        const auto it = ops_.find(static_cast<std::uint32_t>(w.wr_id & 0xffffffffU));
        if (it == ops_.end()) continue;
        const std::uint32_t st = w.status == IBV_WC_SUCCESS          ? AFIB_STATUS_OK
                                 : w.status == IBV_WC_REM_ACCESS_ERR ? AFIB_STATUS_REMOTE_ACCESS
                                                                     : AFIB_STATUS_ERROR;
        if (w.status != IBV_WC_WR_FLUSH_ERR || st != AFIB_STATUS_OK)
          done_.push_back(afib_completion{it->second.wr_id, it->second.op, st,
                                          st == AFIB_STATUS_OK ? it->second.len : 0, 0});
        ops_.erase(it);
        if (w.status != IBV_WC_SUCCESS && error_ == 0 && w.status != IBV_WC_WR_FLUSH_ERR) {
          error_ = ECONNRESET;  // RC: the QP is in error now, the connection is over
          detail_ = std::string("RDMA operation failed: ") + ibv_wc_status_str(w.status);
        }
        continue;
      }
      if (w.status != IBV_WC_SUCCESS) {
        if (error_ == 0 && w.status != IBV_WC_WR_FLUSH_ERR) {
          error_ = ECONNRESET;
          detail_ = std::string("work request failed: ") + ibv_wc_status_str(w.status);
        }
        if ((w.wr_id & kRecvTag) == 0) free_send_.push_back(static_cast<std::uint32_t>(w.wr_id));
        continue;
      }
      if ((w.wr_id & kRecvTag) == 0) {
        free_send_.push_back(static_cast<std::uint32_t>(w.wr_id));
        continue;
      }
      const auto slot = static_cast<std::uint32_t>(w.wr_id & 0xffffffffU);
      const bool imm = (w.wc_flags & IBV_WC_WITH_IMM) != 0;
      if (w.opcode == IBV_WC_RECV_RDMA_WITH_IMM) {  // the peer wrote into a region, with imm
        done_.push_back(afib_completion{0, AFIB_OP_WRITE_WITH_IMM, AFIB_STATUS_OK, w.byte_len,
                                        ntohl(w.imm_data)});
        post_recv(slot);
      } else if (imm && ntohl(w.imm_data) == kMagic) {
        if (w.byte_len == 0)
          peer_ended_ = true;  // the peer's shutdown(SHUT_WR)
        else
          on_control(mem_.get() + std::size_t{slot} * kSlot, w.byte_len);
        post_recv(slot);
      } else {
        ready_.push_back(Msg{slot, w.byte_len, imm, imm ? ntohl(w.imm_data) : 0});
      }
    }
    if (n > 0) continue;
    if (armed_) break;
    ibv_req_notify_cq(cq_, 0);
    armed_ = true;  // and poll once more: a completion may have come before arming
  }
}

int RcSocket::wait() {
  pollfd p{epfd_, POLLIN, 0};
  return ::poll(&p, 1, -1) < 0 && errno != EINTR ? -1 : 0;
}

template <class Pred>
int RcSocket::block_until(Pred done) {
  for (;;) {
    progress();
    if (done()) return 0;
    if (error_ != 0) return fail(error_, detail_);
    if (nonblock_) {
      errno = EAGAIN;
      return -1;
    }
    if (wait() != 0) return -1;
  }
}

std::unique_ptr<RcSocket> RcSocket::accept(int* new_fd) {
  const Settle settle{*this};
  if (state_ != State::Listening) {
    fail(EINVAL, "not listening");
    return nullptr;
  }
  if (block_until([&] { return !requests_.empty(); }) != 0) return nullptr;
  rdma_cm_id* child = requests_.front();
  requests_.pop_front();
  const auto ps = static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(child->context));
  const int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) {
    rdma_reject(child, nullptr, 0);
    rdma_destroy_id(child);
    return nullptr;
  }
  auto c = std::make_unique<RcSocket>(fd, false);
  if (c->channel() != 0 || rdma_migrate_id(child, c->ch_) != 0) {
    rdma_reject(child, nullptr, 0);
    rdma_destroy_id(child);
    close(fd);
    fail(errno, "cannot take the connection request");
    return nullptr;
  }
  c->id_ = child;
  child->context = c.get();
  c->peer_slot_ = ps != 0 ? ps : kSlot;
  if (c->setup_qp() != 0) {
    detail_ = c->detail_;
    rdma_reject(child, nullptr, 0);
    close(fd);
    return nullptr;
  }
  const Hello h = make_hello();
  rdma_conn_param p{};
  p.private_data = &h;
  p.private_data_len = sizeof h;
  p.responder_resources = p.initiator_depth = 1;
  p.rnr_retry_count = 7;
  if (rdma_accept(child, &p) != 0) {
    fail(errno, std::string("rdma_accept: ") + std::strerror(errno));
    close(fd);
    return nullptr;
  }
  c->state_ = State::Connecting;
  // The connection is usable once ESTABLISHED arrives on its channel.
  if (c->block_until([&] { return c->state_ != State::Connecting; }) != 0 ||
      c->state_ != State::Open) {
    detail_ = c->detail_.empty() ? "the connection did not establish" : c->detail_;
    errno = ECONNABORTED;
    close(fd);
    return nullptr;
  }
  c->nonblock_ = nonblock_;
  *new_fd = fd;
  return c;
}

int RcSocket::connect(const sockaddr* a, rdma_port_space ps) {
  const Settle settle{*this};
  if (state_ == State::Resolving || state_ == State::Connecting) return fail(EALREADY, "");
  if (state_ == State::Open) return fail(EISCONN, "");
  if (state_ != State::Idle && state_ != State::Bound) return fail(EINVAL, "listening or closed");
  if (state_ == State::Idle) {
    if (channel() != 0) return -1;
    if (rdma_create_id(ch_, &id_, this, ps) != 0) return fail(errno, "rdma_create_id failed");
  }
  if (rdma_resolve_addr(id_, nullptr, const_cast<sockaddr*>(a), 2000) != 0) {
    const int e = errno;
    return fail(e == ENODEV ? ENETUNREACH : e,
                std::string("rdma_resolve_addr: ") + std::strerror(e));
  }
  state_ = State::Resolving;
  active_ = true;
  if (nonblock_) {
    connecting_nb_ = true;  // the descriptor turns readable when the connect is over
    errno = EINPROGRESS;
    return -1;
  }
  if (block_until([&] { return state_ == State::Open || state_ == State::Closed; }) != 0) return -1;
  if (state_ != State::Open) return fail(error_ != 0 ? error_ : ECONNREFUSED, detail_);
  return 0;
}

ssize_t RcSocket::send(const void* buf, std::size_t len, int flags, const std::uint32_t* imm) {
  const Settle settle{*this};
  if (imm != nullptr && *imm == kMagic)
    return fail(EINVAL, "the immediate value 0x41464942 is libafib's own (AFIB_IMM_RESERVED)");
  const bool nb = nonblock_ || (flags & MSG_DONTWAIT) != 0;
  progress();
  if (state_ != State::Open) return fail(state_ == State::Closed ? EPIPE : ENOTCONN, detail_);
  if (shut_wr_) return fail(EPIPE, "shut down for writing");
  if (len > peer_slot_)
    return fail(EMSGSIZE, "a message is at most " + std::to_string(peer_slot_) + " bytes here");
  const bool saved = nonblock_;
  nonblock_ = nb;
  const int r = block_until([&] { return !free_send_.empty() || state_ != State::Open; });
  nonblock_ = saved;
  if (r != 0) {
    if (errno == EAGAIN) {
      want_write_ = true;  // the descriptor turns readable once a slot is free
      update_attention();
      errno = EAGAIN;
    }
    return -1;
  }
  want_write_ = false;
  if (state_ != State::Open) return fail(EPIPE, detail_);
  const std::uint32_t slot = free_send_.front();
  free_send_.pop_front();
  if (len > 0) std::memcpy(mem_.get() + std::size_t{slot} * kSlot, buf, len);
  if (post_slot(slot, static_cast<std::uint32_t>(len), imm != nullptr, imm != nullptr ? *imm : 0) !=
      0)
    return -1;
  return static_cast<ssize_t>(len);
}

int RcSocket::post_slot(std::uint32_t slot, std::uint32_t len, bool with_imm, std::uint32_t imm) {
  ibv_sge sge{reinterpret_cast<std::uintptr_t>(mem_.get() + std::size_t{slot} * kSlot), len,
              mr_->lkey};
  ibv_send_wr wr{};
  ibv_send_wr* bad = nullptr;
  wr.wr_id = slot;
  wr.sg_list = len > 0 ? &sge : nullptr;
  wr.num_sge = len > 0 ? 1 : 0;
  wr.opcode = with_imm ? IBV_WR_SEND_WITH_IMM : IBV_WR_SEND;
  if (with_imm) wr.imm_data = htonl(imm);
  wr.send_flags = IBV_SEND_SIGNALED;
  if (ibv_post_send(id_->qp, &wr, &bad) != 0) {
    free_send_.push_front(slot);  // not in flight after all
    return fail(errno, std::string("ibv_post_send: ") + std::strerror(errno));
  }
  return 0;
}

ssize_t RcSocket::recv(void* buf, std::size_t len, int flags, std::uint32_t* imm, bool* has_imm) {
  const Settle settle{*this};
  const bool nb = nonblock_ || (flags & MSG_DONTWAIT) != 0;
  if (state_ != State::Open && state_ != State::Closed) return fail(ENOTCONN, "not connected");
  const bool saved = nonblock_;
  nonblock_ = nb;
  const int r =
      block_until([&] { return !ready_.empty() || peer_ended_ || state_ == State::Closed; });
  nonblock_ = saved;
  if (r != 0) return -1;
  if (ready_.empty()) return 0;  // the peer ended its messages
  const Msg m = ready_.front();
  if (has_imm != nullptr) *has_imm = m.has_imm;
  if (imm != nullptr) *imm = m.imm;
  const std::size_t n = std::min<std::size_t>(len, m.len);
  if (n > 0) std::memcpy(buf, mem_.get() + std::size_t{m.slot} * kSlot, n);
  if ((flags & MSG_PEEK) == 0) {
    ready_.pop_front();
    if (state_ == State::Open) post_recv(m.slot);
  }
  // As a SOCK_SEQPACKET socket: the rest of a message longer than the buffer is discarded;
  // MSG_TRUNC asks for the message's real length.
  return static_cast<ssize_t>((flags & MSG_TRUNC) != 0 ? m.len : n);
}

int RcSocket::shutdown(int how) {
  const Settle settle{*this};
  if (state_ != State::Open) return fail(ENOTCONN, "not connected");
  if ((how == SHUT_WR || how == SHUT_RDWR) && !shut_wr_) {
    // A zero-length SEND with an immediate value marks the end of this side's messages.
    if (block_until([&] { return !free_send_.empty(); }) != 0) return -1;
    const std::uint32_t slot = free_send_.front();
    free_send_.pop_front();
    if (post_slot(slot, 0, true, kMagic) != 0) return -1;
    shut_wr_ = true;
  }
  return 0;
}

int RcSocket::poll_events() {
  progress();
  if (connecting_nb_ && (state_ == State::Open || state_ == State::Closed)) {
    connecting_nb_ = false;  // reported now
    update_attention();
  }
  int ev = 0;
  switch (state_) {
    case State::Idle:
    case State::Bound:
      return POLLOUT | POLLHUP;
    case State::Listening:
      return requests_.empty() ? 0 : POLLIN;
    case State::Resolving:
    case State::Connecting:
      return 0;
    case State::Open:
      if (!ready_.empty() || peer_ended_ || !done_.empty() || !adverts_.empty()) ev |= POLLIN;
      if (peer_ended_) ev |= POLLRDHUP;
      if (!free_send_.empty() && !shut_wr_) ev |= POLLOUT;
      break;
    case State::Closed:
      ev |= POLLIN | POLLHUP;
      if (!ready_.empty()) ev |= POLLIN;
      break;
  }
  if (error_ != 0) ev |= POLLERR;
  return ev;
}

int RcSocket::control(std::uint8_t type, const void* body, std::size_t len) {
  if (block_until([&] { return !free_send_.empty() || state_ != State::Open; }) != 0) return -1;
  if (state_ != State::Open) return fail(ENOTCONN, detail_);
  const std::uint32_t slot = free_send_.front();
  free_send_.pop_front();
  std::uint8_t* p = mem_.get() + std::size_t{slot} * kSlot;
  p[0] = type;
  std::memcpy(p + 1, body, len);
  return post_slot(slot, static_cast<std::uint32_t>(len + 1), true, kMagic);
}

void RcSocket::on_control(const std::uint8_t* p, std::uint32_t len) {
  if (p[0] == kAdvert && len >= 1 + sizeof(AdvertBody)) {
    AdvertBody b{};
    std::memcpy(&b, p + 1, sizeof b);
    adverts_.push_back(
        afib_remote{ntohl(b.id), ntohl(b.rkey), hton64(b.addr), hton64(b.len), ntohl(b.access)});
  } else if (p[0] == kRevoked && len >= 5) {
    std::uint32_t id = 0;
    std::memcpy(&id, p + 1, 4);
    id = ntohl(id);
    for (auto it = adverts_.begin(); it != adverts_.end();)  // not yet taken: gone
      it = it->id == id ? adverts_.erase(it) : std::next(it);
  }
}

int RcSocket::reg(void* addr, std::size_t len, int access) {
  if (state_ != State::Open || id_ == nullptr || id_->qp == nullptr)
    return fail(ENOTCONN, "register memory on a connected socket");
  if (addr == nullptr || len == 0) return fail(EINVAL, "an empty region");
  if ((access & ~(AFIB_ACCESS_REMOTE_READ | AFIB_ACCESS_REMOTE_WRITE)) != 0)
    return fail(EINVAL, "unknown access bits");
  // Only the access asked for: local write (RDMA READ lands here) always, remote read / write
  // as granted.
  unsigned flags = IBV_ACCESS_LOCAL_WRITE;
  if ((access & AFIB_ACCESS_REMOTE_READ) != 0) flags |= IBV_ACCESS_REMOTE_READ;
  if ((access & AFIB_ACCESS_REMOTE_WRITE) != 0) flags |= IBV_ACCESS_REMOTE_WRITE;
  ibv_mr* mr = ibv_reg_mr(id_->qp->pd, addr, len, flags);
  if (mr == nullptr) return fail(errno, std::string("ibv_reg_mr: ") + std::strerror(errno));
  const int n = next_region_++;
  regions_[n] = mr;
  region_access_[n] = static_cast<std::uint32_t>(access);
  return n;
}

int RcSocket::advertise(int region) {
  const Settle settle{*this};
  const auto it = regions_.find(region);
  if (it == regions_.end()) return fail(EINVAL, "no such region");
  const ibv_mr* mr = it->second;
  AdvertBody b{};
  b.id = htonl(static_cast<std::uint32_t>(region));
  b.rkey = htonl(mr->rkey);
  b.addr = hton64(reinterpret_cast<std::uintptr_t>(mr->addr));
  b.len = hton64(mr->length);
  b.access = htonl(region_access_[region]);
  return control(kAdvert, &b, sizeof b);
}

int RcSocket::peer_region(afib_remote* out) {
  const Settle settle{*this};
  if (state_ != State::Open && adverts_.empty()) return fail(ENOTCONN, "not connected");
  if (block_until([&] { return !adverts_.empty() || state_ != State::Open; }) != 0) return -1;
  if (adverts_.empty()) return fail(ENOTCONN, detail_.empty() ? "connection ended" : detail_);
  *out = adverts_.front();
  adverts_.pop_front();
  return 0;
}

int RcSocket::rdma(bool write, int region, std::size_t offset, const afib_remote& remote,
                   std::uint64_t remote_offset, std::size_t len, std::uint64_t wr_id, bool with_imm,
                   std::uint32_t imm) {
  const Settle settle{*this};
  progress();
  if (state_ != State::Open) return fail(ENOTCONN, detail_.empty() ? "not connected" : detail_);
  if (with_imm && imm == kMagic)
    return fail(EINVAL, "the immediate value 0x41464942 is libafib's own (AFIB_IMM_RESERVED)");
  const auto it = regions_.find(region);
  if (it == regions_.end()) return fail(EINVAL, "no such local region");
  const ibv_mr* mr = it->second;
  if (offset > mr->length || len > mr->length - offset)
    return fail(EINVAL, "outside the local region");
  if (len > UINT32_MAX) return fail(EMSGSIZE, "at most 4 GiB per operation");
  // The remote bounds are the peer's to enforce (its key covers its region); checked here too
  // so that a caller's mistake is an error, not a broken connection.
  if (remote_offset > remote.len || len > remote.len - remote_offset)
    return fail(EINVAL, "outside the peer's region");
  const std::uint32_t seq = next_op_++;
  ibv_sge sge{reinterpret_cast<std::uintptr_t>(mr->addr) + offset, static_cast<std::uint32_t>(len),
              mr->lkey};
  ibv_send_wr wr{};
  ibv_send_wr* bad = nullptr;
  wr.wr_id = kOpTag | seq;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = !write ? IBV_WR_RDMA_READ : with_imm ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE;
  if (write && with_imm) wr.imm_data = htonl(imm);
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.wr.rdma.remote_addr = remote.addr + remote_offset;
  wr.wr.rdma.rkey = remote.rkey;
  if (ibv_post_send(id_->qp, &wr, &bad) != 0)
    return fail(errno, std::string("ibv_post_send: ") + std::strerror(errno));
  ops_[seq] =
      Op{wr_id, write ? std::uint32_t{AFIB_OP_RDMA_WRITE} : std::uint32_t{AFIB_OP_RDMA_READ},
         static_cast<std::uint32_t>(len)};
  return 0;
}

int RcSocket::completions(afib_completion* out, int n) {
  const Settle settle{*this};
  if (n <= 0) return fail(EINVAL, "no room for completions");
  if (block_until([&] { return !done_.empty() || state_ == State::Closed; }) != 0) return -1;
  int k = 0;
  for (; k < n && !done_.empty(); ++k) {
    out[k] = done_.front();
    done_.pop_front();
  }
  if (k == 0) return fail(error_ != 0 ? error_ : ENOTCONN, detail_);
  return k;
}

int RcSocket::revoke(int region) {
  const Settle settle{*this};
  const auto it = regions_.find(region);
  if (it == regions_.end()) return fail(EINVAL, "no such region");
  // Deregistering kills the key at once: a later access by the peer fails.
  if (ibv_dereg_mr(it->second) != 0) return fail(errno, "ibv_dereg_mr failed");
  regions_.erase(it);
  region_access_.erase(region);
  if (state_ == State::Open) {
    const std::uint32_t id = htonl(static_cast<std::uint32_t>(region));
    control(kRevoked, &id, sizeof id);  // the peer learns it; the key is dead either way
  }
  return 0;
}

const sockaddr* RcSocket::local() const {
  return id_ != nullptr ? rdma_get_local_addr(id_) : nullptr;
}

const sockaddr* RcSocket::peer() const {
  return id_ != nullptr ? rdma_get_peer_addr(id_) : nullptr;
}

}  // namespace afib

#include "connection.hpp"

#include <fcntl.h>
#include <infiniband/ib.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "sdp/bytes.hpp"
#include "sdp/cm_reject.hpp"
#include "sdp/trace.hpp"
#include "sdp/wire.hpp"

namespace sdp::verbs {

namespace {

constexpr std::uint64_t kFenceWrId = ~0ULL;
constexpr std::uint64_t kKeepaliveWrId = ~0ULL - 1;
constexpr std::uint32_t kFenceMs = 500;  // wait for an AbortConn to leave before the DREQ

// One protection domain and the device limits per verbs context, shared by all connections.
struct DeviceInfo {
  ibv_pd* pd = nullptr;
  std::uint8_t rd_atomic = 1;
};
std::mutex g_dev_mu;
std::map<ibv_context*, DeviceInfo> g_devs;

DeviceInfo* device_for(ibv_context* ctx) {
  std::lock_guard lk(g_dev_mu);
  auto it = g_devs.find(ctx);
  if (it != g_devs.end()) return &it->second;
  DeviceInfo d;
  d.pd = ibv_alloc_pd(ctx);
  if (d.pd == nullptr) return nullptr;
  ibv_device_attr attr{};
  if (ibv_query_device(ctx, &attr) == 0)
    d.rd_atomic = static_cast<std::uint8_t>(
        std::clamp(std::min(attr.max_qp_rd_atom, attr.max_qp_init_rd_atom), 1, 8));
  return &g_devs.emplace(ctx, d).first->second;
}

int set_nonblock(int fd) {
  const int fl = fcntl(fd, F_GETFL);
  return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int epoll_add(int epfd, int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

std::FILE* g_trace = nullptr;
std::once_flag g_trace_once;
std::mutex g_trace_mu;

void open_trace() {
  const char* path = std::getenv("SDP_TRACE");
  if (path == nullptr || *path == '\0') return;
  g_trace = std::fopen(path, "a");
  if (g_trace == nullptr)
    std::fprintf(stderr, "libsdp: cannot open SDP_TRACE file %s: %s\n", path, std::strerror(errno));
}

}  // namespace

std::size_t sockaddr_size(sa_family_t family) noexcept {
  switch (family) {
    case AF_INET:
      return sizeof(sockaddr_in);
    case AF_INET6:
      return sizeof(sockaddr_in6);
    case AF_IB:
      return sizeof(sockaddr_ib);
    default:
      return 0;
  }
}

void copy_sockaddr(sockaddr_storage& out, const sockaddr* a) noexcept {
  if (a != nullptr && sockaddr_size(a->sa_family) != 0)
    std::memcpy(&out, a, sockaddr_size(a->sa_family));
}

std::uint64_t now_ms() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000U +
         static_cast<std::uint64_t>(ts.tv_nsec) / 1'000'000U;
}

bool trace_enabled() noexcept {
  std::call_once(g_trace_once, open_trace);
  return g_trace != nullptr;
}

void trace_line(const std::string& line) {
  if (!trace_enabled()) return;
  std::lock_guard lk(g_trace_mu);
  std::fputs(line.c_str(), g_trace);
  std::fputc('\n', g_trace);
  std::fflush(g_trace);
}

int cm_event_errno(const rdma_cm_event& ev) noexcept {
  switch (ev.event) {
    case RDMA_CM_EVENT_REJECTED:
    case RDMA_CM_EVENT_CONNECT_ERROR:
      return ECONNREFUSED;
    case RDMA_CM_EVENT_ADDR_ERROR:
    case RDMA_CM_EVENT_ROUTE_ERROR:
    case RDMA_CM_EVENT_UNREACHABLE:
      return ev.status == -ETIMEDOUT                               ? ETIMEDOUT
             : ev.status == -ENETUNREACH || ev.status == -ENETDOWN ? ENETUNREACH
                                                                   : EHOSTUNREACH;
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
      return ENODEV;
    case RDMA_CM_EVENT_DISCONNECTED:
      return ECONNRESET;
    default:
      return EIO;
  }
}

// ------------------------------------------------------------------------------------------
// Attention

Attention::~Attention() {
  if (fd_ >= 0) ::close(fd_);
}

int Attention::init(int epfd) {
  fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd_ < 0 || epoll_add(epfd, fd_) != 0) return errno;
  return 0;
}

void Attention::set(bool on) {
  if (on == on_) return;
  on_ = on;
  std::uint64_t v = 1;
  if (on) {
    [[maybe_unused]] auto n = ::write(fd_, &v, sizeof v);
  } else {
    [[maybe_unused]] auto n = ::read(fd_, &v, sizeof v);
  }
}

// ------------------------------------------------------------------------------------------
// Connection

Connection::Connection(Role role, const Options& opt, CmMode mode)
    : role_(role), opt_(opt), mode_(mode), engine_(role, opt.engine) {}

Connection::~Connection() {
  if (id_ != nullptr && id_->qp != nullptr) rdma_destroy_qp(id_);
  if (cq_ != nullptr) {
    if (unacked_events_ != 0) ibv_ack_cq_events(cq_, unacked_events_);
    ibv_destroy_cq(cq_);
  }
  if (comp_ != nullptr) ibv_destroy_comp_channel(comp_);
  for (Mr& m : mrs_)
    if (m.mr != nullptr) ibv_dereg_mr(m.mr);
  if (id_ != nullptr) rdma_destroy_id(id_);
  if (channel_ != nullptr) rdma_destroy_event_channel(channel_);
  if (timer_fd_ >= 0) ::close(timer_fd_);
  if (owns_epfd_ && epfd_ >= 0) ::close(epfd_);
}

int Connection::init(int epfd) {
  engine_.tick(now_ms());
  owns_epfd_ = epfd < 0;
  epfd_ = epfd < 0 ? epoll_create1(EPOLL_CLOEXEC) : epfd;
  timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (epfd_ < 0 || timer_fd_ < 0) return errno;
  if (const int e = attention_.init(epfd_); e != 0) return e;
  channel_ = rdma_create_event_channel();
  if (channel_ == nullptr) return errno != 0 ? errno : ENODEV;
  if (set_nonblock(channel_->fd) != 0 || epoll_add(epfd_, channel_->fd) != 0 ||
      epoll_add(epfd_, timer_fd_) != 0)
    return errno;
  return 0;
}

std::uint32_t Connection::qp_num() const noexcept {
  return id_ != nullptr && id_->qp != nullptr ? id_->qp->qp_num : 0;
}

void Connection::fail(int err, std::string why) {
  if (error_ == 0) {
    error_ = err;
    error_text_ = std::move(why);
  }
  phase_ = Phase::Done;
}

int Connection::start_connect(const sockaddr* src, const sockaddr* dst) {
  const rdma_port_space ps = mode_ == CmMode::Native ? RDMA_PS_IB : RDMA_PS_TCP;
  if (rdma_create_id(channel_, &id_, this, ps) != 0) return errno;
  id_on_own_channel_ = true;
  if (rdma_resolve_addr(id_, const_cast<sockaddr*>(src), const_cast<sockaddr*>(dst),
                        opt_.resolve_timeout_ms) != 0) {
    const int e = errno;
    return e == ENODEV ? ENETUNREACH : e;
  }
  copy_sockaddr(peer_, dst);
  phase_ = Phase::Resolving;
  return 0;
}

int Connection::create_qp() {
  ibv_context* ctx = id_->verbs;
  if (ctx == nullptr) return ENODEV;
  DeviceInfo* dev = device_for(ctx);
  if (dev == nullptr) return errno != 0 ? errno : ENOMEM;
  pd_ = dev->pd;
  rd_atomic_ = dev->rd_atomic;
  comp_ = ibv_create_comp_channel(ctx);
  if (comp_ == nullptr) return errno;
  if (set_nonblock(comp_->fd) != 0 || epoll_add(epfd_, comp_->fd) != 0) return errno;
  const std::uint32_t send_wr = std::uint32_t{opt_.engine.send_slots} + 64;
  const std::uint32_t recv_wr = opt_.engine.recv_bufs;
  cq_ = ibv_create_cq(ctx, static_cast<int>(send_wr + recv_wr), this, comp_, 0);
  if (cq_ == nullptr) return errno;
  if (ibv_req_notify_cq(cq_, 0) != 0) return errno;
  cq_armed_ = true;
  ibv_qp_init_attr qa{};
  qa.send_cq = cq_;
  qa.recv_cq = cq_;
  qa.qp_type = IBV_QPT_RC;
  qa.cap.max_send_wr = send_wr;
  qa.cap.max_recv_wr = recv_wr;
  qa.cap.max_send_sge = 1;
  qa.cap.max_recv_sge = 1;
  qa.sq_sig_all = 0;
  if (rdma_create_qp(id_, pd_, &qa) != 0) return errno;
  recv_addr_.assign(recv_wr, nullptr);
  return 0;
}

void Connection::fill_addrs() {
  if (id_ == nullptr) return;
  copy_sockaddr(local_, rdma_get_local_addr(id_));
  copy_sockaddr(peer_, rdma_get_peer_addr(id_));
}

namespace {
// The Hello's 16-byte address field for an IP CM address (IPv4 in the last 4 bytes).
std::array<std::uint8_t, 16> hello_ip(const sockaddr_storage& ss, std::uint8_t& version) {
  std::array<std::uint8_t, 16> out{};
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    std::memcpy(out.data() + 12, &in->sin_addr, 4);
    version = wire::kIpv4;
  } else if (ss.ss_family == AF_INET6) {
    std::memcpy(out.data(), &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, 16);
    version = wire::kIpv6;
  } else if (ss.ss_family == AF_IB) {
    // Native mode has no IP addresses: the Hello carries the GIDs, as IPv6 (docs/wire.md).
    std::memcpy(out.data(), &reinterpret_cast<const sockaddr_ib*>(&ss)->sib_addr, 16);
    version = wire::kIpv6;
  }
  return out;
}
}  // namespace

void Connection::on_cm_event(const rdma_cm_event& ev) {
  switch (ev.event) {
    case RDMA_CM_EVENT_ADDR_RESOLVED:
      if (rdma_resolve_route(id_, opt_.resolve_timeout_ms) != 0)
        fail(EHOSTUNREACH, std::string("rdma_resolve_route: ") + std::strerror(errno));
      return;
    case RDMA_CM_EVENT_ROUTE_RESOLVED: {
      if (const int e = create_qp(); e != 0) {
        fail(e, std::string("creating the CQ/QP: ") + std::strerror(e));
        return;
      }
      fill_addrs();
      Engine::HelloParams hp;
      hp.compact = mode_ == CmMode::IpCm;
      std::uint8_t v = wire::kIpv4;
      hp.src_ip = hello_ip(local_, v);
      hp.dst_ip = hello_ip(peer_, v);
      hp.ip_version = v;
      hp.local_port = be16toh(rdma_get_src_port(id_));
      auto hello = engine_.connect(hp);
      std::array<std::uint8_t, wire::kHelloMessageSize> pd{};
      std::copy(hello.begin(), hello.end(), pd.begin());
      trace_hello("tx", hello);
      run_actions();
      if (engine_finished()) {
        fail(ECONNABORTED, std::string(engine_.reset_reason()));
        return;
      }
      rdma_conn_param cp{};
      cp.private_data = pd.data();
      cp.private_data_len = static_cast<std::uint8_t>(hello.size());
      cp.responder_resources = rd_atomic_;
      cp.initiator_depth = rd_atomic_;
      cp.retry_count = opt_.retry_count;
      cp.rnr_retry_count = opt_.rnr_retry;
      if (rdma_connect(id_, &cp) != 0) {
        fail(errno, std::string("rdma_connect: ") + std::strerror(errno));
        return;
      }
      phase_ = Phase::Connecting;
      return;
    }
    case RDMA_CM_EVENT_ESTABLISHED:
      fill_addrs();
      if (role_ == Role::Active) {
        std::span<const std::uint8_t> pd(
            static_cast<const std::uint8_t*>(ev.param.conn.private_data),
            ev.param.conn.private_data_len);
        trace_hello_ack("rx", pd);
        const bool ok = engine_.on_hello_ack(pd);
        run_actions();
        if (!ok) {
          fail(ECONNREFUSED, "bad HelloAck: " + std::string(engine_.reset_reason()));
          disconnect_now();
          return;
        }
      }
      phase_ = Phase::Established;
      return;
    case RDMA_CM_EVENT_REJECTED: {
      std::string why =
          "CM REJ, reason " + std::to_string(ev.status) + ": " + sdp::cm_reject_reason(ev.status);
      if (ev.param.conn.private_data_len > 5 && ev.param.conn.private_data != nullptr) {
        // Our own REJ carries "SDP: <reason>" in its private data.
        const auto* p = static_cast<const char*>(ev.param.conn.private_data);
        if (std::memcmp(p, "SDP: ", 5) == 0)
          why += " (" + std::string(p, strnlen(p, ev.param.conn.private_data_len)) + ")";
      }
      fail(ECONNREFUSED, why);
      return;
    }
    case RDMA_CM_EVENT_ADDR_ERROR:
    case RDMA_CM_EVENT_ROUTE_ERROR:
    case RDMA_CM_EVENT_UNREACHABLE:
    case RDMA_CM_EVENT_CONNECT_ERROR: {
      const int e = cm_event_errno(ev);
      fail(e, std::string(rdma_event_str(ev.event)) + " (status " + std::to_string(ev.status) +
                  "): " + std::strerror(e));
      return;
    }
    case RDMA_CM_EVENT_DISCONNECTED:
      cm_disconnected_ = true;
      // The peer's last messages (its DisConn) must reach the engine before the DREQ does.
      while (poll_cq() > 0) {
      }
      if (phase_ == Phase::Established && !engine_finished()) {
        engine_.on_cm_disconnect();
        run_actions();
      } else if (phase_ != Phase::Done) {
        fail(ECONNRESET, "disconnected during connection setup");
      }
      disconnect_now();  // DREP
      return;
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
      if (!engine_finished()) engine_.abort("RDMA device removed");
      run_actions();
      fail(ENODEV, "RDMA device removed");
      return;
    default:
      return;  // TIMEWAIT_EXIT, ADDR_CHANGE, ...: nothing to do
  }
}

int Connection::adopt_request(rdma_cm_id* id, const rdma_cm_event& ev) {
  id_ = id;
  id_->context = this;
  std::span<const std::uint8_t> req(static_cast<const std::uint8_t*>(ev.param.conn.private_data),
                                    ev.param.conn.private_data_len);
  trace_hello("rx", req);
  fill_addrs();
  auto reject = [&](const std::string& why) {
    std::string msg = "SDP: " + why;
    msg.resize(std::min<std::size_t>(msg.size(), 140));
    rdma_reject(id_, msg.c_str(), static_cast<std::uint8_t>(msg.size() + 1));
    fail(ECONNREFUSED, why);
    return ECONNREFUSED;
  };
  if (const int e = create_qp(); e != 0) return reject(std::string("no QP: ") + std::strerror(e));
  auto ack = engine_.accept(req);
  if (ack.empty()) return reject(std::string(engine_.reject_reason()));
  std::array<std::uint8_t, wire::kHelloAckMessageSize> pd{};
  std::copy(ack.begin(), ack.end(), pd.begin());
  run_actions();  // registers the rings and posts the receives before the REP leaves
  if (engine_finished()) return reject(std::string(engine_.reset_reason()));
  trace_hello_ack("tx", pd);
  rdma_conn_param cp{};
  cp.private_data = pd.data();
  cp.private_data_len = static_cast<std::uint8_t>(pd.size());
  cp.responder_resources = std::min(ev.param.conn.initiator_depth, rd_atomic_);
  cp.initiator_depth = std::min(ev.param.conn.responder_resources, rd_atomic_);
  cp.retry_count = opt_.retry_count;
  cp.rnr_retry_count = opt_.rnr_retry;
  if (rdma_accept(id_, &cp) != 0) {
    fail(errno, std::string("rdma_accept: ") + std::strerror(errno));
    return error_;
  }
  phase_ = Phase::Connecting;
  return 0;
}

int Connection::take_id() {
  if (id_on_own_channel_) return 0;
  if (rdma_migrate_id(id_, channel_) != 0) return errno;
  id_on_own_channel_ = true;
  return 0;
}

void Connection::drain_cm_channel() {
  if (!id_on_own_channel_) return;
  rdma_cm_event* ev = nullptr;
  while (rdma_get_cm_event(channel_, &ev) == 0) {
    on_cm_event(*ev);
    rdma_ack_cm_event(ev);
  }
}

std::uint32_t Connection::lkey_for(const std::uint8_t* addr, std::size_t len) {
  auto inside = [&](const Mr& m) { return addr >= m.addr && addr + len <= m.addr + m.len; };
  if (last_mr_ < mrs_.size() && inside(mrs_[last_mr_])) return mrs_[last_mr_].mr->lkey;
  for (std::size_t i = 0; i < mrs_.size(); ++i) {
    if (inside(mrs_[i])) {
      last_mr_ = i;
      return mrs_[i].mr->lkey;
    }
  }
  return 0;
}

void Connection::flush_recvs() {
  if (rwr_.empty() || id_ == nullptr || id_->qp == nullptr) {
    rwr_.clear();
    rsge_.clear();
    return;
  }
  for (std::size_t i = 0; i < rwr_.size(); ++i) {
    rwr_[i].sg_list = &rsge_[i];
    rwr_[i].next = i + 1 < rwr_.size() ? &rwr_[i + 1] : nullptr;
  }
  ibv_recv_wr* bad = nullptr;
  const int e = ibv_post_recv(id_->qp, rwr_.data(), &bad);
  rwr_.clear();
  rsge_.clear();
  if (e != 0 && !engine_finished())
    engine_.abort(std::string("ibv_post_recv: ") + std::strerror(e));
}

void Connection::flush_sends() {
  if (swr_.empty() || id_ == nullptr || id_->qp == nullptr) {
    swr_.clear();
    ssge_.clear();
    return;
  }
  for (std::size_t i = 0; i < swr_.size(); ++i) {
    if (swr_[i].num_sge != 0) swr_[i].sg_list = &ssge_[i];
    swr_[i].next = i + 1 < swr_.size() ? &swr_[i + 1] : nullptr;
  }
  ibv_send_wr* bad = nullptr;
  const int e = ibv_post_send(id_->qp, swr_.data(), &bad);
  swr_.clear();
  ssge_.clear();
  if (e != 0 && !engine_finished())
    engine_.abort(std::string("ibv_post_send: ") + std::strerror(e));
}

void Connection::run_actions() {
  std::size_t k = 0;
  for (;;) {
    for (; k < engine_.actions().size(); ++k) {
      const Action a = engine_.actions()[k];
      switch (a.type) {
        case ActionType::RegisterRegion: {
          constexpr auto kLw = static_cast<unsigned>(IBV_ACCESS_LOCAL_WRITE);
          constexpr auto kRr = static_cast<unsigned>(IBV_ACCESS_REMOTE_READ);
          constexpr auto kRw = static_cast<unsigned>(IBV_ACCESS_REMOTE_WRITE);
          unsigned acc = kLw;
          if (a.access == access::kRemoteRead) acc = kRr;
          if ((a.access & access::kRemoteWrite) != 0)
            acc = kLw | kRw | ((a.access & access::kRemoteRead) != 0 ? kRr : 0U);
          ibv_mr* mr = pd_ != nullptr ? ibv_reg_mr(pd_, a.addr, a.len, acc) : nullptr;
          if (mr == nullptr) {
            if (!engine_finished())
              engine_.abort(std::string("ibv_reg_mr of ") + std::to_string(a.len) +
                            " bytes failed: " + std::strerror(errno));
            break;
          }
          mrs_.push_back({a.id, mr, a.addr, a.len, a.access != 0});
          if (a.access != 0) engine_.on_region_registered(a.id, mr->rkey);
          break;
        }
        case ActionType::DeregisterRegion: {
          // The grant ends now: nothing posted may still use it (the engine guarantees that).
          flush_sends();
          auto it =
              std::find_if(mrs_.begin(), mrs_.end(), [&](const Mr& m) { return m.id == a.id; });
          if (it != mrs_.end()) {
            ibv_dereg_mr(it->mr);
            mrs_.erase(it);
            last_mr_ = 0;
          }
          break;
        }
        case ActionType::PostRecv: {
          if (a.id < recv_addr_.size()) recv_addr_[a.id] = a.addr;
          ibv_recv_wr wr{};
          wr.wr_id = a.id;
          wr.num_sge = 1;
          rwr_.push_back(wr);
          rsge_.push_back(
              {reinterpret_cast<std::uintptr_t>(a.addr), a.len, lkey_for(a.addr, a.len)});
          break;
        }
        case ActionType::PostSend:
        case ActionType::RdmaRead:
        case ActionType::RdmaWrite:
        case ActionType::Keepalive: {
          flush_recvs();  // credits the message may announce must be real first
          ibv_send_wr wr{};
          wr.wr_id = a.id;
          ibv_sge sge{reinterpret_cast<std::uintptr_t>(a.addr), a.len, lkey_for(a.addr, a.len)};
          if (a.type == ActionType::PostSend) {
            wr.opcode = IBV_WR_SEND;
            wr.send_flags = (a.signaled ? static_cast<unsigned>(IBV_SEND_SIGNALED) : 0U) |
                            (a.solicited ? static_cast<unsigned>(IBV_SEND_SOLICITED) : 0U);
            if (trace_enabled()) trace_send(a.addr, a.len);
          } else if (a.type == ActionType::Keepalive) {
            wr.wr_id = kKeepaliveWrId;
            wr.opcode = IBV_WR_RDMA_WRITE;
            wr.send_flags = IBV_SEND_SIGNALED;  // keepalives must not pile up in the SQ
            sge.length = 0;
          } else {
            wr.opcode = a.type == ActionType::RdmaRead ? IBV_WR_RDMA_READ : IBV_WR_RDMA_WRITE;
            wr.send_flags = IBV_SEND_SIGNALED;
            wr.wr.rdma.remote_addr = a.remote_va;
            wr.wr.rdma.rkey = a.rkey;
          }
          wr.num_sge = sge.length != 0 ? 1 : 0;
          if (sge.length != 0 && sge.lkey == 0 && !engine_finished()) {
            engine_.abort("internal: a work request names memory outside every registration");
            break;
          }
          swr_.push_back(wr);
          ssge_.push_back(sge);
          break;
        }
        case ActionType::CmDisconnect:
          flush_recvs();
          flush_sends();
          disconnect_now();
          break;
        case ActionType::Established:
          break;
        case ActionType::Closed:
          flush_recvs();
          flush_sends();
          if (phase_ != Phase::Done) phase_ = Phase::Done;
          break;
        case ActionType::Reset:
          flush_recvs();
          flush_sends();
          map_reset_error();
          start_fence();
          phase_ = Phase::Done;
          break;
        case ActionType::ZcopyDone:
          ++zcopy_done_;
          break;
      }
    }
    flush_recvs();
    flush_sends();
    if (k == engine_.actions().size()) break;  // a failed post may have added an abort
  }
  engine_.clear_actions();
  arm_timer();
}

void Connection::map_reset_error() {
  int e = ECONNRESET;
  switch (engine_.reset_cause()) {
    case ResetCause::Timeout:
      e = ETIMEDOUT;
      break;
    case ResetCause::LocalAbort:
      e = ECONNABORTED;
      break;
    default:
      break;
  }
  if (error_ == 0) {
    error_ = e;
    error_text_ = std::string(engine_.reset_reason());
  }
}

void Connection::start_fence() {
  if (disconnect_sent_ || id_ == nullptr || id_->qp == nullptr) return;
  if (cm_disconnected_) {
    disconnect_now();
    return;
  }
  // Let the AbortConn (already posted) leave before the DREQ moves the QP to the error state:
  // a zero-length RDMA WRITE completes only after every earlier send has.
  ibv_send_wr wr{};
  wr.wr_id = kFenceWrId;
  wr.opcode = IBV_WR_RDMA_WRITE;
  wr.send_flags = IBV_SEND_SIGNALED;
  ibv_send_wr* bad = nullptr;
  if (ibv_post_send(id_->qp, &wr, &bad) != 0) {
    disconnect_now();
    return;
  }
  fencing_ = true;
  fence_deadline_ = now_ms() + kFenceMs;
}

void Connection::disconnect_now() {
  fencing_ = false;
  if (disconnect_sent_ || id_ == nullptr) return;
  disconnect_sent_ = true;
  rdma_disconnect(id_);
}

void Connection::handle_wc(const ibv_wc& wc) {
  if (wc.wr_id == kFenceWrId) {
    disconnect_now();
    return;
  }
  if (engine_finished()) return;  // flushed work after a close or reset
  if (wc.status != IBV_WC_SUCCESS) {
    if (wc.status == IBV_WC_WR_FLUSH_ERR && (cm_disconnected_ || disconnect_sent_)) return;
    engine_.on_completion_error(wc.wr_id, std::string("completion error: ") +
                                              ibv_wc_status_str(wc.status) + " (vendor error " +
                                              std::to_string(wc.vendor_err) + ")");
    return;
  }
  switch (wc.opcode) {
    case IBV_WC_RECV:
      if (trace_enabled() && wc.wr_id < recv_addr_.size() && recv_addr_[wc.wr_id] != nullptr)
        trace_recv(recv_addr_[wc.wr_id], wc.byte_len);
      engine_.on_recv(wc.wr_id, wc.byte_len);
      break;
    case IBV_WC_SEND:
      engine_.on_send_complete(wc.wr_id);
      break;
    case IBV_WC_RDMA_READ:
    case IBV_WC_RDMA_WRITE:
      if (wc.wr_id != kKeepaliveWrId) engine_.on_rdma_complete(wc.wr_id);
      break;
    default:
      break;
  }
}

int Connection::poll_cq() {
  if (cq_ == nullptr) return 0;
  std::array<ibv_wc, 32> wcs{};
  int total = 0;
  for (;;) {
    const int n = ibv_poll_cq(cq_, static_cast<int>(wcs.size()), wcs.data());
    if (n <= 0) break;
    for (int i = 0; i < n; ++i) handle_wc(wcs[static_cast<std::size_t>(i)]);
    total += n;
    run_actions();
    if (n < static_cast<int>(wcs.size())) break;
  }
  return total;
}

void Connection::progress() {
  drain_cm_channel();
  if (comp_ != nullptr) {
    ibv_cq* cq = nullptr;
    void* ctx = nullptr;
    while (ibv_get_cq_event(comp_, &cq, &ctx) == 0) {
      ++unacked_events_;
      cq_armed_ = false;
    }
    if (unacked_events_ >= 16) {
      ibv_ack_cq_events(cq_, unacked_events_);
      unacked_events_ = 0;
    }
    for (;;) {
      if (poll_cq() > 0) continue;
      if (cq_armed_) break;
      ibv_req_notify_cq(cq_, 0);
      cq_armed_ = true;  // and poll once more: a completion may have slipped in before arming
    }
  }
  std::uint64_t expirations = 0;
  [[maybe_unused]] auto n = ::read(timer_fd_, &expirations, sizeof expirations);
  timer_armed_ = UINT64_MAX;
  const std::uint64_t now = now_ms();
  if (fencing_ && now >= fence_deadline_) disconnect_now();
  // The engine's clock is the last tick: give it the time at every step, not only at deadlines
  // (adverts and close timers are measured from it).
  if (!engine_finished()) engine_.tick(now);
  run_actions();
}

void Connection::arm_timer() {
  std::uint64_t when = UINT64_MAX;
  if (phase_ == Phase::Established && !engine_finished()) when = engine_.next_deadline_ms();
  if (fencing_) when = std::min(when, fence_deadline_);
  if (when == timer_armed_) return;
  timer_armed_ = when;
  itimerspec its{};
  if (when != UINT64_MAX) {
    its.it_value.tv_sec = static_cast<time_t>(when / 1000);
    its.it_value.tv_nsec = static_cast<long>((when % 1000) * 1'000'000);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
  }
  timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &its, nullptr);
}

// ---- trace ---------------------------------------------------------------------------------

void Connection::trace_send(const std::uint8_t* msg, std::uint32_t len) {
  auto b = wire::peek_bsdh({msg, len});
  if (!b) return;
  trace_line("{\"t_ms\":" + std::to_string(now_ms()) + ",\"qpn\":" + std::to_string(qp_num()) +
             ",\"dir\":\"tx\"," + trace::bsdh_fields(*b) + ",\"bytes\":" + std::to_string(len) +
             "}");
}

void Connection::trace_recv(const std::uint8_t* msg, std::uint32_t len) {
  auto b = wire::peek_bsdh({msg, len});
  if (!b) return;
  trace_line("{\"t_ms\":" + std::to_string(now_ms()) + ",\"qpn\":" + std::to_string(qp_num()) +
             ",\"dir\":\"rx\"," + trace::bsdh_fields(*b) + ",\"bytes\":" + std::to_string(len) +
             "}");
}

void Connection::trace_hello(const char* dir, std::span<const std::uint8_t> pd) {
  if (!trace_enabled()) return;
  auto h = wire::decode_hello(pd);
  if (!h) return;
  trace_line("{\"t_ms\":" + std::to_string(now_ms()) + ",\"dir\":\"" + dir + "\"," +
             trace::hello_fields(*h) + "}");
}

void Connection::trace_hello_ack(const char* dir, std::span<const std::uint8_t> pd) {
  if (!trace_enabled()) return;
  auto h = wire::decode_hello_ack(pd);
  if (!h) return;
  trace_line("{\"t_ms\":" + std::to_string(now_ms()) + ",\"qpn\":" + std::to_string(qp_num()) +
             ",\"dir\":\"" + dir + "\"," + trace::hello_ack_fields(*h) + "}");
}

// ------------------------------------------------------------------------------------------
// Listener

Listener::Listener(const Options& opt, CmMode mode) : opt_(opt), mode_(mode) {}

Listener::~Listener() {
  pending_.clear();
  ready_.clear();
  if (id_ != nullptr) rdma_destroy_id(id_);
  if (channel_ != nullptr) rdma_destroy_event_channel(channel_);
}

int Listener::init(int epfd) {
  epfd_ = epfd;
  if (epfd_ < 0) return EBADF;
  if (const int e = attention_.init(epfd_); e != 0) return e;
  channel_ = rdma_create_event_channel();
  if (channel_ == nullptr) return errno != 0 ? errno : ENODEV;
  if (set_nonblock(channel_->fd) != 0 || epoll_add(epfd_, channel_->fd) != 0) return errno;
  const rdma_port_space ps = mode_ == CmMode::Native ? RDMA_PS_IB : RDMA_PS_TCP;
  if (rdma_create_id(channel_, &id_, this, ps) != 0) return errno;
  return 0;
}

int Listener::bind(const sockaddr* addr) {
  if (rdma_bind_addr(id_, const_cast<sockaddr*>(addr)) != 0) return errno;
  copy_sockaddr(local_, rdma_get_local_addr(id_));
  return 0;
}

int Listener::listen(int backlog) {
  backlog_ = std::clamp(backlog, 1, 4096);
  if (rdma_listen(id_, backlog_) != 0) return errno;
  copy_sockaddr(local_, rdma_get_local_addr(id_));
  return 0;
}

void Listener::progress() {
  rdma_cm_event* ev = nullptr;
  while (rdma_get_cm_event(channel_, &ev) == 0) {
    if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST) {
      rdma_cm_id* child = ev->id;
      if (static_cast<int>(pending_.size() + ready_.size()) >= backlog_) {
        static const char kFull[] = "SDP: listen backlog full";
        rdma_reject(child, kFull, sizeof kFull);
        rdma_ack_cm_event(ev);
        rdma_destroy_id(child);
        continue;
      }
      auto conn = std::make_unique<Connection>(Role::Passive, opt_, mode_);
      int e = conn->init();
      if (e != 0) {
        rdma_reject(child, nullptr, 0);
        rdma_ack_cm_event(ev);
        rdma_destroy_id(child);
        continue;
      }
      e = conn->adopt_request(child, *ev);
      rdma_ack_cm_event(ev);
      if (e == 0) pending_.push_back(std::move(conn));
      // On failure the connection owns the (rejected) id and destroys it.
      continue;
    }
    auto* conn = static_cast<Connection*>(ev->id->context);
    if (ev->id != id_ && conn != nullptr) conn->on_cm_event(*ev);
    rdma_ack_cm_event(ev);
  }
  // Established connections move to the accept queue; failed ones are dropped.
  for (auto it = pending_.begin(); it != pending_.end();) {
    if ((*it)->phase() == Connection::Phase::Established) {
      ready_.push_back(std::move(*it));
      it = pending_.erase(it);
    } else if ((*it)->phase() == Connection::Phase::Done) {
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
}

std::unique_ptr<Connection> Listener::pop() {
  while (!ready_.empty()) {
    auto c = std::move(ready_.front());
    ready_.pop_front();
    if (c->take_id() == 0) return c;
  }
  return nullptr;
}

}  // namespace sdp::verbs

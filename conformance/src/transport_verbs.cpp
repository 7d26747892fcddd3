// The verbs transport: the raw endpoint on a real RC QP through librdmacm + libibverbs (not
// libsdp). It puts on the wire exactly what the scenario gives it and adds no SDP logic:
//
// - one rdma_cm id on its own event channel; IP CM mode: AF_INET/AF_INET6 + RDMA_PS_TCP (the
//   kernel adds the IP CM header, service ID 0x0106PPPP); native mode: AF_IB + RDMA_PS_IB with
//   the SDP service ID 0x000000000001PPPP (InfiniBand ports only: tools/lab/README.md "AF_IB on
//   rxe");
// - one PD and one CQ (with a completion channel) on the device that reaches the peer, created
//   at construction so that receives and regions can be registered before connect();
// - the QP is our own (ibv_create_qp, not rdma_create_qp): librdmacm then leaves the RTR/RTS
//   transitions to us (RDMA_CM_EVENT_CONNECT_RESPONSE + rdma_establish), which lets us set our
//   RNR retry count to 0 whatever the peer's REP asks for (an IB CM REP's "RNR retry count"
//   configures the active side's QP; libsdp answers 7 = retry forever). SDP forbids sending
//   without a credit, so a SEND into no posted receive must come back to the raw endpoint as a
//   SendError (RNR retry counter exceeded), not hang in RNR retries.
#include <arpa/inet.h>
#include <endian.h>
#include <fcntl.h>
#include <infiniband/ib.h>
#include <infiniband/verbs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <rdma/rdma_cma.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <utility>

#include "sdp/cm_reject.hpp"
#include "transport.hpp"

namespace conformance {
namespace {

constexpr std::uint32_t kMaxSendWr = 128;
constexpr std::uint32_t kMaxRecvWr = 1024;
constexpr std::uint8_t kRetryCount = 7;
constexpr std::uint8_t kRnrRetry = 0;
constexpr std::uint64_t kSdpServiceId = 0x0000000000010000ULL;  // native SDP: 0x0001PPPP

// wr_id: the top two bits say what the work request is, the rest names it.
constexpr std::uint64_t kTagShift = 62;
constexpr std::uint64_t kTagRecv = 1, kTagSend = 2, kTagRdma = 3;
constexpr std::uint64_t kIdMask = (1ULL << kTagShift) - 1;
constexpr unsigned kRecvIndexBits = 24;  // recv wr_id: batch << 24 | index in the batch

constexpr auto kLocalWrite = static_cast<unsigned>(IBV_ACCESS_LOCAL_WRITE);
constexpr auto kRemoteRead = static_cast<unsigned>(IBV_ACCESS_REMOTE_READ);
constexpr auto kRemoteWrite = static_cast<unsigned>(IBV_ACCESS_REMOTE_WRITE);

std::uint64_t make_wr_id(std::uint64_t tag, std::uint64_t n) {
  return (tag << kTagShift) | (n & kIdMask);
}

std::uint64_t monotonic_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000U +
         static_cast<std::uint64_t>(ts.tv_nsec) / 1'000'000U;
}

std::string errno_text(int e) {
  return std::string(std::strerror(e)) + " (errno " + std::to_string(e) + ")";
}

int set_nonblock(int fd) {
  const int fl = fcntl(fd, F_GETFL);
  return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

// Page-aligned memory, freed with free().
struct FreeDeleter {
  void operator()(std::uint8_t* p) const noexcept { std::free(p); }
};
using Mem = std::unique_ptr<std::uint8_t, FreeDeleter>;

Mem alloc_pages(std::size_t len) {
  static const std::size_t page = [] {
    const long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<std::size_t>(p) : std::size_t{4096};
  }();
  void* p = nullptr;
  if (posix_memalign(&p, page, std::max<std::size_t>(len, 1)) != 0) return nullptr;
  std::memset(p, 0, std::max<std::size_t>(len, 1));
  return Mem(static_cast<std::uint8_t*>(p));
}

// "status -110 (Connection timed out)": rdma_cm events other than REJECTED carry -errno.
std::string cm_status_text(int status) {
  std::string s = "status " + std::to_string(status);
  if (status < 0) s += " (" + std::string(std::strerror(-status)) + ")";
  return s;
}

constexpr const char* kNativeHint =
    " [native SDP needs AF_IB addressing, which rdma_cm supports on InfiniBand ports only; on "
    "RoCE (rxe in the lab) use --cm ip: see tools/lab/README.md, \"AF_IB on rxe\"]";

// The peer's address in IP CM mode (prefers IPv4, like libsdp's tools).
bool ip_address(const std::string& host, std::uint16_t port, sockaddr_storage& out,
                std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string svc = std::to_string(port);
  const int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), svc.c_str(), &hints, &res);
  if (rc != 0) {
    error = "cannot resolve '" + host + "': " + gai_strerror(rc);
    return false;
  }
  const addrinfo* pick = res;
  for (const addrinfo* a = res; a != nullptr; a = a->ai_next)
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  out = {};
  std::memcpy(&out, pick->ai_addr, std::min<std::size_t>(pick->ai_addrlen, sizeof out));
  freeaddrinfo(res);
  return true;
}

// An AF_IB address: the GID from an IPv6 literal (or an IPv4 one as ::ffff:a.b.c.d, how RoCE
// and IPoIB GIDs carry IPv4), `sid` as the service ID (0: none).
bool ib_address(const std::string& host, std::uint64_t sid, sockaddr_storage& out,
                std::string& error) {
  out = {};
  auto* ib = reinterpret_cast<sockaddr_ib*>(&out);
  ib->sib_family = AF_IB;
  ib->sib_pkey = htobe16(0xFFFF);
  if (sid != 0) {
    ib->sib_sid = htobe64(sid);
    ib->sib_sid_mask = htobe64(~0ULL);
  }
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    std::array<std::uint8_t, 16> gid{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    std::memcpy(gid.data() + 12, &v4, 4);
    std::memcpy(&ib->sib_addr, gid.data(), gid.size());
  } else if (inet_pton(AF_INET6, host.c_str(), &ib->sib_addr) != 1) {
    error = "native mode needs a GID (IPv6 form) or an IPv4 address, not '" + host + "'";
    return false;
  }
  return true;
}

class VerbsTransport final : public Transport {
 public:
  explicit VerbsTransport(VerbsOptions opt) : opt_(std::move(opt)) {}
  VerbsTransport(const VerbsTransport&) = delete;
  VerbsTransport& operator=(const VerbsTransport&) = delete;
  ~VerbsTransport() override;

  bool init(std::string& error);

  std::string describe() const override {
    return "verbs " + opt_.host + (native_ ? " (native)" : " (ip cm)");
  }
  std::uint64_t now_ms() override { return monotonic_ms(); }
  std::optional<Event> poll(std::uint64_t deadline_ms) override;
  bool connect(Service service, bool native_cm, std::span<const std::uint8_t> private_data,
               std::string& error) override;
  bool post_recv(std::uint32_t count, std::uint32_t size, std::string& error) override;
  bool send(std::span<const std::uint8_t> bytes, std::string& error) override;
  std::optional<LocalRegion> register_region(std::uint32_t len, bool remote_read, bool remote_write,
                                             std::string& error) override;
  void deregister_region(std::uint64_t id) override;
  bool rdma_read(std::uint64_t id, std::uint64_t va, std::uint32_t rkey, std::uint32_t len,
                 std::string& error) override;
  bool rdma_write(std::uint64_t id, std::uint64_t va, std::uint32_t rkey,
                  std::span<const std::uint8_t> data, std::string& error) override;
  void disconnect() override;

 private:
  enum class State : std::uint8_t { Idle, Connecting, Established, Closed };

  struct Buffer {  // registered memory
    Mem mem;
    ibv_mr* mr = nullptr;
    std::uint32_t len = 0;
  };
  struct RecvBatch {
    Buffer buf;
    std::uint32_t size = 0;
    std::uint32_t count = 0;
    std::uint32_t outstanding = 0;  // posted and not completed
    bool posted = false;
  };
  struct RdmaOp {
    std::uint64_t user_id = 0;
    bool read = false;
    Buffer buf;
  };

  bool pick_device(std::string& error);
  bool has_ib_port() const;
  bool register_buffer(Buffer& b, std::uint32_t len, unsigned access, std::string& error);
  void release(Buffer& b);
  bool wait_cm(rdma_cm_event_type want, std::uint64_t deadline, std::string& error);
  bool create_qp(std::string& error);
  bool modify_qp(ibv_qp_state state, std::string& error);
  bool post_batch(std::uint64_t key, RecvBatch& b, std::string& error);
  bool post_send_wr(ibv_send_wr& wr, std::string& error);
  bool post_rdma(RdmaOp op, ibv_wr_opcode opcode, std::uint64_t va, std::uint32_t rkey,
                 std::uint32_t len, std::string& error);
  void teardown_connection();
  void qp_to_error();
  void progress();
  void on_cm_event(const rdma_cm_event& ev);
  void on_connect_response(const rdma_cm_event& ev);
  int poll_cq();
  void handle_wc(const ibv_wc& wc);
  void push(Event::Kind kind, std::string text, std::uint64_t id = 0,
            std::vector<std::uint8_t> data = {});
  std::string where() const { return opt_.host + " port " + std::to_string(port_); }

  VerbsOptions opt_;
  bool native_ = false;
  std::uint16_t port_ = 0;
  State state_ = State::Idle;

  ibv_context** devices_ = nullptr;
  rdma_event_channel* ch_ = nullptr;
  ibv_context* ctx_ = nullptr;  // the device every resource lives on
  ibv_pd* pd_ = nullptr;
  ibv_comp_channel* comp_ = nullptr;
  ibv_cq* cq_ = nullptr;
  bool cq_armed_ = false;
  std::uint8_t rd_atomic_ = 1;
  std::uint32_t max_send_wr_ = kMaxSendWr;
  std::uint32_t max_recv_wr_ = kMaxRecvWr;

  rdma_cm_id* id_ = nullptr;
  ibv_qp* qp_ = nullptr;
  bool disconnect_sent_ = false;
  bool disconnected_ = false;  // the peer's DREQ (or an error that ended the connection)
  bool error_reported_ = false;

  std::deque<Event> events_;
  std::uint64_t next_batch_ = 1;
  std::map<std::uint64_t, RecvBatch> batches_;
  std::uint32_t recv_outstanding_ = 0;
  std::uint64_t next_send_ = 1;
  std::map<std::uint64_t, Buffer> sends_;
  std::uint64_t next_rdma_ = 1;
  std::map<std::uint64_t, RdmaOp> rdma_ops_;
  std::uint64_t next_region_ = 1;
  std::map<std::uint64_t, Buffer> regions_;
};

VerbsTransport::~VerbsTransport() {
  if (qp_ != nullptr && id_ != nullptr && state_ == State::Established && !disconnect_sent_ &&
      !disconnected_) {
    qp_to_error();
    rdma_disconnect(id_);  // a courtesy DREQ; rdma_destroy_id would send one anyway
  }
  teardown_connection();
  for (auto& [k, b] : batches_) release(b.buf);
  batches_.clear();
  for (auto& [k, r] : regions_) release(r);
  regions_.clear();
  if (cq_ != nullptr) ibv_destroy_cq(cq_);
  if (comp_ != nullptr) ibv_destroy_comp_channel(comp_);
  if (pd_ != nullptr) ibv_dealloc_pd(pd_);
  if (ch_ != nullptr) rdma_destroy_event_channel(ch_);
  if (devices_ != nullptr) rdma_free_devices(devices_);
}

void VerbsTransport::release(Buffer& b) {
  if (b.mr != nullptr) ibv_dereg_mr(b.mr);
  b.mr = nullptr;
  b.mem.reset();
}

bool VerbsTransport::init(std::string& error) {
  int n = 0;
  devices_ = rdma_get_devices(&n);
  if (devices_ == nullptr || n <= 0) {
    const int e = errno;
    error = "no RDMA device: rdma_get_devices found none";
    if (devices_ == nullptr && e != 0) error += " (" + errno_text(e) + ")";
    error += "; load a verbs provider (e.g. rdma_rxe: rdma link add rxe0 type rxe netdev IF)";
    return false;
  }
  ch_ = rdma_create_event_channel();
  if (ch_ == nullptr) {
    error = "no RDMA device: rdma_create_event_channel: " + errno_text(errno);
    return false;
  }
  if (set_nonblock(ch_->fd) != 0) {
    error = "fcntl(O_NONBLOCK) on the CM channel: " + errno_text(errno);
    return false;
  }
  if (!pick_device(error)) return false;

  ibv_device_attr attr{};
  if (ibv_query_device(ctx_, &attr) == 0) {
    rd_atomic_ = static_cast<std::uint8_t>(
        std::clamp(std::min(attr.max_qp_rd_atom, attr.max_qp_init_rd_atom), 1, 16));
    if (attr.max_qp_wr > 0) {
      const auto max_wr = static_cast<std::uint32_t>(attr.max_qp_wr);
      max_send_wr_ = std::min(max_send_wr_, max_wr);
      max_recv_wr_ = std::min(max_recv_wr_, max_wr);
    }
  }
  pd_ = ibv_alloc_pd(ctx_);
  if (pd_ == nullptr) {
    error = "ibv_alloc_pd on " + std::string(ibv_get_device_name(ctx_->device)) + ": " +
            errno_text(errno);
    return false;
  }
  comp_ = ibv_create_comp_channel(ctx_);
  if (comp_ == nullptr || set_nonblock(comp_->fd) != 0) {
    error = "ibv_create_comp_channel: " + errno_text(errno);
    return false;
  }
  int cqe = static_cast<int>(max_send_wr_ + max_recv_wr_ + 16);
  if (attr.max_cqe > 0) cqe = std::min(cqe, attr.max_cqe);
  cq_ = ibv_create_cq(ctx_, cqe, nullptr, comp_, 0);
  if (cq_ == nullptr) {
    error = "ibv_create_cq(" + std::to_string(cqe) + "): " + errno_text(errno);
    return false;
  }
  return true;
}

// The device that reaches the peer: the only one, or the one rdma_cm resolves the peer's IP
// address to (a throwaway id). Failing that (a GID in native mode, say), the first device.
bool VerbsTransport::pick_device(std::string& error) {
  int n = 0;
  while (devices_[n] != nullptr) ++n;
  ctx_ = devices_[0];
  if (n == 1) return true;
  sockaddr_storage dst{};
  std::string ignored;
  if (!ip_address(opt_.host, opt_.port_base, dst, ignored)) return true;
  rdma_cm_id* probe = nullptr;
  if (rdma_create_id(ch_, &probe, nullptr, RDMA_PS_TCP) != 0) {
    error = "rdma_create_id: " + errno_text(errno);
    return false;
  }
  sockaddr_storage src{};
  sockaddr* srcp = nullptr;
  if (!opt_.bind.empty() && ip_address(opt_.bind, 0, src, ignored))
    srcp = reinterpret_cast<sockaddr*>(&src);
  if (rdma_resolve_addr(probe, srcp, reinterpret_cast<sockaddr*>(&dst), opt_.resolve_timeout_ms) ==
      0) {
    const std::uint64_t deadline =
        monotonic_ms() + static_cast<std::uint64_t>(std::max(opt_.resolve_timeout_ms, 0)) + 1000;
    for (;;) {
      rdma_cm_event* ev = nullptr;
      if (rdma_get_cm_event(ch_, &ev) == 0) {
        const bool ok = ev->event == RDMA_CM_EVENT_ADDR_RESOLVED;
        rdma_ack_cm_event(ev);
        if (ok && probe->verbs != nullptr) ctx_ = probe->verbs;
        break;
      }
      const std::uint64_t now = monotonic_ms();
      if (errno != EAGAIN || now >= deadline) break;
      pollfd pfd{ch_->fd, POLLIN, 0};
      ::poll(&pfd, 1, static_cast<int>(std::min<std::uint64_t>(deadline - now, 100)));
    }
  }
  rdma_destroy_id(probe);
  return true;
}

// Whether the device has a port with the InfiniBand link layer (RoCE ports are Ethernet).
bool VerbsTransport::has_ib_port() const {
  ibv_device_attr attr{};
  if (ibv_query_device(ctx_, &attr) != 0) return true;  // unknown: do not claim otherwise
  for (std::uint8_t p = 1; p <= attr.phys_port_cnt && p != 0; ++p) {
    ibv_port_attr pa{};
    if (ibv_query_port(ctx_, p, &pa) != 0 || pa.link_layer != IBV_LINK_LAYER_ETHERNET) return true;
  }
  return false;
}

bool VerbsTransport::register_buffer(Buffer& b, std::uint32_t len, unsigned access,
                                     std::string& error) {
  b.mem = alloc_pages(len);
  if (!b.mem) {
    error = "cannot allocate " + std::to_string(len) + " bytes";
    return false;
  }
  b.len = len;
  b.mr = ibv_reg_mr(pd_, b.mem.get(), std::max<std::size_t>(len, 1), access);
  if (b.mr == nullptr) {
    error = "ibv_reg_mr of " + std::to_string(len) + " bytes: " + errno_text(errno);
    b.mem.reset();
    return false;
  }
  return true;
}

void VerbsTransport::push(Event::Kind kind, std::string text, std::uint64_t id,
                          std::vector<std::uint8_t> data) {
  Event ev;
  ev.kind = kind;
  ev.id = id;
  ev.text = std::move(text);
  ev.data = std::move(data);
  events_.push_back(std::move(ev));
}

// Waits for `want` on the CM channel during setup; any other event is the failure it names.
bool VerbsTransport::wait_cm(rdma_cm_event_type want, std::uint64_t deadline, std::string& error) {
  for (;;) {
    rdma_cm_event* ev = nullptr;
    if (rdma_get_cm_event(ch_, &ev) == 0) {
      const rdma_cm_event_type got = ev->event;
      const int status = ev->status;
      rdma_ack_cm_event(ev);
      if (got == want) return true;
      error = std::string(rdma_event_str(got)) + " (" + cm_status_text(status) +
              ") while waiting for " + rdma_event_str(want);
      return false;
    }
    if (errno != EAGAIN) {
      error = "rdma_get_cm_event: " + errno_text(errno);
      return false;
    }
    const std::uint64_t now = monotonic_ms();
    if (now >= deadline) {
      error = std::string("no ") + rdma_event_str(want) + " within " +
              std::to_string(opt_.resolve_timeout_ms) + " ms";
      return false;
    }
    pollfd pfd{ch_->fd, POLLIN, 0};
    ::poll(&pfd, 1, static_cast<int>(std::min<std::uint64_t>(deadline - now, 100)));
  }
}

bool VerbsTransport::modify_qp(ibv_qp_state state, std::string& error) {
  ibv_qp_attr attr{};
  int mask = 0;
  attr.qp_state = state;
  if (rdma_init_qp_attr(id_, &attr, &mask) != 0) {
    error = "rdma_init_qp_attr(state " + std::to_string(static_cast<int>(state)) +
            "): " + errno_text(errno);
    return false;
  }
  if (state == IBV_QPS_RTS) {
    // Our SENDs into no posted receive must fail at once (see the top of this file).
    attr.rnr_retry = kRnrRetry;
    mask |= static_cast<int>(IBV_QP_RNR_RETRY);
  }
  if (const int e = ibv_modify_qp(qp_, &attr, mask); e != 0) {
    error =
        "ibv_modify_qp(state " + std::to_string(static_cast<int>(state)) + "): " + errno_text(e);
    return false;
  }
  return true;
}

bool VerbsTransport::create_qp(std::string& error) {
  ibv_qp_init_attr qa{};
  qa.send_cq = cq_;
  qa.recv_cq = cq_;
  qa.qp_type = IBV_QPT_RC;
  qa.cap.max_send_wr = max_send_wr_;
  qa.cap.max_recv_wr = max_recv_wr_;
  qa.cap.max_send_sge = 1;
  qa.cap.max_recv_sge = 1;
  qa.sq_sig_all = 1;
  qp_ = ibv_create_qp(pd_, &qa);
  if (qp_ == nullptr) {
    error = "ibv_create_qp: " + errno_text(errno);
    return false;
  }
  max_send_wr_ = std::min(max_send_wr_, qa.cap.max_send_wr);
  max_recv_wr_ = std::min(max_recv_wr_, qa.cap.max_recv_wr);
  // RESET -> INIT now, so that receives can be posted before the REQ leaves.
  return modify_qp(IBV_QPS_INIT, error);
}

bool VerbsTransport::connect(Service service, bool native_cm,
                             std::span<const std::uint8_t> private_data, std::string& error) {
  teardown_connection();  // a previous connection's id and QP, if any
  native_ = native_cm;
  port_ = service_port(service, opt_.port_base);
  const char* mode = native_ ? "native" : "ip cm";
  if (private_data.size() > 255) {
    error =
        "CM private data of " + std::to_string(private_data.size()) + " bytes does not fit a REQ";
    return false;
  }
  sockaddr_storage dst{}, src{};
  sockaddr* srcp = nullptr;
  if (native_) {
    if (!ib_address(opt_.host, kSdpServiceId | port_, dst, error)) return false;
    if (!opt_.bind.empty()) {
      if (!ib_address(opt_.bind, 0, src, error)) return false;
      srcp = reinterpret_cast<sockaddr*>(&src);
    }
  } else {
    if (!ip_address(opt_.host, port_, dst, error)) return false;
    if (!opt_.bind.empty()) {
      if (!ip_address(opt_.bind, 0, src, error)) return false;
      srcp = reinterpret_cast<sockaddr*>(&src);
    }
  }
  const std::string hint = native_ ? kNativeHint : "";
  // A stable prefix when native mode fails on a device with no InfiniBand port, so that a runner
  // can tell "this fabric cannot carry native SDP" from a failure of the peer.
  const std::string prefix =
      native_ && !has_ib_port() ? "native CM unsupported on this fabric (RoCE): " : "";
  auto fail = [&](const std::string& what) {
    error = prefix + what + " (" + mode + " to " + where() + ")" + hint;
    teardown_connection();
    return false;
  };

  if (rdma_create_id(ch_, &id_, this, native_ ? RDMA_PS_IB : RDMA_PS_TCP) != 0)
    return fail("rdma_create_id: " + errno_text(errno));
  const auto timeout = static_cast<std::uint64_t>(std::max(opt_.resolve_timeout_ms, 0));
  if (rdma_resolve_addr(id_, srcp, reinterpret_cast<sockaddr*>(&dst), opt_.resolve_timeout_ms) != 0)
    return fail("rdma_resolve_addr: " + errno_text(errno));
  std::string why;
  if (!wait_cm(RDMA_CM_EVENT_ADDR_RESOLVED, monotonic_ms() + timeout + 1000, why))
    return fail("address resolution failed: " + why);
  if (rdma_resolve_route(id_, opt_.resolve_timeout_ms) != 0)
    return fail("rdma_resolve_route: " + errno_text(errno));
  if (!wait_cm(RDMA_CM_EVENT_ROUTE_RESOLVED, monotonic_ms() + timeout + 1000, why))
    return fail("route resolution failed: " + why);
  if (id_->verbs != ctx_)
    return fail("the route goes through RDMA device " +
                std::string(id_->verbs != nullptr ? ibv_get_device_name(id_->verbs->device) : "?") +
                ", not " + ibv_get_device_name(ctx_->device) + " (use --bind)");
  if (!create_qp(why)) return fail(why);
  // Receives the scenario posted before connect() go on the QP before the REQ leaves.
  for (auto& [key, b] : batches_)
    if (!b.posted && !post_batch(key, b, why)) return fail(why);

  rdma_conn_param cp{};
  cp.private_data = private_data.empty() ? nullptr : private_data.data();
  cp.private_data_len = static_cast<std::uint8_t>(private_data.size());
  cp.responder_resources = rd_atomic_;
  cp.initiator_depth = rd_atomic_;
  cp.retry_count = kRetryCount;
  cp.rnr_retry_count = kRnrRetry;  // the peer's RNR retries when it sends to us
  cp.qp_num = qp_->qp_num;
  if (rdma_connect(id_, &cp) != 0) return fail("rdma_connect: " + errno_text(errno));
  state_ = State::Connecting;
  return true;
}

// The REP: finish our side (INIT -> RTR -> RTS with our own RNR retry), then the RTU.
void VerbsTransport::on_connect_response(const rdma_cm_event& ev) {
  std::vector<std::uint8_t> pd;
  if (ev.param.conn.private_data != nullptr)
    pd.assign(static_cast<const std::uint8_t*>(ev.param.conn.private_data),
              static_cast<const std::uint8_t*>(ev.param.conn.private_data) +
                  ev.param.conn.private_data_len);
  std::string why;
  // INIT again first: the CM's access flags (remote read/write) only exist once the REQ left.
  if (!modify_qp(IBV_QPS_INIT, why) || !modify_qp(IBV_QPS_RTR, why) ||
      !modify_qp(IBV_QPS_RTS, why)) {
    rdma_reject(id_, nullptr, 0);
    state_ = State::Closed;
    push(Event::Kind::Rejected, "cannot take the REP (" + where() + "): " + why);
    return;
  }
  if (rdma_establish(id_) != 0) {
    state_ = State::Closed;
    push(Event::Kind::Rejected, "rdma_establish (RTU to " + where() + "): " + errno_text(errno));
    return;
  }
  state_ = State::Established;
  push(Event::Kind::Established, {}, 0, std::move(pd));
}

void VerbsTransport::on_cm_event(const rdma_cm_event& ev) {
  switch (ev.event) {
    case RDMA_CM_EVENT_CONNECT_RESPONSE:
      if (state_ == State::Connecting) on_connect_response(ev);
      return;
    case RDMA_CM_EVENT_ESTABLISHED:  // not for a QP-less active id; harmless if it comes
      if (state_ == State::Connecting) {
        state_ = State::Established;
        std::vector<std::uint8_t> pd;
        if (ev.param.conn.private_data != nullptr)
          pd.assign(static_cast<const std::uint8_t*>(ev.param.conn.private_data),
                    static_cast<const std::uint8_t*>(ev.param.conn.private_data) +
                        ev.param.conn.private_data_len);
        push(Event::Kind::Established, {}, 0, std::move(pd));
      }
      return;
    case RDMA_CM_EVENT_REJECTED: {
      std::string why = "CM REJ from " + where() + ", reason " + std::to_string(ev.status) + ": " +
                        sdp::cm_reject_reason(ev.status);
      std::vector<std::uint8_t> pd;
      if (ev.param.conn.private_data != nullptr && ev.param.conn.private_data_len > 0) {
        const auto* p = static_cast<const std::uint8_t*>(ev.param.conn.private_data);
        pd.assign(p, p + ev.param.conn.private_data_len);
        // libsdp's REJ carries "SDP: <reason>" as text.
        const auto* c = static_cast<const char*>(ev.param.conn.private_data);
        if (ev.param.conn.private_data_len > 5 && std::memcmp(c, "SDP: ", 5) == 0)
          why += " (" + std::string(c, strnlen(c, ev.param.conn.private_data_len)) + ")";
      }
      state_ = State::Closed;
      push(Event::Kind::Rejected, why, 0, std::move(pd));
      return;
    }
    case RDMA_CM_EVENT_ADDR_ERROR:
    case RDMA_CM_EVENT_ROUTE_ERROR:
    case RDMA_CM_EVENT_UNREACHABLE:
    case RDMA_CM_EVENT_CONNECT_ERROR: {
      const std::string why = std::string(rdma_event_str(ev.event)) + " (" +
                              cm_status_text(ev.status) + ") from " + where();
      if (state_ == State::Established) {
        disconnected_ = true;
        state_ = State::Closed;
        push(Event::Kind::TransportError, why);
      } else {
        state_ = State::Closed;
        push(Event::Kind::Rejected, why);
      }
      return;
    }
    case RDMA_CM_EVENT_DISCONNECTED:
      // The peer's last SENDs come before its DREQ.
      while (poll_cq() > 0) {
      }
      disconnected_ = true;
      state_ = State::Closed;
      push(Event::Kind::Disconnected, disconnect_sent_
                                          ? "disconnected (the answer to our DREQ) from " + where()
                                          : "CM DREQ from " + where());
      if (!disconnect_sent_) {
        disconnect_sent_ = true;
        qp_to_error();
        rdma_disconnect(id_);  // the DREP
      }
      return;
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
      disconnected_ = true;
      state_ = State::Closed;
      push(Event::Kind::TransportError, "RDMA device removed");
      return;
    default:
      return;  // TIMEWAIT_EXIT, ADDR_CHANGE, ...
  }
}

void VerbsTransport::qp_to_error() {
  if (qp_ == nullptr) return;
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_ERR;
  ibv_modify_qp(qp_, &attr, static_cast<int>(IBV_QP_STATE));
}

// Drops the connection's id and QP and whatever was posted on it; keeps regions and the
// receives not posted yet.
void VerbsTransport::teardown_connection() {
  if (qp_ != nullptr) {
    ibv_destroy_qp(qp_);
    qp_ = nullptr;
  }
  if (id_ != nullptr) {
    // Events still queued for the id are discarded by the kernel; the ones we read are acked.
    rdma_destroy_id(id_);
    id_ = nullptr;
  }
  // Completions of the old QP still in the CQ name work we are about to free: drop them.
  if (cq_ != nullptr) {
    std::array<ibv_wc, 32> wcs{};
    while (ibv_poll_cq(cq_, static_cast<int>(wcs.size()), wcs.data()) > 0) {
    }
  }
  for (auto it = batches_.begin(); it != batches_.end();) {
    if (it->second.posted) {
      release(it->second.buf);
      it = batches_.erase(it);
    } else {
      ++it;
    }
  }
  recv_outstanding_ = 0;
  for (auto& [k, b] : sends_) release(b);
  sends_.clear();
  for (auto& [k, op] : rdma_ops_) release(op.buf);
  rdma_ops_.clear();
  state_ = State::Idle;
  disconnect_sent_ = disconnected_ = error_reported_ = false;
}

bool VerbsTransport::post_batch(std::uint64_t key, RecvBatch& b, std::string& error) {
  if (recv_outstanding_ + b.count > max_recv_wr_) {
    error = "the receive queue holds " + std::to_string(max_recv_wr_) + " receives; " +
            std::to_string(recv_outstanding_) + " are posted, " + std::to_string(b.count) +
            " more asked";
    return false;
  }
  std::vector<ibv_recv_wr> wrs(b.count);
  std::vector<ibv_sge> sges(b.count);
  for (std::uint32_t i = 0; i < b.count; ++i) {
    sges[i].addr = reinterpret_cast<std::uintptr_t>(b.buf.mem.get() + std::size_t{i} * b.size);
    sges[i].length = b.size;
    sges[i].lkey = b.buf.mr->lkey;
    wrs[i].wr_id = make_wr_id(kTagRecv, (key << kRecvIndexBits) | i);
    wrs[i].sg_list = &sges[i];
    wrs[i].num_sge = b.size != 0 ? 1 : 0;
    wrs[i].next = i + 1 < b.count ? &wrs[i + 1] : nullptr;
  }
  ibv_recv_wr* bad = nullptr;
  const int e = b.count != 0 ? ibv_post_recv(qp_, wrs.data(), &bad) : 0;
  b.posted = true;
  const std::uint32_t done =
      e == 0 ? b.count : static_cast<std::uint32_t>(bad != nullptr ? bad - wrs.data() : 0);
  b.outstanding = done;
  recv_outstanding_ += done;
  if (e != 0) {
    error = "ibv_post_recv: " + errno_text(e) + " (" + std::to_string(done) + " of " +
            std::to_string(b.count) + " posted)";
    return false;
  }
  return true;
}

bool VerbsTransport::post_recv(std::uint32_t count, std::uint32_t size, std::string& error) {
  if (count == 0) return true;
  if (count >= (1U << kRecvIndexBits) || std::uint64_t{count} * size > (1ULL << 32)) {
    error = std::to_string(count) + " receives of " + std::to_string(size) + " bytes: too many";
    return false;
  }
  if (count > max_recv_wr_) {
    error = "the receive queue holds at most " + std::to_string(max_recv_wr_) + " receives";
    return false;
  }
  const std::uint64_t key = next_batch_++;
  RecvBatch b;
  b.size = size;
  b.count = count;
  if (!register_buffer(b.buf, count * size, kLocalWrite, error)) return false;
  auto& stored = batches_.emplace(key, std::move(b)).first->second;
  if (qp_ == nullptr) return true;  // posted right after the QP exists, before the REQ
  if (!post_batch(key, stored, error)) {
    if (stored.outstanding == 0) {
      release(stored.buf);
      batches_.erase(key);
    }
    return false;
  }
  return true;
}

bool VerbsTransport::post_send_wr(ibv_send_wr& wr, std::string& error) {
  if (qp_ == nullptr) {
    error = "not connected (no QP)";
    return false;
  }
  if (sends_.size() + rdma_ops_.size() >= max_send_wr_) {
    progress();  // completions may free room
    if (sends_.size() + rdma_ops_.size() >= max_send_wr_) {
      error = "the send queue is full (" + std::to_string(max_send_wr_) + " outstanding)";
      return false;
    }
  }
  ibv_send_wr* bad = nullptr;
  if (const int e = ibv_post_send(qp_, &wr, &bad); e != 0) {
    error = "ibv_post_send: " + errno_text(e);
    return false;
  }
  return true;
}

bool VerbsTransport::send(std::span<const std::uint8_t> bytes, std::string& error) {
  if (bytes.size() > UINT32_MAX) {
    error = "a SEND of " + std::to_string(bytes.size()) + " bytes";
    return false;
  }
  const auto len = static_cast<std::uint32_t>(bytes.size());
  Buffer b;
  if (!register_buffer(b, len, kLocalWrite, error)) return false;
  if (len != 0) std::memcpy(b.mem.get(), bytes.data(), len);
  ibv_sge sge{reinterpret_cast<std::uintptr_t>(b.mem.get()), len, b.mr->lkey};
  ibv_send_wr wr{};
  const std::uint64_t n = next_send_++;
  wr.wr_id = make_wr_id(kTagSend, n);
  wr.opcode = IBV_WR_SEND;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.sg_list = &sge;
  wr.num_sge = len != 0 ? 1 : 0;
  if (!post_send_wr(wr, error)) {
    release(b);
    return false;
  }
  sends_.emplace(n, std::move(b));
  return true;
}

std::optional<LocalRegion> VerbsTransport::register_region(std::uint32_t len, bool remote_read,
                                                           bool remote_write, std::string& error) {
  unsigned access = kLocalWrite;
  if (remote_read) access |= kRemoteRead;
  if (remote_write) access |= kRemoteWrite;
  Buffer b;
  if (!register_buffer(b, len, access, error)) return std::nullopt;
  for (std::uint32_t i = 0; i < len; ++i) b.mem.get()[i] = static_cast<std::uint8_t>(i % 251);
  LocalRegion r;
  r.id = next_region_++;
  r.addr = b.mem.get();
  r.len = len;
  r.va = reinterpret_cast<std::uintptr_t>(b.mem.get());
  r.rkey = b.mr->rkey;
  regions_.emplace(r.id, std::move(b));
  return r;
}

void VerbsTransport::deregister_region(std::uint64_t id) {
  auto it = regions_.find(id);
  if (it == regions_.end()) return;
  release(it->second);
  regions_.erase(it);
}

bool VerbsTransport::rdma_read(std::uint64_t id, std::uint64_t va, std::uint32_t rkey,
                               std::uint32_t len, std::string& error) {
  RdmaOp op;
  op.user_id = id;
  op.read = true;
  if (!register_buffer(op.buf, len, kLocalWrite, error)) return false;
  return post_rdma(std::move(op), IBV_WR_RDMA_READ, va, rkey, len, error);
}

bool VerbsTransport::rdma_write(std::uint64_t id, std::uint64_t va, std::uint32_t rkey,
                                std::span<const std::uint8_t> data, std::string& error) {
  if (data.size() > UINT32_MAX) {
    error = "an RDMA WRITE of " + std::to_string(data.size()) + " bytes";
    return false;
  }
  const auto len = static_cast<std::uint32_t>(data.size());
  RdmaOp op;
  op.user_id = id;
  if (!register_buffer(op.buf, len, kLocalWrite, error)) return false;
  if (len != 0) std::memcpy(op.buf.mem.get(), data.data(), len);
  return post_rdma(std::move(op), IBV_WR_RDMA_WRITE, va, rkey, len, error);
}

// One signaled RDMA READ or WRITE between op's registered bounce buffer and (va, rkey).
bool VerbsTransport::post_rdma(RdmaOp op, ibv_wr_opcode opcode, std::uint64_t va,
                               std::uint32_t rkey, std::uint32_t len, std::string& error) {
  ibv_sge sge{reinterpret_cast<std::uintptr_t>(op.buf.mem.get()), len, op.buf.mr->lkey};
  ibv_send_wr wr{};
  const std::uint64_t n = next_rdma_++;
  wr.wr_id = make_wr_id(kTagRdma, n);
  wr.opcode = opcode;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.sg_list = &sge;
  wr.num_sge = len != 0 ? 1 : 0;
  wr.wr.rdma.remote_addr = va;
  wr.wr.rdma.rkey = rkey;
  if (!post_send_wr(wr, error)) {
    release(op.buf);
    return false;
  }
  rdma_ops_.emplace(n, std::move(op));
  return true;
}

void VerbsTransport::disconnect() {
  if (id_ == nullptr || disconnect_sent_) return;
  disconnect_sent_ = true;
  // Like rdma_disconnect on a librdmacm-managed QP: the QP goes to the error state, then DREQ
  // (or the DREP, when the peer's DREQ came first).
  qp_to_error();
  rdma_disconnect(id_);
  if (state_ != State::Established) state_ = State::Closed;
}

void VerbsTransport::handle_wc(const ibv_wc& wc) {
  const std::uint64_t tag = wc.wr_id >> kTagShift;
  const std::uint64_t n = wc.wr_id & kIdMask;
  const bool ok = wc.status == IBV_WC_SUCCESS;
  const bool flush = wc.status == IBV_WC_WR_FLUSH_ERR;
  // Flushes after a disconnect are expected; after an error already reported they repeat it.
  const bool quiet_flush = flush && (disconnected_ || disconnect_sent_ || error_reported_);
  auto status_text = [&] {
    return std::string(ibv_wc_status_str(wc.status)) + " (status " +
           std::to_string(static_cast<int>(wc.status)) + ", vendor error " +
           std::to_string(wc.vendor_err) + ")";
  };
  if (tag == kTagRecv) {
    auto it = batches_.find(n >> kRecvIndexBits);
    if (it == batches_.end()) return;
    RecvBatch& b = it->second;
    const std::uint64_t idx = n & ((1ULL << kRecvIndexBits) - 1);
    if (ok) {
      const std::uint8_t* p = b.buf.mem.get() + idx * b.size;
      const std::uint32_t len = std::min(wc.byte_len, b.size);
      push(Event::Kind::Recv, {}, 0, std::vector<std::uint8_t>(p, p + len));
    } else if (!quiet_flush) {
      error_reported_ = true;
      push(Event::Kind::TransportError, "receive completion error: " + status_text());
    }
    if (recv_outstanding_ > 0) --recv_outstanding_;
    if (b.outstanding > 0 && --b.outstanding == 0) {
      release(b.buf);
      batches_.erase(it);
    }
    return;
  }
  if (tag == kTagSend) {
    auto it = sends_.find(n);
    if (it != sends_.end()) {
      release(it->second);
      sends_.erase(it);
    }
    if (!ok && !quiet_flush) {
      error_reported_ = true;
      push(Event::Kind::SendError, "SEND completion error: " + status_text());
    }
    return;
  }
  if (tag == kTagRdma) {
    auto it = rdma_ops_.find(n);
    if (it == rdma_ops_.end()) return;
    RdmaOp& op = it->second;
    if (ok) {
      std::vector<std::uint8_t> data;
      if (op.read) data.assign(op.buf.mem.get(), op.buf.mem.get() + op.buf.len);
      push(Event::Kind::RdmaDone, {}, op.user_id, std::move(data));
    } else if (!(flush && (disconnected_ || disconnect_sent_))) {
      // Every RDMA operation gets its answer (the scenario waits on its id).
      error_reported_ = true;
      push(
          Event::Kind::RdmaError,
          std::string(op.read ? "RDMA READ" : "RDMA WRITE") + " completion error: " + status_text(),
          op.user_id);
    }
    release(op.buf);
    rdma_ops_.erase(it);
  }
}

int VerbsTransport::poll_cq() {
  std::array<ibv_wc, 32> wcs{};
  int total = 0;
  for (;;) {
    const int n = ibv_poll_cq(cq_, static_cast<int>(wcs.size()), wcs.data());
    if (n <= 0) break;
    for (int i = 0; i < n; ++i) handle_wc(wcs[static_cast<std::size_t>(i)]);
    total += n;
    if (n < static_cast<int>(wcs.size())) break;
  }
  return total;
}

void VerbsTransport::progress() {
  rdma_cm_event* ev = nullptr;
  while (rdma_get_cm_event(ch_, &ev) == 0) {
    if (ev->id == id_) on_cm_event(*ev);  // else: a torn-down connection's leftover
    rdma_ack_cm_event(ev);
  }
  ibv_cq* cq = nullptr;
  void* ctx = nullptr;
  unsigned got = 0;
  while (ibv_get_cq_event(comp_, &cq, &ctx) == 0) ++got;
  if (got != 0) {
    ibv_ack_cq_events(cq_, got);
    cq_armed_ = false;
  }
  poll_cq();
}

std::optional<Event> VerbsTransport::poll(std::uint64_t deadline_ms) {
  for (;;) {
    progress();
    if (!events_.empty()) {
      Event ev = std::move(events_.front());
      events_.pop_front();
      return ev;
    }
    const std::uint64_t now = monotonic_ms();
    if (now >= deadline_ms) return std::nullopt;
    if (!cq_armed_) {
      ibv_req_notify_cq(cq_, 0);
      cq_armed_ = true;
      continue;  // a completion may have slipped in before the arming: poll once more
    }
    std::array<pollfd, 2> fds{pollfd{ch_->fd, POLLIN, 0}, pollfd{comp_->fd, POLLIN, 0}};
    ::poll(fds.data(), fds.size(),
           static_cast<int>(std::min<std::uint64_t>(deadline_ms - now, 200)));
  }
}

}  // namespace

std::unique_ptr<Transport> make_verbs_transport(const VerbsOptions& opt, std::string& error) {
  auto t = std::make_unique<VerbsTransport>(opt);
  if (!t->init(error)) return nullptr;
  return t;
}

}  // namespace conformance

// The verbs binding: one SDP engine driven over a real RC queue pair (rdma-core).
//
// A Connection owns an rdma_cm id with its event channel, one CQ with a completion channel, the
// RC QP, and the memory registrations the engine asks for. It never blocks: progress() takes CM
// events and completions as far as they go and executes the engine's actions. Everything a caller
// needs to wait for is behind one epoll descriptor (fd()): the CM channel, the completion channel,
// a timerfd armed at the engine's next deadline, and an eventfd the socket layer raises when the
// socket has something to report. The protocol lives in the engine; this file only moves bytes.
//
// Two connection-setup modes (DESIGN.md):
//  - IpCm: rdma_cm RDMA_PS_TCP with AF_INET/AF_INET6 addresses; the kernel puts the 36-byte IP CM
//    header in front of our private data, so the REQ carries the compact Hello.
//  - Native: rdma_cm RDMA_PS_IB with AF_IB addresses and service ID 0x000000000001PPPP; the REQ
//    carries the full 92-byte Hello.
#pragma once

#include <rdma/rdma_cma.h>
#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "sdp/engine.hpp"

namespace sdp::verbs {

enum class CmMode : std::uint8_t { IpCm, Native };

struct Options {
  EngineConfig engine;
  int resolve_timeout_ms = 2000;  // address and route resolution, each
  std::uint8_t retry_count = 7;   // RC transport retries (then the connection resets)
  std::uint8_t rnr_retry = 7;     // RNR retries; SDP's credits make RNR a peer bug
};

// Message trace (SDP_TRACE=FILE): one JSON line per SDP message sent or received, Hello and
// HelloAck included, with the decoded BSDH and header fields. Used by the lab tests to compare
// what the engine put on the wire with what dissectors read back.
void trace_line(const std::string& line);
bool trace_enabled() noexcept;

// An eventfd in a socket's epoll set that the socket layer raises while the socket has something
// to report (shared by connections and listeners).
class Attention {
 public:
  Attention() = default;
  ~Attention();
  Attention(const Attention&) = delete;
  Attention& operator=(const Attention&) = delete;
  // Creates the eventfd and adds it to epfd. Returns 0 or an errno value.
  int init(int epfd);
  void set(bool on);

 private:
  int fd_ = -1;
  bool on_ = false;
};

class Connection {
 public:
  enum class Phase : std::uint8_t {
    Idle,
    Resolving,    // address, then route
    Connecting,   // REQ sent (active) or REP sent (passive), waiting for the CM
    Established,  // the engine runs
    Done,         // engine closed or reset, or setup failed (see error())
  };

  Connection(Role role, const Options& opt, CmMode mode);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Creates the descriptors and adds them to `epfd` (created, and then owned, when -1).
  // Returns 0 or an errno value.
  int init(int epfd = -1);
  int fd() const noexcept { return epfd_; }
  // Hands the epoll descriptor over to the caller (it is no longer closed with the connection).
  int release_fd() noexcept {
    owns_epfd_ = false;
    return epfd_;
  }

  // Active side: starts address resolution towards dst (AF_INET/AF_INET6 in IpCm mode, AF_IB in
  // Native mode); src may be null. Returns 0 or an errno value; completion through progress().
  int start_connect(const sockaddr* src, const sockaddr* dst);

  // Passive side: takes the id of a CONNECT_REQUEST (on the listener's channel), checks the Hello,
  // creates the QP, posts receives and answers with REP + HelloAck. On a bad Hello it sends REJ
  // and returns ECONNREFUSED (the id is then destroyed by the listener). Returns 0 or an errno.
  int adopt_request(rdma_cm_id* id, const rdma_cm_event& ev);
  // Moves the cm id onto this connection's own event channel (after accept).
  int take_id();

  // One CM event for this connection (from its own channel, or routed by the listener).
  void on_cm_event(const rdma_cm_event& ev);
  // Drains CM events, completions and timers; executes the engine's actions. Never blocks.
  void progress();
  // Polls the CQ only (the cheap part of progress(), for bounded spinning). Returns the number
  // of completions handled.
  int poll_cq();

  Phase phase() const noexcept { return phase_; }
  // errno for a failed setup or a reset connection (0 while fine or after a clean close).
  int error() const noexcept { return error_; }
  const std::string& error_text() const noexcept { return error_text_; }
  Engine& engine() noexcept { return engine_; }
  const Engine& engine() const noexcept { return engine_; }
  CmMode mode() const noexcept { return mode_; }
  std::uint64_t zcopy_done() const noexcept { return zcopy_done_; }
  // Our part of the CM teardown is done: DREQ or DREP sent (or there is no connection).
  bool disconnect_done() const noexcept { return disconnect_sent_ || id_ == nullptr; }
  bool engine_finished() const noexcept {
    return engine_.state() == State::Closed || engine_.state() == State::Reset;
  }

  const sockaddr_storage& local_addr() const noexcept { return local_; }
  const sockaddr_storage& peer_addr() const noexcept { return peer_; }
  std::uint32_t qp_num() const noexcept;

  // Raises or lowers the "attention" eventfd in the epoll set.
  void set_attention(bool on) { attention_.set(on); }

  // Runs the engine's pending actions (after an application call into the engine).
  void run_actions();

 private:
  struct Mr {
    std::uint64_t id = 0;
    ibv_mr* mr = nullptr;
    std::uint8_t* addr = nullptr;
    std::size_t len = 0;
    bool remote = false;
  };

  int create_qp();
  void fail(int err, std::string why);
  std::uint32_t lkey_for(const std::uint8_t* addr, std::size_t len);
  void flush_recvs();
  void flush_sends();
  void handle_wc(const ibv_wc& wc);
  void arm_timer();
  void drain_cm_channel();
  void start_fence();
  void disconnect_now();
  void trace_send(const std::uint8_t* msg, std::uint32_t len);
  void trace_recv(const std::uint8_t* msg, std::uint32_t len);
  void trace_hello(const char* dir, std::span<const std::uint8_t> pd);
  void trace_hello_ack(const char* dir, std::span<const std::uint8_t> pd);
  void map_reset_error();
  void fill_addrs();

  Role role_;
  Options opt_;
  CmMode mode_;
  Engine engine_;
  Phase phase_ = Phase::Idle;
  int error_ = 0;
  std::string error_text_;

  int epfd_ = -1, timer_fd_ = -1;
  Attention attention_;
  bool owns_epfd_ = false;
  std::uint64_t timer_armed_ = UINT64_MAX;
  rdma_event_channel* channel_ = nullptr;  // own CM channel
  rdma_cm_id* id_ = nullptr;
  bool id_on_own_channel_ = false;
  ibv_pd* pd_ = nullptr;
  ibv_comp_channel* comp_ = nullptr;
  ibv_cq* cq_ = nullptr;
  unsigned unacked_events_ = 0;
  bool cq_armed_ = false;
  std::uint8_t rd_atomic_ = 1;

  std::vector<Mr> mrs_;
  std::size_t last_mr_ = 0;
  std::vector<std::uint8_t*> recv_addr_;  // by receive wr_id (the engine's slot number)
  std::vector<ibv_recv_wr> rwr_;
  std::vector<ibv_sge> rsge_;
  std::vector<ibv_send_wr> swr_;
  std::vector<ibv_sge> ssge_;

  bool disconnect_sent_ = false;
  bool cm_disconnected_ = false;
  bool fencing_ = false;
  std::uint64_t fence_deadline_ = 0;
  std::uint64_t zcopy_done_ = 0;
  sockaddr_storage local_{}, peer_{};
};

// A listening rdma_cm id. Connection requests are answered at once (the engine posts its
// receives and replies with HelloAck, as a TCP stack completes handshakes before accept());
// established connections wait in a queue of at most `backlog` until accept() takes them.
class Listener {
 public:
  Listener(const Options& opt, CmMode mode);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  int init(int epfd);  // adds its descriptors to epfd (not owned)
  int fd() const noexcept { return epfd_; }
  int bind(const sockaddr* addr);
  int listen(int backlog);
  void progress();
  bool has_ready() const noexcept { return !ready_.empty(); }
  std::unique_ptr<Connection> pop();
  const sockaddr_storage& local_addr() const noexcept { return local_; }
  void set_attention(bool on) { attention_.set(on); }
  Options& options() noexcept { return opt_; }

 private:
  Options opt_;
  CmMode mode_;
  int epfd_ = -1;
  Attention attention_;
  rdma_event_channel* channel_ = nullptr;
  rdma_cm_id* id_ = nullptr;
  int backlog_ = 16;
  std::vector<std::unique_ptr<Connection>> pending_;  // REP sent, waiting for RTU
  std::deque<std::unique_ptr<Connection>> ready_;
  sockaddr_storage local_{};
};

// errno for an rdma_cm event that ends a connection attempt (REJECTED, UNREACHABLE, ...).
int cm_event_errno(const rdma_cm_event& ev) noexcept;
std::uint64_t now_ms() noexcept;
// Size of the sockaddr of this family (AF_INET, AF_INET6, AF_IB); 0 for any other.
std::size_t sockaddr_size(sa_family_t family) noexcept;
// Copies a sockaddr of a known family into out (nothing for an unknown family or null).
void copy_sockaddr(sockaddr_storage& out, const sockaddr* a) noexcept;

}  // namespace sdp::verbs

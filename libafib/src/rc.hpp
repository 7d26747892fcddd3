// SOCK_SEQPACKET: native RC messages (DESIGN.md). One RcSocket per afib socket of that type:
// an rdma_cm id on the socket's own event channel, a CQ with a completion channel, an RC QP and
// one registered region holding the receive and send slots. The socket's descriptor is an epoll
// set of the two channels' descriptors, so it is readable when something happened.
#pragma once

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>

#include "afib/afib.h"

namespace afib {

class RcSocket {
 public:
  static constexpr std::uint32_t kSlot = 65536;  // largest message
  static constexpr std::uint32_t kRecvSlots = 32;
  static constexpr std::uint32_t kSendSlots = 16;

  // `epfd`: the socket's descriptor (an epoll set) the channels' descriptors join.
  RcSocket(int epfd, bool nonblock);
  ~RcSocket();
  RcSocket(const RcSocket&) = delete;
  RcSocket& operator=(const RcSocket&) = delete;

  // As the BSD calls, with an rdma_cm address (map.hpp) and its port space; -1 + errno, the
  // reason in detail().
  int bind(const sockaddr* a, rdma_port_space ps);
  int listen(int backlog, const sockaddr* any, rdma_port_space ps);
  // A connected socket for the next connection request (its descriptor made here), or nullptr
  // (errno EAGAIN when nonblocking and none is pending).
  std::unique_ptr<RcSocket> accept(int* new_fd);
  int connect(const sockaddr* a, rdma_port_space ps);
  ssize_t send(const void* buf, std::size_t len, int flags, const std::uint32_t* imm = nullptr);
  ssize_t recv(void* buf, std::size_t len, int flags, std::uint32_t* imm = nullptr,
               bool* has_imm = nullptr);
  // Native features (afib.h part 3).
  int reg(void* addr, std::size_t len, int access);
  int advertise(int region);
  int peer_region(afib_remote* out);
  int rdma(bool write, int region, std::size_t offset, const afib_remote& remote,
           std::uint64_t remote_offset, std::size_t len, std::uint64_t wr_id, bool with_imm,
           std::uint32_t imm);
  int completions(afib_completion* out, int n);
  int revoke(int region);
  int shutdown(int how);
  int poll_events();
  const sockaddr* local() const;
  const sockaddr* peer() const;
  bool connected() const { return state_ == State::Open; }
  const std::string& detail() const { return detail_; }

 private:
  enum class State : std::uint8_t { Idle, Bound, Listening, Resolving, Connecting, Open, Closed };
  struct Msg {
    std::uint32_t slot, len;
    bool has_imm;
    std::uint32_t imm;
  };
  struct Op {  // an RDMA operation in flight
    std::uint64_t wr_id;
    std::uint32_t op, len;
  };
  int epfd_;
  bool nonblock_;
  // An eventfd in the socket's epoll set, readable while the socket has something to say
  // (update_attention): completions alone would leave queued messages unannounced.
  int attention_ = -1;
  bool attention_on_ = false, want_write_ = false, connecting_nb_ = false;
  State state_ = State::Idle;
  rdma_event_channel* ch_ = nullptr;
  rdma_cm_id* id_ = nullptr;
  ibv_comp_channel* comp_ = nullptr;
  ibv_cq* cq_ = nullptr;
  ibv_mr* mr_ = nullptr;
  std::unique_ptr<std::uint8_t[]> mem_;
  std::deque<Msg> ready_;                       // received messages not yet read
  std::deque<std::uint32_t> free_send_;         // send slots not in flight
  std::deque<rdma_cm_id*> requests_;            // listener: connection requests not yet accepted
  std::map<int, ibv_mr*> regions_;              // afib_reg
  std::map<int, std::uint32_t> region_access_;  // AFIB_ACCESS_* granted
  int next_region_ = 1;
  std::deque<afib_remote> adverts_;   // the peer's, not yet taken
  std::deque<afib_completion> done_;  // completions not yet taken
  std::map<std::uint32_t, Op> ops_;   // RDMA operations in flight, by sequence number
  std::uint32_t next_op_ = 1;
  std::uint32_t peer_slot_ = 0;  // the peer's largest message (its private data)
  bool peer_ended_ = false, shut_wr_ = false, armed_ = false, active_ = false;
  int error_ = 0;
  std::string detail_;

  int fail(int e, std::string why);
  int channel();            // makes the event channel (once) and watches it
  int setup_qp();           // CQ, QP, the region, receives posted
  void progress();          // CM events and completions, without waiting
  void poll_once();         // progress() without the attention update
  void update_attention();  // sets or clears attention_ from the socket's state
  // Updates the attention when a public call returns (it may have taken what was announced).
  struct Settle {
    RcSocket& s;
    ~Settle() { s.update_attention(); }
  };
  void on_event(rdma_cm_event* ev);
  int post_recv(std::uint32_t slot);
  // One signaled SEND (with immediate data when asked) of the first `len` bytes of a send slot
  // taken from free_send_; the slot goes back there when the post fails.
  int post_slot(std::uint32_t slot, std::uint32_t len, bool with_imm, std::uint32_t imm);
  int control(std::uint8_t type, const void* body, std::size_t len);  // a control message
  void on_control(const std::uint8_t* p, std::uint32_t len);
  int wait();  // until something happens (blocking sockets)
  template <class Pred>
  int block_until(Pred done);  // progress + wait until done() or an error / nonblocking EAGAIN
};

}  // namespace afib

/* libsdp socket API: SDP stream sockets over RDMA (IBTA Vol. 1 Annex A4), in C.
 *
 * Every socket is one real kernel descriptor (an epoll descriptor), usable in poll/epoll/select
 * for POLLIN. Calls mirror the BSD socket calls, return -1 and set errno on failure, and take the
 * usual flags. Readiness, which is how a nonblocking program waits:
 *
 *   - the descriptor is readable (POLLIN) when the socket needs attention: data, end of stream,
 *     an error, a connection to accept, a finished nonblocking connect, or fabric events that
 *     may produce one of these (a wakeup may then find nothing: call again and get EAGAIN);
 *   - writability is reported the same way after a send returned EAGAIN: once the socket can
 *     take bytes again, the descriptor becomes readable;
 *   - sdp_poll_events() tells exactly what the socket is ready for (POLLIN, POLLOUT, POLLPRI,
 *     POLLRDHUP, POLLHUP, POLLERR) after processing whatever the fabric delivered.
 *
 * Addressing chooses the connection-setup mode (see docs/wire.md):
 *   - AF_INET / AF_INET6: rdma_cm's IP CM service (RDMA_PS_TCP, service ID 0x000000000106PPPP),
 *     the Hello in compact form after the 36-byte IP CM header; works on RoCE and InfiniBand;
 *   - AF_IB (struct sockaddr_ib from <infiniband/ib.h>): native SDP service IDs
 *     0x000000000001PPPP and the full Hello; sib_sid carries the service ID verbatim.
 *
 * Blocking calls wait on the descriptor after polling the completion queue a bounded number of
 * times (SDP_POLL_SPINS, default 32; environment variable SDP_POLL_SPINS). A blocking send of at
 * least the ZCopy threshold is sent zero-copy (the peer RDMA-reads the caller's buffer) and
 * returns once the peer has it; nonblocking sends always copy.
 *
 * sdp_close() is graceful: queued data is delivered and the DisConn / CM DREQ exchange finishes
 * before it returns, bounded by SO_LINGER (default: 10 s; l_linger 0 aborts at once). Closing
 * with unread received data aborts the connection (as TCP sends RST).
 *
 * Thread safety: calls on one socket may come from several threads (one send and one recv at a
 * time, as with TCP); different sockets are independent.
 */
#ifndef SDP_SDP_H
#define SDP_SDP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Level for sdp_setsockopt / sdp_getsockopt options of SDP itself. */
#define SOL_SDP 0x5344
#define SDP_ZCOPY_THRESHOLD 1 /* int: bytes; a blocking send at least this large goes ZCopy; 0 off */
#define SDP_RECV_BUFS 2       /* int: receive buffers posted (the peer's credits), before connect */
#define SDP_RECV_SIZE 3       /* int: bytes per receive buffer incl. the 16-byte BSDH */
#define SDP_POLL_SPINS 4      /* int: completion-queue polls before a blocking call sleeps */
#define SDP_SINK_ADVERTS 5    /* int (bool): as sink, ask for Pipelined mode (SinkAvail) */
#define SDP_KEEPALIVE_MS 6    /* int: idle time before a keepalive probe; 0 off */
#define SDP_OOB_INLINE 7      /* int (bool): urgent bytes stay in the stream */

enum sdp_mode { SDP_MODE_BUFFERED = 0, SDP_MODE_COMBINED = 1, SDP_MODE_PIPELINED = 2 };
enum sdp_cm_mode { SDP_CM_IP = 0, SDP_CM_NATIVE = 1 };

/* Per-socket statistics (sdp_get_stats). Message counts are indexed by BSDH MID. */
struct sdp_stats {
  char state[16]; /* "Established", "Closed", "Reset", ... */
  uint8_t cm_mode;                    /* enum sdp_cm_mode */
  uint8_t send_mode, recv_mode;       /* enum sdp_mode */
  int64_t send_credits;               /* Bufs - (MSeq - MSeqAck) as the annex defines them */
  uint32_t credits_min, credits_max;  /* over the connection's life, seen at each send */
  uint32_t local_recv_size, peer_recv_size, posted_recvs;
  uint32_t qp_num;
  uint64_t bytes_sent, bytes_received;
  uint64_t bcopy_bytes_sent, zcopy_bytes_sent, bcopy_bytes_received, zcopy_bytes_received;
  uint64_t credit_updates_sent, rdma_reads, rdma_writes;
  uint64_t messages_sent[256], messages_received[256];
};

int sdp_socket(int domain, int type, int protocol); /* type: SOCK_STREAM [|SOCK_NONBLOCK] */
int sdp_bind(int fd, const struct sockaddr *addr, socklen_t len);
int sdp_listen(int fd, int backlog);
int sdp_accept(int fd, struct sockaddr *addr, socklen_t *len);
int sdp_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags); /* SOCK_NONBLOCK */
int sdp_connect(int fd, const struct sockaddr *addr, socklen_t len); /* EINPROGRESS if nonblocking */
ssize_t sdp_send(int fd, const void *buf, size_t len, int flags); /* MSG_DONTWAIT, MSG_OOB */
/* MSG_DONTWAIT, MSG_PEEK, MSG_WAITALL, MSG_OOB */
ssize_t sdp_recv(int fd, void *buf, size_t len, int flags);
int sdp_shutdown(int fd, int how);
int sdp_close(int fd);
int sdp_setsockopt(int fd, int level, int name, const void *val, socklen_t len);
int sdp_getsockopt(int fd, int level, int name, void *val, socklen_t *len);
int sdp_getsockname(int fd, struct sockaddr *addr, socklen_t *len);
int sdp_getpeername(int fd, struct sockaddr *addr, socklen_t *len);
int sdp_set_nonblock(int fd, int on);
/* Processes pending fabric events and returns what the socket is ready for (poll bits). */
int sdp_poll_events(int fd);
int sdp_get_stats(int fd, struct sdp_stats *out);
/* Statistics as JSON (protobuf's JSON mapping of sdp.proto.EngineStats); returns the length
 * needed, writing at most len bytes (NUL-terminated when len > 0), or -1. */
int sdp_stats_json(int fd, char *buf, size_t len);
/* Why the last connect failed or the connection was reset, in words ("" when nothing). */
const char *sdp_error_detail(int fd);
int sdp_is_socket(int fd);

#ifdef __cplusplus
}
#endif
#endif /* SDP_SDP_H */

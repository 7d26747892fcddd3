/*
 * libafib: the AF_IB address family for new programs (InfiniBand / RoCE fabrics).
 *
 * Addressing (part 1): struct sockaddr_ib (<infiniband/ib.h>, rdma_cm's) built,
 * parsed, printed and resolved. A sockaddr_ib names an endpoint by its port's GID, a partition
 * key (P_Key) and a service ID (SID) with a mask; the scope ID selects a local port where a GID is
 * ambiguous.
 *
 * Text form (afib_addr_parse, afib_addr_format; man afib_addr(3)):
 *
 *     [GID]:SID[/MASK][,pkey=PKEY][,scope=SCOPE][,flow=FLOW]
 *
 *   GID    IPv6 notation in brackets: [fe80::2:c903:0:1101], [::ffff:10.99.0.1] (a RoCEv2 GID of
 *          an IPv4 address). Printed compressed, lower case.
 *   SID    a 64-bit service ID: 0x-prefixed hexadecimal (up to 16 digits) or decimal; or by kind
 *          and port: sdp:PORT (SDP's native service, 0x000000000001PPPP), ipcm:PORT or tcp:PORT
 *          (rdma_cm's IP CM service, RDMA_PS_TCP, 0x000000000106PPPP), ib:PORT (RDMA_PS_IB,
 *          0x00000000013FPPPP). Printed as 0x and 16 hexadecimal digits.
 *   MASK   the service ID mask, 0x-hexadecimal or decimal; default all ones (printed only when
 * not). PKEY   the partition key, 0x-hexadecimal or decimal up to 0xffff; default 0xffff (the
 * default partition, full member; printed only when not). SCOPE  the scope ID (a local port),
 * decimal or 0x-hexadecimal; default 0 (printed when not 0). FLOW   the flow information (GRH flow
 * label), decimal or 0x-hexadecimal up to 0xfffff; default 0 (printed when not 0).
 *
 * Every function returns 0 (or a length) on success and -1 with errno on failure; the parse and
 * resolve functions also write a sentence saying what is wrong into `err` when it is not NULL.
 */
#ifndef AFIB_AFIB_H
#define AFIB_AFIB_H

#include <infiniband/ib.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest afib_addr_format text, its terminating NUL included. */
#define AFIB_ADDRSTRLEN 128

/* The default partition key: the default partition, full member. */
#define AFIB_PKEY_DEFAULT 0xffff

/* Service ID kinds (afib_sid_kind_of). */
enum afib_sid_kind {
  AFIB_SID_OTHER = 0, /* none of the below */
  AFIB_SID_SDP = 1,   /* 0x000000000001PPPP: SDP's native service ID (IBTA A4) */
  AFIB_SID_IP_CM = 2, /* 0x000000000106PPPP: rdma_cm RDMA_PS_TCP, the IP CM service */
  AFIB_SID_IB = 3     /* 0x00000000013FPPPP: rdma_cm RDMA_PS_IB */
};

/* The service ID of a kind and port (AFIB_SID_OTHER: returns 0). */
uint64_t afib_sid(enum afib_sid_kind kind, uint16_t port);
/* The kind of a service ID, and its port in *port (when not NULL) for the kinds with one. */
enum afib_sid_kind afib_sid_kind_of(uint64_t sid, uint16_t* port);

/* Fills *addr: AF_IB, the 16-byte GID (network order, as on the wire), P_Key, service ID, mask
 * all ones, scope 0, flow 0. */
void afib_addr_init(struct sockaddr_ib* addr, const uint8_t gid[16], uint16_t pkey, uint64_t sid);

/* Host-order accessors of a sockaddr_ib's network-order fields. */
uint16_t afib_addr_pkey(const struct sockaddr_ib* addr);
uint64_t afib_addr_sid(const struct sockaddr_ib* addr);
uint64_t afib_addr_sid_mask(const struct sockaddr_ib* addr);

/* Parses the text form into *addr. -1 with errno EINVAL (and the reason in err) on bad text. */
int afib_addr_parse(const char* text, struct sockaddr_ib* addr, char* err, size_t err_len);

/* Writes the text form of *addr into buf (at most len bytes, NUL-terminated when len > 0).
 * Returns the length of the whole text (as snprintf), or -1 with errno EAFNOSUPPORT when addr is
 * not AF_IB. */
int afib_addr_format(const struct sockaddr_ib* addr, char* buf, size_t len);

/* The fabric address of `host` (an IPv4 or IPv6 address or a host name) through rdma_cm: the
 * GID and P_Key of the port that reaches it (address resolution: ARP/ND on RoCE, the SA on
 * InfiniBand), with service ID `sid`. Waits at most timeout_ms. -1 with errno and a reason in
 * err when the name does not resolve, no RDMA device reaches it, or the time runs out. */
int afib_resolve(const char* host, uint64_t sid, int timeout_ms, struct sockaddr_ib* addr,
                 char* err, size_t err_len);

/*
 * Sockets (part 2; libafib/DESIGN.md maps each call onto rdma_cm and verbs). Each socket is one
 * descriptor that poll/epoll accept (readable, writable as the call would not block). The calls
 * are those of BSD sockets with sockaddr_ib addresses, and return as they do (-1 and errno).
 *
 *   SOCK_STREAM     a byte stream carried by SDP (libsdp): on InfiniBand ports the address is
 *                   given to rdma_cm as AF_IB (SDP's native mode); on RoCE, where rdma_cm does not
 *                   route AF_IB, as the GID's IP address and the service ID's port (sdp:PORT or
 *                   ipcm:PORT), SDP over the IP CM service.
 *   SOCK_SEQPACKET  native RC messages that keep their boundaries (up to 65536 bytes each:
 *                   EMSGSIZE above; a shorter recv buffer takes the start of a message, the rest
 *                   is dropped, MSG_TRUNC returns the message's real length). On RoCE the
 *                   service ID must be ipcm:PORT or ib:PORT (rdma_cm's port spaces).
 *
 * type may carry SOCK_NONBLOCK (connect then fails with EINPROGRESS; accept, send and recv with
 * EAGAIN). The descriptor is an epoll descriptor, so poll/epoll report POLLIN only: it is
 * readable when there is a message or data, end of stream, an error, a connection to accept,
 * a finished nonblocking connect, completions or advertised regions, and again after a send
 * returned EAGAIN once it can take more; afib_poll_events then gives the exact POLL* state.
 */
int afib_socket(int domain, int type, int protocol);
int afib_bind(int fd, const struct sockaddr_ib *addr);
int afib_listen(int fd, int backlog);
/* The new connection's descriptor; its peer's address in *peer when not NULL. */
int afib_accept(int fd, struct sockaddr_ib *peer);
int afib_connect(int fd, const struct sockaddr_ib *addr);
ssize_t afib_send(int fd, const void *buf, size_t len, int flags);
ssize_t afib_recv(int fd, void *buf, size_t len, int flags);
int afib_shutdown(int fd, int how);
int afib_close(int fd);
int afib_getsockname(int fd, struct sockaddr_ib *addr);
int afib_getpeername(int fd, struct sockaddr_ib *addr);
/* The POLL* events the socket is ready for now (as poll(2) would report them). */
int afib_poll_events(int fd);
/* The last failure of this socket in words ("" when none). Valid until the next call on it. */
const char *afib_error_detail(int fd);

/*
 * Native features of SOCK_SEQPACKET sockets (part 3; DESIGN.md "Native features"), on a
 * connected socket.
 *
 * A region is memory of this process registered with the socket's device (afib_reg): local
 * work (RDMA read into it, write from it) needs no grant; the peer reaches it only with the
 * access given at registration, only once it is advertised (afib_advertise), and never after
 * afib_revoke: its RDMA read or write then completes with an error (AFIB_STATUS_REMOTE_ACCESS),
 * after which the connection is over (RC reports the failure by ending the QP).
 */
#define AFIB_ACCESS_REMOTE_READ 1  /* the peer may RDMA-read the region */
#define AFIB_ACCESS_REMOTE_WRITE 2 /* the peer may RDMA-write the region */

/* A region the peer advertised. */
struct afib_remote {
  uint32_t id;     /* the peer's region number */
  uint32_t rkey;   /* its remote key */
  uint64_t addr;   /* its start in the peer's address space */
  uint64_t len;    /* its length */
  uint32_t access; /* AFIB_ACCESS_* the peer granted */
};

/* What afib_completions reports. */
enum afib_op {
  AFIB_OP_RDMA_WRITE = 1,     /* this side's afib_rdma_write finished */
  AFIB_OP_RDMA_READ = 2,      /* this side's afib_rdma_read finished */
  AFIB_OP_WRITE_WITH_IMM = 3  /* the peer RDMA-wrote with immediate data: bytes, imm */
};
enum afib_status {
  AFIB_STATUS_OK = 0,
  AFIB_STATUS_REMOTE_ACCESS = 1, /* the peer's region refused the access (revoked, bounds) */
  AFIB_STATUS_ERROR = 2          /* another failure (the connection is over) */
};
struct afib_completion {
  uint64_t wr_id;  /* the caller's id of the operation (0 for AFIB_OP_WRITE_WITH_IMM) */
  uint32_t op;     /* enum afib_op */
  uint32_t status; /* enum afib_status */
  uint32_t bytes;  /* bytes moved */
  uint32_t imm;    /* the immediate value (AFIB_OP_WRITE_WITH_IMM) */
};

/* The immediate value libafib keeps for its own control messages (refused in the calls). */
#define AFIB_IMM_RESERVED 0x41464942u

/* Registers [addr, addr+len) with the socket's device: a region number (> 0) or -1. */
int afib_reg(int fd, void *addr, size_t len, int access);
/* Tells the peer about a region (its address, length, key and access). */
int afib_advertise(int fd, int region);
/* The next region the peer advertised (waits unless nonblocking: EAGAIN). */
int afib_peer_region(int fd, struct afib_remote *out);
/* RDMA WRITE of `len` bytes from the local region at `offset` to the peer's region at
 * `remote_offset`; with `with_imm`, the peer also gets a completion carrying `imm`. The outcome
 * comes as a completion with `wr_id`. */
int afib_rdma_write(int fd, int region, size_t offset, const struct afib_remote *to,
                    uint64_t remote_offset, size_t len, uint64_t wr_id, int with_imm,
                    uint32_t imm);
/* RDMA READ of `len` bytes from the peer's region at `remote_offset` into the local region at
 * `offset`; the outcome comes as a completion with `wr_id`. */
int afib_rdma_read(int fd, int region, size_t offset, const struct afib_remote *from,
                   uint64_t remote_offset, size_t len, uint64_t wr_id);
/* A message with immediate data: received by afib_recv_imm. */
ssize_t afib_send_imm(int fd, const void *buf, size_t len, uint32_t imm);
/* afib_recv that also says whether the message carried immediate data (*has_imm) and its value. */
ssize_t afib_recv_imm(int fd, void *buf, size_t len, int flags, uint32_t *imm, int *has_imm);
/* Up to n completions (waits for one unless nonblocking: EAGAIN). The descriptor is readable
 * while completions (or messages) are pending. */
int afib_completions(int fd, struct afib_completion *out, int n);
/* Ends the peer's access to a region at once (its key dies) and tells the peer. */
int afib_revoke(int fd, int region);

#ifdef __cplusplus
}
#endif

#endif /* AFIB_AFIB_H */

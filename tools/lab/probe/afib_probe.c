/*
 * afib_probe: does rdma_cm with AF_IB addressing (struct sockaddr_ib) work over rxe (RoCEv2)?
 *
 * Every librdmacm call is reported as one line, "STEP <name>: ok" or
 * "STEP <name>: FAILED errno=<n> (<text>)", every CM event as "EVENT <name> status=<n>", so that
 * the lab's output records exactly where AF_IB stops. Used by tools/lab/probe/afib-{a,b}.sh.
 *
 *   afib_probe gids                                  GID table of rxe0 port 1
 *   afib_probe server SID GIDX PORT WAIT_S           AF_IB listener (GIDX -1: any address)
 *   afib_probe client SID DST_GID SRC_GIDX PORT      AF_IB connect (SRC_GIDX -1: no source)
 *   afib_probe inet-server IP PORT WAIT_S            control: AF_INET, RDMA_PS_TCP
 *   afib_probe inet-client IP PORT
 *   afib_probe gai NODE SERVICE FLAGS FAMILY         rdma_getaddrinfo (FLAGS: RAI_* names
 *                                                    joined by '|' or "0"; FAMILY ib|inet|0)
 * SID: "sdp" (SDP service ID 0x000000000001PPPP), "ib" (RDMA_PS_IB space 0x00000000013FPPPP)
 * or "tcp" (RDMA_PS_TCP space 0x000000000106PPPP). Exit status 0 when the connection (or
 * lookup) succeeded, 1 when a step failed, 2 on usage errors.
 *
 * Build: cc -Wall -Wextra -O2 -o afib_probe afib_probe.c -lrdmacm -libverbs
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <infiniband/ib.h>
#include <infiniband/verbs.h>
#include <inttypes.h>
#include <poll.h>
#include <rdma/rdma_cma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef AF_IB
#define AF_IB 27
#endif
#define RDMA_IB_IP_PS_IB_SPACE 0x00000000013F0000ULL
#define SDP_SID_BASE 0x0000000000010000ULL

static void step_ok(const char *name) { printf("STEP %s: ok\n", name); }

static int step_fail(const char *name) {
  int e = errno;
  printf("STEP %s: FAILED errno=%d (%s)\n", name, e, strerror(e));
  return 1;
}

static const char *family_name(int f) {
  switch (f) {
    case AF_INET: return "AF_INET";
    case AF_INET6: return "AF_INET6";
    case AF_IB: return "AF_IB";
    default: return "AF_?";
  }
}

static void print_addr(const char *what, const struct sockaddr *sa) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (!sa) {
    printf("  %s: (null)\n", what);
    return;
  }
  switch (sa->sa_family) {
    case AF_INET: {
      const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
      inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf);
      printf("  %s: AF_INET %s port %u\n", what, buf, ntohs(sin->sin_port));
      break;
    }
    case AF_INET6: {
      const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
      inet_ntop(AF_INET6, &s6->sin6_addr, buf, sizeof buf);
      printf("  %s: AF_INET6 %s port %u\n", what, buf, ntohs(s6->sin6_port));
      break;
    }
    case AF_IB: {
      const struct sockaddr_ib *sib = (const struct sockaddr_ib *)sa;
      inet_ntop(AF_INET6, &sib->sib_addr, buf, sizeof buf);
      printf("  %s: AF_IB gid %s pkey 0x%04x sid 0x%016" PRIx64 " sid_mask 0x%016" PRIx64
             " scope %" PRIu64 "\n",
             what, buf, ntohs(sib->sib_pkey), (uint64_t)be64toh(sib->sib_sid),
             (uint64_t)be64toh(sib->sib_sid_mask), (uint64_t)sib->sib_scope_id);
      break;
    }
    default:
      printf("  %s: family %d\n", what, sa->sa_family);
  }
}

static int parse_sid(const char *kind, unsigned port, uint64_t *sid) {
  if (!strcmp(kind, "sdp"))
    *sid = SDP_SID_BASE | port;
  else if (!strcmp(kind, "ib"))
    *sid = RDMA_IB_IP_PS_IB_SPACE | port;
  else if (!strcmp(kind, "tcp"))
    *sid = RDMA_IB_IP_PS_TCP | port;
  else
    return -1;
  return 0;
}

/* The port GID table of the first device (rxe0 in the lab), port 1. */
static int query_gid(int index, union ibv_gid *gid) {
  struct ibv_device **list = ibv_get_device_list(NULL);
  int ret = -1;
  if (!list || !list[0]) {
    errno = ENODEV;
    if (list) ibv_free_device_list(list);
    return -1;
  }
  struct ibv_context *ctx = ibv_open_device(list[0]);
  if (ctx) {
    ret = ibv_query_gid(ctx, 1, index, gid);
    ibv_close_device(ctx);
  }
  ibv_free_device_list(list);
  return ret;
}

static int cmd_gids(void) {
  char buf[INET6_ADDRSTRLEN];
  union ibv_gid gid;
  for (int i = 0; i < 4; i++) {
    if (query_gid(i, &gid)) break;
    inet_ntop(AF_INET6, gid.raw, buf, sizeof buf);
    printf("GID %d %s\n", i, buf);
  }
  return 0;
}

static void make_sib(struct sockaddr_ib *sib, const union ibv_gid *gid, uint64_t sid) {
  memset(sib, 0, sizeof *sib);
  sib->sib_family = AF_IB;
  sib->sib_pkey = htons(0xffff);
  if (gid) memcpy(&sib->sib_addr, gid->raw, sizeof sib->sib_addr);
  sib->sib_sid = htobe64(sid);
  sib->sib_sid_mask = htobe64(~0ULL);
}

/* Waits up to timeout_ms for the next CM event; prints it. Returns the event type or -1. */
static int wait_event(struct rdma_event_channel *ch, int timeout_ms, struct rdma_cm_event **out) {
  struct pollfd pfd = {.fd = ch->fd, .events = POLLIN};
  int n = poll(&pfd, 1, timeout_ms);
  if (n <= 0) {
    printf("EVENT none within %d ms\n", timeout_ms);
    return -1;
  }
  struct rdma_cm_event *ev;
  if (rdma_get_cm_event(ch, &ev)) {
    step_fail("rdma_get_cm_event");
    return -1;
  }
  int type = ev->event;
  printf("EVENT %s status=%d", rdma_event_str(ev->event), ev->status);
  if (ev->event == RDMA_CM_EVENT_REJECTED) printf(" (reject reason %d)", ev->status);
  printf("\n");
  if (out)
    *out = ev;
  else
    rdma_ack_cm_event(ev);
  return type;
}

static int make_qp(struct rdma_cm_id *id) {
  struct ibv_qp_init_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.qp_type = IBV_QPT_RC;
  attr.cap.max_send_wr = attr.cap.max_recv_wr = 1;
  attr.cap.max_send_sge = attr.cap.max_recv_sge = 1;
  if (rdma_create_qp(id, NULL, &attr)) return step_fail("rdma_create_qp");
  step_ok("rdma_create_qp");
  return 0;
}

/* Accepts one connection on listener `id`, waits for ESTABLISHED then DISCONNECTED. */
static int serve_one(struct rdma_event_channel *ch, int wait_s) {
  struct rdma_cm_event *ev = NULL;
  int type = wait_event(ch, wait_s * 1000, &ev);
  if (type != RDMA_CM_EVENT_CONNECT_REQUEST) {
    if (ev) rdma_ack_cm_event(ev);
    printf("RESULT server: no connect request\n");
    return 1;
  }
  struct rdma_cm_id *conn = ev->id;
  print_addr("request src (peer)", rdma_get_peer_addr(conn));
  print_addr("request dst (local)", rdma_get_local_addr(conn));
  rdma_ack_cm_event(ev);
  if (make_qp(conn)) return 1;
  struct rdma_conn_param param;
  memset(&param, 0, sizeof param);
  param.responder_resources = param.initiator_depth = 1;
  if (rdma_accept(conn, &param)) return step_fail("rdma_accept");
  step_ok("rdma_accept");
  if (wait_event(ch, 10000, NULL) != RDMA_CM_EVENT_ESTABLISHED) {
    printf("RESULT server: not established\n");
    return 1;
  }
  wait_event(ch, 10000, NULL); /* DISCONNECTED */
  printf("RESULT server: connection established\n");
  return 0;
}

static int cmd_server(const char *sidkind, int gidx, unsigned port, int wait_s) {
  uint64_t sid;
  if (parse_sid(sidkind, port, &sid)) return 2;
  union ibv_gid gid;
  if (gidx >= 0 && query_gid(gidx, &gid)) return step_fail("ibv_query_gid");
  struct rdma_event_channel *ch = rdma_create_event_channel();
  if (!ch) return step_fail("rdma_create_event_channel");
  struct rdma_cm_id *id;
  if (rdma_create_id(ch, &id, NULL, RDMA_PS_IB)) return step_fail("rdma_create_id(RDMA_PS_IB)");
  step_ok("rdma_create_id(RDMA_PS_IB)");
  struct sockaddr_ib sib;
  make_sib(&sib, gidx >= 0 ? &gid : NULL, sid);
  print_addr("bind", (struct sockaddr *)&sib);
  if (rdma_bind_addr(id, (struct sockaddr *)&sib)) return step_fail("rdma_bind_addr(AF_IB)");
  step_ok("rdma_bind_addr(AF_IB)");
  print_addr("bound", rdma_get_local_addr(id));
  if (rdma_listen(id, 1)) return step_fail("rdma_listen");
  step_ok("rdma_listen");
  printf("LISTENING\n");
  fflush(stdout);
  return serve_one(ch, wait_s);
}

static int client_connect(struct rdma_event_channel *ch, struct rdma_cm_id *id) {
  if (wait_event(ch, 5000, NULL) != RDMA_CM_EVENT_ADDR_RESOLVED) {
    printf("RESULT client: address not resolved\n");
    return 1;
  }
  print_addr("resolved src", rdma_get_local_addr(id));
  print_addr("resolved dst", rdma_get_peer_addr(id));
  if (rdma_resolve_route(id, 2000)) return step_fail("rdma_resolve_route");
  step_ok("rdma_resolve_route");
  if (wait_event(ch, 5000, NULL) != RDMA_CM_EVENT_ROUTE_RESOLVED) {
    printf("RESULT client: route not resolved\n");
    return 1;
  }
  if (make_qp(id)) return 1;
  struct rdma_conn_param param;
  memset(&param, 0, sizeof param);
  param.responder_resources = param.initiator_depth = 1;
  param.retry_count = 3;
  if (rdma_connect(id, &param)) return step_fail("rdma_connect");
  step_ok("rdma_connect");
  if (wait_event(ch, 10000, NULL) != RDMA_CM_EVENT_ESTABLISHED) {
    printf("RESULT client: not established\n");
    return 1;
  }
  rdma_disconnect(id);
  wait_event(ch, 5000, NULL);
  printf("RESULT client: connection established\n");
  return 0;
}

static int cmd_client(const char *sidkind, const char *dst_gid, int src_gidx, unsigned port) {
  uint64_t sid;
  if (parse_sid(sidkind, port, &sid)) return 2;
  union ibv_gid dgid, sgid;
  if (inet_pton(AF_INET6, dst_gid, dgid.raw) != 1) {
    fprintf(stderr, "bad GID %s\n", dst_gid);
    return 2;
  }
  if (src_gidx >= 0 && query_gid(src_gidx, &sgid)) return step_fail("ibv_query_gid");
  struct rdma_event_channel *ch = rdma_create_event_channel();
  if (!ch) return step_fail("rdma_create_event_channel");
  struct rdma_cm_id *id;
  if (rdma_create_id(ch, &id, NULL, RDMA_PS_IB)) return step_fail("rdma_create_id(RDMA_PS_IB)");
  step_ok("rdma_create_id(RDMA_PS_IB)");
  struct sockaddr_ib src, dst;
  make_sib(&dst, &dgid, sid);
  print_addr("dst", (struct sockaddr *)&dst);
  if (src_gidx >= 0) {
    make_sib(&src, &sgid, 0);
    src.sib_sid_mask = 0;
    print_addr("src", (struct sockaddr *)&src);
  }
  if (rdma_resolve_addr(id, src_gidx >= 0 ? (struct sockaddr *)&src : NULL,
                        (struct sockaddr *)&dst, 2000))
    return step_fail("rdma_resolve_addr(AF_IB)");
  step_ok("rdma_resolve_addr(AF_IB)");
  return client_connect(ch, id);
}

static int cmd_inet_server(const char *ip, unsigned port, int wait_s) {
  struct rdma_event_channel *ch = rdma_create_event_channel();
  if (!ch) return step_fail("rdma_create_event_channel");
  struct rdma_cm_id *id;
  if (rdma_create_id(ch, &id, NULL, RDMA_PS_TCP)) return step_fail("rdma_create_id(RDMA_PS_TCP)");
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, ip, &sin.sin_addr);
  if (rdma_bind_addr(id, (struct sockaddr *)&sin)) return step_fail("rdma_bind_addr(AF_INET)");
  step_ok("rdma_bind_addr(AF_INET)");
  if (rdma_listen(id, 1)) return step_fail("rdma_listen");
  step_ok("rdma_listen");
  printf("LISTENING\n");
  fflush(stdout);
  return serve_one(ch, wait_s);
}

static int cmd_inet_client(const char *ip, unsigned port) {
  struct rdma_event_channel *ch = rdma_create_event_channel();
  if (!ch) return step_fail("rdma_create_event_channel");
  struct rdma_cm_id *id;
  if (rdma_create_id(ch, &id, NULL, RDMA_PS_TCP)) return step_fail("rdma_create_id(RDMA_PS_TCP)");
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, ip, &sin.sin_addr);
  if (rdma_resolve_addr(id, NULL, (struct sockaddr *)&sin, 2000))
    return step_fail("rdma_resolve_addr(AF_INET)");
  step_ok("rdma_resolve_addr(AF_INET)");
  return client_connect(ch, id);
}

static int cmd_gai(const char *node, const char *service, const char *flags, const char *family) {
  struct rdma_addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  if (strstr(flags, "RAI_PASSIVE")) hints.ai_flags |= RAI_PASSIVE;
  if (strstr(flags, "RAI_NUMERICHOST")) hints.ai_flags |= RAI_NUMERICHOST;
  if (strstr(flags, "RAI_NOROUTE")) hints.ai_flags |= RAI_NOROUTE;
  if (strstr(flags, "RAI_FAMILY")) hints.ai_flags |= RAI_FAMILY;
  hints.ai_family = !strcmp(family, "ib") ? AF_IB : !strcmp(family, "inet") ? AF_INET : 0;
  hints.ai_port_space = RDMA_PS_TCP;
  hints.ai_qp_type = IBV_QPT_RC;
  printf("rdma_getaddrinfo(node=%s, service=%s, flags=%s, ai_family=%s)\n", node, service, flags,
         hints.ai_family ? family_name(hints.ai_family) : "0");
  int ret = rdma_getaddrinfo(strcmp(node, "-") ? node : NULL, service, &hints, &res);
  if (ret) {
    printf("STEP rdma_getaddrinfo: FAILED ret=%d errno=%d (%s)\n", ret, errno, strerror(errno));
    return 1;
  }
  step_ok("rdma_getaddrinfo");
  for (struct rdma_addrinfo *ai = res; ai; ai = ai->ai_next) {
    printf("  result: ai_family=%s ai_port_space=%d ai_flags=0x%x\n", family_name(ai->ai_family),
           ai->ai_port_space, ai->ai_flags);
    print_addr("src", ai->ai_src_addr);
    print_addr("dst", ai->ai_dst_addr);
  }
  rdma_freeaddrinfo(res);
  return 0;
}

static int usage(void) {
  fprintf(stderr,
          "usage: afib_probe gids\n"
          "       afib_probe server sdp|ib|tcp GID_INDEX|-1 PORT WAIT_S\n"
          "       afib_probe client sdp|ib|tcp DST_GID SRC_GID_INDEX|-1 PORT\n"
          "       afib_probe inet-server IP PORT WAIT_S | inet-client IP PORT\n"
          "       afib_probe gai NODE|- SERVICE FLAGS FAMILY\n");
  return 2;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2) return usage();
  const char *cmd = argv[1];
  if (!strcmp(cmd, "gids") && argc == 2) return cmd_gids();
  if (!strcmp(cmd, "server") && argc == 6)
    return cmd_server(argv[2], atoi(argv[3]), (unsigned)atoi(argv[4]), atoi(argv[5]));
  if (!strcmp(cmd, "client") && argc == 6)
    return cmd_client(argv[2], argv[3], atoi(argv[4]), (unsigned)atoi(argv[5]));
  if (!strcmp(cmd, "inet-server") && argc == 5)
    return cmd_inet_server(argv[2], (unsigned)atoi(argv[3]), atoi(argv[4]));
  if (!strcmp(cmd, "inet-client") && argc == 4)
    return cmd_inet_client(argv[2], (unsigned)atoi(argv[3]));
  if (!strcmp(cmd, "gai") && argc == 6) return cmd_gai(argv[2], argv[3], argv[4], argv[5]);
  return usage();
}

/*
 * afib-rdma: the native features of an AF_IB SOCK_SEQPACKET socket (libafib): registered memory
 * advertised to the peer, RDMA read and write into it, immediate data, and revocation.
 *
 *   afib-rdma listen '[::]:ipcm:7300'                  (the server: owns and grants a region)
 *   afib-rdma connect '[::ffff:10.99.0.1]:ipcm:7300'   (the client: reads and writes it)
 *
 * The server registers 4 KiB (remote read and write), fills it, advertises it. The client
 * RDMA-reads it and checks the bytes, RDMA-writes 512 bytes into it with immediate value 0x1234
 * (the server checks them on that completion), sends a message with immediate value 0x5678.
 * The server then revokes the region and says so; the client's next RDMA write must fail.
 */
#include <afib/afib.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static int fail(const char *what, int fd) {
  fprintf(stderr, "afib-rdma: %s: %s (%s)\n", what, strerror(errno),
          fd >= 0 ? afib_error_detail(fd) : "");
  return 1;
}

static int address(const char *text, struct sockaddr_ib *a) {
  char err[200];
  if (afib_addr_parse(text, a, err, sizeof err) != 0) {
    fprintf(stderr, "afib-rdma: '%s': %s\n", text, err);
    return -1;
  }
  return 0;
}

static unsigned char pattern(size_t i, unsigned seed) {
  return (unsigned char)(i * 13u + seed);
}

static int server(const struct sockaddr_ib *at) {
  static unsigned char region[4096];
  const int l = afib_socket(AF_IB, SOCK_SEQPACKET, 0);
  if (l < 0 || afib_bind(l, at) != 0 || afib_listen(l, 4) != 0) return fail("listen", l);
  printf("listening\n");
  fflush(stdout);
  const int c = afib_accept(l, NULL);
  if (c < 0) return fail("accept", l);
  for (size_t i = 0; i < sizeof region; ++i) region[i] = pattern(i, 1);
  const int r = afib_reg(c, region, sizeof region, AFIB_ACCESS_REMOTE_READ | AFIB_ACCESS_REMOTE_WRITE);
  if (r < 0) return fail("reg", c);
  if (afib_advertise(c, r) != 0) return fail("advertise", c);
  struct afib_completion done;
  if (afib_completions(c, &done, 1) != 1) return fail("completions", c);
  int bad = done.op != AFIB_OP_WRITE_WITH_IMM || done.status != AFIB_STATUS_OK ||
            done.imm != 0x1234 || done.bytes != 512;
  for (size_t i = 0; i < 512 && !bad; ++i) bad = region[1024 + i] != pattern(i, 2);
  for (size_t i = 0; i < 1024 && !bad; ++i) bad = region[i] != pattern(i, 1);  /* untouched */
  printf("RDMA write with immediate 0x%x received: %u bytes %s\n", done.imm, done.bytes,
         bad ? "WRONG" : "as written");
  char msg[64];
  uint32_t imm = 0;
  int has_imm = 0;
  const ssize_t n = afib_recv_imm(c, msg, sizeof msg - 1, 0, &imm, &has_imm);
  if (n < 0) return fail("recv_imm", c);
  msg[n] = '\0';
  printf("message '%s' with immediate %s0x%x\n", msg, has_imm ? "" : "(none) ", imm);
  bad |= !has_imm || imm != 0x5678 || strcmp(msg, "hello-imm") != 0;
  if (afib_revoke(c, r) != 0) return fail("revoke", c);
  if (afib_send(c, "revoked", 7, 0) != 7) return fail("send", c);
  printf("region revoked\n");
  /* The client's access after the revocation fails; its connection then ends: so does ours. */
  while (afib_recv(c, msg, sizeof msg, 0) > 0) {
  }
  afib_close(c);
  afib_close(l);
  return bad;
}

static int client(const struct sockaddr_ib *to) {
  static unsigned char local[8192];
  const int s = afib_socket(AF_IB, SOCK_SEQPACKET, 0);
  if (s < 0) return fail("socket", -1);
  if (afib_connect(s, to) != 0) return fail("connect", s);
  const int r = afib_reg(s, local, sizeof local, 0);  /* no remote access: the peer gets nothing */
  if (r < 0) return fail("reg", s);
  struct afib_remote peer;
  if (afib_peer_region(s, &peer) != 0) return fail("peer_region", s);
  printf("peer region %u: %llu bytes, access %u\n", peer.id, (unsigned long long)peer.len,
         peer.access);
  struct afib_completion done;
  int bad = 0;
  if (afib_rdma_read(s, r, 0, &peer, 0, 4096, 11) != 0) return fail("rdma_read", s);
  if (afib_completions(s, &done, 1) != 1) return fail("completions", s);
  bad |= done.wr_id != 11 || done.op != AFIB_OP_RDMA_READ || done.status != AFIB_STATUS_OK;
  for (size_t i = 0; i < 4096 && !bad; ++i) bad = local[i] != pattern(i, 1);
  printf("RDMA read of 4096 bytes: %s\n", bad ? "WRONG" : "the peer's bytes");
  for (size_t i = 0; i < 512; ++i) local[4096 + i] = pattern(i, 2);
  if (afib_rdma_write(s, r, 4096, &peer, 1024, 512, 12, 1, 0x1234) != 0)
    return fail("rdma_write", s);
  if (afib_completions(s, &done, 1) != 1) return fail("completions", s);
  bad |= done.wr_id != 12 || done.op != AFIB_OP_RDMA_WRITE || done.status != AFIB_STATUS_OK;
  printf("RDMA write of 512 bytes with immediate: %s\n", done.status == AFIB_STATUS_OK ? "done" : "FAILED");
  if (afib_send_imm(s, "hello-imm", 9, 0x5678) != 9) return fail("send_imm", s);
  char msg[16];
  const ssize_t n = afib_recv(s, msg, sizeof msg, 0);
  if (n != 7 || memcmp(msg, "revoked", 7) != 0) {
    fprintf(stderr, "afib-rdma: expected the revocation notice\n");
    return 1;
  }
  /* The region is revoked: the same write must now fail. */
  if (afib_rdma_write(s, r, 4096, &peer, 1024, 512, 13, 0, 0) != 0) {
    printf("RDMA write after revocation: refused at once (%s)\n", afib_error_detail(s));
  } else {
    const int k = afib_completions(s, &done, 1);
    if (k == 1 && done.wr_id == 13 && done.status != AFIB_STATUS_OK) {
      printf("RDMA write after revocation: failed (%s)\n",
             done.status == AFIB_STATUS_REMOTE_ACCESS ? "remote access error" : "error");
    } else {
      printf("RDMA write after revocation: SUCCEEDED (it must not)\n");
      bad = 1;
    }
  }
  afib_close(s);
  return bad;
}

int main(int argc, char **argv) {
  struct sockaddr_ib a;
  if (argc == 3 && strcmp(argv[1], "listen") == 0)
    return address(argv[2], &a) != 0 ? 2 : server(&a);
  if (argc == 3 && strcmp(argv[1], "connect") == 0)
    return address(argv[2], &a) != 0 ? 2 : client(&a);
  fprintf(stderr, "usage: afib-rdma listen ADDRESS | afib-rdma connect ADDRESS\n");
  return 2;
}

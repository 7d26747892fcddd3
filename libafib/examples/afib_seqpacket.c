/*
 * afib-seqpacket: an AF_IB SOCK_SEQPACKET example (libafib, native RC messages). A server that
 * echoes each message of one connection, and a client that checks the echoes keep their
 * boundaries.
 *
 *   afib-seqpacket listen '[::]:ipcm:7200'
 *   afib-seqpacket connect '[::ffff:10.99.0.1]:ipcm:7200'
 *
 * The client sends messages of 1, 100, 4096 and 65536 bytes, checks that 65537 bytes are refused
 * (EMSGSIZE), ends its messages (shutdown), then reads the echoes: each exactly as sent, the
 * third into a 100-byte buffer with MSG_TRUNC (the message's length returned, the rest dropped),
 * each after poll(2) said the descriptor is readable.
 */
#include <afib/afib.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { kMax = 65536 };

static int fail(const char *what, int fd) {
  fprintf(stderr, "afib-seqpacket: %s: %s (%s)\n", what, strerror(errno),
          fd >= 0 ? afib_error_detail(fd) : "");
  return 1;
}

static int address(const char *text, struct sockaddr_ib *a) {
  char err[200];
  if (afib_addr_parse(text, a, err, sizeof err) != 0) {
    fprintf(stderr, "afib-seqpacket: '%s': %s\n", text, err);
    return -1;
  }
  return 0;
}

static void fill(unsigned char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; ++i) p[i] = (unsigned char)(i * 7u + seed);
}

static int serve(const struct sockaddr_ib *at) {
  const int l = afib_socket(AF_IB, SOCK_SEQPACKET, 0);
  if (l < 0) return fail("socket", -1);
  if (afib_bind(l, at) != 0) return fail("bind", l);
  if (afib_listen(l, 8) != 0) return fail("listen", l);
  printf("listening\n");
  fflush(stdout);
  struct sockaddr_ib peer;
  const int c = afib_accept(l, &peer);
  if (c < 0) return fail("accept", l);
  char text[AFIB_ADDRSTRLEN];
  afib_addr_format(&peer, text, sizeof text);
  printf("connection from %s\n", text);
  static unsigned char buf[kMax];
  int count = 0;
  for (;;) {
    const ssize_t n = afib_recv(c, buf, sizeof buf, 0);
    if (n < 0) return fail("recv", c);
    if (n == 0) break;  /* the client ended its messages */
    if (afib_send(c, buf, (size_t)n, 0) != n) return fail("send", c);
    ++count;
  }
  printf("echoed %d messages\n", count);
  afib_close(c);
  afib_close(l);
  return 0;
}

static int client(const struct sockaddr_ib *to) {
  static const size_t sizes[] = {1, 100, 4096, kMax};
  static unsigned char out[kMax + 1], in[kMax];
  const int s = afib_socket(AF_IB, SOCK_SEQPACKET, 0);
  if (s < 0) return fail("socket", -1);
  if (afib_connect(s, to) != 0) return fail("connect", s);
  for (unsigned i = 0; i < 4; ++i) {
    fill(out, sizes[i], i);
    if (afib_send(s, out, sizes[i], 0) != (ssize_t)sizes[i]) return fail("send", s);
  }
  errno = 0;
  if (afib_send(s, out, kMax + 1, 0) != -1 || errno != EMSGSIZE) {
    fprintf(stderr, "afib-seqpacket: a message of %d bytes was not refused\n", kMax + 1);
    return 1;
  }
  if (afib_shutdown(s, SHUT_WR) != 0) return fail("shutdown", s);
  int bad = 0;
  sleep(1); /* let every echo arrive: the first recv then collects them all */
  for (unsigned i = 0; i < 4; ++i) {
    /* The descriptor says when a message is there (poll before each recv: the first recv may
     * have collected every echo at once, the descriptor must still say "readable"). */
    struct pollfd p = {s, POLLIN, 0};
    if (poll(&p, 1, 10000) != 1 || (p.revents & POLLIN) == 0) {
      fprintf(stderr, "afib-seqpacket: echo %u pending but the descriptor is not readable\n", i);
      return 1;
    }
    fill(out, sizes[i], i);
    const int trunc = i == 2;
    const ssize_t n = afib_recv(s, in, trunc ? 100 : sizeof in, trunc ? MSG_TRUNC : 0);
    if (n < 0) return fail("recv", s);
    const size_t cmp = trunc ? 100 : sizes[i];
    if ((size_t)n != sizes[i] || memcmp(in, out, cmp) != 0) {
      fprintf(stderr, "afib-seqpacket: echo %u: %zd bytes, %zu expected%s\n", i, n, sizes[i],
              (size_t)n == sizes[i] ? " (content differs)" : "");
      bad = 1;
    }
  }
  const ssize_t end = afib_recv(s, in, sizeof in, 0);
  if (end != 0) {
    fprintf(stderr, "afib-seqpacket: expected the end of the server's messages, got %zd\n", end);
    bad = 1;
  }
  afib_close(s);
  if (!bad)
    printf("4 messages echoed with their boundaries (1, 100, 4096, 65536 bytes); 65537 refused "
           "(EMSGSIZE); MSG_TRUNC gave the full length\n");
  return bad;
}

int main(int argc, char **argv) {
  struct sockaddr_ib a;
  if (argc == 3 && strcmp(argv[1], "listen") == 0)
    return address(argv[2], &a) != 0 ? 2 : serve(&a);
  if (argc == 3 && strcmp(argv[1], "connect") == 0)
    return address(argv[2], &a) != 0 ? 2 : client(&a);
  fprintf(stderr, "usage: afib-seqpacket listen ADDRESS | afib-seqpacket connect ADDRESS\n");
  return 2;
}

/*
 * afib-stream: an AF_IB SOCK_STREAM example (libafib). A server that echoes one connection,
 * and a client that sends a message, ends its stream and prints the echo.
 *
 *   afib-stream listen '[::]:sdp:7100'                  (every local GID, SDP service port 7100)
 *   afib-stream connect '[::ffff:10.99.0.1]:sdp:7100' hello
 *
 * Addresses are in libafib's text form (man afib_addr(3)); `afib-addr resolve HOST` gives a
 * host's.
 */
#include <afib/afib.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static int usage(void) {
  fprintf(stderr, "usage: afib-stream listen ADDRESS | afib-stream connect ADDRESS MESSAGE\n");
  return 2;
}

static int address(const char *text, struct sockaddr_ib *a) {
  char err[200];
  if (afib_addr_parse(text, a, err, sizeof err) != 0) {
    fprintf(stderr, "afib-stream: '%s': %s\n", text, err);
    return -1;
  }
  return 0;
}

static int fail(const char *what, int fd) {
  fprintf(stderr, "afib-stream: %s: %s (%s)\n", what, strerror(errno),
          fd >= 0 ? afib_error_detail(fd) : "");
  return 1;
}

static int serve(const struct sockaddr_ib *at) {
  const int l = afib_socket(AF_IB, SOCK_STREAM, 0);
  if (l < 0) return fail("socket", -1);
  if (afib_bind(l, at) != 0) return fail("bind", l);
  if (afib_listen(l, 8) != 0) return fail("listen", l);
  struct sockaddr_ib self;
  char text[AFIB_ADDRSTRLEN];
  if (afib_getsockname(l, &self) == 0 && afib_addr_format(&self, text, sizeof text) > 0)
    printf("listening on %s\n", text);
  fflush(stdout);
  struct sockaddr_ib peer;
  const int c = afib_accept(l, &peer);
  if (c < 0) return fail("accept", l);
  afib_addr_format(&peer, text, sizeof text);
  printf("connection from %s\n", text);
  char buf[4096];
  long total = 0;
  for (;;) {
    const ssize_t n = afib_recv(c, buf, sizeof buf, 0);
    if (n < 0) return fail("recv", c);
    if (n == 0) break;
    for (ssize_t off = 0; off < n;) {
      const ssize_t w = afib_send(c, buf + off, (size_t)(n - off), 0);
      if (w < 0) return fail("send", c);
      off += w;
    }
    total += n;
  }
  printf("echoed %ld bytes\n", total);
  afib_close(c);
  afib_close(l);
  return 0;
}

static int client(const struct sockaddr_ib *to, const char *message) {
  const int s = afib_socket(AF_IB, SOCK_STREAM, 0);
  if (s < 0) return fail("socket", -1);
  if (afib_connect(s, to) != 0) return fail("connect", s);
  const size_t len = strlen(message);
  for (size_t off = 0; off < len;) {
    const ssize_t w = afib_send(s, message + off, len - off, 0);
    if (w < 0) return fail("send", s);
    off += (size_t)w;
  }
  if (afib_shutdown(s, SHUT_WR) != 0) return fail("shutdown", s);
  char buf[4096];
  size_t got = 0;
  for (;;) {
    const ssize_t n = afib_recv(s, buf + got, sizeof buf - 1 - got, 0);
    if (n < 0) return fail("recv", s);
    if (n == 0 || got + (size_t)n >= sizeof buf - 1) {
      got += (size_t)n;
      break;
    }
    got += (size_t)n;
  }
  buf[got] = '\0';
  printf("echo: %s\n", buf);
  afib_close(s);
  return got == len && memcmp(buf, message, len) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  struct sockaddr_ib a;
  if (argc == 3 && strcmp(argv[1], "listen") == 0)
    return address(argv[2], &a) != 0 ? 2 : serve(&a);
  if (argc == 4 && strcmp(argv[1], "connect") == 0)
    return address(argv[2], &a) != 0 ? 2 : client(&a, argv[3]);
  return usage();
}

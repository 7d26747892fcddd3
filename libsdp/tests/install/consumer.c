/* A C program built against an installed libsdp through pkg-config: the header is plain C and
 * the library links and answers. */
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>

#include <sdp/sdp.h>

int main(void) {
  int s = sdp_socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) {
    perror("sdp_socket");
    return 1;
  }
  struct sdp_stats st;
  if (sdp_get_stats(s, &st) != -1 || errno != ENOTCONN) {
    fprintf(stderr, "sdp_get_stats on an unconnected socket did not fail with ENOTCONN\n");
    return 1;
  }
  if (sdp_close(s) != 0) return 1;
  puts("consumer: ok");
  return 0;
}

// The C socket API's contract where no RDMA device is needed: argument checking, errno values,
// options, descriptors, and a prompt, explained failure when the fabric is missing. (Everything
// that needs a fabric is in the lab tests: tests/lab/.)
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <gtest/gtest.h>

#include "sdp/sdp.h"

namespace {

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

TEST(SocketApi, RejectsUnsupportedFamiliesTypesAndProtocols) {
  errno = 0;
  EXPECT_EQ(sdp_socket(AF_UNIX, SOCK_STREAM, 0), -1);
  EXPECT_EQ(errno, EAFNOSUPPORT);
  EXPECT_EQ(sdp_socket(AF_INET, SOCK_DGRAM, 0), -1);
  EXPECT_EQ(errno, EPROTOTYPE);
  EXPECT_EQ(sdp_socket(AF_INET, SOCK_STREAM, IPPROTO_UDP), -1);
  EXPECT_EQ(errno, EPROTONOSUPPORT);
}

TEST(SocketApi, SocketIsARealDescriptorThatCloseReleases) {
  const int s = sdp_socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  ASSERT_GE(s, 0);
  EXPECT_EQ(sdp_is_socket(s), 1);
  EXPECT_NE(fcntl(s, F_GETFD), -1);
  EXPECT_NE(fcntl(s, F_GETFD) & FD_CLOEXEC, 0);
  pollfd p{s, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0);  // usable in poll, nothing to report yet
  EXPECT_EQ(sdp_close(s), 0);
  EXPECT_EQ(sdp_is_socket(s), 0);
  EXPECT_EQ(fcntl(s, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
}

TEST(SocketApi, CallsOnUnknownDescriptorsFailWithEbadf) {
  char b[4] = {};
  EXPECT_EQ(sdp_send(12345, b, 4, 0), -1);
  EXPECT_EQ(errno, EBADF);
  EXPECT_EQ(sdp_recv(12345, b, 4, 0), -1);
  EXPECT_EQ(errno, EBADF);
  EXPECT_EQ(sdp_close(12345), -1);
  EXPECT_EQ(errno, EBADF);
  EXPECT_EQ(sdp_poll_events(-1), -1);
  EXPECT_EQ(errno, EBADF);
}

TEST(SocketApi, UnconnectedSocketRefusesIo) {
  const int s = sdp_socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(s, 0);
  char b[4] = {};
  EXPECT_EQ(sdp_send(s, b, 4, 0), -1);
  EXPECT_EQ(errno, ENOTCONN);
  EXPECT_EQ(sdp_recv(s, b, 4, 0), -1);
  EXPECT_EQ(errno, ENOTCONN);
  EXPECT_EQ(sdp_shutdown(s, SHUT_WR), -1);
  EXPECT_EQ(errno, ENOTCONN);
  EXPECT_EQ(sdp_shutdown(s, 7), -1);
  EXPECT_EQ(errno, EINVAL);
  sdp_stats st{};
  EXPECT_EQ(sdp_get_stats(s, &st), -1);
  EXPECT_EQ(errno, ENOTCONN);
  EXPECT_EQ(sdp_poll_events(s), POLLOUT | POLLHUP);  // as a never-connected TCP socket
  sockaddr_in peer{};
  socklen_t len = sizeof peer;
  EXPECT_EQ(sdp_getpeername(s, reinterpret_cast<sockaddr*>(&peer), &len), -1);
  EXPECT_EQ(errno, ENOTCONN);
  sdp_close(s);
}

TEST(SocketApi, OptionsAreCheckedAndReadBack) {
  const int s = sdp_socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(s, 0);
  int v = 1;
  EXPECT_EQ(sdp_setsockopt(s, SOL_SDP, SDP_RECV_BUFS, &v, sizeof v), -1);  // < 2: no data flow
  EXPECT_EQ(errno, EINVAL);
  v = 64;
  EXPECT_EQ(sdp_setsockopt(s, SOL_SDP, SDP_RECV_BUFS, &v, sizeof v), 0);
  v = 4096;
  EXPECT_EQ(sdp_setsockopt(s, SOL_SDP, SDP_ZCOPY_THRESHOLD, &v, sizeof v), 0);
  v = 32;
  EXPECT_EQ(sdp_setsockopt(s, SOL_SDP, SDP_RECV_SIZE, &v, sizeof v), -1);  // below a BSDH+hdr
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(sdp_setsockopt(s, SOL_SDP, 999, &v, sizeof v), -1);
  EXPECT_EQ(errno, ENOPROTOOPT);
  EXPECT_EQ(sdp_setsockopt(s, SOL_SDP, SDP_RECV_BUFS, &v, 1), -1);  // short option
  EXPECT_EQ(errno, EINVAL);
  int got = 0;
  socklen_t len = sizeof got;
  ASSERT_EQ(sdp_getsockopt(s, SOL_SDP, SDP_RECV_BUFS, &got, &len), 0);
  EXPECT_EQ(got, 64);
  ASSERT_EQ(sdp_getsockopt(s, SOL_SDP, SDP_ZCOPY_THRESHOLD, &got, &len), 0);
  EXPECT_EQ(got, 4096);
  ASSERT_EQ(sdp_getsockopt(s, SOL_SOCKET, SO_ERROR, &got, &len), 0);
  EXPECT_EQ(got, 0);
  linger l{1, 0};
  EXPECT_EQ(sdp_setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof l), 0);
  v = 1;
  EXPECT_EQ(sdp_setsockopt(s, IPPROTO_TCP, 1 /* TCP_NODELAY */, &v, sizeof v), 0);
  sdp_close(s);
}

TEST(SocketApi, ConnectRejectsAddressOfAnotherFamily) {
  const int s = sdp_socket(AF_INET6, SOCK_STREAM, 0);
  ASSERT_GE(s, 0);
  auto a = loopback(5000);
  EXPECT_EQ(sdp_connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a), -1);
  EXPECT_EQ(errno, EAFNOSUPPORT);
  EXPECT_EQ(sdp_connect(s, nullptr, 0), -1);
  EXPECT_EQ(errno, EINVAL);
  sdp_close(s);
}

// With no RDMA device (or no SDP listener) a connect must fail promptly, with an errno a socket
// user understands and a reason in words.
TEST(SocketApi, ConnectWithoutFabricOrListenerFailsPromptlyWithAReason) {
  const int s = sdp_socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(s, 0);
  auto a = loopback(5999);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(sdp_connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a), -1);
  const int e = errno;
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_TRUE(e == ENODEV || e == ECONNREFUSED || e == ENETUNREACH || e == EHOSTUNREACH ||
              e == EADDRNOTAVAIL)
      << std::strerror(e);
  EXPECT_LT(ms, 5000);
  EXPECT_STRNE(sdp_error_detail(s), "");
  sdp_close(s);
}

}  // namespace

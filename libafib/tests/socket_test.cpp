// libafib sockets without a device: the address handed to rdma_cm on InfiniBand and on RoCE
// ports (map.hpp), the AF_IB form of what rdma_cm reports, and the socket calls' errors.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <infiniband/verbs.h>
#include <poll.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "afib/afib.h"
#include "map.hpp"

#include <rdma/rdma_cma.h>

namespace {

sockaddr_ib parse(const char* text) {
  sockaddr_ib a{};
  char err[200] = "";
  EXPECT_EQ(afib_addr_parse(text, &a, err, sizeof err), 0) << err;
  return a;
}

std::string ip_of(const sockaddr_storage& s) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (s.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(s).sin_addr, buf, sizeof buf);
  else if (s.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(s).sin6_addr, buf, sizeof buf);
  return buf;
}

int port_of(const sockaddr_storage& s) {
  return ntohs(s.ss_family == AF_INET ? reinterpret_cast<const sockaddr_in&>(s).sin_port
                                      : reinterpret_cast<const sockaddr_in6&>(s).sin6_port);
}

TEST(AfibMap, RoceGetsTheGidsIpAddressAndTheServicePort) {
  sockaddr_storage out{};
  socklen_t len = 0;
  int ps = 0;
  std::string why;
  ASSERT_TRUE(
      afib::to_rdma_cm(parse("[::ffff:10.99.0.1]:sdp:7100"), false, true, &out, &len, &ps, &why));
  EXPECT_EQ(out.ss_family, AF_INET);
  EXPECT_EQ(len, sizeof(sockaddr_in));
  EXPECT_EQ(ip_of(out), "10.99.0.1");
  EXPECT_EQ(port_of(out), 7100);
  // An IPv4-mapped GID is RoCEv2 even on a host with InfiniBand ports.
  ASSERT_TRUE(
      afib::to_rdma_cm(parse("[::ffff:10.99.0.1]:ipcm:80"), true, true, &out, &len, &ps, &why));
  EXPECT_EQ(out.ss_family, AF_INET);
  EXPECT_EQ(port_of(out), 80);
  ASSERT_TRUE(afib::to_rdma_cm(parse("[fe80::5054:ff:fe99:1]:sdp:9,scope=2"), false, true, &out,
                               &len, &ps, &why));
  EXPECT_EQ(out.ss_family, AF_INET6);
  EXPECT_EQ(len, sizeof(sockaddr_in6));
  EXPECT_EQ(ip_of(out), "fe80::5054:ff:fe99:1");
  EXPECT_EQ(port_of(out), 9);
  EXPECT_EQ(reinterpret_cast<sockaddr_in6&>(out).sin6_scope_id, 2U);
  ASSERT_TRUE(
      afib::to_rdma_cm(parse("[::]:sdp:7100"), false, true, &out, &len, &ps, &why));  // listen
  EXPECT_EQ(out.ss_family, AF_INET6);
  EXPECT_EQ(ip_of(out), "::");
  // Service IDs rdma_cm cannot carry on RoCE.
  for (const char* text : {"[::ffff:10.0.0.1]:ib:7", "[::ffff:10.0.0.1]:0x1000000000000404"}) {
    why.clear();
    EXPECT_FALSE(afib::to_rdma_cm(parse(text), false, true, &out, &len, &ps, &why)) << text;
    EXPECT_NE(why.find("sdp:PORT or ipcm:PORT"), std::string::npos) << why;
  }
}

TEST(AfibMap, SeqpacketOnRoceTakesRdmaCmPortSpaces) {
  sockaddr_storage out{};
  socklen_t len = 0;
  int ps = 0;
  std::string why;
  ASSERT_TRUE(
      afib::to_rdma_cm(parse("[::ffff:10.99.0.1]:ipcm:7200"), false, false, &out, &len, &ps, &why));
  EXPECT_EQ(ps, RDMA_PS_TCP);
  EXPECT_EQ(port_of(out), 7200);
  ASSERT_TRUE(
      afib::to_rdma_cm(parse("[::ffff:10.99.0.1]:ib:7201"), false, false, &out, &len, &ps, &why));
  EXPECT_EQ(ps, RDMA_PS_IB);
  EXPECT_EQ(port_of(out), 7201);
  why.clear();
  EXPECT_FALSE(
      afib::to_rdma_cm(parse("[::ffff:10.99.0.1]:sdp:7200"), false, false, &out, &len, &ps, &why));
  EXPECT_NE(why.find("ipcm:PORT or ib:PORT"), std::string::npos) << why;
}

TEST(AfibMap, InfinibandGetsTheSockaddrIbItself) {
  const sockaddr_ib a = parse("[fe80::2:c903:0:1101]:0x0000000000011b5f,pkey=0x8001");
  sockaddr_storage out{};
  socklen_t len = 0;
  int ps = 0;
  std::string why;
  ASSERT_TRUE(afib::to_rdma_cm(a, true, true, &out, &len, &ps, &why));
  EXPECT_EQ(ps, RDMA_PS_IB);
  EXPECT_EQ(out.ss_family, AF_IB);
  EXPECT_EQ(len, sizeof(sockaddr_ib));
  EXPECT_EQ(std::memcmp(&out, &a, sizeof a), 0);
}

TEST(AfibMap, ReportedAddressesBecomeAfIb) {
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  v4.sin_port = htons(43210);
  inet_pton(AF_INET, "10.99.0.2", &v4.sin_addr);
  sockaddr_ib out{};
  afib::from_rdma_cm(reinterpret_cast<sockaddr*>(&v4), AFIB_SID_SDP, &out);
  char text[AFIB_ADDRSTRLEN];
  afib_addr_format(&out, text, sizeof text);
  EXPECT_STREQ(text, "[::ffff:10.99.0.2]:0x000000000001a8ca");
  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  v6.sin6_port = htons(80);
  inet_pton(AF_INET6, "fe80::1", &v6.sin6_addr);
  afib::from_rdma_cm(reinterpret_cast<sockaddr*>(&v6), AFIB_SID_IP_CM, &out);
  afib_addr_format(&out, text, sizeof text);
  EXPECT_STREQ(text, "[fe80::1]:0x0000000001060050");
  const sockaddr_ib ib = parse("[fe80::9]:ib:1,pkey=0x8001");
  afib::from_rdma_cm(reinterpret_cast<const sockaddr*>(&ib), AFIB_SID_SDP, &out);
  EXPECT_EQ(std::memcmp(&out, &ib, sizeof ib), 0);
}

TEST(AfibSocket, CallsRefuseWhatTheyCannotDo) {
  errno = 0;
  EXPECT_EQ(afib_socket(AF_INET, SOCK_STREAM, 0), -1);
  EXPECT_EQ(errno, EAFNOSUPPORT);
  EXPECT_EQ(afib_socket(AF_IB, SOCK_DGRAM, 0), -1);
  EXPECT_EQ(errno, EPROTOTYPE);
  EXPECT_EQ(afib_socket(AF_IB, SOCK_STREAM, 6), -1);
  EXPECT_EQ(errno, EPROTONOSUPPORT);
  const int sp = afib_socket(AF_IB, SOCK_SEQPACKET, 0);  // native RC messages
  ASSERT_GE(sp, 0);
  EXPECT_EQ(afib_send(sp, "x", 1, 0), -1);
  EXPECT_EQ(errno, ENOTCONN);
  EXPECT_EQ(afib_poll_events(sp), POLLOUT | POLLHUP);
  EXPECT_EQ(afib_close(sp), 0);
  EXPECT_EQ(afib_send(12345, "x", 1, 0), -1);
  EXPECT_EQ(errno, EBADF);
  const int fd = afib_socket(AF_IB, SOCK_STREAM | SOCK_NONBLOCK, 0);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(afib_send(fd, "x", 1, 0), -1);  // not connected
  EXPECT_EQ(errno, ENOTCONN);
  EXPECT_EQ(afib_poll_events(fd), POLLOUT | POLLHUP);  // as an unconnected TCP socket
  sockaddr_ib a{};
  EXPECT_EQ(afib_getpeername(fd, &a), -1);
  EXPECT_EQ(errno, ENOTCONN);
  // A service ID rdma_cm cannot carry here: refused before any connection attempt, with the
  // reason (or, on a machine without a device, that).
  const sockaddr_ib bad = parse("[::ffff:10.0.0.1]:ib:7");
  EXPECT_EQ(afib_connect(fd, &bad), -1);
  EXPECT_TRUE(errno == EADDRNOTAVAIL || errno == ENODEV) << errno;
  EXPECT_NE(std::string(afib_error_detail(fd))
                .find(errno == ENODEV ? "no RDMA device" : "sdp:PORT or ipcm:PORT"),
            std::string::npos)
      << afib_error_detail(fd);
  sockaddr_ib not_ib = parse("[::ffff:10.0.0.1]:sdp:7");
  not_ib.sib_family = AF_INET6;
  EXPECT_EQ(afib_bind(fd, &not_ib), -1);
  EXPECT_EQ(errno, EAFNOSUPPORT);
  EXPECT_EQ(afib_close(fd), 0);
  EXPECT_EQ(afib_close(fd), -1);
  EXPECT_EQ(errno, EBADF);
}

TEST(AfibSocket, NativeFeaturesNeedAConnectedSeqpacketSocket) {
  const int st = afib_socket(AF_IB, SOCK_STREAM, 0);
  ASSERT_GE(st, 0);
  char buf[64];
  errno = 0;
  EXPECT_EQ(afib_reg(st, buf, sizeof buf, AFIB_ACCESS_REMOTE_READ), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
  EXPECT_NE(std::string(afib_error_detail(st)).find("SOCK_SEQPACKET"), std::string::npos);
  EXPECT_EQ(afib_close(st), 0);
  const int sp = afib_socket(AF_IB, SOCK_SEQPACKET | SOCK_NONBLOCK, 0);
  ASSERT_GE(sp, 0);
  EXPECT_EQ(afib_reg(sp, buf, sizeof buf, AFIB_ACCESS_REMOTE_READ), -1);
  EXPECT_EQ(errno, ENOTCONN);
  EXPECT_EQ(afib_advertise(sp, 1), -1);
  EXPECT_EQ(errno, EINVAL);  // no such region
  EXPECT_EQ(afib_revoke(sp, 1), -1);
  EXPECT_EQ(errno, EINVAL);
  afib_remote r{};
  EXPECT_EQ(afib_rdma_read(sp, 1, 0, &r, 0, 8, 1), -1);
  EXPECT_EQ(errno, ENOTCONN);
  EXPECT_EQ(afib_rdma_write(sp, 1, 0, nullptr, 0, 8, 1, 0, 0), -1);
  EXPECT_EQ(errno, EFAULT);
  EXPECT_EQ(afib_send_imm(sp, "x", 1, AFIB_IMM_RESERVED), -1);  // libafib's own value
  EXPECT_EQ(errno, EINVAL);
  afib_completion c{};
  EXPECT_EQ(afib_completions(sp, &c, 0), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(afib_close(sp), 0);
}

TEST(AfibSocket, WithoutADeviceConnectSaysSo) {
  int n = 0;
  ibv_device** list = ibv_get_device_list(&n);
  if (list != nullptr) ibv_free_device_list(list);
  if (n > 0) GTEST_SKIP() << "an RDMA device is present (the lab tests connect for real)";
  const int fd = afib_socket(AF_IB, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  const sockaddr_ib peer = parse("[::ffff:192.0.2.1]:sdp:7100");
  errno = 0;
  EXPECT_EQ(afib_connect(fd, &peer), -1);
  EXPECT_NE(errno, 0);
  const std::string why = afib_error_detail(fd);
  EXPECT_NE(why.find("RDMA device"), std::string::npos) << why;
  EXPECT_EQ(afib_close(fd), 0);
}

}  // namespace

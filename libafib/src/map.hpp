// How an AF_IB address is handed to rdma_cm (DESIGN.md, "Addresses: what rdma_cm is given"):
// kept apart from the sockets so that the unit tests check it without a device.
#pragma once

#include <infiniband/ib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <string>

namespace afib {

// The address rdma_cm gets for `sib` when the local ports are InfiniBand (`ib_ports`) or not:
// on InfiniBand the sockaddr_ib itself (AF_IB); on RoCE the GID as an IP address (IPv4-mapped →
// AF_INET, else AF_INET6) with the service ID's port. The unspecified GID stays unspecified (a
// listener on every address). A GID that is IPv4-mapped is RoCEv2 whatever the ports. False,
// with the reason in *why, when the address cannot be carried: on RoCE a service ID outside
// the kinds the socket type allows.
// `stream`: for SOCK_STREAM (SDP: sdp: and ipcm: SIDs on RoCE), else for SOCK_SEQPACKET (native
// RC: ipcm: and ib: SIDs on RoCE); *ps gets the rdma_cm port space to use.
bool to_rdma_cm(const sockaddr_ib& sib, bool ib_ports, bool stream, sockaddr_storage* out,
                socklen_t* len, int* ps, std::string* why);

// The AF_IB form of an address rdma_cm reported (a peer or a local address): AF_IB as is; an
// AF_INET address becomes the IPv4-mapped GID, AF_INET6 the GID itself; the port becomes a
// service ID of `kind` (afib_sid_kind) with P_Key 0xffff.
void from_rdma_cm(const sockaddr* sa, int kind, sockaddr_ib* out);

// This host's RDMA ports: whether it has any device, and an active InfiniBand (not Ethernet) port.
struct Ports {
  bool any_device = false;
  bool infiniband = false;
};
Ports local_ports();

}  // namespace afib

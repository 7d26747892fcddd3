// The raw endpoint's view of the fabric: one RC connection to the peer under test, with the
// receive posting, SENDs, RDMA and CM teardown under the scenario's control. Two implementations:
// the builtin peer (libsdp's engine over an in-memory RC simulation, virtual time) and verbs (a
// real RC QP through rdma_cm to a peer's address, in either CM mode).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "scenario.pb.h"

namespace conformance {

struct Event {
  enum class Kind : std::uint8_t {
    Recv,           // a SEND from the peer landed in one of our receives: `data`
    SendError,      // one of our SENDs failed (RNR, QP in error): `text`
    RdmaDone,       // our RDMA READ / WRITE `id` finished (READ: `data` = bytes read)
    RdmaError,      // our RDMA `id` failed (remote access error, ...): `text`
    Established,    // connect: the CM REP arrived; `data` = its private data (the HelloAck)
    Rejected,       // connect: CM REJ (or setup failed): `text`
    Disconnected,   // the peer's CM DREQ (or its QP went away): `text`
    Keepalive,      // builtin only: the peer's zero-length RDMA WRITE
    HelloRequest,   // builtin, RAW_ACCEPTS: the peer's CM REQ; `data` = its private data
    PeerRefused,    // builtin, RAW_ACCEPTS: the peer refused our HelloAck: `text`
    TransportError  // anything else that ends the connection: `text`
  };
  Kind kind = Kind::Recv;
  std::uint64_t id = 0;
  std::vector<std::uint8_t> data;
  std::string text;
};

// A region of our memory registered for the peer's RDMA.
struct LocalRegion {
  std::uint64_t id = 0;
  std::uint8_t* addr = nullptr;
  std::uint32_t len = 0;
  std::uint64_t va = 0;  // what the peer must name (our address on the wire)
  std::uint32_t rkey = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual std::string describe() const = 0;
  virtual bool builtin() const noexcept { return false; }

  // Milliseconds on the transport's clock (virtual for the builtin peer).
  virtual std::uint64_t now_ms() = 0;
  // The next event, waiting until `deadline_ms` at most (nullopt: nothing by then).
  virtual std::optional<Event> poll(std::uint64_t deadline_ms) = 0;

  // Connection setup. connect(): `service`'s port on the peer, the CM REQ carrying
  // `private_data` verbatim (the transport adds nothing; in IP CM mode the kernel's IP CM header
  // goes first). Answers come as Established / Rejected events. Receives posted before connect()
  // are on the QP before the REQ leaves.
  virtual bool connect(Service service, bool native_cm, std::span<const std::uint8_t> private_data,
                       std::string& error) = 0;
  // RAW_ACCEPTS (builtin only): make the peer connect; its REQ comes as a HelloRequest event.
  virtual bool await_peer_connect(Service service, bool compact_hello, std::string& error) {
    (void)service;
    (void)compact_hello;
    error = "this peer does not connect to us (builtin only)";
    return false;
  }
  // RAW_ACCEPTS: answer the peer's REQ with a REP carrying `private_data`, or with a REJ.
  virtual void answer_peer(std::span<const std::uint8_t> private_data, bool reject) {
    (void)private_data;
    (void)reject;
  }

  // Receives of `size` bytes (BSDH included) at the peer's disposal.
  virtual bool post_recv(std::uint32_t count, std::uint32_t size, std::string& error) = 0;
  // One SEND carrying exactly `bytes`.
  virtual bool send(std::span<const std::uint8_t> bytes, std::string& error) = 0;
  // Memory the peer may RDMA: `remote_read` / `remote_write` access.
  virtual std::optional<LocalRegion> register_region(std::uint32_t len, bool remote_read,
                                                     bool remote_write, std::string& error) = 0;
  virtual void deregister_region(std::uint64_t id) = 0;
  // RDMA READ `len` bytes from the peer's (va, rkey) / WRITE `data` there. Completion as
  // RdmaDone / RdmaError with this `id`.
  virtual bool rdma_read(std::uint64_t id, std::uint64_t va, std::uint32_t rkey, std::uint32_t len,
                         std::string& error) = 0;
  virtual bool rdma_write(std::uint64_t id, std::uint64_t va, std::uint32_t rkey,
                          std::span<const std::uint8_t> data, std::string& error) = 0;
  // CM DREQ (or DREP to the peer's).
  virtual void disconnect() = 0;

  // Builtin only: the peer application's actions. False with `error` elsewhere.
  virtual bool app(const App& act, std::string& error) {
    (void)act;
    error = "application actions need the builtin peer";
    return false;
  }
  // Builtin only: how the peer's engine ended (for reports), "" while it runs.
  virtual std::string peer_state() const { return {}; }
};

// --peer builtin: libsdp's engine (configured from `cfg`) runs `service`'s application.
std::unique_ptr<Transport> make_builtin_transport(const PeerConfig& cfg);

struct VerbsOptions {
  std::string host;  // the peer's address (IP or host name; GID in native mode)
  std::uint16_t port_base = 7000;
  std::string bind;  // local address (optional)
  int resolve_timeout_ms = 2000;
};
// --peer ADDR: a real RC QP through rdma_cm. nullptr with `error` when no RDMA device exists.
std::unique_ptr<Transport> make_verbs_transport(const VerbsOptions& opt, std::string& error);

// The contract's port of a service: BASE+7 echo, BASE+9 discard, BASE+19 source.
inline std::uint16_t service_port(Service s, std::uint16_t base) {
  return static_cast<std::uint16_t>(base + (s == ECHO ? 7 : s == DISCARD ? 9 : 19));
}

}  // namespace conformance

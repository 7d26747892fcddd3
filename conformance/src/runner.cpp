#include "runner.hpp"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "sdp/bytes.hpp"
#include "sdp/wire.hpp"

namespace conformance {

namespace wire = sdp::wire;
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Loading

namespace {

class ParseErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (first.empty())
      first = "line " + std::to_string(line + 1) + ", column " + std::to_string(column + 1) + ": " +
              message;
  }
  std::string first;
};

bool check_step(const Step& st, std::string& error) {
  if (st.kind_case() == Step::KIND_NOT_SET) {
    error = "a step with nothing in it";
    return false;
  }
  if (st.has_rdma() && st.rdma().within_ms() > 600000) {
    error = "rdma.within_ms above 10 minutes";
    return false;
  }
  return true;
}

}  // namespace

bool check_scenario(const Scenario& s, std::string& error) {
  if (s.name().empty()) {
    error = "a scenario without a name";
    return false;
  }
  const bool name_ok = std::all_of(s.name().begin(), s.name().end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' ||
           c == '-';
  });
  if (!name_ok && s.name().rfind("replay:", 0) != 0) {
    error = "scenario '" + s.name() + "': name must match [a-z0-9_.:-]+";
    return false;
  }
  if (s.rule().empty()) {
    error = "scenario '" + s.name() + "' cites no rule";
    return false;
  }
  if (s.step().empty()) {
    error = "scenario '" + s.name() + "' has no steps";
    return false;
  }
  for (int i = 0; i < s.step_size(); ++i) {
    std::string why;
    if (!check_step(s.step(i), why)) {
      error = "scenario '" + s.name() + "' step " + std::to_string(i + 1) + ": " + why;
      return false;
    }
  }
  return true;
}

bool load_scenarios(const std::string& path, std::vector<LoadedScenario>& out, std::string& error) {
  std::vector<fs::path> files;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (const auto& e : fs::directory_iterator(path, ec))
      if (e.path().extension() == ".textproto") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    if (files.empty()) {
      error = path + ": no *.textproto scenario files";
      return false;
    }
  } else if (fs::exists(path, ec)) {
    files.emplace_back(path);
  } else {
    error = path + ": no such file or directory";
    return false;
  }
  std::set<std::string> names;
  for (const auto& s : out) names.insert(s.scenario.name());
  for (const auto& f : files) {
    std::ifstream in(f);
    std::stringstream buf;
    buf << in.rdbuf();
    if (!in) {
      error = f.string() + ": cannot read";
      return false;
    }
    ScenarioFile sf;
    google::protobuf::TextFormat::Parser parser;
    ParseErrors errs;
    parser.RecordErrorsTo(&errs);
    if (!parser.ParseFromString(buf.str(), &sf)) {
      error = f.string() + ": " + (errs.first.empty() ? "parse error" : errs.first);
      return false;
    }
    for (const auto& s : sf.scenario()) {
      std::string why;
      if (!check_scenario(s, why)) {
        error = f.string() + ": " + why;
        return false;
      }
      if (!names.insert(s.name()).second) {
        error = f.string() + ": scenario name '" + s.name() + "' used twice";
        return false;
      }
      out.push_back({f.string(), s});
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Describing messages

namespace {

using sdp::be::get16;
using sdp::be::get32;
using sdp::be::get64;
using sdp::be::put32;
using sdp::be::put64;
// BSDH Bufs and HH LocalPort are 16 bits on the wire: a scenario's wider value is cut to them.
void put16(std::uint8_t* p, std::uint32_t v) {
  sdp::be::put16(p, static_cast<std::uint16_t>(v));
}

std::string hex(std::uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

std::string mid_text(std::uint8_t mid) {
  if (wire::mid_defined(mid)) return std::string(wire::mid_name(mid));
  return "MID " + hex(mid);
}

}  // namespace

std::string describe_message(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < wire::kBsdhSize)
    return std::to_string(bytes.size()) + " bytes (shorter than a BSDH)";
  const std::uint8_t* p = bytes.data();
  std::string s = mid_text(p[0]) + " Len " + std::to_string(get32(p + 4)) + " Bufs " +
                  std::to_string(get16(p + 2)) + " MSeq " + std::to_string(get32(p + 8)) +
                  " MSeqAck " + std::to_string(get32(p + 12));
  if (p[1] != 0) s += " Flags " + hex(p[1]);
  wire::Message m;
  wire::Error err;
  if (!wire::decode_message_into(bytes, m, err)) return s + " [malformed: " + err.text.data() + "]";
  std::visit(
      [&](const auto& h) {
        using H = std::decay_t<decltype(h)>;
        if constexpr (std::is_same_v<H, wire::SrcAvailHeader>)
          s += " SrcAH.Len " + std::to_string(h.len) + " R_Key " + hex(h.rkey) + " VA " + hex(h.va);
        else if constexpr (std::is_same_v<H, wire::SinkAvailHeader>)
          s += " SinkAH.Len " + std::to_string(h.len) + " R_Key " + hex(h.rkey) + " VA " +
               hex(h.va) + " NonDisc " + std::to_string(h.non_disc);
        else if constexpr (std::is_same_v<H, wire::RdmaRdComplHeader> ||
                           std::is_same_v<H, wire::RdmaWrComplHeader>)
          s += " Len(ext) " + std::to_string(h.len);
        else if constexpr (std::is_same_v<H, wire::ChRcvBufHeader> ||
                           std::is_same_v<H, wire::ChRcvBufAckHeader>)
          s += " Size " + std::to_string(h.size);
        else if constexpr (std::is_same_v<H, wire::ModeChangeHeader>)
          s += std::string(" Mode ") + std::to_string(static_cast<int>(h.mode)) +
               (h.send_half ? " (send half)" : " (receive half)");
      },
      m.ext);
  if (!m.payload.empty()) s += " payload " + std::to_string(m.payload.size());
  return s;
}

// ---------------------------------------------------------------------------------------------
// The raw endpoint

namespace {

struct Failure {
  std::string why;
};
// The scenario cannot run on this fabric (a native-CM case on RoCE): SKIP, not FAIL.
struct Unsupported {
  std::string why;
};

struct Item {
  enum class Kind : std::uint8_t { Msg, Event } kind = Kind::Msg;
  std::vector<std::uint8_t> bytes;  // Msg
  bool ok = false;                  // Msg: decoded
  std::uint8_t mid = 0;
  std::uint32_t payload_len = 0;
  std::uint64_t stream_off = 0;  // stream offset of its first payload byte
  Event ev;                      // Event
  std::string describe;
};

struct Advert {  // the peer's SrcAvail / SinkAvail
  std::uint32_t len = 0, rkey = 0, inline_len = 0;
  std::uint64_t va = 0;
  std::uint64_t stream_off = 0;
  std::uint32_t mseq = 0;
};

bool match(const U64Match& m, std::uint64_t v, std::string& want) {
  switch (m.m_case()) {
    case U64Match::M_NOT_SET:
      return true;
    case U64Match::kEq:
      want = "= " + std::to_string(m.eq());
      return v == m.eq();
    case U64Match::kNe:
      want = "≠ " + std::to_string(m.ne());
      return v != m.ne();
    case U64Match::kAtLeast:
      want = "≥ " + std::to_string(m.at_least());
      return v >= m.at_least();
    case U64Match::kAtMost:
      want = "≤ " + std::to_string(m.at_most());
      return v <= m.at_most();
    case U64Match::kRange:
      want =
          "in [" + std::to_string(m.range().min()) + ", " + std::to_string(m.range().max()) + "]";
      return v >= m.range().min() && v <= m.range().max();
  }
  return true;
}

class Endpoint {
 public:
  Endpoint(const Scenario& sc, Transport& t, const RunOptions& opt, CaseResult& res)
      : sc_(sc), t_(t), opt_(opt), res_(res) {
    t0_ = t_.now_ms();
  }

  void run() {
    for (int i = 0; i < sc_.step_size(); ++i) {
      step_no_ = i + 1;
      const Step& st = sc_.step(i);
      try {
        exec(st);
        pump(t_.now_ms());  // whatever has arrived meanwhile is checked too
        if (!violation_.empty()) throw Failure{violation_};
      } catch (const Unsupported& u) {
        res_.set_verdict(SKIP);
        res_.set_reason("step " + std::to_string(step_no_) + ": " + u.why);
        return;
      } catch (const Failure& f) {
        res_.set_verdict(FAIL);
        res_.set_failed_step(step_no_);
        std::string why = f.why;
        if (!violation_.empty() && why != violation_) why = violation_ + " (then: " + why + ")";
        res_.set_reason("step " + std::to_string(step_no_) + " (" + step_name(st) + "): " + why +
                        (st.note().empty() ? "" : " — " + st.note()));
        return;
      }
    }
    res_.set_verdict(PASS);
  }

 private:
  // ---- log ----
  void log(const std::string& dir, const std::string& text) {
    auto* o = res_.add_log();
    o->set_t_ms(static_cast<double>(t_.now_ms() - t0_));
    o->set_dir(dir);
    o->set_text(text);
  }
  [[noreturn]] void fail(const std::string& why) { throw Failure{why}; }

  static std::string step_name(const Step& st) {
    const auto* f = st.GetDescriptor()->FindFieldByNumber(static_cast<int>(st.kind_case()));
    return f != nullptr ? f->name() : "?";
  }

  // ---- credits ----
  std::int64_t our_credits() const {
    return static_cast<std::int64_t>(peer_bufs_) -
           static_cast<std::int64_t>(static_cast<std::uint32_t>(tx_mseq_ - peer_ack_));
  }
  // The peer's credits towards us before its message with MSeq `mseq`.
  std::int64_t peer_credits_before(std::uint32_t mseq) const {
    return static_cast<std::int64_t>(adv_bufs_) -
           static_cast<std::int64_t>(static_cast<std::uint32_t>(mseq - 1 - adv_ack_));
  }

  // ---- events ----
  void violation(const std::string& why) {
    log("note", "VIOLATION: " + why);
    if (violation_.empty()) violation_ = "peer violated a rule: " + why;
  }

  // Takes what the transport has until `deadline` or until something arrived.
  bool pump_one(std::uint64_t deadline) {
    auto ev = t_.poll(deadline);
    if (!ev) return false;
    on_event(std::move(*ev));
    return true;
  }
  void pump(std::uint64_t deadline) {
    while (pump_one(deadline)) {
    }
  }

  void on_event(Event ev) {
    using K = Event::Kind;
    switch (ev.kind) {
      case K::Recv:
        on_message(std::move(ev.data));
        return;
      case K::RdmaDone:
      case K::RdmaError:
        log("rdma", std::string(ev.kind == K::RdmaDone
                                    ? "RDMA " + std::to_string(ev.id) + " done"
                                    : "RDMA " + std::to_string(ev.id) + " failed: " + ev.text));
        rdma_done_[ev.id] = std::move(ev);
        return;
      default:
        break;
    }
    std::string text;
    switch (ev.kind) {
      case K::SendError:
        text = "our SEND failed: " + ev.text;
        break;
      case K::Established:
        text = "CM: established";
        break;
      case K::Rejected:
        text = "CM: rejected: " + ev.text;
        break;
      case K::Disconnected:
        text = "CM: peer disconnected" + (ev.text.empty() ? "" : ": " + ev.text);
        break;
      case K::Keepalive:
        text = "keepalive (zero-length RDMA WRITE) from the peer";
        break;
      case K::HelloRequest:
        text = "CM: REQ from the peer (" + std::to_string(ev.data.size()) + " bytes private data)";
        break;
      case K::PeerRefused:
        text = "CM: the peer refused our HelloAck: " + ev.text;
        break;
      case K::TransportError:
        text = "transport: " + ev.text;
        if (ev.text.rfind("RNR", 0) == 0 && connected_ && adv_bufs_known_) {
          // The peer sent a message into no posted receive: a credit overrun if we never
          // granted the credit (else it is our own scenario's fault).
          if (peer_credits_before(rx_mseq_ + 1) < 1)
            violation("the peer sent a message without a credit (RNR at our QP): " + ev.text);
        }
        if (ev.text.rfind("peer RDMA", 0) == 0) violation(ev.text);
        break;
      default:
        break;
    }
    log("cm", text);
    Item it;
    it.kind = Item::Kind::Event;
    it.ev = std::move(ev);
    it.describe = text;
    items_.push_back(std::move(it));
  }

  void on_message(std::vector<std::uint8_t> bytes) {
    Item it;
    it.kind = Item::Kind::Msg;
    it.describe = describe_message(bytes);
    log("rx", it.describe);
    if (posted_.empty()) {
      violation("a message arrived with none of our receives posted");
    } else {
      const std::uint32_t size = posted_.front();
      posted_.pop_front();
      if (bytes.size() > size)
        violation("a " + std::to_string(bytes.size()) + "-byte message into a " +
                  std::to_string(size) + "-byte receive");
    }
    wire::Message m;
    wire::Error err;
    it.ok = wire::decode_message_into(bytes, m, err);
    if (bytes.size() >= 1) it.mid = bytes[0];
    if (!it.ok) {
      violation("malformed message: " + std::string(err.text.data()));
    } else {
      check_invariants(m, bytes.size());
      it.payload_len = static_cast<std::uint32_t>(m.payload.size());
      it.stream_off = rx_stream_;
      if (m.bsdh.mid == static_cast<std::uint8_t>(wire::Mid::Data)) {
        rx_stream_ += m.payload.size();
        if (m.bsdh.flags & wire::flags::kOobPres) {
          // urgent byte: part of the stream counters as the peer counts it
        }
      } else if (const auto* sa = std::get_if<wire::SrcAvailHeader>(&m.ext)) {
        Advert a{sa->len, sa->rkey,   static_cast<std::uint32_t>(m.payload.size()),
                 sa->va,  rx_stream_, m.bsdh.mseq};
        rx_stream_ += m.payload.size();
        src_adverts_.push_back(a);
      } else if (const auto* sk = std::get_if<wire::SinkAvailHeader>(&m.ext)) {
        sink_adverts_.push_back(Advert{sk->len, sk->rkey, 0, sk->va, 0, m.bsdh.mseq});
      }
    }
    it.bytes = std::move(bytes);
    items_.push_back(std::move(it));
    if (sc_.auto_credits() && connected_) auto_credit();
  }

  void check_invariants(const wire::Message& m, std::size_t size) {
    const wire::Bsdh& h = m.bsdh;
    if (h.mseq != rx_mseq_ + 1)
      violation("MSeq " + std::to_string(h.mseq) + " after " + std::to_string(rx_mseq_) +
                " (MSeq must be gapless, §1)");
    if (account_ok_ && wire::seq_after(h.mseq_ack, tx_mseq_))
      violation("MSeqAck " + std::to_string(h.mseq_ack) + " acknowledges a message never sent (" +
                "our last MSeq " + std::to_string(tx_mseq_) + ", §1)");
    else if (account_ok_ && wire::seq_after(peer_ack_, h.mseq_ack))
      violation("MSeqAck went backwards: " + std::to_string(h.mseq_ack) + " after " +
                std::to_string(peer_ack_) + " (§1)");
    if (size > our_recv_size_)
      violation("a " + std::to_string(size) + "-byte message exceeds our receive size " +
                std::to_string(our_recv_size_) + " (§5)");
    // Credits (§5): the peer's before this message, from what we advertised.
    const std::int64_t before = peer_credits_before(h.mseq);
    const bool payload = !m.payload.empty();
    const std::int64_t ours_before = our_credits();
    const std::int64_t ours_after =
        static_cast<std::int64_t>(h.bufs) -
        static_cast<std::int64_t>(static_cast<std::uint32_t>(tx_mseq_ - h.mseq_ack));
    // After we sent an MSeq or MSeqAck of our own making, our account no longer describes what
    // the peer may do (it refuses such a message), so the credit checks stop there.
    const bool account = adv_bufs_known_ && account_ok_;
    if (account && before < 1) {
      violation("credit overrun: " + mid_text(h.mid) + " MSeq " + std::to_string(h.mseq) +
                " sent with " + std::to_string(before) + " credits (§5: never send with 0)");
    } else if (account && before == 1 && (payload || ours_after <= ours_before)) {
      violation("CA4-82: " + mid_text(h.mid) + " MSeq " + std::to_string(h.mseq) +
                " used the last credit " +
                (payload ? "with payload" : "without giving us more credits") + " (§5)");
    }
    prev_credits_[h.mseq] = ours_before;
    if (prev_credits_.size() > 4096) prev_credits_.erase(prev_credits_.begin());  // bounded
    rx_mseq_ = h.mseq;
    peer_bufs_ = h.bufs;
    if (!wire::seq_after(peer_ack_, h.mseq_ack)) peer_ack_ = h.mseq_ack;
  }

  void forget_account(const char* why) {
    if (!account_ok_) return;
    account_ok_ = false;
    log("note", std::string("credit and MSeqAck checks off from here: ") + why);
  }

  void pop_item() {
    const bool msg = items_.front().kind == Item::Kind::Msg;
    if (msg && items_.front().mid == static_cast<std::uint8_t>(wire::Mid::DisConn))
      peer_disconn_taken_ = true;
    items_.pop_front();
    if (msg && sc_.auto_credits() && connected_) auto_credit();
  }

  void auto_credit() {
    // Repost a receive for each message a step has taken (messages not yet taken keep theirs:
    // a receiver whose application does not read gives no new credits), then tell the peer
    // when its credits run low.
    std::size_t unread = 0;
    for (const auto& it : items_) unread += it.kind == Item::Kind::Msg ? 1 : 0;
    while (posted_.size() + unread < auto_bufs_) {
      std::string err;
      if (!t_.post_recv(1, our_recv_size_, err)) {
        log("note", "auto repost failed: " + err);
        return;
      }
      posted_.push_back(our_recv_size_);
    }
    const std::int64_t peer_credits = peer_credits_before(rx_mseq_ + 1);
    if (peer_credits <= 2 && static_cast<std::int64_t>(posted_.size()) >= peer_credits + 2 &&
        our_credits() >= 1 && !sent_disconn_ && !dead()) {
      MsgSpec cu;
      cu.set_mid(DATA);
      send_spec(cu, "auto credit update");
    }
  }

  bool dead() const {
    for (const auto& it : items_)
      if (it.kind == Item::Kind::Event &&
          (it.ev.kind == Event::Kind::Disconnected || it.ev.kind == Event::Kind::TransportError ||
           it.ev.kind == Event::Kind::SendError))
        return true;
    return dead_;
  }

  // ---- steps ----
  void exec(const Step& st) {
    switch (st.kind_case()) {
      case Step::kConnect:
        return do_connect(st.connect());
      case Step::kAccept:
        return do_accept(st.accept());
      case Step::kPostRecv: {
        const std::uint32_t size =
            st.post_recv().size() != 0 ? st.post_recv().size() : our_recv_size_;
        std::string err;
        if (st.post_recv().count() != 0 && !t_.post_recv(st.post_recv().count(), size, err))
          fail("posting receives: " + err);
        for (std::uint32_t i = 0; i < st.post_recv().count(); ++i) posted_.push_back(size);
        log("tx", "posted " + std::to_string(st.post_recv().count()) + " receives of " +
                      std::to_string(size) + " bytes");
        return;
      }
      case Step::kSend: {
        const std::uint32_t n = std::max<std::uint32_t>(1, st.send().repeat());
        for (std::uint32_t i = 0; i < n; ++i) send_spec(st.send().msg(), "");
        return;
      }
      case Step::kSendRaw: {
        forget_account("raw bytes sent");
        const std::string& b = st.send_raw().bytes();
        std::vector<std::uint8_t> v(b.begin(), b.end());
        if (v.size() >= wire::kBsdhSize) {
          tx_mseq_ = get32(v.data() + 8);
          adv_bufs_ = get16(v.data() + 2);
          adv_ack_ = get32(v.data() + 12);
        }
        transmit(v);
        return;
      }
      case Step::kExpect:
        return do_expect(st.expect());
      case Step::kExpectNone:
        return do_expect_none(st.expect_none());
      case Step::kExpectClose:
        return do_expect_close(st.expect_close());
      case Step::kExpectData:
        return do_expect_data(st.expect_data());
      case Step::kRegister: {
        std::string err;
        auto r = t_.register_region(st.register_().size(), st.register_().remote_read(),
                                    st.register_().remote_write(), err);
        if (!r) fail("registering region '" + st.register_().name() + "': " + err);
        regions_[st.register_().name()] = *r;
        log("tx", "registered region '" + st.register_().name() + "' (" + std::to_string(r->len) +
                      " bytes, R_Key " + hex(r->rkey) + ")");
        return;
      }
      case Step::kDeregister: {
        auto it = regions_.find(st.deregister().name());
        if (it == regions_.end()) fail("no region named '" + st.deregister().name() + "'");
        t_.deregister_region(it->second.id);
        log("tx", "deregistered region '" + it->first + "'");
        regions_.erase(it);
        return;
      }
      case Step::kRdma:
        return do_rdma(st.rdma());
      case Step::kApp: {
        if (!t_.builtin()) fail("application actions need the builtin peer");
        std::string err;
        std::string what = st.app().ShortDebugString();
        if (what.size() > 120) what = what.substr(0, 117) + "...";
        log("app", what);
        if (!t_.app(st.app(), err)) fail("application action: " + err);
        return;
      }
      case Step::kWait:
        pump(t_.now_ms() + st.wait().ms());
        return;
      case Step::kDisconnect:
        log("cm", "we disconnect (CM DREQ)");
        t_.disconnect();
        dead_ = true;
        return;
      case Step::kExpectKeepalive: {
        const std::uint64_t until =
            t_.now_ms() +
            (st.expect_keepalive().within_ms() ? st.expect_keepalive().within_ms() : 1000);
        for (;;) {
          for (auto it = items_.begin(); it != items_.end(); ++it)
            if (it->kind == Item::Kind::Event && it->ev.kind == Event::Kind::Keepalive) {
              items_.erase(it);
              return;
            }
          if (!pump_one(until)) fail("no keepalive within the bound");
        }
      }
      case Step::KIND_NOT_SET:
        fail("empty step");
    }
  }

  void transmit(const std::vector<std::uint8_t>& v) {
    log("tx", describe_message(v));
    std::string err;
    if (!t_.send(v, err)) fail("sending: " + err);
  }

  std::uint32_t region_bytes(const std::string& name, LocalRegion& out) {
    auto it = regions_.find(name);
    if (it == regions_.end()) fail("no region named '" + name + "'");
    out = it->second;
    return out.len;
  }

  // auto_credits: a well-kept sender waits for a credit (two for a message with payload, CA4-82).
  void wait_credit(const MsgSpec& s) {
    const bool payload = !s.payload().empty() || s.payload_len() != 0;
    const std::int64_t need = payload ? 2 : 1;
    const std::uint64_t until = t_.now_ms() + 5000;
    while (our_credits() < need && !dead())
      if (!pump_one(until)) fail("no credit from the peer within 5 s to send on");
  }

  void send_spec(const MsgSpec& s, const std::string& why) {
    if (sc_.auto_credits() && why.empty() && connected_ && !s.has_mseq() && !s.has_bufs())
      wait_credit(s);
    const std::uint8_t mid =
        static_cast<std::uint8_t>(s.has_mid_raw() ? s.mid_raw() : static_cast<unsigned>(s.mid()));
    LocalRegion reg;
    const bool has_region = !s.region().empty();
    if (has_region) {
      region_bytes(s.region(), reg);
      if (s.region_offset() > reg.len)
        fail("region_offset " + std::to_string(s.region_offset()) + " is beyond region '" +
             s.region() + "' (" + std::to_string(reg.len) + " bytes)");
    }
    // payload
    std::vector<std::uint8_t> payload;
    if (!s.payload().empty()) {
      payload.assign(s.payload().begin(), s.payload().end());
    } else if (s.payload_len() != 0) {
      payload.resize(s.payload_len());
      if (s.inline_from_region() && has_region) {
        if (s.payload_len() > reg.len) fail("inline bytes beyond the region");
        std::copy(reg.addr, reg.addr + s.payload_len(), payload.begin());
      } else {
        for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = pattern_byte(i);
      }
    }
    // extended header
    std::vector<std::uint8_t> ext;
    if (!s.ext_raw().empty()) {
      ext.assign(s.ext_raw().begin(), s.ext_raw().end());
    } else if (wire::mid_defined(mid)) {
      const auto m = static_cast<wire::Mid>(mid);
      ext.assign(wire::ext_header_size(m), 0);
      std::uint8_t* e = ext.data();
      switch (m) {
        case wire::Mid::SrcAvail:
        case wire::Mid::SinkAvail: {
          const std::uint32_t len =
              s.has_ext_len() ? s.ext_len() : (has_region ? reg.len - s.region_offset() : 0);
          put32(e, len);
          put32(e + 4, s.has_rkey() ? s.rkey() : (has_region ? reg.rkey : 0));
          put64(e + 8, s.has_va() ? s.va() : (has_region ? reg.va + s.region_offset() : 0));
          if (m == wire::Mid::SinkAvail) put32(e + 16, s.non_disc());
          break;
        }
        case wire::Mid::RdmaWrCompl:
        case wire::Mid::RdmaRdCompl:
        case wire::Mid::ChRcvBuf:
        case wire::Mid::ChRcvBufAck:
          put32(e, s.ext_len());
          break;
        case wire::Mid::ModeChange:
          e[0] = static_cast<std::uint8_t>(s.mch_byte());
          if (s.has_ext_reserved()) e[1] = static_cast<std::uint8_t>(s.ext_reserved());
          break;
        case wire::Mid::SuspComm:
          put64(e, s.service_id());
          break;
        case wire::Mid::Hello:
        case wire::Mid::HelloAck:
          e[0] = 0x22;
          e[1] = 0x40;
          e[3] = 1;
          if (s.has_ext_reserved()) e[2] = static_cast<std::uint8_t>(s.ext_reserved());
          break;
        default:
          break;
      }
    }
    std::vector<std::uint8_t> v(wire::kBsdhSize + ext.size() + payload.size());
    std::copy(ext.begin(), ext.end(), v.begin() + wire::kBsdhSize);
    std::copy(payload.begin(), payload.end(),
              v.begin() + static_cast<std::ptrdiff_t>(16 + ext.size()));
    const std::uint32_t mseq = s.has_mseq() ? s.mseq() : tx_mseq_ + 1;
    if ((s.has_mseq() && s.mseq() != tx_mseq_ + 1) ||
        (s.has_mseq_ack() && s.mseq_ack() != rx_mseq_))
      forget_account("this message's MSeq / MSeqAck are not the sequence's");
    const std::uint32_t bufs =
        s.has_bufs() ? s.bufs()
                     : static_cast<std::uint32_t>(std::min<std::size_t>(posted_.size(), 0xFFFF));
    const std::uint32_t ack = s.has_mseq_ack() ? s.mseq_ack() : rx_mseq_;
    v[0] = mid;
    v[1] = static_cast<std::uint8_t>(s.flags());
    put16(v.data() + 2, bufs);
    put32(v.data() + 4, s.has_len() ? s.len() : static_cast<std::uint32_t>(v.size()));
    put32(v.data() + 8, mseq);
    put32(v.data() + 12, ack);
    if (s.has_truncate() && s.truncate() < v.size()) v.resize(s.truncate());
    v.insert(v.end(), s.append().begin(), s.append().end());
    tx_mseq_ = mseq;
    adv_bufs_ = bufs;
    adv_ack_ = ack;
    adv_bufs_known_ = true;
    if (our_credits() < 0)
      log("note", "this message goes out with no credit (the scenario overruns the peer)");
    // What the echo service will return: Data payload; SrcAvail: the region's advertised bytes.
    if (mid == 0xFF) {
      const bool oob = (s.flags() & wire::flags::kOobPres) != 0;
      tx_stream_.insert(tx_stream_.end(), payload.begin(),
                        oob && !payload.empty() ? payload.end() - 1 : payload.end());
    } else if (mid == 0xFE && has_region) {
      const std::uint32_t len = s.has_ext_len() ? s.ext_len() : reg.len - s.region_offset();
      const std::uint32_t n = std::min(len, reg.len - s.region_offset());
      tx_stream_.insert(tx_stream_.end(), reg.addr + s.region_offset(),
                        reg.addr + s.region_offset() + n);
    }
    if (mid == 0x02) sent_disconn_ = true;
    if (!why.empty()) log("note", why);
    transmit(v);
  }

  // Items: take the next one, waiting until `until`.
  Item* next_item(std::uint64_t until) {
    while (items_.empty())
      if (!pump_one(until)) return nullptr;
    return &items_.front();
  }

  static bool is_credit_update(const Item& it) {
    return it.kind == Item::Kind::Msg && it.ok && it.mid == 0xFF && it.payload_len == 0;
  }

  std::string check_msg(const MsgMatch& mm, const Item& it) {
    if (it.kind != Item::Kind::Msg) return it.describe;
    const std::uint8_t* p = it.bytes.data();
    const std::size_t n = it.bytes.size();
    if (mm.has_mid() && it.mid != static_cast<std::uint8_t>(mm.mid()))
      return "MID " + mid_text(it.mid) + ", expected " +
             mid_text(static_cast<std::uint8_t>(mm.mid()));
    if (mm.has_mid_raw() && it.mid != mm.mid_raw()) return "MID " + hex(it.mid);
    if (!it.ok) return "malformed message: " + it.describe;
    std::string want;
    auto chk = [&](const U64Match& m, std::uint64_t v, const char* what) -> std::string {
      if (match(m, v, want)) return {};
      return std::string(what) + " " + std::to_string(v) + ", expected " + want;
    };
    std::string r;
    if (!(r = chk(mm.flags(), p[1], "Flags")).empty()) return r;
    if (!(r = chk(mm.bufs(), get16(p + 2), "Bufs")).empty()) return r;
    if (!(r = chk(mm.len(), get32(p + 4), "Len")).empty()) return r;
    if (!(r = chk(mm.mseq(), get32(p + 8), "MSeq")).empty()) return r;
    if (!(r = chk(mm.mseq_ack(), get32(p + 12), "MSeqAck")).empty()) return r;
    const std::uint8_t* e = p + 16;
    const std::size_t en = n - 16;
    if (en >= 4 && (it.mid == 0xFE || it.mid == 0xFD || it.mid == 5 || it.mid == 6 ||
                    it.mid == 0x0B || it.mid == 0x0C))
      if (!(r = chk(mm.ext_len(), get32(e), "header Len")).empty()) return r;
    if (en >= 16 && (it.mid == 0xFE || it.mid == 0xFD)) {
      if (!(r = chk(mm.rkey(), get32(e + 4), "R_Key")).empty()) return r;
      if (!(r = chk(mm.va(), get64(e + 8), "VA")).empty()) return r;
    }
    if (en >= 20 && it.mid == 0xFD)
      if (!(r = chk(mm.non_disc(), get32(e + 16), "NonDisc")).empty()) return r;
    if (en >= 1 && it.mid == 0x07)
      if (!(r = chk(mm.mch_byte(), e[0], "MCH byte")).empty()) return r;
    if (!(r = chk(mm.payload_len(), it.payload_len, "payload length")).empty()) return r;
    const std::size_t off = n - it.payload_len;
    if (!mm.payload().empty() && (it.payload_len != mm.payload().size() ||
                                  !std::equal(mm.payload().begin(), mm.payload().end(), p + off)))
      return "payload differs from the expected bytes";
    if (mm.payload_pattern())
      for (std::uint32_t i = 0; i < it.payload_len; ++i)
        if (p[off + i] != pattern_byte(it.stream_off + i))
          return "payload byte " + std::to_string(i) + " breaks the source pattern";
    return {};
  }

  std::string check_credits(const CreditMatch& c, const Item& it) {
    const std::uint8_t* p = it.bytes.data();
    const std::uint32_t mseq = get32(p + 8);
    // Our credits now (the account includes this message: it was the latest when processed,
    // unless more came since; recompute from this message's fields).
    const std::int64_t ours =
        static_cast<std::int64_t>(get16(p + 2)) -
        static_cast<std::int64_t>(static_cast<std::uint32_t>(tx_mseq_ - get32(p + 12)));
    if (c.has_ours_at_least() && ours < c.ours_at_least())
      return "our credits after it " + std::to_string(ours) + ", expected ≥ " +
             std::to_string(c.ours_at_least());
    if (c.has_ours_at_most() && ours > c.ours_at_most())
      return "our credits after it " + std::to_string(ours) + ", expected ≤ " +
             std::to_string(c.ours_at_most());
    if (c.has_adds_credits()) {
      const auto prev = prev_credits_.find(mseq);
      const std::int64_t before = prev != prev_credits_.end() ? prev->second : ours;
      if ((ours > before) != c.adds_credits())
        return std::string("it ") + (ours > before ? "adds" : "does not add") +
               " credits (ours before " + std::to_string(before) + ", after " +
               std::to_string(ours) + ")";
    }
    if (c.has_peer_before_at_least()) {
      const std::int64_t pb = peer_credits_before(mseq);
      if (pb < c.peer_before_at_least())
        return "the peer had " + std::to_string(pb) + " credits before it";
    }
    return {};
  }

  bool skippable(const Expect& e, const Item& it) {
    if (it.kind != Item::Kind::Msg) return false;
    if (e.skip_any()) return true;
    if (is_credit_update(it) && !e.skip_none()) return true;
    for (int m : e.skip())
      if (it.mid == static_cast<std::uint8_t>(m)) return true;
    return false;
  }

  void do_expect(const Expect& e) {
    const std::uint64_t until = t_.now_ms() + (e.within_ms() ? e.within_ms() : 2000);
    for (;;) {
      Item* it = next_item(until);
      if (it == nullptr) fail("nothing matching arrived within the bound");
      std::string diff = check_msg(e.msg(), *it);
      if (diff.empty() && e.msg().has_credits()) diff = check_credits(e.msg().credits(), *it);
      if (diff.empty()) {
        take_echo(*it, e.echo_data());
        pop_item();
        return;
      }
      if (e.defer_data() && it->kind == Item::Kind::Msg && it->ok && it->mid == 0xFF &&
          it->payload_len != 0 && (it->bytes[1] & wire::flags::kOobPres) == 0) {
        if (rx_pending_.empty()) pending_off_ = it->stream_off;
        rx_pending_.insert(rx_pending_.end(), it->bytes.end() - it->payload_len, it->bytes.end());
        pop_item();
        continue;
      }
      if (skippable(e, *it)) {
        take_echo(*it, e.echo_data());
        pop_item();
        continue;
      }
      fail("got " + it->describe + ": " + diff);
    }
  }

  void take_echo(const Item& it, bool collect) {
    if (!collect || it.kind != Item::Kind::Msg || it.mid != 0xFF) return;
    rx_echo_ += it.payload_len;
  }

  void do_expect_none(const ExpectNone& e) {
    const std::uint64_t until = t_.now_ms() + (e.within_ms() ? e.within_ms() : 300);
    pump(until);
    while (!items_.empty()) {
      const Item& it = items_.front();
      bool ok = false;
      if (it.kind == Item::Kind::Msg) {
        ok = e.allow_credit_updates() && is_credit_update(it);
        for (int m : e.allow())
          if (it.mid == static_cast<std::uint8_t>(m)) ok = true;
      }
      if (!ok) fail("the peer sent " + it.describe + " where nothing was expected");
      pop_item();
    }
  }

  void do_expect_close(const ExpectClose& e) {
    const std::uint64_t until = t_.now_ms() + (e.within_ms() ? e.within_ms() : 3000);
    const auto how = e.how();
    // A DisConn an earlier step took counts: then GRACEFUL waits for the CM teardown.
    bool saw_disconn = peer_disconn_taken_;
    for (;;) {
      Item* it = next_item(until);
      if (it == nullptr)
        fail(saw_disconn ? "DisConn came but the peer did not finish closing within the bound"
                         : "the peer did not close within the bound");
      const Item cur = *it;
      pop_item();
      if (cur.kind == Item::Kind::Event) {
        const auto k = cur.ev.kind;
        if (k == Event::Kind::SendError) {
          // An RNR: the peer had no receive for a message sent without a credit; with
          // rnr_retry 0 the RC layer ends the connection abortively (§4 QP parameters, §5).
          if (cur.ev.text.rfind("RNR", 0) == 0 && how != ExpectClose::GRACEFUL &&
              how != ExpectClose::DIS_CONN) {
            log("note", "the overrun ended the connection at the RC layer (RNR)");
            return;
          }
          fail("our SEND failed (" + cur.ev.text + ") before the peer closed");
        }
        const bool ends = k == Event::Kind::Disconnected || k == Event::Kind::TransportError ||
                          k == Event::Kind::Rejected || k == Event::Kind::PeerRefused;
        if (!ends) continue;
        if (how == ExpectClose::ANY || how == ExpectClose::ABORTIVE) return;
        if (how == ExpectClose::GRACEFUL && saw_disconn) return;
        fail("the connection ended without a DisConn: " + cur.describe);
      }
      if (cur.mid == static_cast<std::uint8_t>(wire::Mid::AbortConn)) {
        if (how == ExpectClose::ABORTIVE || how == ExpectClose::ANY) return;
        fail("AbortConn where a graceful close was expected");
      }
      if (cur.mid == static_cast<std::uint8_t>(wire::Mid::DisConn)) {
        if (how == ExpectClose::ABORTIVE)
          fail("DisConn (graceful) where an abortive close was expected");
        saw_disconn = true;
        peer_disconn_taken_ = true;
        return;  // DIS_CONN, ANY, GRACEFUL: the half-close is what the peer owes
      }
      if (is_credit_update(cur)) continue;
      if (e.skip_data() && (cur.mid == 0xFF || cur.mid == 0xFE)) continue;
      fail("got " + cur.describe + " while waiting for the close");
    }
  }

  void do_expect_data(const ExpectData& e) {
    std::vector<std::uint8_t> want(e.bytes().begin(), e.bytes().end());
    const std::uint64_t len = want.empty() ? e.len() : want.size();
    const std::uint64_t until = t_.now_ms() + (e.within_ms() ? e.within_ms() : 5000);
    // Bytes a previous step received beyond what it wanted come first.
    std::vector<std::uint8_t> got = std::move(rx_pending_);
    rx_pending_.clear();
    std::uint64_t start_off = got.empty() ? UINT64_MAX : pending_off_;
    while (got.size() < len) {
      Item* it = next_item(until);
      if (it == nullptr)
        fail("only " + std::to_string(got.size()) + " of " + std::to_string(len) +
             " stream bytes arrived within the bound");
      const Item cur = *it;
      pop_item();
      if (cur.kind == Item::Kind::Event)
        fail("the connection ended after " + std::to_string(got.size()) + " of " +
             std::to_string(len) + " bytes: " + cur.describe);
      if (!cur.ok) fail("malformed message: " + cur.describe);
      const std::uint8_t* p = cur.bytes.data();
      const std::size_t off = cur.bytes.size() - cur.payload_len;
      if (start_off == UINT64_MAX) start_off = cur.stream_off;
      if (cur.mid == 0xFF) {
        if ((p[1] & wire::flags::kOobPres) && !e.allow_oob())
          fail("urgent data (OOB_PRES) in the stream: " + cur.describe);
        got.insert(got.end(), p + off, p + cur.bytes.size());
        continue;
      }
      if (cur.mid == 0xFE) {
        if (!e.auto_zcopy()) fail("SrcAvail where BCopy data was expected: " + cur.describe);
        got.insert(got.end(), p + off, p + cur.bytes.size());
        const Advert a = src_adverts_.back();
        const std::uint32_t rest = a.len - a.inline_len;
        if (rest != 0) {
          std::vector<std::uint8_t> data = read_remote(a.va + a.inline_len, a.rkey, rest, 5000);
          if (data.size() != rest) fail("RDMA READ of the SrcAvail'd bytes failed");
          rx_stream_ += rest;
          got.insert(got.end(), data.begin(), data.end());
          MsgSpec rc;
          rc.set_mid(RDMA_RD_COMPL);
          rc.set_ext_len(rest);
          send_spec(rc, "auto zcopy: RdmaRdCompl");
        }
        continue;
      }
      if (cur.mid == 0x02)
        fail("DisConn after " + std::to_string(got.size()) + " of " + std::to_string(len) +
             " bytes");
      fail("got " + cur.describe + " while collecting stream bytes");
    }
    if (got.size() > len) {  // the last message went past `len`: keep the rest for later
      rx_pending_.assign(got.begin() + static_cast<std::ptrdiff_t>(len), got.end());
      pending_off_ = start_off + len;
      got.resize(len);
    }
    for (std::size_t i = 0; i < got.size(); ++i) {
      std::uint8_t w;
      if (!want.empty())
        w = want[i];
      else if (e.pattern())
        w = pattern_byte(start_off + i);
      else if (e.echo()) {
        if (rx_echo_ + i >= tx_stream_.size())
          fail("more bytes echoed (" + std::to_string(rx_echo_ + i + 1) + ") than we sent");
        w = tx_stream_[rx_echo_ + i];
      } else
        continue;
      if (got[i] != w)
        fail("stream byte " + std::to_string(i) + " is " + std::to_string(got[i]) + ", expected " +
             std::to_string(w));
    }
    rx_echo_ += got.size();
  }

  std::vector<std::uint8_t> read_remote(std::uint64_t va, std::uint32_t rkey, std::uint32_t len,
                                        std::uint32_t within) {
    const std::uint64_t id = ++rdma_id_;
    std::string err;
    log("rdma",
        "RDMA READ " + std::to_string(len) + " bytes from VA " + hex(va) + " R_Key " + hex(rkey));
    if (!t_.rdma_read(id, va, rkey, len, err)) fail("RDMA READ: " + err);
    const std::uint64_t until = t_.now_ms() + within;
    while (!rdma_done_.count(id))
      if (!pump_one(until)) fail("RDMA READ did not complete within the bound");
    Event ev = std::move(rdma_done_[id]);
    rdma_done_.erase(id);
    if (ev.kind != Event::Kind::RdmaDone) return {};
    return ev.data;
  }

  void do_rdma(const Rdma& r) {
    const bool rd = r.op() == Rdma::READ;
    auto& list = rd ? src_adverts_ : sink_adverts_;
    Advert a;
    if (!r.has_rkey() || !r.has_va()) {
      if (list.empty())
        fail(std::string("no ") + (rd ? "SrcAvail" : "SinkAvail") + " from the peer to use");
      a = r.stale() ? list.front() : list.back();
    }
    const std::uint64_t skip = r.skip_inline() ? a.inline_len : 0;
    const std::uint64_t va = r.has_va() ? r.va() : a.va + r.offset() + skip;
    const std::uint32_t rkey = r.has_rkey() ? r.rkey() : a.rkey;
    std::uint32_t len = r.len();
    if (len == 0)
      len = a.len > r.offset() + skip ? static_cast<std::uint32_t>(a.len - r.offset() - skip) : 1;
    const std::uint32_t within = r.within_ms() ? r.within_ms() : 3000;
    const std::uint64_t id = ++rdma_id_;
    std::string err;
    log("rdma", std::string(rd ? "RDMA READ " : "RDMA WRITE ") + std::to_string(len) +
                    " bytes at VA " + hex(va) + " R_Key " + hex(rkey) +
                    (r.stale() ? " (stale grant)" : ""));
    bool posted;
    if (rd) {
      posted = t_.rdma_read(id, va, rkey, len, err);
    } else {
      std::vector<std::uint8_t> data(len);
      for (std::size_t i = 0; i < data.size(); ++i) data[i] = pattern_byte(i);
      posted = t_.rdma_write(id, va, rkey, data, err);
    }
    if (!posted) {
      if (r.expect_fail()) return;
      fail("posting the RDMA: " + err);
    }
    const std::uint64_t until = t_.now_ms() + within;
    while (!rdma_done_.count(id)) {
      if (!pump_one(until)) {
        // A dead connection counts as a refusal.
        if (r.expect_fail() && dead()) return;
        fail("the RDMA did not complete within the bound");
      }
    }
    const Event ev = rdma_done_[id];
    rdma_done_.erase(id);
    const bool ok = ev.kind == Event::Kind::RdmaDone;
    if (r.expect_fail()) {
      if (ok)
        fail(std::string("the peer's memory answered an RDMA ") + (rd ? "READ" : "WRITE") +
             " with an R_Key whose grant " + (r.stale() ? "had ended" : "does not allow it") +
             " (security: §6)");
      return;
    }
    if (!ok) fail("RDMA failed: " + ev.text);
    if (rd) {
      rx_stream_ = std::max<std::uint64_t>(rx_stream_, a.stream_off + r.offset() + skip + len);
      if (r.check_pattern())
        for (std::size_t i = 0; i < ev.data.size(); ++i)
          if (ev.data[i] != pattern_byte(a.stream_off + r.offset() + skip + i))
            fail("byte " + std::to_string(i) + " read breaks the source pattern");
    }
  }

  // ---- connection setup ----
  void do_connect(const Connect& c) {
    const std::uint32_t bufs = c.has_recv_bufs() ? c.recv_bufs() : 4;
    const std::uint32_t size = c.recv_size() ? c.recv_size() : 4096;
    our_recv_size_ = size;
    auto_bufs_ = bufs;
    std::string err;
    if (bufs != 0 && !t_.post_recv(bufs, size, err)) fail("posting receives: " + err);
    for (std::uint32_t i = 0; i < bufs; ++i) posted_.push_back(size);
    const bool native = sc_.cm() == CM_NATIVE || (sc_.cm() == CM_ANY && opt_.native_cm);
    std::vector<std::uint8_t> pd;
    const HelloSpec& h = c.hello();
    if (c.has_raw_private_data()) {
      pd.assign(c.raw_private_data().begin(), c.raw_private_data().end());
    } else {
      const bool compact = !native && !h.full_form();
      pd.assign(compact ? wire::kCompactHelloMessageSize : wire::kHelloMessageSize, 0);
      std::uint8_t* p = pd.data();
      std::uint8_t* hh = p + 16;
      p[0] = static_cast<std::uint8_t>(h.has_mid() ? h.mid() : 0);
      p[1] = static_cast<std::uint8_t>(h.flags());
      put16(p + 2, h.has_bufs() ? h.bufs() : bufs);
      put32(p + 4, h.has_len() ? h.len() : static_cast<std::uint32_t>(pd.size()));
      put32(p + 8, h.mseq());
      put32(p + 12, h.mseq_ack());
      hh[0] = static_cast<std::uint8_t>(((h.has_major() ? h.major() : 2) << 4) |
                                        ((h.has_minor() ? h.minor() : 2) & 0xF));
      hh[1] = static_cast<std::uint8_t>(((h.has_ip_version() ? h.ip_version() : 4) << 4) |
                                        (h.cap() & 0xF));
      hh[2] = static_cast<std::uint8_t>(h.reserved_byte());
      hh[3] = static_cast<std::uint8_t>(h.has_max_adverts() ? h.max_adverts() : 1);
      put32(hh + 4, h.des_rem_rcv_sz());
      put32(hh + 8, h.has_local_rcv_sz() ? h.local_rcv_sz() : size);
      put16(hh + 12, h.has_local_port() ? h.local_port() : 40000);
      if (!compact) {  // IPv4 addresses in the last 4 bytes: 10.99.0.2 -> 10.99.0.1
        hh[16 + 12] = 10, hh[16 + 13] = 99, hh[16 + 15] = 2;
        hh[32 + 12] = 10, hh[32 + 13] = 99, hh[32 + 15] = 1;
      }
    }
    adv_bufs_ = pd.size() >= 4 ? get16(pd.data() + 2) : 0;
    adv_ack_ = 0;
    adv_bufs_known_ = true;
    log("cm", "CM REQ, " + std::string(native ? "native" : "IP CM") + " mode, private data " +
                  std::to_string(pd.size()) +
                  " bytes: " + (pd.size() >= 16 ? describe_hello(pd) : "(short)"));
    if (!t_.connect(sc_.service(), native, pd, err)) {
      if (err.rfind("native CM unsupported", 0) == 0) throw Unsupported{err};
      if (c.expect() == Connect::REJECT) {
        log("cm", "refused: " + err);
        return;
      }
      fail("connecting: " + err);
    }
    const std::uint64_t until = t_.now_ms() + (c.within_ms() ? c.within_ms() : 5000);
    for (;;) {
      Item* it = next_item(until);
      if (it == nullptr) fail("no answer to the CM REQ within the bound");
      const Item cur = *it;
      pop_item();
      if (cur.kind != Item::Kind::Event) fail("a message before the CM REP: " + cur.describe);
      if (cur.ev.kind == Event::Kind::Rejected) {
        if (c.expect() == Connect::REJECT) return;
        fail("the peer rejected our Hello: " + cur.ev.text);
      }
      if (cur.ev.kind != Event::Kind::Established) fail("setup failed: " + cur.describe);
      if (c.expect() == Connect::REJECT) {
        // Accepting and then dropping without any SDP message counts as a refusal.
        for (;;) {
          Item* n = next_item(t_.now_ms() + 1000);
          if (n == nullptr) fail("the peer accepted a Hello it must refuse");
          if (n->kind == Item::Kind::Event && n->ev.kind != Event::Kind::Keepalive) return;
          fail("the peer accepted a Hello it must refuse and sent " + n->describe);
        }
      }
      on_hello_ack(cur.ev.data, c.hello_ack());
      return;
    }
  }

  static std::string describe_hello(const std::vector<std::uint8_t>& pd) {
    const std::uint8_t* p = pd.data();
    std::string s = mid_text(p[0]) + " Len " + std::to_string(get32(p + 4)) + " Bufs " +
                    std::to_string(get16(p + 2));
    if (pd.size() >= 28)
      s += " MajV " + std::to_string(p[16] >> 4) + " MinV " + std::to_string(p[16] & 0xF) +
           " IPV " + std::to_string(p[17] >> 4) + " MaxAdverts " + std::to_string(p[19]) +
           (p[0] == 1 ? " ActRcvSz " + std::to_string(get32(p + 20))
                      : " LocalRcvSz " + std::to_string(get32(p + 24)));
    return s;
  }

  void on_hello_ack(const std::vector<std::uint8_t>& pd, const HelloAckMatch& m) {
    log("cm", "CM REP: " + (pd.size() >= 16 ? describe_hello(pd) : "short private data"));
    auto r = wire::decode_hello_ack(pd);
    if (!r) violation("malformed HelloAck: " + std::string(r.error().text.data()));
    if (pd.size() < 28) fail("the HelloAck is too short to use");
    const std::uint8_t* p = pd.data();
    std::string want;
    auto chk = [&](const U64Match& mm, std::uint64_t v, const char* what) {
      if (!match(mm, v, want))
        fail(std::string("HelloAck ") + what + " " + std::to_string(v) + ", expected " + want);
    };
    chk(m.bufs(), get16(p + 2), "Bufs");
    chk(m.len(), get32(p + 4), "Len");
    chk(m.mseq(), get32(p + 8), "MSeq");
    chk(m.mseq_ack(), get32(p + 12), "MSeqAck");
    chk(m.major(), p[16] >> 4, "MajV");
    chk(m.minor(), p[16] & 0xF, "MinV");
    chk(m.max_adverts(), p[19], "MaxAdverts");
    chk(m.act_rcv_sz(), get32(p + 20), "ActRcvSz");
    peer_bufs_ = get16(p + 2);
    connected_ = true;
  }

  void do_accept(const Accept& a) {
    if (!t_.builtin()) fail("RAW_ACCEPTS needs the builtin peer");
    const std::uint32_t bufs = a.has_recv_bufs() ? a.recv_bufs() : 4;
    const std::uint32_t size = a.recv_size() ? a.recv_size() : 4096;
    our_recv_size_ = size;
    auto_bufs_ = bufs;
    std::string err;
    if (bufs != 0 && !t_.post_recv(bufs, size, err)) fail("posting receives: " + err);
    for (std::uint32_t i = 0; i < bufs; ++i) posted_.push_back(size);
    if (!t_.await_peer_connect(sc_.service(), a.hello_compact() == 1, err))
      fail("the peer did not connect: " + err);
    const std::uint64_t until = t_.now_ms() + 5000;
    Item* it = next_item(until);
    if (it == nullptr || it->kind != Item::Kind::Event || it->ev.kind != Event::Kind::HelloRequest)
      fail("no CM REQ from the peer");
    const std::vector<std::uint8_t> req = it->ev.data;
    pop_item();
    log("cm", "peer's Hello: " + (req.size() >= 16 ? describe_hello(req) : "short"));
    auto h = wire::decode_hello(req);
    if (!h) fail("the peer's Hello is malformed: " + std::string(h.error().text.data()));
    const HelloMatch& m = a.hello();
    std::string want;
    auto chk = [&](const U64Match& mm, std::uint64_t v, const char* what) {
      if (!match(mm, v, want))
        fail(std::string("Hello ") + what + " " + std::to_string(v) + ", expected " + want);
    };
    chk(m.bufs(), h->bsdh.bufs, "Bufs");
    chk(m.len(), h->bsdh.len, "Len");
    chk(m.mseq(), h->bsdh.mseq, "MSeq");
    chk(m.mseq_ack(), h->bsdh.mseq_ack, "MSeqAck");
    chk(m.major(), h->hh.major, "MajV");
    chk(m.minor(), h->hh.minor, "MinV");
    chk(m.ip_version(), h->hh.ip_version, "IPV");
    chk(m.max_adverts(), h->hh.max_adverts, "MaxAdverts");
    chk(m.local_rcv_sz(), h->hh.local_rcv_sz, "LocalRcvSz");
    chk(m.des_rem_rcv_sz(), h->hh.des_rem_rcv_sz, "DesRemRcvSz");
    peer_bufs_ = h->bsdh.bufs;
    if (a.reject()) {
      log("cm", "we reject (CM REJ)");
      t_.answer_peer({}, true);
      return;
    }
    const HelloAckSpec& s = a.hello_ack();
    std::vector<std::uint8_t> pd(wire::kHelloAckMessageSize, 0);
    std::uint8_t* p = pd.data();
    p[0] = static_cast<std::uint8_t>(s.has_mid() ? s.mid() : 1);
    put16(p + 2, s.has_bufs() ? s.bufs() : bufs);
    put32(p + 4, s.has_len() ? s.len() : static_cast<std::uint32_t>(pd.size()));
    put32(p + 8, s.mseq());
    p[16] = static_cast<std::uint8_t>(((s.has_major() ? s.major() : 2) << 4) |
                                      ((s.has_minor() ? s.minor() : 2) & 0xF));
    p[17] = static_cast<std::uint8_t>((s.ip_version() & 0xF) << 4);
    p[18] = static_cast<std::uint8_t>(s.reserved_byte());
    p[19] = static_cast<std::uint8_t>(s.has_max_adverts() ? s.max_adverts() : 1);
    put32(p + 20, s.has_act_rcv_sz() ? s.act_rcv_sz() : size);
    adv_bufs_ = get16(p + 2);
    adv_ack_ = 0;
    adv_bufs_known_ = true;
    log("cm", "CM REP with our HelloAck: " + describe_hello(pd));
    t_.answer_peer(pd, false);
    const std::uint64_t until2 = t_.now_ms() + 3000;
    Item* r = next_item(until2);
    if (r == nullptr) fail("the peer neither took nor refused our HelloAck");
    const Item cur = *r;
    pop_item();
    if (a.expect_refused()) {
      if (cur.kind == Item::Kind::Event &&
          (cur.ev.kind == Event::Kind::PeerRefused || cur.ev.kind == Event::Kind::Disconnected))
        return;
      fail("the peer accepted a HelloAck it must refuse (" + cur.describe + ")");
    }
    if (cur.kind != Item::Kind::Event || cur.ev.kind != Event::Kind::Established)
      fail("the peer refused our HelloAck: " + cur.describe);
    connected_ = true;
  }

  const Scenario& sc_;
  Transport& t_;
  const RunOptions& opt_;
  CaseResult& res_;
  std::uint64_t t0_ = 0;
  int step_no_ = 0;
  std::string violation_;

  std::deque<std::uint32_t> posted_;  // sizes of our posted receives, in posting order
  std::uint32_t auto_bufs_ = 0;
  std::uint32_t our_recv_size_ = 4096;
  std::uint32_t tx_mseq_ = 0, rx_mseq_ = 0;
  std::uint32_t adv_bufs_ = 0, adv_ack_ = 0;  // what our last message told the peer
  bool adv_bufs_known_ = false;
  std::uint32_t peer_bufs_ = 0, peer_ack_ = 0;  // what the peer's last message told us
  std::map<std::uint32_t, std::int64_t> prev_credits_;
  bool connected_ = false, dead_ = false, sent_disconn_ = false;
  bool peer_disconn_taken_ = false;  // a step has taken the peer's DisConn
  bool account_ok_ = true;           // our credit / sequence account is what the peer sees

  std::deque<Item> items_;
  std::map<std::uint64_t, Event> rdma_done_;
  std::uint64_t rdma_id_ = 0;
  std::map<std::string, LocalRegion> regions_;
  std::vector<Advert> src_adverts_, sink_adverts_;
  std::uint64_t rx_stream_ = 0;           // stream bytes the peer has sent (pattern offsets)
  std::vector<std::uint8_t> tx_stream_;   // bytes we sent (for the echo service)
  std::uint64_t rx_echo_ = 0;             // echoed bytes already checked
  std::vector<std::uint8_t> rx_pending_;  // stream bytes received but not yet expected
  std::uint64_t pending_off_ = 0;
};

}  // namespace

CaseResult run_scenario(const LoadedScenario& ls, const RunOptions& opt) {
  CaseResult res;
  const Scenario& sc = ls.scenario;
  res.set_name(sc.name());
  res.set_file(ls.file);
  for (const auto& r : sc.rule()) res.add_rule(r);
  const auto t0 = std::chrono::steady_clock::now();
  auto finish = [&]() {
    res.set_seconds(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return res;
  };
  const bool needs_builtin = sc.builtin_only() || sc.role() == RAW_ACCEPTS || sc.has_peer_config();
  if (needs_builtin && !opt.builtin) {
    res.set_verdict(SKIP);
    res.set_reason(
        "needs the builtin peer (peer application control, peer settings or the "
        "peer connecting to us)");
    return finish();
  }
  std::string err;
  auto t = opt.open(sc, err);
  if (!t) {
    res.set_verdict(ERROR);
    res.set_reason("no transport: " + err);
    return finish();
  }
  Endpoint ep(sc, *t, opt, res);
  ep.run();
  if (const std::string ps = t->peer_state(); !ps.empty()) {
    auto* o = res.add_log();
    o->set_dir("note");
    o->set_text("peer: " + ps);
  }
  return finish();
}

}  // namespace conformance

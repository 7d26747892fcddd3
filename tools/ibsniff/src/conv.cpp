#include "ibsniff/conv.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "ibsniff/session.hpp"
#include "sdp/wire.hpp"

namespace ibsniff {
namespace {

const char* transport_name(std::uint8_t t) {
  static constexpr const char* kNames[8] = {"RC",  "UC",  "RD",     "UD",
                                            "CNP", "XRC", "vendor", "vendor"};
  return kNames[t & 7];
}

double seconds(std::int64_t sec, std::uint32_t nsec) {
  return static_cast<double>(sec) + static_cast<double>(nsec) * 1e-9;
}

}  // namespace

std::size_t ConvTable::Hash::operator()(const Key& k) const noexcept {
  std::size_t h = (std::size_t{k.qp} << 3 | k.transport) * 0x9E3779B97F4A7C15ULL;
  for (std::uint8_t b : k.src.bytes) h = (h ^ b) * 0x100000001B3ULL;
  for (std::uint8_t b : k.dst.bytes) h = (h ^ b) * 0x100000001B3ULL;
  return h ^ static_cast<std::size_t>(k.src.kind) ^ (static_cast<std::size_t>(k.dst.kind) << 2);
}

void ConvTable::observe(const Packet& p) {
  if (!p.has_bth) return;
  Key k{sdp_address(p, p.src), sdp_address(p, p.dst), static_cast<std::uint8_t>(p.opcode >> 5),
        p.dest_qp};
  auto [it, fresh] = rows_.try_emplace(k);
  Row& r = it->second;
  if (fresh) {
    r.first = rows_.size();
    r.t0_sec = p.ts_sec;
    r.t0_nsec = p.ts_nsec;
  }
  r.t1_sec = p.ts_sec;
  r.t1_nsec = p.ts_nsec;
  ++r.frames;
  r.bytes += p.wire_len;
  r.payload += p.payload().size();
}

std::string ConvTable::format_ib() const {
  std::vector<std::pair<const Key*, const Row*>> v;
  v.reserve(rows_.size());
  for (const auto& [k, r] : rows_) v.emplace_back(&k, &r);
  std::sort(v.begin(), v.end(),
            [](const auto& a, const auto& b) { return a.second->first < b.second->first; });
  std::string out;
  auto it = std::back_inserter(out);
  fmt::format_to(
      it,
      "================================================================================\n"
      "InfiniBand conversations (source -> destination, per destination QP)\n"
      "{:<28} {:<28} {:<4} {:>8} {:>8} {:>12} {:>12} {:>10} {:>10}\n",
      "Source", "Destination", "Svc", "DestQP", "Frames", "Bytes", "Payload", "Start", "Duration");
  double t0 = 0;
  if (!v.empty()) t0 = seconds(v.front().second->t0_sec, v.front().second->t0_nsec);
  for (const auto& [k, r] : v) {
    const double start = seconds(r->t0_sec, r->t0_nsec);
    fmt::format_to(it, "{:<28} {:<28} {:<4} {:>#8x} {:>8} {:>12} {:>12} {:>10.6f} {:>10.6f}\n",
                   sdp::to_string(k->src), sdp::to_string(k->dst), transport_name(k->transport),
                   k->qp, r->frames, r->bytes, r->payload, start - t0,
                   seconds(r->t1_sec, r->t1_nsec) - start);
  }
  out += "================================================================================\n";
  return out;
}

std::string ConvTable::format_sdp(const sdp::Follower& follower) {
  std::string out;
  auto it = std::back_inserter(out);
  out +=
      "================================================================================\n"
      "SDP connections\n";
  if (follower.connections().empty()) out += "(none)\n";
  for (const sdp::Connection& c : follower.connections()) {
    fmt::format_to(it, "#{} {} service 0x{:016x} (port {}), {}\n", c.id, sdp::setup_name(c.setup),
                   c.service_id, c.service_id & 0xFFFF,
                   c.closed        ? "closed"
                   : c.established ? "established"
                                   : "not established");
    fmt::format_to(it, "   requester {} QP 0x{:06x}  <->  responder {} QP 0x{:06x}\n",
                   sdp::to_string(c.addr[0]), c.qpn[0], sdp::to_string(c.addr[1]), c.qpn[1]);
    for (int dir = 0; dir < 2; ++dir) {
      const sdp::ConnStats& s = c.stats;
      std::uint64_t msgs = 0;
      std::string per_mid;
      for (int mid = 0; mid < 256; ++mid) {
        const std::uint64_t n = s.messages[dir][mid];
        if (n == 0) continue;
        msgs += n;
        fmt::format_to(std::back_inserter(per_mid), "{}{} {}", per_mid.empty() ? "" : ", ",
                       ::sdp::wire::mid_name(static_cast<std::uint8_t>(mid)), n);
      }
      const std::uint64_t bytes = s.bytes[dir], z = s.zcopy_bytes[dir];
      const double zshare =
          bytes == 0 ? 0.0 : 100.0 * static_cast<double>(z) / static_cast<double>(bytes);
      fmt::format_to(it, "   {}: {} bytes, {} messages",
                     dir == 0 ? "requester -> responder" : "responder -> requester", bytes, msgs);
      if (msgs > 0) fmt::format_to(it, ", credits (Bufs) {}..{}", s.bufs_min[dir], s.bufs_max[dir]);
      if (bytes > 0) fmt::format_to(it, ", BCopy {:.1f}% / ZCopy {:.1f}%", 100.0 - zshare, zshare);
      out += '\n';
      if (msgs > 0) fmt::format_to(it, "      {}\n", per_mid);
    }
  }
  out += "================================================================================\n";
  return out;
}

}  // namespace ibsniff

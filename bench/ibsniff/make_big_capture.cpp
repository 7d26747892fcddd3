// Builds a large capture for the ibsniff benchmark (bench/ibsniff/run.sh) by repeating capture
// files (the lab's RoCEv2 SDP captures) until at least N packets are written.
//
//   ibsniff_make_big_capture OUT.pcap MIN_PACKETS IN.pcap [IN.pcap ...]
//
// Round r writes every input file in turn, whole; rounds repeat until MIN_PACKETS are written.
// Timestamps increase monotonically: each file is shifted so that its first packet comes 1 ms
// after the last packet written (its own spacing is kept). Every repetition is a self-consistent
// copy that decodes like the original: in round r > 0 the CM MADs get new transaction IDs and
// communication IDs (each XORed with a per-round constant, so all messages of one connection still
// agree) and their ICRC is recomputed, so each round's CM REQ/REP set up new SDP connections
// instead of reading as retransmissions of the first round's. QPNs, PSNs and the RC traffic are
// unchanged (a new REQ from the same address and QPN replaces the endpoint in the SDP follower,
// as a reused QPN does on a real host).
//
// Prints the number of packets and rounds written.
#include <pcap/pcap.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "ibsniff/crc.hpp"
#include "ibsniff/decoder.hpp"
#include "ibsniff/packet.hpp"

namespace {

constexpr std::int64_t kGapUs = 1000;  // between two files

// Where a CM MAD's identifiers lie in a frame, to rewrite them per round.
struct CmPatch {
  std::size_t tid = 0;   // 8-byte transaction ID
  std::size_t comm = 0;  // two 4-byte communication IDs (local, remote)
  std::size_t ip = 0;    // start of the ICRC's coverage (the IP header)
  std::size_t icrc = 0;  // the ICRC (little-endian)
};

struct Frame {
  std::int64_t ts_us = 0;  // microseconds since the epoch
  std::uint32_t wire_len = 0;
  std::vector<std::uint8_t> data;
  bool cm = false;
  CmPatch patch;
};

std::uint64_t get_be(const std::uint8_t* p, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

void put_be(std::uint8_t* p, int n, std::uint64_t v) {
  for (int i = n - 1; i >= 0; --i) {
    p[i] = static_cast<std::uint8_t>(v);
    v >>= 8;
  }
}

// A CM MAD (class 0x07) of a REQ .. DREP message over RoCEv2: where its IDs and ICRC are.
bool find_cm(std::span<const std::uint8_t> data, int linktype, CmPatch* out) {
  ibsniff::Packet p;
  p.data = data;
  p.linktype = linktype;
  p.wire_len = static_cast<std::uint32_t>(data.size());
  ibsniff::decode(p);
  if (!p.has_mad || p.mad_class != 0x07 || p.proto != ibsniff::Proto::RRoCE) return false;
  if (p.mad_attr < 0x0010 || p.mad_attr > 0x0016) return false;  // REQ .. DREP
  // The IP header starts 12 bytes before an IPv4 source address, 8 before an IPv6 one.
  const ibsniff::Field* v4 = p.find(ibsniff::FieldId::ip_src);
  const ibsniff::Field* v6 = p.find(ibsniff::FieldId::ipv6_src);
  const std::size_t back = v4 != nullptr ? 12 : 8;
  const ibsniff::Field* src = v4 != nullptr ? v4 : v6;
  if (src == nullptr || src->off < back || p.icrc != ibsniff::CrcStatus::Good) return false;
  out->tid = p.mad_off + 8;
  out->comm = p.mad_off + 24;
  out->ip = src->off - back;
  out->icrc = p.payload_end;
  return out->comm + 8 <= data.size() && out->icrc + 4 <= data.size();
}

void rewrite_cm(std::vector<std::uint8_t>& d, const CmPatch& c, std::uint64_t round) {
  std::uint8_t* b = d.data();
  put_be(b + c.tid, 8, get_be(b + c.tid, 8) ^ (round << 40));
  const auto key = static_cast<std::uint32_t>(round * 0x9E3779B1ULL);
  for (std::size_t off : {c.comm, c.comm + 4}) {
    const auto id = static_cast<std::uint32_t>(get_be(b + off, 4));
    if (id != 0 && (id ^ key) != 0) put_be(b + off, 4, id ^ key);  // 0 = "none": kept
  }
  const std::uint32_t crc =
      ibsniff::icrc_rocev2(std::span<const std::uint8_t>(b + c.ip, c.icrc - c.ip));
  for (int i = 0; i < 4; ++i)
    b[c.icrc + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(crc >> (8 * i));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s OUT.pcap MIN_PACKETS IN.pcap [IN.pcap ...]\n", argv[0]);
    return 1;
  }
  const std::string out_path = argv[1];
  const unsigned long long min_packets = std::strtoull(argv[2], nullptr, 10);
  std::vector<std::vector<Frame>> files;
  int linktype = -1, snaplen = 0;
  for (int i = 3; i < argc; ++i) {
    std::array<char, PCAP_ERRBUF_SIZE> err{};
    pcap_t* in = pcap_open_offline(argv[i], err.data());
    if (in == nullptr) {
      std::fprintf(stderr, "%s: %s\n", argv[i], err.data());
      return 1;
    }
    const int lt = pcap_datalink(in);
    if (linktype >= 0 && lt != linktype) {
      std::fprintf(stderr, "%s: link type %d differs from the first file's %d\n", argv[i], lt,
                   linktype);
      return 1;
    }
    linktype = lt;
    snaplen = std::max(snaplen, pcap_snapshot(in));
    std::vector<Frame> frames;
    pcap_pkthdr* h = nullptr;
    const u_char* d = nullptr;
    while (pcap_next_ex(in, &h, &d) == 1) {
      Frame f;
      f.ts_us = static_cast<std::int64_t>(h->ts.tv_sec) * 1000000 + h->ts.tv_usec;
      f.wire_len = h->len;
      f.data.assign(d, d + h->caplen);
      f.cm = find_cm(f.data, lt, &f.patch);
      frames.push_back(std::move(f));
    }
    pcap_close(in);
    if (!frames.empty()) files.push_back(std::move(frames));
  }
  if (files.empty()) {
    std::fprintf(stderr, "no packets in the input files\n");
    return 1;
  }
  pcap_t* dead = pcap_open_dead(linktype, snaplen);
  pcap_dumper_t* out = pcap_dump_open(dead, out_path.c_str());
  if (out == nullptr) {
    std::fprintf(stderr, "%s: %s\n", out_path.c_str(), pcap_geterr(dead));
    return 1;
  }
  std::int64_t clock_us = files.front().front().ts_us - kGapUs;  // the last timestamp written
  unsigned long long written = 0;
  std::uint64_t round = 0;
  std::vector<std::uint8_t> buf;
  for (; written < min_packets; ++round) {
    for (const auto& frames : files) {
      const std::int64_t shift = clock_us + kGapUs - frames.front().ts_us;
      for (const Frame& f : frames) {
        const std::int64_t ts = std::max(f.ts_us + shift, clock_us);  // never backwards
        pcap_pkthdr h{};
        h.ts.tv_sec = static_cast<time_t>(ts / 1000000);
        h.ts.tv_usec = static_cast<suseconds_t>(ts % 1000000);
        h.caplen = static_cast<bpf_u_int32>(f.data.size());
        h.len = f.wire_len;
        const std::uint8_t* bytes = f.data.data();
        if (f.cm && round > 0) {
          buf = f.data;
          rewrite_cm(buf, f.patch, round);
          bytes = buf.data();
        }
        pcap_dump(reinterpret_cast<u_char*>(out), &h, bytes);
        clock_us = ts;
        ++written;
      }
    }
  }
  const bool ok = pcap_dump_flush(out) == 0;
  pcap_dump_close(out);
  pcap_close(dead);
  if (!ok) {
    std::fprintf(stderr, "%s: write error\n", out_path.c_str());
    return 1;
  }
  std::printf("%llu packets in %llu rounds of %zu files\n", written,
              static_cast<unsigned long long>(round), files.size());
  return 0;
}

// The baseline of the ibsniff benchmark (bench/ibsniff/run.sh): a plain libpcap read loop over a
// capture file, pcap_open_offline + pcap_next_ex, touching each packet (its length, first and
// last byte, timestamp) so that nothing is optimised away.
//
//   ibsniff_pcap_loop FILE.pcap
//
// Prints the packet count and the checksum of what it touched.
#include <pcap/pcap.h>

#include <array>
#include <cstdint>
#include <cstdio>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s FILE.pcap\n", argv[0]);
    return 1;
  }
  std::array<char, PCAP_ERRBUF_SIZE> err{};
  pcap_t* in = pcap_open_offline(argv[1], err.data());
  if (in == nullptr) {
    std::fprintf(stderr, "%s: %s\n", argv[1], err.data());
    return 1;
  }
  std::uint64_t packets = 0, sum = 0;
  pcap_pkthdr* h = nullptr;
  const u_char* d = nullptr;
  int rc = 0;
  while ((rc = pcap_next_ex(in, &h, &d)) == 1) {
    ++packets;
    sum += h->caplen + static_cast<std::uint64_t>(h->ts.tv_usec);
    if (h->caplen > 0) sum += d[0] + d[h->caplen - 1];
  }
  if (rc == PCAP_ERROR) {
    std::fprintf(stderr, "%s: %s\n", argv[1], pcap_geterr(in));
    pcap_close(in);
    return 2;
  }
  pcap_close(in);
  std::printf("%llu packets, checksum %llu\n", static_cast<unsigned long long>(packets),
              static_cast<unsigned long long>(sum));
  return 0;
}

#include "ibsniff/reader.hpp"

#include <pcap/pcap.h>

#include <array>

#include "ibsniff/decoder.hpp"

namespace ibsniff {

std::unique_ptr<Reader> Reader::open(const std::string& path, std::string* error) {
  std::array<char, PCAP_ERRBUF_SIZE> err{};
  pcap_t* pc =
      pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err.data());
  if (pc == nullptr) {
    if (error != nullptr) *error = err.data();
    return nullptr;
  }
  const int lt = pcap_datalink(pc);
  if (!linktype_supported(lt)) {
    if (error != nullptr) {
      const char* name = pcap_datalink_val_to_name(lt);
      *error = "unsupported link type " + std::to_string(lt) + " (" +
               (name != nullptr ? name : "unknown") + ")";
    }
    pcap_close(pc);
    return nullptr;
  }
  std::unique_ptr<Reader> r(new Reader());
  r->pcap_ = pc;
  r->linktype_ = lt;
  return r;
}

Reader::~Reader() {
  if (pcap_ != nullptr) pcap_close(pcap_);
}

bool Reader::next(Packet& p, std::string* error) {
  pcap_pkthdr* hdr = nullptr;
  const u_char* data = nullptr;
  const int rc = pcap_next_ex(pcap_, &hdr, &data);
  if (rc != 1) {
    if (rc == PCAP_ERROR && error != nullptr) *error = pcap_geterr(pcap_);
    return false;
  }
  p.number = ++count_;
  p.ts_sec = hdr->ts.tv_sec;
  p.ts_nsec = static_cast<std::uint32_t>(hdr->ts.tv_usec);  // nanoseconds (precision NANO)
  p.linktype = linktype_;
  p.data = std::span<const std::uint8_t>(data, hdr->caplen);
  p.wire_len = hdr->len;
  decode(p);
  return true;
}

}  // namespace ibsniff

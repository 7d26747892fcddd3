// Capture file input through libpcap (pcap and pcapng, nanosecond timestamps).
#pragma once

#include <memory>
#include <string>

#include "ibsniff/packet.hpp"

struct pcap;

namespace ibsniff {

class Reader {
 public:
  // nullptr and *error set when the file cannot be opened or its link type is not supported.
  static std::unique_ptr<Reader> open(const std::string& path, std::string* error);
  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  int linktype() const { return linktype_; }
  // Fills p.number, time, wire_len, linktype and data (valid until the next call) and decodes
  // it. False at the end of the file, or on a read error (*error set, when given).
  bool next(Packet& p, std::string* error = nullptr);

 private:
  Reader() = default;
  ::pcap* pcap_ = nullptr;
  int linktype_ = 0;
  std::uint64_t count_ = 0;
};

}  // namespace ibsniff

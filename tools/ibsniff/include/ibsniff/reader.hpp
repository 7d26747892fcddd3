// Packet input through libpcap — capture files (pcap and pcapng, nanosecond timestamps) and live
// interfaces — with an optional BPF capture filter, and pcap output (-w). A classic pcap file in
// the host's byte order is read in place from a memory mapping (libpcap opens and checks it, and
// takes over at any record it would have to judge); the packets are the same either way.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ibsniff/packet.hpp"

struct pcap;
struct pcap_dumper;

namespace ibsniff {

struct LiveOptions {
  int snaplen = 262144;
  bool promiscuous = true;
  int timeout_ms = 100;  // how often a blocked read wakes up to notice stop()
};

class Reader {
 public:
  // A capture file. `bpf` is a capture filter (tcpdump syntax) applied to every record before
  // decoding; empty = none. nullptr and *error set when the file cannot be opened, its link type
  // is not supported or the filter does not compile.
  static std::unique_ptr<Reader> open(const std::string& path, const std::string& bpf,
                                      std::string* error);
  static std::unique_ptr<Reader> open(const std::string& path, std::string* error) {
    return open(path, std::string(), error);
  }
  // A live interface (needs CAP_NET_RAW). The filter runs in the kernel.
  static std::unique_ptr<Reader> open_live(const std::string& iface, const std::string& bpf,
                                           const LiveOptions& opts, std::string* error);
  // The interfaces libpcap can capture on, "name (description)".
  static std::vector<std::string> interfaces(std::string* error);
  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  int linktype() const { return linktype_; }
  bool live() const { return live_; }
  // Fills p.number, time, wire_len, linktype and data (valid until the next call) and decodes
  // it. Records the filter rejects are skipped (and not numbered). False at the end of the file,
  // after stop(), or on a read error (*error set, when given).
  bool next(Packet& p, std::string* error = nullptr);
  // Whether the last packet's bytes stay valid until the Reader is destroyed (they come from the
  // file's mapping) rather than only until the next call.
  bool data_stable() const { return last_stable_; }
  // Makes a blocked or later next() return false; safe to call from a signal handler.
  void stop() noexcept;
  // Packets the kernel dropped (live captures); -1 when unknown.
  long long dropped() const;

 private:
  friend class Writer;
  Reader() = default;
  ::pcap* pcap_ = nullptr;
  int linktype_ = 0;
  bool live_ = false;
  bool nano_ = true;
  bool have_filter_ = false;
  struct Bpf;
  std::unique_ptr<Bpf> bpf_;
  struct Mapped;
  std::unique_ptr<Mapped> mapped_;
  std::unique_ptr<Mapped> retired_;  // a mapping libpcap took over from: earlier data stays valid
  bool last_stable_ = false;
  std::uint64_t count_ = 0;
  volatile bool stopped_ = false;
  bool compile(const std::string& expr, std::string* error);
  // The next record from the mapping into *hdr / *data; false when libpcap must read it.
  bool next_mapped(void* hdr, const std::uint8_t** data);
};

// Writes packets to a pcap file with the reader's link type and timestamp precision ("-" =
// standard output).
class Writer {
 public:
  static std::unique_ptr<Writer> open(const Reader& from, const std::string& path,
                                      std::string* error);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;
  void write(const Packet& p);
  // Flushes; false (and *error) when the data could not be written.
  bool flush(std::string* error);

 private:
  Writer() = default;
  ::pcap_dumper* dumper_ = nullptr;
  bool nano_ = true;
};

}  // namespace ibsniff

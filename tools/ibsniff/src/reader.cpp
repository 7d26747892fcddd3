#include "ibsniff/reader.hpp"

#include <pcap/pcap.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "ibsniff/decoder.hpp"

namespace ibsniff {

struct Reader::Bpf {
  bpf_program prog{};
  ~Bpf() { pcap_freecode(&prog); }
};

namespace {

std::string link_error(int lt) {
  const char* name = pcap_datalink_val_to_name(lt);
  return "unsupported link type " + std::to_string(lt) + " (" +
         (name != nullptr ? name : "unknown") +
         "); ibsniff reads Ethernet, Linux SLL/SLL2, raw IP, ERF and InfiniBand (247)";
}

}  // namespace

bool Reader::compile(const std::string& expr, std::string* error) {
  if (expr.empty()) return true;
  bpf_ = std::make_unique<Bpf>();
  if (pcap_compile(pcap_, &bpf_->prog, expr.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
    if (error != nullptr) *error = "capture filter '" + expr + "': " + pcap_geterr(pcap_);
    bpf_.reset();  // nothing to free: pcap_compile failed
    return false;
  }
  have_filter_ = true;
  return true;
}

std::unique_ptr<Reader> Reader::open(const std::string& path, const std::string& bpf,
                                     std::string* error) {
  std::array<char, PCAP_ERRBUF_SIZE> err{};
  pcap_t* pc =
      pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err.data());
  if (pc == nullptr) {
    if (error != nullptr) *error = err.data();
    return nullptr;
  }
  std::unique_ptr<Reader> r(new Reader());
  r->pcap_ = pc;
  r->linktype_ = pcap_datalink(pc);
  if (!linktype_supported(r->linktype_)) {
    if (error != nullptr) *error = link_error(r->linktype_);
    return nullptr;
  }
  if (!r->compile(bpf, error)) return nullptr;
  return r;
}

std::unique_ptr<Reader> Reader::open_live(const std::string& iface, const std::string& bpf,
                                          const LiveOptions& opts, std::string* error) {
  std::array<char, PCAP_ERRBUF_SIZE> err{};
  pcap_t* pc = pcap_create(iface.c_str(), err.data());
  if (pc == nullptr) {
    if (error != nullptr) *error = err.data();
    return nullptr;
  }
  std::unique_ptr<Reader> r(new Reader());
  r->pcap_ = pc;
  r->live_ = true;
  pcap_set_snaplen(pc, opts.snaplen);
  pcap_set_promisc(pc, opts.promiscuous ? 1 : 0);
  pcap_set_timeout(pc, opts.timeout_ms);
  r->nano_ = pcap_set_tstamp_precision(pc, PCAP_TSTAMP_PRECISION_NANO) == 0;
  const int rc = pcap_activate(pc);
  if (rc < 0) {
    if (error != nullptr) {
      *error = pcap_statustostr(rc);
      const char* detail = pcap_geterr(pc);
      if (detail != nullptr && *detail != '\0') *error += std::string(": ") + detail;
      if (rc == PCAP_ERROR_PERM_DENIED) *error += " (live capture needs root or CAP_NET_RAW)";
    }
    return nullptr;
  }
  r->nano_ = pcap_get_tstamp_precision(pc) == PCAP_TSTAMP_PRECISION_NANO;
  r->linktype_ = pcap_datalink(pc);
  if (!linktype_supported(r->linktype_)) {
    if (error != nullptr) *error = link_error(r->linktype_);
    return nullptr;
  }
  if (!r->compile(bpf, error)) return nullptr;
  if (r->have_filter_ && pcap_setfilter(pc, &r->bpf_->prog) != 0) {
    if (error != nullptr) *error = std::string("capture filter: ") + pcap_geterr(pc);
    return nullptr;
  }
  r->have_filter_ = false;  // the kernel (or libpcap) filters live packets
  return r;
}

std::vector<std::string> Reader::interfaces(std::string* error) {
  std::vector<std::string> out;
  std::array<char, PCAP_ERRBUF_SIZE> err{};
  pcap_if_t* all = nullptr;
  if (pcap_findalldevs(&all, err.data()) != 0) {
    if (error != nullptr) *error = err.data();
    return out;
  }
  for (pcap_if_t* d = all; d != nullptr; d = d->next) {
    std::string s = d->name;
    if (d->description != nullptr) s += std::string(" (") + d->description + ")";
    out.push_back(std::move(s));
  }
  pcap_freealldevs(all);
  return out;
}

Reader::~Reader() {
  bpf_.reset();
  if (pcap_ != nullptr) pcap_close(pcap_);
}

void Reader::stop() noexcept {
  stopped_ = true;
  if (pcap_ != nullptr) pcap_breakloop(pcap_);
}

long long Reader::dropped() const {
  pcap_stat st{};
  if (!live_ || pcap_stats(pcap_, &st) != 0) return -1;
  return static_cast<long long>(st.ps_drop) + static_cast<long long>(st.ps_ifdrop);
}

bool Reader::next(Packet& p, std::string* error) {
  for (;;) {
    if (stopped_) return false;
    pcap_pkthdr* hdr = nullptr;
    const u_char* data = nullptr;
    const int rc = pcap_next_ex(pcap_, &hdr, &data);
    if (rc == 0) continue;  // live read timeout: look at stopped_ again
    if (rc != 1) {
      if (rc == PCAP_ERROR && error != nullptr) *error = pcap_geterr(pcap_);
      return false;
    }
    if (have_filter_ && pcap_offline_filter(&bpf_->prog, hdr, data) == 0) continue;
    p.number = ++count_;
    p.ts_sec = hdr->ts.tv_sec;
    // tv_usec holds nanoseconds when the handle's precision is NANO.
    p.ts_nsec = static_cast<std::uint32_t>(nano_ ? hdr->ts.tv_usec : hdr->ts.tv_usec * 1000);
    p.linktype = linktype_;
    p.data = std::span<const std::uint8_t>(data, hdr->caplen);
    p.wire_len = hdr->len;
    decode(p);
    return true;
  }
}

std::unique_ptr<Writer> Writer::open(const Reader& from, const std::string& path,
                                     std::string* error) {
  pcap_dumper_t* d = pcap_dump_open(from.pcap_, path.c_str());
  if (d == nullptr) {
    if (error != nullptr) *error = pcap_geterr(from.pcap_);
    return nullptr;
  }
  std::unique_ptr<Writer> w(new Writer());
  w->dumper_ = d;
  w->nano_ = from.nano_;
  return w;
}

Writer::~Writer() {
  if (dumper_ != nullptr) pcap_dump_close(dumper_);
}

void Writer::write(const Packet& p) {
  pcap_pkthdr h{};
  h.ts.tv_sec = p.ts_sec;
  h.ts.tv_usec = static_cast<suseconds_t>(nano_ ? p.ts_nsec : p.ts_nsec / 1000);
  h.caplen = static_cast<bpf_u_int32>(p.data.size());
  h.len = p.wire_len;
  pcap_dump(reinterpret_cast<u_char*>(dumper_), &h, p.data.data());
}

bool Writer::flush(std::string* error) {
  if (pcap_dump_flush(dumper_) != 0 || std::ferror(pcap_dump_file(dumper_)) != 0) {
    if (error != nullptr) *error = std::strerror(errno);
    return false;
  }
  return true;
}

}  // namespace ibsniff

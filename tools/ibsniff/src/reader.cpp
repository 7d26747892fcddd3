#include "ibsniff/reader.hpp"

#include <pcap/pcap.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "ibsniff/decoder.hpp"

namespace ibsniff {

struct Reader::Bpf {
  bpf_program prog{};
  ~Bpf() { pcap_freecode(&prog); }
};

// A classic pcap file (version 2.4, the host's byte order) mapped read-only: next() parses its
// records in place rather than have libpcap copy each through stdio into its buffer. libpcap has
// opened the file and checked its header; `pos` is where its stream stands (the next record).
// A record that libpcap would have to judge (longer than the snapshot length, cut short by the
// end of the file, a timestamp out of the plain range) and the end of the mapping (the file may
// have grown since) go back to libpcap: its stream is moved to that record and it reads from
// there on, with its own checks and error messages.
struct Reader::Mapped {
  void* addr = nullptr;
  std::size_t size = 0;
  std::size_t pos = 0;
  std::uint32_t snaplen = 0;
  bool nsec = false;           // the file's timestamps are in nanoseconds (else microseconds)
  std::size_t populated = 0;   // page tables are filled up to here (MADV_POPULATE_READ)
  std::size_t prefetched = 0;  // cache lines are requested up to here

  // Work ahead of `pos`: the page tables of the next window in one call (rather than a page
  // fault every few pages), and the cache lines of the next few KiB (the records are read once,
  // in order, so they come from memory, not from the caches).
  void ahead() {
    constexpr std::size_t kWindow = std::size_t{8} << 20, kLines = 4096;
#ifdef MADV_POPULATE_READ
    if (pos + kWindow / 2 > populated && populated < size) {
      const std::size_t from = populated & ~std::size_t{4095};
      const std::size_t len = std::min(kWindow, size - from);
      madvise(static_cast<std::uint8_t*>(addr) + from, len, MADV_POPULATE_READ);
      populated = from + len;  // on failure (an older kernel) pages fault in as they are read
    }
#endif
    const std::size_t to = std::min(size, pos + kLines);
    for (prefetched = std::max(prefetched, pos & ~std::size_t{63}); prefetched < to;
         prefetched += 64)
      __builtin_prefetch(bytes() + prefetched);
  }

  Mapped() = default;
  Mapped(const Mapped&) = delete;
  Mapped& operator=(const Mapped&) = delete;
  ~Mapped() {
    if (addr != nullptr) munmap(addr, size);
  }
  const std::uint8_t* bytes() const {
    return static_cast<const std::uint8_t*>(addr);
  }

  // The mapping of the file behind an offline handle, or nullptr (not a regular file, not a
  // classic native-order pcap file, or not mappable): libpcap then reads all of it.
  static std::unique_ptr<Mapped> of(pcap_t* pc) {
    constexpr std::uint32_t kMagicUsec = 0xa1b2c3d4, kMagicNsec = 0xa1b23c4d;
    constexpr std::size_t kFileHeader = 24;
    FILE* f = pcap_file(pc);
    if (f == nullptr || std::ftell(f) != static_cast<long>(kFileHeader)) return nullptr;
    struct stat st {};
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_size < static_cast<off_t>(kFileHeader))
      return nullptr;
    auto m = std::make_unique<Mapped>();
    m->size = static_cast<std::size_t>(st.st_size);
    void* a = mmap(nullptr, m->size, PROT_READ, MAP_PRIVATE, fileno(f), 0);
    if (a == MAP_FAILED) return nullptr;
    m->addr = a;
    madvise(a, m->size, MADV_SEQUENTIAL);
    std::uint32_t magic = 0;
    std::uint16_t major = 0, minor = 0;
    std::memcpy(&magic, m->bytes(), 4);
    std::memcpy(&major, m->bytes() + 4, 2);
    std::memcpy(&minor, m->bytes() + 6, 2);
    if ((magic != kMagicUsec && magic != kMagicNsec) || major != 2 || minor != 4) return nullptr;
    m->nsec = magic == kMagicNsec;
    m->snaplen = static_cast<std::uint32_t>(pcap_snapshot(pc));
    m->pos = kFileHeader;
    return m;
  }
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
  r->mapped_ = Mapped::of(pc);
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
  mapped_.reset();
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

bool Reader::next_mapped(void* hdr_out, const std::uint8_t** data) {
  Mapped& m = *mapped_;
  if (m.size - m.pos >= 16) {
    std::array<std::uint32_t, 4> h{};  // seconds, fraction, captured length, wire length
    std::memcpy(h.data(), m.bytes() + m.pos, 16);
    const std::uint32_t frac_max = m.nsec ? 1000000000U : 1000000U;
    if (h[2] <= m.snaplen && h[2] <= m.size - m.pos - 16 && h[0] < 0x80000000U && h[1] < frac_max) {
      auto* hdr = static_cast<pcap_pkthdr*>(hdr_out);
      hdr->ts.tv_sec = static_cast<time_t>(h[0]);
      // Nanoseconds, as libpcap gives them on a handle opened with nanosecond precision.
      hdr->ts.tv_usec = static_cast<suseconds_t>(m.nsec ? h[1] : h[1] * 1000U);
      hdr->caplen = h[2];
      hdr->len = h[3];
      *data = m.bytes() + m.pos + 16;
      m.pos += 16 + std::size_t{h[2]};
      m.ahead();
      return true;
    }
  }
  return false;
}

bool Reader::next(Packet& p, std::string* error) {
  for (;;) {
    if (stopped_) return false;
    pcap_pkthdr mapped_hdr{};
    pcap_pkthdr* hdr = nullptr;
    const u_char* data = nullptr;
    if (mapped_ && next_mapped(&mapped_hdr, &data)) {
      hdr = &mapped_hdr;
    } else {
      if (mapped_) {  // libpcap reads on from this record
        const long pos = static_cast<long>(mapped_->pos);
        retired_ = std::move(mapped_);
        if (std::fseek(pcap_file(pcap_), pos, SEEK_SET) != 0) {
          if (error != nullptr) *error = std::string("seek: ") + std::strerror(errno);
          return false;
        }
      }
      const int rc = pcap_next_ex(pcap_, &hdr, &data);
      if (rc == 0) continue;  // live read timeout: look at stopped_ again
      if (rc != 1) {
        if (rc == PCAP_ERROR && error != nullptr) *error = pcap_geterr(pcap_);
        return false;
      }
    }
    if (have_filter_ && pcap_offline_filter(&bpf_->prog, hdr, data) == 0) continue;
    last_stable_ = hdr == &mapped_hdr;
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

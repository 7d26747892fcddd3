// ibsniff: InfiniBand / RoCE / SDP dissector CLI (tshark-compatible field names and renderings).
#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ibsniff/conv.hpp"
#include "ibsniff/decoder.hpp"
#include "ibsniff/filter.hpp"
#include "ibsniff/reader.hpp"
#include "ibsniff/render.hpp"
#include "ibsniff/session.hpp"
#include "ibsniff/tree.hpp"

namespace {

constexpr const char* kDescription = R"(ibsniff: decode InfiniBand, RoCE and SDP traffic.

Reads pcap/pcapng files (-r) or captures live (-i) through libpcap. Link types: Ethernet with
optional 802.1Q/QinQ tags, Linux SLL/SLL2, raw IPv4/IPv6, ERF type 21 and LINKTYPE_INFINIBAND.
Decodes RoCEv1 (EtherType 0x8915), RoCEv2 (UDP destination port 4791) and native InfiniBand:
LRH, GRH, BTH (RC/UC/RD/UD/XRC and CNP), RDETH, DETH, RETH, AtomicETH, AETH, AtomicAckETH, ImmDt,
IETH, XRCETH, MADs and CM messages; ICRC and VCRC are verified. SDP connections are followed
through the CM (native SDP service IDs, or IP CM whose private data holds a Hello) and every SDP
message is decoded, multi-packet SENDs reassembled.

Output: one summary line per packet (default); -V a tree of every field; -T json (tshark's
layout); -T fields -e FIELD ... with the text tshark prints for the same field names (-E
header=y, separator=, occurrence=a|f|l); -q -z conv per-conversation statistics. Notes in
brackets flag truncation, lying length fields, bad CRCs and SDP protocol errors.

Filters: -f is a BPF capture filter (tcpdump syntax), applied before decoding, to files too;
-Y is a display filter on decoded fields (tshark subset: ==, !=, <, >, <=, >=, contains, in
{...}, &&, ||, !, parentheses, a bare field name tests presence).

Exit status: 0 on success, 1 on a bad option, unreadable input, unknown field or bad filter,
2 when reading stopped on an input error.)";

ibsniff::Reader* g_reader = nullptr;
extern "C" void on_signal(int) {
  if (g_reader != nullptr) g_reader->stop();
}

struct FieldsOptions {
  std::vector<ibsniff::FieldId> ids;
  bool header = false;
  std::string sep = "\t";
  int occurrence = 0;
};

bool parse_fields_options(const std::vector<std::string>& names,
                          const std::vector<std::string>& opts, FieldsOptions& out) {
  for (const auto& name : names) {
    auto id = ibsniff::field_by_name(name);
    if (!id) {
      std::fprintf(stderr, "ibsniff: unknown field '%s' (--list-fields lists them)\n",
                   name.c_str());
      return false;
    }
    out.ids.push_back(*id);
  }
  for (const auto& opt : opts) {
    const auto eq = opt.find('=');
    const std::string key = opt.substr(0, eq);
    const std::string val = eq == std::string::npos ? "" : opt.substr(eq + 1);
    if (key == "header" && (val == "y" || val == "n")) {
      out.header = val == "y";
    } else if (key == "separator" && !val.empty()) {
      out.sep = val == "/t" ? "\t" : val == "/s" ? " " : val;
    } else if (key == "occurrence" && (val == "a" || val == "f" || val == "l")) {
      out.occurrence = val == "a" ? 0 : val == "f" ? 1 : -1;
    } else {
      std::fprintf(stderr,
                   "ibsniff: bad -E option '%s' (header=y|n, separator=/t|/s|CHAR, "
                   "occurrence=a|f|l)\n",
                   opt.c_str());
      return false;
    }
  }
  return true;
}

// Waits until `a` differs from `old` and returns its value: spins a while first, the other thread
// being busy on the other core, then sleeps (a futex wake-up costs tens of microseconds on a VM).
std::size_t wait_change(const std::atomic<std::size_t>& a, std::size_t old) {
  for (int i = 0; i < 20000; ++i) {
    const std::size_t v = a.load(std::memory_order_acquire);
    if (v != old) return v;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  for (;;) {
    a.wait(old, std::memory_order_acquire);
    const std::size_t v = a.load(std::memory_order_acquire);
    if (v != old) return v;
  }
}

// -T fields from a capture file, on two threads: reading, decoding, the SDP layer and the display
// filter on one; rendering and output on the other (and half of the ICRC checks, when no display
// filter needs them), a batch of packets at a time, handed over through a ring of batches.
// Packets whose bytes are not stable (read by libpcap rather than from the file's mapping) are
// copied. Returns the number of packets printed.
long long fields_pipeline(ibsniff::Reader& reader, ibsniff::Session& session,
                          const std::optional<ibsniff::Filter>& filter, long long count,
                          ibsniff::FieldsLine& line, const std::uint8_t* want, std::string* error) {
  constexpr std::size_t kBatch = 512, kBatches = 4, kAhead = 4;
  struct Slot {
    ibsniff::Packet p;
    std::vector<std::uint8_t> own;
  };
  struct Batch {
    std::vector<Slot> slots = std::vector<Slot>(kBatch);
    std::size_t n = 0;
    ibsniff::TimeRef ref;
    bool last = false;
  };
  std::vector<Batch> batches(kBatches);
  // Batch k lives in batches[k % kBatches]; the producer fills batch `produced` once the
  // consumer's count `consumed` is within kBatches of it.
  std::atomic<std::size_t> produced{0}, consumed{0};
  long long n = 0;
  std::thread producer([&] {
    ibsniff::TimeRef ref;
    std::size_t seen_consumed = 0;
    for (std::size_t k = 0;; ++k) {
      while (k - seen_consumed >= kBatches) seen_consumed = wait_change(consumed, seen_consumed);
      Batch& batch = batches[k % kBatches];
      batch.n = 0;
      bool done = false;
      while (batch.n < kBatch) {
        if (count >= 0 && n >= count) {
          done = true;
          break;
        }
        Slot& s = batch.slots[batch.n];
        // Every other packet's ICRC is checked on the rendering thread, unless the display filter
        // needs it.
        s.p.defer_icrc = !filter && (batch.n & 1U) != 0;
        s.p.want = want;
        if (!reader.next(s.p, error)) {
          done = true;
          break;
        }
        session.process(s.p);
        ref.observe(s.p);
        if (filter && !filter->matches(s.p, ref)) continue;
        if (!reader.data_stable()) {
          s.own.assign(s.p.data.begin(), s.p.data.end());
          s.p.data = s.own;
        }
        ++n;
        ++batch.n;
      }
      batch.ref = ref;
      batch.last = done;
      produced.store(k + 1, std::memory_order_release);
      produced.notify_one();
      if (done) return;
    }
  });
  std::string out;
  std::size_t seen_produced = 0;
  for (std::size_t k = 0;; ++k) {
    while (seen_produced <= k) seen_produced = wait_change(produced, seen_produced);
    Batch& batch = batches[k % kBatches];
    for (std::size_t i = 0; i < batch.n; ++i) {
      // The field records were written on the other core, and the frame's headers (which IP
      // addresses and byte fields are rendered from) read there some time ago: fetch a later
      // packet's while this one is rendered (a miss each otherwise).
      if (i + kAhead < batch.n) {
        const ibsniff::Packet& ahead = batch.slots[i + kAhead].p;
        const char* a = reinterpret_cast<const char*>(ahead.fields.data());
        const std::size_t bytes = ahead.fields.size() * sizeof(ibsniff::Field);
        for (std::size_t o = 0; o < bytes; o += 64) __builtin_prefetch(a + o);
        const auto* d = reinterpret_cast<const char*>(ahead.data.data());
        __builtin_prefetch(d);
        if (ahead.data.size() > 64) __builtin_prefetch(d + 64);
      }
      ibsniff::finish_icrc(batch.slots[i].p);
      line.append(batch.slots[i].p, batch.ref, out);
    }
    if (out.size() >= (1U << 16)) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
    }
    const bool last = batch.last;
    consumed.store(k + 1, std::memory_order_release);
    consumed.notify_one();
    if (last) break;
  }
  producer.join();
  std::fwrite(out.data(), 1, out.size(), stdout);
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{kDescription, "ibsniff"};
  std::string file, iface, write_file, bpf, display_filter, format = "text";
  long long count = -1;
  int snaplen = 262144;
  std::vector<std::string> fields, field_opts, stats;
  bool list_fields = false, list_ifaces = false, verbose = false, hex = false, quiet = false;
  bool print_while_writing = false, no_resolve = false, line_buffered = false, no_promisc = false;
  std::vector<std::uint32_t> sdp_qps;
  auto* in_file = app.add_option("-r,--read-file", file, "capture file to read (pcap or pcapng)");
  app.add_option("-i,--interface", iface, "capture live on this interface (see -D)")
      ->excludes(in_file);
  app.add_flag("-D,--list-interfaces", list_ifaces, "list the interfaces -i can capture on");
  app.add_option("-c,--count", count, "stop after N packets (after the filters)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("-w,--write", write_file,
                 "write the packets (those -f and -Y keep) to this pcap file ('-' = stdout); "
                 "nothing is printed unless -P")
      ->type_name("FILE");
  app.add_flag("-P", print_while_writing, "print packets while writing with -w");
  app.add_option("-f", bpf, "BPF capture filter (tcpdump syntax), for -i and -r")
      ->type_name("FILTER");
  app.add_option("-Y,--display-filter", display_filter,
                 "display filter (tshark subset): only matching packets are printed, written and "
                 "counted by -c and -z conv; e.g. 'infiniband.bth.opcode == 4 && "
                 "infiniband_sdp.bsdh.mid == 0xff'")
      ->type_name("FILTER");
  app.add_option("-s,--snapshot-length", snaplen, "live capture: bytes kept per packet")
      ->check(CLI::Range(64, 262144));
  app.add_flag("-p,--no-promiscuous-mode", no_promisc, "live capture: no promiscuous mode");
  app.add_flag("-n", no_resolve,
               "no name resolution (ibsniff never resolves names; accepted for tshark/tcpdump "
               "habits)");
  app.add_flag("-l", line_buffered, "flush standard output after each packet (on with -i)");
  app.add_option("-T", format, "output format: text (default), fields or json")
      ->check(CLI::IsMember({"text", "fields", "json"}));
  app.add_flag("-V", verbose, "print the whole field tree of each packet");
  app.add_flag("-x", hex, "print a hex dump of each packet (text output)");
  app.add_option("-e", fields, "field to print with -T fields (repeatable)")->take_first();
  app.add_option("-E", field_opts,
                 "-T fields option: header=y|n, separator=/t|/s|<char>, occurrence=a|f|l")
      ->take_first();
  app.add_flag("-q", quiet, "print no packets (with -z: only the statistics)");
  app.add_option("-z", stats,
                 "statistics at the end: conv (InfiniBand and SDP), conv,ib or conv,sdp")
      ->check(CLI::IsMember({"conv", "conv,ib", "conv,sdp"}))
      ->take_first();
  app.add_flag("--list-fields", list_fields, "print the field names ibsniff knows and exit");
  app.add_option("--sdp", sdp_qps,
                 "decode RC SENDs to this QP number as SDP even though the connection setup is not "
                 "in the capture (repeatable; decimal or 0x hex)")
      ->take_all();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 1;  // --help is a ParseError that exits 0
  }
  (void)no_resolve;

  if (list_fields) {
    for (const auto& def : ibsniff::field_table())
      std::printf("%.*s\n", static_cast<int>(def.name.size()), def.name.data());
    return 0;
  }
  if (list_ifaces) {
    std::string err;
    const auto all = ibsniff::Reader::interfaces(&err);
    if (!err.empty()) {
      std::fprintf(stderr, "ibsniff: %s\n", err.c_str());
      return 1;
    }
    for (std::size_t i = 0; i < all.size(); ++i) std::printf("%zu. %s\n", i + 1, all[i].c_str());
    return 0;
  }
  if (file.empty() && iface.empty()) {
    std::fprintf(stderr, "ibsniff: no input: -r FILE or -i INTERFACE (see --help)\n");
    return 1;
  }
  FieldsOptions fo;
  if (format == "fields") {
    if (fields.empty()) {
      std::fprintf(stderr, "ibsniff: -T fields needs at least one -e FIELD\n");
      return 1;
    }
    if (!parse_fields_options(fields, field_opts, fo)) return 1;
  } else if (!fields.empty()) {
    std::fprintf(stderr, "ibsniff: -e needs -T fields\n");
    return 1;
  }

  std::optional<ibsniff::Filter> filter;
  if (!display_filter.empty()) {
    std::string err;
    filter = ibsniff::Filter::compile(display_filter, &err);
    if (!filter) {
      std::fprintf(stderr, "ibsniff: display filter '%s': %s\n", display_filter.c_str(),
                   err.c_str());
      return 1;
    }
  }

  std::string error;
  std::unique_ptr<ibsniff::Reader> reader;
  if (!iface.empty()) {
    ibsniff::LiveOptions lo;
    lo.snaplen = snaplen;
    lo.promiscuous = !no_promisc;
    reader = ibsniff::Reader::open_live(iface, bpf, lo, &error);
    line_buffered = true;
  } else {
    reader = ibsniff::Reader::open(file, bpf, &error);
  }
  const std::string& input = iface.empty() ? file : iface;
  if (!reader) {
    std::fprintf(stderr, "ibsniff: %s: %s\n", input.c_str(), error.c_str());
    return 1;
  }
  std::unique_ptr<ibsniff::Writer> writer;
  if (!write_file.empty()) {
    writer = ibsniff::Writer::open(*reader, write_file, &error);
    if (!writer) {
      std::fprintf(stderr, "ibsniff: %s: %s\n", write_file.c_str(), error.c_str());
      return 1;
    }
  }
  const bool print = !quiet && (!writer || print_while_writing);
  const bool conv_ib = !stats.empty() && (stats[0] == "conv" || stats[0] == "conv,ib");
  const bool conv_sdp = !stats.empty() && (stats[0] == "conv" || stats[0] == "conv,sdp");

  g_reader = reader.get();
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);

  std::string out;
  auto flush_out = [&] {
    if (!out.empty()) std::fwrite(out.data(), 1, out.size(), stdout);
    out.clear();
    if (line_buffered) std::fflush(stdout);
  };
  if (print && format == "fields" && fo.header) {
    for (std::size_t i = 0; i < fields.size(); ++i) {
      if (i > 0) out += fo.sep;
      out += fields[i];
    }
    out += '\n';
  }
  if (print && format == "json") out += "[\n";

  std::optional<ibsniff::FieldsLine> fields_line;  // -T fields: one call renders a line
  if (format == "fields") fields_line.emplace(fo.ids, fo.sep, fo.occurrence);
  ibsniff::Packet p;
  ibsniff::Session session;  // CM fields and SDP, which need the capture's history
  for (std::uint32_t q : sdp_qps) session.force_sdp_qp(q);
  // -T fields shows its columns only: the decoder records those and what -Y reads, and SDP is
  // followed only when one of them, or -z conv,sdp, needs it.
  ibsniff::FieldSet wanted;
  const std::uint8_t* want = nullptr;
  if (fields_line) {
    for (const ibsniff::FieldId id : fo.ids) wanted.add(id);
    if (filter) filter->add_fields_to(wanted);
    session.set_sdp(conv_sdp || wanted.any_sdp());
    want = wanted.data();
  }
  p.want = want;
  ibsniff::ConvTable conv;
  ibsniff::TimeRef ref;
  long long n = 0;
  // -T fields from a file with nothing per packet but the line: two threads (fields_pipeline).
  const bool pipelined = fields_line && print && !writer && !conv_ib && !reader->live();
  if (pipelined) {
    flush_out();  // the header line
    n = fields_pipeline(*reader, session, filter, count, *fields_line, want, &error);
  }
  while (!pipelined && (count < 0 || n < count) && reader->next(p, &error)) {
    session.process(p);  // every packet: the SDP layer needs the whole history
    ref.observe(p);
    if (filter && !filter->matches(p, ref)) continue;
    ++n;
    if (writer) writer->write(p);
    if (conv_ib) conv.observe(p);
    if (!print) continue;
    if (format == "fields") {
      fields_line->append(p, ref, out);
    } else if (format == "json") {
      if (n > 1) out += ",\n";
      out += ibsniff::packet_json(p, ref);
    } else {
      if (verbose) {
        ibsniff::append_tree(p, ref, out);
      } else {
        out += ibsniff::summary_line(p, ref);
        out += '\n';
      }
      if (hex) ibsniff::append_hex(p, out);
    }
    if (line_buffered || out.size() >= (1u << 16)) flush_out();
  }
  if (print && format == "json") out += "\n]\n";
  if (conv_ib) out += conv.format_ib();
  if (conv_sdp) out += ibsniff::ConvTable::format_sdp(session.follower());
  flush_out();
  std::fflush(stdout);
  g_reader = nullptr;
  int rc = 0;
  if (!error.empty()) {
    std::fprintf(stderr, "ibsniff: %s: %s\n", input.c_str(), error.c_str());
    rc = 2;
  }
  if (writer && !writer->flush(&error)) {
    std::fprintf(stderr, "ibsniff: %s: %s\n", write_file.c_str(), error.c_str());
    rc = 2;
  }
  if (reader->live()) {
    std::fprintf(stderr, "%lld packets captured", n);
    if (const long long d = reader->dropped(); d >= 0) std::fprintf(stderr, ", %lld dropped", d);
    std::fprintf(stderr, "\n");
  }
  return rc;
}

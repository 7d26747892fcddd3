// ibsniff: InfiniBand / RoCE dissector CLI (tshark-compatible field names and renderings).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "ibsniff/decoder.hpp"
#include "ibsniff/reader.hpp"
#include "ibsniff/render.hpp"
#include "ibsniff/session.hpp"

namespace {

constexpr const char* kDescription = R"(ibsniff: decode InfiniBand and RoCE captures.

Reads pcap/pcapng files (link types Ethernet with optional 802.1Q/QinQ tags, Linux SLL/SLL2,
raw IPv4/IPv6, ERF type 21 and LINKTYPE_INFINIBAND) and decodes RoCEv1 (EtherType 0x8915),
RoCEv2 (UDP destination port 4791) and native InfiniBand: LRH, GRH, BTH (RC/UC/RD/UD/XRC and
CNP), RDETH, DETH, RETH, AtomicETH, AETH, AtomicAckETH, ImmDt, IETH, XRCETH, the MAD common
header on QP0/QP1, payload and pad; ICRC and VCRC are verified.

Default output: one line per packet (number, relative time, source → destination, protocol,
length, info) followed by the packet's notes in brackets (truncation, lying length fields,
bad CRCs).
With -T fields, one line per packet with the -e fields separated by tabs (-E separator=),
rendered like `tshark -T fields` and with the same field names (infiniband.bth.opcode, ...);
repeated occurrences are joined with ',' (-E occurrence=a|f|l). ibsniff-only fields start with
"ibsniff." (ibsniff.icrc.bad, ibsniff.vcrc.bad, ibsniff.bth.fecn, ...). --list-fields prints
the names known.

Exit status: 0 on success, 1 on a bad option, unreadable file or unknown field name.)";

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{kDescription, "ibsniff"};
  std::string file;
  long long count = -1;
  std::string format = "text";
  std::vector<std::string> fields;
  std::vector<std::string> field_opts;
  bool list_fields = false;
  std::vector<std::uint32_t> sdp_qps;
  app.add_option("-r,--read-file", file, "capture file to read (pcap or pcapng)");
  app.add_option("-c,--count", count, "stop after N packets")->check(CLI::NonNegativeNumber);
  app.add_option("-T", format, "output format: text (default) or fields")
      ->check(CLI::IsMember({"text", "fields"}));
  app.add_option("-e", fields, "field to print with -T fields (repeatable)")->take_first();
  app.add_option("-E", field_opts,
                 "-T fields option: header=y|n, separator=/t|/s|<char>, occurrence=a|f|l")
      ->take_first();
  app.add_flag("--list-fields", list_fields, "print the field names ibsniff knows and exit");
  app.add_option("--sdp", sdp_qps,
                 "decode RC SENDs to this QP number as SDP even though the connection setup is not "
                 "in the capture (repeatable; decimal or 0x hex)")
      ->take_all();
  CLI11_PARSE(app, argc, argv);

  if (list_fields) {
    for (const auto& def : ibsniff::field_table())
      std::printf("%.*s\n", static_cast<int>(def.name.size()), def.name.data());
    return 0;
  }
  if (file.empty()) {
    std::fprintf(stderr, "ibsniff: no capture file given (-r FILE); see --help\n");
    return 1;
  }
  std::vector<ibsniff::FieldId> ids;
  bool header = false;
  std::string sep = "\t";
  int occurrence = 0;
  if (format == "fields") {
    if (fields.empty()) {
      std::fprintf(stderr, "ibsniff: -T fields needs at least one -e FIELD\n");
      return 1;
    }
    for (const auto& name : fields) {
      auto id = ibsniff::field_by_name(name);
      if (!id) {
        std::fprintf(stderr, "ibsniff: unknown field '%s' (--list-fields lists them)\n",
                     name.c_str());
        return 1;
      }
      ids.push_back(*id);
    }
    for (const auto& opt : field_opts) {
      const auto eq = opt.find('=');
      const std::string key = opt.substr(0, eq);
      const std::string val = eq == std::string::npos ? "" : opt.substr(eq + 1);
      if (key == "header" && (val == "y" || val == "n")) {
        header = val == "y";
      } else if (key == "separator" && !val.empty()) {
        sep = val == "/t" ? "\t" : val == "/s" ? " " : val;
      } else if (key == "occurrence" && (val == "a" || val == "f" || val == "l")) {
        occurrence = val == "a" ? 0 : val == "f" ? 1 : -1;
      } else {
        std::fprintf(stderr, "ibsniff: bad -E option '%s'\n", opt.c_str());
        return 1;
      }
    }
  } else if (!fields.empty()) {
    std::fprintf(stderr, "ibsniff: -e needs -T fields\n");
    return 1;
  }

  std::string error;
  auto reader = ibsniff::Reader::open(file, &error);
  if (!reader) {
    std::fprintf(stderr, "ibsniff: %s: %s\n", file.c_str(), error.c_str());
    return 1;
  }
  if (header) {
    std::string line;
    for (std::size_t i = 0; i < fields.size(); ++i) {
      if (i > 0) line += sep;
      line += fields[i];
    }
    std::printf("%s\n", line.c_str());
  }
  ibsniff::Packet p;
  ibsniff::Session session;  // CM fields and SDP, which need the capture's history
  for (std::uint32_t q : sdp_qps) session.force_sdp_qp(q);
  ibsniff::TimeRef ref;
  std::string line;
  long long n = 0;
  while ((count < 0 || n < count) && reader->next(p, &error)) {
    ++n;
    session.process(p);
    ref.observe(p);
    if (format == "fields") {
      line.clear();
      for (std::size_t i = 0; i < ids.size(); ++i) {
        if (i > 0) line += sep;
        ibsniff::render_occurrences(p, ids[i], ref, occurrence, line);
      }
    } else {
      line = ibsniff::summary_line(p, ref);
    }
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stdout);
  }
  if (!error.empty()) {
    std::fprintf(stderr, "ibsniff: %s: %s\n", file.c_str(), error.c_str());
    return 1;
  }
  return 0;
}

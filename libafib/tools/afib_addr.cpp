// afib-addr: AF_IB addresses from the command line — the text form checked and printed
// canonically with its fields, and the fabric address of an IP address or host name.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include "afib/afib.h"

namespace {

const char* kind_name(afib_sid_kind k) {
  switch (k) {
    case AFIB_SID_SDP:
      return "SDP native service";
    case AFIB_SID_IP_CM:
      return "rdma_cm IP CM service (RDMA_PS_TCP)";
    case AFIB_SID_IB:
      return "rdma_cm RDMA_PS_IB";
    case AFIB_SID_OTHER:
      break;
  }
  return "other";
}

void print(const sockaddr_ib& a, bool fields) {
  char text[AFIB_ADDRSTRLEN];
  afib_addr_format(&a, text, sizeof text);
  std::printf("%s\n", text);
  if (!fields) return;
  std::uint16_t port = 0;
  const afib_sid_kind k = afib_sid_kind_of(afib_addr_sid(&a), &port);
  std::printf("  service ID  0x%016llx (%s", static_cast<unsigned long long>(afib_addr_sid(&a)),
              kind_name(k));
  if (k != AFIB_SID_OTHER) std::printf(", port %u", port);
  std::printf(")\n  mask        0x%016llx\n  P_Key       0x%04x%s\n",
              static_cast<unsigned long long>(afib_addr_sid_mask(&a)), afib_addr_pkey(&a),
              afib_addr_pkey(&a) == AFIB_PKEY_DEFAULT ? " (default partition, full member)" : "");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "AF_IB addresses (struct sockaddr_ib). Text form: [GID]:SID[/MASK][,pkey=P][,scope=S]"
      "[,flow=F], SID as 0x-hex, decimal, sdp:PORT, ipcm:PORT, tcp:PORT or ib:PORT "
      "(man afib_addr(3)).",
      "afib-addr"};
  app.require_subcommand(1);
  bool fields = false;
  app.add_flag("-v,--verbose", fields, "print the fields too");
  std::string text;
  auto* parse =
      app.add_subcommand("parse", "check an address in the text form, print it canonically");
  parse->add_option("address", text, "e.g. '[fe80::2:c903:0:1101]:sdp:7007'")->required();
  std::string host, sid_text = "0";
  int timeout_ms = 2000;
  auto* resolve = app.add_subcommand(
      "resolve", "the fabric address (GID, P_Key) of an IP address or host name, through rdma_cm");
  resolve->add_option("host", host, "IPv4/IPv6 address or host name")->required();
  resolve->add_option("--sid", sid_text, "service ID to put in the address (as in the text form)")
      ->capture_default_str();
  resolve->add_option("--timeout-ms", timeout_ms, "address resolution time limit")
      ->capture_default_str()
      ->check(CLI::Range(1, 600000));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 1;
  }
  char err[256] = "";
  sockaddr_ib a{};
  if (parse->parsed()) {
    if (afib_addr_parse(text.c_str(), &a, err, sizeof err) != 0) {
      std::fprintf(stderr, "afib-addr: '%s': %s\n", text.c_str(), err);
      return 2;
    }
    print(a, fields);
    return 0;
  }
  // The service ID in the text form's syntax: parse it as part of a dummy address.
  const std::string probe = "[::]:" + sid_text;
  if (afib_addr_parse(probe.c_str(), &a, err, sizeof err) != 0) {
    std::fprintf(stderr, "afib-addr: --sid '%s': %s\n", sid_text.c_str(), err);
    return 2;
  }
  if (afib_resolve(host.c_str(), afib_addr_sid(&a), timeout_ms, &a, err, sizeof err) != 0) {
    std::fprintf(stderr, "afib-addr: %s\n", err);
    return 2;
  }
  print(a, fields);
  return 0;
}

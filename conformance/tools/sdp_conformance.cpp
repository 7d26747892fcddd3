// sdp-conformance: drives an SDP peer through the conformance scenarios (or a replayed capture)
// from a raw SDP endpoint and reports every violation. See conformance/README.md.
#include <fnmatch.h>
#include <CLI/CLI.hpp>
#include <chrono>
#include <ctime>
#include <iostream>
#include <string>
#include <vector>

#include "replay.hpp"
#include "report.hpp"
#include "runner.hpp"
#include "transport.hpp"

using namespace conformance;

namespace {

std::string rfc3339_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "sdp-conformance: drive an SDP peer through the conformance suite from a raw SDP endpoint "
      "(one that controls every byte it sends) and report every violation.\n\n"
      "The peer under test runs the test services of the peer contract: echo on BASE+7, discard "
      "on BASE+9, source on BASE+19 (BASE = --port-base, 7000 by default); libsdp's sdp-testd "
      "is the reference. --peer builtin runs the suite against libsdp's own engine over an "
      "in-memory RC fabric (no RDMA device needed).\n\n"
      "Exit status: 0 when every case passed or was skipped, 1 when any failed, 2 on bad usage "
      "or unreadable input."};
  std::string peer = "builtin", cm = "ip", bind, replay, side = "client", junit, json, filter;
  std::string service_name;
  std::vector<std::string> scenario_paths;
  unsigned port_base = 7000, connection = 0;
  int verbose = 0;
  bool list = false;
  app.add_option("--peer", peer,
                 "builtin (libsdp's engine over the pipe fabric, the default) or the peer's "
                 "address (IPv4/IPv6 or host name; a GID with --cm native)");
  app.add_option("--cm", cm,
                 "CM mode for scenarios that do not fix one: ip (RDMA_PS_TCP, compact "
                 "Hello; the default) or native (SDP service ID, full Hello; "
                 "InfiniBand only)")
      ->check(CLI::IsMember({"ip", "native"}));
  app.add_option("--port-base", port_base,
                 "the peer's service ports: BASE+7 echo, BASE+9 "
                 "discard, BASE+19 source (default 7000)")
      ->check(CLI::Range(0U, 65535U - 19U));
  app.add_option("--bind", bind, "local address to connect from (verbs)");
  app.add_option(
      "--scenarios", scenario_paths,
      "scenario files or directories of *.textproto (default: the suite, " CONF_SCENARIO_DIR ")");
  app.add_option("--filter", filter,
                 "run only scenarios whose name matches this shell pattern (credits.*, *stale*); "
                 "without * ? [ it matches any part of the name");
  app.add_option("--replay", replay,
                 "replay one side of the SDP connection in this capture "
                 "(pcap/pcapng) against the peer instead of the scenarios");
  app.add_option("--side", side,
                 "with --replay: the side to replay, client (sent the CM REQ) or "
                 "server")
      ->check(CLI::IsMember({"client", "server"}));
  app.add_option("--connection", connection, "with --replay: the N-th SDP connection (default 1)");
  app.add_option("--service", service_name,
                 "with --replay: the peer service (echo, discard, "
                 "source; default from the capture's port)")
      ->check(CLI::IsMember({"echo", "discard", "source"}));
  app.add_option("--junit", junit, "write a JUnit XML report to FILE");
  app.add_option("--json", json, "write the JSON report (report.proto) to FILE");
  app.add_flag("-v,--verbose", verbose, "show the message log of failed cases (-vv: of all)");
  app.add_flag("--list", list, "list the scenarios (name and rules) and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  std::vector<LoadedScenario> cases;
  std::string err;
  if (!replay.empty()) {
    ReplayOptions ro;
    ro.path = replay;
    ro.client_side = side == "client";
    ro.connection = connection;
    if (!service_name.empty())
      ro.service = service_name == "echo" ? ECHO : service_name == "discard" ? DISCARD : SOURCE;
    LoadedScenario ls;
    ls.file = replay;
    if (!scenario_from_capture(ro, ls.scenario, err) || !check_scenario(ls.scenario, err)) {
      std::cerr << "sdp-conformance: " << replay << ": " << err << "\n";
      return 2;
    }
    cases.push_back(std::move(ls));
  } else {
    if (scenario_paths.empty()) scenario_paths.push_back(CONF_SCENARIO_DIR);
    for (const auto& p : scenario_paths)
      if (!load_scenarios(p, cases, err)) {
        std::cerr << "sdp-conformance: " << err << "\n";
        return 2;
      }
  }
  if (!filter.empty()) {
    // A shell pattern; without any of * ? [ it matches anywhere in the name.
    const std::string pat =
        filter.find_first_of("*?[") == std::string::npos ? "*" + filter + "*" : filter;
    std::erase_if(cases, [&](const LoadedScenario& s) {
      return fnmatch(pat.c_str(), s.scenario.name().c_str(), 0) != 0;
    });
    if (cases.empty()) {
      std::cerr << "sdp-conformance: no scenario matches --filter " << filter << "\n";
      return 2;
    }
  }
  if (list) {
    for (const auto& c : cases) {
      std::cout << c.scenario.name();
      for (const auto& r : c.scenario.rule()) std::cout << "  [" << r << "]";
      std::cout << "\n";
    }
    return 0;
  }

  RunOptions opt;
  opt.native_cm = cm == "native";
  opt.builtin = peer == "builtin";
  Report report;
  report.set_tool("sdp-conformance");
  report.set_started(rfc3339_now());
  if (opt.builtin) {
#ifdef CONF_BROKEN_ENGINE
    report.set_peer("builtin (DELIBERATELY BROKEN engine: data may take the last credit)");
#else
    report.set_peer("builtin (libsdp engine over the pipe fabric)");
#endif
    opt.open = [](const Scenario& s, std::string&) -> std::unique_ptr<Transport> {
      return make_builtin_transport(s.peer_config());
    };
  } else {
    report.set_peer(peer + " (" + (opt.native_cm ? "native" : "IP CM") + " mode, port base " +
                    std::to_string(port_base) + ")");
    VerbsOptions vo;
    vo.host = peer;
    vo.port_base = static_cast<std::uint16_t>(port_base);
    vo.bind = bind;
    opt.open = [vo](const Scenario&, std::string& e) { return make_verbs_transport(vo, e); };
    // No fabric at all (no RDMA device): say so once instead of failing every case.
    if (!make_verbs_transport(vo, err)) {
      std::cerr << "sdp-conformance: " << err << "\n";
      return 2;
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& c : cases) {
    CaseResult r = run_scenario(c, opt);
    switch (r.verdict()) {
      case PASS:
        report.set_passed(report.passed() + 1);
        break;
      case FAIL:
        report.set_failed(report.failed() + 1);
        break;
      case SKIP:
        report.set_skipped(report.skipped() + 1);
        break;
      default:
        report.set_errors(report.errors() + 1);
        break;
    }
    *report.add_cases() = std::move(r);
  }
  report.set_seconds(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  print_summary(report, std::cout, verbose);
  if (!junit.empty() && !write_junit(report, junit, err)) {
    std::cerr << "sdp-conformance: " << err << "\n";
    return 2;
  }
  if (!json.empty() && !write_json(report, json, err)) {
    std::cerr << "sdp-conformance: " << err << "\n";
    return 2;
  }
  return report.failed() == 0 && report.errors() == 0 ? 0 : 1;
}

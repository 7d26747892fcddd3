// Reports of a conformance run: the readable summary, JUnit XML and JSON (report.proto).
#pragma once

#include <iosfwd>
#include <string>

#include "report.pb.h"

namespace conformance {

// One line per case (PASS / FAIL / SKIP / ERROR, name, the first rule, the reason), then the
// totals. verbose: the observation log of every failed case as well (2: of every case).
void print_summary(const Report& r, std::ostream& out, int verbose);
// JUnit XML (one testsuite, a testcase per scenario; FAIL → <failure>, ERROR → <error>,
// SKIP → <skipped>), readable by CI systems.
bool write_junit(const Report& r, const std::string& path, std::string& error);
// The report as JSON (protobuf's JSON printer: field names in lowerCamelCase).
bool write_json(const Report& r, const std::string& path, std::string& error);
std::string xml_escape(const std::string& s);

}  // namespace conformance

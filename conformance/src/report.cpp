#include "report.hpp"

#include <google/protobuf/util/json_util.h>

#include <cstdio>
#include <fstream>
#include <ostream>

namespace conformance {

namespace {

const char* verdict_name(Verdict v) {
  switch (v) {
    case PASS:
      return "PASS";
    case FAIL:
      return "FAIL";
    case SKIP:
      return "SKIP";
    case ERROR:
      return "ERROR";
    default:
      return "?";
  }
}

void print_log(const CaseResult& c, std::ostream& out) {
  for (const auto& o : c.log()) {
    char t[32];
    std::snprintf(t, sizeof t, "%9.1f", o.t_ms());
    out << "        " << t << " ms  " << o.dir() << "  " << o.text() << "\n";
  }
}

}  // namespace

std::string xml_escape(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (const char c : s) {
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      case '\'':
        o += "&apos;";
        break;
      default:
        // XML 1.0 forbids most control characters, even escaped.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t' && c != '\r')
          o += "?";
        else
          o += c;
    }
  }
  return o;
}

void print_summary(const Report& r, std::ostream& out, int verbose) {
  out << "sdp-conformance against " << r.peer() << "\n";
  for (const auto& c : r.cases()) {
    out << "  " << verdict_name(c.verdict()) << "  " << c.name();
    if (!c.rule().empty()) out << "  [" << c.rule(0) << "]";
    out << "\n";
    if (c.verdict() != PASS && !c.reason().empty()) out << "        " << c.reason() << "\n";
    if ((verbose >= 1 && (c.verdict() == FAIL || c.verdict() == ERROR)) || verbose >= 2)
      print_log(c, out);
  }
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.2f", r.seconds());
  out << r.cases_size() << " cases: " << r.passed() << " passed, " << r.failed() << " failed, "
      << r.skipped() << " skipped, " << r.errors() << " errors (" << secs << " s)\n";
}

bool write_junit(const Report& r, const std::string& path, std::string& error) {
  std::ofstream f(path);
  if (!f) {
    error = path + ": cannot write";
    return false;
  }
  f << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  f << "<testsuites>\n";
  f << "  <testsuite name=\"sdp-conformance\" tests=\"" << r.cases_size() << "\" failures=\""
    << r.failed() << "\" errors=\"" << r.errors() << "\" skipped=\"" << r.skipped() << "\" time=\""
    << r.seconds() << "\" timestamp=\"" << xml_escape(r.started()) << "\" hostname=\""
    << xml_escape(r.peer()) << "\">\n";
  for (const auto& c : r.cases()) {
    f << "    <testcase classname=\"sdp." << xml_escape(c.file().empty() ? "replay" : c.file())
      << "\" name=\"" << xml_escape(c.name()) << "\" time=\"" << c.seconds() << "\">\n";
    std::string rules;
    for (const auto& rule : c.rule()) rules += rule + "\n";
    switch (c.verdict()) {
      case FAIL:
        f << "      <failure message=\"" << xml_escape(c.reason()) << "\">" << xml_escape(rules)
          << "</failure>\n";
        break;
      case ERROR:
        f << "      <error message=\"" << xml_escape(c.reason()) << "\"/>\n";
        break;
      case SKIP:
        f << "      <skipped message=\"" << xml_escape(c.reason()) << "\"/>\n";
        break;
      default:
        break;
    }
    if (c.verdict() == FAIL || c.verdict() == ERROR) {
      f << "      <system-out>";
      for (const auto& o : c.log())
        f << xml_escape(std::to_string(o.t_ms()) + " " + o.dir() + " " + o.text()) << "\n";
      f << "</system-out>\n";
    }
    f << "    </testcase>\n";
  }
  f << "  </testsuite>\n</testsuites>\n";
  f.close();
  if (!f) {
    error = path + ": write failed";
    return false;
  }
  return true;
}

bool write_json(const Report& r, const std::string& path, std::string& error) {
  std::string json;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.always_print_primitive_fields = true;
  const auto st = google::protobuf::util::MessageToJsonString(r, &json, o);
  if (!st.ok()) {
    error = "JSON: " + std::string(st.message());
    return false;
  }
  std::ofstream f(path);
  f << json;
  f.close();
  if (!f) {
    error = path + ": cannot write";
    return false;
  }
  return true;
}

}  // namespace conformance

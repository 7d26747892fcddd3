// Running commands from tests: the ibsniff CLI, tshark, editcap.
#pragma once

#include <array>
#include <cstdio>
#include <string>

namespace ibsniff::test {

// Runs `cmd` through the shell; returns its standard output and sets *status (pclose's).
inline std::string run(const std::string& cmd, int* status) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) {
    *status = -1;
    return out;
  }
  std::array<char, 65536> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
  *status = pclose(f);
  return out;
}

// Single-quotes `s` for the shell.
inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'')
      q += "'\\''";
    else
      q += c;
  }
  return q + "'";
}

inline bool have_command(const std::string& name) {
  int st = 0;
  run("command -v " + name + " >/dev/null 2>&1", &st);
  return st == 0;
}

}  // namespace ibsniff::test

# Project-wide warning set; third-party headers are included as SYSTEM so they do not trip it.
add_library(infinisock_warnings INTERFACE)
target_compile_options(infinisock_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wnon-virtual-dtor
  -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wnull-dereference -Wimplicit-fallthrough
  $<$<BOOL:${INFINISOCK_WERROR}>:-Werror>)

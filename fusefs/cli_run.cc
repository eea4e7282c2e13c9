// Running a kvfs program's command line: parse, dispatch, and no exception escapes main().
#include <cstdio>
#include <exception>
#include <vector>

#include "fusefs/cli.h"

namespace kvfs::cli {

int ParseAndRun(CLI::App* app, const std::vector<Command>& commands, int argc, char** argv) {
  try {
    app->parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app->exit(e);
  }
  for (const Command& c : commands) {
    if (c.app->parsed()) return c.run();
  }
  return 2;
}

int GuardedMain(const char* program, int (*program_main)(int, char**), int argc, char** argv) {
  try {
    return program_main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace kvfs::cli

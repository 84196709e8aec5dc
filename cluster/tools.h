// The cluster's own commands (sbatch, scontrol, scancel, kubectl), found on a PATH the launcher
// passes in (library code reads no environment: docs/DESIGN.md section 1) and run without a
// shell, so no argument is ever re-parsed.
#pragma once

#include <string>
#include <vector>

namespace tandem::cluster {

// The first executable file `name` in the ':'-separated `path_env`; "" when there is none.
std::string find_tool(const std::string& name, const std::string& path_env);

// As find_tool, but throws IoError "NAME not found in PATH; <hint>" (a runtime failure: exit 1).
std::string require_tool(const std::string& name, const std::string& path_env,
                         const std::string& hint);

struct ToolResult {
  int status = -1;  // exit status, or 128 + signal
  std::string out;  // everything it wrote to stdout
  std::string err;  // everything it wrote to stderr
};

// Runs argv[0] (a path, as find_tool returns) with argv, this process's environment and stdin
// from /dev/null; blocks until it exits. Throws IoError when it cannot be started.
ToolResult run_tool(const std::vector<std::string>& argv);

}  // namespace tandem::cluster

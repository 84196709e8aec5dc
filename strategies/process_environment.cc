// Rank discovery from environment variables, in the order of docs/DESIGN.md section 5.2 (see
// environment.h). Values are parsed strictly: "3" is a rank, " 3", "3x", "-1" and "" are errors
// naming the variable.
#include "strategies/process_environment.h"

#include <cctype>
#include <climits>
#include <cstdlib>
#include <optional>

#include "core/base/error.h"

extern char** environ;

namespace tandem {
namespace {

// Reads the variables of one source; every error names the variable and why that source applies.
class Reader {
 public:
  Reader(const std::map<std::string, std::string>& env, std::string why)
      : env_(env), why_(std::move(why)) {}

  std::optional<std::string> get(const std::string& name) const {
    auto it = env_.find(name);
    if (it == env_.end() || it->second.empty()) return std::nullopt;
    return it->second;
  }

  std::string require(const std::string& name) const {
    std::optional<std::string> v = get(name);
    if (!v) fail(name + " is not set");
    return *v;
  }

  // A decimal integer in [lo, hi].
  int require_int(const std::string& name, int lo, int hi = INT_MAX) const {
    return parse(name, require(name), lo, hi);
  }
  std::optional<int> get_int(const std::string& name, int lo, int hi = INT_MAX) const {
    std::optional<std::string> v = get(name);
    if (!v) return std::nullopt;
    return parse(name, *v, lo, hi);
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw ConfigError("environment: " + what + " (" + why_ + ")");
  }

 private:
  int parse(const std::string& name, const std::string& value, int lo, int hi) const {
    bool digits = !value.empty() && value.size() <= 9;
    for (char c : value) digits = digits && std::isdigit(static_cast<unsigned char>(c));
    if (!digits) fail(str(name, "='", value, "' is not a non-negative integer"));
    int v = std::atoi(value.c_str());
    if (v < lo || v > hi) {
      if (hi == INT_MAX) fail(str(name, "=", v, " must be at least ", lo));
      fail(str(name, "=", v, " is out of range (expected ", lo, " to ", hi, ")"));
    }
    return v;
  }

  const std::map<std::string, std::string>& env_;
  std::string why_;
};

void check_rank_in(const Reader& r, const char* rank_name, int rank, const char* size_name,
                   int size) {
  if (rank >= size)
    r.fail(str(rank_name, "=", rank, " is out of range for ", size_name, "=", size,
               " (expected 0 to ", size - 1, ")"));
}

// The names a launcher gives the four rank variables.
struct RankNames {
  const char* world_size;
  const char* rank;
  const char* local_world_size;
  const char* local_rank;
};

// Reads and range-checks the world and node-local sizes and ranks.
void read_ranks(const Reader& r, const RankNames& n, ProcessEnvironment& pe) {
  pe.world_size = r.require_int(n.world_size, 1);
  pe.rank = r.require_int(n.rank, 0);
  check_rank_in(r, n.rank, pe.rank, n.world_size, pe.world_size);
  pe.local_world_size = r.require_int(n.local_world_size, 1, pe.world_size);
  pe.local_rank = r.require_int(n.local_rank, 0);
  check_rank_in(r, n.local_rank, pe.local_rank, n.local_world_size, pe.local_world_size);
}

ProcessEnvironment from_torchrun(const std::map<std::string, std::string>& env) {
  Reader r(env, "torchrun-style launch, because LOCAL_RANK is set");
  ProcessEnvironment pe;
  pe.source = "torchrun";
  read_ranks(r, {"WORLD_SIZE", "RANK", "LOCAL_WORLD_SIZE", "LOCAL_RANK"}, pe);
  // NODE_RANK from tandem launch; GROUP_RANK is torchrun's name for the node index.
  std::optional<int> node = r.get_int("NODE_RANK", 0);
  if (!node) node = r.get_int("GROUP_RANK", 0);
  pe.node_rank = node ? *node : (pe.rank - pe.local_rank) / pe.local_world_size;
  if (pe.world_size > 1) {
    pe.master_addr = r.require("MASTER_ADDR");
    pe.master_port = r.require_int("MASTER_PORT", 1, 65535);
  } else {
    if (auto a = r.get("MASTER_ADDR")) pe.master_addr = *a;
    if (auto p = r.get_int("MASTER_PORT", 1, 65535)) pe.master_port = *p;
  }
  return pe;
}

// Open MPI's OMPI_COMM_WORLD_NODE_RANK counts processes on the node across all jobs; it is not a
// node index. The node index follows from the default by-slot mapping (nodes filled in order).
ProcessEnvironment from_openmpi(const std::map<std::string, std::string>& env) {
  Reader r(env, "Open MPI launch, because OMPI_COMM_WORLD_RANK is set");
  ProcessEnvironment pe;
  pe.source = "openmpi";
  read_ranks(r,
             {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE",
              "OMPI_COMM_WORLD_LOCAL_RANK"},
             pe);
  r.get_int("OMPI_COMM_WORLD_NODE_RANK", 0);  // validated only (see above)
  pe.node_rank = (pe.rank - pe.local_rank) / pe.local_world_size;
  // The MPI backend needs no address; a store, if any, is where MASTER_ADDR says.
  pe.master_addr = pe.local_world_size == pe.world_size ? "127.0.0.1" : "";
  if (auto a = r.get("MASTER_ADDR")) pe.master_addr = *a;
  if (auto p = r.get_int("MASTER_PORT", 1, 65535)) pe.master_port = *p;
  return pe;
}

// An srun step (source "slurm"), or Open MPI ranks started by `srun --mpi=pmix` (source "pmix",
// rank from PMIX_RANK, sizes from Slurm).
ProcessEnvironment from_slurm(const std::map<std::string, std::string>& env, bool pmix) {
  Reader r(env, pmix ? "srun --mpi=pmix launch, because PMIX_RANK is set"
                     : "Slurm step, because SLURM_STEP_ID is set");
  ProcessEnvironment pe;
  pe.source = pmix ? "pmix" : "slurm";
  const char* rank_name = pmix ? "PMIX_RANK" : "SLURM_PROCID";
  pe.world_size = r.require_int("SLURM_STEP_NUM_TASKS", 1);
  pe.rank = r.require_int(rank_name, 0);
  check_rank_in(r, rank_name, pe.rank, "SLURM_STEP_NUM_TASKS", pe.world_size);
  pe.node_rank = r.require_int("SLURM_NODEID", 0);
  try {
    pe.local_world_size = slurm_tasks_on_node(r.require("SLURM_STEP_TASKS_PER_NODE"), pe.node_rank);
  } catch (const ConfigError& e) {
    r.fail(str("SLURM_STEP_TASKS_PER_NODE: ", e.what()));
  }
  if (pe.local_world_size > pe.world_size)
    r.fail(str("SLURM_STEP_TASKS_PER_NODE gives ", pe.local_world_size,
               " tasks on this node, more than SLURM_STEP_NUM_TASKS=", pe.world_size));
  pe.local_rank = r.require_int("SLURM_LOCALID", 0);
  check_rank_in(r, "SLURM_LOCALID", pe.local_rank, "this node's task count", pe.local_world_size);
  if (auto a = r.get("MASTER_ADDR")) {
    pe.master_addr = *a;
  } else {
    std::optional<std::string> list = r.get("SLURM_STEP_NODELIST");
    if (!list) list = r.get("SLURM_JOB_NODELIST");
    if (!list) r.fail("neither MASTER_ADDR nor SLURM_STEP_NODELIST nor SLURM_JOB_NODELIST is set");
    try {
      pe.master_addr = first_host_of_slurm_nodelist(*list);
    } catch (const ConfigError& e) {
      r.fail(str("SLURM node list: ", e.what()));
    }
  }
  if (auto p = r.get_int("MASTER_PORT", 1, 65535)) pe.master_port = *p;
  return pe;
}

bool is_set(const std::map<std::string, std::string>& env, const char* name) {
  auto it = env.find(name);
  return it != env.end() && !it->second.empty();
}

}  // namespace

std::string ProcessEnvironment::master_endpoint() const {
  // A bare IPv6 address needs brackets to carry a port.
  if (master_addr.find(':') != std::string::npos && master_addr.front() != '[')
    return str("[", master_addr, "]:", master_port);
  return str(master_addr, ":", master_port);
}

ProcessEnvironment detect_environment(const std::map<std::string, std::string>& env) {
  ProcessEnvironment pe;
  if (is_set(env, "LOCAL_RANK")) {
    pe = from_torchrun(env);
  } else if (is_set(env, "OMPI_COMM_WORLD_RANK")) {
    pe = from_openmpi(env);
  } else if (is_set(env, "PMIX_RANK")) {
    pe = from_slurm(env, /*pmix=*/true);
  } else if (is_set(env, "SLURM_STEP_ID")) {
    pe = from_slurm(env, /*pmix=*/false);
  } else {
    pe.source = "single";
    // Kubeflow's PyTorchJob sets RANK to the pod (node) index for torchrun; without LOCAL_RANK it
    // is not this process's rank.
    if (is_set(env, "RANK") || is_set(env, "WORLD_SIZE"))
      pe.notes.push_back(
          "RANK/WORLD_SIZE are set but LOCAL_RANK is not, so they were ignored (they may name a "
          "node, as in a Kubeflow PyTorchJob); training as a world of one -- start the workers "
          "with `tandem launch` for a distributed run");
  }

  Reader common(env, "tandem launch");
  if (auto t = common.get("TANDEM_JOB_TOKEN")) pe.job_token = *t;
  pe.tls = job_tls_from_environment(env);
  if (auto e = common.get("TANDEM_PS_ENDPOINTS")) pe.ps_endpoints = *e;
  if (auto p = common.get("TANDEM_SHM_PREFIX")) pe.shm_prefix = *p;
  if (auto i = common.get("TANDEM_SOCKET_IFNAME")) {
    pe.socket_ifname = *i;
  } else if (auto g = common.get("GLOO_SOCKET_IFNAME")) {
    pe.socket_ifname = *g;
  }
  std::optional<int> restarts = common.get_int("TANDEM_RESTART_COUNT", 0);
  if (!restarts) restarts = common.get_int("TORCHELASTIC_RESTART_COUNT", 0);
  pe.restart_count = restarts.value_or(0);
  pe.heartbeat_interval_ms = common.get_int("TANDEM_HEARTBEAT_INTERVAL_MS", 1).value_or(0);
  return pe;
}

std::map<std::string, std::string> current_environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string kv(*e);
    size_t eq = kv.find('=');
    if (eq == std::string::npos) continue;
    env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return env;
}

std::string first_host_of_slurm_nodelist(const std::string& nodelist) {
  // The first entry ends at the first comma outside brackets: "a[1-2,5],b" -> "a[1-2,5]".
  std::string first;
  int depth = 0;
  for (char c : nodelist) {
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (c == ',' && depth == 0) break;
    first.push_back(c);
  }
  TANDEM_CHECK_T(ConfigError, !first.empty() && depth == 0, "malformed host list '", nodelist, "'");
  size_t open = first.find('[');
  if (open == std::string::npos) return first;
  size_t close = first.find(']', open);
  TANDEM_CHECK_T(ConfigError, close == first.size() - 1 && close > open + 1,
                 "malformed host list '", nodelist, "'");
  // "[01-03,07]" -> "01": leading zeros are part of the host name.
  std::string range = first.substr(open + 1, close - open - 1);
  size_t end = 0;
  while (end < range.size() && std::isdigit(static_cast<unsigned char>(range[end]))) ++end;
  TANDEM_CHECK_T(ConfigError, end > 0, "malformed host list '", nodelist, "'");
  return first.substr(0, open) + range.substr(0, end);
}

int slurm_tasks_on_node(const std::string& tasks_per_node, int node_index) {
  // Entries "N" or "N(xM)" (N tasks on each of M nodes), comma separated; all of it is checked.
  auto bad = [&]() { return ConfigError(str("malformed task counts '", tasks_per_node, "'")); };
  const std::string& s = tasks_per_node;
  auto number = [&](size_t& i) {
    size_t j = i;
    while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
    if (j == i || j - i > 9) throw bad();
    int v = std::atoi(s.substr(i, j - i).c_str());
    if (v < 1) throw bad();
    i = j;
    return v;
  };
  int nodes = 0, found = -1;
  size_t i = 0;
  do {
    if (nodes > 0 && s[i++] != ',') throw bad();
    int tasks = number(i), repeat = 1;
    if (i < s.size() && s[i] == '(') {
      if (s.compare(i, 2, "(x") != 0) throw bad();
      i += 2;
      repeat = number(i);
      if (i >= s.size() || s[i++] != ')') throw bad();
    }
    if (found < 0 && node_index < nodes + repeat) found = tasks;
    nodes += repeat;
  } while (i < s.size());
  if (found < 0)
    throw ConfigError(str("'", s, "' lists ", nodes, " nodes; this is node ", node_index));
  return found;
}

}  // namespace tandem

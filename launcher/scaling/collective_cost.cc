#include "launcher/scaling/collective_cost.h"

#include <algorithm>
#include <cmath>

#include "core/base/error.h"

namespace tandem::scaling {
namespace {

// Gbit/s -> bytes per millisecond.
double bytes_per_ms(double gbps, double efficiency) {
  return gbps * efficiency * 1e9 / 8.0 / 1e3;
}

}  // namespace

Algorithm parse_algorithm(const std::string& name, const std::string& flag) {
  if (name == "ring") return Algorithm::kRing;
  if (name == "tree") return Algorithm::kTree;
  if (name == "hierarchical") return Algorithm::kHierarchical;
  throw ConfigError(str(flag, ": expected ring, tree or hierarchical, got '", name, "'"));
}

const char* algorithm_name(Algorithm a) {
  switch (a) {
    case Algorithm::kRing:
      return "ring";
    case Algorithm::kTree:
      return "tree";
    case Algorithm::kHierarchical:
      return "hierarchical";
  }
  return "?";
}

double allreduce_ms(double bytes, const ClusterSpec& c, Algorithm algorithm) {
  const int n = c.ranks();
  if (n <= 1 || bytes <= 0) return 0;
  const double alpha_ms = c.latency_us / 1e3;
  const double intra = bytes_per_ms(c.intra_gbps, c.bandwidth_efficiency);
  const double inter = bytes_per_ms(c.inter_gbps, c.bandwidth_efficiency);
  // The slowest link a flat algorithm crosses.
  const double flat = c.nodes == 1 ? intra : std::min(intra, inter);
  switch (algorithm) {
    case Algorithm::kRing:
      return 2.0 * (n - 1) * alpha_ms + 2.0 * (n - 1) / n * bytes / flat;
    case Algorithm::kTree:
      return 2.0 * std::ceil(std::log2(static_cast<double>(n))) * alpha_ms + 2.0 * bytes / flat;
    case Algorithm::kHierarchical: {
      const int p = c.procs_per_node, nodes = c.nodes;
      double t = 0;
      if (p > 1) t += 2.0 * ((p - 1) * alpha_ms + static_cast<double>(p - 1) / p * bytes / intra);
      if (nodes > 1) t += 2.0 * (nodes - 1) * alpha_ms + 2.0 * (nodes - 1) / nodes * bytes / inter;
      return t;
    }
  }
  return 0;
}

}  // namespace tandem::scaling

// HostLayout: which ranks share a host, from each rank's host name. The hierarchical communicator
// reduces within a host through shared memory and across hosts between ranks of the same local
// index, so it needs, for every global rank, its host and its index on that host.
//
// The decision: hosts are numbered in order of their lowest rank, and ranks within a host in rank
// order -- whatever order the launcher placed ranks in (host-major under `tandem launch` and
// Slurm's block distribution, round-robin under `mpirun --map-by node`), every rank computes the
// same layout from the same list of names.
#pragma once

#include <string>
#include <vector>

namespace tandem {

struct HostLayout {
  std::vector<int> host_of;             // [world]: host index of each rank
  std::vector<int> local_of;            // [world]: index of each rank among its host's ranks
  std::vector<std::string> host_names;  // [hosts]
  std::vector<int> ranks_on_host;       // [hosts]

  int world() const { return static_cast<int>(host_of.size()); }
  int hosts() const { return static_cast<int>(host_names.size()); }
  // Every host runs the same number of ranks (the hierarchical all-reduce needs it).
  bool uniform() const;
  // The global rank with local index `local` on host `host`; -1 when there is none.
  int rank_at(int host, int local) const;

  // names[r]: the host of rank r (any string that is equal exactly for ranks sharing a host).
  static HostLayout from_host_names(const std::vector<std::string>& names);
};

}  // namespace tandem

// The time of one all-reduce on a cluster, in the alpha-beta model: every message step costs the
// latency alpha, every byte crosses the slowest link on its path at that link's bandwidth.
//
// The decision: one formula per algorithm, each the textbook count of steps and bytes per rank,
// with no per-message-size tuning -- the point is to compare choices, not to reproduce NCCL:
//   ring          2(N-1) alpha + 2(N-1)/N * S / B       B = intra link on one node, else the
//                                                       slower of intra and the node's network
//   tree          2 ceil(log2 N) alpha + 2 S / B        NCCL's double binary tree: pipelined, each
//                                                       rank sends and receives about S twice
//   hierarchical  intra reduce-scatter + inter-node ring all-reduce + intra all-gather:
//                 2 [(P-1) alpha + (P-1)/P * S / B_intra] + 2(n-1) alpha + 2(n-1)/n * S / B_inter
// with N = nodes * P ranks, P per node, n nodes. B_inter is the node's network bandwidth (all its
// NICs together): in the hierarchical scheme the P inter-node rings, each of S/P, share it; a flat
// ring (NCCL uses one ring per NIC) crosses each node boundary with all of S. Bandwidths are link
// rates times bandwidth_efficiency, the fraction a collective achieves in practice.
#pragma once

#include <string>

namespace tandem::scaling {

enum class Algorithm { kRing, kTree, kHierarchical };

// "ring", "tree", "hierarchical"; ConfigError naming `flag` otherwise.
Algorithm parse_algorithm(const std::string& name, const std::string& flag);
const char* algorithm_name(Algorithm a);

struct ClusterSpec {
  int nodes = 1;
  int procs_per_node = 8;           // ranks (GPUs) per node
  double intra_gbps = 2400;         // per GPU, within a node (NVLink, PCIe), Gbit/s
  double inter_gbps = 200;          // per node, all its NICs together, Gbit/s
  double latency_us = 5;            // alpha: per message step
  double bandwidth_efficiency = 1;  // achieved fraction of the link rates

  int ranks() const { return nodes * procs_per_node; }
};

// Milliseconds for an all-reduce of `bytes` over every rank of the cluster; 0 for one rank.
double allreduce_ms(double bytes, const ClusterSpec& cluster, Algorithm algorithm);

}  // namespace tandem::scaling

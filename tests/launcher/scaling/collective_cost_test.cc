// All-reduce costs in the alpha-beta model against hand-computed values, and the crossover where
// the double binary tree's log2(N) latency beats the ring's 2(N-1) steps.
#include "launcher/scaling/collective_cost.h"

#include <gtest/gtest.h>

#include "core/base/error.h"

namespace tandem::scaling {
namespace {

ClusterSpec one_node_of_four() {
  ClusterSpec c;
  c.nodes = 1;
  c.procs_per_node = 4;
  c.intra_gbps = 80;  // 10e6 bytes per ms
  c.inter_gbps = 1;   // unused on one node
  c.latency_us = 5;
  c.bandwidth_efficiency = 1;
  return c;
}

TEST(CollectiveCost, OneNodeUsesTheIntraLinkOnly) {
  const ClusterSpec c = one_node_of_four();
  // ring: 2*3*0.005 + 2*3/4 * 20e6 / 10e6 = 0.03 + 3 ms
  EXPECT_NEAR(allreduce_ms(20e6, c, Algorithm::kRing), 3.03, 1e-12);
  // tree: 2*log2(4)*0.005 + 2 * 20e6 / 10e6 = 0.02 + 4 ms
  EXPECT_NEAR(allreduce_ms(20e6, c, Algorithm::kTree), 4.02, 1e-12);
  // hierarchical on one node is the intra reduce-scatter + all-gather: the ring's cost.
  EXPECT_NEAR(allreduce_ms(20e6, c, Algorithm::kHierarchical), 3.03, 1e-12);
}

TEST(CollectiveCost, ManyNodesPayTheNetworkAndHierarchicalSavesLatency) {
  ClusterSpec c;
  c.nodes = 4;
  c.procs_per_node = 8;
  c.intra_gbps = 800;  // 1e8 bytes/ms, 8e7 at 80%
  c.inter_gbps = 100;  // 1.25e7 bytes/ms, 1e7 at 80%
  c.latency_us = 10;
  c.bandwidth_efficiency = 0.8;
  // ring over 32 ranks, bottleneck the network: 2*31*0.01 + 2*31/32 * 32e6 / 1e7 = 0.62 + 6.2
  EXPECT_NEAR(allreduce_ms(32e6, c, Algorithm::kRing), 6.82, 1e-9);
  // tree: 2*5*0.01 + 2 * 32e6 / 1e7 = 0.1 + 6.4
  EXPECT_NEAR(allreduce_ms(32e6, c, Algorithm::kTree), 6.5, 1e-9);
  // hierarchical: intra 2*(7*0.01 + 7/8 * 32e6/8e7) = 0.84; inter 2*3*0.01 + 2*3/4 * 32e6/1e7
  // = 4.86
  EXPECT_NEAR(allreduce_ms(32e6, c, Algorithm::kHierarchical), 5.70, 1e-9);
}

TEST(CollectiveCost, OneRankOrNoBytesCostNothing) {
  ClusterSpec c = one_node_of_four();
  c.procs_per_node = 1;
  EXPECT_EQ(allreduce_ms(1e9, c, Algorithm::kRing), 0);
  EXPECT_EQ(allreduce_ms(0, one_node_of_four(), Algorithm::kTree), 0);
}

TEST(CollectiveCost, TreeWinsSmallMessagesOnManyRanksRingWinsLargeOnes) {
  // 16 nodes of one rank, 100 Gbit/s everywhere (1.25e7 bytes/ms), alpha 5 us. ring - tree =
  // 2 alpha (N - 1 - log2 N) - 2 S / (N B): equal at S* = alpha B N (N - 1 - log2 N)
  // = 0.005 * 1.25e7 * 16 * 11 = 11e6 bytes, both 1.8 ms.
  ClusterSpec c;
  c.nodes = 16;
  c.procs_per_node = 1;
  c.intra_gbps = 100;
  c.inter_gbps = 100;
  c.latency_us = 5;
  c.bandwidth_efficiency = 1;
  EXPECT_NEAR(allreduce_ms(11e6, c, Algorithm::kRing), 1.8, 1e-12);
  EXPECT_NEAR(allreduce_ms(11e6, c, Algorithm::kTree), 1.8, 1e-12);
  // 1 MB: ring 0.15 + 0.15, tree 0.04 + 0.16.
  EXPECT_NEAR(allreduce_ms(1e6, c, Algorithm::kRing), 0.30, 1e-12);
  EXPECT_NEAR(allreduce_ms(1e6, c, Algorithm::kTree), 0.20, 1e-12);
  // 100 MB: ring 0.15 + 15, tree 0.04 + 16.
  EXPECT_NEAR(allreduce_ms(100e6, c, Algorithm::kRing), 15.15, 1e-9);
  EXPECT_NEAR(allreduce_ms(100e6, c, Algorithm::kTree), 16.04, 1e-9);
  // The same 1 MB on 4 ranks: the ring's latency is small there and it wins (0.15 vs 0.18).
  c.nodes = 4;
  EXPECT_NEAR(allreduce_ms(1e6, c, Algorithm::kRing), 0.15, 1e-12);
  EXPECT_NEAR(allreduce_ms(1e6, c, Algorithm::kTree), 0.18, 1e-12);
}

TEST(CollectiveCost, ParsesAlgorithmNamesAndNamesTheFlagOnError) {
  EXPECT_EQ(parse_algorithm("hierarchical", "--algorithm"), Algorithm::kHierarchical);
  EXPECT_STREQ(algorithm_name(Algorithm::kTree), "tree");
  try {
    parse_algorithm("rings", "--algorithm");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "--algorithm: expected ring, tree or hierarchical, got 'rings'");
  }
}

}  // namespace
}  // namespace tandem::scaling

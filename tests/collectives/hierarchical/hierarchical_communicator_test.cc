// Hierarchical all-reduce (collectives/hierarchical): ranks as threads of this process placed on
// named "hosts" (the layout comes from the names, so two threads may be one host and two another),
// each with real Gloo groups over a Store served from the test and shared memory inside a "host".
// Checked against exact references: integer-valued patterns whose sums, averages and maxima are
// exact in f32 and f64, for buffers from allocate_shared (the hierarchical path) and plain tensors
// (the flat path); the in-place all_gather of DDP's sharded update; the other collectives; f64
// random values against the flat Gloo all-reduce (equal to ~1e-15 relative).
#include "collectives/hierarchical/hierarchical_communicator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "collectives/gloo/gloo_communicator.h"
#include "collectives/hierarchical/make_hierarchical.h"
#include "collectives/store/job_token.h"
#include "collectives/store/store_server.h"
#include "core/random/philox.h"

namespace tandem {
namespace {

using namespace std::chrono_literals;

TEST(HostLayout, NumbersHostsByTheirLowestRankAndRanksWithinAHostInRankOrder) {
  // mpirun --map-by node: ranks alternate between hosts.
  HostLayout l = HostLayout::from_host_names({"b", "a", "b", "a", "b", "a"});
  EXPECT_EQ(l.hosts(), 2);
  EXPECT_EQ(l.host_names, (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(l.host_of, (std::vector<int>{0, 1, 0, 1, 0, 1}));
  EXPECT_EQ(l.local_of, (std::vector<int>{0, 0, 1, 1, 2, 2}));
  EXPECT_TRUE(l.uniform());
  EXPECT_EQ(l.rank_at(1, 2), 5);
  EXPECT_EQ(l.rank_at(0, 1), 2);
  EXPECT_EQ(l.rank_at(2, 0), -1);
  EXPECT_TRUE(calls_for_hierarchy(l));
  EXPECT_FALSE(HostLayout::from_host_names({"a", "a", "b"}).uniform());
  EXPECT_FALSE(calls_for_hierarchy(HostLayout::from_host_names({"a", "a", "b"})));
  EXPECT_FALSE(calls_for_hierarchy(HostLayout::from_host_names({"a", "b", "c"})));  // 1 per host
  EXPECT_FALSE(calls_for_hierarchy(HostLayout::from_host_names({"a", "a"})));       // one host
}

// fn(rank, hierarchical communicator, a flat Gloo communicator over the same ranks) on threads
// whose hosts are `hosts[rank]`.
void run_ranks(const std::vector<std::string>& hosts,
               const std::function<void(int, Communicator&, Communicator&)>& fn) {
  const int world = static_cast<int>(hosts.size());
  const std::string token = generate_job_token();
  StoreServer server("127.0.0.1", 0, token);
  std::vector<std::thread> threads;
  std::vector<std::string> errors(world);
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        StoreClient client(server.endpoint(), token, 30'000ms);
        CommOptions opts;
        opts.timeout = 60'000ms;
        HostLayout layout = exchange_host_layout(client, "test", r, world, hosts[r], 30'000ms);
        ASSERT_TRUE(calls_for_hierarchy(layout));
        auto comm = make_hierarchical_gloo(client, layout, r, GlooOptions{}, "hier-test", opts);
        GlooOptions flat_options;
        flat_options.key_prefix = "flat-test";
        GlooCommunicator flat(client, r, world, flat_options, opts);
        fn(r, *comm, flat);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
}

// Element i of rank r: (r + 1) * (i % 7 - 3): every sum, average and max is exact.
std::vector<double> pattern(int rank, int64_t n) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = (rank + 1) * static_cast<double>(i % 7 - 3);
  return v;
}

void expect_reduced(const std::vector<double>& got, int64_t n, ReduceOp op, int world,
                    const std::string& what) {
  const double W = world, tri = W * (W + 1) / 2;
  ASSERT_EQ(static_cast<int64_t>(got.size()), n);
  for (int64_t i = 0; i < n; ++i) {
    const double k = static_cast<double>(i % 7 - 3);
    const double want = op == ReduceOp::kSum   ? tri * k
                        : op == ReduceOp::kAvg ? tri * k / W
                                               : (k >= 0 ? W * k : k);
    if (got[i] != want) {
      ADD_FAILURE() << what << " " << reduce_op_name(op) << ": element " << i << " is " << got[i]
                    << ", expected " << want;
      return;
    }
  }
}

TEST(HierarchicalCommunicator, AllReduceOfSharedBuffersIsExactOnTwoHostsOfTwoAndThreeHostsOfTwo) {
  for (const std::vector<std::string>& hosts :
       {std::vector<std::string>{"h0", "h0", "h1", "h1"},
        std::vector<std::string>{"h0", "h1", "h2", "h0", "h1", "h2"}}) {
    const int world = static_cast<int>(hosts.size());
    SCOPED_TRACE(world);
    run_ranks(hosts, [world](int rank, Communicator& comm, Communicator&) {
      EXPECT_EQ(comm.backend_name(), "hierarchical(shm+gloo, gloo)");
      for (DType dtype : {DType::kF32, DType::kF64}) {
        // 0, 1 and 3 elements leave some local ranks an empty slice.
        for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{3}, int64_t{1001}, int64_t{700'003}}) {
          Tensor buffer = comm.allocate_shared(n + 5, dtype, Device::cpu());
          for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax}) {
            // A view at an offset, as DDP's buckets are.
            Tensor x = buffer.slice(0, 5, 5 + n);
            x.copy_(from_vector(pattern(rank, n), {n}, dtype));
            comm.all_reduce(x, op)->wait(60'000ms);
            expect_reduced(x.to_vector(), n, op, world, str(dtype_name(dtype), " n=", n));
          }
        }
      }
    });
  }
}

TEST(HierarchicalCommunicator, PlainTensorsAndOtherCollectivesGoThroughTheFlatGroupInIssueOrder) {
  const std::vector<std::string> hosts = {"a", "a", "b", "b"};
  run_ranks(hosts, [](int rank, Communicator& comm, Communicator&) {
    Tensor plain = from_vector(pattern(rank, 10), {10}, DType::kF32);
    Tensor shared = comm.allocate_shared(10, DType::kF64, Device::cpu());
    shared.copy_(from_vector(pattern(rank, 10), {10}, DType::kF64));
    Tensor root = full({4}, rank == 2 ? 7.0 : 0.0, DType::kF32);
    // Issued back to back, waited in reverse: they complete in issue order all the same.
    auto w1 = comm.all_reduce(plain, ReduceOp::kSum);
    auto w2 = comm.all_reduce(shared, ReduceOp::kMax);
    auto w3 = comm.broadcast(root, 2);
    auto w4 = comm.barrier();
    EXPECT_EQ(w4->sequence_number(), 3u);
    w4->wait(60'000ms);
    EXPECT_TRUE(w1->is_completed());
    w3->wait(60'000ms);
    w2->wait(60'000ms);
    w1->wait(60'000ms);
    expect_reduced(plain.to_vector(), 10, ReduceOp::kSum, 4, "plain");
    expect_reduced(shared.to_vector(), 10, ReduceOp::kMax, 4, "shared");
    EXPECT_EQ(root.to_vector(), std::vector<double>(4, 7.0));
    // reduce_scatter: block `rank` of the sum.
    Tensor in = from_vector(pattern(rank, 8), {8}, DType::kF32), out = zeros({2}, DType::kF32);
    comm.reduce_scatter(in, out, ReduceOp::kSum)->wait(60'000ms);
    std::vector<double> sum(8);
    for (int r = 0; r < 4; ++r)
      for (int i = 0; i < 8; ++i) sum[i] += pattern(r, 8)[i];
    EXPECT_EQ(out.to_vector(),
              std::vector<double>(sum.begin() + 2 * rank, sum.begin() + 2 * rank + 2));
  });
}

TEST(HierarchicalCommunicator, InPlaceAllGatherFillsEveryBlockOfEveryCopyWhateverTheRankOrder) {
  // Ranks alternate between hosts (mpirun --map-by node): the blocks a rank receives across hosts
  // are not contiguous.
  const std::vector<std::string> hosts = {"x", "y", "x", "y", "x", "y"};
  run_ranks(hosts, [](int rank, Communicator& comm, Communicator&) {
    for (int64_t b : {int64_t{1}, int64_t{5}, int64_t{100'001}}) {
      Tensor flat = comm.allocate_shared(6 * b, DType::kF32, Device::cpu());
      Tensor mine = flat.slice(0, rank * b, (rank + 1) * b);
      mine.copy_(from_vector(pattern(rank, b), {b}, DType::kF32));
      comm.all_gather(mine, flat)->wait(60'000ms);
      const std::vector<double> got = flat.to_vector();
      for (int r = 0; r < 6; ++r) {
        const std::vector<double> want = pattern(r, b);
        ASSERT_TRUE(std::equal(want.begin(), want.end(), got.begin() + r * b))
            << "b=" << b << " block " << r << " on rank " << rank;
      }
    }
  });
}

TEST(HierarchicalCommunicator, F64AllReduceAgreesWithTheFlatRingToRounding) {
  const std::vector<std::string> hosts = {"a", "a", "b", "b"};
  run_ranks(hosts, [](int rank, Communicator& comm, Communicator& flat) {
    const int64_t n = 50'000;
    Generator rng(1234, static_cast<uint64_t>(rank));
    std::vector<double> v(n);
    for (double& x : v) x = rng.next_double() * 2.0 - 1.0;
    Tensor h = comm.allocate_shared(n, DType::kF64, Device::cpu());
    h.copy_(from_vector(v, {n}, DType::kF64));
    Tensor f = from_vector(v, {n}, DType::kF64);
    comm.all_reduce(h, ReduceOp::kAvg)->wait(60'000ms);
    flat.all_reduce(f, ReduceOp::kAvg)->wait(60'000ms);
    const std::vector<double> a = h.to_vector(), b = f.to_vector();
    double worst = 0;
    for (int64_t i = 0; i < n; ++i)
      worst = std::max(worst, std::abs(a[i] - b[i]) / std::max(1e-3, std::abs(b[i])));
    EXPECT_LT(worst, 1e-14);
  });
}

}  // namespace
}  // namespace tandem

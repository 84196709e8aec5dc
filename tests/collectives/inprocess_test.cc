// The in-process backend: every collective at world sizes 2 and 4, on 0, 1, 7 and 1,000,003
// elements, in f32, f64 and bf16, with inputs whose exact results are known; results independent
// of arrival order; timeouts and mismatches that name the ranks.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <random>
#include <thread>

#include "collectives/inprocess/inprocess_group.h"
#include "core/base/error.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::run_threads;

const std::vector<int> kWorldSizes = {2, 4};
const std::vector<int64_t> kSizes = {0, 1, 7, 1'000'003};
const std::vector<DType> kFloatTypes = {DType::kF32, DType::kF64, DType::kBF16};

// Small integers in [-8, 8], different per rank and element: sums of four, and their halves and
// quarters, are exact in bf16 (8 significant bits) as in f32 and f64.
double value(int rank, int64_t i) {
  return static_cast<double>((i * 7 + rank * 3) % 17 - 8);
}

double reduce_values(ReduceOp op, int world, int64_t i) {
  double acc = value(0, i);
  for (int r = 1; r < world; ++r)
    acc = op == ReduceOp::kMax ? std::max(acc, value(r, i)) : acc + value(r, i);
  return op == ReduceOp::kAvg ? acc / world : acc;
}

Tensor tensor_of(int64_t n, DType dtype, const std::function<double(int64_t)>& f) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = f(i);
  return from_vector(v, {n}, dtype);
}

// Exact equality, compared bytewise (every expected value is exact, none is -0 or NaN); on a
// difference, names the first differing element rather than dumping a million.
void expect_equal(const Tensor& got, const Tensor& expected, const std::string& what) {
  ASSERT_EQ(got.numel(), expected.numel()) << what;
  ASSERT_EQ(got.dtype(), expected.dtype()) << what;
  size_t bytes = got.numel() * dtype_size(got.dtype());
  if (bytes == 0 || std::memcmp(got.raw_data(), expected.raw_data(), bytes) == 0) return;
  std::vector<double> g = got.to_vector(), e = expected.to_vector();
  for (size_t i = 0; i < g.size(); ++i)
    if (g[i] != e[i]) {
      ADD_FAILURE() << what << ": element " << i << " is " << g[i] << ", expected " << e[i];
      return;
    }
}

std::string label(int world, int64_t n, DType dtype, int rank) {
  return str("world ", world, ", ", n, " elements, ", dtype_name(dtype), ", rank ", rank);
}

// Calls fn(world, n, dtype, inputs) for every case, with inputs[r] = rank r's `blocks` x n values.
void for_each_case(int blocks_per_rank,
                   const std::function<void(int, int64_t, DType, const std::vector<Tensor>&)>& fn) {
  for (int world : kWorldSizes)
    for (int64_t n : kSizes)
      for (DType dtype : kFloatTypes) {
        int64_t numel = (blocks_per_rank ? blocks_per_rank : world) * n;
        std::vector<Tensor> inputs;
        for (int r = 0; r < world; ++r)
          inputs.push_back(tensor_of(numel, dtype, [&](int64_t i) { return value(r, i); }));
        fn(world, n, dtype, inputs);
      }
}

constexpr ReduceOp kOps[] = {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax};

TEST(InProcess, AllReduceSumsAveragesAndMaxesExactly) {
  for_each_case(1, [](int world, int64_t n, DType dtype, const std::vector<Tensor>& inputs) {
    for (ReduceOp op : kOps) {
      auto comms = InProcessGroup::create(world);
      std::vector<Tensor> t;
      for (const Tensor& in : inputs) t.push_back(in.clone());
      run_threads(world, [&](int r) { comms[r]->all_reduce(t[r], op)->wait(10s); });
      Tensor expected = tensor_of(n, dtype, [&](int64_t i) { return reduce_values(op, world, i); });
      for (int r = 0; r < world; ++r)
        expect_equal(t[r], expected, label(world, n, dtype, r) + ", " + reduce_op_name(op));
    }
  });
}

TEST(InProcess, BroadcastCopiesTheRootEverywhere) {
  for_each_case(1, [](int world, int64_t n, DType dtype, const std::vector<Tensor>& inputs) {
    const int root = 1;
    auto comms = InProcessGroup::create(world);
    std::vector<Tensor> t;
    for (const Tensor& in : inputs) t.push_back(in.clone());
    run_threads(world, [&](int r) { comms[r]->broadcast(t[r], root)->wait(10s); });
    for (int r = 0; r < world; ++r) expect_equal(t[r], inputs[root], label(world, n, dtype, r));
  });
}

TEST(InProcess, AllGatherPlacesEachRankAtItsBlock) {
  for_each_case(1, [](int world, int64_t n, DType dtype, const std::vector<Tensor>& inputs) {
    auto comms = InProcessGroup::create(world);
    std::vector<Tensor> out;
    for (int r = 0; r < world; ++r) out.push_back(full({world * n}, 99.0, dtype));
    run_threads(world, [&](int r) { comms[r]->all_gather(inputs[r], out[r])->wait(10s); });
    Tensor expected = tensor_of(world * n, dtype, [&](int64_t j) { return value(j / n, j % n); });
    for (int r = 0; r < world; ++r) expect_equal(out[r], expected, label(world, n, dtype, r));
  });
}

TEST(InProcess, ReduceScatterLeavesEachRankItsReducedBlock) {
  // Inputs of world x n elements per rank (blocks_per_rank 0 means world).
  for_each_case(0, [](int world, int64_t n, DType dtype, const std::vector<Tensor>& inputs) {
    for (ReduceOp op : kOps) {
      auto comms = InProcessGroup::create(world);
      std::vector<Tensor> out;
      for (int r = 0; r < world; ++r) out.push_back(full({n}, 99.0, dtype));
      run_threads(world,
                  [&](int r) { comms[r]->reduce_scatter(inputs[r], out[r], op)->wait(10s); });
      for (int r = 0; r < world; ++r) {
        Tensor expected =
            tensor_of(n, dtype, [&](int64_t i) { return reduce_values(op, world, r * n + i); });
        expect_equal(out[r], expected, label(world, n, dtype, r) + ", " + reduce_op_name(op));
      }
    }
  });
}

TEST(InProcess, IntegersSumAndMaxButRefuseAverage) {
  auto comms = InProcessGroup::create(3);
  for (DType dtype : {DType::kI32, DType::kI64}) {
    std::vector<Tensor> sum(3), mx(3);
    for (int r = 0; r < 3; ++r) {
      sum[r] = from_vector({double(r), 1e6, -double(r) * 1000}, {3}, dtype);
      mx[r] = from_vector({double(r), -double(r), 7}, {3}, dtype);
    }
    run_threads(3, [&](int r) {
      comms[r]->all_reduce(sum[r], ReduceOp::kSum)->wait(5s);
      comms[r]->all_reduce(mx[r], ReduceOp::kMax)->wait(5s);
    });
    for (int r = 0; r < 3; ++r) {
      EXPECT_EQ(sum[r].to_vector(), (std::vector<double>{3, 3e6, -3000}));
      EXPECT_EQ(mx[r].to_vector(), (std::vector<double>{2, 0, 7}));
    }
    Tensor t = zeros({4}, dtype);
    EXPECT_THROW(comms[0]->all_reduce(t, ReduceOp::kAvg), TypeError);
  }
}

TEST(InProcess, Bf16IsReducedInF32AndRoundedOnce) {
  // 256 + 1 + 1: rounding after each addition would give 256 twice (ties to even), once gives 258.
  auto comms = InProcessGroup::create(3);
  std::vector<Tensor> t = {from_vector({256}, {1}, DType::kBF16),
                           from_vector({1}, {1}, DType::kBF16),
                           from_vector({1}, {1}, DType::kBF16)};
  run_threads(3, [&](int r) { comms[r]->all_reduce(t[r], ReduceOp::kSum)->wait(5s); });
  for (int r = 0; r < 3; ++r) EXPECT_EQ(t[r].item(), 258.0);
}

TEST(InProcess, IssuingReturnsAtOnceAndTheLastArrivalCompletesEveryone) {
  auto comms = InProcessGroup::create(2);
  Tensor a = from_vector({1, 2}, {2}), b = from_vector({10, 20}, {2});
  std::unique_ptr<Work> wa = comms[0]->all_reduce(a, ReduceOp::kSum);  // rank 1 not there yet
  EXPECT_FALSE(wa->is_completed());
  EXPECT_EQ(wa->sequence_number(), 0u);
  EXPECT_EQ(a.to_vector(), (std::vector<double>{1, 2}));
  std::unique_ptr<Work> wb = comms[1]->all_reduce(b, ReduceOp::kSum);
  EXPECT_TRUE(wa->is_completed());
  EXPECT_TRUE(wb->is_completed());
  wa->wait(0ms);
  EXPECT_EQ(a.to_vector(), (std::vector<double>{11, 22}));
  EXPECT_EQ(b.to_vector(), (std::vector<double>{11, 22}));
  std::unique_ptr<Work> barrier = comms[1]->barrier();
  EXPECT_EQ(barrier->sequence_number(), 1u);
  EXPECT_FALSE(barrier->is_completed());
  comms[0]->barrier()->wait(0ms);
  EXPECT_TRUE(barrier->is_completed());
}

TEST(InProcess, BarrierReleasesNoRankBeforeAllArrive) {
  const int world = 4;
  auto comms = InProcessGroup::create(world);
  std::atomic<int> arrived{0};
  std::vector<int> seen(world);
  run_threads(world, [&](int r) {
    std::this_thread::sleep_for(std::chrono::milliseconds(30 * r));
    ++arrived;
    comms[r]->barrier()->wait(5s);
    seen[r] = arrived.load();
  });
  EXPECT_EQ(seen, (std::vector<int>(world, world)));
}

TEST(InProcess, ResultsAreIdenticalWhicheverRankArrivesLast) {
  // Floats of very different magnitudes: their sum depends on the order of the additions, so
  // any dependence on arrival order would show.
  const int world = 4;
  const int64_t n = 10007;
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> mantissa(-1, 1);
  std::uniform_int_distribution<int> exponent(-12, 12);
  std::vector<std::vector<double>> inputs(world, std::vector<double>(n));
  for (auto& v : inputs)
    for (double& x : v) x = std::ldexp(mantissa(gen), exponent(gen));
  std::vector<double> expected(n);  // rank order, in f32
  for (int64_t i = 0; i < n; ++i) {
    float acc = static_cast<float>(inputs[0][i]);
    for (int r = 1; r < world; ++r) acc += static_cast<float>(inputs[r][i]);
    expected[i] = acc;
  }
  std::uniform_int_distribution<int> sleep_ms(0, 15);
  for (int trial = 0; trial < 12; ++trial) {
    auto comms = InProcessGroup::create(world);
    std::vector<Tensor> t(world);
    std::vector<int> delay(world);
    for (int r = 0; r < world; ++r) {
      t[r] = from_vector(inputs[r], {n});
      delay[r] = sleep_ms(gen);
    }
    delay[trial % world] = 40;  // each rank in turn arrives last
    run_threads(world, [&](int r) {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay[r]));
      comms[r]->all_reduce(t[r], ReduceOp::kSum)->wait(5s);
    });
    for (int r = 0; r < world; ++r)
      ASSERT_EQ(t[r].to_vector(), expected) << "trial " << trial << ", rank " << r;
  }
}

TEST(InProcess, RankThatNeverCallsIsNamedWhenTheOthersTimeOut) {
  auto comms = InProcessGroup::create(4);
  std::vector<std::string> errors(2);
  Clock::time_point start = Clock::now();
  run_threads(2, [&](int r) {
    Tensor t = ones({16});
    try {
      comms[r]->all_reduce(t, ReduceOp::kSum)->wait(300ms);
    } catch (const TimeoutError& e) {
      errors[r] = e.what();
    }
  });
  int64_t elapsed =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  for (const std::string& e : errors)
    EXPECT_EQ(e, "all_reduce #0 timed out after 300 ms: ranks 2, 3 did not arrive");
  EXPECT_GE(elapsed, 290);
  EXPECT_LT(elapsed, 2000);

  auto three = InProcessGroup::create(3);
  Tensor a = ones({4}), b = ones({4}), c = ones({4});
  auto w0 = three[0]->broadcast(a, 0);  // #0 with everyone
  auto w1 = three[1]->broadcast(b, 0);
  three[2]->broadcast(c, 0)->wait(1s);
  auto w = three[1]->barrier();  // #1: ranks 0 and 2 never come
  try {
    w->wait(100ms);
    ADD_FAILURE() << "did not time out";
  } catch (const TimeoutError& e) {
    EXPECT_EQ(std::string(e.what()),
              "barrier #1 timed out after 100 ms: ranks 0, 2 did not arrive");
  }
}

TEST(InProcess, DifferentCallsUnderOneSequenceNumberNameBothRanks) {
  auto comms = InProcessGroup::create(2);
  std::vector<std::string> errors(2);
  run_threads(2, [&](int r) {
    Tensor big = ones({1000}), small = ones({10});
    try {
      if (r == 0)
        comms[r]->all_reduce(big, ReduceOp::kSum)->wait(2s);
      else
        comms[r]->broadcast(small, 0)->wait(2s);
    } catch (const CommError& e) {
      errors[r] = e.what();
    }
  });
  for (const std::string& e : errors)
    EXPECT_NE(e.find("collective #0 mismatch: rank 0 called all_reduce(f32, [1000], sum), rank 1 "
                     "called broadcast(f32, [10], root 0)"),
              std::string::npos)
        << e;
}

TEST(InProcess, BadArgumentsAreRefusedBeforeAnythingIsIssued) {
  auto comms = InProcessGroup::create(2);
  Tensor in = ones({3}), wrong = ones({5}), strided = ones({4, 2}).t();
  EXPECT_THROW(comms[0]->all_gather(in, wrong), ShapeError);
  EXPECT_THROW(comms[0]->reduce_scatter(wrong, in, ReduceOp::kSum), ShapeError);
  EXPECT_THROW(comms[0]->all_reduce(strided, ReduceOp::kSum), ValueError);
  EXPECT_THROW(comms[0]->broadcast(in, 2), ValueError);
  Tensor bytes = zeros({2}, DType::kU8);
  EXPECT_THROW(comms[0]->all_reduce(bytes, ReduceOp::kMax), TypeError);
  // Nothing was issued: sequence numbers still start at 0 and a real call goes through.
  Tensor a = ones({2}), b = ones({2});
  auto w = comms[0]->all_reduce(a, ReduceOp::kSum);
  EXPECT_EQ(w->sequence_number(), 0u);
  comms[1]->all_reduce(b, ReduceOp::kSum)->wait(1s);
  EXPECT_EQ(a.to_vector(), (std::vector<double>{2, 2}));
  InProcessGroup group(2);
  group.communicator(0);
  EXPECT_THROW(group.communicator(0), ValueError);
  EXPECT_THROW(group.communicator(2), ValueError);
}

TEST(InProcess, SyncHelpersUseTheCommunicatorsTimeout) {
  CommOptions options;
  options.timeout = 200ms;
  auto comms = InProcessGroup::create(2, options);
  Tensor t = from_vector({1, 2, 3}, {3});
  EXPECT_THROW(all_reduce_sync(*comms[0], t, ReduceOp::kSum), TimeoutError);
  Tensor u = from_vector({5, 6, 7}, {3});
  // Rank 1 joins #0 late; then both broadcast from rank 1.
  comms[1]->all_reduce(u, ReduceOp::kSum)->wait(1s);
  EXPECT_EQ(u.to_vector(), (std::vector<double>{6, 8, 10}));
  EXPECT_EQ(t.to_vector(), (std::vector<double>{6, 8, 10}));  // reduced into, though rank 0 gave up
  u.fill_(4);
  std::thread other([&] { broadcast_sync(*comms[1], u, 1); });
  broadcast_sync(*comms[0], t, 1);
  other.join();
  EXPECT_EQ(t.to_vector(), (std::vector<double>{4, 4, 4}));
  EXPECT_EQ(comms[0]->backend_name(), "inprocess");
  EXPECT_EQ(comms[1]->rank(), 1);
  EXPECT_EQ(comms[1]->world_size(), 2);
}

}  // namespace
}  // namespace tandem

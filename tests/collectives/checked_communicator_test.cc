// CheckedCommunicator over the in-process backend with a real StoreServer: a rank that skips a
// collective (debug mode) or hangs is named, with both calls or with its last collective.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <thread>

#include "collectives/checked_communicator.h"
#include "collectives/inprocess/inprocess_group.h"
#include "collectives/store/store_server.h"
#include "core/base/error.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::run_threads;

constexpr char kToken[] = "feedfacefeedfacefeedfacefeedface";
constexpr char kPrefix[] = "pg/0/attempt/0";

// World of `world` ranks, each a CheckedCommunicator over the in-process backend with its own
// store client, as separate processes would have.
struct CheckedWorld {
  CheckedWorld(int world, bool debug, std::chrono::milliseconds timeout)
      : server("", 0, kToken), group(world) {
    CommOptions options;
    options.debug = debug;
    options.timeout = timeout;
    for (int r = 0; r < world; ++r) {
      auto store = std::make_shared<StoreClient>(server.endpoint(), kToken, 5s);
      comms.push_back(
          std::make_unique<CheckedCommunicator>(group.communicator(r, options), store, kPrefix));
    }
  }
  StoreServer server;
  InProcessGroup group;
  std::vector<std::unique_ptr<CheckedCommunicator>> comms;
};

int64_t ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

TEST(CheckedCommunicator, DebugModeNamesBothRanksWhenOneSkipsACollective) {
  CheckedWorld w(2, /*debug=*/true, 2000ms);
  std::vector<std::string> errors(2);
  run_threads(2, [&](int r) {
    Tensor big = ones({1000}), small = ones({10});
    try {
      if (r == 0) w.comms[r]->all_reduce(big, ReduceOp::kSum)->wait(2s);  // rank 1 skips it
      w.comms[r]->broadcast(small, 0)->wait(2s);
    } catch (const CommError& e) {
      errors[r] = e.what();
    }
  });
  for (int r = 0; r < 2; ++r)
    EXPECT_NE(errors[r].find("collective #0 mismatch: rank 0 called all_reduce(f32, [1000], sum), "
                             "rank 1 called broadcast(f32, [10], root 0)"),
              std::string::npos)
        << "rank " << r << ": " << errors[r];
}

TEST(CheckedCommunicator, DebugModeRunsMatchingCallsAndKeepsOneKeyPerRank) {
  const int world = 3;
  CheckedWorld w(world, /*debug=*/true, 2000ms);
  std::vector<std::vector<double>> results(world);
  run_threads(world, [&](int r) {
    Communicator& c = *w.comms[r];
    Tensor t = from_vector({double(r), 1}, {2});
    c.all_reduce(t, ReduceOp::kSum)->wait(2s);  // [3, 3]
    c.broadcast(t, 2)->wait(2s);
    Tensor gathered = zeros({2 * world});
    c.all_gather(t, gathered)->wait(2s);
    Tensor scattered = zeros({2});
    c.reduce_scatter(gathered, scattered, ReduceOp::kMax)->wait(2s);
    c.barrier()->wait(2s);
    all_reduce_sync(c, scattered, ReduceOp::kAvg);
    results[r] = scattered.to_vector();
  });
  for (int r = 0; r < world; ++r) EXPECT_EQ(results[r], (std::vector<double>{3, 3})) << r;
  // Six collectives (#0..#5): only the last one's keys remain.
  StoreClient store(w.server.endpoint(), kToken, 5s);
  for (uint64_t seq = 0; seq < 6; ++seq)
    for (int r = 0; r < world; ++r) {
      auto v = store.get_existing({CheckedCommunicator::check_key(kPrefix, seq, r)})[0];
      EXPECT_EQ(v.has_value(), seq == 5) << "#" << seq << " rank " << r;
      if (seq == 5 && v) {
        EXPECT_EQ(*v, "all_reduce(f32, [2], avg)");
      }
    }
}

TEST(CheckedCommunicator, HangingRankIsNamedWithItsLastCollective) {
  const int world = 3;
  CheckedWorld w(world, /*debug=*/false, 2000ms);
  std::promise<void> others_done;
  std::shared_future<void> released = others_done.get_future().share();
  std::vector<std::string> errors(2);
  std::vector<int64_t> elapsed(2);
  std::thread hung([&] {
    Tensor t = ones({10});
    w.comms[2]->broadcast(t, 0)->wait(2s);  // #0, then it hangs
    released.wait();
  });
  run_threads(2, [&](int r) {
    Tensor t = ones({10});
    w.comms[r]->broadcast(t, 0)->wait(2s);
    Tensor g = ones({1000});
    Clock::time_point start = Clock::now();
    try {
      w.comms[r]->all_reduce(g, ReduceOp::kSum)->wait(500ms);
    } catch (const TimeoutError& e) {
      errors[r] = e.what();
    }
    elapsed[r] = ms_since(start);
  });
  others_done.set_value();
  hung.join();
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(errors[r],
              "all_reduce #1 (f32, 1000 elements) timed out after 500 ms: rank 2 did "
              "not arrive (last seen at #0 broadcast)")
        << "rank " << r;
    EXPECT_GE(elapsed[r], 490);
    EXPECT_LT(elapsed[r], 2000);
  }
}

TEST(CheckedCommunicator, DebugModeNamesARankThatNeverArrives) {
  CheckedWorld w(3, /*debug=*/true, 400ms);
  std::vector<std::string> errors(2);
  std::vector<int64_t> elapsed(2);
  run_threads(2, [&](int r) {  // rank 2 never calls anything
    Tensor t = ones({8});
    Clock::time_point start = Clock::now();
    try {
      w.comms[r]->all_reduce(t, ReduceOp::kMax);
    } catch (const TimeoutError& e) {
      errors[r] = e.what();
    }
    elapsed[r] = ms_since(start);
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(errors[r],
              "collective #0 check (all_reduce(f32, [8], max)) timed out after 400 ms: "
              "rank 2 did not arrive (no collective seen)")
        << "rank " << r;
    EXPECT_LT(elapsed[r], 2500);
  }
}

TEST(CheckedCommunicator, PublishesProgressAndForwardsIdentity) {
  CheckedWorld w(2, /*debug=*/false, 1000ms);
  EXPECT_EQ(w.comms[1]->rank(), 1);
  EXPECT_EQ(w.comms[1]->world_size(), 2);
  EXPECT_EQ(w.comms[1]->backend_name(), "inprocess");
  run_threads(2, [&](int r) {
    Tensor t = ones({3});
    auto work = w.comms[r]->all_reduce(t, ReduceOp::kSum);
    EXPECT_EQ(work->sequence_number(), 0u);
    work->wait(1s);
    EXPECT_TRUE(work->is_completed());
    w.comms[r]->barrier()->wait(1s);
  });
  StoreClient store(w.server.endpoint(), kToken, 5s);
  // The latest call reaches the store within a publish interval or two.
  for (int r = 0; r < 2; ++r) {
    std::string key = CheckedCommunicator::progress_key(kPrefix, r);
    Clock::time_point start = Clock::now();
    while (store.get(key, 1s) != "1 barrier" && ms_since(start) < 1000)
      std::this_thread::sleep_for(20ms);
    EXPECT_EQ(store.get(key, 1s), "1 barrier") << "rank " << r;
  }
}

}  // namespace
}  // namespace tandem

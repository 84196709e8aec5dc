// Gloo backend inside one process: ranks as threads, each with its own StoreClient on a Store
// served from the test, connected over TCP on 127.0.0.1 -- the same path as separate processes
// (tests/collectives/collectives_check.cc covers those), plus the failure paths that need one
// rank to misbehave on purpose.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "collectives/gloo/gloo_communicator.h"
#include "collectives/gloo/gloo_store.h"
#include "collectives/store/job_token.h"
#include "collectives/store/store_server.h"

namespace tandem {
namespace {

using namespace std::chrono_literals;

// Runs fn(rank's communicator) on `world` threads; an exception on any thread fails the test.
void run_ranks(int world, const CommOptions& options,
               const std::function<void(GlooCommunicator&)>& fn,
               const std::string& prefix = "gloo-test") {
  const std::string token = generate_job_token();
  StoreServer server("127.0.0.1", 0, token);
  std::vector<std::thread> threads;
  std::vector<std::string> errors(world);
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        StoreClient client(server.endpoint(), token, 30'000ms);
        GlooOptions gloo;
        gloo.key_prefix = prefix;
        GlooCommunicator comm(client, r, world, gloo, options);
        fn(comm);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
}

TEST(GlooCommunicator, RanksAsThreadsReduceBroadcastAndGatherExactly) {
  run_ranks(3, {}, [](GlooCommunicator& comm) {
    const int r = comm.rank();
    EXPECT_EQ(comm.backend_name(), "gloo");
    Tensor x = from_vector({1.0 * (r + 1), -2.0 * (r + 1), 0.5}, {3});
    comm.all_reduce(x, ReduceOp::kSum)->wait(10'000ms);
    EXPECT_EQ(x.to_vector(), (std::vector<double>{6, -12, 1.5}));
    Tensor m = from_vector({1.0 * r, -1.0 * r}, {2}, DType::kBF16);
    comm.all_reduce(m, ReduceOp::kMax)->wait(10'000ms);
    EXPECT_EQ(m.to_vector(), (std::vector<double>{2, 0}));
    Tensor b = full({4}, r + 10, DType::kF64);
    auto work = comm.broadcast(b, 2);
    EXPECT_EQ(work->sequence_number(), 2u);
    work->wait(10'000ms);
    EXPECT_EQ(b.to_vector(), (std::vector<double>(4, 12)));
    Tensor out = zeros({6});
    comm.all_gather(full({2}, r), out)->wait(10'000ms);
    EXPECT_EQ(out.to_vector(), (std::vector<double>{0, 0, 1, 1, 2, 2}));
    Tensor rs = zeros({1});
    comm.reduce_scatter(from_vector({1, 2, 3}, {3}), rs, ReduceOp::kAvg)->wait(10'000ms);
    EXPECT_EQ(rs.item(), r + 1.0);
  });
}

TEST(GlooCommunicator, SecondCommunicatorOnTheSameStoreGetsItsOwnKeys) {
  const std::string token = generate_job_token();
  StoreServer server("127.0.0.1", 0, token);
  StoreClient probe(server.endpoint(), token, 5'000ms);
  std::vector<std::thread> threads;
  std::vector<double> sums(2, 0.0);
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      StoreClient client(server.endpoint(), token, 30'000ms);
      GlooOptions gloo;
      gloo.key_prefix = "twice";
      GlooCommunicator first(client, r, 2, gloo);
      GlooCommunicator second(client, r, 2, gloo);  // would connect to stale addresses if shared
      Tensor x = full({1}, r + 1), y = full({1}, 10 * (r + 1));
      first.all_reduce(x, ReduceOp::kSum)->wait(10'000ms);
      second.all_reduce(y, ReduceOp::kSum)->wait(10'000ms);
      sums[r] = x.item() + y.item();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(sums, (std::vector<double>{33, 33}));
  // Each communicator published its addresses under its own instance number.
  auto keys = probe.get_existing({"twice/0/0", "twice/1/0", "twice/0/1", "twice/1/1", "twice/2/0"});
  EXPECT_TRUE(keys[0] && keys[1] && keys[2] && keys[3]);
  EXPECT_FALSE(keys[4]);
}

TEST(GlooCommunicator, WorldOfOneCompletesWithoutNetwork) {
  StoreClient unreachable("127.0.0.1:1", "token", 500ms);  // never called for a world of one
  GlooCommunicator comm(unreachable, 0, 1);
  EXPECT_EQ(comm.context(), nullptr);
  Tensor x = from_vector({1, 2}, {2});
  comm.all_reduce(x, ReduceOp::kAvg)->wait(1'000ms);
  EXPECT_EQ(x.to_vector(), (std::vector<double>{1, 2}));
  Tensor out = zeros({2});
  comm.all_gather(x, out)->wait(1'000ms);
  EXPECT_EQ(out.to_vector(), (std::vector<double>{1, 2}));
  comm.barrier()->wait(1'000ms);
}

TEST(GlooCommunicator, GlooTimeoutBecomesTimeoutErrorAndBreaksTheCommunicator) {
  CommOptions options;
  options.timeout = 300ms;
  run_ranks(2, options, [](GlooCommunicator& comm) {
    if (comm.rank() == 1) {
      std::this_thread::sleep_for(1'500ms);  // never joins rank 0's all_reduce
      return;
    }
    Tensor x = zeros({16});
    auto work = comm.all_reduce(x, ReduceOp::kSum);
    try {
      work->wait(20'000ms);  // longer than gloo's own 300 ms: gloo's error is what arrives
      ADD_FAILURE() << "expected a TimeoutError";
    } catch (const TimeoutError& e) {
      EXPECT_NE(std::string(e.what()).find("gloo all_reduce #0 (f32, 16 elements) timed out"),
                std::string::npos)
          << e.what();
    }
    auto later = comm.barrier();
    try {
      later->wait(20'000ms);
      ADD_FAILURE() << "expected a CommError";
    } catch (const CommError& e) {
      EXPECT_NE(std::string(e.what()).find("barrier #1: the communicator is unusable"),
                std::string::npos)
          << e.what();
    }
  });
}

TEST(GlooCommunicator, PeerThatLeavesTurnsIntoCommError) {
  run_ranks(2, {}, [](GlooCommunicator& comm) {
    comm.barrier()->wait(10'000ms);
    if (comm.rank() == 1) return;  // destroys its communicator: the connection closes
    std::this_thread::sleep_for(200ms);
    Tensor x = zeros({1000});
    try {
      comm.all_reduce(x, ReduceOp::kSum)->wait(20'000ms);
      ADD_FAILURE() << "expected a CommError";
    } catch (const TimeoutError& e) {
      ADD_FAILURE() << "expected a CommError, not a timeout: " << e.what();
    } catch (const CommError& e) {
      EXPECT_NE(std::string(e.what()).find("gloo all_reduce #1 (f32, 1000 elements) failed"),
                std::string::npos)
          << e.what();
    }
  });
}

TEST(GlooCommunicator, WaitTimesOutNamingTheCollectiveWhileAPeerIsLate) {
  run_ranks(2, {}, [](GlooCommunicator& comm) {
    Tensor x = full({3}, comm.rank() + 1);
    if (comm.rank() == 1) std::this_thread::sleep_for(1'000ms);
    auto work = comm.all_reduce(x, ReduceOp::kSum);
    if (comm.rank() == 0) {
      EXPECT_THROW(
          {
            try {
              work->wait(50ms);
            } catch (const TimeoutError& e) {
              EXPECT_NE(std::string(e.what()).find("all_reduce #0"), std::string::npos);
              throw;
            }
          },
          TimeoutError);
    }
    work->wait(20'000ms);
    EXPECT_EQ(x.to_vector(), (std::vector<double>{3, 3, 3}));
  });
}

// Rank 1 stays connected but never joins (stopped): gloo would wait its own 20 s timeout. Closing
// rank 0's communicator fails the collective queued behind and waits only close_wait for the one
// running (before: the whole gloo timeout, once per queued collective).
TEST(GlooCommunicator, ClosingWithACollectiveStuckOnAStoppedPeerWaitsOnlyTheCloseWait) {
  const std::string token = generate_job_token();
  StoreServer server("127.0.0.1", 0, token);
  CommOptions options;
  options.timeout = 20'000ms;
  GlooOptions gloo;
  gloo.key_prefix = "gloo-close";
  gloo.close_wait = 500ms;
  double close_seconds = -1;
  std::string queued_error;
  std::thread rank1([&] {
    StoreClient client(server.endpoint(), token, 30'000ms);
    GlooCommunicator comm(client, 1, 2, gloo, options);
    std::this_thread::sleep_for(4'000ms);  // connected, silent; then its connections close
  });
  {
    StoreClient client(server.endpoint(), token, 30'000ms);
    auto comm = std::make_unique<GlooCommunicator>(client, 0, 2, gloo, options);
    Tensor x = zeros({16});
    auto stuck = comm->all_reduce(x, ReduceOp::kSum);
    auto queued = comm->barrier();
    EXPECT_THROW(stuck->wait(200ms), TimeoutError);
    const auto t0 = std::chrono::steady_clock::now();
    comm.reset();
    close_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    try {
      queued->wait(1'000ms);
    } catch (const CommError& e) {
      queued_error = e.what();
    }
  }
  rank1.join();
  EXPECT_GE(close_seconds, 0.5);
  EXPECT_LT(close_seconds, 2.0) << "the destructor waited for gloo's own timeout";
  EXPECT_NE(queued_error.find("gloo barrier #1: the communicator was closed before it ran"),
            std::string::npos)
      << queued_error;
}

TEST(GlooStore, PutsEveryKeyUnderItsPrefix) {
  const std::string token = generate_job_token();
  StoreServer server("127.0.0.1", 0, token);
  StoreClient client(server.endpoint(), token, 5'000ms);
  GlooStore store(client, "gloo/7/", 200ms);
  store.set("0", {'a', 'b'});
  EXPECT_EQ(client.get("gloo/7/0"), "ab");
  client.set("gloo/7/1", "xyz");
  EXPECT_EQ(store.get("1"), (std::vector<char>{'x', 'y', 'z'}));
  store.wait({"0", "1"}, std::chrono::milliseconds(0));  // 0: gloo's "no timeout" -> ours
  EXPECT_THROW(store.wait({"2"}), TimeoutError);
}

}  // namespace
}  // namespace tandem

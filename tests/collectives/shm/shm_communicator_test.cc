// Shared-memory all-reduce (collectives/shm): ranks as threads, each with its own Gloo
// communicator over a Store served from the test and the ShmCommunicator on top -- the segment is
// opened by name and mapped once per rank, as separate processes do. Exact values for every op,
// dtype and size (including sizes that take several 4 MiB rounds); the same bits as Gloo's own
// all-reduce for two ranks; the other collectives and bf16 still work (through Gloo) and keep one
// sequence of numbers; all_gather places every block; nothing is left in /dev/shm.
#include "collectives/shm/shm_communicator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "collectives/gloo/gloo_communicator.h"
#include "collectives/store/job_token.h"
#include "collectives/store/store_server.h"
#include "core/random/philox.h"

namespace tandem {
namespace {

using namespace std::chrono_literals;

// fn(rank, shm communicator, the gloo communicator it wraps) on `world` threads.
void run_ranks(int world, const std::function<void(int, ShmCommunicator&, Communicator&)>& fn) {
  const std::string token = generate_job_token();
  StoreServer server("127.0.0.1", 0, token);
  std::vector<std::thread> threads;
  std::vector<std::string> errors(world);
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        StoreClient client(server.endpoint(), token, 30'000ms);
        GlooOptions go;
        go.key_prefix = "shm-test-inner";
        auto gloo = std::make_unique<GlooCommunicator>(client, r, world, go);
        Communicator* raw_gloo = gloo.get();
        ShmCommunicator comm(std::move(gloo), client, "shm-test");
        fn(r, comm, *raw_gloo);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
}

// Element i of rank r: (r + 1) * (i % 7 - 3), so every sum, average and max is exact.
Tensor pattern(int rank, int64_t n, DType dtype) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = (rank + 1) * static_cast<double>(i % 7 - 3);
  return from_vector(v, {n}, dtype);
}

// got[first + i] against the reduction over `world` ranks of pattern() element i, i < n: the first
// element that differs fails the test.
void expect_reduced(const std::vector<double>& got, int64_t first, int64_t n, ReduceOp op,
                    int world, const std::string& what) {
  const double W = world, tri = W * (W + 1) / 2;
  for (int64_t i = 0; i < n; ++i) {
    const double k = static_cast<double>(i % 7 - 3);
    const double want = op == ReduceOp::kSum   ? tri * k
                        : op == ReduceOp::kAvg ? tri * k / W
                                               : (k >= 0 ? W * k : k);
    if (got[first + i] != want) {
      ADD_FAILURE() << what << " " << reduce_op_name(op) << ": element " << i << " is "
                    << got[first + i] << ", expected " << want;
      return;
    }
  }
}

TEST(ShmCommunicator, AllReduceIsExactForEveryOpDtypeAndSizeAtTwoThreeAndFourRanks) {
  for (int world : {2, 3, 4}) {
    SCOPED_TRACE("world " + std::to_string(world));
    run_ranks(world, [world](int rank, ShmCommunicator& comm, Communicator&) {
      EXPECT_EQ(comm.backend_name(), "shm+gloo");
      // Rank 0 removes the name once every rank has mapped it: nothing can leak.
      ASSERT_EQ(comm.segment_name().rfind("/tandem-", 0), 0u) << comm.segment_name();
      if (rank == 0) EXPECT_FALSE(std::filesystem::exists("/dev/shm" + comm.segment_name()));
      for (DType dtype : {DType::kF32, DType::kF64}) {
        // 3,000,007 f32 = 12 MB: three 4 MiB rounds, the last one partial.
        for (int64_t n :
             {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{1'000'003}, int64_t{3'000'007}}) {
          for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax}) {
            Tensor x = pattern(rank, n, dtype);
            comm.all_reduce(x, op)->wait(60'000ms);
            expect_reduced(x.to_vector(), 0, n, op, world, str(dtype_name(dtype), " n=", n));
          }
        }
      }
    });
  }
}

TEST(ShmCommunicator, AllGatherPutsEveryRanksBlockInPlaceAcrossSeveralRounds) {
  for (int world : {2, 3}) {
    run_ranks(world, [world](int rank, ShmCommunicator& comm, Communicator&) {
      for (DType dtype : {DType::kF32, DType::kF64}) {
        for (int64_t n : {int64_t{0}, int64_t{7}, int64_t{1'300'001}}) {  // f32 1.3 M: 2 rounds
          Tensor in = pattern(rank, n, dtype);
          Tensor out = full({world * n}, -99.0, dtype);
          comm.all_gather(in, out)->wait(60'000ms);
          const std::vector<double> got = out.to_vector();
          for (int r = 0; r < world; ++r) {
            const std::vector<double> want = pattern(r, n, dtype).to_vector();
            EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin() + r * n))
                << dtype_name(dtype) << " n=" << n << " block " << r;
          }
        }
      }
    });
  }
}

TEST(ShmCommunicator, TwoRanksGetGloosBitsOnRandomValues) {
  run_ranks(2, [](int rank, ShmCommunicator& comm, Communicator& gloo) {
    Generator gen(40 + rank);
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg}) {
      Tensor a = randn({1'500'001}, gen);
      Tensor b = a.clone();
      comm.all_reduce(a, op)->wait(60'000ms);
      gloo.all_reduce(b, op)->wait(60'000ms);
      EXPECT_EQ(std::memcmp(a.raw_data(), b.raw_data(), a.numel() * 4), 0) << reduce_op_name(op);
    }
  });
}

TEST(ShmCommunicator, Bf16AndTheOtherCollectivesWorkInOneSequenceOfNumbers) {
  run_ranks(3, [](int rank, ShmCommunicator& comm, Communicator&) {
    Tensor x = from_vector({1.0 * (rank + 1), 0.5}, {2});
    auto w0 = comm.all_reduce(x, ReduceOp::kSum);  // shm
    Tensor h = from_vector({1.0 * rank, -1.0 * rank}, {2}, DType::kBF16);
    auto w1 = comm.all_reduce(h, ReduceOp::kMax);  // bf16: gloo
    Tensor b = full({4}, rank + 10, DType::kF64);
    auto w2 = comm.broadcast(b, 2);
    Tensor out = zeros({6});
    auto w3 = comm.all_gather(full({2}, rank), out);  // shm
    auto w4 = comm.barrier();
    EXPECT_EQ(w0->sequence_number(), 0u);
    EXPECT_EQ(w1->sequence_number(), 1u);
    EXPECT_EQ(w2->sequence_number(), 2u);
    EXPECT_EQ(w3->sequence_number(), 3u);
    EXPECT_EQ(w4->sequence_number(), 4u);
    for (auto* w : {&w0, &w1, &w2, &w3, &w4}) (*w)->wait(30'000ms);
    EXPECT_EQ(x.to_vector(), (std::vector<double>{6, 1.5}));
    EXPECT_EQ(h.to_vector(), (std::vector<double>{2, 0}));
    EXPECT_EQ(b.to_vector(), (std::vector<double>(4, 12)));
    EXPECT_EQ(out.to_vector(), (std::vector<double>{0, 0, 1, 1, 2, 2}));
  });
}

TEST(ShmCommunicator, WaitTimesOutNamingTheCollectiveWhileAPeerIsLate) {
  run_ranks(2, [](int rank, ShmCommunicator& comm, Communicator&) {
    Tensor x = full({3}, rank + 1);
    if (rank == 1) std::this_thread::sleep_for(600ms);
    auto work = comm.all_reduce(x, ReduceOp::kSum);
    if (rank == 0) {
      std::string message;
      try {
        work->wait(100ms);
      } catch (const TimeoutError& e) {
        message = e.what();
      }
      EXPECT_NE(message.find("all_reduce #0"), std::string::npos) << message;
    }
    work->wait(30'000ms);  // the late rank arrives: it completes
    EXPECT_EQ(x.to_vector(), (std::vector<double>(3, 3)));
  });
}

// ---- allocate_shared: buffers in a segment of their own, reduced and gathered in place

// Exact values for every op, dtype and size over whole shared buffers and over a view at an
// offset inside one (as DDP's bucket views are); the rest of the buffer stays as it was.
TEST(ShmCommunicator, AllReduceOverASharedBufferIsExactAndTouchesOnlyTheTensor) {
  for (int world : {2, 3, 4}) {
    SCOPED_TRACE("world " + std::to_string(world));
    run_ranks(world, [world](int rank, ShmCommunicator& comm, Communicator&) {
      for (DType dtype : {DType::kF32, DType::kF64}) {
        for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{1'000'003}}) {
          Tensor buffer = comm.allocate_shared(n + 10, dtype, Device::cpu());
          ASSERT_EQ(buffer.dtype(), dtype);
          EXPECT_EQ(buffer.to_vector(), std::vector<double>(n + 10, 0.0)) << "not zeroed";
          buffer.fill_(-5.0);
          for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax}) {
            Tensor x = buffer.slice(0, 3, 3 + n);  // a view, as a bucket's is
            x.copy_(pattern(rank, n, dtype));
            comm.all_reduce(x, op)->wait(60'000ms);
            const std::vector<double> got = buffer.to_vector();
            expect_reduced(got, 3, n, op, world, str("shared ", dtype_name(dtype), " n=", n));
            for (int64_t i = 0; i < n + 10; i = i == 2 ? n + 3 : i + 1)  // the 10 outside it
              EXPECT_EQ(got[i], -5.0) << "element " << i << " outside the view was written";
          }
        }
      }
    });
  }
}

// The in-place path sums in rank order as the staged path does: the same bits on random values.
TEST(ShmCommunicator, SharedAndStagedAllReduceGiveTheSameBits) {
  run_ranks(3, [](int rank, ShmCommunicator& comm, Communicator&) {
    Generator gen(70 + rank);
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg}) {
      Tensor staged = randn({2'000'001}, gen);
      Tensor shared = comm.allocate_shared(staged.numel(), DType::kF32, Device::cpu());
      shared.copy_(staged);
      comm.all_reduce(staged, op)->wait(60'000ms);
      comm.all_reduce(shared, op)->wait(60'000ms);
      EXPECT_EQ(std::memcmp(staged.raw_data(), shared.raw_data(), staged.numel() * 4), 0)
          << reduce_op_name(op);
    }
  });
}

TEST(ShmCommunicator, InPlaceAllGatherOfASharedBufferFillsEveryRanksCopy) {
  for (int world : {2, 3}) {
    run_ranks(world, [world](int rank, ShmCommunicator& comm, Communicator&) {
      for (DType dtype : {DType::kF32, DType::kF64}) {
        for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1'300'001}}) {
          Tensor out = comm.allocate_shared(world * n, dtype, Device::cpu());
          out.fill_(-99.0);
          Tensor mine = out.slice(0, rank * n, (rank + 1) * n);
          mine.copy_(pattern(rank, n, dtype));
          comm.all_gather(mine, out)->wait(60'000ms);
          const std::vector<double> got = out.to_vector();
          for (int r = 0; r < world; ++r) {
            const std::vector<double> want = pattern(r, n, dtype).to_vector();
            EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin() + r * n))
                << dtype_name(dtype) << " n=" << n << " block " << r;
          }
        }
      }
    });
  }
}

// A rank that reduces a shared buffer while another reduces a plain tensor: both fail at once,
// naming both ranks and what each passed, instead of summing the wrong memory.
TEST(ShmCommunicator, RanksPassingDifferentBuffersFailNamingBoth) {
  run_ranks(2, [](int rank, ShmCommunicator& comm, Communicator&) {
    Tensor shared = comm.allocate_shared(1000, DType::kF32, Device::cpu());
    Tensor plain = zeros({1000});
    Tensor& x = rank == 0 ? shared : plain;
    std::string message;
    try {
      comm.all_reduce(x, ReduceOp::kSum)->wait(30'000ms);
    } catch (const CommError& e) {
      message = e.what();
    }
    const std::string other = rank == 0 ? "rank 1" : "rank 0";
    EXPECT_NE(message.find("shm: rank " + std::to_string(rank) + " reduces"), std::string::npos)
        << message;
    EXPECT_NE(message.find("but " + other), std::string::npos) << message;
    EXPECT_NE(message.find("staging slots"), std::string::npos) << message;
    EXPECT_NE(message.find("shared buffer 1"), std::string::npos) << message;
  });
}

// What the segment cannot hold comes back as plain zeros; a shared tensor outlives its
// communicator.
TEST(ShmCommunicator, SharedBuffersFallBackForOtherDtypesAndOutliveTheCommunicator) {
  std::vector<Tensor> kept(2);
  run_ranks(2, [&kept](int rank, ShmCommunicator& comm, Communicator&) {
    Tensor h = comm.allocate_shared(5, DType::kBF16, Device::cpu());
    EXPECT_EQ(h.dtype(), DType::kBF16);
    EXPECT_EQ(h.to_vector(), std::vector<double>(5, 0.0));
    kept[rank] = comm.allocate_shared(4, DType::kF64, Device::cpu());
    kept[rank].fill_(rank + 1.0);
    comm.all_reduce(kept[rank], ReduceOp::kSum)->wait(30'000ms);
  });
  for (const Tensor& t : kept) EXPECT_EQ(t.to_vector(), std::vector<double>(4, 3.0));
}

}  // namespace
}  // namespace tandem

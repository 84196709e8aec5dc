// Training on CUDA against the CPU (label gpu; skipped without a device): ResNet-18 for 20 SGD
// steps follows the CPU run's losses, and the caching allocator's reserved memory stops growing
// after the first steps; the NCCL communicator with one rank; ddp (NCCL) and mirrored with one GPU
// end with the weights single-process CPU training ends with.
#include <gtest/gtest.h>

#include <cmath>

#include "collectives/nccl_factory.h"
#include "core/io/checkpoint.h"
#include "core/nn/models.h"
#include "core/ops/ops.h"
#include "core/optim/sgd.h"
#include "strategies/ddp/ddp_strategy.h"
#include "strategies/mirrored/mirrored_strategy.h"
#include "strategies/single/single_strategy.h"
#include "tests/gpu/gpu_test_util.h"

namespace tandem {
namespace {

using gpu_test::expect_matches_cpu;
using gpu_test::gpu;
using gpu_test::uniform;

Tensor labels_for(int64_t n, int64_t classes, uint64_t seed) {
  Tensor u = uniform({n}, 0.0, static_cast<double>(classes), seed, DType::kF64);
  std::vector<double> v = u.to_vector();
  for (double& x : v) x = std::floor(x);
  return from_vector(v, {n}, DType::kI64);
}

TEST(CudaTraining, Resnet18FollowsTheCpuLossesFor20StepsAndReservedMemoryStaysFlat) {
  TANDEM_REQUIRE_CUDA();
  DeviceBackend& be = backend_for("test", gpu());
  be.set_allow_tf32(false);  // exact f32 arithmetic on both sides
  ModelOptions mo;
  mo.num_classes = 10;
  Generator g1(5), g2(5);
  auto cpu_model = make_model("resnet18", mo, g1);
  auto gpu_model = make_model("resnet18", mo, g2);
  gpu_model->to(gpu());
  const SgdOptions so{0.02, 0.9, 0.0, false, 5e-4};
  Sgd cpu_opt(cpu_model->named_parameters(), so), gpu_opt(gpu_model->named_parameters(), so);
  DeviceMemoryStats after_warmup;
  for (int step = 0; step < 20; ++step) {
    Tensor x = uniform({8, 3, 32, 32}, -1.0, 1.0, 100 + step);
    Tensor y = labels_for(8, 10, 200 + step);
    cpu_opt.zero_grad();
    gpu_opt.zero_grad();
    Tensor lc = cross_entropy(cpu_model->forward(x), y);
    Tensor lg = cross_entropy(gpu_model->forward(x.to(gpu())), y.to(gpu()));
    lc.backward();
    lg.backward();
    cpu_opt.step();
    gpu_opt.step();
    const double c = lc.item(), g = lg.item();
    // Convolution algorithms sum in other orders; the difference grows slowly with the steps.
    const double tol = 1e-4 * (1 + step);
    EXPECT_NEAR(g, c, tol * std::max(1.0, std::abs(c))) << "step " << step;
    if (step == 2) {
      be.synchronize(0);
      after_warmup = be.memory_stats(0);
    }
  }
  be.synchronize(0);
  const DeviceMemoryStats end = be.memory_stats(0);
  EXPECT_EQ(end.reserved_bytes, after_warmup.reserved_bytes) << "reserved memory grew after step 3";
  EXPECT_EQ(end.device_allocs, after_warmup.device_allocs) << "cudaMalloc in the steady state";
  auto pc = cpu_model->named_parameters(), pg = gpu_model->named_parameters();
  for (size_t i = 0; i < pc.size(); ++i)
    expect_matches_cpu(pg[i].second.detach(), pc[i].second.detach(), pc[i].first, 5e-3);
}

TEST(CudaNccl, OneRankCollectivesLeaveTheRightValues) {
  TANDEM_REQUIRE_CUDA();
  auto comm = make_nccl_communicator(nullptr, 0, 1, 0, "test-nccl", CommOptions{});
  EXPECT_EQ(comm->backend_name(), "nccl");
  EXPECT_EQ(comm->world_size(), 1);
  for (DType dt : {DType::kF32, DType::kF64, DType::kBF16, DType::kI64}) {
    Tensor host = uniform({1000}, -5.0, 5.0, 9).to(dt);
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax}) {
      if (dt == DType::kI64 && op == ReduceOp::kAvg) continue;
      Tensor t = host.to(gpu());
      comm->all_reduce(t, op)->wait(std::chrono::seconds(60));
      expect_matches_cpu(
          t, host, std::string("all_reduce ") + reduce_op_name(op) + " " + dtype_name(dt), 0.0);
    }
  }
  Tensor b = uniform({17}, 0.0, 1.0, 10).to(gpu());
  Tensor b0 = b.to(Device::cpu());
  comm->broadcast(b, 0)->wait(std::chrono::seconds(60));
  expect_matches_cpu(b, b0, "broadcast", 0.0);
  Tensor in = uniform({33}, 0.0, 1.0, 11).to(gpu()), out = empty({33}, DType::kF32, gpu());
  comm->all_gather(in, out)->wait(std::chrono::seconds(60));
  expect_matches_cpu(out, in.to(Device::cpu()), "all_gather", 0.0);
  Tensor rs = empty({33}, DType::kF32, gpu());
  comm->reduce_scatter(in, rs, ReduceOp::kSum)->wait(std::chrono::seconds(60));
  expect_matches_cpu(rs, in.to(Device::cpu()), "reduce_scatter", 0.0);
  comm->barrier()->wait(std::chrono::seconds(60));
  // CPU tensors are refused with a message naming the backends that take them.
  Tensor cpu_tensor = ones({4});
  try {
    comm->all_reduce(cpu_tensor, ReduceOp::kSum);
    FAIL() << "nccl accepted a cpu tensor";
  } catch (const Unimplemented& e) {
    EXPECT_NE(std::string(e.what()).find("gloo"), std::string::npos) << e.what();
  }
}

// Runs `steps` steps of mlp training through `strategy` on `device`; returns the final weights.
NamedTensors train_mlp(Strategy& strategy, Device device, int steps) {
  Generator gen(21);
  ModelOptions mo;
  mo.mlp_in_features = 48;
  mo.mlp_hidden = {32};
  auto model = make_model("mlp", mo, gen);
  model->to(device);
  Sgd opt(model->named_parameters(), SgdOptions{0.05, 0.9, 0.0, false, 0.0});
  strategy.prepare(*model, opt);
  for (int s = 0; s < steps; ++s) {
    Batch b;
    b.images = uniform({8, 3, 4, 4}, -1.0, 1.0, 300 + s);
    b.labels = labels_for(8, 10, 400 + s);
    b.global_batch_size = 8;
    MicroBatch mb;
    mb.batch = &b;
    mb.step = s;
    opt.zero_grad();
    strategy.forward_backward(*model, mb);
    strategy.synchronize(*model);
    strategy.apply_update(*model, opt);
  }
  NamedTensors out;
  for (auto& [n, p] : model->named_parameters()) out.emplace_back(n, p.detach());
  return out;
}

void expect_same_weights(const NamedTensors& gpu_w, const NamedTensors& cpu_w,
                         const std::string& what) {
  ASSERT_EQ(gpu_w.size(), cpu_w.size());
  for (size_t i = 0; i < cpu_w.size(); ++i)
    expect_matches_cpu(gpu_w[i].second, cpu_w[i].second, what + " " + cpu_w[i].first, 1e-4);
}

TEST(CudaStrategies, DdpOverNcclWithOneGpuEqualsSingleOnTheCpu) {
  TANDEM_REQUIRE_CUDA();
  SingleStrategy single;
  NamedTensors expected = train_mlp(single, Device::cpu(), 4);
  DdpStrategy ddp(std::shared_ptr<Communicator>(
                      make_nccl_communicator(nullptr, 0, 1, 0, "test-ddp", CommOptions{})),
                  ReducerOptions{});
  expect_same_weights(train_mlp(ddp, gpu(), 4), expected, "ddp");
}

TEST(CudaStrategies, MirroredOnOneGpuEqualsSingleOnTheCpu) {
  TANDEM_REQUIRE_CUDA();
  SingleStrategy single;
  NamedTensors expected = train_mlp(single, Device::cpu(), 4);
  for (int replicas : {1, 2}) {  // 2: both replicas share the one GPU
    MirroredStrategy mirrored(replicas, [] {
      Generator gen(21);
      ModelOptions mo;
      mo.mlp_in_features = 48;
      mo.mlp_hidden = {32};
      return make_model("mlp", mo, gen);
    });
    expect_same_weights(train_mlp(mirrored, gpu(), 4), expected,
                        "mirrored x" + std::to_string(replicas));
  }
}

}  // namespace
}  // namespace tandem

namespace tandem {
namespace {

// A model and optimizer trained on the GPU save from host copies of their device tensors, and
// the checkpoint loads back with the very same values.
TEST(CudaTraining, CheckpointOfDeviceTensorsRoundTrips) {
  TANDEM_REQUIRE_CUDA();
  ModelOptions mo;
  mo.num_classes = 10;
  Generator g(7);
  auto model = make_model("lenet", mo, g);
  model->to(gpu());
  Sgd opt(model->named_parameters(), SgdOptions{0.01, 0.9, 0.0, false, 0.0});
  Tensor loss = cross_entropy(model->forward(uniform({4, 1, 28, 28}, -1.0, 1.0, 3).to(gpu())),
                              from_vector({1, 2, 3, 4}, {4}, DType::kI64).to(gpu()));
  loss.backward();
  opt.step();
  const std::string dir = ::testing::TempDir() + "/tandem-cuda-ckpt";
  TrainerState state;
  state.step = 1;
  const std::string path = save_checkpoint(dir, model->state_dict(), opt.state_dict(), state, 1);
  LoadedCheckpoint ck = load_checkpoint(path);
  const NamedTensors saved = model->state_dict();
  ASSERT_EQ(ck.model.size(), saved.size());
  for (size_t i = 0; i < saved.size(); ++i) {
    EXPECT_TRUE(ck.model[i].second.device().is_cpu());
    EXPECT_EQ(ck.model[i].second.to_vector(), saved[i].second.to(Device::cpu()).to_vector())
        << saved[i].first;
  }
}

}  // namespace
}  // namespace tandem

// The parameter_server strategy (tf.distribute's ParameterServerStrategy): `tandem ps` processes
// hold the model's parameters, spread over strategy.num_ps shards by bytes (shard_plan.h), and the
// optimizer state for them; each worker computes the gradient of its rows, pushes it to every
// shard and pulls the new parameters back (all shards in parallel, one thread each).
//
//   sync   every shard applies the average of one push per worker per step, so the result is
//          the one of ddp (and of a single process); per-step losses are averaged over workers
//          through a barrier on shard 0.
//   async  every push is applied when it arrives; a worker pulls right after its push, and with
//          strategy.max_staleness > 0 waits while it is that many steps ahead of the slowest
//          worker. The per-step loss shown is the worker's own.
//
// The worker's optimizer never steps: it carries the learning rate of the schedule (sent with
// every push) and, on the chief, the servers' optimizer state fetched before each checkpoint
// (before_checkpoint), so a checkpoint holds the servers' variables and optimizer state in the
// trainer's usual format. On start the chief sends its parameters and optimizer state -- fresh or
// from the checkpoint it resumed -- to every shard (Restore), and every worker pulls them.
//
// Buffers (batch-norm statistics) are not served: each worker keeps its own and the chief's are
// checkpointed. training.grad_clip clips each worker's own gradient before the push.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "strategies/parameter_server/ps_client.h"
#include "strategies/parameter_server/shard_plan.h"
#include "strategies/strategy.h"

namespace tandem {

struct PsStrategyOptions {
  std::vector<std::string> endpoints;  // "host:port" of shard 0, 1, ... (TANDEM_PS_ENDPOINTS)
  std::string token;
  JobTls tls;  // the job's certificate, for servers not on loopback (TANDEM_TLS_CERT)
  int rank = 0;
  int world_size = 1;
  int64_t incarnation = 0;  // the launcher's restart count
  PsMode mode = PsMode::kSync;
  std::chrono::milliseconds timeout{600'000};
  int64_t max_message_bytes = int64_t{256} << 20;
  // Where one-line notices go (a chief rejoining running servers); null: standard error.
  std::function<void(const std::string&)> note;
};

class PsStrategy : public Strategy {
 public:
  explicit PsStrategy(PsStrategyOptions options);
  ~PsStrategy() override;
  std::string name() const override { return "parameter_server"; }
  int rank() const override { return o_.rank; }
  int world_size() const override { return o_.world_size; }
  void set_start_step(int64_t step) override { step_ = step - 1; }
  void prepare(Module& model, Optimizer& optimizer) override;
  double forward_backward(Module& model, const MicroBatch& micro) override;
  void synchronize(Module&) override {}
  double mean_loss(double local_loss) override;
  std::pair<double, bool> mean_loss_and_stop(double local_loss, bool stop) override;
  void apply_update(Module& model, Optimizer& optimizer) override;
  std::vector<double> all_reduce_sum(const std::vector<double>& values) override;
  void before_checkpoint(Module& model, Optimizer& optimizer) override;
  void finish() override;
  std::string report() const override;

  const ShardPlan& plan() const { return plan_; }

 private:
  // Runs fn(shard) for every shard, in parallel when there are several; the first failure
  // cancels the calls of the other shards and is rethrown.
  void on_all_shards(const std::function<void(int)>& fn);
  void run_on_shards(const std::function<void(int)>& fn);
  // Runs fn; when it throws in sync mode, tells every shard this worker failed (ps.proto Abort:
  // the other workers, which would wait for this one, fail at once with its reason); rethrows.
  template <typename Fn>
  auto or_abort(Fn&& fn) -> decltype(fn());
  // Copies a pulled (or saved) piece into the model's parameter it belongs to.
  void store_piece(int shard, const WireTensor& t);

  PsStrategyOptions o_;
  std::vector<std::unique_ptr<PsClient>> clients_;
  ShardPlan plan_;
  NamedTensors params_;  // the model's parameters (contiguous), in plan variable order
  std::vector<std::map<std::string, const Piece*>> piece_by_name_;  // per shard
  int64_t step_ = -1;  // the step of the last forward_backward (start step - 1 before the first)
  int64_t reduce_step_ = -1;  // all_reduce_sum calls are keyed by (step_, count within it)
  int reduce_count_ = 0;
  double push_seconds_ = 0, pull_seconds_ = 0;
  int64_t updates_ = 0;
};

}  // namespace tandem

#include "strategies/parameter_server/ps_strategy.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <iostream>
#include <mutex>
#include <thread>

#include "core/autograd/grad_mode.h"
#include "core/base/error.h"
#include "strategies/single/single_strategy.h"

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The elements [offset, offset + numel) of a contiguous tensor as a flat tensor sharing storage.
Tensor flat_slice(const Tensor& t, int64_t offset, int64_t numel) {
  return t.reshape({-1}).slice(0, offset, offset + numel);
}

}  // namespace

PsStrategy::PsStrategy(PsStrategyOptions options) : o_(std::move(options)) {
  TANDEM_CHECK_T(ConfigError, !o_.endpoints.empty(), "parameter_server: no server endpoints");
  TANDEM_CHECK_T(ConfigError, !o_.token.empty(),
                 "parameter_server needs the job token in TANDEM_JOB_TOKEN (the servers refuse "
                 "calls without it); tandem launch --num-ps sets it");
  for (int s = 0; s < static_cast<int>(o_.endpoints.size()); ++s)
    clients_.push_back(std::make_unique<PsClient>(s, o_.endpoints[s], o_.token, o_.timeout,
                                                  o_.max_message_bytes, o_.tls));
}

PsStrategy::~PsStrategy() = default;

template <typename Fn>
auto PsStrategy::or_abort(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error& e) {
    // Only sync workers wait for each other; an async worker's failure must not stop the others
    // (tandem launch restarts it alone).
    if (o_.mode == PsMode::kSync)
      for (auto& c : clients_) c->abort(o_.rank, e.what());
    throw;
  }
}

void PsStrategy::on_all_shards(const std::function<void(int)>& fn) {
  or_abort([&] { run_on_shards(fn); });
}

void PsStrategy::run_on_shards(const std::function<void(int)>& fn) {
  const int n = static_cast<int>(clients_.size());
  if (n == 1) {
    fn(0);
    return;
  }
  std::mutex mu;
  std::exception_ptr first;
  std::vector<std::thread> threads;
  for (int s = 0; s < n; ++s)
    threads.emplace_back([&, s] {
      try {
        fn(s);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!first) {
          first = std::current_exception();
          for (auto& c : clients_) c->cancel();
        }
      }
    });
  for (std::thread& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

void PsStrategy::store_piece(int shard, const WireTensor& t) {
  auto it = piece_by_name_[shard].find(std::string(t.name));
  TANDEM_CHECK_T(CommError, it != piece_by_name_[shard].end(), "parameter server shard ", shard,
                 " (", o_.endpoints[shard], ") sent variable '", t.name,
                 "' that this worker's model does not have there: are servers and workers running "
                 "the same experiment with the same strategy.num_ps?");
  const Piece& p = *it->second;
  const Tensor& param = params_[p.variable].second;
  TANDEM_CHECK_T(
      CommError,
      wire_dtype(t.dtype) == param.dtype() && t.shape.size() == 1 && t.shape[0] == p.numel,
      "parameter server shard ", shard, " sent '", t.name, "' as ", t.dtype, " ",
      shape_string(t.shape), ", expected ", dtype_name(param.dtype()), " [", p.numel, "]");
  const size_t item = dtype_size(param.dtype());
  std::memcpy(static_cast<char*>(param.raw_data()) + p.offset * item, t.data.data(), t.data.size());
}

void PsStrategy::prepare(Module& model, Optimizer& optimizer) {
  params_ = model.named_parameters();
  std::vector<PlanVariable> vars;
  for (const auto& [name, p] : params_) {
    TANDEM_CHECK_T(
        ConfigError, p.is_contiguous() && (p.dtype() == DType::kF32 || p.dtype() == DType::kF64),
        "parameter_server: parameter '", name, "' must be a contiguous f32 or f64 tensor");
    vars.push_back({name, p.numel(), static_cast<int64_t>(dtype_size(p.dtype()))});
  }
  plan_ = plan_shards(vars, static_cast<int>(clients_.size()));
  piece_by_name_.assign(clients_.size(), {});
  for (size_t s = 0; s < clients_.size(); ++s)
    for (const Piece& p : plan_.shards[s]) piece_by_name_[s][p.name] = &p;

  const int num_shards = static_cast<int>(clients_.size());
  std::vector<char> initialized(clients_.size(), 0);
  on_all_shards([&](int s) {
    initialized[s] =
        clients_[s]->register_worker(o_.rank, o_.world_size, o_.incarnation, o_.mode, num_shards);
  });
  // async: servers that already hold the variables are the job's current state -- the other
  // workers kept training while this one restarted alone -- so a rejoining chief pulls them
  // instead of rewinding everyone to its checkpoint.
  const bool rejoin = o_.mode == PsMode::kAsync &&
                      std::all_of(initialized.begin(), initialized.end(), [](char i) { return i; });
  if (is_chief() && rejoin) {
    const std::string line =
        "parameter_server: the servers already hold the variables (async): rank 0 rejoins "
        "without restoring its checkpoint";
    if (o_.note)
      o_.note(line);
    else
      std::cerr << line << "\n";
  }
  if (is_chief() && !rejoin) {
    // The chief sends its variables: fresh ones, or those of the checkpoint it resumed (the
    // servers of a restarted job start empty; in sync mode servers that survived get the
    // checkpoint, so that they and the resumed workers are at the same step).
    NamedTensors full_state = optimizer.state_dict();
    std::map<std::string, Tensor> state(full_state.begin(), full_state.end());
    on_all_shards([&](int s) {
      NamedTensors params, opt;
      if (state.count("step")) opt.emplace_back("step", state["step"]);
      for (const Piece& p : plan_.shards[s]) {
        const std::string& var = params_[p.variable].first;
        params.emplace_back(p.name, flat_slice(params_[p.variable].second, p.offset, p.numel));
        if (auto it = state.find(var + ".step"); it != state.end())
          opt.emplace_back(p.name + ".step", it->second);
        for (const std::string& b : optimizer.buffer_names())
          opt.emplace_back(p.name + "." + b,
                           flat_slice(state.at(var + "." + b), p.offset, p.numel));
      }
      clients_[s]->restore(o_.world_size, params, opt);
    });
  }
  NoGradGuard ng;
  on_all_shards([&](int s) {
    clients_[s]->pull(o_.rank, 0, [&](const WireTensor& t) { store_piece(s, t); });
  });
}

double PsStrategy::forward_backward(Module& model, const MicroBatch& micro) {
  step_ = micro.step;
  return replica_forward_backward(model, micro, 1.0 / micro.micro_count);
}

double PsStrategy::mean_loss(double local_loss) {
  if (o_.mode == PsMode::kAsync)
    return local_loss;  // no barrier per step: workers run independently
  return all_reduce_sum({local_loss})[0] / o_.world_size;
}

std::pair<double, bool> PsStrategy::mean_loss_and_stop(double local_loss, bool stop) {
  if (o_.mode == PsMode::kAsync) return {local_loss, stop};  // each worker stops on its own
  return Strategy::mean_loss_and_stop(local_loss, stop);
}

void PsStrategy::apply_update(Module& model, Optimizer& optimizer) {
  const double lr = optimizer.lr();
  const int64_t step = step_;
  std::vector<double> push_s(clients_.size(), 0), pull_s(clients_.size(), 0);
  NoGradGuard ng;
  on_all_shards([&](int s) {
    std::vector<std::pair<std::string, std::string_view>> grads;
    std::vector<Tensor> zeros;  // stand-ins for the gradients of unused parameters
    DType dtype = DType::kF32;
    for (const Piece& p : plan_.shards[s]) {
      const Tensor& param = params_[p.variable].second;
      dtype = param.dtype();
      Tensor g = param.grad();
      if (!g.defined()) {
        zeros.push_back(zeros_like(param));
        g = zeros.back();
      }
      TANDEM_CHECK_T(ValueError, g.is_contiguous(), "parameter_server: gradient of '",
                     params_[p.variable].first, "' is not contiguous");
      const size_t item = dtype_size(g.dtype());
      grads.emplace_back(p.name,
                         std::string_view(static_cast<const char*>(g.raw_data()) + p.offset * item,
                                          p.numel * item));
    }
    auto t0 = Clock::now();
    clients_[s]->push(o_.rank, o_.incarnation, step, lr, grads, dtype);
    auto t1 = Clock::now();
    push_s[s] = std::chrono::duration<double>(t1 - t0).count();
    clients_[s]->pull(o_.rank, step + 1, [&](const WireTensor& t) { store_piece(s, t); });
    pull_s[s] = seconds_since(t1);
  });
  push_seconds_ += *std::max_element(push_s.begin(), push_s.end());
  pull_seconds_ += *std::max_element(pull_s.begin(), pull_s.end());
  updates_ += 1;
}

std::vector<double> PsStrategy::all_reduce_sum(const std::vector<double>& values) {
  if (o_.world_size == 1) return values;
  if (reduce_step_ != step_) {
    reduce_step_ = step_;
    reduce_count_ = 0;
  }
  // Every worker makes the same calls after the same steps, so the keys agree across workers
  // (and across a restart, which resumes at a step boundary).
  std::string key = str("reduce/", step_, "/", reduce_count_++);
  return or_abort([&] { return clients_[0]->barrier(o_.rank, key, values); });
}

void PsStrategy::before_checkpoint(Module& model, Optimizer& optimizer) {
  if (o_.rank != 0) return;  // only the chief saves
  NoGradGuard ng;
  std::vector<NamedTensors> params(clients_.size()), states(clients_.size());
  on_all_shards([&](int s) { clients_[s]->save(&params[s], &states[s]); });
  NamedTensors full = optimizer.state_dict();  // right keys and shapes; values replaced below
  std::map<std::string, Tensor> state(full.begin(), full.end());
  for (size_t s = 0; s < clients_.size(); ++s) {
    std::map<std::string, Tensor> got(states[s].begin(), states[s].end());
    for (const auto& [name, t] : params[s]) {
      WireTensor w{name, dtype_name(t.dtype()), t.shape(), 0, {}};
      w.byte_length = t.numel() * static_cast<int64_t>(dtype_size(t.dtype()));
      w.data = std::string_view(static_cast<const char*>(t.raw_data()), w.byte_length);
      store_piece(static_cast<int>(s), w);
    }
    if (s == 0 && got.count("step")) state["step"].copy_(got["step"]);
    for (const Piece& p : plan_.shards[s]) {
      const std::string& var = params_[p.variable].first;
      auto piece_state = [&](const std::string& suffix) -> Tensor {
        auto it = got.find(p.name + suffix);
        TANDEM_CHECK_T(CommError, it != got.end(), "parameter server shard ", s,
                       " sent no optimizer state '", p.name, suffix, "'");
        return it->second;
      };
      if (state.count(var + ".step")) state[var + ".step"].copy_(piece_state(".step"));
      for (const std::string& b : optimizer.buffer_names()) {
        Tensor dst = flat_slice(state.at(var + "." + b), p.offset, p.numel);
        dst.copy_(piece_state("." + b).reshape({-1}));
      }
    }
  }
  for (auto& [name, t] : full) t = state[name];
  optimizer.load_state_dict(full);
}

void PsStrategy::finish() {
  on_all_shards([&](int s) { clients_[s]->done(o_.rank); });
}

std::string PsStrategy::report() const {
  if (updates_ == 0) return "";
  char buf[160];
  std::snprintf(buf, sizeof(buf),
                "parameter_server: push %.3f ms/step, pull %.3f ms/step (%s, %lld steps)",
                push_seconds_ / updates_ * 1000, pull_seconds_ / updates_ * 1000,
                to_string(o_.mode), static_cast<long long>(updates_));
  return buf;
}

}  // namespace tandem

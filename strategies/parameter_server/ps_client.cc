#include "strategies/parameter_server/ps_client.h"

#include <grpcpp/grpcpp.h>

#include <optional>
#include <thread>

#include "collectives/store/grpc_security.h"
#include "core/base/error.h"
#include "strategies/parameter_server/proto_tensor.h"
#include "strategies/parameter_server/ps.grpc.pb.h"

namespace tandem {
namespace {

namespace pb = ::tandem::ps;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Time for a blocking call's answer to come back once the server's own timeout has passed.
constexpr milliseconds kGrace{2000};

}  // namespace

struct PsClient::Impl {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::ParameterServer::Stub> stub;
  std::string token;
};

PsClient::PsClient(int shard, std::string endpoint, std::string token, milliseconds timeout,
                   int64_t max_message_bytes, const JobTls& tls)
    : shard_(shard),
      endpoint_(std::move(endpoint)),
      timeout_(timeout),
      max_message_bytes_(max_message_bytes),
      impl_(std::make_unique<Impl>()) {
  TANDEM_CHECK(timeout_.count() > 0, "parameter server client: timeout must be positive");
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(
      static_cast<int>(std::min<int64_t>(max_message_bytes + (1 << 20), INT32_MAX)));
  args.SetMaxSendMessageSize(-1);
  // Reconnect quickly after a restart of the server, not after gRPC's default back-off of minutes.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  impl_->channel = job_channel(endpoint_, tls, args, str("parameter server shard ", shard_));
  impl_->stub = pb::ParameterServer::NewStub(impl_->channel);
  impl_->token = std::move(token);
}

PsClient::~PsClient() = default;

void PsClient::cancel() {
  cancelled_.store(true);
  std::lock_guard<std::mutex> lock(mu_);
  for (grpc::ClientContext* ctx : active_) ctx->TryCancel();
}

template <typename Call>
void PsClient::call(const std::string& what, milliseconds deadline, bool wait_for_ready,
                    Call&& rpc) {
  const std::string where = str("parameter server shard ", shard_, " (", endpoint_, "): ", what);
  const auto give_up = Clock::now() + std::min(deadline, kRetryWindow);
  for (int attempt = 0;; ++attempt) {
    if (cancelled_.load()) throw CommError(str(where, " cancelled: another shard failed"));
    grpc::ClientContext ctx;
    attach_job_token(ctx, impl_->token);
    ctx.set_deadline(std::chrono::system_clock::now() + deadline);
    ctx.set_wait_for_ready(wait_for_ready);
    {
      std::lock_guard<std::mutex> lock(mu_);
      active_.insert(&ctx);
    }
    grpc::Status st = rpc(ctx);
    {
      std::lock_guard<std::mutex> lock(mu_);
      active_.erase(&ctx);
    }
    if (st.ok()) return;
    const std::string& msg = st.error_message();
    switch (st.error_code()) {
      case grpc::StatusCode::UNAVAILABLE:
        if (!cancelled_.load() && Clock::now() < give_up) {
          std::this_thread::sleep_for(milliseconds(std::min(1000, 50 << std::min(attempt, 5))));
          continue;  // pushes are de-duplicated on (worker, step): a retry is harmless
        }
        throw CommError(str(where, " failed: the shard is unavailable (", msg,
                            "): the `tandem ps --shard ", shard_,
                            "` process died or is unreachable"));
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        if (impl_->channel->GetState(false) != GRPC_CHANNEL_READY)
          throw CommError(str(where, " failed: could not reach the shard within ", deadline.count(),
                              " ms: check that `tandem ps --shard ", shard_,
                              "` runs there (TANDEM_PS_ENDPOINTS) and, across hosts, that "
                              "TANDEM_TLS_CERT is this job's certificate"));
        throw TimeoutError(str(where, ": no answer within ", deadline.count(), " ms",
                               msg.empty() ? std::string() : " (" + msg + ")",
                               "; raise strategy.timeout_s if workers are just slow"));
      case grpc::StatusCode::ABORTED:
        throw CommError(str(where, " aborted: ", msg));
      case grpc::StatusCode::CANCELLED:
        throw CommError(
            str(where, " cancelled", cancelled_.load() ? ": another shard failed" : ""));
      case grpc::StatusCode::RESOURCE_EXHAUSTED:
        throw CommError(str(where, " refused: RESOURCE_EXHAUSTED: ", msg,
                            ": a message exceeded strategy.max_message_mb (",
                            max_message_bytes_ / 1048576.0,
                            " MiB): raise it, or spread the model over more servers with "
                            "strategy.num_ps"));
      default:
        throw CommError(str(where, " refused: ", grpc_code_name(st.error_code()), ": ", msg));
    }
  }
}

bool PsClient::register_worker(int worker, int world_size, int64_t incarnation, PsMode mode,
                               int num_shards) {
  pb::RegisterRequest req;
  req.set_worker(worker);
  req.set_world_size(world_size);
  req.set_incarnation(incarnation);
  req.set_mode(to_string(mode));
  req.set_num_shards(num_shards);
  pb::RegisterResponse resp;
  call(str("register worker ", worker), timeout_, /*wait_for_ready=*/true,
       [&](grpc::ClientContext& ctx) { return impl_->stub->Register(&ctx, req, &resp); });
  TANDEM_CHECK_T(CommError, resp.shard() == shard_, "parameter server at ", endpoint_,
                 " serves shard ", resp.shard(), ", but TANDEM_PS_ENDPOINTS lists it as shard ",
                 shard_, ": list the endpoints in shard order");
  return resp.initialized();
}

void PsClient::restore(int world_size, const NamedTensors& params,
                       const NamedTensors& optimizer_state) {
  // The stream, at most max_message_bytes of tensor data per message (ps.proto).
  std::vector<OutTensor> out;
  for (const auto& [name, t] : params) out.push_back(out_tensor(name, t));
  for (const auto& [name, t] : optimizer_state) out.push_back(out_tensor(name, t));
  std::vector<pb::RestoreRequest> stream;
  fill_pieces(out, max_message_bytes_, [&](size_t k, size_t t) {
    if (k == stream.size()) stream.emplace_back().set_world_size(world_size);
    return t < params.size() ? stream[k].add_params() : stream[k].add_optimizer();
  });
  pb::RestoreResponse resp;
  call("restore", timeout_, false, [&](grpc::ClientContext& ctx) {
    std::unique_ptr<grpc::ClientWriter<pb::RestoreRequest>> writer =
        impl_->stub->Restore(&ctx, &resp);
    for (const pb::RestoreRequest& m : stream)
      if (!writer->Write(m)) break;  // the server ended the call: Finish says why
    writer->WritesDone();
    return writer->Finish();
  });
}

int64_t PsClient::pull(int worker, int64_t step,
                       const std::function<void(const WireTensor&)>& sink) {
  pb::PullRequest req;
  req.set_worker(worker);
  req.set_step(step);
  req.set_timeout_ms(timeout_.count());
  const std::string what = str("pull for step ", step);
  std::optional<WireAssembler> params;
  std::optional<std::string> malformed;
  int64_t applied_through = 0;
  call(what, timeout_ + kGrace, false, [&](grpc::ClientContext& ctx) {
    params.emplace(max_message_bytes_, "parameter");  // each try starts over
    malformed.reset();
    std::unique_ptr<grpc::ClientReader<pb::PullResponse>> reader = impl_->stub->Pull(&ctx, req);
    pb::PullResponse m;
    while (reader->Read(&m)) {
      applied_through = m.applied_through();
      for (const pb::Tensor& t : m.params())
        if (!malformed) malformed = params->add(wire_view(t));
    }
    grpc::Status st = reader->Finish();
    if (st.ok() && !malformed) malformed = params->finish();
    return st;
  });
  if (malformed)
    throw CommError(str("parameter server shard ", shard_, " (", endpoint_, "): ", what,
                        ": malformed answer: ", *malformed));
  for (size_t i = 0; i < params->size(); ++i) sink(params->tensor(i));
  return applied_through;
}

bool PsClient::push(int worker, int64_t incarnation, int64_t step, double lr,
                    const std::vector<std::pair<std::string, std::string_view>>& grads,
                    DType dtype) {
  const int64_t item = static_cast<int64_t>(dtype_size(dtype));
  std::vector<OutTensor> out;
  for (const auto& [name, bytes] : grads) {
    OutTensor o;
    o.name = name;
    o.dtype = dtype;
    o.shape = {static_cast<int64_t>(bytes.size()) / item};
    o.data = bytes;
    out.push_back(std::move(o));
  }
  std::vector<pb::PushRequest> stream;
  fill_pieces(out, max_message_bytes_, [&](size_t k, size_t) {
    if (k == stream.size()) {
      pb::PushRequest& m = stream.emplace_back();
      m.set_worker(worker);
      m.set_incarnation(incarnation);
      m.set_step(step);
      m.set_lr(lr);
    }
    return stream[k].add_grads();
  });
  pb::PushResponse resp;
  call(str("push of step ", step), timeout_, false, [&](grpc::ClientContext& ctx) {
    std::unique_ptr<grpc::ClientWriter<pb::PushRequest>> writer = impl_->stub->Push(&ctx, &resp);
    for (const pb::PushRequest& m : stream)
      if (!writer->Write(m)) break;  // the server ended the call: Finish says why
    writer->WritesDone();
    return writer->Finish();
  });
  return resp.duplicate();
}

std::vector<double> PsClient::barrier(int worker, const std::string& key,
                                      const std::vector<double>& values) {
  pb::BarrierRequest req;
  req.set_worker(worker);
  req.set_key(key);
  for (double v : values) req.add_values(v);
  req.set_timeout_ms(timeout_.count());
  pb::BarrierResponse resp;
  call(str("barrier '", key, "'"), timeout_ + kGrace, false,
       [&](grpc::ClientContext& ctx) { return impl_->stub->Barrier(&ctx, req, &resp); });
  TANDEM_CHECK_T(CommError, resp.sums_size() == static_cast<int>(values.size()),
                 "parameter server shard ", shard_, ": barrier '", key, "' answered ",
                 resp.sums_size(), " sums for ", values.size(), " values");
  return std::vector<double>(resp.sums().begin(), resp.sums().end());
}

void PsClient::save(NamedTensors* params, NamedTensors* optimizer_state) {
  pb::SaveRequest req;
  std::optional<WireAssembler> params_in, state_in;
  std::optional<std::string> malformed;
  call("save", timeout_, false, [&](grpc::ClientContext& ctx) {
    params_in.emplace(max_message_bytes_, "parameter");  // each try starts over
    state_in.emplace(max_message_bytes_, "optimizer state");
    malformed.reset();
    std::unique_ptr<grpc::ClientReader<pb::SaveResponse>> reader = impl_->stub->Save(&ctx, req);
    pb::SaveResponse m;
    while (reader->Read(&m)) {
      for (const pb::Tensor& t : m.params())
        if (!malformed) malformed = params_in->add(wire_view(t));
      for (const pb::Tensor& t : m.optimizer())
        if (!malformed) malformed = state_in->add(wire_view(t));
    }
    grpc::Status st = reader->Finish();
    if (st.ok() && !malformed) malformed = params_in->finish();
    if (st.ok() && !malformed) malformed = state_in->finish();
    return st;
  });
  if (malformed)
    throw CommError(str("parameter server shard ", shard_, " (", endpoint_,
                        "): save: malformed answer: ", *malformed));
  for (size_t i = 0; i < params_in->size(); ++i)
    params->emplace_back(std::string(params_in->tensor(i).name),
                         tensor_from_wire(params_in->tensor(i)));
  for (size_t i = 0; i < state_in->size(); ++i)
    optimizer_state->emplace_back(std::string(state_in->tensor(i).name),
                                  tensor_from_wire(state_in->tensor(i)));
}

void PsClient::done(int worker) {
  pb::DoneRequest req;
  req.set_worker(worker);
  pb::DoneResponse resp;
  call("done", timeout_, false,
       [&](grpc::ClientContext& ctx) { return impl_->stub->Done(&ctx, req, &resp); });
}

}  // namespace tandem

namespace tandem {

void PsClient::abort(int worker, const std::string& reason) {
  pb::AbortRequest req;
  req.set_worker(worker);
  req.set_reason(reason);
  pb::AbortResponse resp;
  grpc::ClientContext ctx;
  attach_job_token(ctx, impl_->token);
  ctx.set_deadline(std::chrono::system_clock::now() + milliseconds(2000));
  impl_->stub->Abort(&ctx, req, &resp);  // best effort: the shard may be the one that died
}

}  // namespace tandem

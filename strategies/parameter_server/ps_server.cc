// PsServer: the gRPC service behind ps.proto. It checks every call's token and hands the call,
// its streams as functions, to the shard's state (ps_shard.h).
//
// Every method is served as a stream on this side (the generated "streamed" handlers; clients
// still call unary and server-streaming methods, the wire is the same): gRPC reads a unary
// request whole -- past any message limit -- before a handler sees the metadata, while a streamed
// handler checks the token first and only then reads. A call without the token is refused before
// a byte of its request is read.
#include "strategies/parameter_server/ps_server.h"

#include <grpcpp/grpcpp.h>

#include <optional>

#include "collectives/store/grpc_security.h"
#include "core/base/error.h"
#include "strategies/parameter_server/ps.grpc.pb.h"
#include "strategies/parameter_server/ps_shard.h"

namespace tandem {
namespace {

namespace pb = ::tandem::ps;
using std::chrono::milliseconds;

}  // namespace

class PsService final : public pb::ParameterServer::StreamedService {
 public:
  explicit PsService(PsServerOptions o) : token_(o.token), shard_(std::move(o)) {}

  PsShard& shard() { return shard_; }

  grpc::Status StreamedRegister(
      grpc::ServerContext* ctx,
      grpc::ServerUnaryStreamer<pb::RegisterRequest, pb::RegisterResponse>* call) override {
    return unary(ctx, call, [&](const pb::RegisterRequest& req, pb::RegisterResponse* resp) {
      return shard_.register_worker(req, resp);
    });
  }
  grpc::Status Restore(grpc::ServerContext* ctx, grpc::ServerReader<pb::RestoreRequest>* reader,
                       pb::RestoreResponse*) override {
    if (auto bad = authorize(ctx)) return *bad;
    return shard_.restore([&](pb::RestoreRequest* m) { return reader->Read(m); });
  }
  grpc::Status StreamedPull(
      grpc::ServerContext* ctx,
      grpc::ServerSplitStreamer<pb::PullRequest, pb::PullResponse>* call) override {
    if (auto bad = authorize(ctx)) return *bad;
    pb::PullRequest req;
    if (!call->Read(&req)) return no_request();
    return shard_.pull(
        req, [&] { return ctx->IsCancelled(); },
        [&](const pb::PullResponse& m) { return call->Write(m); });
  }
  grpc::Status Push(grpc::ServerContext* ctx, grpc::ServerReader<pb::PushRequest>* reader,
                    pb::PushResponse* resp) override {
    if (auto bad = authorize(ctx)) return *bad;
    return shard_.push([&](pb::PushRequest* m) { return reader->Read(m); }, resp);
  }
  grpc::Status StreamedBarrier(
      grpc::ServerContext* ctx,
      grpc::ServerUnaryStreamer<pb::BarrierRequest, pb::BarrierResponse>* call) override {
    return unary(ctx, call, [&](const pb::BarrierRequest& req, pb::BarrierResponse* resp) {
      return shard_.barrier(
          req, [&] { return ctx->IsCancelled(); }, resp);
    });
  }
  grpc::Status StreamedSave(
      grpc::ServerContext* ctx,
      grpc::ServerSplitStreamer<pb::SaveRequest, pb::SaveResponse>* call) override {
    if (auto bad = authorize(ctx)) return *bad;
    pb::SaveRequest req;
    if (!call->Read(&req)) return no_request();
    return shard_.save([&](const pb::SaveResponse& m) { return call->Write(m); });
  }
  grpc::Status StreamedAbort(
      grpc::ServerContext* ctx,
      grpc::ServerUnaryStreamer<pb::AbortRequest, pb::AbortResponse>* call) override {
    return unary(ctx, call, [&](const pb::AbortRequest& req, pb::AbortResponse*) {
      return shard_.abort(req);
    });
  }
  grpc::Status StreamedDone(
      grpc::ServerContext* ctx,
      grpc::ServerUnaryStreamer<pb::DoneRequest, pb::DoneResponse>* call) override {
    return unary(ctx, call,
                 [&](const pb::DoneRequest& req, pb::DoneResponse*) { return shard_.done(req); });
  }

 private:
  // The call refused, or nullopt when it carries this job's token. Never repeats a token.
  std::optional<grpc::Status> authorize(grpc::ServerContext* ctx) const {
    grpc::Status status = check_job_token(*ctx, token_, "parameter-server",
                                          "set TANDEM_JOB_TOKEN; tandem launch sets it for its "
                                          "workers");
    if (status.ok()) return std::nullopt;
    return status;
  }

  static grpc::Status no_request() {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the call carried no request");
  }

  // A unary method of ps.proto: the token, then the one request, `handle`, and its response.
  template <typename Request, typename Response, typename Handle>
  grpc::Status unary(grpc::ServerContext* ctx, grpc::ServerUnaryStreamer<Request, Response>* call,
                     Handle&& handle) {
    if (auto bad = authorize(ctx)) return *bad;
    Request req;
    if (!call->Read(&req)) return no_request();
    Response resp;
    grpc::Status status = handle(req, &resp);
    if (status.ok()) call->Write(resp);  // a worker that went away just misses the answer
    return status;
  }

  const std::string token_;
  PsShard shard_;
};

struct PsServer::GrpcServer {
  std::unique_ptr<grpc::Server> server;
};

PsServer::PsServer(PsServerOptions options) {
  TANDEM_CHECK_T(ConfigError, !options.token.empty(), "parameter server: empty job token");
  TANDEM_CHECK_T(ConfigError, options.shard >= 0 && options.shard < options.num_shards, "--shard ",
                 options.shard, " is out of range for strategy.num_ps = ", options.num_shards,
                 " (expected 0 to ", options.num_shards - 1, ")");
  TANDEM_CHECK_T(
      ConfigError,
      options.max_message_bytes > 0 && options.max_message_bytes <= (int64_t{2} << 30) - (1 << 20),
      "parameter server: max message size ", options.max_message_bytes,
      " bytes is out of range (1 byte to 2 GiB - 1 MiB)");
  TANDEM_ASSERT(options.make_optimizer != nullptr, "PsServerOptions.make_optimizer not set");
  host_ = options.host.empty() ? std::string("127.0.0.1") : options.host;
  const int64_t max_message = options.max_message_bytes;
  const int port = options.port;
  // Read before the options move: a missing certificate fails here, before anything listens.
  std::shared_ptr<grpc::ServerCredentials> credentials =
      server_credentials(host_, options.tls, str("parameter server shard ", options.shard));
  service_ = std::make_unique<PsService>(std::move(options));
  grpc::ServerBuilder builder;
  const std::string address =
      host_.find(':') != std::string::npos ? str("[", host_, "]:", port) : str(host_, ":", port);
  int bound = 0;
  builder.AddListeningPort(address, credentials, &bound);
  builder.RegisterService(service_.get());
  // gRPC refuses a larger message before it is parsed; framing of a full message fits in 1 MiB.
  builder.SetMaxReceiveMessageSize(static_cast<int>(max_message + (1 << 20)));
  builder.SetMaxSendMessageSize(-1);
  server_ = std::make_unique<GrpcServer>();
  server_->server = builder.BuildAndStart();
  if (!server_->server || bound == 0)
    throw CommError(str("parameter server cannot listen on ", address,
                        ": the port is taken or the host is not an address of this machine"));
  port_ = bound;
}

PsServer::~PsServer() {
  shutdown();
}

std::string PsServer::endpoint() const {
  return host_.find(':') != std::string::npos ? str("[", host_, "]:", port_)
                                              : str(host_, ":", port_);
}

bool PsServer::wait_finished(milliseconds timeout) {
  return service_->shard().wait_finished(timeout);
}
bool PsServer::finished() const {
  return service_->shard().finished();
}
int64_t PsServer::max_lead() const {
  return service_->shard().max_lead();
}

void PsServer::shutdown(milliseconds grace) {
  if (!server_ || !server_->server) return;
  service_->shard().stop();
  server_->server->Shutdown(std::chrono::system_clock::now() + grace);
  server_->server->Wait();
  server_->server.reset();
}

}  // namespace tandem

#include "strategies/strategy_factory.h"

#include <chrono>
#include <cstdio>

#include "collectives/checked_communicator.h"
#include "collectives/gloo/gloo_communicator.h"
#include "collectives/hierarchical/make_hierarchical.h"
#include "collectives/inprocess/inprocess_group.h"
#include "collectives/mpi/mpi_communicator.h"
#include "collectives/nccl_factory.h"
#include "collectives/net/host_address.h"
#include "collectives/shm/shm_communicator.h"
#include "core/base/error.h"
#include "strategies/ddp/ddp_strategy.h"
#include "strategies/mirrored/mirrored_strategy.h"
#include "strategies/parameter_server/ps_strategy.h"
#include "strategies/single/single_strategy.h"
#include "strategies/trainer/builders.h"

namespace tandem {
namespace {

std::string where(const ExperimentConfig& cfg) {
  return cfg.source_path.empty() ? std::string("config") : cfg.source_path;
}

void require_world_of_one(const ExperimentConfig& cfg, const ProcessEnvironment& env) {
  TANDEM_CHECK_T(ConfigError, env.world_size == 1, where(cfg), ": strategy.name: '",
                 cfg.strategy.name, "' runs in one process, but this process is rank ", env.rank,
                 " of ", env.world_size, " (from ", env.source,
                 "); use strategy.name=ddp for several processes");
}

bool under_mpi(const ProcessEnvironment& env) {
  return env.source == "openmpi" || env.source == "pmix";
}

// strategy.backend, auto resolved: never CommBackend::kAuto.
CommBackend choose_backend(const ExperimentConfig& cfg, const ProcessEnvironment& env) {
  const CommBackend b = cfg.strategy.backend;
  if (b != CommBackend::kAuto) return b;
  if (cfg.training.device != "cpu") return CommBackend::kNccl;  // CUDA tensors
  // Several ranks on each of several hosts: shared memory inside a host, one slice per local rank
  // across hosts (what the ranks' host names say decides in the end, see make_communicator).
  const bool several_hosts = env.local_world_size < env.world_size;
  if (several_hosts && env.local_world_size > 1) return CommBackend::kHierarchical;
  if (under_mpi(env)) return CommBackend::kMpi;
  if (env.world_size == 1) return CommBackend::kInProcess;
  // Every rank on this host: all-reduce through shared memory instead of loopback TCP.
  return several_hosts ? CommBackend::kGloo : CommBackend::kShm;
}

// The address Gloo advertises to its peers: loopback when the whole job is on this host, else the
// named interface's, else the one this host reaches the store's host from.
GlooOptions gloo_options(const ProcessEnvironment& env, int attempt, const std::string& group) {
  GlooOptions go;
  go.key_prefix = str(group, "/attempt", attempt);
  if (!env.socket_ifname.empty()) {
    go.interface = env.socket_ifname;
  } else if (env.local_world_size < env.world_size) {
    go.hostname = address_toward(env.master_addr);
  }
  return go;
}

void say(const std::string& line) {
  std::fprintf(stderr, "tandem train: %s\n", line.c_str());
}

}  // namespace

std::vector<std::string> parse_ps_endpoints(const std::string& value, int num_ps) {
  TANDEM_CHECK_T(ConfigError, !value.empty(),
                 "strategy.name: parameter_server needs the servers' addresses in "
                 "TANDEM_PS_ENDPOINTS=host:port,host:port,... (one per shard, strategy.num_ps = ",
                 num_ps, "); `tandem launch --num-ps ", num_ps, "` starts them and sets it");
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t comma = value.find(',', start);
    std::string ep =
        value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    size_t colon = ep.rfind(':');
    bool ok = colon != std::string::npos && colon > 0 && colon + 1 < ep.size() &&
              ep.find_first_not_of("0123456789", colon + 1) == std::string::npos &&
              ep.size() - colon - 1 <= 5 && std::stoi(ep.substr(colon + 1)) >= 1 &&
              std::stoi(ep.substr(colon + 1)) <= 65535;
    TANDEM_CHECK_T(ConfigError, ok, "TANDEM_PS_ENDPOINTS: '", ep, "' (entry ", out.size(),
                   ") is not HOST:PORT with a port in 1..65535");
    out.push_back(ep);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  TANDEM_CHECK_T(ConfigError, static_cast<int>(out.size()) == num_ps, "TANDEM_PS_ENDPOINTS lists ",
                 out.size(), " servers but strategy.num_ps is ", num_ps,
                 ": give one host:port per shard, in shard order");
  return out;
}

std::unique_ptr<Strategy> make_ps_strategy(const ExperimentConfig& cfg,
                                           const ProcessEnvironment& env) {
  PsStrategyOptions o;
  o.endpoints = parse_ps_endpoints(env.ps_endpoints, cfg.strategy.num_ps);
  TANDEM_CHECK_T(ConfigError, !env.job_token.empty(),
                 "strategy.name: parameter_server needs the job token in TANDEM_JOB_TOKEN (the "
                 "servers refuse calls without it); `tandem launch --num-ps K` sets it");
  o.token = env.job_token;
  o.tls = env.tls;
  o.rank = env.rank;
  o.world_size = env.world_size;
  o.incarnation = env.restart_count;
  o.mode = cfg.strategy.mode;
  o.timeout = std::chrono::milliseconds(static_cast<int64_t>(cfg.strategy.timeout_s * 1000));
  o.max_message_bytes = static_cast<int64_t>(cfg.strategy.max_message_mb * 1048576.0);
  return std::make_unique<PsStrategy>(std::move(o));
}

namespace {

// strategy.backend hierarchical (auto picks it when every host runs several ranks): the ranks'
// host names decide the groups. Where they do not call for a hierarchy after all (one host; one
// rank per host; hosts with different rank counts), the flat backend it stands for: shm on one
// host, else Gloo (MPI under mpirun).
std::unique_ptr<Communicator> make_hierarchical(const ExperimentConfig& cfg,
                                                const ProcessEnvironment& env,
                                                const CommOptions& opts, CommunicatorBuild& out) {
  const int attempt = env.restart_count;
  if (under_mpi(env)) {
    out.rendezvous =
        MpiRendezvous::start(opts.timeout, env.master_addr, env.socket_ifname, env.tls);
    out.store = out.rendezvous->store();
  } else {
    TANDEM_CHECK_T(ConfigError, !env.job_token.empty(), "strategy.backend: hierarchical needs the ",
                   "rendezvous store started by `tandem launch` (TANDEM_JOB_TOKEN is not set)");
    out.store =
        std::make_shared<StoreClient>(env.master_endpoint(), env.job_token, opts.timeout, env.tls);
  }
  StoreClient& store = *out.store;
  const std::string prefix = str("hier/attempt", attempt);
  const HostLayout layout =
      exchange_host_layout(store, prefix, env.rank, env.world_size, this_hostname(), opts.timeout);
  if (calls_for_hierarchy(layout)) {
    if (env.rank == 0)
      say(str("hierarchical all-reduce: ", layout.hosts(), " hosts x ", layout.ranks_on_host[0],
              " ranks (shared memory inside a host, ", under_mpi(env) ? "MPI" : "Gloo",
              " between hosts)"));
    if (under_mpi(env)) return make_hierarchical_mpi(store, layout, env.rank, prefix, opts);
    return make_hierarchical_gloo(store, layout, env.rank, gloo_options(env, attempt, "hier"),
                                  prefix, opts, env.shm_prefix);
  }
  if (env.rank == 0)
    say(str("strategy.backend: hierarchical needs several ranks on each of several hosts; ",
            layout.hosts(), layout.hosts() == 1 ? " host" : " hosts", " with ",
            layout.uniform() ? str(layout.ranks_on_host[0], " rank(s) each")
                             : std::string("different rank counts"),
            ": using a flat all-reduce"));
  if (under_mpi(env)) return std::make_unique<MpiCommunicator>(opts);
  std::unique_ptr<Communicator> flat = std::make_unique<GlooCommunicator>(
      store, env.rank, env.world_size, gloo_options(env, attempt, "gloo"), opts);
  if (layout.hosts() == 1)
    flat = std::make_unique<ShmCommunicator>(std::move(flat), store, str("shm/attempt", attempt),
                                             env.shm_prefix);
  return flat;
}

// The job's store, hosted by `tandem launch` (whose token every worker has).
std::shared_ptr<StoreClient> launcher_store(const ProcessEnvironment& env, CommBackend backend,
                                            const CommOptions& opts) {
  TANDEM_CHECK_T(ConfigError, !env.job_token.empty(), "strategy.backend: ", backend,
                 " needs the rendezvous store started by `tandem launch` (TANDEM_JOB_TOKEN is ",
                 "not set); start the job with tandem launch, or use mpirun with ",
                 "strategy.backend=mpi");
  return std::make_shared<StoreClient>(env.master_endpoint(), env.job_token, opts.timeout, env.tls);
}

std::unique_ptr<Communicator> checked(std::unique_ptr<Communicator> comm, CommunicatorBuild& out,
                                      const std::string& group) {
  return std::make_unique<CheckedCommunicator>(std::move(comm), out.store, "checked/" + group);
}

std::unique_ptr<Communicator> make_mpi(const ProcessEnvironment& env, const CommOptions& opts,
                                       CommunicatorBuild& out) {
  // The Store first, while no communication thread calls MPI yet.
  out.rendezvous = MpiRendezvous::start(opts.timeout, env.master_addr, env.socket_ifname, env.tls);
  out.store = out.rendezvous->store();
  auto comm = std::make_unique<MpiCommunicator>(opts);
  TANDEM_CHECK_T(ConfigError, comm->world_size() == env.world_size, "strategy.backend: mpi sees ",
                 comm->world_size(), " ranks but the environment (", env.source, ") says ",
                 env.world_size, "; start the job with mpirun or srun --mpi=pmix");
  return checked(std::move(comm), out, "mpi");
}

std::unique_ptr<Communicator> make_gloo_or_shm(const ExperimentConfig& cfg,
                                               const ProcessEnvironment& env, CommBackend backend,
                                               const CommOptions& opts, CommunicatorBuild& out) {
  TANDEM_CHECK_T(
      ConfigError, backend == CommBackend::kGloo || env.local_world_size == env.world_size,
      where(cfg), ": strategy.backend: shm connects the ranks of one host, but this ", "job has ",
      env.world_size, " ranks and ", env.local_world_size, " on this host; use gloo (or auto)");
  out.store = launcher_store(env, backend, opts);
  const int attempt = env.restart_count;
  std::unique_ptr<Communicator> comm = std::make_unique<GlooCommunicator>(
      *out.store, env.rank, env.world_size, gloo_options(env, attempt, "gloo"), opts);
  if (backend == CommBackend::kShm)
    comm = std::make_unique<ShmCommunicator>(std::move(comm), *out.store,
                                             str("shm/attempt", attempt), env.shm_prefix);
  return checked(std::move(comm), out, str("attempt", attempt));
}

std::unique_ptr<Communicator> make_nccl(const ProcessEnvironment& env, const Device& device,
                                        const CommOptions& opts, CommunicatorBuild& out) {
  TANDEM_CHECK_T(ConfigError, device.is_cuda(),
                 "strategy.backend: nccl reduces CUDA tensors; set training.device=cuda or use "
                 "gloo or mpi");
  if (env.world_size > 1) out.store = launcher_store(env, CommBackend::kNccl, opts);
  return make_nccl_communicator(out.store.get(), env.rank, env.world_size, device.index,
                                str("nccl/attempt", env.restart_count), opts);
}

// ddp's communicator, for the backend strategy.backend names (or auto picks).
std::unique_ptr<Communicator> build_communicator(const ExperimentConfig& cfg,
                                                 const ProcessEnvironment& env,
                                                 const Device& device, const CommOptions& opts,
                                                 CommunicatorBuild& out) {
  const CommBackend backend = choose_backend(cfg, env);
  switch (backend) {
    case CommBackend::kHierarchical:
      return checked(make_hierarchical(cfg, env, opts, out), out,
                     str("hier/attempt", env.restart_count));
    case CommBackend::kMpi:
      return make_mpi(env, opts, out);
    case CommBackend::kGloo:
    case CommBackend::kShm:
      return make_gloo_or_shm(cfg, env, backend, opts, out);
    case CommBackend::kNccl:
      return make_nccl(env, device, opts, out);
    case CommBackend::kInProcess:
      TANDEM_CHECK_T(ConfigError, env.world_size == 1, where(cfg),
                     ": strategy.backend: inprocess connects threads of one process; with ",
                     env.world_size, " processes use gloo or mpi");
      return InProcessGroup(1).communicator(0, opts);
    case CommBackend::kAuto:
      break;
  }
  TANDEM_ASSERT(false, "choose_backend left strategy.backend ", backend);
  return nullptr;
}

CommunicatorBuild communicator_on(const ExperimentConfig& cfg, const ProcessEnvironment& env,
                                  const Device& device) {
  CommOptions opts;
  opts.timeout = std::chrono::milliseconds(static_cast<int64_t>(cfg.strategy.timeout_s * 1000));
  opts.debug = cfg.strategy.debug_collectives;
  CommunicatorBuild out;
  std::unique_ptr<Communicator> comm = build_communicator(cfg, env, device, opts, out);
  comm->set_options(opts);
  out.comm = std::move(comm);
  return out;
}

std::unique_ptr<Strategy> make_ddp(const ExperimentConfig& cfg, const ProcessEnvironment& env,
                                   const Device& device, StrategyBuild& out) {
  CommunicatorBuild built = communicator_on(cfg, env, device);
  out.rendezvous = std::move(built.rendezvous);
  out.store = built.store;
  ReducerOptions ro;
  ro.first_bucket_bytes = static_cast<int64_t>(cfg.strategy.first_bucket_mb * 1048576.0);
  ro.bucket_bytes = static_cast<int64_t>(cfg.strategy.bucket_mb * 1048576.0);
  ro.compression = cfg.strategy.compression;
  // auto: shard the update where the parameters' gather is an in-place copy through shared
  // memory (same bits; the optimizer's per-step memory traffic divided by the ranks).
  const bool shard = cfg.strategy.shard_optimizer == ShardOptimizer::kAlways ||
                     (cfg.strategy.shard_optimizer == ShardOptimizer::kAuto &&
                      built.comm->backend_name().rfind("shm+", 0) == 0);
  return std::make_unique<DdpStrategy>(built.comm, ro, shard);
}

}  // namespace

CommunicatorBuild make_communicator(const ExperimentConfig& cfg, const ProcessEnvironment& env) {
  return communicator_on(cfg, env, resolve_training_device(cfg, env.local_rank));
}

StrategyBuild make_strategy(const ExperimentConfig& cfg, const ProcessEnvironment& env) {
  StrategyBuild out;
  // The device first (LOCAL_RANK picks the GPU), before a communicator touches CUDA.
  const Device device = resolve_training_device(cfg, env.local_rank);
  switch (cfg.strategy.name) {
    case StrategyName::kSingle:
      require_world_of_one(cfg, env);
      out.strategy = std::make_unique<SingleStrategy>();
      break;
    case StrategyName::kMirrored: {
      require_world_of_one(cfg, env);
      auto data = std::make_shared<std::shared_ptr<const Dataset>>();
      out.strategy = std::make_unique<MirroredStrategy>(cfg.strategy.replicas, [cfg, data] {
        if (!*data) *data = build_dataset(cfg, "train");
        return build_model(cfg, **data);
      });
      break;
    }
    case StrategyName::kParameterServer:
      out.strategy = make_ps_strategy(cfg, env);
      break;
    case StrategyName::kDdp:
      out.strategy = make_ddp(cfg, env, device, out);
      break;
  }
  return out;
}

}  // namespace tandem

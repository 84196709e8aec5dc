#include "collectives/hierarchical/make_hierarchical.h"

#include <mpi.h>

#include "collectives/hierarchical/hierarchical_communicator.h"
#include "collectives/mpi/mpi_communicator.h"
#include "collectives/mpi/mpi_runtime.h"
#include "collectives/shm/shm_communicator.h"
#include "core/base/error.h"

namespace tandem {

HostLayout exchange_host_layout(StoreClient& store, const std::string& prefix, int rank, int world,
                                const std::string& host, std::chrono::milliseconds timeout) {
  store.set(str(prefix, "/host/", rank), host);
  std::vector<std::string> keys;
  for (int r = 0; r < world; ++r) keys.push_back(str(prefix, "/host/", r));
  return HostLayout::from_host_names(store.get_many(keys, timeout));
}

bool calls_for_hierarchy(const HostLayout& layout) {
  return layout.hosts() > 1 && layout.uniform() && layout.ranks_on_host.front() > 1;
}

std::unique_ptr<Communicator> make_hierarchical_gloo(StoreClient& store, const HostLayout& layout,
                                                     int rank, const GlooOptions& gloo,
                                                     const std::string& prefix,
                                                     const CommOptions& options,
                                                     const std::string& shm_prefix) {
  TANDEM_CHECK(calls_for_hierarchy(layout), "hierarchical: the host layout does not call for it");
  const int host = layout.host_of[rank], local = layout.local_of[rank];
  GlooOptions g = gloo;
  g.key_prefix = prefix + "/global";
  auto global = std::make_unique<GlooCommunicator>(store, rank, layout.world(), g, options);
  GlooOptions l;  // loopback: every member is on this host
  l.key_prefix = str(prefix, "/local/", host);
  auto local_gloo =
      std::make_unique<GlooCommunicator>(store, local, layout.ranks_on_host[host], l, options);
  auto local_shm = std::make_unique<ShmCommunicator>(std::move(local_gloo), store,
                                                     str(prefix, "/shm/", host), shm_prefix);
  g.key_prefix = str(prefix, "/cross/", local);
  auto cross = std::make_unique<GlooCommunicator>(store, host, layout.hosts(), g, options);
  return std::make_unique<HierarchicalCommunicator>(rank, layout, std::move(global),
                                                    std::move(local_shm), std::move(cross));
}

std::unique_ptr<Communicator> make_hierarchical_mpi(StoreClient& store, const HostLayout& layout,
                                                    int rank, const std::string& prefix,
                                                    const CommOptions& options) {
  TANDEM_CHECK(calls_for_hierarchy(layout), "hierarchical: the host layout does not call for it");
  const int level = MpiRuntime::get().thread_level();
  TANDEM_CHECK_T(Unimplemented, level >= MPI_THREAD_MULTIPLE,
                 "strategy.backend: hierarchical over MPI needs MPI_THREAD_MULTIPLE, but this MPI ",
                 "provides level ", level, "; use strategy.backend=mpi");
  const int host = layout.host_of[rank], local = layout.local_of[rank];
  auto global = std::make_unique<MpiCommunicator>(options);
  TANDEM_CHECK(global->rank() == rank, "hierarchical: MPI rank ", global->rank(),
               " is not the environment's rank ", rank);
  auto local_mpi = std::make_unique<MpiCommunicator>(host, local, options);
  auto local_shm =
      std::make_unique<ShmCommunicator>(std::move(local_mpi), store, str(prefix, "/shm/", host));
  auto cross = std::make_unique<MpiCommunicator>(local, host, options);
  return std::make_unique<HierarchicalCommunicator>(rank, layout, std::move(global),
                                                    std::move(local_shm), std::move(cross));
}

}  // namespace tandem

// Creates the NCCL communicator (collectives/nccl/) when tandem is built with CUDA; otherwise a
// ConfigError saying so. Callers need no #ifdef: the build links either collectives/nccl or
// collectives/no_nccl (CMake chooses, as for core/backends).
#pragma once

#include <memory>
#include <string>

#include "collectives/communicator.h"
#include "collectives/store/store_client.h"

namespace tandem {

// `store` may be null in a world of one (no unique id to exchange). key_prefix as NcclOptions.
std::unique_ptr<Communicator> make_nccl_communicator(StoreClient* store, int rank, int world_size,
                                                     int device, const std::string& key_prefix,
                                                     const CommOptions& options);

}  // namespace tandem

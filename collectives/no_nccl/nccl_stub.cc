// Linked instead of collectives/nccl when tandem is built without CUDA.
#include "collectives/nccl_factory.h"

namespace tandem {

std::unique_ptr<Communicator> make_nccl_communicator(StoreClient*, int, int, int,
                                                     const std::string&, const CommOptions&) {
  throw ConfigError(
      "strategy.backend: nccl needs tandem built with CUDA (configure with "
      "-DTANDEM_CUDA=ON on a machine with nvcc); use gloo or mpi for CPU tensors");
}

}  // namespace tandem

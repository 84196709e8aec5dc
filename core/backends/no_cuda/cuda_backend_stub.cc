// Linked instead of core/backends/cuda when tandem is built without CUDA (TANDEM_CUDA=OFF or no
// nvcc): there is no CUDA backend, and every CUDA tensor op says so.
#include "core/backends/device_backend.h"

namespace tandem {

DeviceBackend* cuda_backend_or_null() {
  return nullptr;
}

}  // namespace tandem

#include "core/tensor/storage.h"

#include "core/backends/device_backend.h"
#include "core/base/error.h"
#include "core/tensor/allocator.h"

namespace tandem {

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_cpu()) {
    data_ = cpu_alloc(nbytes);
  } else {
    data_ = backend_for("storage", device).allocate(nbytes, device.index);
  }
}

Storage::Storage(void* data, size_t nbytes, Device device, std::function<void()> release)
    : data_(data), nbytes_(nbytes), device_(device), release_(std::move(release)) {
  TANDEM_ASSERT(release_ != nullptr, "external storage needs a release function");
}

Storage::~Storage() {
  if (release_) {
    release_();
  } else if (device_.is_cpu()) {
    cpu_free(data_, nbytes_);
  } else if (DeviceBackend* b = cuda_backend_or_null()) {
    b->deallocate(data_, nbytes_, device_.index);
  }
}

}  // namespace tandem

#include "core/tensor/storage.h"

#include "core/base/error.h"
#include "core/tensor/allocator.h"

namespace tandem {

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (!device.is_cpu()) throw Unimplemented("storage on " + device.str() + ": built without CUDA");
  data_ = cpu_alloc(nbytes);
}

Storage::~Storage() { cpu_free(data_, nbytes_); }

}  // namespace tandem

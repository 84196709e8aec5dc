#include "core/backends/cuda/cuda_context.h"

#include <array>
#include <mutex>

#include "core/backends/cuda/cuda_check.h"

namespace tandem::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  if (err == cudaErrorMemoryAllocation)
    throw Error(str(file, ":", line, ": ", call, ": out of device memory"));
  throw Error(str(file, ":", line, ": ", call, " failed: ", cudaGetErrorName(err), " (",
                  cudaGetErrorString(err), ")"));
}

[[noreturn]] void throw_cublas_error(cublasStatus_t st, const char* call, const char* file,
                                     int line) {
  throw Error(str(file, ":", line, ": ", call, " failed: ", cublasGetStatusName(st), " (",
                  cublasGetStatusString(st), ")"));
}

namespace {

constexpr int kMaxDevices = 64;

struct Streams {
  std::mutex mu;
  std::array<cudaStream_t, kMaxDevices> stream{};  // guarded by mu; created once, never destroyed
};

Streams& streams() {
  static Streams* s = new Streams;  // never destroyed: tensors may be freed after static teardown
  return *s;
}

}  // namespace

int device_count() {
  // cudart loads the driver on its first call: without libcuda or a device this returns an error
  // (cudaErrorInsufficientDriver, cudaErrorNoDevice, ...), which means "no CUDA here".
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();  // clear the sticky-free error so later probes start clean
      return 0;
    }
    return n < kMaxDevices ? n : kMaxDevices;
  }();
  return count;
}

void check_device(int device) {
  const int n = device_count();
  TANDEM_CHECK(n > 0, "cuda:", device,
               " requested but no CUDA device is visible (no GPU, no "
               "driver, or CUDA_VISIBLE_DEVICES hides them); use device: cpu");
  TANDEM_CHECK(device >= 0 && device < n, "cuda:", device, " requested but only ", n,
               " CUDA device(s) are visible (cuda:0 to cuda:", n - 1, ")");
}

cudaStream_t compute_stream(int device) {
  check_device(device);
  TANDEM_CUDA_CHECK(cudaSetDevice(device));
  Streams& s = streams();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.stream[device] == nullptr)
    TANDEM_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream[device], cudaStreamNonBlocking));
  return s.stream[device];
}

DeviceGuard::DeviceGuard(int device) {
  TANDEM_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) TANDEM_CUDA_CHECK(cudaSetDevice(device));
}

DeviceGuard::~DeviceGuard() {
  int now = -1;
  if (cudaGetDevice(&now) == cudaSuccess && now != previous_) (void)cudaSetDevice(previous_);
}

Event::Event() {
  TANDEM_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
}
Event::~Event() {
  if (event_ != nullptr) (void)cudaEventDestroy(event_);
}
void Event::record(cudaStream_t stream) {
  TANDEM_CUDA_CHECK(cudaEventRecord(event_, stream));
}
void Event::wait_on(cudaStream_t stream) const {
  TANDEM_CUDA_CHECK(cudaStreamWaitEvent(stream, event_, 0));
}
bool Event::query() const {
  cudaError_t e = cudaEventQuery(event_);
  if (e == cudaErrorNotReady) return false;
  TANDEM_CUDA_CHECK(e);
  return true;
}
void Event::synchronize() const {
  TANDEM_CUDA_CHECK(cudaEventSynchronize(event_));
}

}  // namespace tandem::cuda

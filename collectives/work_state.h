// Completion of one asynchronous collective, shared by its Work (the waiter) and the backend's
// background thread that runs it. finish() publishes the outcome once; waiters sleep on cv.
#pragma once

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>

namespace tandem {

struct WorkState {
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<bool> done{false};
  std::exception_ptr error;  // guarded by mu; read after done

  void finish(std::exception_ptr e) {
    {
      std::lock_guard<std::mutex> lock(mu);
      error = std::move(e);
      done.store(true, std::memory_order_release);
    }
    cv.notify_all();
  }
};

}  // namespace tandem

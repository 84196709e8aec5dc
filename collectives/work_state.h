// The completion of one asynchronous collective, shared by its Work (the waiter) and the backend
// thread that runs it -- and StateWork, the one Work over it that the queued backends (Gloo, MPI,
// shm, hierarchical) hand out.
//
// The one decision: a backend finishes a WorkState exactly once (finish()), recording when, and
// every waiting, timeout message and completion time is StateWork's; what differs between
// backends is only the optional `help` (Gloo and MPI let a waiter run a collective nobody has
// started instead of sleeping through two thread wake-ups) and the hint a timeout adds.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "collectives/communicator.h"
#include "core/base/error.h"

namespace tandem {

struct WorkState {
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<bool> done{false};
  std::exception_ptr error;                           // guarded by mu; read after done
  std::chrono::steady_clock::time_point finished_at;  // guarded by mu; read after done

  void finish(std::exception_ptr e) {
    {
      std::lock_guard<std::mutex> lock(mu);
      error = std::move(e);
      finished_at = std::chrono::steady_clock::now();
      done.store(true, std::memory_order_release);
    }
    cv.notify_all();
  }

  // Finishes this op, which never ran, because the communicator broke on an earlier one: CommError
  // "<name>: the communicator is unusable after an earlier failure: <that failure's message>".
  void finish_broken(const std::exception_ptr& first, const std::string& name) {
    std::string message;
    try {
      std::rethrow_exception(first);
    } catch (const std::exception& e) {
      message = e.what();
    }
    finish(std::make_exception_ptr(CommError(
        str(name, ": the communicator is unusable after an earlier failure: ", message))));
  }
};

class StateWork final : public Work {
 public:
  // Called by wait() before it sleeps on an op that has not finished: the backend may run the op
  // on the waiting thread (seq: the op's; deadline: when the wait gives up).
  using Help = std::function<void(uint64_t seq, std::chrono::steady_clock::time_point deadline,
                                  std::chrono::milliseconds timeout)>;

  // backend: "gloo", "mpi", ... (the start of a timeout message); timeout_hint: what it adds.
  StateWork(std::shared_ptr<WorkState> state, CollectiveCall call, uint64_t seq,
            std::string backend, std::string timeout_hint, Help help = {})
      : state_(std::move(state)),
        call_(std::move(call)),
        seq_(seq),
        backend_(std::move(backend)),
        hint_(std::move(timeout_hint)),
        help_(std::move(help)) {}

  void wait(std::chrono::milliseconds timeout) override {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    if (help_ && !is_completed()) help_(seq_, deadline, timeout);
    std::unique_lock<std::mutex> lock(state_->mu);
    if (!state_->cv.wait_until(lock, deadline, [&] { return is_completed(); }))
      throw TimeoutError(str(backend_, " ", call_.brief(seq_), " timed out after ", timeout.count(),
                             " ms", hint_));
    if (state_->error) std::rethrow_exception(state_->error);
  }
  // True once the collective finished, successfully or not (wait() tells which).
  bool is_completed() override { return state_->done.load(std::memory_order_acquire); }
  uint64_t sequence_number() const override { return seq_; }
  std::optional<std::chrono::steady_clock::time_point> completed_at() override {
    if (!is_completed()) return std::nullopt;
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->finished_at;
  }

 private:
  std::shared_ptr<WorkState> state_;
  CollectiveCall call_;
  uint64_t seq_;
  std::string backend_, hint_;
  Help help_;
};

}  // namespace tandem

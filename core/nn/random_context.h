// Where Dropout layers get their randomness. docs/DESIGN.md section 8 keys dropout masks by
// (seed, step, global sample index), independent of the world size; the trainer opens a
// DropoutScope around each forward pass and every Dropout call inside it takes the next
// layer-call index k of the scope:
//
//     DropoutScope scope(seed, step, first_global_sample);   // row 0 of this replica's batch
//     Tensor logits = model->forward(x);                       // k = 0, 1, ... per Dropout call
//
// Stream layout: DropoutKey{seed, stream = step * kDropoutCallsPerStep + k, first_sample}. The
// k-th dropout call of a step therefore draws the same mask for the same global sample on any
// rank and any number of replicas (the op keys each row by first_sample + row). At most
// kDropoutCallsPerStep dropout calls per scope; more throw.
//
// Scopes are thread-local (each replica thread opens its own) and nest: the inner one wins and
// the outer one is restored when it closes. Outside any scope, a Dropout layer keys its masks by
// seed 0 and its own call counter in the upper half of the stream space (streams with bit 63
// set), which is deterministic but not tied to a step: use a scope for training.
#pragma once

#include <cstdint>
#include <optional>

#include "core/ops/ops.h"

namespace tandem {

// 1024: room for far more dropout calls per step than any model here has (simple_cnn has 1).
constexpr uint64_t kDropoutCallsPerStep = 1024;
// Streams used by Dropout layers outside any scope start here (never produced by a scope for
// steps below 2^53).
constexpr uint64_t kUnscopedDropoutStream = uint64_t{1} << 63;

class DropoutScope {
 public:
  DropoutScope(uint64_t seed, uint64_t step, int64_t first_global_sample);
  ~DropoutScope();
  DropoutScope(const DropoutScope&) = delete;
  DropoutScope& operator=(const DropoutScope&) = delete;

  uint64_t calls() const { return calls_; }  // dropout calls made in this scope so far

 private:
  friend std::optional<DropoutKey> next_dropout_key();
  uint64_t seed_;
  uint64_t step_;
  int64_t first_sample_;
  uint64_t calls_ = 0;
  DropoutScope* prev_;
};

// The key for the next dropout call of the innermost scope on this thread (advancing its call
// index), or nullopt outside any scope.
std::optional<DropoutKey> next_dropout_key();

}  // namespace tandem

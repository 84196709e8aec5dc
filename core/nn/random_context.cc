// The thread-local stack of DropoutScopes (a linked list through prev_).
#include "core/nn/random_context.h"

namespace tandem {

namespace {
thread_local DropoutScope* current_scope = nullptr;
}  // namespace

DropoutScope::DropoutScope(uint64_t seed, uint64_t step, int64_t first_global_sample)
    : seed_(seed), step_(step), first_sample_(first_global_sample), prev_(current_scope) {
  TANDEM_CHECK(first_global_sample >= 0,
               "DropoutScope: first global sample index must be >= 0, got ", first_global_sample);
  TANDEM_CHECK(step < kUnscopedDropoutStream / kDropoutCallsPerStep, "DropoutScope: step ", step,
               " is out of range");
  current_scope = this;
}

DropoutScope::~DropoutScope() {
  current_scope = prev_;
}

std::optional<DropoutKey> next_dropout_key() {
  DropoutScope* s = current_scope;
  if (s == nullptr) return std::nullopt;
  TANDEM_CHECK(s->calls_ < kDropoutCallsPerStep, "more than ", kDropoutCallsPerStep,
               " dropout calls in one DropoutScope (step ", s->step_,
               "): open one scope per forward pass");
  uint64_t k = s->calls_++;
  return DropoutKey{s->seed_, s->step_ * kDropoutCallsPerStep + k, s->first_sample_};
}

}  // namespace tandem

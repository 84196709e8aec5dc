// split_for_validation and SubsetDataset.
#include "core/data/validation_split.h"

#include <algorithm>
#include <cmath>

#include "core/base/error.h"
#include "core/random/philox.h"

namespace tandem {

ValidationSplit split_for_validation(int64_t size, double fraction, uint64_t seed) {
  TANDEM_CHECK_T(ConfigError, fraction > 0 && fraction < 1,
                 "data.validation_fraction: expected a number in (0, 1), got ", fraction);
  TANDEM_CHECK_T(ConfigError, size >= 2, "data.validation_fraction: the training split has ", size,
                 " sample(s); holding some out needs at least 2");
  int64_t held = static_cast<int64_t>(std::llround(static_cast<double>(size) * fraction));
  held = std::clamp<int64_t>(held, 1, size - 1);
  Generator gen(seed, kStreamValidation << 32);
  std::vector<int64_t> perm = randperm(size, gen);
  ValidationSplit s;
  s.validation.assign(perm.begin(), perm.begin() + held);
  s.train.assign(perm.begin() + held, perm.end());
  std::sort(s.validation.begin(), s.validation.end());
  std::sort(s.train.begin(), s.train.end());
  return s;
}

SubsetDataset::SubsetDataset(std::shared_ptr<const Dataset> base, std::vector<int64_t> indices)
    : base_(std::move(base)), indices_(std::move(indices)) {
  for (int64_t i : indices_)
    TANDEM_CHECK(i >= 0 && i < base_->size(), "SubsetDataset: index ", i, " outside [0, ",
                 base_->size(), ")");
}

void SubsetDataset::get(int64_t index, uint8_t* pixels_out, int64_t* label_out) const {
  base_->get(indices_.at(static_cast<size_t>(index)), pixels_out, label_out);
}

void SubsetDataset::load(int64_t index, int64_t epoch, uint8_t* pixels_out,
                         int64_t* label_out) const {
  base_->load(indices_.at(static_cast<size_t>(index)), epoch, pixels_out, label_out);
}

}  // namespace tandem

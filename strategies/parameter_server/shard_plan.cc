#include "strategies/parameter_server/shard_plan.h"

#include <algorithm>

#include "core/base/error.h"

namespace tandem {

int64_t ShardPlan::shard_bytes(int shard, const std::vector<PlanVariable>& vars) const {
  int64_t bytes = 0;
  for (const Piece& p : shards[shard]) bytes += p.numel * vars[p.variable].element_bytes;
  return bytes;
}

ShardPlan plan_shards(const std::vector<PlanVariable>& vars, int num_shards) {
  TANDEM_CHECK_T(ConfigError, num_shards >= 1, "strategy.num_ps must be at least 1, got ",
                 num_shards);
  int64_t total = 0;
  for (const PlanVariable& v : vars) total += v.numel * v.element_bytes;
  const int64_t share = std::max<int64_t>(1, (total + num_shards - 1) / num_shards);
  // Pieces of at most a quarter share: the greedy fill below then ends within a quarter share of
  // perfect balance, and a message per shard holds a handful of pieces, not thousands.
  const int64_t piece_cap = std::max<int64_t>(1, (share + 3) / 4);

  std::vector<Piece> pieces;
  for (int i = 0; i < static_cast<int>(vars.size()); ++i) {
    const PlanVariable& v = vars[i];
    const int64_t bytes = v.numel * v.element_bytes;
    const int64_t n =
        num_shards == 1 ? 1 : std::max<int64_t>(1, (bytes + piece_cap - 1) / piece_cap);
    for (int64_t k = 0; k < n; ++k) {
      Piece p;
      p.variable = i;
      p.offset = v.numel * k / n;
      p.numel = v.numel * (k + 1) / n - p.offset;
      p.name = n == 1 ? v.name : str(v.name, "#", k, "of", n);
      pieces.push_back(std::move(p));
    }
  }
  std::vector<int> order(pieces.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  auto bytes_of = [&](const Piece& p) { return p.numel * vars[p.variable].element_bytes; };
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return bytes_of(pieces[a]) > bytes_of(pieces[b]); });
  std::vector<int64_t> load(num_shards, 0);
  std::vector<int> owner(pieces.size(), 0);
  for (int i : order) {
    int best = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    owner[i] = best;
    load[best] += bytes_of(pieces[i]);
  }
  ShardPlan plan;
  plan.shards.resize(num_shards);
  for (size_t i = 0; i < pieces.size(); ++i) plan.shards[owner[i]].push_back(pieces[i]);
  return plan;
}

}  // namespace tandem

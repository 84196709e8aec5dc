// Which server holds which variable: the model's parameters spread over strategy.num_ps shards,
// balanced by bytes. A tensor larger than a quarter of an even share (total bytes / shards) is cut
// into pieces along its flattened elements, so one big embedding or fc weight cannot make one
// server the bottleneck; element-wise optimizers (SGD, Adam, AdamW) give the same result on pieces.
//
// The plan is a pure function of the parameters' names, sizes and the shard count: every worker
// computes the same one, and a checkpoint (which holds whole tensors) resumes under any plan.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tandem {

struct PlanVariable {
  std::string name;
  int64_t numel = 0;
  int64_t element_bytes = 4;
};

// A run of elements [offset, offset + numel) of one variable's flattened data.
struct Piece {
  int variable = 0;    // index into the variables given to plan_shards
  int64_t offset = 0;  // first element
  int64_t numel = 0;
  std::string name;  // the variable's name, or "<name>#<k>of<n>" for the k-th of n pieces
};

struct ShardPlan {
  std::vector<std::vector<Piece>> shards;  // pieces of each shard, in variable then offset order
  int64_t shard_bytes(int shard, const std::vector<PlanVariable>& vars) const;
};

// With several shards, splits variables larger than a quarter share (total / num_shards / 4) into
// ceil(bytes / quarter share) near-equal pieces, then
// gives each piece, largest first (ties: earlier variable), to the shard with the fewest bytes so
// far (ties: lowest index). Every element of every variable lands in exactly one piece.
ShardPlan plan_shards(const std::vector<PlanVariable>& vars, int num_shards);

}  // namespace tandem

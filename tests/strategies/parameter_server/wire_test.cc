// The checks every tensor from the wire passes before use (wire.h), and the plan that spreads
// variables over shards (shard_plan.h).
#include "strategies/parameter_server/wire.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>

#include "strategies/parameter_server/shard_plan.h"

namespace tandem {
namespace {

WireTensor f32(std::vector<int64_t> shape, int64_t byte_length, const std::string& data) {
  WireTensor t;
  t.name = "w";
  t.dtype = "f32";
  t.shape = std::move(shape);
  t.byte_length = byte_length;
  t.data = data;
  return t;
}

TEST(WireTensor, ConsistentTensorPasses) {
  std::string data(24, '\0');
  EXPECT_EQ(check_wire_tensor(f32({2, 3}, 24, data), 1 << 20, "gradient"), std::nullopt);
  Tensor t = tensor_from_wire(f32({2, 3}, 24, data));
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.dtype(), DType::kF32);
}

TEST(WireTensor, ByteLengthThatDisagreesWithShapeIsRefused) {
  std::string data(20, '\0');
  auto why = check_wire_tensor(f32({2, 3}, 20, data), 1 << 20, "gradient");
  ASSERT_TRUE(why.has_value());
  EXPECT_NE(why->find("byte_length 20 does not match shape [2, 3] of f32 (24 bytes)"),
            std::string::npos)
      << *why;
}

TEST(WireTensor, DataShorterThanByteLengthIsRefused) {
  std::string data(16, '\0');
  auto why = check_wire_tensor(f32({2, 3}, 24, data), 1 << 20, "gradient");
  ASSERT_TRUE(why.has_value());
  EXPECT_NE(why->find("carries 16 bytes of data but byte_length says 24"), std::string::npos)
      << *why;
}

TEST(WireTensor, UnknownDtypeNegativeDimAndOverflowAreRefused) {
  std::string data(24, '\0');
  WireTensor t = f32({2, 3}, 24, data);
  t.dtype = "f16";
  ASSERT_TRUE(check_wire_tensor(t, 1 << 20, "gradient").has_value());
  EXPECT_NE(check_wire_tensor(t, 1 << 20, "gradient")->find("dtype 'f16'"), std::string::npos);
  t = f32({-2, 3}, 24, data);
  EXPECT_NE(check_wire_tensor(t, 1 << 20, "x")->find("negative dimension"), std::string::npos);
  t = f32({int64_t{1} << 40, int64_t{1} << 40}, 24, data);
  EXPECT_NE(check_wire_tensor(t, 1 << 20, "x")->find("too many elements"), std::string::npos);
  t = f32({0, int64_t{1} << 40, int64_t{1} << 40}, 0, "");  // no elements, strides past int64
  EXPECT_NE(check_wire_tensor(t, 1 << 20, "x").value_or("accepted").find("too many elements"),
            std::string::npos);
  t = f32({3, 1, 1, 1, 1, 1, 1, 1, 1}, 12, std::string(12, '\0'));
  EXPECT_NE(check_wire_tensor(t, 1 << 20, "x")->find("9 dimensions"), std::string::npos);
}

TEST(WireTensor, TensorOverTheLimitIsRefusedBeforeItsDataIsRead) {
  std::string data(4096, '\0');
  auto why = check_wire_tensor(f32({1024}, 4096, data), 1024, "gradient");
  ASSERT_TRUE(why.has_value());
  EXPECT_NE(why->find("larger than the message limit of 1024 bytes"), std::string::npos) << *why;
  EXPECT_EQ(check_wire_tensor(f32({256}, 1024, std::string(1024, '\0')), 1024, "g"), std::nullopt);
}

TEST(WireTensor, MismatchWithTheVariableIsNamed) {
  std::string data(24, '\0');
  Tensor var = zeros({6}, DType::kF32);
  auto why = check_matches(f32({2, 3}, 24, data), var, "gradient");
  ASSERT_TRUE(why.has_value());
  EXPECT_NE(why->find("shape [2, 3] but the variable is [6]"), std::string::npos) << *why;
  WireTensor d = f32({6}, 24, data);
  d.dtype = "f64";
  EXPECT_NE(check_matches(d, var, "gradient")->find("dtype f64 but the variable is f32"),
            std::string::npos);
  EXPECT_EQ(check_matches(f32({6}, 24, data), var, "gradient"), std::nullopt);
}

// Concatenating the planned pieces gives every item whole, in order, and no message's data and
// overhead exceed the limit unless it is a single piece of one element.
TEST(WireStream, PlannedPiecesTileEveryItemWithinTheLimit) {
  const std::vector<WireItem> items = {{40, 4, 10}, {0, 4, 10}, {1000, 8, 12}, {12, 4, 10}};
  for (int64_t limit : {1, 30, 64, 100, 4096}) {
    SCOPED_TRACE(limit);
    const auto plan = plan_messages(items, limit);
    std::vector<int64_t> next(items.size(), 0);
    std::vector<int> pieces_of(items.size(), 0);
    size_t last_item = 0;
    for (const auto& message : plan) {
      ASSERT_FALSE(message.empty());
      int64_t cost = 0, data = 0;
      for (const WirePiece& p : message) {
        EXPECT_GE(p.index, last_item);  // items in order
        last_item = p.index;
        EXPECT_EQ(p.offset, next[p.index]);
        EXPECT_EQ(p.length % items[p.index].item_bytes, 0);
        next[p.index] += p.length;
        pieces_of[p.index] += 1;
        cost += p.length + items[p.index].overhead_bytes;
        data += p.length;
      }
      EXPECT_TRUE(cost <= limit || (message.size() == 1 && data <= 8)) << "cost " << cost;
    }
    for (size_t i = 0; i < items.size(); ++i) {
      EXPECT_EQ(next[i], items[i].bytes) << i;
      EXPECT_GE(pieces_of[i], 1) << i;  // an empty item is one empty piece
    }
  }
  // Under a generous limit everything is one message of whole items.
  const auto one = plan_messages(items, 1 << 20);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].size(), items.size());
}

WireTensor piece(const std::string& data, int64_t offset, std::vector<int64_t> shape = {6}) {
  WireTensor t;
  t.name = "w";
  t.dtype = "f32";
  t.shape = std::move(shape);
  t.byte_length = 24;
  t.data = data;
  t.offset = offset;
  return t;
}

TEST(WireStream, AssemblerJoinsPiecesInOrderAndRefusesTheRest) {
  const std::string bytes = "abcdefghijklmnopqrstuvwx";  // 24 bytes: f32 [6]
  WireAssembler a(16, "gradient");
  const std::string p0 = bytes.substr(0, 8), p1 = bytes.substr(8, 16);
  EXPECT_EQ(a.add(piece(p0, 0)), std::nullopt);
  EXPECT_EQ(a.size(), 0u);
  EXPECT_TRUE(a.finish().has_value());
  EXPECT_EQ(a.add(piece(p1, 8)), std::nullopt);
  EXPECT_EQ(a.finish(), std::nullopt);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a.tensor(0).data, bytes);
  EXPECT_EQ(check_wire_tensor(a.tensor(0), 1 << 20, "gradient"), std::nullopt);

  auto refusal = [&](std::vector<WireTensor> pieces) -> std::string {
    WireAssembler b(16, "gradient");
    for (const WireTensor& t : pieces)
      if (auto bad = b.add(t)) return *bad;
    return b.finish().value_or("accepted");
  };
  const std::string whole = bytes;
  EXPECT_EQ(refusal({piece(whole, 0)}),
            "gradient 'w': a piece of 24 bytes is larger than the message limit of 16 bytes "
            "(strategy.max_message_mb)");
  EXPECT_EQ(refusal({piece(p0, 8)}), "gradient 'w': its first piece starts at byte 8, expected 0");
  EXPECT_EQ(refusal({piece(p0, 0), piece(p0, 0)}),
            "gradient 'w': incomplete (8 of 24 bytes) when a piece of 'w' at byte 0 arrived");
  EXPECT_EQ(refusal({piece(p0, 0), piece(p1, 8, {2, 3})}),
            "gradient 'w': incomplete (8 of 24 bytes) when a piece of 'w' at byte 8 arrived");
  EXPECT_EQ(refusal({piece(p1, 16)}),
            "gradient 'w': bytes [16, 16 + 16) lie outside its "
            "byte_length 24");
  EXPECT_EQ(refusal({piece(p0, 0)}), "gradient 'w': the stream ended after 8 of its 24 bytes");
  WireTensor lying = piece(p0, 0);
  lying.byte_length = 1 << 30;  // claims more than its shape holds
  EXPECT_EQ(refusal({lying}),
            "gradient 'w': byte_length 1073741824 does not match shape [6] of f32 (24 bytes)");
}

TEST(ShardPlan, EveryElementLandsInExactlyOnePieceAndShardsBalanceByBytes) {
  // The mlp of configs/fashion_mnist_mlp.yaml: 784-512-512-10.
  std::vector<PlanVariable> vars = {{"1.weight", 512 * 784, 4}, {"1.bias", 512, 4},
                                    {"3.weight", 512 * 512, 4}, {"3.bias", 512, 4},
                                    {"5.weight", 10 * 512, 4},  {"5.bias", 10, 4}};
  for (int shards : {1, 2, 3, 4}) {
    ShardPlan plan = plan_shards(vars, shards);
    ASSERT_EQ(plan.shards.size(), static_cast<size_t>(shards));
    std::map<int, std::vector<std::pair<int64_t, int64_t>>> runs;
    int64_t largest_piece = 0;
    for (const auto& shard : plan.shards)
      for (const Piece& p : shard) {
        runs[p.variable].push_back({p.offset, p.numel});
        largest_piece = std::max(largest_piece, p.numel * 4);
      }
    for (int v = 0; v < static_cast<int>(vars.size()); ++v) {
      auto r = runs[v];
      std::sort(r.begin(), r.end());
      int64_t next = 0;
      for (auto [off, n] : r) {
        EXPECT_EQ(off, next) << vars[v].name << " with " << shards << " shards";
        next = off + n;
      }
      EXPECT_EQ(next, vars[v].numel) << vars[v].name;
    }
    int64_t lo = INT64_MAX, hi = 0;
    for (int s = 0; s < shards; ++s) {
      lo = std::min(lo, plan.shard_bytes(s, vars));
      hi = std::max(hi, plan.shard_bytes(s, vars));
    }
    EXPECT_LE(hi - lo, largest_piece) << shards << " shards";
  }
  // Two shards of 2.7 MB: 1.weight (1.6 MB) goes in 5 pieces of a quarter share (0.34 MB), and
  // the shards end within one piece of each other.
  ShardPlan two = plan_shards(vars, 2);
  int pieces_of_first = 0;
  for (const auto& shard : two.shards)
    for (const Piece& p : shard) pieces_of_first += p.variable == 0;
  EXPECT_EQ(pieces_of_first, 5);
  EXPECT_LE(std::abs(two.shard_bytes(0, vars) - two.shard_bytes(1, vars)), 512 * 784 * 4 / 5 + 4);
  EXPECT_EQ(plan_shards(vars, 1).shards[0][0].name, "1.weight");
  EXPECT_EQ(plan_shards(vars, 1).shards[0].size(), vars.size());
}

TEST(ShardPlan, IsTheSameOnEveryCall) {
  std::vector<PlanVariable> vars = {{"a", 1000, 4}, {"b", 10, 8}, {"c", 333, 4}};
  ShardPlan a = plan_shards(vars, 3), b = plan_shards(vars, 3);
  for (int s = 0; s < 3; ++s) {
    ASSERT_EQ(a.shards[s].size(), b.shards[s].size());
    for (size_t i = 0; i < a.shards[s].size(); ++i)
      EXPECT_EQ(a.shards[s][i].name, b.shards[s][i].name);
  }
}

}  // namespace
}  // namespace tandem

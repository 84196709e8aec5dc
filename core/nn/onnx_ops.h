// Internal to core/nn/onnx_model.cc: one compiled ONNX node and how it runs. Each supported
// operator is parsed once (attributes checked, unknown attributes refused) into a Step
// (onnx_ops.cc), and a Step runs as core/ops calls on the values of one forward pass
// (onnx_run.cc), so autograd records it like any hand-written model. Integer tensors (the
// Shape -> Gather -> Concat -> Reshape chains torch.onnx.export writes for `x.view(x.size(0), -1)`)
// stay on the CPU.
//
// The table of supported operators and their attributes is supported_ops(); configs/README.md
// prints it. Everything else is refused when the model is built, naming the node.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/ops/ops.h"
#include "core/tensor/tensor.h"

namespace onnx {
class NodeProto;
class TensorProto;
}  // namespace onnx

namespace tandem::onnx_internal {

enum class Kind {
  kConv,
  kGemm,
  kMatMul,
  kAdd,
  kSub,
  kMul,
  kDiv,
  kRelu,
  kLeakyRelu,
  kSigmoid,
  kTanh,
  kSoftmax,
  kLogSoftmax,
  kMaxPool,
  kAveragePool,
  kGlobalAveragePool,
  kBatchNorm,
  kDropout,
  kFlatten,
  kReshape,
  kConcat,
  kIdentity,
  kConstant,
  kShape,
  kGather,
  kUnsqueeze,
  kSqueeze,
  kTranspose,
  kReduceMean,
  kPad,
};

// What a node's window ops (Conv, MaxPool, AveragePool) need: ONNX pads are [top, left, bottom,
// right]; symmetric ones go to the core op, others are applied as an explicit pad first.
struct Window {
  int64_t kernel_h = 0, kernel_w = 0;
  int64_t stride_h = 1, stride_w = 1;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  std::string auto_pad = "NOTSET";  // NOTSET | SAME_UPPER | SAME_LOWER | VALID
  bool ceil_mode = false;
};

struct Step {
  Kind kind;
  std::string name;          // the node's name, or "#<index>" when it has none
  std::string op;            // op_type as written in the file
  std::vector<int> in, out;  // value ids; -1 = optional input left out
  // Attributes (those the kind uses).
  int64_t axis = 0;
  std::vector<int64_t> ints;  // Transpose perm, ReduceMean axes
  bool has_ints = false;
  double alpha = 1.0, beta = 1.0;  // Gemm; LeakyRelu alpha
  bool trans_a = false, trans_b = false;
  int64_t group = 1;
  Window window;
  bool count_include_pad = false;
  double eps = 1e-5, momentum = 0.1;  // BatchNormalization, as torch's momentum (1 - ONNX's)
  double ratio = 0.5;                 // Dropout
  bool keepdims = true;
  bool allowzero = false;
  int64_t shape_start = 0, shape_end = INT64_MAX;  // Shape (opset 15)
  Tensor constant;                                 // Constant's value
  std::string mode;                                // Pad
  int bn_counter = -1;  // BatchNormalization: index of its num_batches_tracked buffer, or -1
};

// What compile_step needs from the graph: values known before any forward (initializers and
// Constant outputs), for inputs that must be constant (Dropout's ratio, Unsqueeze's axes).
using ConstLookup = std::function<const Tensor*(int id)>;

// Parses `node` into a Step (inputs/outputs already resolved to ids). Throws ConfigError naming
// the node for an unsupported operator, attribute or attribute value.
Step compile_step(const onnx::NodeProto& node, const std::string& name, std::vector<int> in,
                  std::vector<int> out, const ConstLookup& constants);

// One forward pass: the values by id, the module's mode, and its BatchNormalization counters.
struct RunState {
  std::vector<Tensor>& values;
  bool training;
  std::vector<Tensor>& bn_counters;
  uint64_t& unscoped_dropout_calls;
};
void run_step(const Step& step, RunState& state);

// A TensorProto as a CPU tensor: floating types as f32, integer and bool types as i64.
// Throws ConfigError for external data or an unsupported element type.
Tensor tensor_from_proto(const onnx::TensorProto& t, const std::string& what);

// A float attribute as the shortest decimal that reads back as the same f32 (0.9f -> 0.9): the
// exporter wrote a double through a float, and torch computes with the double.
double float_attr_value(float f);

// Operator -> its kind and the attributes it accepts (others are refused, naming the node).
struct OpInfo {
  Kind kind;
  std::vector<std::string> attributes;
};
const std::map<std::string, OpInfo>& supported_ops();

}  // namespace tandem::onnx_internal

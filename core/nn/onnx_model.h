// Networks from ONNX files (`model.onnx` in a config): the graph that torch.onnx.export (opsets
// 13-17, training or eval mode) or tf2onnx wrote becomes an ordinary Module, so every strategy
// trains it unchanged.
//
// The one decision to know: parameters keep the file's initializer names, registered in a tree
// of scope modules that follows their dots ("layer1.0.conv1.weight" is parameter "weight" of
// module "layer1" -> "0" -> "conv1"), so named_parameters(), state_dict() and a checkpoint's
// model.safetensors carry PyTorch's names and load back into the exported nn.Module with
// load_state_dict(strict=True). Floating initializers are parameters, except the running mean and
// variance a BatchNormalization reads, which are buffers; each such BatchNormalization whose
// tensors are named "<prefix>.running_mean" also gets the "<prefix>.num_batches_tracked" buffer
// torch has (not in the file: torch.onnx does not export it). Integer initializers and Constant
// nodes are constants, not state. Initial values are the initializers (f32).
//
// The graph runs as core/ops calls in file order on every forward (define-by-run, so autograd,
// DDP hooks and dropout scopes work as for any model). train()/eval() decide BatchNormalization's
// and Dropout's behaviour, whatever mode the file was exported in (an eval-mode export has its
// batch norms folded into the convolutions by torch.onnx, and so has none).
//
// Building checks everything before training starts and throws ConfigError naming the key, the
// file, and the node and operator at fault: operators and attributes outside the supported table
// (onnx_operator_table()), an input that does not fit the data's sample shape, and shapes that do
// not resolve -- the graph is run once in eval mode, without gradients, on a batch of 2 zero
// samples. Not thread-safe (one module tree per replica, as for every Module).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/nn/module.h"

namespace tandem {

struct OnnxModelOptions {
  std::string key = "model.onnx";  // the config key errors name
  // The samples the model will see, (C, H, W). The graph's input may be NCHW, NHWC (tf2onnx
  // exports of Keras models; samples are transposed on the way in) or flat [N, C*H*W].
  int64_t channels = 0, height = 0, width = 0;
};

class OnnxModel;

// Reads and checks `path`; the module is in training mode. ConfigError for anything the file
// asks that tandem cannot do, IoError when the file cannot be read.
std::shared_ptr<OnnxModel> load_onnx_model(const std::string& path,
                                           const OnnxModelOptions& options);

// The supported operators and the attributes each accepts: (op, "attr, attr, ...").
std::vector<std::pair<std::string, std::string>> onnx_operator_table();

namespace onnx_internal {
struct Step;
class Loader;
}  // namespace onnx_internal

class OnnxModel : public Module {
 public:
  enum class Layout { kNCHW, kNHWC, kFlat };

  ~OnnxModel() override;
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;

  int64_t num_outputs() const { return num_outputs_; }  // logits per sample (width of output 0)
  int64_t num_nodes() const;
  Layout input_layout() const { return layout_; }
  const std::string& input_name() const { return input_name_; }

 private:
  friend class onnx_internal::Loader;
  OnnxModel() = default;

  std::string file_;
  std::string input_name_;
  Layout layout_ = Layout::kNCHW;
  int64_t channels_ = 0, height_ = 0, width_ = 0;
  int64_t num_outputs_ = 0;
  std::vector<onnx_internal::Step> steps_;
  std::vector<std::vector<int>> release_after_;  // per step: values no later step reads
  std::vector<Tensor> initial_;  // per value id: parameters, buffers and constants; else undefined
  std::vector<Tensor> bn_counters_;  // num_batches_tracked buffers, by Step::bn_counter
  int input_id_ = -1, output_id_ = -1;
  uint64_t unscoped_dropout_calls_ = 0;
};

}  // namespace tandem

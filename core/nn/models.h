// Models by name (docs/DESIGN.md section 2.3): mlp, simple_cnn, lenet, resnet18, resnet50.
// Parameter names and order are those of the PyTorch twins (benchmarks/torch_models.py,
// torchvision for the ResNets), so a tandem checkpoint loads into torch with
// load_state_dict(strict=True) and back.
//
// make_model draws every initial weight from `gen` in construction order: the same (seed,
// stream) gives the same model on every rank (docs/DESIGN.md section 8: initialisation is keyed by
// the seed alone).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/nn/layers.h"
#include "core/nn/module.h"
#include "core/nn/sequential.h"
#include "core/random/philox.h"

namespace tandem {

struct ModelOptions {
  int64_t in_channels =
      0;                   // 0: the model's default (3 for simple_cnn and the ResNets, 1 for lenet)
  int64_t image_size = 0;  // square inputs; 0: the model's default (32 simple_cnn, 28 lenet);
                           // the ResNets take any size (adaptive pooling) and ignore it
  int64_t num_classes = 10;
  std::vector<int64_t> mlp_hidden = {512, 512};
  int64_t mlp_in_features = 0;  // 0: in_channels * image_size^2 when both are set, else 784
};

// "mlp", "simple_cnn", "lenet", "resnet18", "resnet50".
const std::vector<std::string>& model_names();

// Builds a model in training mode. Unknown name or bad options: ConfigError (listing the names).
std::shared_ptr<Module> make_model(const std::string& name, const ModelOptions& options,
                                   Generator& gen);

// nn.Sequential(Flatten(), Linear, ReLU, ..., Linear): parameters "1.weight", "1.bias",
// "3.weight"...
class Mlp : public Sequential {
 public:
  Mlp(Generator& gen, int64_t in_features, const std::vector<int64_t>& hidden, int64_t num_classes);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return "mlp"; }

 private:
  int64_t in_features_;
};

// Two conv(k, pad k/2)-ReLU-maxpool(2) stages, then fc-ReLU-dropout-fc. conv1, conv2, fc1, fc2
// (and the parameter-free dropout) as in benchmarks/torch_models.py. simple_cnn: 3x3 kernels,
// 32/64 channels, fc 512, dropout 0.5; lenet: 5x5, 32/64, fc 1024, dropout 0.4.
class TwoStageCnn : public Module {
 public:
  struct Spec {
    std::string name;
    int64_t in_channels, image_size, kernel, fc_hidden, num_classes;
    double dropout;
  };
  TwoStageCnn(Generator& gen, Spec spec);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return spec_.name; }

 private:
  Spec spec_;
  std::shared_ptr<Conv2d> conv1_, conv2_;
  std::shared_ptr<Linear> fc1_, fc2_;
  std::shared_ptr<Dropout> dropout_;
};

}  // namespace tandem

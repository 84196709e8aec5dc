// ResNet-18/50 with torchvision's structure, parameter names and initialisation
// (torchvision.models.resnet, v1.5: a Bottleneck strides on its 3x3 conv): conv1, bn1, relu,
// maxpool, layer1..layer4 of BasicBlock/Bottleneck (conv1, bn1, conv2, bn2[, conv3, bn3],
// downsample.0 / downsample.1), avgpool, fc. Convs are re-initialised after construction with
// kaiming_normal_(mode=fan_out, relu), BatchNorms with weight 1 and bias 0; fc keeps Linear's
// default, exactly as torchvision does.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "core/nn/layers.h"
#include "core/nn/module.h"
#include "core/nn/sequential.h"
#include "core/random/philox.h"

namespace tandem {

class BasicBlock : public Module {
 public:
  static constexpr int64_t kExpansion = 1;
  // downsample may be null (identity shortcut).
  BasicBlock(Generator& gen, int64_t inplanes, int64_t planes, int64_t stride,
             std::shared_ptr<Sequential> downsample);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return "BasicBlock"; }

 private:
  std::shared_ptr<Conv2d> conv1_, conv2_;
  std::shared_ptr<BatchNorm2d> bn1_, bn2_;
  std::shared_ptr<Sequential> downsample_;
};

class Bottleneck : public Module {
 public:
  static constexpr int64_t kExpansion = 4;
  Bottleneck(Generator& gen, int64_t inplanes, int64_t planes, int64_t stride,
             std::shared_ptr<Sequential> downsample);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return "Bottleneck"; }

 private:
  std::shared_ptr<Conv2d> conv1_, conv2_, conv3_;
  std::shared_ptr<BatchNorm2d> bn1_, bn2_, bn3_;
  std::shared_ptr<Sequential> downsample_;
};

enum class ResNetBlock { kBasic, kBottleneck };

class ResNet : public Module {
 public:
  ResNet(Generator& gen, std::string name, ResNetBlock block, std::array<int64_t, 4> layers,
         int64_t in_channels = 3, int64_t num_classes = 1000);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return name_; }

 private:
  std::shared_ptr<Sequential> make_layer(Generator& gen, int64_t planes, int64_t blocks,
                                         int64_t stride);

  std::string name_;
  ResNetBlock block_;
  int64_t in_channels_;
  int64_t inplanes_ = 64;
  std::shared_ptr<Conv2d> conv1_;
  std::shared_ptr<BatchNorm2d> bn1_;
  std::shared_ptr<MaxPool2d> maxpool_;
  std::array<std::shared_ptr<Sequential>, 4> layers_;
  std::shared_ptr<AdaptiveAvgPool2d> avgpool_;
  std::shared_ptr<Linear> fc_;
};

std::shared_ptr<ResNet> resnet18(Generator& gen, int64_t in_channels = 3,
                                 int64_t num_classes = 1000);
std::shared_ptr<ResNet> resnet50(Generator& gen, int64_t in_channels = 3,
                                 int64_t num_classes = 1000);

}  // namespace tandem

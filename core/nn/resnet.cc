// torchvision's ResNet, block by block (torchvision/models/resnet.py is the reference).
#include "core/nn/resnet.h"

#include "core/autograd/grad_mode.h"
#include "core/nn/init.h"

namespace tandem {

namespace {

std::shared_ptr<Conv2d> conv3x3(Generator& gen, int64_t in, int64_t out, int64_t stride) {
  return std::make_shared<Conv2d>(gen, in, out, 3, stride, 1, 1, 1, false);
}

std::shared_ptr<Conv2d> conv1x1(Generator& gen, int64_t in, int64_t out, int64_t stride) {
  return std::make_shared<Conv2d>(gen, in, out, 1, stride, 0, 1, 1, false);
}

}  // namespace

BasicBlock::BasicBlock(Generator& gen, int64_t inplanes, int64_t planes, int64_t stride,
                       std::shared_ptr<Sequential> downsample) {
  conv1_ = register_module("conv1", conv3x3(gen, inplanes, planes, stride));
  bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(planes));
  register_module("relu", std::make_shared<ReLU>());
  conv2_ = register_module("conv2", conv3x3(gen, planes, planes, 1));
  bn2_ = register_module("bn2", std::make_shared<BatchNorm2d>(planes));
  if (downsample) downsample_ = register_module("downsample", std::move(downsample));
}

Tensor BasicBlock::forward(const Tensor& x) {
  Tensor out = relu(bn1_->forward(conv1_->forward(x)));
  out = bn2_->forward(conv2_->forward(out));
  Tensor identity = downsample_ ? downsample_->forward(x) : x;
  return relu(out + identity);
}

Bottleneck::Bottleneck(Generator& gen, int64_t inplanes, int64_t planes, int64_t stride,
                       std::shared_ptr<Sequential> downsample) {
  int64_t width = planes;  // base_width 64, groups 1
  conv1_ = register_module("conv1", conv1x1(gen, inplanes, width, 1));
  bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(width));
  conv2_ = register_module("conv2", conv3x3(gen, width, width, stride));
  bn2_ = register_module("bn2", std::make_shared<BatchNorm2d>(width));
  conv3_ = register_module("conv3", conv1x1(gen, width, planes * kExpansion, 1));
  bn3_ = register_module("bn3", std::make_shared<BatchNorm2d>(planes * kExpansion));
  register_module("relu", std::make_shared<ReLU>());
  if (downsample) downsample_ = register_module("downsample", std::move(downsample));
}

Tensor Bottleneck::forward(const Tensor& x) {
  Tensor out = relu(bn1_->forward(conv1_->forward(x)));
  out = relu(bn2_->forward(conv2_->forward(out)));
  out = bn3_->forward(conv3_->forward(out));
  Tensor identity = downsample_ ? downsample_->forward(x) : x;
  return relu(out + identity);
}

ResNet::ResNet(Generator& gen, std::string name, ResNetBlock block, std::array<int64_t, 4> layers,
               int64_t in_channels, int64_t num_classes)
    : name_(std::move(name)), block_(block), in_channels_(in_channels) {
  TANDEM_CHECK_T(ConfigError, in_channels > 0 && num_classes > 0, name_,
                 ": in_channels and num_classes must be positive, got ", in_channels, " and ",
                 num_classes);
  conv1_ = register_module("conv1",
                           std::make_shared<Conv2d>(gen, in_channels, 64, 7, 2, 3, 1, 1, false));
  bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(64));
  register_module("relu", std::make_shared<ReLU>());
  maxpool_ = register_module("maxpool", std::make_shared<MaxPool2d>(3, 2, 1));
  const int64_t planes[4] = {64, 128, 256, 512};
  for (int i = 0; i < 4; ++i)
    layers_[i] = register_module("layer" + std::to_string(i + 1),
                                 make_layer(gen, planes[i], layers[i], i == 0 ? 1 : 2));
  avgpool_ = register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(1, 1));
  int64_t expansion =
      block == ResNetBlock::kBasic ? BasicBlock::kExpansion : Bottleneck::kExpansion;
  fc_ = register_module("fc", std::make_shared<Linear>(gen, 512 * expansion, num_classes));

  // torchvision's re-initialisation pass over self.modules().
  NoGradGuard no_grad;
  for (auto& [path, m] : named_modules()) {
    if (auto* conv = dynamic_cast<Conv2d*>(m.get())) {
      Tensor w = conv->weight();
      kaiming_normal_(w, 0.0, FanMode::kFanOut, "relu", gen);
    } else if (auto* bn = dynamic_cast<BatchNorm2d*>(m.get())) {
      Tensor w = bn->weight(), b = bn->bias();
      w.fill_(1.0);
      b.fill_(0.0);
    }
  }
}

std::shared_ptr<Sequential> ResNet::make_layer(Generator& gen, int64_t planes, int64_t blocks,
                                               int64_t stride) {
  bool basic = block_ == ResNetBlock::kBasic;
  int64_t expansion = basic ? BasicBlock::kExpansion : Bottleneck::kExpansion;
  std::shared_ptr<Sequential> downsample;
  if (stride != 1 || inplanes_ != planes * expansion) {
    downsample = std::make_shared<Sequential>();
    downsample->push_back(conv1x1(gen, inplanes_, planes * expansion, stride));
    downsample->push_back(std::make_shared<BatchNorm2d>(planes * expansion));
  }
  auto layer = std::make_shared<Sequential>();
  auto add_block = [&](int64_t inplanes, int64_t s, std::shared_ptr<Sequential> ds) {
    if (basic)
      layer->push_back(std::make_shared<BasicBlock>(gen, inplanes, planes, s, std::move(ds)));
    else
      layer->push_back(std::make_shared<Bottleneck>(gen, inplanes, planes, s, std::move(ds)));
  };
  add_block(inplanes_, stride, downsample);
  inplanes_ = planes * expansion;
  for (int64_t i = 1; i < blocks; ++i) add_block(inplanes_, 1, nullptr);
  return layer;
}

Tensor ResNet::forward(const Tensor& x) {
  TANDEM_CHECK_SHAPE(x.dim() == 4 && x.size(1) == in_channels_, name_, ": expected input [N, ",
                     in_channels_, ", H, W], got ", shape_str(x.shape()));
  Tensor y = maxpool_->forward(relu(bn1_->forward(conv1_->forward(x))));
  for (auto& layer : layers_) y = layer->forward(y);
  y = avgpool_->forward(y).flatten(1);
  return fc_->forward(y);
}

std::shared_ptr<ResNet> resnet18(Generator& gen, int64_t in_channels, int64_t num_classes) {
  return std::make_shared<ResNet>(gen, "resnet18", ResNetBlock::kBasic,
                                  std::array<int64_t, 4>{2, 2, 2, 2}, in_channels, num_classes);
}

std::shared_ptr<ResNet> resnet50(Generator& gen, int64_t in_channels, int64_t num_classes) {
  return std::make_shared<ResNet>(gen, "resnet50", ResNetBlock::kBottleneck,
                                  std::array<int64_t, 4>{3, 4, 6, 3}, in_channels, num_classes);
}

}  // namespace tandem

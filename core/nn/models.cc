// The model factory and the small models (mlp, simple_cnn, lenet); the ResNets are in resnet.cc.
#include "core/nn/models.h"

#include "core/nn/resnet.h"

namespace tandem {

const std::vector<std::string>& model_names() {
  static const std::vector<std::string> names = {"mlp", "simple_cnn", "lenet", "resnet18",
                                                 "resnet50"};
  return names;
}

// ------------------------------------------------------------------------------------- mlp
Mlp::Mlp(Generator& gen, int64_t in_features, const std::vector<int64_t>& hidden,
         int64_t num_classes)
    : in_features_(in_features) {
  push_back(std::make_shared<Flatten>(1));
  int64_t last = in_features;
  for (int64_t h : hidden) {
    push_back(std::make_shared<Linear>(gen, last, h));
    push_back(std::make_shared<ReLU>());
    last = h;
  }
  push_back(std::make_shared<Linear>(gen, last, num_classes));
}

Tensor Mlp::forward(const Tensor& x) {
  TANDEM_CHECK_SHAPE(x.dim() >= 2 && x.numel() == x.size(0) * in_features_,
                     "mlp: expected input [N, ...] with ", in_features_,
                     " features per sample, got ", shape_str(x.shape()));
  return Sequential::forward(x);
}

// -------------------------------------------------------------------- simple_cnn and lenet
TwoStageCnn::TwoStageCnn(Generator& gen, Spec spec) : spec_(std::move(spec)) {
  const Spec& s = spec_;
  TANDEM_CHECK_T(ConfigError, s.image_size > 0 && s.image_size % 4 == 0, s.name,
                 ": image size must be a positive multiple of 4 (two 2x2 poolings), got ",
                 s.image_size);
  int64_t pad = s.kernel / 2;
  conv1_ =
      register_module("conv1", std::make_shared<Conv2d>(gen, s.in_channels, 32, s.kernel, 1, pad));
  conv2_ = register_module("conv2", std::make_shared<Conv2d>(gen, 32, 64, s.kernel, 1, pad));
  int64_t side = s.image_size / 4;
  fc1_ = register_module("fc1", std::make_shared<Linear>(gen, 64 * side * side, s.fc_hidden));
  fc2_ = register_module("fc2", std::make_shared<Linear>(gen, s.fc_hidden, s.num_classes));
  dropout_ = register_module("dropout", std::make_shared<Dropout>(s.dropout));
}

Tensor TwoStageCnn::forward(const Tensor& x) {
  const Spec& s = spec_;
  TANDEM_CHECK_SHAPE(x.dim() == 4 && x.size(1) == s.in_channels && x.size(2) == s.image_size &&
                         x.size(3) == s.image_size,
                     s.name, ": expected input [N, ", s.in_channels, ", ", s.image_size, ", ",
                     s.image_size, "], got ", shape_str(x.shape()));
  Pool2dOptions pool;  // 2x2, stride 2
  Tensor y = max_pool2d(relu(conv1_->forward(x)), pool);
  y = max_pool2d(relu(conv2_->forward(y)), pool);
  y = y.flatten(1);
  y = dropout_->forward(relu(fc1_->forward(y)));
  return fc2_->forward(y);
}

// ----------------------------------------------------------------------------------- factory
std::shared_ptr<Module> make_model(const std::string& name, const ModelOptions& o, Generator& gen) {
  TANDEM_CHECK_T(ConfigError, o.num_classes > 0, "model '", name,
                 "': num_classes must be positive, got ", o.num_classes);
  TANDEM_CHECK_T(ConfigError, o.in_channels >= 0 && o.image_size >= 0, "model '", name,
                 "': in_channels and image_size must be >= 0 (0 = the model's default), got ",
                 o.in_channels, " and ", o.image_size);
  auto pick = [](int64_t v, int64_t dflt) { return v > 0 ? v : dflt; };
  std::shared_ptr<Module> m;
  if (name == "mlp") {
    int64_t in = o.mlp_in_features;
    if (in == 0)
      in =
          o.in_channels > 0 && o.image_size > 0 ? o.in_channels * o.image_size * o.image_size : 784;
    TANDEM_CHECK_T(ConfigError, in > 0, "model 'mlp': input features must be positive, got ", in);
    for (int64_t h : o.mlp_hidden)
      TANDEM_CHECK_T(ConfigError, h > 0, "model 'mlp': hidden sizes must be positive, got ", h);
    m = std::make_shared<Mlp>(gen, in, o.mlp_hidden, o.num_classes);
  } else if (name == "simple_cnn") {
    m = std::make_shared<TwoStageCnn>(
        gen, TwoStageCnn::Spec{"simple_cnn", pick(o.in_channels, 3), pick(o.image_size, 32), 3, 512,
                               o.num_classes, 0.5});
  } else if (name == "lenet") {
    m = std::make_shared<TwoStageCnn>(
        gen, TwoStageCnn::Spec{"lenet", pick(o.in_channels, 1), pick(o.image_size, 28), 5, 1024,
                               o.num_classes, 0.4});
  } else if (name == "resnet18") {
    m = resnet18(gen, pick(o.in_channels, 3), o.num_classes);
  } else if (name == "resnet50") {
    m = resnet50(gen, pick(o.in_channels, 3), o.num_classes);
  } else {
    std::string valid;
    for (const auto& n : model_names()) valid += (valid.empty() ? "" : ", ") + n;
    throw ConfigError("unknown model '" + name + "' (valid: " + valid + ")");
  }
  m->train(true);
  return m;
}

}  // namespace tandem

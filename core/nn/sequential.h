// Sequential: children named "0", "1", ... in the order added; forward feeds each child's output
// to the next, as torch.nn.Sequential does (so parameter names match: "1.weight", ...).
#pragma once

#include <initializer_list>
#include <memory>
#include <string>

#include "core/nn/module.h"

namespace tandem {

class Sequential : public Module {
 public:
  Sequential() = default;
  Sequential(std::initializer_list<std::shared_ptr<Module>> layers);

  // Appends a layer named by its position; returns it.
  template <typename M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> layer) {
    return register_module(std::to_string(named_children().size()), std::move(layer));
  }
  size_t size() const { return named_children().size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const {
    return named_children().at(i).second;
  }

  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return "Sequential"; }
};

}  // namespace tandem

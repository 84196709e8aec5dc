// Fuzz target: load_onnx_model on any bytes, then a forward and backward pass through what loaded.
// The input is three bytes, channels (1 + b % 4), height and width (1 + b % 32 each), then the
// .onnx file. The loader may refuse a file only with tandem's errors (each names the file and what
// it expected); a model it accepts must run forward and backward on 2 of its samples, as the
// loader's dry run (2 samples, no gradients, eval mode) promised every shape resolves.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "core/base/error.h"
#include "core/nn/onnx_model.h"
#include "core/ops/ops.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem;
  if (size < 3) return 0;
  OnnxModelOptions options;
  options.channels = 1 + data[0] % 4;
  options.height = 1 + data[1] % 32;
  options.width = 1 + data[2] % 32;
  // load_onnx_model reads a path: one file per process, rewritten for every input.
  static const std::string path = "/tmp/tandem-fuzz-onnx-" + std::to_string(getpid()) + ".onnx";
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data + 3), static_cast<std::streamsize>(size - 3));
    if (!f) std::abort();
  }
  std::shared_ptr<OnnxModel> model;
  try {
    model = load_onnx_model(path, options);
  } catch (const Error&) {
    std::remove(path.c_str());
    return 0;
  }
  std::remove(path.c_str());
  Tensor x = ones({2, options.channels, options.height, options.width}, DType::kF32);
  Tensor out = model->forward(x);
  if (out.dim() != 2 || out.size(0) != 2) std::abort();
  if (out.requires_grad()) sum(out).backward();
  return 0;
}

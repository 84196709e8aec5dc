// Data sets: a small read-only interface over samples kept as u8 pixels in memory (47 MB for
// Fashion-MNIST's training split, 150 MB for CIFAR-10's); conversion to f32, augmentation and
// normalisation happen per batch in the loader (transforms.h), never on the whole set.
//
// make_dataset builds one by name: fashion_mnist, mnist (IDX files, idx.h), cifar10 (binary
// batches, cifar10.h) and synthetic (Philox noise of any shape, for benchmarks).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tandem {

struct SampleShape {
  int64_t channels = 1;
  int64_t height = 28;
  int64_t width = 28;
  int64_t numel() const { return channels * height * width; }
  bool operator==(const SampleShape&) const = default;
};
std::string sample_shape_str(const SampleShape& s);  // "1x28x28"

// Thread-safe for concurrent get()/load() calls: implementations hold no mutable state (or guard
// what they have).
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual std::string name() const = 0;
  virtual int64_t size() const = 0;
  virtual SampleShape sample_shape() const = 0;
  virtual int64_t num_classes() const = 0;
  // Writes sample `index` (in [0, size())) as sample_shape().numel() pixels in (C, H, W) order,
  // and its label (in [0, num_classes())).
  virtual void get(int64_t index, uint8_t* pixels_out, int64_t* label_out) const = 0;
  // What the loader calls: the same for sample `index` of `epoch`. Data sets that decode and crop
  // per sample (image_folder) key their random crop by (epoch, index); the in-memory ones ignore
  // the epoch (their augmentation is in Transforms).
  virtual void load(int64_t index, int64_t epoch, uint8_t* pixels_out, int64_t* label_out) const {
    get(index, pixels_out, label_out);
  }
  // Samples load() replaced so far because their file could not be read (image_folder); 0 for
  // the in-memory sets.
  virtual int64_t replaced_samples() const { return 0; }
};

// Samples held in memory: pixels (size x C x H x W) and labels (size).
class InMemoryDataset : public Dataset {
 public:
  InMemoryDataset(std::string name, SampleShape shape, int64_t num_classes,
                  std::vector<uint8_t> pixels, std::vector<uint8_t> labels);
  std::string name() const override { return name_; }
  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  SampleShape sample_shape() const override { return shape_; }
  int64_t num_classes() const override { return num_classes_; }
  void get(int64_t index, uint8_t* pixels_out, int64_t* label_out) const override;

 private:
  std::string name_;
  SampleShape shape_;
  int64_t num_classes_;
  std::vector<uint8_t> pixels_;
  std::vector<uint8_t> labels_;
};

// Settings of the synthetic data set (ignored by the others).
struct SyntheticOptions {
  int64_t size = 1024;             // samples per split
  SampleShape shape{3, 224, 224};  // ImageNet-shaped by default
  int64_t num_classes = 1000;
  uint64_t seed = 0;
};

// Where the Debian package dataset-fashion-mnist installs the files: the default `path` of
// fashion_mnist.
constexpr const char* kFashionMnistDebianDir = "/usr/share/datasets/fashion-mnist";

// name: fashion_mnist | mnist | cifar10 | synthetic | image_folder; split: train | test. `path`
// is the folder holding the files (empty: the Debian folder for fashion_mnist; unused for
// synthetic). IDX files are looked for as <split prefix>-{images-idx3,labels-idx1}-ubyte, with or
// without .gz, the split prefix being "train" or "t10k". image_folder reads <path>/train and
// <path>/val (image_folder.h) with `image_folder`'s size and crop settings. Throws ConfigError for
// an unknown name or split and IoError for missing or malformed files.
struct ImageFolderOptions;
std::shared_ptr<const Dataset> make_dataset(const std::string& name, const std::string& path,
                                            const std::string& split,
                                            const SyntheticOptions& synthetic = {},
                                            const ImageFolderOptions* image_folder = nullptr);

}  // namespace tandem

// InMemoryDataset and make_dataset: which files each named data set reads, and where to get them.
#include "core/data/dataset.h"

#include <cstring>
#include <filesystem>

#include "core/base/error.h"
#include "core/data/cifar10.h"
#include "core/data/idx.h"
#include "core/data/image_folder.h"
#include "core/data/synthetic.h"

namespace tandem {

std::string sample_shape_str(const SampleShape& s) {
  return str(s.channels, "x", s.height, "x", s.width);
}

InMemoryDataset::InMemoryDataset(std::string name, SampleShape shape, int64_t num_classes,
                                 std::vector<uint8_t> pixels, std::vector<uint8_t> labels)
    : name_(std::move(name)),
      shape_(shape),
      num_classes_(num_classes),
      pixels_(std::move(pixels)),
      labels_(std::move(labels)) {
  TANDEM_ASSERT(static_cast<int64_t>(pixels_.size()) == size() * shape_.numel(),
                "pixel count does not match ", size(), " samples of ", sample_shape_str(shape_));
}

void InMemoryDataset::get(int64_t index, uint8_t* pixels_out, int64_t* label_out) const {
  TANDEM_CHECK(index >= 0 && index < size(), name_, ": sample index ", index, " out of range [0, ",
               size(), ")");
  const int64_t n = shape_.numel();
  std::memcpy(pixels_out, pixels_.data() + index * n, static_cast<size_t>(n));
  *label_out = labels_[static_cast<size_t>(index)];
}

namespace {

// <dir>/<stem>.gz when present, else <dir>/<stem>; errors say where the files come from.
std::string find_idx_file(const std::string& dir, const std::string& stem,
                          const std::string& where) {
  namespace fs = std::filesystem;
  const fs::path gz = fs::path(dir) / (stem + ".gz"), raw = fs::path(dir) / stem;
  if (fs::exists(gz)) return gz.string();
  if (fs::exists(raw)) return raw.string();
  throw IoError(str(gz.string(), ": no such file (nor ", raw.filename().string(), "); ", where));
}

std::shared_ptr<const Dataset> make_idx_dataset(const std::string& name, const std::string& dir,
                                                bool train, const std::string& where) {
  const std::string prefix = train ? "train" : "t10k";
  const std::string images = find_idx_file(dir, prefix + "-images-idx3-ubyte", where);
  const std::string labels = find_idx_file(dir, prefix + "-labels-idx1-ubyte", where);
  IdxImageSet s = read_idx_image_set(images, labels);
  // The models for these sets (lenet, mlp) are built for 28x28 inputs and 10 classes.
  TANDEM_CHECK_T(IoError, s.rows == 28 && s.cols == 28, images, ": expected 28x28 images for ",
                 name, ", found ", s.rows, "x", s.cols);
  for (size_t i = 0; i < s.labels.size(); ++i)
    TANDEM_CHECK_T(IoError, s.labels[i] < 10, labels, ": label ", i, " is ",
                   static_cast<int>(s.labels[i]), ": expected 0..9");
  return std::make_shared<InMemoryDataset>(name, SampleShape{1, 28, 28}, 10, std::move(s.pixels),
                                           std::move(s.labels));
}

}  // namespace

std::shared_ptr<const Dataset> make_dataset(const std::string& name, const std::string& path,
                                            const std::string& split,
                                            const SyntheticOptions& synthetic,
                                            const ImageFolderOptions* image_folder) {
  TANDEM_CHECK_T(ConfigError, split == "train" || split == "test", "data split '", split,
                 "': expected train or test");
  const bool train = split == "train";
  if (name == "fashion_mnist") {
    return make_idx_dataset(
        name, path.empty() ? kFashionMnistDebianDir : path, train,
        "expected the Fashion-MNIST IDX files (the Debian package "
        "dataset-fashion-mnist installs them in /usr/share/datasets/fashion-mnist)");
  }
  if (name == "mnist") {
    TANDEM_CHECK_T(ConfigError, !path.empty(),
                   "data set mnist needs data.path: the folder holding the MNIST IDX files");
    return make_idx_dataset(name, path, train,
                            "expected the MNIST IDX files (train-images-idx3-ubyte.gz, "
                            "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
                            "t10k-labels-idx1-ubyte.gz)");
  }
  if (name == "cifar10") {
    TANDEM_CHECK_T(ConfigError, !path.empty(),
                   "data set cifar10 needs data.path: the folder holding the CIFAR-10 .bin files");
    Cifar10Set s = read_cifar10(path, train);
    return std::make_shared<InMemoryDataset>(name, SampleShape{3, 32, 32}, kCifar10Classes,
                                             std::move(s.pixels), std::move(s.labels));
  }
  if (name == "synthetic") return std::make_shared<SyntheticDataset>(synthetic, !train);
  if (name == "image_folder") {
    TANDEM_CHECK_T(ConfigError, !path.empty(),
                   "data set image_folder needs data.path: the folder holding train/ and val/");
    return std::make_shared<ImageFolderDataset>(
        image_folder_split_dir(path, split), image_folder_split_dir(path, "train"),
        image_folder ? *image_folder : ImageFolderOptions{});
  }
  throw ConfigError(
      str("unknown data set '", name,
          "': expected one of fashion_mnist, mnist, cifar10, synthetic, image_folder"));
}

}  // namespace tandem

// ImageFolderDataset: listing (as torchvision's make_dataset), lazy decoding, and the skip rule
// for unreadable files.
#include "core/data/image_folder.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "core/base/error.h"
#include "core/data/image_crop.h"
#include "core/data/image_decode.h"
#include "core/data/random_streams.h"
#include "core/random/philox.h"

namespace tandem {
namespace fs = std::filesystem;

namespace {

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

// The sub-folders of `dir`, sorted by name (torchvision's find_classes).
std::vector<std::string> class_folders(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory(ec)) names.push_back(it->path().filename().string());
  TANDEM_CHECK_T(ConfigError, !ec, "data.path: cannot list '", dir, "': ", ec.message());
  std::sort(names.begin(), names.end());
  return names;
}

// Reads a whole file into `out` (reused between calls on a thread); false when it cannot.
bool read_file(const std::string& path, std::vector<uint8_t>* out) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return false;
  const std::streamoff n = f.tellg();
  if (n < 0) return false;
  out->resize(static_cast<size_t>(n));
  f.seekg(0);
  return n == 0 || static_cast<bool>(f.read(reinterpret_cast<char*>(out->data()), n));
}

}  // namespace

std::string image_folder_split_dir(const std::string& root, const std::string& split) {
  TANDEM_CHECK_T(ConfigError, split == "train" || split == "test", "data split '", split,
                 "': expected train or test");
  std::error_code ec;
  if (split == "train") {
    const std::string d = (fs::path(root) / "train").string();
    TANDEM_CHECK_T(ConfigError, fs::is_directory(d, ec), "data.path: '", root,
                   "' has no train/ folder: image_folder expects <data.path>/train/<class>/*.jpg "
                   "and <data.path>/val/<class>/*.jpg (torchvision's ImageFolder layout)");
    return d;
  }
  for (const char* name : {"val", "test"}) {
    const std::string d = (fs::path(root) / name).string();
    if (fs::is_directory(d, ec)) return d;
  }
  throw ConfigError(str("data.path: '", root,
                        "' has no val/ (or test/) folder: image_folder evaluates on "
                        "<data.path>/val/<class>/*.jpg"));
}

void load_eval_image(const std::string& path, int64_t image_size, uint8_t* pixels_out) {
  std::vector<uint8_t> bytes;
  TANDEM_CHECK_T(IoError, read_file(path, &bytes), path, ": cannot read the file");
  RgbImage img;
  decode_image(bytes.data(), bytes.size(), path, &img);
  const ResizeCenterCrop r = resize_center_crop(
      img.width, img.height, static_cast<int64_t>(image_size / 0.875), image_size);
  std::vector<uint8_t> scratch;
  resize_region(img, {0, 0, img.height, img.width}, r.resized_width, r.resized_height, r.box,
                pixels_out, &scratch);
}

ImageFolderDataset::ImageFolderDataset(const std::string& split_dir, const std::string& class_dir,
                                       ImageFolderOptions options)
    : options_(std::move(options)) {
  TANDEM_CHECK_T(ConfigError, options_.image_size > 0, "data.image_size must be positive, got ",
                 options_.image_size);
  classes_ = class_folders(class_dir);
  TANDEM_CHECK_T(ConfigError, !classes_.empty(), "data.path: '", class_dir,
                 "' has no class folders (expected <class>/*.jpg inside)");
  for (size_t c = 0; c < classes_.size(); ++c) {
    const fs::path dir = fs::path(split_dir) / classes_[c];
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;  // a class with no validation images
    // torchvision: sorted(os.walk(dir)) and sorted names within each folder.
    std::vector<std::pair<std::string, std::string>> found;  // (folder, name)
    for (fs::recursive_directory_iterator
             it(dir, fs::directory_options::follow_directory_symlink, ec),
         end;
         !ec && it != end; it.increment(ec)) {
      if (it->is_regular_file(ec) && is_image_file(it->path()))
        found.emplace_back(it->path().parent_path().string(), it->path().filename().string());
    }
    TANDEM_CHECK_T(ConfigError, !ec, "data.path: cannot list '", dir.string(), "': ", ec.message());
    std::sort(found.begin(), found.end());
    TANDEM_CHECK_T(ConfigError, !found.empty() || split_dir != class_dir,
                   "data.path: class folder '", dir.string(), "' has no .jpg, .jpeg or .png file");
    for (auto& [folder, name] : found) {
      files_.push_back((fs::path(folder) / name).string());
      labels_.push_back(static_cast<int64_t>(c));
    }
  }
  // Validation folders must not bring classes the training folder does not have.
  std::error_code ec;
  if (split_dir != class_dir && fs::is_directory(split_dir, ec)) {
    for (const std::string& c : class_folders(split_dir))
      TANDEM_CHECK_T(ConfigError, std::binary_search(classes_.begin(), classes_.end(), c),
                     "data.path: '", (fs::path(split_dir) / c).string(),
                     "' is a class the training folder does not have");
  }
  TANDEM_CHECK_T(ConfigError, !files_.empty(), "data.path: '", split_dir,
                 "' has no .jpg, .jpeg or .png files in its class folders");
}

SampleShape ImageFolderDataset::sample_shape() const {
  return {3, options_.image_size, options_.image_size};
}

int64_t ImageFolderDataset::skipped_files() const {
  std::lock_guard<std::mutex> lock(bad_mu_);
  return static_cast<int64_t>(bad_files_.size());
}

ImageFolderDataset::Crop ImageFolderDataset::crop_for(int64_t width, int64_t height, int64_t epoch,
                                                      int64_t index) const {
  const int64_t s = options_.image_size;
  if (options_.random_crop) {
    // One Philox call per attempt: (seed, CROP << 32 | epoch, index << 4 | attempt), a word per
    // slot (random_streams.h).
    auto uniform = [&](int attempt, int slot) {
      const auto r = philox4x32(options_.seed, stream_counter_hi(kStreamResizedCrop, epoch),
                                static_cast<uint64_t>(index) << 4 | static_cast<uint64_t>(attempt));
      return static_cast<double>(r[static_cast<size_t>(slot)]) * 0x1p-32;
    };
    CropBox b = random_resized_crop_box(width, height, uniform);
    return {s, s, b.top, b.left, b.height, b.width};
  }
  // torchvision's evaluation recipe: Resize(int(size / 0.875)) (256 for 224), CenterCrop(size).
  ResizeCenterCrop r = resize_center_crop(width, height, static_cast<int64_t>(s / 0.875), s);
  return {r.resized_width, r.resized_height, r.box.top, r.box.left, r.box.height, r.box.width};
}

bool ImageFolderDataset::decode_into(int64_t file_index, int64_t epoch, int64_t key_index,
                                     uint8_t* pixels_out) const {
  thread_local std::vector<uint8_t> bytes;
  thread_local RgbImage img;
  thread_local std::vector<uint8_t> scratch;
  const std::string& path = files_[static_cast<size_t>(file_index)];
  if (!read_file(path, &bytes)) {
    note_bad_file(file_index, "cannot read the file");
    return false;
  }
  try {
    decode_image(bytes.data(), bytes.size(), path, &img);
  } catch (const IoError& e) {
    note_bad_file(file_index, e.what());
    return false;
  }
  const Crop c = crop_for(img.width, img.height, epoch, key_index);
  const int64_t s = options_.image_size;
  if (options_.random_crop) {
    resize_region(img, {c.box_top, c.box_left, c.box_height, c.box_width}, s, s, {0, 0, s, s},
                  pixels_out, &scratch);
  } else {
    resize_region(img, {0, 0, img.height, img.width}, c.resized_width, c.resized_height,
                  {c.box_top, c.box_left, c.box_height, c.box_width}, pixels_out, &scratch);
  }
  return true;
}

void ImageFolderDataset::note_bad_file(int64_t file_index, const std::string& why) const {
  {
    std::lock_guard<std::mutex> lock(bad_mu_);
    if (!bad_files_.insert(file_index).second) return;
  }
  const std::string& path = files_[static_cast<size_t>(file_index)];
  std::string msg = "image_folder: skipping " + path + ": " + why +
                    " (the sample is replaced by the next readable file)";
  // Decoder messages already start with the path; say it once.
  if (why.rfind(path, 0) == 0)
    msg = "image_folder: skipping " + why + " (the sample is replaced by the next readable file)";
  if (options_.warn)
    options_.warn(msg);
  else
    std::cerr << "warning: " + msg + "\n" << std::flush;
}

void ImageFolderDataset::load(int64_t index, int64_t epoch, uint8_t* pixels_out,
                              int64_t* label_out) const {
  TANDEM_CHECK(index >= 0 && index < size(), "image_folder: sample index ", index,
               " out of range [0, ", size(), ")");
  const int64_t n = size();
  for (int64_t k = 0; k < n; ++k) {
    const int64_t f = (index + k) % n;
    {
      std::lock_guard<std::mutex> lock(bad_mu_);
      if (bad_files_.count(f)) continue;
    }
    if (decode_into(f, epoch, index, pixels_out)) {
      if (k > 0) replaced_.fetch_add(1);
      *label_out = labels_[static_cast<size_t>(f)];
      return;
    }
  }
  throw IoError(str("image_folder: none of the ", n, " files under ",
                    fs::path(files_[0]).parent_path().parent_path().string(),
                    " could be read or decoded"));
}

}  // namespace tandem

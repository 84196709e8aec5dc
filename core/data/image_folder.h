// ImageFolderDataset: torchvision's ImageFolder layout (`<root>/<class>/**/*.jpg|jpeg|png`, classes
// sorted by name, files sorted by folder then name), decoded lazily: each load() reads, decodes,
// crops and resizes one file on the calling thread (a loader worker), so memory holds file names,
// not pixels.
//
// Per sample, keyed by (seed, epoch, global sample index) like every draw in core/data
// (random_streams.h), so the result does not depend on the world size or the worker:
//   training (random_crop): RandomResizedCrop(image_size, scale (0.08, 1), ratio (3/4, 4/3));
//   evaluation:             Resize(int(image_size / 0.875)) then CenterCrop(image_size).
// The horizontal flip and the normalisation come after, in Transforms (transforms.h).
//
// A file that cannot be read or decoded is skipped with one warning naming it (the first time it
// is met) and counted; the sample is replaced by the next readable file in index order
// (wrapping), with that file's label and this sample's crop draw, so batches keep their shape and
// every rank makes the same replacement. Thread-safe: load() may run on many threads at once.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "core/data/dataset.h"

namespace tandem {

struct ImageFolderOptions {
  int64_t image_size = 224;  // side of the square samples
  bool random_crop =
      false;          // RandomResizedCrop (training with augmentation), else resize + center crop
  uint64_t seed = 0;  // data seed: keys the crop draws
  // Where the one-per-file warning goes; null: std::cerr as "warning: ...".
  std::function<void(const std::string&)> warn;
};

class ImageFolderDataset : public Dataset {
 public:
  // `split_dir` holds the files (<root>/train or <root>/val); `class_dir` names the classes by its
  // sub-folders (the train folder for both splits, so indices agree). Throws ConfigError when a
  // folder is missing, has no class folders, or a class has no image file.
  ImageFolderDataset(const std::string& split_dir, const std::string& class_dir,
                     ImageFolderOptions options);

  std::string name() const override { return "image_folder"; }
  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  SampleShape sample_shape() const override;
  int64_t num_classes() const override { return static_cast<int64_t>(classes_.size()); }
  void get(int64_t index, uint8_t* pixels_out, int64_t* label_out) const override {
    load(index, 0, pixels_out, label_out);
  }
  void load(int64_t index, int64_t epoch, uint8_t* pixels_out, int64_t* label_out) const override;

  const std::vector<std::string>& classes() const { return classes_; }
  const std::string& file(int64_t index) const { return files_[static_cast<size_t>(index)]; }
  int64_t label(int64_t index) const { return labels_[static_cast<size_t>(index)]; }
  // Files skipped so far because they could not be read or decoded.
  int64_t skipped_files() const;
  int64_t replaced_samples() const override { return replaced_.load(); }

  // The crop box of sample `index` of `epoch` in a width x height image (training: the
  // RandomResizedCrop draw; evaluation: the central crop in the resized image).
  struct Crop {
    int64_t resized_width, resized_height;             // the size the source box is resized to
    int64_t box_top, box_left, box_height, box_width;  // source box (training) / kept window (eval)
  };
  Crop crop_for(int64_t width, int64_t height, int64_t epoch, int64_t index) const;

 private:
  // Decodes, crops and resizes file `file_index` into `pixels_out`; false when it is unreadable.
  bool decode_into(int64_t file_index, int64_t epoch, int64_t key_index, uint8_t* pixels_out) const;
  void note_bad_file(int64_t file_index, const std::string& why) const;

  ImageFolderOptions options_;
  std::vector<std::string> classes_;
  std::vector<std::string> files_;
  std::vector<int64_t> labels_;
  mutable std::mutex bad_mu_;
  mutable std::set<int64_t> bad_files_;  // guarded by bad_mu_
  mutable std::atomic<int64_t> replaced_{0};
};

// One image file as evaluation sees it (resize to image_size / 0.875, center crop image_size),
// image_size^2 x 3 u8 pixels in (C, H, W) order into `pixels_out`; `predict` uses it. Throws
// IoError naming the file when it cannot be read or decoded.
void load_eval_image(const std::string& path, int64_t image_size, uint8_t* pixels_out);

// The folder of `split` ("train" -> <root>/train, "test" -> <root>/val, or <root>/test when there
// is no val) for data.path `root`. Throws ConfigError naming data.path when it is missing.
std::string image_folder_split_dir(const std::string& root, const std::string& split);

}  // namespace tandem

// Image folders (core/data/image_folder.h) against PIL and torchvision: decoded pixels (exact for
// PNG, and for JPEG where PIL links the same libjpeg-turbo), RandomResizedCrop boxes from
// torchvision's own get_params with the same uniforms and their pixels from its resized_crop,
// evaluation's Resize + CenterCrop (+ ToTensor + Normalize through the loader), class indexing,
// and the skip-and-warn rule for corrupt files. The folders are written by PIL at test time
// (tests/reference/image_folder_ref.py).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "core/data/image_crop.h"
#include "core/data/image_decode.h"
#include "core/data/image_folder.h"
#include "core/data/loader.h"
#include "core/data/random_streams.h"
#include "core/ops/ops.h"
#include "core/random/philox.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;

// A folder written once per test process by image_folder_ref.py mixed.
const std::string& mixed_folder() {
  static const std::string dir = [] {
    const std::string d = testing::temp_dir() + "/mixed";
    const std::string cmd = "/usr/bin/python3 '" TANDEM_SOURCE_DIR
                            "/tests/reference/image_folder_ref.py' mixed '" +
                            d + "'";
    if (std::system(cmd.c_str()) != 0) return std::string();
    return d;
  }();
  return dir;
}

#define SKIP_WITHOUT_PIL()                                                               \
  do {                                                                                   \
    TANDEM_SKIP_WITHOUT_TORCH();                                                         \
    if (mixed_folder().empty()) GTEST_SKIP() << "python3-pil is not installed: skipped"; \
  } while (0)

std::string json_string(const std::string& s) {
  return "\"" + s + "\"";
}

ImageFolderOptions quiet(int64_t size, bool random_crop, std::vector<std::string>* warnings) {
  ImageFolderOptions o;
  o.image_size = size;
  o.random_crop = random_crop;
  o.seed = 11;
  o.warn = [warnings](const std::string& w) { warnings->push_back(w); };
  return o;
}

TEST(ImageFolder, ClassesAreSortedFolderNamesAndFilesSortedLikeTorchvision) {
  SKIP_WITHOUT_PIL();
  std::vector<std::string> warnings;
  const std::string root = mixed_folder();
  ImageFolderDataset train(root + "/train", root + "/train", quiet(32, false, &warnings));
  EXPECT_EQ(train.classes(), (std::vector<std::string>{"cat", "dog", "zebra"}));
  std::vector<std::string> rel;
  for (int64_t i = 0; i < train.size(); ++i)
    rel.push_back(fs::relative(train.file(i), root).string() + ":" +
                  std::to_string(train.label(i)));
  // notes.txt is no image; nested folders come after their parent's files (sorted os.walk).
  EXPECT_EQ(
      rel, (std::vector<std::string>{
               "train/cat/a_rgb.png:0", "train/cat/b_gray.png:0", "train/cat/c_palette.png:0",
               "train/cat/d_rgba.png:0", "train/cat/nested/e_deep.JPG:0", "train/dog/a_color.jpg:1",
               "train/dog/b_gray.jpeg:1", "train/dog/broken.jpg:1", "train/dog/c_16bit.png:1",
               "train/zebra/a.png:2", "train/zebra/b.jpg:2", "train/zebra/garbage.png:2"}));
  // The validation split takes its class indices from the training folder.
  ImageFolderDataset val(image_folder_split_dir(root, "test"), root + "/train",
                         quiet(32, false, &warnings));
  EXPECT_EQ(val.num_classes(), 3);
  ASSERT_EQ(val.size(), 2);
  EXPECT_EQ(val.label(0), 0);
  EXPECT_EQ(val.label(1), 2);
  EXPECT_EQ(val.sample_shape(), (SampleShape{3, 32, 32}));
}

TEST(ImageFolder, DecodedPixelsEqualPils) {
  SKIP_WITHOUT_PIL();
  std::vector<std::string> warnings;
  const std::string root = mixed_folder();
  ImageFolderDataset train(root + "/train", root + "/train", quiet(32, false, &warnings));
  std::vector<std::string> files;
  for (int64_t i = 0; i < train.size(); ++i)
    if (train.file(i).find("broken") == std::string::npos &&
        train.file(i).find("garbage") == std::string::npos)
      files.push_back(train.file(i));
  std::string list;
  for (const auto& f : files) list += (list.empty() ? "" : ", ") + json_string(f);
  auto ref = testing::run_torch("image_decode", {}, "{\"files\": [" + list + "]}");
  for (size_t k = 0; k < files.size(); ++k) {
    SCOPED_TRACE(files[k]);
    RgbImage img = decode_image_file(files[k]);
    const Tensor& want = ref.at("img." + std::to_string(k));
    ASSERT_EQ(want.shape(), (Shape{img.height, img.width, 3}));
    const std::vector<int64_t> expected = want.values<int64_t>();
    int64_t worst = 0;
    for (size_t i = 0; i < expected.size(); ++i)
      worst = std::max<int64_t>(worst, std::abs(expected[i] - int64_t{img.pixels[i]}));
    // Exact: PNG is lossless, and PIL decodes JPEG with the same libjpeg-turbo defaults.
    EXPECT_EQ(worst, 0) << "largest pixel difference from PIL";
  }
}

TEST(ImageFolder, CorruptFilesAreSkippedWithOneWarningAndReplacedByTheNextReadableFile) {
  SKIP_WITHOUT_PIL();
  std::vector<std::string> warnings;
  const std::string root = mixed_folder();
  ImageFolderDataset train(root + "/train", root + "/train", quiet(16, true, &warnings));
  const int64_t broken = 7, after_broken = 8, garbage = 11, first = 0;
  ASSERT_NE(train.file(broken).find("broken.jpg"), std::string::npos);
  ASSERT_NE(train.file(garbage).find("garbage.png"), std::string::npos);
  std::vector<uint8_t> px(3 * 16 * 16), direct(3 * 16 * 16);
  int64_t label = -1;
  for (int epoch = 0; epoch < 3; ++epoch) {
    train.load(broken, epoch, px.data(), &label);
    EXPECT_EQ(label, train.label(after_broken));
    train.load(garbage, epoch, px.data(), &label);  // the last file: wraps to the first
    EXPECT_EQ(label, train.label(first));
  }
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_NE(warnings[0].find(train.file(broken)), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("corrupt JPEG"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[1].find(train.file(garbage)), std::string::npos) << warnings[1];
  EXPECT_EQ(train.skipped_files(), 2);
  // The replacement keeps the replaced sample's crop draw (keyed by its index, not the file's).
  train.load(broken, 0, px.data(), &label);
  train.load(after_broken, 0, direct.data(), &label);
  const ImageFolderDataset::Crop a = train.crop_for(500, 375, 0, broken);
  const ImageFolderDataset::Crop b = train.crop_for(500, 375, 0, after_broken);
  if (a.box_top != b.box_top || a.box_height != b.box_height) {
    EXPECT_NE(px, direct);
  }
}

TEST(ImageFolder, RandomResizedCropsAreTorchvisionsBoxesAndPilsPixels) {
  SKIP_WITHOUT_PIL();
  std::vector<std::string> warnings;
  const std::string root = mixed_folder();
  const int64_t s = 24;
  ImageFolderOptions o = quiet(s, true, &warnings);
  ImageFolderDataset train(root + "/train", root + "/train", o);
  std::string crops;
  struct Case {
    int64_t index, epoch;
    ImageFolderDataset::Crop crop;
    std::vector<uint8_t> px;
  };
  std::vector<Case> cases;
  for (int64_t index : {0, 1, 2, 3, 4, 5, 6, 8, 9, 10}) {
    for (int64_t epoch = 0; epoch < 4; ++epoch) {
      RgbImage img = decode_image_file(train.file(index));
      Case c{index, epoch, train.crop_for(img.width, img.height, epoch, index),
             std::vector<uint8_t>(static_cast<size_t>(3 * s * s))};
      int64_t label;
      train.load(index, epoch, c.px.data(), &label);
      std::string u;
      for (int attempt = 0; attempt < 10; ++attempt) {
        const auto r =
            philox4x32(o.seed, stream_counter_hi(kStreamResizedCrop, epoch),
                       static_cast<uint64_t>(index) << 4 | static_cast<uint64_t>(attempt));
        u += str(attempt ? ", [" : "[", r[0] * 0x1p-32, ", ", r[1] * 0x1p-32, ", ", r[2] * 0x1p-32,
                 ", ", r[3] * 0x1p-32, "]");
      }
      crops += str(crops.empty() ? "" : ", ", "{\"file\": ", json_string(train.file(index)),
                   ", \"width\": ", img.width, ", \"height\": ", img.height, ", \"uniforms\": [", u,
                   "]}");
      cases.push_back(std::move(c));
    }
  }
  auto ref = testing::run_torch(
      "image_crops", {}, str("{\"size\": ", s, ", \"crops\": [", crops, "], \"eval_files\": []}"));
  for (size_t k = 0; k < cases.size(); ++k) {
    const Case& c = cases[k];
    SCOPED_TRACE(str(train.file(c.index), " epoch ", c.epoch));
    const std::vector<int64_t> box = ref.at("box." + std::to_string(k)).values<int64_t>();
    EXPECT_EQ(box, (std::vector<int64_t>{c.crop.box_top, c.crop.box_left, c.crop.box_height,
                                         c.crop.box_width}));
    const std::vector<int64_t> want = ref.at("rrc." + std::to_string(k)).values<int64_t>();
    std::vector<int64_t> got(c.px.begin(), c.px.end());
    EXPECT_EQ(got, want) << "pixels differ from torchvision's resized_crop";
  }
}

TEST(ImageFolder, TenFailedAttemptsFallBackToTheCentralCrop) {
  // Every attempt asks for the whole area at the extreme ratio 4/3 of a tall image: none fits.
  auto never_fits = [](int, int) { return 0.999999; };
  CropBox b = random_resized_crop_box(30, 100, never_fits);
  // in_ratio 0.3 < 3/4: w = 30, h = round(30 / 0.75) = 40, centred.
  EXPECT_EQ(b, (CropBox{30, 0, 40, 30}));
  CropBox wide = random_resized_crop_box(100, 30, never_fits);
  EXPECT_EQ(wide, (CropBox{0, 30, 30, 40}));
}

TEST(ImageFolder, EvaluationResizeAndCenterCropThroughTheLoaderMatchTorchvision) {
  SKIP_WITHOUT_PIL();
  std::vector<std::string> warnings;
  const std::string root = mixed_folder();
  const int64_t s = 28;
  auto train = std::make_shared<ImageFolderDataset>(root + "/train", root + "/train",
                                                    quiet(s, false, &warnings));
  std::vector<int64_t> indices = {0, 1, 2, 3, 4, 5, 6, 8, 9, 10};
  std::string files;
  for (int64_t i : indices) files += (files.empty() ? "" : ", ") + json_string(train->file(i));
  auto ref = testing::run_torch(
      "image_crops", {}, str("{\"size\": ", s, ", \"crops\": [], \"eval_files\": [", files, "]}"));
  TransformOptions to = default_transform_options("image_folder", train->sample_shape(), false, 11);
  Transforms tf(train->sample_shape(), to);
  LocalBatch plan;
  plan.indices = indices;
  Batch b = make_batch(*train, tf, plan);
  for (size_t k = 0; k < indices.size(); ++k) {
    SCOPED_TRACE(train->file(indices[k]));
    std::vector<uint8_t> px(static_cast<size_t>(3 * s * s));
    int64_t label;
    train->load(indices[k], 0, px.data(), &label);
    EXPECT_EQ(std::vector<int64_t>(px.begin(), px.end()),
              ref.at("eval." + std::to_string(k)).values<int64_t>());
    testing::expect_close(b.images.select(0, static_cast<int64_t>(k)),
                          ref.at("norm." + std::to_string(k)), 1e-6, "normalised sample");
  }
}

TEST(ImageFolder, BatchesDoNotDependOnTheNumberOfLoaderThreads) {
  SKIP_WITHOUT_PIL();
  std::vector<std::string> warnings;
  const std::string root = mixed_folder();
  auto train = std::make_shared<ImageFolderDataset>(root + "/train", root + "/train",
                                                    quiet(20, true, &warnings));
  TransformOptions to = default_transform_options("image_folder", train->sample_shape(), true, 11);
  std::vector<Tensor> runs;
  for (int workers : {0, 1, 3}) {
    DistributedSampler sampler(train->size(), 4, 1, 0, 11, true, true);
    DataLoader loader(train, sampler, Transforms(train->sample_shape(), to), workers);
    loader.set_epoch(1);
    std::vector<Tensor> batches;
    while (auto b = loader.next()) batches.push_back(b->images);
    runs.push_back(cat(batches, 0));
  }
  testing::expect_close(runs[1], runs[0], 0.0, "1 worker vs 0");
  testing::expect_close(runs[2], runs[0], 0.0, "3 workers vs 0");
}

TEST(ImageFolder, MissingSplitFoldersAreConfigErrorsNamingDataPath) {
  const std::string d = testing::temp_dir() + "/empty_root";
  fs::create_directories(d + "/train");
  EXPECT_THROW(image_folder_split_dir(d, "test"), ConfigError);
  EXPECT_THROW(image_folder_split_dir(testing::temp_dir() + "/nothing", "train"), ConfigError);
  try {
    ImageFolderDataset x(d + "/train", d + "/train", {});
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("data.path"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tandem

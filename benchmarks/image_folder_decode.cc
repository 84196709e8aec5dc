// Decoded + augmented images per second of an image_folder data set through tandem's DataLoader:
// JPEG decode, RandomResizedCrop (or Resize + CenterCrop) to --size, flip, normalisation, batches
// of --batch, on --workers loader threads. benchmarks/image_folder_compare.py runs it beside
// torchvision's ImageFolder + DataLoader with the same transforms.
//
//   image_folder_decode --root DIR [--size 224] [--workers 1] [--batch 32] [--eval] [--epochs 2]
//
// Prints one line: "images_per_sec=N images_per_cpu_sec=C images=M seconds=S workers=W ...".
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <memory>
#include <string>

#include "core/data/image_folder.h"
#include "core/data/loader.h"
#include "core/parallel/parallel.h"

namespace {

struct Args {
  std::string root;
  int64_t size = 224, batch = 32;
  int workers = 1, epochs = 2;
  bool eval = false;
};

// Returns false (after printing why) on a bad command line.
bool parse_args(int argc, char** argv, Args& args) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--root")
      args.root = next();
    else if (a == "--size")
      args.size = std::atoll(next().c_str());
    else if (a == "--workers")
      args.workers = std::atoi(next().c_str());
    else if (a == "--batch")
      args.batch = std::atoll(next().c_str());
    else if (a == "--epochs")
      args.epochs = std::atoi(next().c_str());
    else if (a == "--eval")
      args.eval = true;
    else {
      std::cerr << "usage: image_folder_decode --root DIR [--size N] [--workers N] [--batch N] "
                   "[--epochs N] [--eval]\n";
      return false;
    }
  }
  if (args.root.empty()) {
    std::cerr << "image_folder_decode: --root is required\n";
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tandem;
  Args args;
  if (!parse_args(argc, argv, args)) return 2;
  set_num_threads(1);  // the loader threads do the work; no intra-op pool
  ImageFolderOptions o;
  o.image_size = args.size;
  o.random_crop = !args.eval;
  o.seed = 1;
  auto data = std::make_shared<ImageFolderDataset>(image_folder_split_dir(args.root, "train"),
                                                   image_folder_split_dir(args.root, "train"), o);
  Transforms tf(data->sample_shape(),
                default_transform_options("image_folder", data->sample_shape(), !args.eval, 1));
  DistributedSampler sampler(data->size(), args.batch, 1, 0, 1, /*shuffle=*/true,
                             /*drop_last=*/true);
  DataLoader loader(data, sampler, tf, args.workers, /*prefetch=*/2);
  // Epoch 0 warms the page cache and the allocator; the rest are timed.
  int64_t images = 0;
  double checksum = 0;
  std::chrono::steady_clock::time_point start;
  std::clock_t cpu_start = 0;
  for (int e = 0; e <= args.epochs; ++e) {
    if (e == 1) {
      start = std::chrono::steady_clock::now();
      cpu_start = std::clock();
      images = 0;
    }
    loader.set_epoch(e);
    while (auto b = loader.next()) {
      images += b->labels.numel();
      checksum += b->images.data<float>()[0];
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Process CPU time: every thread's, so images per CPU second is the per-core rate even on a
  // machine shared with other work.
  const double cpu = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  std::cout << "images_per_sec=" << images / s << " images_per_cpu_sec=" << images / cpu
            << " images=" << images << " seconds=" << s << " workers=" << args.workers
            << " checksum=" << checksum << "\n";
  return 0;
}

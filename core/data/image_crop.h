// Crop-and-resize of decoded RGB images into a model's square input: torchvision's
// RandomResizedCrop (training) and Resize + CenterCrop (evaluation), on u8 pixels.
//
// The decision: resizing is Pillow's antialiased bilinear filter, reproduced exactly -- the same
// coefficients (a triangle filter widened by the downscale factor), 22-bit fixed point, a
// horizontal pass rounded to u8, then a vertical pass -- because that is what torchvision's
// transforms compute on the PIL images ImageFolder loads. A crop therefore comes out bit for bit
// as PIL's img.crop(box).resize(size, Image.BILINEAR) (tests/core/data/image_folder_test.cc). Only
// the output pixels kept by the crop are computed: evaluation's Resize(256) + CenterCrop(224)
// resamples 224x224 outputs, not the whole 256-short-side image.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/data/image_decode.h"

namespace tandem {

// A source rectangle (torchvision's i, j, h, w: top, left, height, width).
struct CropBox {
  int64_t top = 0, left = 0, height = 0, width = 0;
  bool operator==(const CropBox&) const = default;
};

// torchvision.transforms.RandomResizedCrop.get_params (scale (0.08, 1), ratio (3/4, 4/3)): up to
// 10 attempts, each drawing a target area fraction, a log-uniform aspect ratio and a position,
// then the central-crop fallback. uniform(attempt, slot) is a number in [0, 1): slot 0 the area,
// 1 the ratio, 2 the top and 3 the left offset (read only when the attempt fits); rounding is
// Python's round (half to even), as in torchvision.
CropBox random_resized_crop_box(int64_t width, int64_t height,
                                const std::function<double(int, int)>& uniform,
                                double scale_min = 0.08, double scale_max = 1.0,
                                double ratio_min = 3.0 / 4.0, double ratio_max = 4.0 / 3.0);

// torchvision Resize(resize_short) then CenterCrop(crop): the size of the resized image (shorter
// side resize_short, longer side int(resize_short * long / short)) and the crop's box in it.
struct ResizeCenterCrop {
  int64_t resized_width = 0, resized_height = 0;
  CropBox box;  // in the resized image
};
ResizeCenterCrop resize_center_crop(int64_t width, int64_t height, int64_t resize_short,
                                    int64_t crop);

// Pillow-exact bilinear resampling. Resizes the `src_box` region of `img` to out_w x out_h and
// writes the window `out_box` of that result (C, H, W planar, out_box.height x out_box.width per
// channel) to `out`. `scratch` is reused between calls.
void resize_region(const RgbImage& img, const CropBox& src_box, int64_t out_w, int64_t out_h,
                   const CropBox& out_box, uint8_t* out, std::vector<uint8_t>* scratch);

}  // namespace tandem

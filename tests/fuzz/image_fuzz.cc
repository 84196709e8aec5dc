// Fuzz target: decode_image (JPEG through TurboJPEG, PNG through libpng) on any bytes. Bad input
// must be an IoError; an image that decodes has a positive size and exactly height x width x 3
// pixel bytes plus the documented slack.
#include <cstdlib>
#include <string>

#include "core/base/error.h"
#include "core/data/image_decode.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem;
  RgbImage image;
  try {
    decode_image(data, size, "fuzz.img", &image);
  } catch (const IoError&) {
    return 0;
  }
  if (image.height <= 0 || image.width <= 0) std::abort();
  if (image.pixels.size() != static_cast<size_t>(image.height * image.width * 3) + kImagePadBytes)
    std::abort();
  return 0;
}

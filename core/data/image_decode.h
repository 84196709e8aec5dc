// Decoding image files to 8-bit RGB: JPEG through libjpeg-turbo's TurboJPEG API, PNG through
// libpng. The format is told by the file's first bytes, not its name.
//
// The decision: every image becomes 3-channel RGB the way PIL's Image.convert("RGB") does it
// (torchvision's ImageFolder loader): grayscale is repeated into the three channels, palettes are
// expanded, alpha is dropped (not composited), 16-bit PNG samples keep their high byte. JPEGs use
// libjpeg-turbo's defaults (accurate integer DCT, fancy upsampling) -- the decoder PIL links on
// Debian -- so pixels match PIL's exactly where both use the same libjpeg-turbo.
//
// Thread-safe: each thread keeps its own TurboJPEG handle.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tandem {

// Slack after the last pixel, so resampling may read a few taps past a row's end (whose
// coefficients are zero) without a bounds check per tap.
constexpr size_t kImagePadBytes = 64;

struct RgbImage {
  int64_t height = 0;
  int64_t width = 0;
  // height x width x 3, row-major, interleaved R, G, B, then kImagePadBytes of slack.
  std::vector<uint8_t> pixels;
};

// Decodes `size` bytes of a JPEG or PNG file; `what` (the file name) goes into errors. Throws
// IoError for anything that is not a complete JPEG or PNG image.
void decode_image(const uint8_t* data, size_t size, const std::string& what, RgbImage* out);

// Reads and decodes the file at `path`. Throws IoError.
RgbImage decode_image_file(const std::string& path);

}  // namespace tandem

// JPEG and PNG decoding to RGB (see image_decode.h for how it matches PIL's convert("RGB")).
#include "core/data/image_decode.h"

#include <png.h>
#include <turbojpeg.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "core/base/error.h"
#include "core/io/file_io.h"

namespace tandem {
namespace {

// One TurboJPEG decompressor per thread, destroyed when the thread ends.
struct TjHandle {
  tjhandle h = tjInitDecompress();
  ~TjHandle() {
    if (h) tjDestroy(h);
  }
};

void decode_jpeg(const uint8_t* data, size_t size, const std::string& what, RgbImage* out) {
  thread_local TjHandle tj;
  TANDEM_CHECK_T(IoError, tj.h != nullptr, what, ": cannot start the JPEG decoder");
  int w = 0, h = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj.h, data, static_cast<unsigned long>(size), &w, &h, &subsamp,
                          &colorspace) != 0)
    throw IoError(str(what, ": not a readable JPEG (", tjGetErrorStr2(tj.h), ")"));
  TANDEM_CHECK_T(IoError, w > 0 && h > 0, what, ": corrupt JPEG (the header gives ", w, "x", h,
                 " pixels)");
  TANDEM_CHECK_T(IoError, int64_t{w} * h <= (int64_t{1} << 28), what, ": JPEG of ", w, "x", h,
                 " pixels is larger than 2^28 pixels");
  out->width = w;
  out->height = h;
  out->pixels.resize(static_cast<size_t>(w) * h * 3 + kImagePadBytes);
  // Warnings (a truncated but decodable file) are errors too: a half-grey image is not data.
  if (tjDecompress2(tj.h, data, static_cast<unsigned long>(size), out->pixels.data(), w, 0, h,
                    TJPF_RGB, 0) != 0)
    throw IoError(str(what, ": corrupt JPEG (", tjGetErrorStr2(tj.h), ")"));
}

struct PngReader {
  const uint8_t* data;
  size_t size;
  size_t pos;
};

void png_read_bytes(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
  if (n > r->size - r->pos) png_error(png, "unexpected end of file");
  std::memcpy(out, r->data + r->pos, n);
  r->pos += n;
}

void png_on_error(png_structp png, png_const_charp msg) {
  auto* buf = static_cast<char*>(png_get_error_ptr(png));
  std::snprintf(buf, 256, "%s", msg);
  png_longjmp(png, 1);
}

void png_on_warning(png_structp, png_const_charp) {}

void decode_png(const uint8_t* data, size_t size, const std::string& what, RgbImage* out) {
  char err[256] = "unknown error";
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, err, png_on_error, png_on_warning);
  TANDEM_CHECK_T(IoError, png != nullptr, what, ": cannot start the PNG decoder");
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    throw IoError(what + ": cannot start the PNG decoder");
  }
  PngReader reader{data, size, 0};
  std::vector<png_bytep> rows;
  // No C++ object with a destructor may be created between setjmp and a longjmp back to it.
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw IoError(str(what, ": corrupt PNG (", err, ")"));
  }
  png_set_read_fn(png, &reader, png_read_bytes);
  png_read_info(png, info);
  const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  if (w == 0 || h == 0 || uint64_t{w} * h > (uint64_t{1} << 28)) png_error(png, "bad image size");
  const int color = png_get_color_type(png, info);
  const int depth = png_get_bit_depth(png, info);
  // To 8-bit RGB as PIL's convert("RGB"): expand palettes and low bit depths, keep the high byte of
  // 16-bit samples, replicate gray, drop alpha (palette transparency too: never composited).
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16) png_set_strip_16(png);
  if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != static_cast<size_t>(w) * 3)
    png_error(png, "unexpected row layout after conversion to RGB");
  out->width = w;
  out->height = h;
  out->pixels.resize(static_cast<size_t>(w) * h * 3 + kImagePadBytes);
  rows.resize(h);
  for (png_uint_32 y = 0; y < h; ++y) rows[y] = out->pixels.data() + static_cast<size_t>(y) * w * 3;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
}

}  // namespace

void decode_image(const uint8_t* data, size_t size, const std::string& what, RgbImage* out) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) {
    decode_jpeg(data, size, what, out);
  } else if (size >= 8 && std::memcmp(data, kPng, 8) == 0) {
    decode_png(data, size, what, out);
  } else {
    throw IoError(str(what, ": neither a JPEG nor a PNG file (", size, " bytes)"));
  }
}

RgbImage decode_image_file(const std::string& path) {
  const std::string bytes = read_file(path);
  RgbImage img;
  decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path, &img);
  return img;
}

}  // namespace tandem

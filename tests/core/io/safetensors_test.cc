// safetensors_parse and safetensors_load on hostile input: every malformed file is one IoError line
// naming the file -- never a crash, an overflow or a read that does not end.
#include "core/io/safetensors.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>

#include "core/base/error.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

// A safetensors file: the 8-byte little-endian length, `header` as it is, then `data`.
std::string file_with_header(const std::string& header, const std::string& data = "") {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string parse_error(const std::string& bytes) {
  try {
    safetensors_parse(bytes, "w.safetensors");
  } catch (const IoError& e) {
    return e.what();
  }
  return "no error";
}

TEST(Safetensors, RoundTripKeepsNamesShapesAndBytes) {
  Tensor a = from_vector({1.5, -2.0, 3.25, 0.0, 7.0, 8.5}, {2, 3});
  Tensor b = from_vector({1.0, 2.0}, {2}, DType::kF64);
  SafetensorsFile f = safetensors_parse(safetensors_serialize({{"a", a}, {"b", b}}), "mem");
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.tensors[0].first, "a");
  EXPECT_EQ(f.tensors[0].second.shape(), (Shape{2, 3}));
  EXPECT_EQ(f.tensors[0].second.dtype(), DType::kF32);
  EXPECT_EQ(f.tensors[0].second.to_vector(), (std::vector<double>{1.5, -2.0, 3.25, 0.0, 7.0, 8.5}));
  EXPECT_EQ(f.tensors[1].second.dtype(), DType::kF64);
  EXPECT_EQ(f.tensors[1].second.to_vector(), (std::vector<double>{1.0, 2.0}));
}

// Printing the offending value used to recurse through it: 200,000 nested lists overflowed the
// stack (a segfault) where an IoError was due, and "skip a bad checkpoint" never got to skip.
TEST(Safetensors, DeeplyNestedHeaderIsAnIoErrorNotACrash) {
  const int depth = 200000;
  const std::string header = "{\"w\":{\"dtype\":\"F32\",\"shape\":" + std::string(depth, '[') +
                             std::string(depth, ']') + ",\"data_offsets\":[0,0]}}";
  EXPECT_EQ(parse_error(file_with_header(header)),
            "w.safetensors: safetensors header is not valid JSON: nesting deeper than 64 levels");
}

TEST(Safetensors, ErrorMessagesShowAShortExcerptOfTheBadValue) {
  const std::string dtype(1 << 20, 'X');
  const std::string err = parse_error(file_with_header(
      "{\"w\":{\"dtype\":\"" + dtype + "\",\"shape\":[1],\"data_offsets\":[0,4]}}", "abcd"));
  EXPECT_EQ(err.rfind("w.safetensors: tensor 'w' has an unsupported dtype \"XXXX", 0), 0) << err;
  EXPECT_LT(err.size(), 200u) << err.substr(0, 300);
  const std::string name(1 << 20, 'n');
  const std::string named = parse_error(file_with_header(
      "{\"" + name + "\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "abcd"));
  EXPECT_LT(named.size(), 300u) << named.substr(0, 400);
}

// 2^32 x 2^32 x 2^32 wrapped to 0 elements: the tensor was accepted with 0 bytes of storage.
TEST(Safetensors, ShapeWhoseElementCountOverflowsIsAnIoError) {
  EXPECT_EQ(parse_error(file_with_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,"
                                         "4294967296,4294967296],\"data_offsets\":[0,0]}}")),
            "w.safetensors: tensor 'w': shape [4294967296, 4294967296, 4294967296] has more "
            "elements than fit in 64 bits");
  // A zero size made the product 0, but the strides of the other sizes still overflowed.
  EXPECT_EQ(parse_error(file_with_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[0,4294967296,"
                                         "4294967296],\"data_offsets\":[0,0]}}")),
            "w.safetensors: tensor 'w': shape [0, 4294967296, 4294967296] has more elements than "
            "fit in 64 bits");
  // Above 2^63 a dimension read as int64 turned negative.
  EXPECT_EQ(parse_error(file_with_header("{\"w\":{\"dtype\":\"U8\",\"shape\":[9223372036854775808],"
                                         "\"data_offsets\":[0,0]}}")),
            "w.safetensors: tensor 'w': shape [9223372036854775808] has more elements than fit "
            "in 64 bits");
  EXPECT_EQ(
      parse_error(file_with_header("{\"w\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],"
                                   "\"data_offsets\":[0,0]}}")),
      "w.safetensors: tensor 'w': shape [2305843009213693952] of F64 is more than 2^63 "
      "bytes");
}

TEST(ShapeNumel, ThrowsWhenTheProductOverflows) {
  EXPECT_EQ(shape_numel({3, 0, 5}), 0);
  EXPECT_EQ(shape_numel({int64_t{1} << 31, int64_t{1} << 31}), int64_t{1} << 62);
  EXPECT_THROW(shape_numel({int64_t{1} << 32, int64_t{1} << 32}), ShapeError);
  EXPECT_THROW(shape_numel({-1, int64_t{1} << 62, 4}), ShapeError);
  // No elements, but strides past int64 (the sizes after the 0 multiply up).
  EXPECT_THROW(empty({0, int64_t{1} << 32, int64_t{1} << 32}), ShapeError);
  EXPECT_EQ(empty({0, int64_t{1} << 31, int64_t{1} << 31}).strides()[0], int64_t{1} << 62);
}

// /dev/zero has no end: reading it filled memory until the process was killed.
TEST(Safetensors, LoadRefusesWhatIsNotARegularFile) {
  try {
    safetensors_load("/dev/zero");
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_STREQ(e.what(),
                 "/dev/zero: not a regular file (a device, pipe or socket); expected a "
                 "safetensors file");
  }
}

TEST(Safetensors, LoadRefusesAFileLargerThanThisMachinesMemory) {
  const std::string path = testing::temp_dir() + "/huge.safetensors";
  const int64_t memory = static_cast<int64_t>(::sysconf(_SC_PHYS_PAGES)) * ::sysconf(_SC_PAGESIZE);
  { std::ofstream(path) << "x"; }
  ASSERT_EQ(::truncate(path.c_str(), memory + (int64_t{1} << 30)), 0);  // sparse: no disk used
  try {
    safetensors_load(path);
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(
        std::string(e.what()).rfind(path + ": " + std::to_string(memory + (int64_t{1} << 30)) +
                                        " bytes, more than this machine's memory (",
                                    0),
        0)
        << e.what();
  }
}

}  // namespace
}  // namespace tandem

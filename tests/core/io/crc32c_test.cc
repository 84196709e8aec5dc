// CRC-32C against published check values (the CRC catalogue's "123456789", RFC 3720 B.4) and a
// bit-at-a-time reference; the hardware and table paths must agree on every length and alignment.
#include "core/io/crc32c.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace tandem {
namespace {

// The definition: reflected CRC-32C, one bit at a time.
uint32_t crc32c_bitwise(const uint8_t* p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
  }
  return ~c;
}

TEST(Crc32c, MatchesTheCatalogueCheckValue) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(std::string()), 0u);
}

TEST(Crc32c, MatchesRfc3720TestVectors) {
  std::vector<uint8_t> zeros(32, 0x00), ones(32, 0xFF), up(32), down(32);
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<uint8_t>(i);
    down[i] = static_cast<uint8_t>(31 - i);
  }
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(crc32c(up.data(), up.size()), 0x46DD794Eu);
  EXPECT_EQ(crc32c(down.data(), down.size()), 0x113FDB5Cu);
}

TEST(Crc32c, HardwareAndTablePathsAgreeWithTheBitwiseDefinition) {
  std::mt19937 rng(17);
  std::vector<uint8_t> buf(5000);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t offset = 0; offset < 9; ++offset) {
    for (size_t n : {0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4991}) {
      const uint8_t* p = buf.data() + offset;
      uint32_t want = crc32c_bitwise(p, n);
      EXPECT_EQ(detail::crc32c_extend_portable(0, p, n), want) << "offset " << offset << " n " << n;
      EXPECT_EQ(crc32c(p, n), want) << "offset " << offset << " n " << n;
      if (detail::crc32c_hardware_available()) {
        EXPECT_EQ(detail::crc32c_extend_hardware(0, p, n), want)
            << "offset " << offset << " n " << n;
      }
    }
  }
}

TEST(Crc32c, ExtendingEqualsChecksummingTheConcatenation) {
  const std::string a = "tandem checkpoints ", b = "are verified on load";
  EXPECT_EQ(crc32c_extend(crc32c(a), b.data(), b.size()), crc32c(a + b));
  EXPECT_EQ(detail::crc32c_extend_portable(crc32c(a), b.data(), b.size()), crc32c(a + b));
}

TEST(Crc32c, MaskIsTensorFlowsRotateAndAddAndUnmaskInvertsIt) {
  const uint32_t crc = crc32c("123456789");  // 0xE3069283
  // ((crc >> 15) | (crc << 17)) + 0xA282EAD8 mod 2^32, worked in 64-bit arithmetic.
  const uint64_t rotated = ((uint64_t{crc} >> 15) | (uint64_t{crc} << 17)) & 0xFFFFFFFFull;
  const uint32_t want = static_cast<uint32_t>((rotated + 0xA282EAD8ull) & 0xFFFFFFFFull);
  EXPECT_EQ(crc32c_mask(crc), want);
  EXPECT_EQ(masked_crc32c("123456789", 9), want);
  EXPECT_EQ(crc32c_unmask(crc32c_mask(crc)), crc);
  EXPECT_NE(crc32c_mask(crc), crc);
}

}  // namespace
}  // namespace tandem

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum of TensorBoard/TFRecord
// framing and of tandem's checkpoints. Not zlib's CRC-32: crc32c("123456789") == 0xE3069283.
//
// The SSE4.2 crc32 instruction is used when the CPU has it (checked once at run time); otherwise a
// slicing-by-8 table walk. Both give identical results. Pure functions, thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tandem {

// The CRC of `crc`'s data followed by data[0, n): crc32c_extend(crc32c(a), b) == crc32c(a + b).
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n);
inline uint32_t crc32c(const void* data, size_t n) {
  return crc32c_extend(0, data, n);
}
inline uint32_t crc32c(std::string_view s) {
  return crc32c(s.data(), s.size());
}

// TensorBoard's masking, so that a CRC stored next to the data it covers does not checksum to a
// constant: ((crc >> 15) | (crc << 17)) + 0xA282EAD8, modulo 2^32.
inline uint32_t crc32c_mask(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}
inline uint32_t crc32c_unmask(uint32_t masked) {
  uint32_t rot = masked - 0xA282EAD8u;
  return (rot >> 17) | (rot << 15);
}
inline uint32_t masked_crc32c(const void* data, size_t n) {
  return crc32c_mask(crc32c(data, n));
}

namespace detail {
// The two implementations behind crc32c_extend, exposed so tests can compare them.
uint32_t crc32c_extend_portable(uint32_t crc, const void* data, size_t n);
bool crc32c_hardware_available();
uint32_t crc32c_extend_hardware(uint32_t crc, const void* data, size_t n);  // needs the above
}  // namespace detail

}  // namespace tandem

// The Philox key layout of every random draw that touches a sample. All of them are pure
// functions of (seed, epoch, *global* sample index), never of a per-process stream, so the same
// sample is shuffled, cropped and flipped the same way whichever rank or thread loads it, and a
// run gives the same math on 1, 2 or 8 replicas (docs/DESIGN.md section 8).
//
// philox4x32(key, counter_hi, counter_lo) is called with
//   key        = the experiment seed (the top-level `seed`),
//   counter_hi = stream tag << 32 | epoch (low 32 bits; the synthetic data set uses 0 there),
//   counter_lo = what the stream counts:
//
//   stream              counter_lo                         words used
//   kStreamShuffle      Generator offset (randperm draws)  one u64 per swap (Fisher-Yates)
//   kStreamAugment      global sample index                r[0] crop dy, r[1] crop dx, r[2] flip
//   kStreamSynthetic    sample index (| 2^63 for test)     r[0], r[1] seed a SplitMix64 stream
//                                                          for the pixels, r[2] the label
//   kStreamResizedCrop  global sample index << 4 | attempt r[0] area, r[1] aspect ratio, r[2] top,
//                       (image_folder's RandomResizedCrop) r[3] left, of attempt 0..9
//
// Tags are four ASCII letters so they cannot collide with the small stream numbers other parts of
// tandem (parameter init, dropout) use.
#pragma once

#include <cstdint>

namespace tandem {

constexpr uint64_t kStreamShuffle = 0x53485546;      // "SHUF"
constexpr uint64_t kStreamAugment = 0x4155474D;      // "AUGM"
constexpr uint64_t kStreamSynthetic = 0x53594E54;    // "SYNT"
constexpr uint64_t kStreamResizedCrop = 0x52524352;  // "RRCR"

// counter_hi for (stream, epoch). Epochs are taken modulo 2^32.
inline uint64_t stream_counter_hi(uint64_t stream, int64_t epoch) {
  return stream << 32 | (static_cast<uint64_t>(epoch) & 0xFFFFFFFFull);
}

}  // namespace tandem

// CRC-32 (IEEE, zlib's crc32) of a recording frame, folded 64 bytes at a time with carry-less
// multiplication (PCLMULQDQ) where the CPU has it. The crc32 the node binary exports is
// table-driven, about 1.2 GB/s here: 40% of framing a 300-byte statement record on the
// primary. Same value as zlib's crc32 for every input (test/recording/record-frame.test.ts).
#pragma once
#include <cstddef>
#include <cstdint>

namespace vg {

// zlib's crc32(crc, buf, len): `crc` is the CRC so far (0 to start), the result is final.
uint32_t Crc32(uint32_t crc, const uint8_t* buf, size_t len);

}  // namespace vg

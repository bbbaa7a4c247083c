// See crc32-fold.h. The folding is the one of Intel's "Fast CRC Computation for Generic
// Polynomials Using PCLMULQDQ" (2009) with the bit-reflected constants for 0x04C11DB7, as
// Linux (arch/x86/crypto/crc32-pclmul_asm.S) and Chromium's zlib (crc32_simd.c) use them:
// four 128-bit lanes folded across 64-byte blocks, folded into one, then 16-byte blocks,
// reduced to 64 and 32 bits (Barrett). Bytes after the last whole 16 go through zlib.
#include "recording/crc32-fold.h"

#include <zlib.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace vg {

namespace {

// Inputs shorter than this are left to zlib: the fold needs one 64-byte block to start.
constexpr size_t kFoldMinBytes = 64;

uint32_t TableCrc32(uint32_t crc, const uint8_t* buf, size_t len) {
  // zlib's crc32 takes uInt lengths: feed it in pieces below 4 GiB.
  while (len > 0) {
    uInt piece = len > 0x40000000 ? 0x40000000 : static_cast<uInt>(len);
    crc = static_cast<uint32_t>(crc32(crc, buf, piece));
    buf += piece;
    len -= piece;
  }
  return crc;
}

#if defined(__x86_64__)
inline __m128i Load(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

// One 128-bit lane folded forward over 128 bits (k: the fold's two constants) into `next`.
__attribute__((target("pclmul"))) inline __m128i Fold(__m128i acc, __m128i next, __m128i k) {
  __m128i lo = _mm_clmulepi64_si128(acc, k, 0x00);
  __m128i hi = _mm_clmulepi64_si128(acc, k, 0x11);
  return _mm_xor_si128(_mm_xor_si128(hi, next), lo);
}

// The raw (not inverted) CRC state over `len` bytes, len >= 64 and a multiple of 16.
__attribute__((target("pclmul,sse4.1"))) uint32_t FoldCrc32(uint32_t state, const uint8_t* buf, size_t len) {
  alignas(16) static const uint64_t k1k2[] = {0x0154442bd4, 0x01c6e41596};
  alignas(16) static const uint64_t k3k4[] = {0x01751997d0, 0x00ccaa009e};
  alignas(16) static const uint64_t k5k0[] = {0x0163cd6124, 0x0000000000};
  alignas(16) static const uint64_t poly[] = {0x01db710641, 0x01f7011641};

  __m128i x1 = Load(buf), x2 = Load(buf + 16), x3 = Load(buf + 32), x4 = Load(buf + 48);
  x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128(static_cast<int>(state)));
  __m128i k = _mm_load_si128(reinterpret_cast<const __m128i*>(k1k2));
  buf += 64;
  len -= 64;
  while (len >= 64) {
    x1 = Fold(x1, Load(buf), k);
    x2 = Fold(x2, Load(buf + 16), k);
    x3 = Fold(x3, Load(buf + 32), k);
    x4 = Fold(x4, Load(buf + 48), k);
    buf += 64;
    len -= 64;
  }
  // Four lanes into one, then the remaining 16-byte blocks.
  k = _mm_load_si128(reinterpret_cast<const __m128i*>(k3k4));
  x1 = Fold(x1, x2, k);
  x1 = Fold(x1, x3, k);
  x1 = Fold(x1, x4, k);
  while (len >= 16) {
    x1 = Fold(x1, Load(buf), k);
    buf += 16;
    len -= 16;
  }
  // 128 -> 64 bits.
  x2 = _mm_clmulepi64_si128(x1, k, 0x10);
  x3 = _mm_setr_epi32(~0, 0, ~0, 0);
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
  // 64 -> 32 bits.
  k = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(k5k0));
  x2 = _mm_srli_si128(x1, 4);
  x1 = _mm_and_si128(x1, x3);
  x1 = _mm_clmulepi64_si128(x1, k, 0x00);
  x1 = _mm_xor_si128(x1, x2);
  // Barrett reduction.
  k = _mm_load_si128(reinterpret_cast<const __m128i*>(poly));
  x2 = _mm_and_si128(x1, x3);
  x2 = _mm_clmulepi64_si128(x2, k, 0x10);
  x2 = _mm_and_si128(x2, x3);
  x2 = _mm_clmulepi64_si128(x2, k, 0x00);
  x1 = _mm_xor_si128(x1, x2);
  return static_cast<uint32_t>(_mm_extract_epi32(x1, 1));
}

bool CpuCanFold() {
  static const bool can = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  return can;
}
#endif

}  // namespace

uint32_t Crc32(uint32_t crc, const uint8_t* buf, size_t len) {
#if defined(__x86_64__)
  if (len >= kFoldMinBytes && CpuCanFold()) {
    size_t whole = len & ~static_cast<size_t>(15);
    crc = ~FoldCrc32(~crc, buf, whole);
    buf += whole;
    len -= whole;
  }
#endif
  return len == 0 ? crc : TableCrc32(crc, buf, len);
}

}  // namespace vg

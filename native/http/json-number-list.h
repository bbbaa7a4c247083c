// The hot loop of the HTTP body guard (workers/http/json-key-scan.ts `skipNumberList`) in
// C++: a search body is mostly one embedding, a JSON array of ~1,536 numbers, and walking it
// byte by byte in JavaScript was the guard's largest cost. Same grammar, same results as the
// JavaScript function (test/native/json-number-list.test.ts compares them).
//
// SkipJsonNumberList checks 64 bytes at a time where the CPU allows (json-number-list.cc:
// AVX-512BW or AVX2, with BMI2, chosen at run time) and finishes byte by byte; SkipJsonNumberListScalar is the
// byte-by-byte walk alone (the reference the tests hold the 64-byte path to).
#pragma once
#include <cstddef>
#include <cstdint>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace vg {

inline bool IsJsonWs(uint8_t c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
inline bool IsDigit(uint8_t c) { return c >= '0' && c <= '9'; }

// The end of the run of ASCII digits starting at `j`. Sixteen bytes at a time where the
// buffer allows (an embedding component has 8-12 digits in a row), so a run costs one
// compare and one branch instead of one per digit.
inline size_t DigitRunEnd(const uint8_t* b, size_t n, size_t j) {
#if defined(__SSE2__)
  const __m128i zero = _mm_set1_epi8('0');
  const __m128i nine = _mm_set1_epi8(9);
  while (j + 16 <= n) {
    const __m128i x = _mm_sub_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + j)), zero);
    // A digit is x <= 9 unsigned: min(x, 9) == x.
    const unsigned digits = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(x, nine), x)));
    if (digits != 0xFFFF) return j + static_cast<size_t>(__builtin_ctz(~digits));
    j += 16;
  }
#endif
  while (j < n && IsDigit(b[j])) j++;
  return j;
}

// `i` at a comma after a number inside an array: skips `,number` repeats (whitespace allowed
// around commas, numbers per RFC 8259) and returns the index after the last number and the
// whitespace that follows it, `i` itself when what follows the comma is not a number, or -1
// when a number is malformed.
inline int64_t SkipJsonNumberListScalar(const uint8_t* b, size_t n, size_t i) {
  while (i < n && b[i] == ',') {
    size_t j = i + 1;
    while (j < n && IsJsonWs(b[j])) j++;
    if (j >= n || (b[j] != '-' && !IsDigit(b[j]))) return static_cast<int64_t>(i);  // back to the comma
    if (b[j] == '-') j++;
    if (j < n && b[j] == '0') {
      j++;
    } else if (j < n && b[j] > '0' && b[j] <= '9') {
      j = DigitRunEnd(b, n, j + 1);
    } else {
      return -1;
    }
    if (j < n && b[j] == '.') {
      j++;
      if (j >= n || !IsDigit(b[j])) return -1;
      j = DigitRunEnd(b, n, j + 1);
    }
    if (j < n && (b[j] == 'e' || b[j] == 'E')) {
      j++;
      if (j < n && (b[j] == '+' || b[j] == '-')) j++;
      if (j >= n || !IsDigit(b[j])) return -1;
      j = DigitRunEnd(b, n, j + 1);
    }
    i = j;
    while (i < n && IsJsonWs(b[i])) i++;
  }
  return static_cast<int64_t>(i);
}

// Where the 64-byte check can run it first skips every whole `,number` it can vouch for, then
// the walk above finishes from the comma where it stopped: same results, fewer branches.
int64_t SkipJsonNumberList(const uint8_t* b, size_t n, size_t i);

// Tests and fuzzing (native/fuzz/json-number-list-fuzz.cc): one walk whatever this CPU's
// choice, so every path is checked against the scalar one; the scalar walk when the CPU
// lacks the instructions.
enum class JsonNumberListWalk { kScalar, kAvx2, kAvx512 };
int64_t SkipJsonNumberListOn(JsonNumberListWalk walk, const uint8_t* b, size_t n, size_t i);

// "avx512-bmi2" or "avx2-bmi2" when SkipJsonNumberList checks 64 bytes at a time on this CPU, else "scalar".
const char* JsonNumberListPath();

}  // namespace vg

// See json-number-list.h. The 64-byte check: a window of 64 bytes starting at a comma is
// classified into bit masks (bit k = byte k: digits, '0', '-', '+', '.', 'e'/'E', ',',
// whitespace), and the part of it up to its last comma is accepted only if every byte there
// belongs to the grammar and each of these holds, which together are RFC 8259's
// `,ws* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? ws*` repeated:
//   - commas and number tokens (maximal runs of non-comma, non-whitespace bytes) alternate,
//     one token after each comma (`,,` and `1 2` refused);
//   - a token starts with '-' or a digit; '-' starts a token or follows 'e', '+' follows 'e',
//     and both are followed by a digit; '.' sits between digits; 'e' follows a digit and is
//     followed by a digit or a sign;
//   - the first digit of a token's integer part, when '0', is not followed by a digit;
//   - within a token '.' and 'e' come at most once each, '.' first.
// The two ordering rules are checked on the sequence of events (comma / token start, or
// token start / '.' / 'e'), compacted with PEXT so that neighbours in the sequence are
// neighbouring bits. Anything the window cannot vouch for (a byte outside the grammar, a
// number running past the window, a rule broken) stops the 64-byte path at its last
// vouched-for comma and the byte-by-byte walk decides, exactly as before.
#include "http/json-number-list.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace vg {

#if defined(__x86_64__)
namespace {

struct ClassMasks {
  uint64_t digit, zero, minus, plus, dot, exp, comma, ws;
};

__attribute__((target("avx2"))) inline uint64_t Bits(__m256i lo, __m256i hi) {
  return static_cast<uint32_t>(_mm256_movemask_epi8(lo)) | (static_cast<uint64_t>(static_cast<uint32_t>(_mm256_movemask_epi8(hi))) << 32);
}

__attribute__((target("avx2"))) inline uint64_t Equal(__m256i a, __m256i b, char c) {
  const __m256i v = _mm256_set1_epi8(c);
  return Bits(_mm256_cmpeq_epi8(a, v), _mm256_cmpeq_epi8(b, v));
}

__attribute__((target("avx2"))) inline ClassMasks Classify(const uint8_t* p) {
  const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32));
  const __m256i zero = _mm256_set1_epi8('0');
  const __m256i nine = _mm256_set1_epi8(9);
  const __m256i da = _mm256_sub_epi8(a, zero);
  const __m256i db = _mm256_sub_epi8(b, zero);
  const __m256i lower = _mm256_set1_epi8(0x20);
  const __m256i e = _mm256_set1_epi8('e');
  ClassMasks m;
  // A digit is (byte - '0') <= 9 unsigned: min(x, 9) == x.
  m.digit = Bits(_mm256_cmpeq_epi8(_mm256_min_epu8(da, nine), da), _mm256_cmpeq_epi8(_mm256_min_epu8(db, nine), db));
  m.zero = Equal(a, b, '0');
  m.minus = Equal(a, b, '-');
  m.plus = Equal(a, b, '+');
  m.dot = Equal(a, b, '.');
  m.exp = Bits(_mm256_cmpeq_epi8(_mm256_or_si256(a, lower), e), _mm256_cmpeq_epi8(_mm256_or_si256(b, lower), e));
  m.comma = Equal(a, b, ',');
  m.ws = Equal(a, b, ' ') | Equal(a, b, '\n') | Equal(a, b, '\r') | Equal(a, b, '\t');
  return m;
}

// The same masks from one 64-byte register: each compare gives its mask directly.
__attribute__((target("avx512f,avx512bw"))) inline ClassMasks Classify512(const uint8_t* p) {
  const __m512i x = _mm512_loadu_si512(p);
  auto eq = [](__m512i v, char c) __attribute__((target("avx512f,avx512bw"))) { return static_cast<uint64_t>(_mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(c))); };
  ClassMasks m;
  m.digit = _mm512_cmple_epu8_mask(_mm512_sub_epi8(x, _mm512_set1_epi8('0')), _mm512_set1_epi8(9));
  m.zero = eq(x, '0');
  m.minus = eq(x, '-');
  m.plus = eq(x, '+');
  m.dot = eq(x, '.');
  m.exp = eq(_mm512_or_si512(x, _mm512_set1_epi8(0x20)), 'e');
  m.comma = eq(x, ',');
  m.ws = eq(x, ' ') | eq(x, '\n') | eq(x, '\r') | eq(x, '\t');
  return m;
}

// How many bytes from the comma at p[0] the window vouches for: the offset of a later comma
// such that everything before it is whole `,number` items, or 0.
__attribute__((target("bmi,bmi2,popcnt"))) inline size_t VouchedBytes(const ClassMasks& m) {
  const uint64_t later = m.comma & ~uint64_t{1};
  if (later == 0) return 0;  // one number as long as the window (or not a list): byte by byte
  const unsigned k = 63 - static_cast<unsigned>(__builtin_clzll(later));
  const uint64_t s = (uint64_t{1} << k) - 1;  // bytes [0, k): the comma at 0 up to the last comma
  const uint64_t num = m.digit | m.minus | m.plus | m.dot | m.exp;
  if (s & ~(num | m.comma | m.ws)) return 0;
  const uint64_t start = num & ~(num << 1);  // first byte of each token
  // Commas and token starts alternate, a comma first and a token last.
  const uint64_t events = (m.comma | start) & s;
  const unsigned count = static_cast<unsigned>(__builtin_popcountll(events));
  if (count & 1) return 0;
  const uint64_t alternate = 0x5555555555555555ull & ((uint64_t{1} << count) - 1);  // count <= 63
  if (_pext_u64(m.comma & s, events) != alternate) return 0;
  // Where each kind of byte may stand.
  uint64_t bad = start & ~(m.minus | m.digit);
  bad |= m.minus & ~(start | (m.exp << 1));
  bad |= m.plus & ~(m.exp << 1);
  bad |= (m.minus | m.plus | m.dot) & ~(m.digit >> 1);
  bad |= (m.dot | m.exp) & ~(m.digit << 1);
  bad |= m.exp & ~((m.digit | m.minus | m.plus) >> 1);
  const uint64_t firstDigit = m.digit & (start | ((m.minus & start) << 1));
  bad |= firstDigit & m.zero & (m.digit >> 1);
  if (bad & s) return 0;
  // '.' and 'e' at most once per token, '.' before 'e': in the sequence of token starts, dots
  // and exponents, no '.' right after '.' or 'e', no 'e' right after 'e'.
  const uint64_t marks = (start | m.dot | m.exp) & s;
  const uint64_t dots = _pext_u64(m.dot & s, marks);
  const uint64_t exps = _pext_u64(m.exp & s, marks);
  if ((dots & ((dots | exps) << 1)) | (exps & (exps << 1))) return 0;
  return k;
}

__attribute__((target("avx2,bmi,bmi2,popcnt"))) int64_t SkipWideAvx2(const uint8_t* b, size_t n, size_t i) {
  while (i + 64 <= n && b[i] == ',') {
    const size_t k = VouchedBytes(Classify(b + i));
    if (k == 0) break;
    i += k;
  }
  return SkipJsonNumberListScalar(b, n, i);
}

__attribute__((target("avx512f,avx512bw,bmi,bmi2,popcnt"))) int64_t SkipWideAvx512(const uint8_t* b, size_t n, size_t i) {
  while (i + 64 <= n && b[i] == ',') {
    const size_t k = VouchedBytes(Classify512(b + i));
    if (k == 0) break;
    i += k;
  }
  return SkipJsonNumberListScalar(b, n, i);
}

enum class Path { kScalar, kAvx2, kAvx512 };

Path ChoosePath() {
  __builtin_cpu_init();
  // PEXT is microcoded (slow) on AMD before Zen 3.
  if (!__builtin_cpu_supports("bmi2") || !__builtin_cpu_supports("popcnt") || __builtin_cpu_is("znver1") || __builtin_cpu_is("znver2")) return Path::kScalar;
  if (__builtin_cpu_supports("avx512bw")) return Path::kAvx512;
  return __builtin_cpu_supports("avx2") ? Path::kAvx2 : Path::kScalar;
}

const Path kPath = ChoosePath();

}  // namespace

int64_t SkipJsonNumberList(const uint8_t* b, size_t n, size_t i) {
  switch (kPath) {
    case Path::kAvx512:
      return SkipWideAvx512(b, n, i);
    case Path::kAvx2:
      return SkipWideAvx2(b, n, i);
    default:
      return SkipJsonNumberListScalar(b, n, i);
  }
}

const char* JsonNumberListPath() { return kPath == Path::kAvx512 ? "avx512-bmi2" : kPath == Path::kAvx2 ? "avx2-bmi2" : "scalar"; }

int64_t SkipJsonNumberListOn(JsonNumberListWalk walk, const uint8_t* b, size_t n, size_t i) {
  __builtin_cpu_init();
  const bool wide = __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt");
  if (walk == JsonNumberListWalk::kAvx512 && wide && __builtin_cpu_supports("avx512bw")) return SkipWideAvx512(b, n, i);
  if (walk == JsonNumberListWalk::kAvx2 && wide && __builtin_cpu_supports("avx2")) return SkipWideAvx2(b, n, i);
  return SkipJsonNumberListScalar(b, n, i);
}

#else

int64_t SkipJsonNumberList(const uint8_t* b, size_t n, size_t i) { return SkipJsonNumberListScalar(b, n, i); }

const char* JsonNumberListPath() { return "scalar"; }

int64_t SkipJsonNumberListOn(JsonNumberListWalk, const uint8_t* b, size_t n, size_t i) { return SkipJsonNumberListScalar(b, n, i); }

#endif

}  // namespace vg

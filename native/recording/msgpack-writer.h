// The few MessagePack encodings recording events need, appended to a std::string. Readers
// decode with msgpackr (src/recording/segment-format.ts `packr`), which accepts any valid
// encoding of a value: what matters is the decoded value, not the bytes.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

namespace vg {
namespace msgpack {

inline void Be16(std::string* o, uint16_t v) {
  char b[2] = {static_cast<char>(v >> 8), static_cast<char>(v)};
  o->append(b, 2);
}
inline void Be32(std::string* o, uint32_t v) {
  char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
  o->append(b, 4);
}
inline void Be64(std::string* o, uint64_t v) {
  Be32(o, static_cast<uint32_t>(v >> 32));
  Be32(o, static_cast<uint32_t>(v));
}

inline void Nil(std::string* o) { o->push_back(static_cast<char>(0xc0)); }
inline void Bool(std::string* o, bool v) { o->push_back(static_cast<char>(v ? 0xc3 : 0xc2)); }

inline void MapHeader(std::string* o, uint32_t n) {
  if (n < 16) {
    o->push_back(static_cast<char>(0x80 | n));
  } else if (n <= 0xffff) {
    o->push_back(static_cast<char>(0xde));
    Be16(o, static_cast<uint16_t>(n));
  } else {
    o->push_back(static_cast<char>(0xdf));
    Be32(o, n);
  }
}

// Bytes MapHeader(n) writes.
inline size_t MapHeaderBytes(uint32_t n) { return n < 16 ? 1 : n <= 0xffff ? 3 : 5; }

inline void ArrayHeader(std::string* o, uint32_t n) {
  if (n < 16) {
    o->push_back(static_cast<char>(0x90 | n));
  } else if (n <= 0xffff) {
    o->push_back(static_cast<char>(0xdc));
    Be16(o, static_cast<uint16_t>(n));
  } else {
    o->push_back(static_cast<char>(0xdd));
    Be32(o, n);
  }
}

// A UTF-8 string as it is (the caller has checked or converted it).
inline void Str(std::string* o, const char* s, size_t n) {
  if (n < 32) {
    o->push_back(static_cast<char>(0xa0 | n));
  } else if (n <= 0xff) {
    o->push_back(static_cast<char>(0xd9));
    o->push_back(static_cast<char>(n));
  } else if (n <= 0xffff) {
    o->push_back(static_cast<char>(0xda));
    Be16(o, static_cast<uint16_t>(n));
  } else {
    o->push_back(static_cast<char>(0xdb));
    Be32(o, static_cast<uint32_t>(n));
  }
  o->append(s, n);
}
inline void Str(std::string* o, const std::string& s) { Str(o, s.data(), s.size()); }
inline void Str(std::string* o, const char* s) { Str(o, s, std::strlen(s)); }
// A string literal (a key, a constant value): under 32 bytes, its length known at compile time.
template <size_t N>
inline void Lit(std::string* o, const char (&s)[N]) {
  static_assert(N - 1 < 32, "Lit is for short literals");
  char b[N];
  b[0] = static_cast<char>(0xa0 | (N - 1));
  std::memcpy(b + 1, s, N - 1);
  o->append(b, N);
}

inline void Float64(std::string* o, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  o->push_back(static_cast<char>(0xcb));
  Be64(o, bits);
}

// A JavaScript number: small non-negative integers compactly, everything else as float64
// (decodes to the same Number; 64-bit integer encodings would decode as BigInt).
inline void Number(std::string* o, double v) {
  if (v >= 0 && v <= 4294967295.0 && std::floor(v) == v && !(v == 0 && std::signbit(v))) {
    uint32_t u = static_cast<uint32_t>(v);
    if (u < 128) {
      o->push_back(static_cast<char>(u));
    } else if (u <= 0xff) {
      o->push_back(static_cast<char>(0xcc));
      o->push_back(static_cast<char>(u));
    } else if (u <= 0xffff) {
      o->push_back(static_cast<char>(0xcd));
      Be16(o, static_cast<uint16_t>(u));
    } else {
      o->push_back(static_cast<char>(0xce));
      Be32(o, u);
    }
    return;
  }
  Float64(o, v);
}

}  // namespace msgpack
}  // namespace vg

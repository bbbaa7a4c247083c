// The hot loop of the HTTP body guard (workers/http/json-key-scan.ts `skipNumberList`) in
// C++: a search body is mostly one embedding, a JSON array of ~1,536 numbers, and walking it
// byte by byte in JavaScript was the guard's largest cost. Same grammar, same results as the
// JavaScript function (test/native/json-number-list.test.ts compares them).
#pragma once
#include <cstddef>
#include <cstdint>

namespace vg {

inline bool IsJsonWs(uint8_t c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
inline bool IsDigit(uint8_t c) { return c >= '0' && c <= '9'; }

// `i` at a comma after a number inside an array: skips `,number` repeats (whitespace allowed
// around commas, numbers per RFC 8259) and returns the index after the last number and the
// whitespace that follows it, `i` itself when what follows the comma is not a number, or -1
// when a number is malformed.
inline int64_t SkipJsonNumberList(const uint8_t* b, size_t n, size_t i) {
  while (i < n && b[i] == ',') {
    size_t j = i + 1;
    while (j < n && IsJsonWs(b[j])) j++;
    if (j >= n || (b[j] != '-' && !IsDigit(b[j]))) return static_cast<int64_t>(i);  // back to the comma
    if (b[j] == '-') j++;
    if (j < n && b[j] == '0') {
      j++;
    } else if (j < n && b[j] > '0' && b[j] <= '9') {
      j++;
      while (j < n && IsDigit(b[j])) j++;
    } else {
      return -1;
    }
    if (j < n && b[j] == '.') {
      j++;
      if (j >= n || !IsDigit(b[j])) return -1;
      while (j < n && IsDigit(b[j])) j++;
    }
    if (j < n && (b[j] == 'e' || b[j] == 'E')) {
      j++;
      if (j < n && (b[j] == '+' || b[j] == '-')) j++;
      if (j >= n || !IsDigit(b[j])) return -1;
      while (j < n && IsDigit(b[j])) j++;
    }
    i = j;
    while (i < n && IsJsonWs(b[i])) i++;
  }
  return static_cast<int64_t>(i);
}

}  // namespace vg

// The C++ unit tests' checks (native/test/*-test.cc, run by test/native/native-unit.test.ts):
// CHECK counts a failed condition and goes on; ChecksResult ends main with the verdict the
// runner reads ("<name>: all checks passed", or the count of failures and exit status 1).
#pragma once
#include <cstdio>

namespace vg {
namespace test {

inline int& CheckFailures() {
  static int failures = 0;
  return failures;
}

inline int ChecksResult(const char* name) {
  if (CheckFailures() > 0) {
    std::fprintf(stderr, "%d check(s) failed\n", CheckFailures());
    return 1;
  }
  std::printf("%s: all checks passed\n", name);
  return 0;
}

}  // namespace test
}  // namespace vg

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      vg::test::CheckFailures()++;                                                   \
    }                                                                                \
  } while (0)

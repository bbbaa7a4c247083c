// libFuzzer target for the HTTP body guard's number-list skipper (http/json-number-list.h):
// from every comma of the input, the AVX-512 and AVX2 walks (when this CPU has them) must
// return exactly what the scalar walk returns, and no walk may read past the input.
// The input is copied into a buffer of its exact size, so ASan sees a 64-byte load that
// overruns it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "http/json-number-list.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> b(data, data + size);
  const uint8_t* p = b.data();
  for (size_t i = 0; i <= size; i++) {
    if (i < size && p[i] != ',') continue;
    const int64_t scalar = vg::SkipJsonNumberListScalar(p, size, i);
    const int64_t avx2 = vg::SkipJsonNumberListOn(vg::JsonNumberListWalk::kAvx2, p, size, i);
    const int64_t avx512 = vg::SkipJsonNumberListOn(vg::JsonNumberListWalk::kAvx512, p, size, i);
    const int64_t chosen = vg::SkipJsonNumberList(p, size, i);
    if (avx2 != scalar || avx512 != scalar || chosen != scalar) {
      std::fprintf(stderr, "json-number-list-fuzz: at %zu scalar %lld avx2 %lld avx512 %lld chosen %lld\n", i,
                   static_cast<long long>(scalar), static_cast<long long>(avx2), static_cast<long long>(avx512), static_cast<long long>(chosen));
      abort();
    }
    if (scalar < -1 || scalar > static_cast<int64_t>(size) || (scalar >= 0 && static_cast<size_t>(scalar) < i)) abort();
  }
  return 0;
}

// libFuzzer target for the upstream response-head reader (http/http-response-head.h): on any
// bytes it either declines or vouches for a head whose every field lies inside the head, and
// a head it vouches for is declined when cut short (it never reads past what it was given:
// the input is copied into a buffer of its exact size for ASan). The first byte picks
// maxHeadBytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "http/http-response-head.h"

namespace {
bool Inside(std::string_view s, const uint8_t* b, size_t used) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  return s.empty() || (p >= b && p + s.size() <= b + used);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t maxHead = data[0] < 128 ? size : 16 + data[0] * 4;
  std::vector<uint8_t> buf(data + 1, data + size);
  const uint8_t* b = buf.data();
  const size_t n = buf.size();
  vg::ResponseHeadFields f;
  if (!vg::ReadResponseHead(b, n, maxHead, &f)) return 0;
  if (f.used == 0 || f.used > n || f.used > maxHead) abort();
  if (f.status < 100 || f.status > 999) abort();
  if (f.fields.size() % 2 != 0 || f.fields.size() > 2 * vg::kMaxResponseHeaderFields) abort();
  if (!Inside(f.reason, b, f.used)) abort();
  for (std::string_view s : f.fields)
    if (!Inside(s, b, f.used)) abort();
  if (f.chunked && !f.transferEncoding) abort();
  // cut anywhere before its end, the head is incomplete
  std::vector<uint8_t> cut(b, b + f.used - 1);
  vg::ResponseHeadFields g;
  if (vg::ReadResponseHead(cut.data(), cut.size(), maxHead, &g)) abort();
  return 0;
}

// The upstream response head of the HTTP data path (workers/http/upstream-response-parser.ts)
// read in C++ when it arrives whole in one read, the common case: the status line and header
// fields found, checked and handed to JavaScript in one call instead of a split, regular
// expressions and string copies per line. It vouches only for heads it fully understands and
// leaves everything else (partial heads, unusual Content-Length / Transfer-Encoding /
// Connection values, anything malformed) to the JavaScript reader, which decides and words the
// errors: so it may refuse what JavaScript accepts, never the other way round
// (test/native/http-response-head.test.ts holds the two to the same results).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace vg {

struct ResponseHeadFields {
  size_t used = 0;  // bytes of the head including its blank line
  int minor = 1;
  int status = 0;
  std::string_view reason;
  int64_t contentLength = -1;  // -1: none
  bool transferEncoding = false;
  bool chunked = false;
  bool closeToken = false;
  bool keepAliveToken = false;
  // name, value, name, value, ... (values trimmed as JavaScript's trim() would)
  std::vector<std::string_view> fields;
};

// Most header fields the JavaScript reader accepts (MAX_RESPONSE_HEADER_COUNT).
constexpr size_t kMaxResponseHeaderFields = 200;

// True with `out` filled when b[0..n) starts with a complete head this reader vouches for.
bool ReadResponseHead(const uint8_t* b, size_t n, size_t maxHeadBytes, ResponseHeadFields* out);

}  // namespace vg

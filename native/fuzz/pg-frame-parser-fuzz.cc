// libFuzzer target for the PostgreSQL frame parser: any input, split at a point chosen by
// the input itself, must parse exactly as the whole does, and never read out of bounds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "pg/pg-frame-parser.h"

namespace {
struct Recorder : vg::PgFrameCallbacks {
  std::string log;
  void OnMessageStart(uint8_t type, uint32_t length) override {
    log.push_back(static_cast<char>(type));
    log += std::to_string(length);
  }
  void OnMessageBody(uint8_t, const uint8_t* data, size_t len) override {
    for (size_t i = 0; i < len; i++) log.push_back(static_cast<char>(data[i]));
  }
  void OnMessageEnd(uint8_t) override { log.push_back('|'); }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  uint32_t max = 16 + data[0] * 64;  // small limits exercise the over-limit path
  const uint8_t* body = data + 1;
  size_t n = size - 1;
  vg::PgFrameParser whole(max);
  Recorder rw;
  auto a = whole.Feed(body, n, &rw);

  size_t cut = n ? data[0] % (n + 1) : 0;
  vg::PgFrameParser split(max);
  Recorder rs;
  auto b1 = split.Feed(body, cut, &rs);
  vg::PgFrameResult b2{vg::PgFrameStatus::Ok, 0, nullptr};
  if (b1.status == vg::PgFrameStatus::Ok) b2 = split.Feed(body + cut, n - cut, &rs);
  bool wholeOk = a.status == vg::PgFrameStatus::Ok;
  bool splitOk = b1.status == vg::PgFrameStatus::Ok && b2.status == vg::PgFrameStatus::Ok;
  if (wholeOk != splitOk) abort();
  if (wholeOk && rw.log != rs.log) abort();
  if (wholeOk && whole.messages() != split.messages()) abort();
  return 0;
}

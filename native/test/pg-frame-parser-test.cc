// Unit tests for the PostgreSQL frame parser, built with AddressSanitizer and UBSan by
// test/native/native-unit.test.ts. Every stream is re-parsed split at every byte offset.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "pg/pg-frame-parser.h"
#include "test/unit-check.h"

namespace {

struct Recorder : vg::PgFrameCallbacks {
  std::string log;  // "T<len>:<body>|" per message
  std::string body;
  void OnMessageStart(uint8_t type, uint32_t length) override {
    log.push_back(static_cast<char>(type));
    log += std::to_string(length) + ":";
    body.clear();
  }
  void OnMessageBody(uint8_t, const uint8_t* data, size_t len) override { body.append(reinterpret_cast<const char*>(data), len); }
  void OnMessageEnd(uint8_t) override { log += body + "|"; }
};

std::string Msg(char type, const std::string& body) {
  std::string m(1, type);
  uint32_t len = static_cast<uint32_t>(body.size() + 4);
  m.push_back(static_cast<char>(len >> 24));
  m.push_back(static_cast<char>(len >> 16));
  m.push_back(static_cast<char>(len >> 8));
  m.push_back(static_cast<char>(len));
  return m + body;
}

std::string ParseWhole(const std::string& s, vg::PgFrameStatus* st, size_t* consumed, uint32_t max = vg::kPgMaxMessageLength) {
  vg::PgFrameParser p(max);
  Recorder r;
  auto res = p.Feed(reinterpret_cast<const uint8_t*>(s.data()), s.size(), &r);
  *st = res.status;
  *consumed = res.consumed;
  return r.log;
}

void TestSplits() {
  std::string stream = Msg('Q', std::string("SELECT 1;\0", 10)) + Msg('X', "") + Msg('D', std::string(70000, 'v')) +
                       Msg('Z', "I");
  vg::PgFrameStatus st;
  size_t consumed;
  std::string whole = ParseWhole(stream, &st, &consumed);
  CHECK(st == vg::PgFrameStatus::Ok);
  CHECK(consumed == stream.size());
  for (size_t a = 0; a <= stream.size(); a += (a < 64 || a > stream.size() - 64) ? 1 : 997) {
    vg::PgFrameParser p;
    Recorder r;
    auto r1 = p.Feed(reinterpret_cast<const uint8_t*>(stream.data()), a, &r);
    auto r2 = p.Feed(reinterpret_cast<const uint8_t*>(stream.data()) + a, stream.size() - a, &r);
    CHECK(r1.status == vg::PgFrameStatus::Ok && r2.status == vg::PgFrameStatus::Ok);
    CHECK(r.log == whole);
    CHECK(p.AtBoundary());
    CHECK(p.messages() == 4);
  }
  // Byte at a time.
  vg::PgFrameParser p;
  Recorder r;
  for (char c : stream) p.Feed(reinterpret_cast<const uint8_t*>(&c), 1, &r);
  CHECK(r.log == whole);
}

void TestBadLengths() {
  std::string bad("Q\0\0\0\x03", 5);
  vg::PgFrameStatus st;
  size_t consumed;
  ParseWhole(bad, &st, &consumed);
  CHECK(st == vg::PgFrameStatus::Error);
  std::string big = Msg('D', std::string(100, 'x'));
  ParseWhole(big, &st, &consumed, 50);
  CHECK(st == vg::PgFrameStatus::Error);
  // After an error the parser stays failed (fail closed).
  vg::PgFrameParser p(50);
  Recorder r;
  p.Feed(reinterpret_cast<const uint8_t*>(big.data()), big.size(), &r);
  auto again = p.Feed(reinterpret_cast<const uint8_t*>("Z\0\0\0\x05I"), 6, &r);
  CHECK(again.status == vg::PgFrameStatus::Error);
  CHECK(p.failed());
}

void TestHugeLengthNotAllocated() {
  // A 1 GB length header is accepted as a streaming message without allocating anything.
  std::string hdr("d\x3f\xff\xff\xff", 5);
  vg::PgFrameParser p;
  Recorder r;
  auto res = p.Feed(reinterpret_cast<const uint8_t*>(hdr.data()), hdr.size(), &r);
  CHECK(res.status == vg::PgFrameStatus::Ok);
  CHECK(!p.AtBoundary());
  std::string over("d\x40\x00\x00\x00", 5);
  vg::PgFrameStatus st;
  size_t consumed;
  ParseWhole(over, &st, &consumed);
  CHECK(st == vg::PgFrameStatus::Error);
}

}  // namespace

int main() {
  TestSplits();
  TestBadLengths();
  TestHugeLengthNotAllocated();
  return vg::test::ChecksResult("pg-frame-parser");
}

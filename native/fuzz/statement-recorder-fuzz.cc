// libFuzzer target for the C++ statement recorder (statement-recorder.h): it reads what
// clients and upstreams send (statement text, Bind bodies, command tags, error fields), cut
// anywhere by the capture limit. Under ASan/UBSan nothing may read or write out of bounds,
// and every event it writes must be one well-formed msgpack map filling its batch entry
// exactly (so the counted map headers match the pairs written).
//
// Input: a sequence of captures, each `u8 op | u16 BE length | length bytes of body`; op's low
// 3 bits pick the message (Q P F B from the client, C E from the upstream, or a sweep), bit 3
// marks the capture as cut (the message was longer than its body).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

#include "recording/msgpack-writer.h"
#include "recording/record-sink.h"
#include "pg/statement-recorder.h"

namespace {

// What the JavaScript renderer would hand back: some encoded string.
class FakeRenderer : public vg::RecordRenderer {
 public:
  bool Render(vg::RenderKind kind, const char* data, size_t len, std::string* out) override {
    if (len % 7 == 3) return false;  // also exercise the "[redacted]" fallback
    vg::msgpack::Str(out, kind == vg::RenderKind::Text ? "[text]" : "[value]");
    return true;
  }
};

[[noreturn]] void Fail(const char* what) {
  fprintf(stderr, "statement-recorder-fuzz: %s\n", what);
  abort();
}

uint32_t Be(const uint8_t* p, int n) {
  uint32_t v = 0;
  for (int i = 0; i < n; i++) v = (v << 8) | p[i];
  return v;
}

// Skips one msgpack value of the kinds msgpack-writer.h writes; returns the end or fails.
size_t Skip(const uint8_t* d, size_t n, size_t at, int depth) {
  if (depth > 16) Fail("nesting deeper than any event has");
  if (at >= n) Fail("value runs past its entry");
  uint8_t t = d[at];
  auto need = [&](size_t k) {
    if (at + k > n) Fail("value runs past its entry");
  };
  auto items = [&](size_t start, uint32_t count, int perItem) {
    size_t p = start;
    for (uint32_t i = 0; i < count * static_cast<uint32_t>(perItem); i++) p = Skip(d, n, p, depth + 1);
    return p;
  };
  if (t <= 0x7f) return at + 1;
  if ((t & 0xf0) == 0x80) return items(at + 1, t & 0x0f, 2);
  if ((t & 0xf0) == 0x90) return items(at + 1, t & 0x0f, 1);
  if ((t & 0xe0) == 0xa0) {
    need(1 + (t & 0x1f));
    return at + 1 + (t & 0x1f);
  }
  switch (t) {
    case 0xc0: case 0xc2: case 0xc3: return at + 1;
    case 0xcc: need(2); return at + 2;
    case 0xcd: need(3); return at + 3;
    case 0xce: need(5); return at + 5;
    case 0xcb: need(9); return at + 9;
    case 0xd9: need(2); need(2 + d[at + 1]); return at + 2 + d[at + 1];
    case 0xda: need(3); need(3 + Be(d + at + 1, 2)); return at + 3 + Be(d + at + 1, 2);
    case 0xdb: need(5); need(5 + static_cast<size_t>(Be(d + at + 1, 4))); return at + 5 + Be(d + at + 1, 4);
    case 0xdc: need(3); return items(at + 3, Be(d + at + 1, 2), 1);
    case 0xdd: need(5); return items(at + 5, Be(d + at + 1, 4), 1);
    case 0xde: need(3); return items(at + 3, Be(d + at + 1, 2), 2);
    case 0xdf: need(5); return items(at + 5, Be(d + at + 1, 4), 2);
    default: Fail("a msgpack type the writer never uses");
  }
}

void CheckBatch(const std::string& batch) {
  const uint8_t* d = reinterpret_cast<const uint8_t*>(batch.data());
  size_t at = 0;
  while (at < batch.size()) {
    if (at + 6 > batch.size()) Fail("entry header runs past the batch");
    size_t entry = Be(d + at, 4);
    size_t connLen = Be(d + at + 4, 2);
    if (at + 4 + entry > batch.size() || 2 + connLen > entry) Fail("entry runs past the batch");
    size_t start = at + 6 + connLen;
    size_t end = at + 4 + entry;
    if ((d[start] & 0xf0) != 0x80 && d[start] != 0xde) Fail("an event is not a map");
    if (Skip(d, end, start, 0) != end) Fail("an event does not fill its entry exactly");
    at = end;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static FakeRenderer renderer;
  auto sink = std::make_shared<vg::RecordSink>();
  sink->SetRenderer(&renderer);
  {
    vg::StatementRecorder r(sink, "session-1", "pg");
    size_t at = 0;
    while (at + 3 <= size) {
      uint8_t op = data[at];
      size_t len = Be(data + at + 1, 2);
      at += 3;
      if (len > size - at) len = size - at;
      std::string body(reinterpret_cast<const char*>(data + at), len);
      at += len;
      uint32_t length = static_cast<uint32_t>(len) + ((op & 8) ? 1 + (op >> 4) * 1000 : 0);
      static const char kinds[] = "QPFBCE";
      int k = op & 7;
      if (k == 6 || k == 7) {
        sink->Sweep(std::numeric_limits<double>::infinity());
        continue;
      }
      r.OnCapture(k <= 3, static_cast<uint8_t>(kinds[k]), body, length);
    }
    r.End();
  }
  CheckBatch(sink->batch());
  sink->Clear();
  return 0;
}

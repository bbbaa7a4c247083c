// Recording events built in C++ (statement-recorder.h), waiting for JavaScript to take them
// as one record batch (src/recording/record-batch.ts) and post them to the primary's
// recorder. One per worker thread. Statements whose result is still due are parked here so
// a periodic sweep can record long-running ones on their own.
#pragma once
#include <cstdint>
#include <string>

namespace vg {

class StatementRecorder;

enum class RenderKind {
  // A string, after the gateway's redaction (src/recording/redact-event.ts).
  Text = 0,
  // A Bind parameter in text format: rendered (embeddings summarized, long text cut), then redacted.
  Value = 1,
};

// JavaScript's redaction for the strings C++ does not handle itself (non-ASCII text, text
// that may hold a secret): appends the msgpack encoding of the rendered value to `out`.
class RecordRenderer {
 public:
  virtual ~RecordRenderer() = default;
  virtual bool Render(RenderKind kind, const char* data, size_t len, std::string* out) = 0;
};

class RecordSink {
 public:
  void SetRenderer(RecordRenderer* r) { renderer_ = r; }
  RecordRenderer* renderer() const { return renderer_; }
  // Appends one entry, u32 BE entry length | u16 BE connection length | connection | payload,
  // whose payload is a msgpack map of `count` already-encoded pairs: the map header is
  // written in place, so the event is never copied into a payload of its own.
  void AddMap(const std::string& connection, uint32_t count, const std::string& pairs);
  // The batch so far, to copy out before Clear(): the buffer keeps its capacity (up to
  // kMaxKeptBatchBytes), so a busy worker's next batch does not grow it again.
  const std::string& batch() const { return buf_; }
  void Clear() {
    if (buf_.capacity() > kMaxKeptBatchBytes) std::string().swap(buf_);
    else buf_.clear();
  }
  static constexpr size_t kMaxKeptBatchBytes = 4 * 1024 * 1024;
  bool empty() const { return buf_.empty(); }
  // Parked recorders form an intrusive list (no allocation per statement).
  void Park(StatementRecorder* r);
  void Unpark(StatementRecorder* r);
  // Records on its own every parked statement parked at or before `before` (ms epoch).
  void Sweep(double before);

 private:
  std::string buf_;
  RecordRenderer* renderer_ = nullptr;
  StatementRecorder* parked_ = nullptr;
};

}  // namespace vg

// The `queries` recording of one PostgreSQL session, done in C++: each statement (simple
// Query, extended Parse, FunctionCall), its Bind parameters (text rendered, binary ones and
// embeddings summarized, long text cut) and its result summary (command tag, rows,
// duration, or error SQLSTATE and message) become msgpack events in the worker's
// RecordSink, with no JavaScript per statement. It is the C++ twin of
// workers/pg-statement-recorder.ts (used for `full`, strict durability and inspected
// sessions) and must produce the same events: test/native/statement-recorder.test.ts
// compares the two. Strings that may hold a secret, and non-ASCII text, go through the
// gateway's JavaScript redaction (RecordRenderer) so there is one redaction policy.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "recording/record-sink.h"

namespace vg {

// Longest text value kept as is; longer ones are cut (MAX_RECORDED_VALUE_CHARS).
constexpr size_t kMaxRecordedValueChars = 256;
// A text value that parses as a list of at least this many numbers is an embedding (MIN_VECTOR_DIMENSIONS).
constexpr size_t kMinVectorDimensions = 8;
// Hex digits of the SHA-256 kept in a vector's fingerprint (VECTOR_HASH_HEX_DIGITS).
constexpr size_t kVectorHashHexDigits = 12;

class StatementRecorder {
 public:
  // Shares the sink: a pump torn down after its thread's addon (worker exit) still finds it.
  StatementRecorder(std::shared_ptr<RecordSink> sink, const std::string& session, const std::string& connection);
  ~StatementRecorder();
  StatementRecorder(const StatementRecorder&) = delete;
  StatementRecorder& operator=(const StatementRecorder&) = delete;
  // A captured message (the pump's capture spec: client BQPF, upstream CE); `body` may be cut
  // short of `length` by the capture limit.
  void OnCapture(bool fromClient, uint8_t type, const std::string& body, uint32_t length);
  // The session ended: a statement still waiting for its result is recorded without one.
  void End() { FlushPending(); }
  // Records the parked statement on its own (a new statement came, the session ended, or the sweep found it old).
  void FlushPending();
  double pendingSince() const { return pendingSince_; }

 private:
  void Statement(const char* protocol, const char* sql, size_t sqlLen, bool cut, uint32_t messageBytes);
  void Bind(const std::string& body, uint32_t length);
  // A result: `pairs` holds `count` encoded key/value pairs (tag, rows, durationMs | error, durationMs).
  void Finish(const std::string& pairs, uint32_t count);
  void Park();
  void Emit(const std::string& pairs, uint32_t count);
  // Begins an event's pairs: type, ts, session, connection, seq.
  void BasePairs(const char* type, double ts, std::string* out);
  // Encodes a string as the redaction would leave it.
  void Text(const char* s, size_t n, std::string* out);
  // Encodes a text-format parameter as renderValue() + redaction would.
  void Value(const char* s, size_t n, std::string* out);

  std::shared_ptr<RecordSink> sink_;
  std::string connection_;
  std::string sessionValue_;     // encoded (redacted) session id
  std::string connectionValue_;  // encoded (redacted) connection name
  uint64_t seq_ = 0;
  double startedAt_ = 0;
  // The statement or bind event waiting for its result: encoded pairs and their count.
  bool pending_ = false;
  bool pendingIsStatement_ = false;
  bool pendingHasParams_ = false;
  std::string pendingPairs_;
  uint32_t pendingCount_ = 0;
  // Reused for every result, so a statement allocates nothing once the buffers have grown.
  std::string pairsScratch_;
  std::string resultScratch_;
  double pendingSince_ = 0;
  bool parked_ = false;
  // RecordSink's list of parked recorders.
  friend class RecordSink;
  StatementRecorder* parkPrev_ = nullptr;
  StatementRecorder* parkNext_ = nullptr;
};

}  // namespace vg

// Incremental parser for PostgreSQL typed-message streams (1-byte type, int32 length that
// includes itself, body). It knows no sockets: feed it bytes in any split, it reports message
// boundaries to a callbacks interface and never buffers a body, so a 1 GB CopyData streams
// through. A length field below 4 or above the named limit fails the stream (fail closed).
#pragma once
#include <cstddef>
#include <cstdint>

namespace vg {

// PostgreSQL itself refuses messages over 1 GB (PQ_LARGE_MESSAGE_LIMIT 0x3fffffff).
constexpr uint32_t kPgMaxMessageLength = 0x3fffffff;

class PgFrameCallbacks {
 public:
  virtual ~PgFrameCallbacks() = default;
  // A message header was read. `length` excludes the 4-byte length field itself.
  virtual void OnMessageStart(uint8_t type, uint32_t length) {}
  // Part of a message body (lent: copy if you keep it).
  virtual void OnMessageBody(uint8_t type, const uint8_t* data, size_t len) {}
  virtual void OnMessageEnd(uint8_t type) {}
};

enum class PgFrameStatus { Ok, Error };

struct PgFrameResult {
  PgFrameStatus status;
  size_t consumed;  // bytes consumed before an error (all of them when Ok)
  const char* error;  // static string, set on Error
};

class PgFrameParser {
 public:
  explicit PgFrameParser(uint32_t maxMessageLength = kPgMaxMessageLength) : max_(maxMessageLength) {}
  PgFrameResult Feed(const uint8_t* data, size_t len, PgFrameCallbacks* cb);
  bool AtBoundary() const { return headerHave_ == 0 && bodyLeft_ == 0 && !inBody_; }
  uint64_t messages() const { return messages_; }
  bool failed() const { return failed_; }
  // From a callback: Feed returns after the current message ends, with `consumed` up to its
  // last byte; the rest of the chunk is not parsed (a client's Terminate ends its stream).
  void StopAfterMessage() { stop_ = true; }
  // From a callback: where the current message's header began in the chunk being fed, or
  // kNotInThisChunk when it began in an earlier one.
  static constexpr size_t kNotInThisChunk = static_cast<size_t>(-1);
  size_t messageStart() const { return messageStart_; }

 private:
  uint32_t max_;
  uint8_t header_[5] = {0, 0, 0, 0, 0};
  uint8_t headerHave_ = 0;
  bool inBody_ = false;
  uint8_t type_ = 0;
  uint32_t bodyLeft_ = 0;
  uint64_t messages_ = 0;
  bool failed_ = false;
  bool stop_ = false;
  size_t messageStart_ = kNotInThisChunk;
};

}  // namespace vg

// One side of a forwarded session as the code that forwards it sees it: write, pause and
// resume reading, close, and the facts it decides by. Conn is the real one (a TCP or TLS
// connection on the thread's loop); the pump's fuzz target (native/fuzz/pump-inspector-fuzz.cc)
// drives the pump through its own. No libuv or OpenSSL here, so code written against a Leg
// builds without them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace vg {

// Why a connection (or a pumped session) ended. One list for both: the pump closes its
// connections with its own reasons, and JavaScript reads them as strings (CloseReasonName).
enum class CloseReason : uint8_t {
  None,  // not closed (yet)
  Closed,  // closed by its owner (close()/destroy())
  Eof,  // the peer closed (FIN or TLS close_notify)
  ReadError,
  WriteError,
  TlsError,
  TlsHandshake,
  AcceptFailed,
  ConnectFailed,
  PeerClosed,  // the other leg of a pumped session ended
  // Pumped sessions (PumpStats::reason and the pump's closes):
  ClientEof,
  UpstreamEof,
  ClientError,
  UpstreamError,
  ClientTerminate,
  ProtocolError,
  TokenExpired,
  UnreadableSetting,
  // Ended from the gateway's side by endPump():
  PolicyRevoked,
  Shutdown,
  RecordingFailed,
};

// The reason as JavaScript sees it ('eof', 'client-eof', 'policy-revoked', ...); "" for None.
const char* CloseReasonName(CloseReason r);
// The reasons endPump() accepts from JavaScript; false for any other name.
bool GatewayEndReasonFromName(const std::string& name, CloseReason* out);

// Plaintext written into one TLS record at most (the TLS maximum); the default per connection.
constexpr size_t kTlsRecordPlaintext = 16 * 1024;
// PostgreSQL's own record size: the server writes from its 8 KB send buffer, and libpq reads
// with at least 8 KB free, so a record never outgrows one read. Clients that wait on the socket
// with select() (psycopg over non-blocking libpq) do not see bytes a larger record left in
// OpenSSL's buffer and wait forever; PostgreSQL client legs write records no larger.
constexpr size_t kPgTlsRecordPlaintext = 8 * 1024;

// What a protocol keeps about a connection beyond one session using it (e.g. the statements a
// pooled PostgreSQL backend has prepared: pg/prepared-statements.h). Owned by the leg.
class LegState {
 public:
  virtual ~LegState() = default;
};

class Leg {
 public:
  virtual ~Leg() = default;
  LegState* state() const { return state_.get(); }
  void SetState(std::unique_ptr<LegState> s) { state_ = std::move(s); }

  // Writes plaintext; false (nothing written) when the leg is closing or cannot take bytes yet.
  virtual bool Write(const char* data, size_t len) = 0;
  virtual void PauseRead() = 0;
  virtual void ResumeRead() = 0;
  // Graceful (what is queued is still sent) and forced. The owner learns of the end later,
  // from the leg's close event, never from inside these calls.
  virtual void Close(CloseReason reason, const std::string& detail) = 0;
  virtual void Destroy(CloseReason reason, const std::string& detail) = 0;
  virtual bool closed() const = 0;
  virtual size_t queuedBytes() const = 0;
  virtual CloseReason closeReason() const = 0;
  virtual const std::string& closeDetail() const = 0;
  // The queue size at or below which the leg reports it drained.
  virtual void SetLowWater(size_t bytes) = 0;
  // Largest plaintext per TLS record (1 .. kTlsRecordPlaintext); no effect without TLS.
  virtual void SetMaxTlsRecord(size_t bytes) = 0;
  // Milliseconds of the loop's cached clock.
  virtual uint64_t Now() const = 0;

 private:
  std::unique_ptr<LegState> state_;
};

}  // namespace vg

// Joins two set-up connections and forwards bytes between them in C++: backpressure both
// ways (a side stops being read while the other has more than `highWater` bytes queued),
// PostgreSQL message framing tracked for boundaries and counters, nothing copied to JS.
#pragma once
#include <cstdint>
#include <string>

#include "conn.h"
#include "pg-frame-parser.h"

namespace vg {

struct PumpStats {
  uint64_t bytesFromClient = 0;
  uint64_t bytesFromUpstream = 0;
  uint64_t messagesFromClient = 0;
  uint64_t messagesFromUpstream = 0;
  uint64_t statements = 0;
  std::string reason;
  std::string detail;
};

class PumpObserver {
 public:
  virtual ~PumpObserver() = default;
  // Both connections are closed; the pump may be deleted after this returns.
  virtual void OnPumpEnd(const PumpStats& stats) = 0;
};

enum class PumpProtocol { Raw, Postgres };

class Pump {
 public:
  Pump(Conn* client, Conn* upstream, PumpProtocol protocol, size_t highWater, PumpObserver* observer);
  // Begin forwarding. Bytes the setup phase left unread are already in the sockets.
  void Start();
  // Routed here by the connections' owners.
  void OnPlaintext(Conn* from, const char* data, size_t len);
  void OnReadDone(Conn* from);
  void OnDrain(Conn* c);
  void OnClosed(Conn* c);
  bool ended() const { return ended_; }

 private:
  class Counter : public PgFrameCallbacks {
   public:
    explicit Counter(bool fromClient) : fromClient_(fromClient) {}
    void OnMessageStart(uint8_t type, uint32_t) override {
      if (fromClient_ && (type == 'Q' || type == 'P')) statements++;
    }
    uint64_t statements = 0;

   private:
    bool fromClient_;
  };

  Conn* client_;
  Conn* upstream_;
  PumpProtocol protocol_;
  size_t highWater_;
  PumpObserver* observer_;
  PgFrameParser clientParser_;
  PgFrameParser upstreamParser_;
  Counter clientCounter_{true};
  Counter upstreamCounter_{false};
  bool clientClosed_ = false;
  bool upstreamClosed_ = false;
  bool ended_ = false;
  PumpStats stats_;
};

}  // namespace vg

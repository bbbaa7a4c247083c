// Session bindings: a PumpBridge joins two ConnWraps into one Pump and reports the pump's
// events (end, statements, captures, pooled links wanted and released) to JavaScript.
#pragma once
#include <napi.h>

#include <memory>
#include <string>

#include "net/conn.h"
#include "pg/statement-recorder.h"
#include "session/pump.h"

namespace vg {

class ConnWrap;

// Ownership and re-entrancy. A PumpBridge owns itself and is deleted by its last Drop():
// each attached ConnWrap holds it (released in ConnWrap::OnClosed, or DetachPump when the
// upstream is kept), and so does every Entry, i.e. every call into the Pump on the stack (a
// read, a drain, a close, endPump/releaseStatement from JavaScript). So it is never deleted
// while a Pump method runs, even when JavaScript called from inside one (onStatement,
// onCapture, onEnd) ends the session, releases a statement or destroys a connection.
// JavaScript called from inside the pump runs in a callback scope opened by the outermost
// Entry (EnterJs): microtasks and nextTicks run when that Entry ends, after the chunk was
// processed, never in the middle of a parse.
class PumpBridge : public PumpObserver {
 public:
  PumpBridge(Napi::Env env, ConnWrap* client, ConnWrap* upstream, Conn* c, Conn* u, PumpProtocol protocol,
             size_t highWater, Napi::Function onEnd, Napi::Value onStatement);
  ~PumpBridge() override;
  void Hold() { holds_++; }
  void Drop() {
    if (--holds_ == 0) delete this;
  }
  class Entry {
   public:
    explicit Entry(PumpBridge* b);
    ~Entry();
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;

   private:
    PumpBridge* b_;
    Napi::HandleScope scope_;
  };
  void OnPumpEnd(const PumpStats& stats) override;
  Verdict OnStatement(uint8_t type, const std::string& text, StatementRefusal* refusal, uint64_t* holdId) override;
  void OnCapture(bool fromClient, uint8_t type, const std::string& body, uint32_t length) override;
  // Transaction pooling: JavaScript hears that the session wants a server link, and gets
  // released links back (their ConnWrap detached from the pump, paused, JavaScript's again).
  void OnUpstreamWanted() override;
  void OnUpstreamReleased(Leg* upstream) override;
  // attachUpstream(): makes `w` the session's server link; false (w untouched) when the pump
  // would not take one now.
  bool Attach(ConnWrap* w);
  Pump pump;
  Napi::FunctionReference onUpstreamWanted_;
  Napi::FunctionReference onUpstreamReleased_;
  Napi::FunctionReference onCapture_;
  // Set when the session's statements are recorded in C++ (then onCapture_ is empty).
  std::unique_ptr<StatementRecorder> recorder_;

 private:
  Napi::Env env_;
  Napi::FunctionReference onEnd_;
  Napi::FunctionReference onStatement_;
  Napi::ObjectReference clientRef_;
  Napi::ObjectReference upstreamRef_;
  ConnWrap* upstreamWrap_;  // null while a pooled session has no server link
  // Before any call into JavaScript from inside the pump (see above).
  void EnterJs();
  int holds_ = 0;
  int depth_ = 0;  // Entries on the stack
  napi_callback_scope callbackScope_ = nullptr;
};

}  // namespace vg

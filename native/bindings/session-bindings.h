// Session bindings: a PumpBridge joins two ConnWraps into one Pump and reports the pump's
// events (end, statements, captures) to JavaScript.
#pragma once
#include <napi.h>

#include <memory>
#include <string>

#include "net/conn.h"
#include "pg/statement-recorder.h"
#include "session/pump.h"

namespace vg {

class ConnWrap;

class PumpBridge : public PumpObserver {
 public:
  PumpBridge(Napi::Env env, ConnWrap* client, ConnWrap* upstream, Conn* c, Conn* u, PumpProtocol protocol,
             size_t highWater, Napi::Function onEnd, Napi::Value onStatement);
  void OnPumpEnd(const PumpStats& stats) override;
  Verdict OnStatement(uint8_t type, const std::string& text, StatementRefusal* refusal, uint64_t* holdId) override;
  void OnCapture(bool fromClient, uint8_t type, const std::string& body, uint32_t length) override;
  Pump pump;
  Napi::FunctionReference onCapture_;
  // Set when the session's statements are recorded in C++ (then onCapture_ is empty).
  std::unique_ptr<StatementRecorder> recorder_;

 private:
  Napi::Env env_;
  Napi::FunctionReference onEnd_;
  Napi::FunctionReference onStatement_;
  Napi::ObjectReference clientRef_;
  Napi::ObjectReference upstreamRef_;
  ConnWrap* upstreamWrap_;
};

}  // namespace vg

// See session-bindings.h.
#include "bindings/session-bindings.h"

#include "bindings/addon.h"
#include "bindings/js-boundary.h"
#include "bindings/net-bindings.h"

namespace vg {

PumpBridge::PumpBridge(Napi::Env env, ConnWrap* client, ConnWrap* upstream, Conn* c, Conn* u, PumpProtocol protocol,
                       size_t highWater, Napi::Function onEnd, Napi::Value onStatement)
    : pump(c, u, protocol, highWater, this, onStatement.IsFunction()), env_(env), upstreamWrap_(upstream) {
  onEnd_ = Napi::Persistent(onEnd);
  if (onStatement.IsFunction()) onStatement_ = Napi::Persistent(onStatement.As<Napi::Function>());
  clientRef_ = Napi::Persistent(client->Value());
  upstreamRef_ = Napi::Persistent(upstream->Value());
}

// onStatement(type, text) returns undefined/null (forward), a hold id (number), a refusal
// message (string: SQLSTATE 42501) or { sqlstate, message, position? }.
PumpObserver::Verdict PumpBridge::OnStatement(uint8_t type, const std::string& text, StatementRefusal* refusal, uint64_t* holdId) {
  if (onStatement_.IsEmpty()) return Verdict::Forward;
  Napi::HandleScope scope(env_);
  char t[2] = {static_cast<char>(type), 0};
  Napi::Value r = onStatement_.MakeCallback(env_.Global(), {Napi::String::New(env_, t), Napi::String::New(env_, text)});
  if (env_.IsExceptionPending()) {
    Napi::Error e = env_.GetAndClearPendingException();
    napi_fatal_exception(env_, e.Value());
    refusal->message = "statement could not be checked";
    return Verdict::Refuse;  // fail closed
  }
  if (r.IsEmpty() || r.IsNull() || r.IsUndefined()) return Verdict::Forward;
  if (r.IsNumber()) {
    *holdId = static_cast<uint64_t>(r.As<Napi::Number>().Int64Value());
    return Verdict::Hold;
  }
  if (r.IsString()) {
    refusal->message = r.As<Napi::String>().Utf8Value();
  } else if (r.IsObject()) {
    Napi::Object o = r.As<Napi::Object>();
    Napi::Value code = o.Get("sqlstate");
    Napi::Value message = o.Get("message");
    Napi::Value position = o.Get("position");
    if (code.IsString() && code.As<Napi::String>().Utf8Value().size() == 5) refusal->sqlstate = code.As<Napi::String>().Utf8Value();
    refusal->message = message.IsString() ? message.As<Napi::String>().Utf8Value() : "permission denied";
    if (position.IsNumber()) {
      double p = position.As<Napi::Number>().DoubleValue();
      if (p >= 1 && p <= 4294967295.0) refusal->position = static_cast<uint32_t>(p);
    }
  } else {
    refusal->message = "permission denied";
  }
  return Verdict::Refuse;
}

void PumpBridge::OnCapture(bool fromClient, uint8_t type, const std::string& body, uint32_t length) {
  if (recorder_) {
    recorder_->OnCapture(fromClient, type, body, length);
    return;
  }
  if (onCapture_.IsEmpty()) return;
  Napi::HandleScope scope(env_);
  char t[2] = {static_cast<char>(type), 0};
  CallJs(env_, onCapture_,
         {Napi::Boolean::New(env_, fromClient), Napi::String::New(env_, t), Napi::Buffer<char>::Copy(env_, body.data(), body.size()),
          Napi::Number::New(env_, length)});
}

void PumpBridge::OnPumpEnd(const PumpStats& s) {
  VgAddon* addon = env_.GetInstanceData<VgAddon>();
  addon->liveSessions--;
  addon->bytesPumped += s.bytesFromClient + s.bytesFromUpstream;
  if (s.upstreamKept) upstreamWrap_->DetachPump();
  // The last statement's event goes into the sink before JavaScript hears of the end (and
  // records the session's close after it).
  if (recorder_) recorder_->End();
  recorder_.reset();
  {
    Napi::HandleScope scope(env_);
    Napi::Object o = Napi::Object::New(env_);
    o.Set("bytesFromClient", static_cast<double>(s.bytesFromClient));
    o.Set("bytesFromUpstream", static_cast<double>(s.bytesFromUpstream));
    o.Set("messagesFromClient", static_cast<double>(s.messagesFromClient));
    o.Set("messagesFromUpstream", static_cast<double>(s.messagesFromUpstream));
    o.Set("statements", static_cast<double>(s.statements));
    o.Set("refusedStatements", static_cast<double>(s.refusedStatements));
    o.Set("upstreamKept", s.upstreamKept);
    o.Set("reason", s.reason);
    o.Set("detail", s.detail);
    CallJs(env_, onEnd_, {o});
  }
  delete this;
}

// pump(client, upstream, {protocol, highWaterBytes}, onEnd)
Napi::Value VgAddon::StartPump(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsObject() || !info[1].IsObject() || !info[2].IsObject() || !info[3].IsFunction()) {
    Napi::TypeError::New(env, "pump(client, upstream, opts, onEnd)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  ConnWrap* a = ConnWrap::Unwrap(info[0].As<Napi::Object>());
  ConnWrap* b = ConnWrap::Unwrap(info[1].As<Napi::Object>());
  if (!a || !b || a == b) return ThrowError(env, "pump needs two distinct connections", "ERR_INVALID_ARG_TYPE");
  if (a->pumped() || b->pumped()) return ThrowError(env, "connection already pumped", "ERR_VG_STATE");
  if (a->conn()->closed() || b->conn()->closed())
    return ThrowError(env, "cannot pump a closed connection", "ERR_VG_STATE");
  Napi::Object opts = info[2].As<Napi::Object>();
  Napi::Value proto = opts.Get("protocol");
  PumpProtocol protocol =
      proto.IsString() && proto.As<Napi::String>().Utf8Value() == "pg" ? PumpProtocol::Postgres : PumpProtocol::Raw;
  Napi::Value hw = opts.Get("highWaterBytes");
  size_t highWater = hw.IsNumber() ? static_cast<size_t>(hw.As<Napi::Number>().Int64Value()) : 256 * 1024;
  if (highWater < 16 * 1024) highWater = 16 * 1024;
  Napi::Value nativeRecord = opts.Get("nativeRecord");
  std::string recordSession, recordConnection;
  if (nativeRecord.IsObject()) {
    Napi::Object r = nativeRecord.As<Napi::Object>();
    recordSession = BufferOrString(r.Get("session"));
    recordConnection = BufferOrString(r.Get("connection"));
    if (recordConnection.empty() || recordConnection.size() > 0xffff)
      return ThrowError(env, "nativeRecord needs a connection name of 1 to 65535 bytes", "ERR_INVALID_ARG_VALUE");
  }
  auto* bridge = new PumpBridge(env, a, b, a->conn(), b->conn(), protocol, highWater, info[3].As<Napi::Function>(),
                                opts.Get("onStatement"));
  Napi::Value capture = opts.Get("capture");
  if (capture.IsObject() && nativeRecord.IsObject()) bridge->recorder_ = std::make_unique<StatementRecorder>(recordSink, recordSession, recordConnection);
  if (capture.IsObject() && (opts.Get("onCapture").IsFunction() || bridge->recorder_)) {
    Napi::Object c = capture.As<Napi::Object>();
    auto str = [&](const char* k) {
      Napi::Value v = c.Get(k);
      return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
    };
    auto num = [&](const char* k, double d) {
      Napi::Value v = c.Get(k);
      return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : d;
    };
    CaptureSpec fromClient{str("fromClient"), static_cast<uint32_t>(num("fromClientMaxBytes", num("maxBytes", 65536))), 0};
    CaptureSpec fromUpstream{str("fromUpstream"), static_cast<uint32_t>(num("maxBytes", 65536)),
                             static_cast<uint64_t>(num("maxRowBytes", 0))};
    bridge->pump.SetCapture(fromClient, fromUpstream);
    if (!bridge->recorder_) bridge->onCapture_ = Napi::Persistent(opts.Get("onCapture").As<Napi::Function>());
  }
  bridge->pump.SetReuseUpstream(opts.Get("reuseUpstream").ToBoolean().Value());
  Napi::Value expiresIn = opts.Get("expiresInMs");
  if (expiresIn.IsNumber()) {
    double ms = expiresIn.As<Napi::Number>().DoubleValue();
    Napi::Value msg = opts.Get("expiryMessage");
    bridge->pump.SetDeadline(uv_now(io.loop) + static_cast<uint64_t>(ms > 0 ? ms : 0),
                             msg.IsString() ? msg.As<Napi::String>().Utf8Value() : std::string());
  }
  a->AttachPump(bridge);
  b->AttachPump(bridge);
  liveSessions++;
  // Client bytes read during setup go through the pump like any others (inspection too).
  Napi::Value early = opts.Get("earlyClientBytes");
  if (early.IsBuffer()) {
    auto e = early.As<Napi::Buffer<char>>();
    if (e.Length() > 0) bridge->pump.FeedEarlyClientBytes(e.Data(), e.Length());
  }
  bridge->pump.Start();
  io.Flush();
  return env.Undefined();
}

// endPump(client, reason, finalBytes?): ends a pumped session from the gateway's side.
Napi::Value VgAddon::EndPump(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsString()) {
    Napi::TypeError::New(env, "endPump(connection, reason[, finalBytes])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  ConnWrap* w = ConnWrap::Unwrap(info[0].As<Napi::Object>());
  if (!w || !w->pump()) return Napi::Boolean::New(env, false);
  std::string bytes;
  if (info.Length() >= 3 && info[2].IsBuffer()) {
    auto b = info[2].As<Napi::Buffer<char>>();
    bytes.assign(b.Data(), b.Length());
  }
  w->pump()->pump.End(info[1].As<Napi::String>().Utf8Value(), bytes.data(), bytes.size());
  io.Flush();
  return Napi::Boolean::New(env, true);
}

// releaseStatement(client, holdId): forwards a statement held by onStatement.
Napi::Value VgAddon::ReleaseStatement(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "releaseStatement(connection, holdId)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  ConnWrap* w = ConnWrap::Unwrap(info[0].As<Napi::Object>());
  if (!w || !w->pump()) return Napi::Boolean::New(env, false);
  w->pump()->pump.Release(static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value()));
  io.Flush();
  return Napi::Boolean::New(env, true);
}

}  // namespace vg

// See session-bindings.h.
#include "bindings/session-bindings.h"

#include <cmath>

#include "bindings/addon.h"
#include "bindings/js-boundary.h"
#include "bindings/net-bindings.h"

namespace vg {

// endPump's finalBytes: an ErrorResponse, a few hundred bytes; the cap keeps it bounded.
constexpr size_t kMaxEndPumpFinalBytes = 64 * 1024;

PumpBridge::PumpBridge(Napi::Env env, ConnWrap* client, ConnWrap* upstream, Conn* c, Conn* u, PumpProtocol protocol,
                       size_t highWater, Napi::Function onEnd, Napi::Value onStatement)
    : pump(c, u, protocol, highWater, this, onStatement.IsFunction()), env_(env), upstreamWrap_(upstream) {
  onEnd_ = Napi::Persistent(onEnd);
  if (onStatement.IsFunction()) onStatement_ = Napi::Persistent(onStatement.As<Napi::Function>());
  clientRef_ = Napi::Persistent(client->Value());
  upstreamRef_ = Napi::Persistent(upstream->Value());
}

PumpBridge::~PumpBridge() = default;

PumpBridge::Entry::Entry(PumpBridge* b) : b_(b), scope_(b->env_) {
  b_->Hold();
  b_->depth_++;
}

PumpBridge::Entry::~Entry() {
  PumpBridge* b = b_;
  if (--b->depth_ == 0 && b->callbackScope_ != nullptr) {
    // Microtasks and nextTicks queued by the JavaScript the pump called run here.
    napi_callback_scope s = b->callbackScope_;
    b->callbackScope_ = nullptr;
    napi_close_callback_scope(b->env_, s);
  }
  b->Drop();  // may delete b; nothing of it is touched after this
}

void PumpBridge::EnterJs() {
  if (callbackScope_ != nullptr || depth_ == 0) return;
  VgAddon* addon = env_.GetInstanceData<VgAddon>();
  napi_open_callback_scope(env_, addon->asyncResource.Value(), addon->pumpAsyncContext, &callbackScope_);
}

// onStatement(type, text) returns undefined/null (forward), a hold id (number), a refusal
// message (string: SQLSTATE 42501) or { sqlstate, message, position? }.
PumpObserver::Verdict PumpBridge::OnStatement(uint8_t type, const std::string& text, StatementRefusal* refusal, uint64_t* holdId) {
  if (onStatement_.IsEmpty()) return Verdict::Forward;
  EnterJs();
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
    double id = r.As<Napi::Number>().DoubleValue();
    if (!(id >= 0 && id <= kJsMaxSafeInteger && std::floor(id) == id)) {
      refusal->message = "statement could not be checked (hold id is not a non-negative safe integer)";
      return Verdict::Refuse;  // fail closed
    }
    *holdId = static_cast<uint64_t>(id);
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
      if (p >= 1 && p <= 4294967295.0 && std::floor(p) == p) refusal->position = static_cast<uint32_t>(p);
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
  EnterJs();
  Napi::HandleScope scope(env_);
  char t[2] = {static_cast<char>(type), 0};
  CallJs(env_, onCapture_,
         {Napi::Boolean::New(env_, fromClient), Napi::String::New(env_, t), Napi::Buffer<char>::Copy(env_, body.data(), body.size()),
          Napi::Number::New(env_, length)});
}

void PumpBridge::OnUpstreamWanted() {
  EnterJs();
  Napi::HandleScope scope(env_);
  CallJs(env_, onUpstreamWanted_, {});
}

void PumpBridge::OnUpstreamReleased(Leg* upstream) {
  ConnWrap* w = upstreamWrap_;
  if (w == nullptr || w->conn() != upstream) return;
  Napi::HandleScope scope(env_);
  Napi::Object link = upstreamRef_.Value();
  upstreamWrap_ = nullptr;
  upstreamRef_.Reset();
  w->DetachPump();  // never the last hold: called from inside an Entry
  EnterJs();
  CallJs(env_, onUpstreamReleased_, {link});
}

bool PumpBridge::Attach(ConnWrap* w) {
  if (upstreamWrap_ != nullptr || !pump.CanAttachUpstream() || w->conn()->closed()) return false;
  upstreamWrap_ = w;
  upstreamRef_ = Napi::Persistent(w->Value());
  w->AttachPump(this);
  if (pump.AttachUpstream(w->conn())) return true;
  upstreamWrap_ = nullptr;  // not reached: the checks above are the pump's
  upstreamRef_.Reset();
  w->DetachPump();
  return false;
}

void PumpBridge::OnPumpEnd(const PumpStats& s) {
  VgAddon* addon = env_.GetInstanceData<VgAddon>();
  addon->liveSessions--;
  addon->bytesPumped += s.bytesFromClient + s.bytesFromUpstream;
  if (s.upstreamKept && upstreamWrap_ != nullptr) upstreamWrap_->DetachPump();
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
    // The kept link (a pooled session may end on another than it started with).
    if (s.upstreamKept && !upstreamRef_.IsEmpty()) o.Set("upstream", upstreamRef_.Value());
    o.Set("upstreamAttaches", static_cast<double>(s.upstreamAttaches));
    o.Set("upstreamReleases", static_cast<double>(s.upstreamReleases));
    o.Set("pinReason", s.pinReason);
    o.Set("serverPrepares", static_cast<double>(s.serverPrepares));
    o.Set("preparesReused", static_cast<double>(s.preparesReused));
    o.Set("upstreamLost", static_cast<double>(s.upstreamLost));
    o.Set("pinRefusals", static_cast<double>(s.pinRefusals));
    o.Set("reason", CloseReasonName(s.reason));
    o.Set("detail", s.detail);
    EnterJs();
    CallJs(env_, onEnd_, {o});
  }
  // Not deleted here: the Entry that delivered the close and the connections' holds keep
  // this alive until the stack unwinds (see session-bindings.h).
}

// pump(client, upstream, opts, onEnd): every option is checked before anything is attached.
Napi::Value VgAddon::StartPump(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[2].IsObject() || !info[3].IsFunction())
    return ThrowTypeError(env, "pump(client: Connection, upstream: Connection, opts: object, onEnd: function)");
  ConnWrap* a = UnwrapTagged<ConnWrap>(env, info[0], ConnWrap::kTag, "client to be a Connection");
  if (!a) return env.Undefined();
  ConnWrap* b = UnwrapTagged<ConnWrap>(env, info[1], ConnWrap::kTag, "upstream to be a Connection");
  if (!b) return env.Undefined();
  if (a == b) return ThrowError(env, "pump needs two distinct connections", kErrInvalidArgValue);
  if (a->pumped() || b->pumped()) return ThrowError(env, "connection already pumped", kErrState);
  if (a->conn()->closed() || b->conn()->closed()) return ThrowError(env, "cannot pump a closed connection", kErrState);
  if (a->conn()->tlsPending() || b->conn()->tlsPending())
    return ThrowError(env, "cannot pump a connection whose TLS handshake has not completed", kErrState);
  Napi::Object opts = info[2].As<Napi::Object>();
  Napi::Value proto = opts.Get("protocol");
  std::string protoName = proto.IsString() ? proto.As<Napi::String>().Utf8Value() : std::string();
  if (protoName != "pg" && protoName != "raw") return ThrowError(env, "pump: protocol must be 'pg' or 'raw'", kErrInvalidArgValue);
  PumpProtocol protocol = protoName == "pg" ? PumpProtocol::Postgres : PumpProtocol::Raw;
  double highWater = 0;
  if (!ReadIntegerOption(env, opts, "highWaterBytes", kMinPumpHighWaterBytes, kMaxPumpHighWaterBytes, kDefaultPumpHighWaterBytes, &highWater))
    return env.Undefined();
  Napi::Value onStatement = opts.Get("onStatement");
  if (!onStatement.IsUndefined() && !onStatement.IsNull() && !onStatement.IsFunction())
    return ThrowTypeError(env, "pump: onStatement must be a function");
  Napi::Value nativeRecord = opts.Get("nativeRecord");
  std::string recordSession, recordConnection;
  if (nativeRecord.IsObject()) {
    Napi::Object r = nativeRecord.As<Napi::Object>();
    recordSession = BufferOrString(r.Get("session"));
    recordConnection = BufferOrString(r.Get("connection"));
    if (recordConnection.empty() || recordConnection.size() > 0xffff)
      return ThrowError(env, "nativeRecord needs a connection name of 1 to 65535 bytes", kErrInvalidArgValue);
  }
  Napi::Value capture = opts.Get("capture");
  Napi::Value onCapture = opts.Get("onCapture");
  if (!onCapture.IsUndefined() && !onCapture.IsNull() && !onCapture.IsFunction()) return ThrowTypeError(env, "pump: onCapture must be a function");
  const bool capturing = capture.IsObject() && (onCapture.IsFunction() || nativeRecord.IsObject());
  CaptureSpec fromClient, fromUpstream;
  if (capturing) {
    Napi::Object c = capture.As<Napi::Object>();
    auto types = [&](const char* k, std::string* out) {
      Napi::Value v = c.Get(k);
      if (v.IsUndefined()) return true;
      if (!v.IsString()) {
        ThrowTypeError(env, std::string("pump: capture.") + k + " must be a string of message types");
        return false;
      }
      *out = v.As<Napi::String>().Utf8Value();
      return true;
    };
    double maxBytes = 0, clientMaxBytes = 0, maxRowBytes = 0;
    if (!types("fromClient", &fromClient.types) || !types("fromUpstream", &fromUpstream.types) ||
        !ReadIntegerOption(env, c, "maxBytes", 0, kMaxCaptureBytes, 65536, &maxBytes) ||
        !ReadIntegerOption(env, c, "fromClientMaxBytes", 0, kMaxCaptureBytes, maxBytes, &clientMaxBytes) ||
        !ReadIntegerOption(env, c, "maxRowBytes", 0, kJsMaxSafeInteger, 0, &maxRowBytes))
      return env.Undefined();
    fromClient.maxBytes = static_cast<uint32_t>(clientMaxBytes);
    fromUpstream.maxBytes = static_cast<uint32_t>(maxBytes);
    fromUpstream.maxRowBytes = static_cast<uint64_t>(maxRowBytes);
  }
  Napi::Value expiresIn = opts.Get("expiresInMs");
  double expiresInMs = -1;
  if (!expiresIn.IsUndefined() && !ReadFinite(env, expiresIn, "pump: expiresInMs", 0, kJsMaxSafeInteger, &expiresInMs)) return env.Undefined();
  Napi::Value expiryMessage = opts.Get("expiryMessage");
  if (!expiryMessage.IsUndefined() && !expiryMessage.IsString()) return ThrowTypeError(env, "pump: expiryMessage must be a string");
  const bool pooling = opts.Get("transactionPooling").ToBoolean().Value();
  Napi::Value onWanted = opts.Get("onUpstreamWanted");
  Napi::Value onReleased = opts.Get("onUpstreamReleased");
  if (pooling && (protocol != PumpProtocol::Postgres || !onWanted.IsFunction() || !onReleased.IsFunction()))
    return ThrowTypeError(env, "pump: transactionPooling needs protocol 'pg' and the functions onUpstreamWanted and onUpstreamReleased");
  Napi::Value prepared = opts.Get("preparedStatements");
  double preparedPerLink = 0;
  if (!prepared.IsUndefined() && !ReadFinite(env, prepared, "pump: preparedStatements", 0, kMaxPreparedStatementsPerLink, &preparedPerLink))
    return env.Undefined();
  Napi::Value early = opts.Get("earlyClientBytes");
  if (!early.IsUndefined() && !early.IsBuffer()) return ThrowTypeError(env, "pump: earlyClientBytes must be a Buffer");

  auto* bridge = new PumpBridge(env, a, b, a->conn(), b->conn(), protocol, static_cast<size_t>(highWater), info[3].As<Napi::Function>(),
                                onStatement);
  if (capturing) {
    if (nativeRecord.IsObject()) bridge->recorder_ = std::make_unique<StatementRecorder>(recordSink, recordSession, recordConnection);
    bridge->pump.SetCapture(fromClient, fromUpstream);
    if (!bridge->recorder_) bridge->onCapture_ = Napi::Persistent(onCapture.As<Napi::Function>());
  }
  bridge->pump.SetReuseUpstream(opts.Get("reuseUpstream").ToBoolean().Value());
  if (pooling) {
    bridge->pump.SetTransactionPooling(true);
    bridge->pump.SetPreparedStatements(static_cast<size_t>(preparedPerLink));
    bridge->pump.SetRefusePins(opts.Get("refusePins").ToBoolean().Value());
    bridge->onUpstreamWanted_ = Napi::Persistent(onWanted.As<Napi::Function>());
    bridge->onUpstreamReleased_ = Napi::Persistent(onReleased.As<Napi::Function>());
  }
  if (expiresInMs >= 0) {
    bridge->pump.SetDeadline(uv_now(io.loop) + static_cast<uint64_t>(expiresInMs),
                             expiryMessage.IsString() ? expiryMessage.As<Napi::String>().Utf8Value() : std::string());
  }
  a->AttachPump(bridge);  // each holds the bridge until its close (or DetachPump)
  b->AttachPump(bridge);
  liveSessions++;
  PumpBridge::Entry entry(bridge);
  // Client bytes read during setup go through the pump like any others (inspection too).
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
  ConnWrap* w = UnwrapTagged<ConnWrap>(env, info[0], ConnWrap::kTag, "a Connection");
  if (!w) return env.Undefined();
  if (!info[1].IsString()) return ThrowTypeError(env, "endPump: reason must be a string");
  CloseReason reason;
  if (!GatewayEndReasonFromName(info[1].As<Napi::String>().Utf8Value(), &reason))
    return ThrowError(env, "endPump: reason must be 'policy-revoked', 'shutdown', 'recording-failed' or 'closed'", kErrInvalidArgValue);
  if (!info[2].IsUndefined() && !info[2].IsBuffer()) return ThrowTypeError(env, "endPump: finalBytes must be a Buffer");
  if (info[2].IsBuffer() && info[2].As<Napi::Buffer<char>>().Length() > kMaxEndPumpFinalBytes)
    return ThrowRangeError(env, "endPump: finalBytes must be at most " + std::to_string(kMaxEndPumpFinalBytes) + " bytes");
  if (!w->pump()) return Napi::Boolean::New(env, false);
  std::string bytes;
  if (info[2].IsBuffer()) {
    auto b = info[2].As<Napi::Buffer<char>>();
    bytes.assign(b.Data(), b.Length());
  }
  PumpBridge::Entry entry(w->pump());
  w->pump()->pump.End(reason, bytes.data(), bytes.size());
  io.Flush();
  return Napi::Boolean::New(env, true);
}

// releaseStatement(client, holdId): forwards a statement held by onStatement.
Napi::Value VgAddon::ReleaseStatement(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ConnWrap* w = UnwrapTagged<ConnWrap>(env, info[0], ConnWrap::kTag, "a Connection");
  if (!w) return env.Undefined();
  double holdId = 0;
  if (!ReadInteger(env, info[1], "releaseStatement: holdId", 0, kJsMaxSafeInteger, &holdId)) return env.Undefined();
  if (!w->pump()) return Napi::Boolean::New(env, false);
  PumpBridge::Entry entry(w->pump());
  w->pump()->pump.Release(static_cast<uint64_t>(holdId));
  io.Flush();
  return Napi::Boolean::New(env, true);
}

}  // namespace vg

namespace vg {

// attachUpstream(client, upstream): gives a pooled session (pump transactionPooling) the
// server link it asked for (onUpstreamWanted). False, the link untouched, when the session
// does not take one now (it ended, has one, or its client left with nothing waiting).
Napi::Value VgAddon::AttachUpstream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ConnWrap* c = UnwrapTagged<ConnWrap>(env, info[0], ConnWrap::kTag, "client to be a Connection");
  if (!c) return env.Undefined();
  ConnWrap* u = UnwrapTagged<ConnWrap>(env, info[1], ConnWrap::kTag, "upstream to be a Connection");
  if (!u) return env.Undefined();
  if (c == u) return ThrowError(env, "attachUpstream needs two distinct connections", kErrInvalidArgValue);
  if (u->pumped()) return ThrowError(env, "upstream connection already pumped", kErrState);
  if (u->conn()->tlsPending()) return ThrowError(env, "cannot attach a connection whose TLS handshake has not completed", kErrState);
  PumpBridge* bridge = c->pump();
  if (bridge == nullptr || !bridge->pump.transactionPooling()) return Napi::Boolean::New(env, false);
  PumpBridge::Entry entry(bridge);
  bool attached = bridge->Attach(u);
  io.Flush();
  return Napi::Boolean::New(env, attached);
}

}  // namespace vg

namespace vg {

// holdUpstream(client, on): a transaction-pooling session keeps its current server link while
// on (a cancel is on its way to it); off releases it if the session is between transactions.
Napi::Value VgAddon::HoldUpstream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ConnWrap* c = UnwrapTagged<ConnWrap>(env, info[0], ConnWrap::kTag, "client to be a Connection");
  if (!c) return env.Undefined();
  if (!info[1].IsBoolean()) return ThrowTypeError(env, "holdUpstream: on must be a boolean");
  PumpBridge* bridge = c->pump();
  if (bridge == nullptr || !bridge->pump.transactionPooling()) return Napi::Boolean::New(env, false);
  PumpBridge::Entry entry(bridge);
  bridge->pump.HoldUpstream(info[1].As<Napi::Boolean>().Value());
  io.Flush();
  return Napi::Boolean::New(env, true);
}

}  // namespace vg

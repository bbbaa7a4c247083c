// The N-API surface of the vecgate addon: the only file that includes napi.h. Per-thread
// state lives in VgAddon (Napi::Addon), so every worker thread loads its own instance.
// JavaScript sees TLS contexts, listeners, connections and pumps; see src/native.ts.
#include <napi.h>
#include <uv.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "conn.h"
#include "json-number-list.h"
#include "http-response-head.h"
#include "pump.h"
#include "record-frame.h"
#include "record-sink.h"
#include "statement-recorder.h"
#include "tls-context.h"

namespace vg {
namespace {

constexpr int kDefaultBacklog = 511;

// Calls a JS function from a libuv callback; an exception becomes an uncaught exception of
// this thread (as for any event-loop callback) instead of being lost.
void CallJs(Napi::Env env, Napi::FunctionReference& fn, const std::vector<napi_value>& args) {
  if (fn.IsEmpty()) return;
  Napi::HandleScope scope(env);
  fn.MakeCallback(env.Global(), args);
  if (env.IsExceptionPending()) {
    Napi::Error e = env.GetAndClearPendingException();
    napi_fatal_exception(env, e.Value());
  }
}

Napi::Value ThrowError(Napi::Env env, const std::string& message, const char* code) {
  Napi::Error e = Napi::Error::New(env, message);
  if (code) e.Set("code", Napi::String::New(env, code));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

std::string BufferOrString(const Napi::Value& v) {
  if (v.IsBuffer()) {
    auto b = v.As<Napi::Buffer<char>>();
    return std::string(b.Data(), b.Length());
  }
  if (v.IsString()) return v.As<Napi::String>().Utf8Value();
  return std::string();
}

TlsProfile ProfileOf(const Napi::Object& o) {
  Napi::Value p = o.Get("profile");
  return p.IsString() && p.As<Napi::String>().Utf8Value() == "intermediate" ? TlsProfile::Intermediate
                                                                            : TlsProfile::Modern;
}

std::vector<std::string> StringArray(const Napi::Value& v) {
  std::vector<std::string> out;
  if (!v.IsArray()) return out;
  auto a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (e.IsString()) out.push_back(e.As<Napi::String>().Utf8Value());
  }
  return out;
}

}  // namespace

class VgAddon;

// ---- TLS context ---------------------------------------------------------------------------

class TlsContextWrap : public Napi::ObjectWrap<TlsContextWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TlsContext", {InstanceAccessor<&TlsContextWrap::Kind>("kind")});
  }
  explicit TlsContextWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TlsContextWrap>(info) {
    if (info.Length() < 1 || !info[0].IsExternal()) {
      Napi::TypeError::New(info.Env(), "TlsContext is created by createServerContext/createClientContext")
          .ThrowAsJavaScriptException();
      return;
    }
    ctx_ = info[0].As<Napi::External<SSL_CTX>>().Data();
    server_ = info[1].As<Napi::Boolean>().Value();
  }
  ~TlsContextWrap() override {
    if (ctx_) SSL_CTX_free(ctx_);
  }
  Napi::Value Kind(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), server_ ? "server" : "client");
  }
  SSL_CTX* ctx() const { return ctx_; }
  bool server() const { return server_; }

 private:
  SSL_CTX* ctx_ = nullptr;
  bool server_ = false;
};

// ---- Connection ----------------------------------------------------------------------------

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

// The JavaScript side of recording redaction (RecordRenderer): `render(kind, bytes)` returns
// the msgpack encoding of the redacted string (kind 0) or rendered parameter (kind 1).
class JsRecordRenderer : public RecordRenderer {
 public:
  void Set(Napi::Env env, Napi::Function fn) {
    env_ = env;
    fn_ = Napi::Persistent(fn);
  }
  bool Render(RenderKind kind, const char* data, size_t len, std::string* out) override {
    if (fn_.IsEmpty()) return false;
    Napi::Env env = env_;
    Napi::HandleScope scope(env);
    Napi::Value r = fn_.Call({Napi::Number::New(env, static_cast<int>(kind)), Napi::Buffer<char>::Copy(env, data, len)});
    if (env.IsExceptionPending()) {
      env.GetAndClearPendingException();
      return false;
    }
    if (!r.IsTypedArray()) return false;
    Napi::Uint8Array a = r.As<Napi::Uint8Array>();
    if (a.ElementLength() == 0) return false;
    out->append(reinterpret_cast<const char*>(a.Data()), a.ElementLength());
    return true;
  }

 private:
  Napi::Env env_{nullptr};
  Napi::FunctionReference fn_;
};

class VgAddon : public Napi::Addon<VgAddon> {
 public:
  VgAddon(Napi::Env env, Napi::Object exports);
  // Statement events recorded in C++ (sessions with `nativeRecord`), taken by takeRecords().
  std::shared_ptr<RecordSink> recordSink = std::make_shared<RecordSink>();
  ~VgAddon() { recordSink->SetRenderer(nullptr); }
  JsRecordRenderer recordRenderer;
  std::shared_ptr<ThreadIo> ioShared;
  ThreadIo& io;
  Napi::FunctionReference connCtor;
  Napi::FunctionReference tlsCtor;
  Napi::FunctionReference listenerCtor;
  uint64_t liveSessions = 0;
  uint64_t bytesPumped = 0;
  // Reused by readResponseHead (its field list keeps its capacity).
  ResponseHeadFields responseHead;
  // The Buffer over this thread's plaintext buffer that lent reads are handed in (made once;
  // it keeps the ThreadIo, and so the memory, alive as long as JavaScript holds it).
  Napi::Buffer<char> LentView(Napi::Env env) {
    if (lentView_.IsEmpty()) {
      auto* keep = new std::shared_ptr<ThreadIo>(ioShared);
      auto view = Napi::Buffer<char>::New(env, io.plainBuf.data(), io.plainBuf.size(), [](Napi::Env, char*, std::shared_ptr<ThreadIo>* k) { delete k; }, keep);
      lentView_ = Napi::Persistent(view);
    }
    return lentView_.Value();
  }
  Napi::Reference<Napi::Buffer<char>> lentView_;

 private:
  Napi::Value CreateServerContext(const Napi::CallbackInfo& info);
  Napi::Value CreateClientContext(const Napi::CallbackInfo& info);
  Napi::Value Listen(const Napi::CallbackInfo& info);
  Napi::Value Connect(const Napi::CallbackInfo& info);
  Napi::Value StartPump(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  // frameEvents(blob, offsets, firstSeq, prevHash) -> { frames: Buffer, hash: Buffer } (record-frame.h)
  Napi::Value FrameEvents(const Napi::CallbackInfo& info);
  Napi::Value FrameEventsInto(const Napi::CallbackInfo& info);
  // skipJsonNumberList(bytes, i) -> index (json-number-list.h)
  Napi::Value SkipJsonNumberListJs(const Napi::CallbackInfo& info);
  // readResponseHead(bytes, maxHeadBytes) -> [used, minor, status, reason, contentLength, flags, ...fields] | null (http-response-head.h)
  Napi::Value ReadResponseHeadJs(const Napi::CallbackInfo& info);
  Napi::Value SetRecordRenderer(const Napi::CallbackInfo& info);
  Napi::Value TakeRecords(const Napi::CallbackInfo& info);
  Napi::Value RecordCapturesForTest(const Napi::CallbackInfo& info);
  Napi::Value EndPump(const Napi::CallbackInfo& info);
  Napi::Value ReleaseStatement(const Napi::CallbackInfo& info);
};

static uv_loop_t* LoopOf(Napi::Env env) {
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  return loop;
}

class ConnWrap : public Napi::ObjectWrap<ConnWrap>, public ConnEvents {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Connection",
                       {
                           InstanceMethod<&ConnWrap::SetCallbacks>("setCallbacks"),
                           InstanceMethod<&ConnWrap::SetLentCallbacks>("setLentCallbacks"),
                           InstanceMethod<&ConnWrap::JsWrite>("write"),
                           InstanceMethod<&ConnWrap::JsStartTls>("startTls"),
                           InstanceMethod<&ConnWrap::JsPause>("pause"),
                           InstanceMethod<&ConnWrap::JsResume>("resume"),
                           InstanceMethod<&ConnWrap::JsClose>("close"),
                           InstanceMethod<&ConnWrap::JsDestroy>("destroy"),
                           InstanceAccessor<&ConnWrap::RemoteAddress>("remoteAddress"),
                           InstanceAccessor<&ConnWrap::RemotePort>("remotePort"),
                           InstanceAccessor<&ConnWrap::Closed>("closed"),
                           InstanceAccessor<&ConnWrap::WriteQueueSize>("writeQueueSize"),
                       });
  }

  explicit ConnWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ConnWrap>(info), env_(info.Env()) {
    if (info.Length() < 1 || !info[0].IsExternal()) {
      Napi::TypeError::New(info.Env(), "Connection objects come from listen() and connect()")
          .ThrowAsJavaScriptException();
      return;
    }
    addon_ = info.Env().GetInstanceData<VgAddon>();
    conn_ = new Conn(addon_->ioShared, this);
    Ref();  // alive while the socket is open: callbacks must reach this object
  }

  ~ConnWrap() override { delete conn_; }

  Conn* conn() const { return conn_; }
  PumpBridge* pump() const { return pump_; }
  // From now on the pump owns this connection's bytes and its close: the setup phase's
  // callbacks (and everything their closures hold: parsers, SCRAM state, buffers) are let go.
  void AttachPump(PumpBridge* p) {
    pump_ = p;
    onData_.Reset();
    onClose_.Reset();
    onDrain_.Reset();
  }
  // The pump ended but kept this (upstream) connection open: JavaScript owns it again.
  void DetachPump() {
    pump_ = nullptr;
    pumpEnded_ = false;
  }
  bool pumped() const { return pump_ != nullptr || pumpEnded_; }

  // ConnEvents
  void OnPlaintext(Conn* c, const char* data, size_t len) override {
    if (pump_) {
      pump_->pump.OnPlaintext(c, data, len);
      return;
    }
    Napi::HandleScope scope(env_);
    if (lend_) {
      // Lent: the bytes are put at the start of the thread's plaintext buffer (TLS reads are
      // already there) and JavaScript gets that buffer and a length, valid during the call.
      std::vector<char>& plain = addon_->io.plainBuf;
      if (len <= plain.size()) {
        if (data != plain.data()) std::memmove(plain.data(), data, len);
        CallJs(env_, onData_, {addon_->LentView(env_), Napi::Number::New(env_, static_cast<double>(len))});
        return;
      }
      CallJs(env_, onData_, {Napi::Buffer<char>::Copy(env_, data, len), Napi::Number::New(env_, static_cast<double>(len))});
      return;
    }
    CallJs(env_, onData_, {Napi::Buffer<char>::Copy(env_, data, len)});
  }
  void OnReadDone(Conn* c) override {
    if (pump_) pump_->pump.OnReadDone(c);
  }
  void OnDrain(Conn* c) override {
    if (pump_) {
      pump_->pump.OnDrain(c);
      return;
    }
    if (!onDrain_.IsEmpty()) {
      Napi::HandleScope scope(env_);
      CallJs(env_, onDrain_, {});
    }
  }
  void OnHandshake(Conn* c, const std::string* error) override {
    Napi::HandleScope scope(env_);
    Napi::FunctionReference cb = std::move(onHandshake_);
    if (cb.IsEmpty()) return;
    if (error) {
      Napi::Error e = Napi::Error::New(env_, *error);
      e.Set("code", Napi::String::New(env_, "ERR_VG_TLS_HANDSHAKE"));
      CallJs(env_, cb, {e.Value(), env_.Null()});
      return;
    }
    Napi::Object info = Napi::Object::New(env_);
    info.Set("version", c->TlsVersion());
    info.Set("cipher", c->TlsCipher());
    std::string alpn = c->TlsAlpn();
    info.Set("alpn", alpn.empty() ? env_.Null() : Napi::String::New(env_, alpn));
    std::string sni = c->TlsServerName();
    info.Set("servername", sni.empty() ? env_.Null() : Napi::String::New(env_, sni));
    auto ep = c->ServerEndPoint();
    info.Set("serverEndPoint", ep.empty() ? env_.Null()
                                          : Napi::Buffer<char>::Copy(env_, reinterpret_cast<char*>(ep.data()), ep.size()));
    CallJs(env_, cb, {env_.Null(), info});
  }
  void OnConnect(Conn* c, int status) override {
    Napi::HandleScope scope(env_);
    Napi::FunctionReference cb = std::move(onConnect_);
    if (cb.IsEmpty()) return;
    if (status != 0) {
      Napi::Error e = Napi::Error::New(env_, std::string("connect failed: ") + uv_strerror(status));
      e.Set("code", Napi::String::New(env_, uv_err_name(status)));
      CallJs(env_, cb, {e.Value(), env_.Null()});
    } else {
      CallJs(env_, cb, {env_.Null(), Value()});
    }
  }
  void OnClosed(Conn* c) override {
    Napi::HandleScope scope(env_);
    PumpBridge* p = pump_;
    pump_ = nullptr;
    if (p) {
      pumpEnded_ = true;
      p->pump.OnClosed(c);  // may delete p
    } else if (!pumpEnded_) {
      Napi::HandleScope scope(env_);
      CallJs(env_, onClose_, {Napi::String::New(env_, c->closeReason()), Napi::String::New(env_, c->closeDetail())});
    }
    onData_.Reset();
    onClose_.Reset();
    onDrain_.Reset();
    onConnect_.Reset();
    onHandshake_.Reset();
    Unref();
  }

  Napi::FunctionReference onConnect_;

 private:
  Napi::Value SetCallbacks(const Napi::CallbackInfo& info) {
    lend_ = false;
    return SetCallbackFunctions(info);
  }
  Napi::Value SetLentCallbacks(const Napi::CallbackInfo& info) {
    lend_ = true;
    return SetCallbackFunctions(info);
  }
  Napi::Value SetCallbackFunctions(const Napi::CallbackInfo& info) {
    if (info.Length() >= 1 && info[0].IsFunction()) onData_ = Napi::Persistent(info[0].As<Napi::Function>());
    if (info.Length() >= 2 && info[1].IsFunction()) onClose_ = Napi::Persistent(info[1].As<Napi::Function>());
    if (info.Length() >= 3 && info[2].IsFunction()) onDrain_ = Napi::Persistent(info[2].As<Napi::Function>());
    return info.Env().Undefined();
  }
  Napi::Value JsWrite(const Napi::CallbackInfo& info) {
    if (pumped()) return ThrowError(info.Env(), "connection is pumped; JavaScript may not write to it", "ERR_VG_STATE");
    // write(buffer) or write([buffer, ...]): the parts go out as one stream with one flush
    // (an HTTP head and its body in one syscall, without joining them in JavaScript first).
    if (info.Length() >= 1 && info[0].IsArray()) {
      Napi::Array parts = info[0].As<Napi::Array>();
      const uint32_t n = parts.Length();
      for (uint32_t i = 0; i < n; i++) {
        if (!parts.Get(i).IsBuffer()) {
          Napi::TypeError::New(info.Env(), "write([buffer, ...]): every part must be a Buffer").ThrowAsJavaScriptException();
          return info.Env().Undefined();
        }
      }
      for (uint32_t i = 0; i < n; i++) {
        auto b = parts.Get(i).As<Napi::Buffer<char>>();
        conn_->Write(b.Data(), b.Length());
      }
      addon_->io.Flush();
      return info.Env().Undefined();
    }
    if (info.Length() < 1 || !info[0].IsBuffer()) {
      Napi::TypeError::New(info.Env(), "write(buffer | buffer[])").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    auto b = info[0].As<Napi::Buffer<char>>();
    conn_->Write(b.Data(), b.Length());
    addon_->io.Flush();
    return info.Env().Undefined();
  }
  // startTls(ctx, servername|null, alpn[]|null, cb, initial?: Buffer)
  Napi::Value JsStartTls(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[0].IsObject() || !info[3].IsFunction()) {
      Napi::TypeError::New(env, "startTls(ctx, servername, alpn, cb[, initial])").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    TlsContextWrap* ctx = TlsContextWrap::Unwrap(info[0].As<Napi::Object>());
    if (!ctx || !ctx->ctx()) return ThrowError(env, "not a TLS context", "ERR_INVALID_ARG_TYPE");
    std::string servername = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
    std::vector<std::string> alpn = StringArray(info[2]);
    onHandshake_ = Napi::Persistent(info[3].As<Napi::Function>());
    const char* initial = nullptr;
    size_t initialLen = 0;
    std::string initialCopy;
    if (info.Length() >= 5 && info[4].IsBuffer()) {
      auto b = info[4].As<Napi::Buffer<char>>();
      initialCopy.assign(b.Data(), b.Length());
      initial = initialCopy.data();
      initialLen = initialCopy.size();
    }
    std::string error;
    if (!conn_->StartTls(ctx->ctx(), ctx->server(), servername, alpn, initial, initialLen, &error)) {
      onHandshake_.Reset();
      return ThrowError(env, error, "ERR_VG_STATE");
    }
    return env.Undefined();
  }
  Napi::Value JsPause(const Napi::CallbackInfo& info) {
    if (!pumped()) conn_->PauseRead();
    return info.Env().Undefined();
  }
  Napi::Value JsResume(const Napi::CallbackInfo& info) {
    if (!pumped()) conn_->ResumeRead();
    return info.Env().Undefined();
  }
  Napi::Value JsClose(const Napi::CallbackInfo& info) {
    conn_->Close("closed", "");
    addon_->io.Flush();
    return info.Env().Undefined();
  }
  Napi::Value JsDestroy(const Napi::CallbackInfo& info) {
    conn_->Destroy("closed", "");
    return info.Env().Undefined();
  }
  Napi::Value RemoteAddress(const Napi::CallbackInfo& info) {
    int port = 0;
    return Napi::String::New(info.Env(), conn_->RemoteAddress(&port));
  }
  Napi::Value RemotePort(const Napi::CallbackInfo& info) {
    int port = 0;
    conn_->RemoteAddress(&port);
    return Napi::Number::New(info.Env(), port);
  }
  Napi::Value Closed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), conn_->closed()); }
  Napi::Value WriteQueueSize(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(conn_->queuedBytes()));
  }

  Napi::Env env_;
  VgAddon* addon_ = nullptr;
  Conn* conn_ = nullptr;
  PumpBridge* pump_ = nullptr;
  bool pumpEnded_ = false;
  // setLentCallbacks: onData gets the thread's read buffer and a length instead of a copy.
  bool lend_ = false;
  Napi::FunctionReference onData_;
  Napi::FunctionReference onClose_;
  Napi::FunctionReference onDrain_;
  Napi::FunctionReference onHandshake_;
};

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

// ---- Listener ------------------------------------------------------------------------------

class ListenerWrap : public Napi::ObjectWrap<ListenerWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Listener",
                       {InstanceMethod<&ListenerWrap::JsClose>("close"),
                        InstanceAccessor<&ListenerWrap::Port>("port")});
  }
  explicit ListenerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ListenerWrap>(info), env_(info.Env()) {
    if (info.Length() < 1 || !info[0].IsExternal()) {
      Napi::TypeError::New(info.Env(), "Listener objects come from listen()").ThrowAsJavaScriptException();
      return;
    }
    addon_ = info.Env().GetInstanceData<VgAddon>();
  }
  ~ListenerWrap() override {
    if (tcp_ && !closed_) {
      tcp_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(tcp_), [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    }
  }

  // Returns a libuv error code (0 on success).
  int Open(const std::string& host, int port, int backlog, Napi::Function onConnection, std::string* where) {
    struct sockaddr_storage ss;
    int family = AF_INET;
    if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<struct sockaddr_in*>(&ss)) != 0) {
      if (uv_ip6_addr(host.c_str(), port, reinterpret_cast<struct sockaddr_in6*>(&ss)) != 0) {
        *where = "not an IP address";
        return UV_EINVAL;
      }
      family = AF_INET6;
    }
    tcp_ = new uv_tcp_t;
    uv_tcp_init_ex(addon_->io.loop, tcp_, family);
    tcp_->data = this;
    uv_os_fd_t fd;
    uv_fileno(reinterpret_cast<uv_handle_t*>(tcp_), &fd);
    int one = 1;
    // Every worker thread binds the same address; the kernel spreads connections.
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
      *where = "setsockopt(SO_REUSEPORT)";
      return uv_translate_sys_error(errno);
    }
    int r = uv_tcp_bind(tcp_, reinterpret_cast<struct sockaddr*>(&ss), 0);
    if (r == 0) r = uv_listen(reinterpret_cast<uv_stream_t*>(tcp_), backlog, OnConnection);
    if (r != 0) {
      *where = "bind";
      return r;
    }
    onConnection_ = Napi::Persistent(onConnection);
    Ref();
    refd_ = true;
    return 0;
  }

  void CloseHandle() {
    if (closed_ || !tcp_) return;
    closed_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(tcp_), [](uv_handle_t* h) {
      auto* self = static_cast<ListenerWrap*>(h->data);
      delete reinterpret_cast<uv_tcp_t*>(h);
      if (self) {
        Napi::HandleScope scope(self->env_);
        self->tcp_ = nullptr;
        self->onConnection_.Reset();
        if (self->refd_) {
          self->refd_ = false;
          self->Unref();
        }
      }
    });
  }

 private:
  static void OnConnection(uv_stream_t* server, int status) {
    auto* self = static_cast<ListenerWrap*>(server->data);
    if (!self || status != 0) return;
    Napi::Env env = self->env_;
    Napi::HandleScope scope(env);
    Napi::Object obj = self->addon_->connCtor.New({Napi::External<void>::New(env, nullptr)});
    ConnWrap* w = ConnWrap::Unwrap(obj);
    if (w->conn()->Accept(server) != 0) {
      w->conn()->Destroy("accept-failed", "");
      return;
    }
    CallJs(env, self->onConnection_, {obj});
  }
  Napi::Value JsClose(const Napi::CallbackInfo& info) {
    CloseHandle();
    return info.Env().Undefined();
  }
  Napi::Value Port(const Napi::CallbackInfo& info) {
    if (!tcp_) return Napi::Number::New(info.Env(), 0);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(tcp_, reinterpret_cast<struct sockaddr*>(&ss), &len);
    int port = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<struct sockaddr_in6*>(&ss)->sin6_port)
                                        : ntohs(reinterpret_cast<struct sockaddr_in*>(&ss)->sin_port);
    return Napi::Number::New(info.Env(), port);
  }

  Napi::Env env_;
  VgAddon* addon_ = nullptr;
  uv_tcp_t* tcp_ = nullptr;
  bool closed_ = false;
  bool refd_ = false;
  Napi::FunctionReference onConnection_;
};

// ---- Module functions ----------------------------------------------------------------------

VgAddon::VgAddon(Napi::Env env, Napi::Object exports)
    : ioShared(std::make_shared<ThreadIo>(LoopOf(env))), io(*ioShared) {
  recordSink->SetRenderer(&recordRenderer);
  connCtor = Napi::Persistent(ConnWrap::Define(env));
  tlsCtor = Napi::Persistent(TlsContextWrap::Define(env));
  listenerCtor = Napi::Persistent(ListenerWrap::Define(env));
  DefineAddon(exports, {
                           InstanceMethod<&VgAddon::CreateServerContext>("createServerContext"),
                           InstanceMethod<&VgAddon::CreateClientContext>("createClientContext"),
                           InstanceMethod<&VgAddon::Listen>("listen"),
                           InstanceMethod<&VgAddon::Connect>("connect"),
                           InstanceMethod<&VgAddon::StartPump>("pump"),
                           InstanceMethod<&VgAddon::Stats>("stats"),
                           InstanceMethod<&VgAddon::EndPump>("endPump"),
                           InstanceMethod<&VgAddon::ReleaseStatement>("releaseStatement"),
                           InstanceMethod<&VgAddon::FrameEvents>("frameEvents"),
                           InstanceMethod<&VgAddon::FrameEventsInto>("frameEventsInto"),
                           InstanceMethod<&VgAddon::SkipJsonNumberListJs>("skipJsonNumberList"),
                           InstanceMethod<&VgAddon::ReadResponseHeadJs>("readResponseHead"),
                           InstanceValue("jsonNumberListPath", Napi::String::New(env, JsonNumberListPath()), napi_enumerable),
                           InstanceMethod<&VgAddon::SetRecordRenderer>("setRecordRenderer"),
                           InstanceMethod<&VgAddon::TakeRecords>("takeRecords"),
                           InstanceMethod<&VgAddon::RecordCapturesForTest>("recordCapturesForTest"),
                       });
}

Napi::Value VgAddon::CreateServerContext(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, "createServerContext({cert, key, profile, alpn})").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = info[0].As<Napi::Object>();
  ServerContextSpec spec;
  spec.certPem = BufferOrString(o.Get("cert"));
  spec.keyPem = BufferOrString(o.Get("key"));
  spec.profile = ProfileOf(o);
  spec.alpn = StringArray(o.Get("alpn"));
  std::string error;
  SSL_CTX* ctx = BuildServerContext(spec, &error);
  if (!ctx) return ThrowError(env, error, "ERR_VG_TLS_FILES");
  return tlsCtor.New({Napi::External<SSL_CTX>::New(env, ctx), Napi::Boolean::New(env, true)});
}

Napi::Value VgAddon::CreateClientContext(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, "createClientContext({ca, profile})").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = info[0].As<Napi::Object>();
  ClientContextSpec spec;
  spec.caPem = BufferOrString(o.Get("ca"));
  spec.profile = ProfileOf(o);
  std::string error;
  SSL_CTX* ctx = BuildClientContext(spec, &error);
  if (!ctx) return ThrowError(env, error, "ERR_VG_TLS_FILES");
  return tlsCtor.New({Napi::External<SSL_CTX>::New(env, ctx), Napi::Boolean::New(env, false)});
}

Napi::Value VgAddon::Listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsNumber() || !info[3].IsFunction()) {
    Napi::TypeError::New(env, "listen(host, port, backlog, onConnection)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string host = info[0].As<Napi::String>().Utf8Value();
  int port = info[1].As<Napi::Number>().Int32Value();
  int backlog = info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : kDefaultBacklog;
  Napi::Object obj = listenerCtor.New({Napi::External<void>::New(env, nullptr)});
  ListenerWrap* l = ListenerWrap::Unwrap(obj);
  std::string where;
  int r = l->Open(host, port, backlog, info[3].As<Napi::Function>(), &where);
  if (r != 0) {
    l->CloseHandle();
    return ThrowError(env, "cannot listen on " + host + ":" + std::to_string(port) + ": " + uv_strerror(r) + " (" + where + ")",
                      uv_err_name(r));
  }
  return obj;
}

Napi::Value VgAddon::Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsFunction()) {
    Napi::TypeError::New(env, "connect(ip, port, cb)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string ip = info[0].As<Napi::String>().Utf8Value();
  int port = info[1].As<Napi::Number>().Int32Value();
  struct sockaddr_storage ss;
  if (uv_ip4_addr(ip.c_str(), port, reinterpret_cast<struct sockaddr_in*>(&ss)) != 0 &&
      uv_ip6_addr(ip.c_str(), port, reinterpret_cast<struct sockaddr_in6*>(&ss)) != 0) {
    return ThrowError(env, "connect: not an IP address: " + ip, "ERR_INVALID_ARG_VALUE");
  }
  Napi::Object obj = connCtor.New({Napi::External<void>::New(env, nullptr)});
  ConnWrap* w = ConnWrap::Unwrap(obj);
  w->onConnect_ = Napi::Persistent(info[2].As<Napi::Function>());
  int r = w->conn()->Connect(reinterpret_cast<struct sockaddr*>(&ss));
  if (r != 0) {
    w->onConnect_.Reset();
    w->conn()->Destroy("connect-failed", uv_err_name(r));
    return ThrowError(env, std::string("connect failed: ") + uv_strerror(r), uv_err_name(r));
  }
  return obj;
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

Napi::Value VgAddon::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("liveConnections", static_cast<double>(io.liveConns));
  o.Set("liveSessions", static_cast<double>(liveSessions));
  o.Set("bytesPumped", static_cast<double>(bytesPumped));
  return o;
}

// setRecordRenderer(render): JavaScript's redaction for strings C++ does not handle itself.
Napi::Value VgAddon::SetRecordRenderer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) {
    Napi::TypeError::New(env, "setRecordRenderer(render)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  recordRenderer.Set(env, info[0].As<Napi::Function>());
  return env.Undefined();
}

// The sink's batch copied into a Buffer (null when empty); the sink starts over, keeping its buffer.
Napi::Value TakeBatch(Napi::Env env, RecordSink& sink) {
  if (sink.empty()) return env.Null();
  Napi::Value out = Napi::Buffer<char>::Copy(env, sink.batch().data(), sink.batch().size());
  sink.Clear();
  return out;
}

// takeRecords(sweepBefore?): statement events recorded in C++ since the last call, as one
// record batch (null when none). Statements parked (waiting for their result) since at or
// before `sweepBefore` (ms epoch) are recorded on their own first.
Napi::Value VgAddon::TakeRecords(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() >= 1 && info[0].IsNumber()) recordSink->Sweep(info[0].As<Napi::Number>().DoubleValue());
  return TakeBatch(env, *recordSink);
}

// recordCapturesForTest(session, connection, captures[[fromClient, type, body, length]...], end):
// runs a StatementRecorder over captured messages and returns the record batch it made.
Napi::Value VgAddon::RecordCapturesForTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsArray()) {
    Napi::TypeError::New(env, "recordCapturesForTest(session, connection, captures, end)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto sink = std::make_shared<RecordSink>();
  sink->SetRenderer(&recordRenderer);
  {
    StatementRecorder r(sink, info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value());
    Napi::Array captures = info[2].As<Napi::Array>();
    for (uint32_t i = 0; i < captures.Length(); i++) {
      Napi::Value item = captures.Get(i);
      if (!item.IsArray()) return ThrowError(env, "recordCapturesForTest: each capture is [fromClient, type, body, length]", "ERR_INVALID_ARG_TYPE");
      Napi::Array c = item.As<Napi::Array>();
      Napi::Value type = c.Get(1u);
      Napi::Value length = c.Get(3u);
      if (!type.IsString() || type.As<Napi::String>().Utf8Value().empty() || !length.IsNumber())
        return ThrowError(env, "recordCapturesForTest: each capture is [fromClient, type, body, length]", "ERR_INVALID_ARG_TYPE");
      std::string body = BufferOrString(c.Get(2u));
      r.OnCapture(c.Get(0u).ToBoolean().Value(), static_cast<uint8_t>(type.As<Napi::String>().Utf8Value()[0]), body,
                  length.As<Napi::Number>().Uint32Value());
    }
    if (info.Length() < 4 || info[3].ToBoolean().Value()) r.End();
  }
  return TakeBatch(env, *sink);
}

namespace {

Napi::Value ThrowFrameEventsType(Napi::Env env, const std::string& message) {
  Napi::TypeError::New(env, "frameEvents: " + message).ThrowAsJavaScriptException();
  return env.Undefined();
}

bool IsTypedArrayOf(const Napi::Value& v, napi_typedarray_type type) {
  return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == type;
}

// True when the call is (Uint8Array, number); otherwise a TypeError naming `usage` is pending.
bool BytesAndNumberArgs(const Napi::CallbackInfo& info, const char* usage) {
  if (info.Length() >= 2 && IsTypedArrayOf(info[0], napi_uint8_array) && info[1].IsNumber()) return true;
  Napi::TypeError::New(info.Env(), usage).ThrowAsJavaScriptException();
  return false;
}

}  // namespace

Napi::Value VgAddon::SkipJsonNumberListJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!BytesAndNumberArgs(info, "skipJsonNumberList(bytes: Uint8Array, index: number)")) return env.Undefined();
  auto a = info[0].As<Napi::Uint8Array>();
  double at = info[1].As<Napi::Number>().DoubleValue();
  if (!(at >= 0) || at > static_cast<double>(a.ElementLength())) {
    Napi::RangeError::New(env, "skipJsonNumberList: index out of range").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int64_t r = SkipJsonNumberList(a.Data(), a.ElementLength(), static_cast<size_t>(at));
  return Napi::Number::New(env, static_cast<double>(r));
}

Napi::Value VgAddon::ReadResponseHeadJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!BytesAndNumberArgs(info, "readResponseHead(bytes: Uint8Array, maxHeadBytes: number)")) return env.Undefined();
  auto a = info[0].As<Napi::Uint8Array>();
  double max = info[1].As<Napi::Number>().DoubleValue();
  if (!(max >= 0)) max = 0;
  if (max > static_cast<double>(a.ElementLength())) max = static_cast<double>(a.ElementLength());
  ResponseHeadFields& f = responseHead;
  if (!ReadResponseHead(a.Data(), a.ElementLength(), static_cast<size_t>(max), &f)) return env.Null();
  auto latin1 = [&](std::string_view s) {
    napi_value v;
    napi_create_string_latin1(env, s.data(), s.size(), &v);
    return v;
  };
  std::vector<napi_value> out;
  out.reserve(6 + f.fields.size());
  out.push_back(Napi::Number::New(env, static_cast<double>(f.used)));
  out.push_back(Napi::Number::New(env, f.minor));
  out.push_back(Napi::Number::New(env, f.status));
  out.push_back(latin1(f.reason));
  out.push_back(Napi::Number::New(env, static_cast<double>(f.contentLength)));
  out.push_back(Napi::Number::New(env, (f.transferEncoding ? 1 : 0) | (f.chunked ? 2 : 0) | (f.closeToken ? 4 : 0) | (f.keepAliveToken ? 8 : 0)));
  for (std::string_view s : f.fields) out.push_back(latin1(s));
  napi_value arr;
  napi_create_array_with_length(env, out.size(), &arr);
  for (size_t i = 0; i < out.size(); i++) napi_set_element(env, arr, static_cast<uint32_t>(i), out[i]);
  return Napi::Value(env, arr);
}

// The checked arguments of frameEvents / frameEventsInto: (blob, offsets, firstSeq, prevHash)
// starting at info[base]; `ok` is false with a TypeError pending otherwise.
struct FrameArgs {
  bool ok = false;
  const uint8_t* blob = nullptr;
  const uint32_t* offsets = nullptr;
  size_t count = 0;
  uint64_t firstSeq = 0;
  const uint8_t* prevHash = nullptr;
  // Bytes of the frames.
  size_t total = 0;
};

static FrameArgs CheckFrameArgs(const Napi::CallbackInfo& info, size_t base) {
  Napi::Env env = info.Env();
  FrameArgs a;
  auto fail = [&](const std::string& message) {
    ThrowFrameEventsType(env, message);
    return a;
  };
  if (info.Length() < base + 4) return fail("expects (blob: Uint8Array, offsets: Uint32Array, firstSeq: number, prevHash: Buffer)");
  if (!IsTypedArrayOf(info[base], napi_uint8_array)) return fail("blob must be a Uint8Array or Buffer");
  if (!IsTypedArrayOf(info[base + 1], napi_uint32_array)) return fail("offsets must be a Uint32Array of [start, end) pairs");
  if (!info[base + 2].IsNumber()) return fail("firstSeq must be a number");
  if (!IsTypedArrayOf(info[base + 3], napi_uint8_array)) return fail("prevHash must be a 32-byte Buffer");

  auto blobArr = info[base].As<Napi::Uint8Array>();
  auto offsetsArr = info[base + 1].As<Napi::Uint32Array>();
  auto prevArr = info[base + 3].As<Napi::Uint8Array>();
  const double seq = info[base + 2].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(seq) || seq < 0 || seq > kMaxSafeInteger || std::floor(seq) != seq) {
    return fail("firstSeq must be a non-negative safe integer");
  }
  if (prevArr.ElementLength() != kRecordHashBytes) {
    return fail("prevHash must be 32 bytes, got " + std::to_string(prevArr.ElementLength()));
  }
  const size_t offsetsLen = offsetsArr.ElementLength();
  if (offsetsLen % 2 != 0) return fail("offsets must hold [start, end) pairs (odd length " + std::to_string(offsetsLen) + ")");
  const size_t count = offsetsLen / 2;
  const uint64_t firstSeq = static_cast<uint64_t>(seq);
  if (count > 0 && firstSeq + (count - 1) > kMaxSafeSeq) {
    return fail("sequence numbers would pass Number.MAX_SAFE_INTEGER");
  }

  const size_t blobLen = blobArr.ElementLength();
  const uint32_t* offsets = offsetsArr.Data();
  size_t payloadBytes = 0;
  for (size_t i = 0; i < count; i++) {
    const uint32_t start = offsets[2 * i];
    const uint32_t end = offsets[2 * i + 1];
    if (start > end || end > blobLen) {
      return fail("payload " + std::to_string(i) + " [" + std::to_string(start) + ", " + std::to_string(end) +
                                           ") is outside the " + std::to_string(blobLen) + "-byte blob");
    }
    if (kRecordBodyFixedBytes + (end - start) > kRecordMaxFrameBodyBytes) {
      return fail("payload " + std::to_string(i) + " is " + std::to_string(end - start) + " bytes, over the frame limit");
    }
    payloadBytes += end - start;
  }
  a.ok = true;
  a.blob = blobArr.Data();
  a.offsets = offsets;
  a.count = count;
  a.firstSeq = firstSeq;
  a.prevHash = prevArr.Data();
  a.total = RecordFramesSize(count, payloadBytes);
  return a;
}

// Frames `a` into `out` (a.total bytes) and returns the last hash as a Buffer, or undefined
// with an exception pending.
static Napi::Value FrameInto(Napi::Env env, const FrameArgs& a, uint8_t* out) {
  uint8_t lastHash[kRecordHashBytes];
  if (!vg::FrameEvents(a.blob, a.offsets, a.count, a.firstSeq, a.prevHash, out, lastHash)) {
    Napi::Error::New(env, "frameEvents: SHA-256 is not available from OpenSSL").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Buffer<uint8_t> hash = Napi::Buffer<uint8_t>::Copy(env, lastHash, kRecordHashBytes);
  if (env.IsExceptionPending()) return env.Undefined();
  return hash;
}

Napi::Value VgAddon::FrameEvents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FrameArgs a = CheckFrameArgs(info, 0);
  if (!a.ok) return env.Undefined();
  Napi::Buffer<uint8_t> frames = Napi::Buffer<uint8_t>::New(env, a.total);
  if (env.IsExceptionPending()) return env.Undefined();
  Napi::Value hash = FrameInto(env, a, frames.Data());
  if (env.IsExceptionPending()) return env.Undefined();
  Napi::Object result = Napi::Object::New(env);
  result.Set("frames", frames);
  result.Set("hash", hash);
  return result;
}

// frameEventsInto(into, at, blob, offsets, firstSeq, prevHash): the frames written to
// into[at, at + length), a buffer the caller reuses (no fresh pages per batch).
Napi::Value VgAddon::FrameEventsInto(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !IsTypedArrayOf(info[0], napi_uint8_array) || !info[1].IsNumber()) {
    return ThrowFrameEventsType(env, "expects (into: Uint8Array, at: number, blob, offsets, firstSeq, prevHash)");
  }
  FrameArgs a = CheckFrameArgs(info, 2);
  if (!a.ok) return env.Undefined();
  auto into = info[0].As<Napi::Uint8Array>();
  const double at = info[1].As<Napi::Number>().DoubleValue();
  if (!(at >= 0) || std::floor(at) != at || at > static_cast<double>(into.ElementLength()) ||
      a.total > into.ElementLength() - static_cast<size_t>(at)) {
    Napi::RangeError::New(env, "frameEventsInto: " + std::to_string(a.total) + " bytes of frames do not fit at " + std::to_string(at) + " in " +
                                   std::to_string(into.ElementLength()) + " bytes")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Value hash = FrameInto(env, a, into.Data() + static_cast<size_t>(at));
  if (env.IsExceptionPending()) return env.Undefined();
  Napi::Object result = Napi::Object::New(env);
  result.Set("length", Napi::Number::New(env, static_cast<double>(a.total)));
  result.Set("hash", hash);
  return result;
}

}  // namespace vg

using vg::VgAddon;
NODE_API_ADDON(VgAddon)

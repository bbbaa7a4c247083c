// Network bindings: TLS contexts, connections and listeners as JavaScript objects.
#pragma once
#include <napi.h>
#include <uv.h>

#include <cstring>
#include <string>
#include <vector>

#include "bindings/addon.h"
#include "bindings/js-boundary.h"
#include "bindings/session-bindings.h"
#include "net/conn.h"
#include "net/tls-context.h"

namespace vg {

class TlsContextWrap : public Napi::ObjectWrap<TlsContextWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TlsContext", {TaggedGetter<TlsContextWrap, &TlsContextWrap::Kind>("kind")});
  }
  static constexpr const napi_type_tag& kTag = kTlsContextTag;
  static constexpr const char* kWhat = "a TlsContext (from createServerContext/createClientContext)";
  explicit TlsContextWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TlsContextWrap>(info) {
    if (info.Length() < 1 || !info[0].IsExternal()) {
      Napi::TypeError::New(info.Env(), "TlsContext is created by createServerContext/createClientContext")
          .ThrowAsJavaScriptException();
      return;
    }
    ctx_ = info[0].As<Napi::External<SSL_CTX>>().Data();
    server_ = info[1].As<Napi::Boolean>().Value();
    info.This().As<Napi::Object>().TypeTag(&kTag);
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

class ConnWrap : public Napi::ObjectWrap<ConnWrap>, public ConnEvents {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Connection",
                       {
                           TaggedMethod<ConnWrap, &ConnWrap::SetCallbacks>("setCallbacks"),
                           TaggedMethod<ConnWrap, &ConnWrap::SetLentCallbacks>("setLentCallbacks"),
                           TaggedMethod<ConnWrap, &ConnWrap::JsWrite>("write"),
                           TaggedMethod<ConnWrap, &ConnWrap::JsStartTls>("startTls"),
                           TaggedMethod<ConnWrap, &ConnWrap::JsPause>("pause"),
                           TaggedMethod<ConnWrap, &ConnWrap::JsResume>("resume"),
                           TaggedMethod<ConnWrap, &ConnWrap::JsClose>("close"),
                           TaggedMethod<ConnWrap, &ConnWrap::JsDestroy>("destroy"),
                           TaggedGetter<ConnWrap, &ConnWrap::RemoteAddress>("remoteAddress"),
                           TaggedGetter<ConnWrap, &ConnWrap::RemotePort>("remotePort"),
                           TaggedGetter<ConnWrap, &ConnWrap::Closed>("closed"),
                           TaggedGetter<ConnWrap, &ConnWrap::WriteQueueSize>("writeQueueSize"),
                       });
  }
  static constexpr const napi_type_tag& kTag = kConnectionTag;
  static constexpr const char* kWhat = "a Connection (from listen() or connect())";

  explicit ConnWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ConnWrap>(info), env_(info.Env()) {
    if (info.Length() < 1 || !info[0].IsExternal()) {
      Napi::TypeError::New(info.Env(), "Connection objects come from listen() and connect()")
          .ThrowAsJavaScriptException();
      return;
    }
    addon_ = info.Env().GetInstanceData<VgAddon>();
    conn_ = new Conn(addon_->ioShared, this);
    info.This().As<Napi::Object>().TypeTag(&kTag);
    Ref();  // alive while the socket is open: callbacks must reach this object
  }

  ~ConnWrap() override { delete conn_; }

  Conn* conn() const { return conn_; }
  PumpBridge* pump() const { return pump_; }
  // From now on the pump owns this connection's bytes and its close: the setup phase's
  // callbacks (and everything their closures hold: parsers, SCRAM state, buffers) are let go.
  void AttachPump(PumpBridge* p) {
    pump_ = p;
    p->Hold();  // released when this connection closes (OnClosed) or is handed back (DetachPump)
    onData_.Reset();
    onClose_.Reset();
    onDrain_.Reset();
  }
  // The pump ended but kept this (upstream) connection open: JavaScript owns it again.
  void DetachPump() {
    PumpBridge* p = pump_;
    pump_ = nullptr;
    pumpEnded_ = false;
    if (p) p->Drop();  // never the last hold: the pump calls this from inside an Entry
  }
  bool pumped() const { return pump_ != nullptr || pumpEnded_; }

  // ConnEvents
  void OnPlaintext(Conn* c, const char* data, size_t len) override {
    if (pump_) {
      PumpBridge::Entry entry(pump_);
      pump_->pump.OnPlaintext(c, data, len);
      return;
    }
    Napi::HandleScope scope(env_);
    if (lend_) {
      // Lent: the bytes are put at the start of the thread's plaintext buffer (TLS reads are
      // already there) and JavaScript gets a view of that buffer and a length, valid during
      // the call only: the view is detached when the call returns, so a reference JavaScript
      // kept reads as empty instead of as whatever the next read put there.
      std::vector<char>& plain = addon_->io.plainBuf;
      if (len <= plain.size()) {
        if (data != plain.data()) std::memmove(plain.data(), data, len);
        // In a callback scope of its own, so that microtasks the call queued run after the
        // view is detached (they are past the call too).
        napi_callback_scope cs = nullptr;
        napi_open_callback_scope(env_, addon_->asyncResource.Value(), addon_->pumpAsyncContext, &cs);
        Napi::Buffer<char> view = addon_->LendView(env_, len);
        CallJs(env_, onData_, {view, Napi::Number::New(env_, static_cast<double>(len))});
        addon_->EndLend(view);
        if (cs) napi_close_callback_scope(env_, cs);
        return;
      }
      CallJs(env_, onData_, {Napi::Buffer<char>::Copy(env_, data, len), Napi::Number::New(env_, static_cast<double>(len))});
      return;
    }
    CallJs(env_, onData_, {Napi::Buffer<char>::Copy(env_, data, len)});
  }
  void OnReadDone(Conn* c) override {
    if (pump_) {
      PumpBridge::Entry entry(pump_);
      pump_->pump.OnReadDone(c);
    }
  }
  void OnDrain(Conn* c) override {
    if (pump_) {
      PumpBridge::Entry entry(pump_);
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
      {
        PumpBridge::Entry entry(p);
        p->pump.OnClosed(c);
      }
      p->Drop();  // this connection's hold (AttachPump); may delete p
    } else if (!pumpEnded_) {
      Napi::HandleScope scope(env_);
      CallJs(env_, onClose_, {Napi::String::New(env_, CloseReasonName(c->closeReason())), Napi::String::New(env_, c->closeDetail())});
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
    if (!info[0].IsFunction() || !info[1].IsFunction() || !(info[2].IsUndefined() || info[2].IsFunction()))
      return ThrowTypeError(info.Env(), "setCallbacks(onData: function, onClose: function, onDrain?: function)");
    if (info.Length() >= 1 && info[0].IsFunction()) onData_ = Napi::Persistent(info[0].As<Napi::Function>());
    if (info.Length() >= 2 && info[1].IsFunction()) onClose_ = Napi::Persistent(info[1].As<Napi::Function>());
    if (info.Length() >= 3 && info[2].IsFunction()) onDrain_ = Napi::Persistent(info[2].As<Napi::Function>());
    return info.Env().Undefined();
  }
  Napi::Value JsWrite(const Napi::CallbackInfo& info) {
    if (pumped()) return ThrowError(info.Env(), "connection is pumped; JavaScript may not write to it", kErrState);
    // Bytes written before the handshake completed would be lost (or, in plaintext, mixed
    // into the TLS stream): write from the startTls callback on.
    if (conn_->tlsPending())
      return ThrowError(info.Env(), "write before the TLS handshake completed; write from the startTls callback on", kErrState);
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
    TlsContextWrap* ctx = UnwrapTagged<TlsContextWrap>(env, info[0], TlsContextWrap::kTag, TlsContextWrap::kWhat);
    if (!ctx) return env.Undefined();
    if (!ctx->ctx()) return ThrowError(env, "startTls: the TLS context is empty", kErrInvalidArgValue);
    if (!info[1].IsString() && !info[1].IsNull() && !info[1].IsUndefined())
      return ThrowTypeError(env, "startTls: servername must be a string or null");
    std::string servername = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
    // A client without a server name would verify the chain but not whose certificate it
    // is: refused (there is no insecure switch here; verification is the point of the leg).
    if (!ctx->server() && servername.empty())
      return ThrowError(env, "startTls: a client connection needs the server name (or IP address) its certificate is verified against",
                        kErrInvalidArgValue);
    if (servername.size() > 255 || servername.find('\0') != std::string::npos)
      return ThrowError(env, "startTls: servername must be a host name or IP address of at most 255 bytes", kErrInvalidArgValue);
    if (!info[2].IsArray() && !info[2].IsNull() && !info[2].IsUndefined())
      return ThrowTypeError(env, "startTls: alpn must be an array of strings or null");
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
    conn_->Close(CloseReason::Closed, "");
    addon_->io.Flush();
    return info.Env().Undefined();
  }
  Napi::Value JsDestroy(const Napi::CallbackInfo& info) {
    conn_->Destroy(CloseReason::Closed, "");
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

// The Listener class (listen()).
Napi::Function DefineListener(Napi::Env env);

}  // namespace vg

// See net-bindings.h.
#include "bindings/net-bindings.h"

#include <sys/socket.h>

#include <cerrno>

namespace vg {

namespace {

constexpr int kDefaultBacklog = 511;
// listen()'s backlog: the kernel caps it at net.core.somaxconn anyway.
constexpr int kMaxBacklog = 65535;
constexpr int kMaxPort = 65535;

TlsProfile ProfileOf(const Napi::Object& o) {
  Napi::Value p = o.Get("profile");
  return p.IsString() && p.As<Napi::String>().Utf8Value() == "intermediate" ? TlsProfile::Intermediate
                                                                            : TlsProfile::Modern;
}

// The TLS context options' shapes: PEM as Buffer or string, a known profile, ALPN strings.
bool CheckContextOptions(Napi::Env env, const Napi::Object& o, bool server) {
  auto pem = [&](const char* key) {
    Napi::Value v = o.Get(key);
    if (v.IsBuffer() || v.IsString()) return true;
    ThrowTypeError(env, std::string(server ? "createServerContext" : "createClientContext") + ": " + key + " must be PEM as a Buffer or string");
    return false;
  };
  if (server ? !(pem("cert") && pem("key")) : !pem("ca")) return false;
  Napi::Value p = o.Get("profile");
  if (!p.IsUndefined()) {
    std::string name = p.IsString() ? p.As<Napi::String>().Utf8Value() : std::string();
    if (name != "modern" && name != "intermediate") {
      ThrowError(env, "profile must be 'modern' or 'intermediate'", kErrInvalidArgValue);
      return false;
    }
  }
  Napi::Value alpn = o.Get("alpn");
  if (!alpn.IsUndefined() && !alpn.IsNull()) {
    bool ok = alpn.IsArray();
    for (uint32_t i = 0; ok && i < alpn.As<Napi::Array>().Length(); i++) {
      Napi::Value e = alpn.As<Napi::Array>().Get(i);
      ok = e.IsString() && !e.As<Napi::String>().Utf8Value().empty() && e.As<Napi::String>().Utf8Value().size() <= 255;
    }
    if (!ok) {
      ThrowTypeError(env, "alpn must be an array of protocol names of 1 to 255 bytes");
      return false;
    }
  }
  return true;
}

}  // namespace

class ListenerWrap : public Napi::ObjectWrap<ListenerWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Listener",
                       {TaggedMethod<ListenerWrap, &ListenerWrap::JsClose>("close"),
                        TaggedGetter<ListenerWrap, &ListenerWrap::Port>("port")});
  }
  static constexpr const napi_type_tag& kTag = kListenerTag;
  static constexpr const char* kWhat = "a Listener (from listen())";
  explicit ListenerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ListenerWrap>(info), env_(info.Env()) {
    if (info.Length() < 1 || !info[0].IsExternal()) {
      Napi::TypeError::New(info.Env(), "Listener objects come from listen()").ThrowAsJavaScriptException();
      return;
    }
    addon_ = info.Env().GetInstanceData<VgAddon>();
    info.This().As<Napi::Object>().TypeTag(&kTag);
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
      w->conn()->Destroy(CloseReason::AcceptFailed, "");
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

Napi::Function DefineListener(Napi::Env env) { return ListenerWrap::Define(env); }

Napi::Value VgAddon::CreateServerContext(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, "createServerContext({cert, key, profile, alpn})").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = info[0].As<Napi::Object>();
  if (!CheckContextOptions(env, o, true)) return env.Undefined();
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
  if (!CheckContextOptions(env, o, false)) return env.Undefined();
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
  double port = 0, backlog = kDefaultBacklog;
  if (!ReadInteger(env, info[1], "listen: port", 0, kMaxPort, &port)) return env.Undefined();
  if (!info[2].IsUndefined() && !info[2].IsNull() && !ReadInteger(env, info[2], "listen: backlog", 1, kMaxBacklog, &backlog))
    return env.Undefined();
  Napi::Object obj = listenerCtor.New({Napi::External<void>::New(env, nullptr)});
  ListenerWrap* l = ListenerWrap::Unwrap(obj);
  std::string where;
  int r = l->Open(host, static_cast<int>(port), static_cast<int>(backlog), info[3].As<Napi::Function>(), &where);
  if (r != 0) {
    l->CloseHandle();
    return ThrowError(env, "cannot listen on " + host + ":" + std::to_string(static_cast<int>(port)) + ": " + uv_strerror(r) + " (" + where + ")",
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
  double portNumber = 0;
  if (!ReadInteger(env, info[1], "connect: port", 1, kMaxPort, &portNumber)) return env.Undefined();
  const int port = static_cast<int>(portNumber);
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
    w->conn()->Destroy(CloseReason::ConnectFailed, uv_err_name(r));
    return ThrowError(env, std::string("connect failed: ") + uv_strerror(r), uv_err_name(r));
  }
  return obj;
}

}  // namespace vg

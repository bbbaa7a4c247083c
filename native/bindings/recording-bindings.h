// Recording bindings: the JavaScript side of recording redaction, used by the C++ statement
// recorder through RecordSink.
#pragma once
#include <napi.h>

#include <string>

#include "recording/record-sink.h"

namespace vg {

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

}  // namespace vg

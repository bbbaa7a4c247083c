// What crosses between JavaScript and the addon, shared by every bindings file: calling JS
// from a libuv callback, throwing errors with a stable `code`, reading common argument shapes.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

namespace vg {

// Calls a JS function from a libuv callback; an exception becomes an uncaught exception of
// this thread (as for any event-loop callback) instead of being lost.
inline void CallJs(Napi::Env env, Napi::FunctionReference& fn, const std::vector<napi_value>& args) {
  if (fn.IsEmpty()) return;
  Napi::HandleScope scope(env);
  fn.MakeCallback(env.Global(), args);
  if (env.IsExceptionPending()) {
    Napi::Error e = env.GetAndClearPendingException();
    napi_fatal_exception(env, e.Value());
  }
}

inline Napi::Value ThrowError(Napi::Env env, const std::string& message, const char* code) {
  Napi::Error e = Napi::Error::New(env, message);
  if (code) e.Set("code", Napi::String::New(env, code));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

inline std::string BufferOrString(const Napi::Value& v) {
  if (v.IsBuffer()) {
    auto b = v.As<Napi::Buffer<char>>();
    return std::string(b.Data(), b.Length());
  }
  if (v.IsString()) return v.As<Napi::String>().Utf8Value();
  return std::string();
}

inline std::vector<std::string> StringArray(const Napi::Value& v) {
  std::vector<std::string> out;
  if (!v.IsArray()) return out;
  auto a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (e.IsString()) out.push_back(e.As<Napi::String>().Utf8Value());
  }
  return out;
}

inline bool IsTypedArrayOf(const Napi::Value& v, napi_typedarray_type type) {
  return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == type;
}

}  // namespace vg

// What crosses between JavaScript and the addon, shared by every bindings file: calling JS
// from a libuv callback, throwing errors with a stable `code`, reading common argument shapes.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
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

// ---- Type tags --------------------------------------------------------------------------
// Every wrapped class tags its JavaScript objects at construction; an object is unwrapped
// only after its tag is checked, so a TlsContext passed where a Connection is expected (or a
// method called with another `this`) is a TypeError, never a reinterpretation of memory.
// The tags are random 128-bit values, one per class; never reuse one.
inline constexpr napi_type_tag kTlsContextTag = {0x5b1c3f0e6a2d4f81ULL, 0x9e07d2c4a1b36f55ULL};
inline constexpr napi_type_tag kConnectionTag = {0x0d8e4a7c2f1b9e63ULL, 0x74c2a9f05e1d38b7ULL};
inline constexpr napi_type_tag kListenerTag = {0xc3a1e95f7d2b0486ULL, 0x1f6e8b3d9a4c7205ULL};

// Node's own codes, so callers switch on them as on Node's errors.
inline constexpr const char* kErrInvalidArgType = "ERR_INVALID_ARG_TYPE";
inline constexpr const char* kErrInvalidArgValue = "ERR_INVALID_ARG_VALUE";
inline constexpr const char* kErrOutOfRange = "ERR_OUT_OF_RANGE";
// The object is in the wrong state for the call (pumped, closed, handshake pending).
inline constexpr const char* kErrState = "ERR_VG_STATE";

inline Napi::Value ThrowTypeError(Napi::Env env, const std::string& message, const char* code = kErrInvalidArgType) {
  Napi::TypeError e = Napi::TypeError::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

inline Napi::Value ThrowRangeError(Napi::Env env, const std::string& message) {
  Napi::RangeError e = Napi::RangeError::New(env, message);
  e.Set("code", Napi::String::New(env, kErrOutOfRange));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

// The wrapped W behind `v` when `v` carries `tag`; otherwise nullptr with a TypeError
// (ERR_INVALID_ARG_TYPE) pending that names `what`.
template <typename W>
W* UnwrapTagged(Napi::Env env, const Napi::Value& v, const napi_type_tag& tag, const char* what) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&tag)) {
    ThrowTypeError(env, std::string("expected ") + what);
    return nullptr;
  }
  return W::Unwrap(v.As<Napi::Object>());
}

// Methods and accessors of a wrapped class, checking `this` by its tag before unwrapping
// (node-addon-api's InstanceMethod unwraps whatever `this` is). W::kTag names the tag and
// W::kWhat the class as the user sees it.
template <typename W, Napi::Value (W::*M)(const Napi::CallbackInfo&)>
napi_value TaggedCall(napi_env env, napi_callback_info cbinfo) {
  Napi::CallbackInfo info(env, cbinfo);
  W* w = UnwrapTagged<W>(info.Env(), info.This(), W::kTag, W::kWhat);
  if (!w) return nullptr;
  return (w->*M)(info);
}

template <typename W, Napi::Value (W::*M)(const Napi::CallbackInfo&)>
Napi::ClassPropertyDescriptor<W> TaggedMethod(const char* name) {
  napi_property_descriptor d = {name, nullptr, TaggedCall<W, M>, nullptr, nullptr, nullptr, napi_default, nullptr};
  return Napi::ClassPropertyDescriptor<W>(d);
}

template <typename W, Napi::Value (W::*M)(const Napi::CallbackInfo&)>
Napi::ClassPropertyDescriptor<W> TaggedGetter(const char* name) {
  napi_property_descriptor d = {name, nullptr, nullptr, TaggedCall<W, M>, nullptr, nullptr, napi_default, nullptr};
  return Napi::ClassPropertyDescriptor<W>(d);
}

// ---- Numbers from JavaScript --------------------------------------------------------------
// Every number is checked before it is cast: a number (TypeError otherwise), finite, an
// integer, and within [min, max] (RangeError, ERR_OUT_OF_RANGE, naming the range). Returns
// false with the error pending.
inline constexpr double kJsMaxSafeInteger = 9007199254740991.0;  // Number.MAX_SAFE_INTEGER

inline bool ReadInteger(Napi::Env env, const Napi::Value& v, const char* what, double min, double max, double* out) {
  if (!v.IsNumber()) {
    ThrowTypeError(env, std::string(what) + " must be a number");
    return false;
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || d < min || d > max) {
    char range[96];
    std::snprintf(range, sizeof range, "an integer from %.0f to %.0f", min, max);
    ThrowRangeError(env, std::string(what) + " must be " + range + ", got " + Napi::Value(v).ToString().Utf8Value());
    return false;
  }
  *out = d;
  return true;
}

// An optional integer option `key` of `o`: `fallback` when absent (undefined).
inline bool ReadIntegerOption(Napi::Env env, const Napi::Object& o, const char* key, double min, double max, double fallback, double* out) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) {
    *out = fallback;
    return true;
  }
  return ReadInteger(env, v, key, min, max, out);
}

// A finite number (not necessarily an integer) within [min, max].
inline bool ReadFinite(Napi::Env env, const Napi::Value& v, const char* what, double min, double max, double* out) {
  if (!v.IsNumber()) {
    ThrowTypeError(env, std::string(what) + " must be a number");
    return false;
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d < min || d > max) {
    ThrowRangeError(env, std::string(what) + " must be a finite number, got " + Napi::Value(v).ToString().Utf8Value());
    return false;
  }
  *out = d;
  return true;
}

}  // namespace vg

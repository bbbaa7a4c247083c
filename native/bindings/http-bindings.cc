// HTTP bindings: the body guard's number-list skipper and the upstream response-head reader.
#include <napi.h>

#include <string_view>
#include <vector>

#include "bindings/addon.h"
#include "bindings/js-boundary.h"
#include "http/http-response-head.h"
#include "http/json-number-list.h"

namespace vg {

namespace {

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
  double at = 0;
  if (!ReadInteger(env, info[1], "skipJsonNumberList: index", 0, static_cast<double>(a.ElementLength()), &at)) return env.Undefined();
  int64_t r = SkipJsonNumberList(a.Data(), a.ElementLength(), static_cast<size_t>(at));
  return Napi::Number::New(env, static_cast<double>(r));
}

Napi::Value VgAddon::ReadResponseHeadJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!BytesAndNumberArgs(info, "readResponseHead(bytes: Uint8Array, maxHeadBytes: number)")) return env.Undefined();
  auto a = info[0].As<Napi::Uint8Array>();
  double max = 0;
  if (!ReadInteger(env, info[1], "readResponseHead: maxHeadBytes", 0, kJsMaxSafeInteger, &max)) return env.Undefined();
  if (max > static_cast<double>(a.ElementLength())) max = static_cast<double>(a.ElementLength());  // the bytes at hand
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


}  // namespace vg

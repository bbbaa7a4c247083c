// The N-API surface of the vecgate addon: module init and per-thread instance data. Only
// files in bindings/ include napi.h. JavaScript sees TLS contexts, listeners, connections
// and pumps; see src/native.ts.
#include "bindings/addon.h"

#include "bindings/net-bindings.h"
#include "http/json-number-list.h"

namespace vg {

static uv_loop_t* LoopOf(Napi::Env env) {
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  return loop;
}

VgAddon::VgAddon(Napi::Env env, Napi::Object exports)
    : ioShared(std::make_shared<ThreadIo>(LoopOf(env))), io(*ioShared) {
  recordSink->SetRenderer(&recordRenderer);
  rawEnv_ = env;
  asyncResource = Napi::Persistent(Napi::Object::New(env));
  napi_async_init(env, asyncResource.Value(), Napi::String::New(env, "vecgate:native"), &pumpAsyncContext);
  connCtor = Napi::Persistent(ConnWrap::Define(env));
  tlsCtor = Napi::Persistent(TlsContextWrap::Define(env));
  listenerCtor = Napi::Persistent(DefineListener(env));
  DefineAddon(exports, {
                           InstanceMethod<&VgAddon::CreateServerContext>("createServerContext"),
                           InstanceMethod<&VgAddon::CreateClientContext>("createClientContext"),
                           InstanceMethod<&VgAddon::Listen>("listen"),
                           InstanceMethod<&VgAddon::Connect>("connect"),
                           InstanceMethod<&VgAddon::StartPump>("pump"),
                           InstanceMethod<&VgAddon::Stats>("stats"),
                           InstanceMethod<&VgAddon::EndPump>("endPump"),
                           InstanceMethod<&VgAddon::ReleaseStatement>("releaseStatement"),
                           InstanceMethod<&VgAddon::AttachUpstream>("attachUpstream"),
                           InstanceMethod<&VgAddon::HoldUpstream>("holdUpstream"),
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

Napi::Value VgAddon::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("liveConnections", static_cast<double>(io.liveConns));
  o.Set("liveSessions", static_cast<double>(liveSessions));
  o.Set("bytesPumped", static_cast<double>(bytesPumped));
  return o;
}

}  // namespace vg

using vg::VgAddon;
NODE_API_ADDON(VgAddon)

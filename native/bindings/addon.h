// The addon's per-thread instance data (Napi::Addon): every worker thread loads its own
// VgAddon. Its exported methods are defined by area: net-bindings.cc, session-bindings.cc,
// http-bindings.cc, recording-bindings.cc; module init is in addon.cc.
#pragma once
#include <napi.h>
#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "bindings/recording-bindings.h"
#include "http/http-response-head.h"
#include "net/conn.h"
#include "recording/record-sink.h"

namespace vg {

class VgAddon : public Napi::Addon<VgAddon> {
 public:
  VgAddon(Napi::Env env, Napi::Object exports);
  // Statement events recorded in C++ (sessions with `nativeRecord`), taken by takeRecords().
  std::shared_ptr<RecordSink> recordSink = std::make_shared<RecordSink>();
  ~VgAddon() {
    recordSink->SetRenderer(nullptr);
    if (pumpAsyncContext) napi_async_destroy(rawEnv_, pumpAsyncContext);
  }
  // The async context (and its resource) that pumps and lent reads call JavaScript in
  // (PumpBridge::EnterJs, ConnWrap::OnPlaintext), one per thread.
  napi_async_context pumpAsyncContext = nullptr;
  Napi::ObjectReference asyncResource;
  napi_env rawEnv_ = nullptr;
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
  // Lent reads (Connection.setLentCallbacks): a fresh Buffer over the first `len` bytes of
  // this thread's plaintext buffer, for one onData call. Ownership: the memory stays
  // ThreadIo's; JavaScript may use the view only during the call: EndLend detaches it after
  // the call returns, so a reference kept past it sees 0 bytes, never the next read's.
  Napi::Buffer<char> LendView(Napi::Env env, size_t len) { return Napi::Buffer<char>::New(env, io.plainBuf.data(), len); }
  void EndLend(Napi::Buffer<char> view) {
    Napi::ArrayBuffer ab = view.ArrayBuffer();
    if (!ab.IsDetached()) ab.Detach();
  }

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
  Napi::Value AttachUpstream(const Napi::CallbackInfo& info);
  Napi::Value HoldUpstream(const Napi::CallbackInfo& info);
};

}  // namespace vg

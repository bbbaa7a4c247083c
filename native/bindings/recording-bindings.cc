// See recording-bindings.h. Also the recording functions of the addon: frameEvents,
// frameEventsInto, setRecordRenderer, takeRecords, recordCapturesForTest.
#include "bindings/recording-bindings.h"

#include <cmath>
#include <memory>
#include <string>

#include "bindings/addon.h"
#include "bindings/js-boundary.h"
#include "pg/statement-recorder.h"
#include "recording/record-frame.h"

namespace vg {

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
static Napi::Value TakeBatch(Napi::Env env, RecordSink& sink) {
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
  if (!info[0].IsUndefined()) {
    double before = 0;
    if (!ReadFinite(env, info[0], "takeRecords: sweepBefore", -kJsMaxSafeInteger, kJsMaxSafeInteger, &before)) return env.Undefined();
    recordSink->Sweep(before);
  }
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
      double len = 0;
      if (!ReadInteger(env, length, "recordCapturesForTest: length", 0, 4294967295.0, &len)) return env.Undefined();
      std::string body = BufferOrString(c.Get(2u));
      r.OnCapture(c.Get(0u).ToBoolean().Value(), static_cast<uint8_t>(type.As<Napi::String>().Utf8Value()[0]), body,
                  static_cast<uint32_t>(len));
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

}  // namespace

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

// Frames a batch of recording event payloads in one native call (see record-frame.h): the
// per-record JavaScript version (BigInt sequence, a crc32 call, a hash call and a Buffer per
// frame) was the primary's main cost per recorded statement.
#include "record-frame.h"

#include <openssl/evp.h>
// Node's own zlib (node's include directory comes first): the node binary exports crc32, so
// the addon links no second zlib.
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>

namespace vg {
namespace {

// Number.MAX_SAFE_INTEGER: sequence numbers are JavaScript numbers on the other side.
constexpr uint64_t kMaxSafeSeq = 9007199254740991ULL;
constexpr double kMaxSafeInteger = 9007199254740991.0;

// Fetched once: EVP_Digest with a name-less (legacy) EVP_MD would fetch on every call.
const EVP_MD* Sha256() {
  static const EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

inline void PutU32BE(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

inline void PutU64BE(uint8_t* p, uint64_t v) {
  PutU32BE(p, static_cast<uint32_t>(v >> 32));
  PutU32BE(p + 4, static_cast<uint32_t>(v));
}

Napi::Value ThrowType(Napi::Env env, const std::string& message) {
  Napi::TypeError::New(env, "frameEvents: " + message).ThrowAsJavaScriptException();
  return env.Undefined();
}

bool IsTypedArrayOf(const Napi::Value& v, napi_typedarray_type type) {
  return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == type;
}

}  // namespace

bool FrameEvents(const uint8_t* blob, const uint32_t* offsets, size_t count, uint64_t firstSeq,
                 const uint8_t prevHash[kRecordHashBytes], uint8_t* out, uint8_t lastHash[kRecordHashBytes]) {
  uint8_t hash[kRecordHashBytes];
  std::memcpy(hash, prevHash, kRecordHashBytes);
  if (count > 0) {
    const EVP_MD* md = Sha256();
    if (md == nullptr) return false;
    std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
    if (!ctx) return false;
    for (size_t i = 0; i < count; i++) {
      const uint32_t start = offsets[2 * i];
      const size_t len = offsets[2 * i + 1] - start;
      const size_t bodyLen = kRecordBodyFixedBytes + len;
      uint8_t* body = out + kRecordFramePrefixBytes;
      body[0] = kRecordFrameKindEvent;
      PutU64BE(body + 1, firstSeq + i);
      std::memcpy(body + 9, hash, kRecordHashBytes);
      if (len > 0) std::memcpy(body + kRecordBodyFixedBytes, blob + start, len);
      PutU32BE(out, static_cast<uint32_t>(bodyLen));
      PutU32BE(out + 4, static_cast<uint32_t>(crc32(0L, body, static_cast<uInt>(bodyLen))));
      unsigned int hashLen = 0;
      if (EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1 || EVP_DigestUpdate(ctx.get(), body, bodyLen) != 1 ||
          EVP_DigestFinal_ex(ctx.get(), hash, &hashLen) != 1 || hashLen != kRecordHashBytes) {
        return false;
      }
      out += kRecordFramePrefixBytes + bodyLen;
    }
  }
  std::memcpy(lastHash, hash, kRecordHashBytes);
  return true;
}

Napi::Value FrameEventsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4) return ThrowType(env, "expects (blob: Uint8Array, offsets: Uint32Array, firstSeq: number, prevHash: Buffer)");
  if (!IsTypedArrayOf(info[0], napi_uint8_array)) return ThrowType(env, "blob must be a Uint8Array or Buffer");
  if (!IsTypedArrayOf(info[1], napi_uint32_array)) return ThrowType(env, "offsets must be a Uint32Array of [start, end) pairs");
  if (!info[2].IsNumber()) return ThrowType(env, "firstSeq must be a number");
  if (!IsTypedArrayOf(info[3], napi_uint8_array)) return ThrowType(env, "prevHash must be a 32-byte Buffer");

  auto blobArr = info[0].As<Napi::Uint8Array>();
  auto offsetsArr = info[1].As<Napi::Uint32Array>();
  auto prevArr = info[3].As<Napi::Uint8Array>();
  const double seq = info[2].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(seq) || seq < 0 || seq > kMaxSafeInteger || std::floor(seq) != seq) {
    return ThrowType(env, "firstSeq must be a non-negative safe integer");
  }
  if (prevArr.ElementLength() != kRecordHashBytes) {
    return ThrowType(env, "prevHash must be 32 bytes, got " + std::to_string(prevArr.ElementLength()));
  }
  const size_t offsetsLen = offsetsArr.ElementLength();
  if (offsetsLen % 2 != 0) return ThrowType(env, "offsets must hold [start, end) pairs (odd length " + std::to_string(offsetsLen) + ")");
  const size_t count = offsetsLen / 2;
  const uint64_t firstSeq = static_cast<uint64_t>(seq);
  if (count > 0 && firstSeq + (count - 1) > kMaxSafeSeq) {
    return ThrowType(env, "sequence numbers would pass Number.MAX_SAFE_INTEGER");
  }

  const uint8_t* blob = blobArr.Data();
  const size_t blobLen = blobArr.ElementLength();
  const uint32_t* offsets = offsetsArr.Data();
  size_t payloadBytes = 0;
  for (size_t i = 0; i < count; i++) {
    const uint32_t start = offsets[2 * i];
    const uint32_t end = offsets[2 * i + 1];
    if (start > end || end > blobLen) {
      return ThrowType(env, "payload " + std::to_string(i) + " [" + std::to_string(start) + ", " + std::to_string(end) +
                                ") is outside the " + std::to_string(blobLen) + "-byte blob");
    }
    if (kRecordBodyFixedBytes + (end - start) > kRecordMaxFrameBodyBytes) {
      return ThrowType(env, "payload " + std::to_string(i) + " is " + std::to_string(end - start) + " bytes, over the frame limit");
    }
    payloadBytes += end - start;
  }

  const size_t total = RecordFramesSize(count, payloadBytes);
  Napi::Buffer<uint8_t> frames = Napi::Buffer<uint8_t>::New(env, total);
  if (env.IsExceptionPending()) return env.Undefined();
  uint8_t lastHash[kRecordHashBytes];
  if (!FrameEvents(blob, offsets, count, firstSeq, prevArr.Data(), frames.Data(), lastHash)) {
    Napi::Error::New(env, "frameEvents: SHA-256 is not available from OpenSSL").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Buffer<uint8_t> hash = Napi::Buffer<uint8_t>::Copy(env, lastHash, kRecordHashBytes);
  if (env.IsExceptionPending()) return env.Undefined();
  Napi::Object result = Napi::Object::New(env);
  result.Set("frames", frames);
  result.Set("hash", hash);
  return result;
}

}  // namespace vg

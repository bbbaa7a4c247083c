// Frames a batch of recording event payloads in one native call (see record-frame.h): the
// per-record JavaScript version (BigInt sequence, a crc32 call, a hash call and a Buffer per
// frame) was the primary's main cost per recorded statement.
#include "recording/record-frame.h"

#include "recording/crc32-fold.h"

#include <openssl/evp.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>

namespace vg {

namespace {

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

}  // namespace

bool FrameEvents(const uint8_t* blob, const uint32_t* offsets, size_t count, uint64_t firstSeq,
                 const uint8_t prevHash[kRecordHashBytes], uint8_t* out, uint8_t lastHash[kRecordHashBytes]) {
  uint8_t hash[kRecordHashBytes];
  std::memcpy(hash, prevHash, kRecordHashBytes);
  if (count > 0) {
    const EVP_MD* md = Sha256Digest();
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
      PutU32BE(out + 4, Crc32(0, body, bodyLen));
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

}  // namespace vg

// Recording frames built in C++ for the primary's recorder: CRC-32, sequence and SHA-256
// chain for a whole batch of event payloads in one call (see src/recording/segment-format.ts).
//
//   frame = u32 body length | u32 CRC-32 of body | body                 (big-endian)
//   body  = u8 kind | u64 sequence | 32-byte hash of the previous frame | payload
//
// The frame's hash is SHA-256 of its body; each frame carries the previous frame's hash.
// FrameEvents is plain C++ (no N-API) so it can be tested and fuzzed on its own; addon.cc
// exposes it as `frameEvents`.
#pragma once
#include <openssl/evp.h>
#include <cstddef>
#include <cstdint>

namespace vg {

// SHA-256 fetched once per process: EVP_Digest with the legacy EVP_sha256() fetches on every
// call. Null when OpenSSL has no SHA-256.
inline const EVP_MD* Sha256Digest() {
  static const EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

// Number.MAX_SAFE_INTEGER: sequence numbers are JavaScript numbers on the other side.
constexpr uint64_t kMaxSafeSeq = 9007199254740991ULL;
constexpr double kMaxSafeInteger = 9007199254740991.0;

constexpr size_t kRecordHashBytes = 32;
constexpr size_t kRecordFramePrefixBytes = 8;
// kind + sequence + previous hash
constexpr size_t kRecordBodyFixedBytes = 1 + 8 + kRecordHashBytes;
// segment-format.ts MAX_FRAME_BODY_BYTES: a longer frame reads back as corruption.
constexpr size_t kRecordMaxFrameBodyBytes = 64 * 1024 * 1024;
constexpr uint8_t kRecordFrameKindEvent = 2;

// Bytes FrameEvents writes for payloads of `payloadBytes` in total, `count` of them.
inline size_t RecordFramesSize(size_t count, size_t payloadBytes) {
  return count * (kRecordFramePrefixBytes + kRecordBodyFixedBytes) + payloadBytes;
}

// Frames payload i = blob[offsets[2i], offsets[2i+1]) for i < count as Event frames with
// sequence numbers firstSeq, firstSeq + 1, ..., the first chained to `prevHash`. Writes
// RecordFramesSize(count, sum of payload lengths) bytes to `out` and the last frame's hash
// (prevHash when count is 0) to `lastHash`. The caller has checked the offsets and sizes.
// Returns false only if OpenSSL fails (no SHA-256).
bool FrameEvents(const uint8_t* blob, const uint32_t* offsets, size_t count, uint64_t firstSeq,
                 const uint8_t prevHash[kRecordHashBytes], uint8_t* out, uint8_t lastHash[kRecordHashBytes]);

}  // namespace vg

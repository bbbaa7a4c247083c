// See pg-frame-parser.h.
#include "pg/pg-frame-parser.h"

namespace vg {

PgFrameResult PgFrameParser::Feed(const uint8_t* data, size_t len, PgFrameCallbacks* cb) {
  if (failed_) return {PgFrameStatus::Error, 0, "stream already failed"};
  size_t pos = 0;
  while (pos < len) {
    if (!inBody_) {
      messageStart_ = headerHave_ == 0 ? pos : kNotInThisChunk;
      size_t take = 5 - headerHave_;
      if (take > len - pos) take = len - pos;
      for (size_t i = 0; i < take; i++) header_[headerHave_ + i] = data[pos + i];
      headerHave_ = static_cast<uint8_t>(headerHave_ + take);
      pos += take;
      if (headerHave_ < 5) break;
      type_ = header_[0];
      uint32_t length = (uint32_t(header_[1]) << 24) | (uint32_t(header_[2]) << 16) | (uint32_t(header_[3]) << 8) |
                        uint32_t(header_[4]);
      if (length < 4) { failed_ = true; return {PgFrameStatus::Error, pos, "message length below 4"}; }
      if (length > max_) { failed_ = true; return {PgFrameStatus::Error, pos, "message length over the limit"}; }
      headerHave_ = 0;
      bodyLeft_ = length - 4;
      inBody_ = true;
      if (cb) cb->OnMessageStart(type_, bodyLeft_);
    }
    size_t take = bodyLeft_;
    if (take > len - pos) take = len - pos;
    if (take > 0) {
      if (cb) cb->OnMessageBody(type_, data + pos, take);
      pos += take;
      bodyLeft_ -= static_cast<uint32_t>(take);
    }
    if (bodyLeft_ == 0) {
      inBody_ = false;
      messages_++;
      if (cb) cb->OnMessageEnd(type_);
      if (stop_) {
        stop_ = false;
        return {PgFrameStatus::Ok, pos, nullptr};
      }
    }
  }
  return {PgFrameStatus::Ok, pos, nullptr};
}

}  // namespace vg

// See record-sink.h.
#include "recording/record-sink.h"

#include "recording/msgpack-writer.h"
#include "pg/statement-recorder.h"

namespace vg {

void RecordSink::AddMap(const std::string& connection, uint32_t count, const std::string& pairs) {
  size_t connLen = connection.size() > 0xffff ? 0xffff : connection.size();
  size_t header = msgpack::MapHeaderBytes(count);
  buf_.reserve(buf_.size() + 6 + connLen + header + pairs.size());
  msgpack::Be32(&buf_, static_cast<uint32_t>(2 + connLen + header + pairs.size()));
  msgpack::Be16(&buf_, static_cast<uint16_t>(connLen));
  buf_.append(connection.data(), connLen);
  msgpack::MapHeader(&buf_, count);
  buf_ += pairs;
}

void RecordSink::Park(StatementRecorder* r) {
  r->parkPrev_ = nullptr;
  r->parkNext_ = parked_;
  if (parked_ != nullptr) parked_->parkPrev_ = r;
  parked_ = r;
}

void RecordSink::Unpark(StatementRecorder* r) {
  if (r->parkPrev_ != nullptr) r->parkPrev_->parkNext_ = r->parkNext_;
  else parked_ = r->parkNext_;
  if (r->parkNext_ != nullptr) r->parkNext_->parkPrev_ = r->parkPrev_;
  r->parkPrev_ = r->parkNext_ = nullptr;
}

void RecordSink::Sweep(double before) {
  // Flushing unparks the one flushed, nothing else: take the next one first.
  for (StatementRecorder* r = parked_; r != nullptr;) {
    StatementRecorder* next = r->parkNext_;
    if (r->pendingSince() <= before) r->FlushPending();
    r = next;
  }
}

}  // namespace vg

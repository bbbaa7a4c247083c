// See record-sink.h.
#include "record-sink.h"

#include <vector>

#include "msgpack-writer.h"
#include "statement-recorder.h"

namespace vg {

void RecordSink::Add(const std::string& connection, const std::string& payload) {
  size_t connLen = connection.size() > 0xffff ? 0xffff : connection.size();
  msgpack::Be32(&buf_, static_cast<uint32_t>(2 + connLen + payload.size()));
  msgpack::Be16(&buf_, static_cast<uint16_t>(connLen));
  buf_.append(connection.data(), connLen);
  buf_ += payload;
  events_++;
}

void RecordSink::Sweep(double before) {
  if (parked_.empty()) return;
  // Flushing unparks: walk a copy.
  std::vector<StatementRecorder*> due;
  for (StatementRecorder* r : parked_) {
    if (r->pendingSince() <= before) due.push_back(r);
  }
  for (StatementRecorder* r : due) r->FlushPending();
}

}  // namespace vg

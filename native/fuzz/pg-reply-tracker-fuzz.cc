// libFuzzer target for the PostgreSQL reply tracker (pg/pg-reply-tracker.h), fed arbitrary
// sequences of client and server message types, as a confused or hostile peer would send
// them: no out-of-bounds access, the pending count never exceeds the requests made, refusal
// ids retire in order and only ids that were handed in come back.
//
// Input: pairs `op, byte`: op bit 0 = from the client (byte is the message type; op bit 1
// marks it a refused statement's stand-in with the next refusal id; op bit 2 picks the
// Describe/Close detail 'S' or 'P') or from the server (byte is the message type).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "pg/pg-reply-tracker.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vg::PgReplyTracker t;
  uint32_t nextRefusal = 1;
  size_t requests = 0;
  uint32_t lastRetired = 0;
  for (size_t i = 0; i + 1 < size; i += 2) {
    const uint8_t op = data[i];
    const uint8_t type = data[i + 1];
    if (op & 1) {
      const uint32_t refusal = (op & 2) ? nextRefusal++ : 0;
      t.OnClientMessage(type, (op & 4) ? 'P' : 'S', refusal);
      requests++;
    } else {
      const uint32_t answered = t.OnServerMessage(type);
      if (answered >= nextRefusal) abort();  // an id never handed in
      if (answered != 0 && type != 'E') abort();
    }
    if (t.Pending() > requests) abort();
    if (t.LastRetiredRefusal() < lastRetired || t.LastRetiredRefusal() >= nextRefusal) abort();
    lastRetired = t.LastRetiredRefusal();
    if (t.Empty() != (t.Pending() == 0)) abort();
  }
  return 0;
}

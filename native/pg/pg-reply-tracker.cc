// See pg-reply-tracker.h.
#include "pg/pg-reply-tracker.h"

namespace vg {

namespace {
// A queue that grew for a long pipeline gives its memory back once drained past this.
constexpr size_t kKeptCapacity = 32;
}  // namespace

void PgReplyTracker::OnClientMessage(uint8_t type, uint8_t detail, uint32_t refusal, PgReplyAction action, uint32_t tag) {
  PgRequest kind;
  switch (type) {
    case 'P': kind = PgRequest::Parse; break;
    case 'B': kind = PgRequest::Bind; break;
    case 'D': kind = detail == 'S' ? PgRequest::DescribeStatement : PgRequest::DescribePortal; break;
    case 'E': kind = PgRequest::Execute; break;
    case 'C': kind = PgRequest::Close; break;
    case 'S': kind = PgRequest::Sync; break;
    case 'Q': kind = PgRequest::Query; break;
    case 'F': kind = PgRequest::FunctionCall; break;
    default: return;  // H, d, c, f, X, p: no reply of their own
  }
  items_.push_back(Item{kind, action, false, refusal, tag});
  if (action != PgReplyAction::Forward) rewrites_++;
}

void PgReplyTracker::Pop(bool answered) {
  const Item& item = items_[head_];
  if (item.refusal > lastRetiredRefusal_) lastRetiredRefusal_ = item.refusal;
  if (item.action != PgReplyAction::Forward) rewrites_--;
  if (item.tag != 0) outcomes_.push_back(PgTaggedOutcome{item.tag, answered && !item.failed});
  head_++;
  if (head_ == items_.size()) {
    items_.clear();
    head_ = 0;
    if (items_.capacity() > kKeptCapacity) items_.shrink_to_fit();
  }
}

size_t PgReplyTracker::Abandon(bool* endsAtSyncPoint) {
  size_t syncPoints = 0;
  bool last = true;
  while (!Empty()) {
    const Item& item = items_[head_];
    bool sync = item.kind == PgRequest::Sync || item.kind == PgRequest::Query || item.kind == PgRequest::FunctionCall;
    if (item.action != PgReplyAction::Fake) {
      if (sync) syncPoints++;
      last = sync;
    }
    Pop(false);
  }
  *endsAtSyncPoint = last;
  return syncPoints;
}

void PgReplyTracker::SkipToSync() {
  while (!Empty() && items_[head_].kind != PgRequest::Sync) Pop(false);
}

uint32_t PgReplyTracker::OnServerMessage(uint8_t type) {
  dropCurrent_ = false;
  if (Empty()) return 0;
  const PgRequest front = items_[head_].kind;
  const bool drop = items_[head_].action == PgReplyAction::Drop;
  switch (type) {
    case '1':
      if (front == PgRequest::Parse) {
        dropCurrent_ = drop;
        Pop(true);
      }
      break;
    case '2': if (front == PgRequest::Bind) Pop(true); break;
    case '3':
      if (front == PgRequest::Close) {
        dropCurrent_ = drop;
        Pop(true);
      }
      break;
    case 'T':  // RowDescription: a Describe's answer (inside a Query it is part of the results)
    case 'n':  // NoData
      if (front == PgRequest::DescribeStatement || front == PgRequest::DescribePortal) Pop(true);
      break;
    case 'C':  // CommandComplete, EmptyQueryResponse, PortalSuspended end an Execute
    case 'I':
    case 's':
      if (front == PgRequest::Execute) Pop(true);
      break;
    case 'Z':
      // Answers the first Sync, Query or FunctionCall; anything before it was answered.
      while (!Empty()) {
        PgRequest k = items_[head_].kind;
        bool ends = k == PgRequest::Sync || k == PgRequest::Query || k == PgRequest::FunctionCall;
        Pop(ends);
        if (ends) break;
      }
      break;
    case 'E': {
      uint32_t refusal = items_[head_].refusal;
      // A Query's or FunctionCall's error is followed by its ReadyForQuery; so is a Sync's
      // (a deferred constraint failing at commit). An extended message's error makes the
      // server skip to the next Sync.
      if (front != PgRequest::Query && front != PgRequest::FunctionCall && front != PgRequest::Sync) {
        Pop(false);
        SkipToSync();
      } else {
        items_[head_].failed = true;
      }
      return refusal;
    }
    default:
      break;  // t, V, G, H, W, d, c, D, N, A, S, K: part of an answer, or asynchronous
  }
  return 0;
}

}  // namespace vg

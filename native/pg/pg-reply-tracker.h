// Which client requests a PostgreSQL server still owes a reply, in order (PgBouncer's
// "outstanding requests"). The pump needs it to know when a session is idle (every request
// answered, ReadyForQuery 'I'), which request an ErrorResponse answers (so that a statement
// the gateway refused and replaced by one the server must fail gets the gateway's words), and
// what the server skips after an error in an extended-protocol batch (everything up to Sync,
// simple Queries and FunctionCalls included: postgres.c `ignore_till_sync`).
//
// Pure C++: it sees message types (and a Describe's first body byte), never sockets.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace vg {

enum class PgRequest : uint8_t { Parse, Bind, DescribeStatement, DescribePortal, Execute, Close, Sync, Query, FunctionCall };

// Whose answer a request gets (transaction pooling rewrites some requests: pg/prepared-statements.h).
enum class PgReplyAction : uint8_t {
  Forward,  // the server's answer goes to the client
  Drop,     // the gateway sent the request itself (a Parse or Close of its own): the answer is dropped
  Fake,     // never sent to the server: the gateway answers it when every request before it was answered
};

// A request's outcome, for requests given a tag: answered (ok), or failed or skipped by an error.
struct PgTaggedOutcome {
  uint32_t tag;
  bool ok;
};

class PgReplyTracker {
 public:
  // A client message the server will read (after any substitution by the gateway). `detail`
  // is a Describe's or Close's first body byte ('S' or 'P'); `refusal` is non-zero when the
  // message is the gateway's stand-in for a refused statement (ids increase). Messages that
  // need no reply (Flush, CopyData, CopyDone, CopyFail, Terminate) are ignored.
  // `action` and `tag` (non-zero: its outcome is reported by TakeOutcomes) are the gateway's.
  void OnClientMessage(uint8_t type, uint8_t detail, uint32_t refusal, PgReplyAction action = PgReplyAction::Forward,
                       uint32_t tag = 0);
  // A server message starts. For an ErrorResponse, returns the refusal id of the request it
  // answers (0: not a stand-in, or an error nobody asked for, e.g. a FATAL at shutdown).
  uint32_t OnServerMessage(uint8_t type);
  // The server message OnServerMessage just saw answers a request of action Drop.
  bool DropCurrent() const { return dropCurrent_; }
  // The oldest unanswered request is one the gateway answers (Fake): its kind and tag; PopFake
  // retires it (the caller has written the answer).
  bool FrontIsFake() const { return !Empty() && items_[head_].action == PgReplyAction::Fake; }
  PgRequest FrontKind() const { return items_[head_].kind; }
  uint32_t FrontTag() const { return items_[head_].tag; }
  void PopFake() { Pop(true); }
  // The server is gone: every request retires unanswered. Returns how many of them expected a
  // ReadyForQuery (Sync, Query, FunctionCall; the gateway's Fakes not counted), and whether
  // the last one did (else the client's batch is unfinished: more is coming before its Sync).
  size_t Abandon(bool* endsAtSyncPoint);
  // Requests of action Drop or Fake not yet retired (the server's answers need rewriting).
  size_t Rewrites() const { return rewrites_; }
  // Tagged requests retired since the last call, in order.
  bool HasOutcomes() const { return !outcomes_.empty(); }
  void TakeOutcomes(std::vector<PgTaggedOutcome>* out) {
    out->swap(outcomes_);
    outcomes_.clear();
  }
  bool Empty() const { return head_ == items_.size(); }
  size_t Pending() const { return items_.size() - head_; }
  // Every refusal id up to this one was answered or skipped by the server.
  uint32_t LastRetiredRefusal() const { return lastRetiredRefusal_; }

 private:
  struct Item {
    PgRequest kind;
    PgReplyAction action;
    bool failed;  // an ErrorResponse answered it (a Query's, a Sync's), its ReadyForQuery still to come
    uint32_t refusal;
    uint32_t tag;
  };
  bool FrontIs(PgRequest k) const { return !Empty() && items_[head_].kind == k; }
  // Retires the oldest request: `answered` when the server's answer was its success.
  void Pop(bool answered);
  // After an error in the extended protocol: the server skips everything up to Sync.
  void SkipToSync();
  std::vector<Item> items_;
  size_t head_ = 0;
  uint32_t lastRetiredRefusal_ = 0;
  size_t rewrites_ = 0;
  bool dropCurrent_ = false;
  std::vector<PgTaggedOutcome> outcomes_;
};

}  // namespace vg

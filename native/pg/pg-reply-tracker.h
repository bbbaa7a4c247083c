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

class PgReplyTracker {
 public:
  // A client message the server will read (after any substitution by the gateway). `detail`
  // is a Describe's or Close's first body byte ('S' or 'P'); `refusal` is non-zero when the
  // message is the gateway's stand-in for a refused statement (ids increase). Messages that
  // need no reply (Flush, CopyData, CopyDone, CopyFail, Terminate) are ignored.
  void OnClientMessage(uint8_t type, uint8_t detail, uint32_t refusal);
  // A server message starts. For an ErrorResponse, returns the refusal id of the request it
  // answers (0: not a stand-in, or an error nobody asked for, e.g. a FATAL at shutdown).
  uint32_t OnServerMessage(uint8_t type);
  bool Empty() const { return head_ == items_.size(); }
  size_t Pending() const { return items_.size() - head_; }
  // Every refusal id up to this one was answered or skipped by the server.
  uint32_t LastRetiredRefusal() const { return lastRetiredRefusal_; }

 private:
  struct Item {
    PgRequest kind;
    uint32_t refusal;
  };
  bool FrontIs(PgRequest k) const { return !Empty() && items_[head_].kind == k; }
  void Pop();
  // After an error in the extended protocol: the server skips everything up to Sync.
  void SkipToSync();
  std::vector<Item> items_;
  size_t head_ = 0;
  uint32_t lastRetiredRefusal_ = 0;
};

}  // namespace vg

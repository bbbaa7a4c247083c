// Transaction pooling: protocol-level prepared statements (named Parse, then Bind, Describe,
// Close by name) carried across server sessions, PgBouncer's approach (max_prepared_statements):
//  - a statement is its text and parameter types; identical statements of any session on the
//    thread share one server-side name (PgStatementRegistry), so a backend prepares each once;
//  - each client session maps its own names to statements (the pump's table);
//  - each server link remembers which statements its backend has prepared, least recently
//    used first, at most `capacity` (PgServerStatements); the pump prepares a statement on the
//    link that serves a transaction before the first Bind or Describe that needs it there, and
//    closes the least recently used one when the link is full.
// No sockets here: the pump (session/pump.h) rewrites the messages.
#pragma once
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "net/leg.h"

namespace vg {

// One statement as servers prepare it.
struct PgStatement {
  // The Parse body after the statement name: "text\0" then the parameter type count and OIDs.
  std::string tail;
  // The server-side name: "vecgate_" and a number unique on the thread.
  std::string serverName;
};
using PgStatementRef = std::shared_ptr<PgStatement>;

// Server-side names are this prefix and a number. A client's protocol-level names are always
// mapped, so they never reach these; SQL text (EXECUTE, DEALLOCATE) can name them: a pinned
// session's DEALLOCATE of one leaves its own link's set stale (that link is closed with it),
// and read sessions refuse EXECUTE of names they did not PREPARE.
constexpr char kServerStatementPrefix[] = "vecgate_";

// Statements in use on this thread (a pump's thread: its sessions and links), by content.
class PgStatementRegistry {
 public:
  static PgStatementRegistry& ForThisThread();
  // The statement with this Parse tail: the one already in use, or a new one with a new name.
  PgStatementRef Intern(const char* tail, size_t len);
  // A server-side name no statement has (the gateway's own short-lived ones).
  std::string FreshName() { return kServerStatementPrefix + std::to_string(next_++); }

 private:
  void Sweep();
  std::unordered_multimap<size_t, std::weak_ptr<PgStatement>> byHash_;
  uint64_t next_ = 1;
  size_t sweepAt_ = 1024;
};

// What one server link's backend has prepared (the link's LegState).
class PgServerStatements final : public LegState {
 public:
  explicit PgServerStatements(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}
  bool Has(const PgStatement* s) const { return index_.count(s) != 0; }
  // Marks `s` most recently used.
  void Touch(const PgStatement* s);
  // Records `s` as prepared; when full and `mayEvict`, first drops the least recently used
  // statement and returns it (the caller closes it on the server before preparing `s`);
  // without `mayEvict` the set grows past its capacity.
  PgStatementRef Add(PgStatementRef s, bool mayEvict = true);
  void Remove(const PgStatement* s);
  void Clear() {
    index_.clear();
    lru_.clear();
  }
  // What the backend has prepared is no longer known (a DEALLOCATE ALL or DISCARD ALL sent
  // on, which may or may not run): from now on each Parse the gateway sends here is preceded
  // by a Close of its name (closing a name that does not exist is no error).
  void MarkUncertain() {
    Clear();
    closeFirst_ = true;
  }
  bool closeFirst() const { return closeFirst_; }
  size_t size() const { return lru_.size(); }

 private:
  size_t capacity_;
  bool closeFirst_ = false;
  std::list<PgStatementRef> lru_;  // front: least recently used
  std::unordered_map<const PgStatement*, std::list<PgStatementRef>::iterator> index_;
};

// A DEALLOCATE the gateway answers itself (a client's names are its own): the whole text is
// `DEALLOCATE [PREPARE] name|ALL` with an optional `;` (whitespace around words allowed).
// False when the text is anything else (other statements, comments).
struct PgDeallocate {
  bool all = false;
  std::string name;  // as PostgreSQL reads it: unquoted folded to lower case, quoted verbatim
};
bool ParseDeallocate(const char* sql, size_t len, PgDeallocate* out);
// The whole text is `DISCARD ALL` with an optional `;`.
bool IsDiscardAll(const char* sql, size_t len);

}  // namespace vg

// See prepared-statements.h.
#include "pg/prepared-statements.h"

#include <functional>
#include <string_view>
#include <vector>

namespace vg {

PgStatementRegistry& PgStatementRegistry::ForThisThread() {
  static thread_local PgStatementRegistry registry;
  return registry;
}

PgStatementRef PgStatementRegistry::Intern(const char* tail, size_t len) {
  std::string_view key(tail, len);
  size_t h = std::hash<std::string_view>()(key);
  auto range = byHash_.equal_range(h);
  for (auto it = range.first; it != range.second; ++it) {
    PgStatementRef s = it->second.lock();
    if (s && s->tail == key) return s;
  }
  if (byHash_.size() >= sweepAt_) Sweep();
  auto s = std::make_shared<PgStatement>();
  s->tail.assign(tail, len);
  s->serverName = kServerStatementPrefix + std::to_string(next_++);
  byHash_.emplace(h, s);
  return s;
}

void PgStatementRegistry::Sweep() {
  // Entries of statements nobody holds any more are dropped; the next sweep comes when the
  // table has doubled again, so interning stays amortized constant time.
  for (auto it = byHash_.begin(); it != byHash_.end();) {
    if (it->second.expired()) it = byHash_.erase(it);
    else ++it;
  }
  sweepAt_ = byHash_.size() * 2 < 1024 ? 1024 : byHash_.size() * 2;
}

void PgServerStatements::Touch(const PgStatement* s) {
  auto it = index_.find(s);
  if (it == index_.end()) return;
  lru_.splice(lru_.end(), lru_, it->second);
}

PgStatementRef PgServerStatements::Add(PgStatementRef s, bool mayEvict) {
  if (Has(s.get())) {
    Touch(s.get());
    return nullptr;
  }
  PgStatementRef evicted;
  if (mayEvict && lru_.size() >= capacity_) {
    evicted = std::move(lru_.front());
    lru_.pop_front();
    index_.erase(evicted.get());
  }
  const PgStatement* key = s.get();
  lru_.push_back(std::move(s));
  index_[key] = std::prev(lru_.end());
  return evicted;
}

void PgServerStatements::Remove(const PgStatement* s) {
  auto it = index_.find(s);
  if (it == index_.end()) return;
  lru_.erase(it->second);
  index_.erase(it);
}

namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool IsIdentStart(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80; }
bool IsIdentChar(unsigned char c) { return IsIdentStart(c) || (c >= '0' && c <= '9') || c == '$'; }

// Reads the words of a whole short statement: unquoted identifiers (lower-cased) and quoted
// identifiers (verbatim, marked by a leading '"'), an optional final ';'. False on anything
// else (strings, comments, operators, a second statement).
bool Words(const char* sql, size_t len, std::vector<std::string>* words) {
  size_t i = 0;
  bool semicolon = false;
  while (i < len) {
    char c = sql[i];
    if (IsSpace(c)) {
      i++;
    } else if (semicolon) {
      return false;  // something after the ';'
    } else if (c == ';') {
      semicolon = true;
      i++;
    } else if (c == '"') {
      std::string w = "\"";
      i++;
      bool closed = false;
      while (i < len) {
        if (sql[i] == '"') {
          if (i + 1 < len && sql[i + 1] == '"') {
            w.push_back('"');
            i += 2;
            continue;
          }
          i++;
          closed = true;
          break;
        }
        w.push_back(sql[i++]);
      }
      if (!closed || w.size() == 1) return false;
      words->push_back(std::move(w));
    } else if (IsIdentStart(static_cast<unsigned char>(c))) {
      std::string w;
      while (i < len && IsIdentChar(static_cast<unsigned char>(sql[i]))) {
        char ch = sql[i++];
        w.push_back(ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch + 32) : ch);
      }
      words->push_back(std::move(w));
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

bool ParseDeallocate(const char* sql, size_t len, PgDeallocate* out) {
  std::vector<std::string> w;
  if (!Words(sql, len, &w)) return false;
  size_t i = 0;
  if (w.size() < 2 || w[i++] != "deallocate") return false;
  if (w[i] == "prepare" && w.size() == 3) i++;
  if (i + 1 != w.size()) return false;
  const std::string& name = w[i];
  if (name == "all") {
    out->all = true;
    out->name.clear();
    return true;
  }
  out->all = false;
  out->name = name[0] == '"' ? name.substr(1) : name;
  return true;
}

bool IsDiscardAll(const char* sql, size_t len) {
  std::vector<std::string> w;
  return Words(sql, len, &w) && w.size() == 2 && w[0] == "discard" && w[1] == "all";
}

}  // namespace vg

// See session-pins.h.
#include "pg/session-pins.h"

#include <string>
#include <vector>

namespace vg {

namespace {

bool IsIdentStart(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80; }
bool IsIdentChar(unsigned char c) { return IsIdentStart(c) || (c >= '0' && c <= '9') || c == '$'; }

// The words of one statement, lower-cased (keywords and unquoted identifiers only: strings,
// quoted identifiers, numbers and operators are left out, as none of them is a keyword).
struct Statement {
  std::vector<std::string> words;
  bool Has(const char* w) const {
    for (const std::string& x : words)
      if (x == w) return true;
    return false;
  }
  const char* Word(size_t i) const { return i < words.size() ? words[i].c_str() : ""; }
};

const char* PinOf(const Statement& s) {
  if (s.words.empty()) return nullptr;
  const std::string& first = s.words[0];
  if (first == "set") {
    const std::string second = s.Word(1);
    if (second == "local" || second == "transaction") return nullptr;  // this transaction only
    return "SET";
  }
  if (first == "prepare") return "PREPARE";
  // The ones a pooled session's own names allow are answered before this (pump.cc StatementQuery).
  if (first == "deallocate") return "DEALLOCATE";
  if (first == "discard" && s.Word(1) == std::string("all")) return "DISCARD";
  if (first == "listen") return "LISTEN";
  if (first == "load") return "LOAD";
  if (first == "do") return "DO block";
  if (first == "declare" && s.Has("hold")) return "cursor WITH HOLD";
  if ((first == "create" || first == "select" || first == "with") && (s.Has("temp") || s.Has("temporary"))) return "temporary table";
  for (const std::string& w : s.words) {
    if (w == "set_config") return "set_config()";
    if (w == "pg_advisory_lock" || w == "pg_advisory_lock_shared" || w == "pg_try_advisory_lock" || w == "pg_try_advisory_lock_shared")
      return "session advisory lock";
    if (w == "dblink_connect" || w == "dblink_connect_u") return "dblink connection";
  }
  return nullptr;
}

// One reading of the text. `backslashEscapes`: backslashes escape in every string (as with
// standard_conforming_strings off), else only in E'' strings.
const char* Scan(const char* sql, size_t len, bool backslashEscapes) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(sql);
  size_t i = 0;
  Statement st;
  while (i < len) {
    unsigned char c = p[i];
    if (c == ';') {
      if (const char* r = PinOf(st)) return r;
      st.words.clear();
      i++;
    } else if (c == '-' && i + 1 < len && p[i + 1] == '-') {
      while (i < len && p[i] != '\n') i++;
    } else if (c == '/' && i + 1 < len && p[i + 1] == '*') {
      int depth = 1;  // PostgreSQL's block comments nest
      i += 2;
      while (i < len && depth > 0) {
        if (p[i] == '/' && i + 1 < len && p[i + 1] == '*') {
          depth++;
          i += 2;
        } else if (p[i] == '*' && i + 1 < len && p[i + 1] == '/') {
          depth--;
          i += 2;
        } else {
          i++;
        }
      }
    } else if (c == '\'' || c == '"') {
      // A string (E'...' takes backslash escapes; its E was read as a word and is harmless)
      // or a quoted identifier; a doubled quote stays inside.
      unsigned char q = c;
      bool escapes = q == '\'' && (backslashEscapes || (i > 0 && (p[i - 1] == 'e' || p[i - 1] == 'E')));
      i++;
      while (i < len) {
        if (escapes && p[i] == '\\' && i + 1 < len) {
          i += 2;
        } else if (p[i] == q) {
          if (i + 1 < len && p[i + 1] == q) {
            i += 2;
          } else {
            i++;
            break;
          }
        } else {
          i++;
        }
      }
    } else if (c == '$' && i + 1 < len && (p[i + 1] == '$' || IsIdentStart(p[i + 1]))) {
      // A dollar quote: $$...$$ or $tag$...$tag$ (a $ after a word char was part of the word).
      size_t j = i + 1;
      while (j < len && p[j] != '$' && IsIdentChar(p[j]) && p[j] != '$') j++;
      if (j < len && p[j] == '$') {
        std::string tag(sql + i, j - i + 1);
        size_t end = std::string(sql + j + 1, len - j - 1).find(tag);
        i = end == std::string::npos ? len : j + 1 + end + tag.size();
      } else {
        i = j;
      }
    } else if (IsIdentStart(c)) {
      size_t j = i;
      std::string w;
      while (j < len && IsIdentChar(p[j])) {
        unsigned char ch = p[j];
        w.push_back(static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch));
        j++;
      }
      st.words.push_back(std::move(w));
      i = j;
    } else {
      i++;
    }
  }
  return PinOf(st);
}

}  // namespace

const char* SessionPinReason(const char* sql, size_t len) {
  // Both readings of backslashes in strings: the session's standard_conforming_strings may be
  // either, and a statement pins if it pins in either reading.
  if (const char* r = Scan(sql, len, false)) return r;
  return Scan(sql, len, true);
}

}  // namespace vg

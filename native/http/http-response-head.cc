// See http-response-head.h. The rules are the JavaScript reader's (parseHead / takeHead in
// upstream-response-parser.ts): a head ends at the first CRLF CRLF and holds no LF without its
// CR; the status line is `HTTP/1.[01] [1-9]DD` with an optional ` reason` of tab, visible
// ASCII or bytes >= 0x80; no line starts with SP or HT (obs-fold); a field is `token:value`,
// the value trimmed of what JavaScript's trim() removes in latin1 (HT, LF, VT, FF, CR, SP,
// NBSP) and then only HT, SP..~ and bytes >= 0x80.
#include "http/http-response-head.h"

#include <cstring>

namespace vg {

namespace {

// RFC 9110 token characters.
constexpr bool IsTokenChar(uint8_t c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '!' || c == '#' || c == '$' || c == '%' || c == '&' || c == '\'' ||
         c == '*' || c == '+' || c == '-' || c == '.' || c == '^' || c == '_' || c == '`' || c == '|' || c == '~';
}

constexpr bool IsFieldValueChar(uint8_t c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

// What String.prototype.trim() removes, among latin1 characters.
constexpr bool IsJsTrimmed(uint8_t c) { return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0xa0; }

bool EqualsLower(std::string_view s, const char* lower) {
  size_t n = std::strlen(lower);
  if (s.size() != n) return false;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = static_cast<uint8_t>(s[i]);
    if (c >= 'A' && c <= 'Z') c = static_cast<uint8_t>(c + 32);
    if (c != static_cast<uint8_t>(lower[i])) return false;
  }
  return true;
}

std::string_view TrimSpHt(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The head's end (offset of its CRLF CRLF), or npos.
size_t HeadEnd(const uint8_t* b, size_t n) {
  const void* p = b;
  size_t at = 0;
  while (at + 4 <= n) {
    p = std::memchr(b + at, '\r', n - at - 3);
    if (!p) return std::string_view::npos;
    at = static_cast<size_t>(static_cast<const uint8_t*>(p) - b);
    if (b[at + 1] == '\n' && b[at + 2] == '\r' && b[at + 3] == '\n') return at;
    at++;
  }
  return std::string_view::npos;
}

}  // namespace

bool ReadResponseHead(const uint8_t* b, size_t n, size_t maxHeadBytes, ResponseHeadFields* out) {
  const size_t end = HeadEnd(b, n);
  if (end == std::string_view::npos || end + 4 > maxHeadBytes) return false;
  // No bare LF anywhere in the head (every LF follows a CR).
  for (const uint8_t* p = b; (p = static_cast<const uint8_t*>(std::memchr(p, '\n', static_cast<size_t>(b + end - p)))) != nullptr; p++) {
    if (p == b || p[-1] != '\r') return false;
  }
  const char* text = reinterpret_cast<const char*>(b);
  const std::string_view head(text, end);
  // Status line.
  size_t eol = head.find("\r\n");
  const std::string_view status = head.substr(0, eol);
  if (status.size() < 12 || status.compare(0, 7, "HTTP/1.") != 0 || (status[7] != '0' && status[7] != '1') || status[8] != ' ') return false;
  if (status[9] < '1' || status[9] > '9' || status[10] < '0' || status[10] > '9' || status[11] < '0' || status[11] > '9') return false;
  out->minor = status[7] - '0';
  out->status = (status[9] - '0') * 100 + (status[10] - '0') * 10 + (status[11] - '0');
  out->reason = std::string_view();
  if (status.size() > 12) {
    if (status[12] != ' ') return false;
    out->reason = status.substr(13);
    for (char ch : out->reason) {
      if (!IsFieldValueChar(static_cast<uint8_t>(ch))) return false;
    }
  }
  out->used = end + 4;
  out->contentLength = -1;
  out->transferEncoding = out->chunked = out->closeToken = out->keepAliveToken = false;
  out->fields.clear();
  size_t at = eol == std::string_view::npos ? head.size() : eol + 2;
  while (at < head.size()) {
    size_t next = head.find("\r\n", at);
    if (next == std::string_view::npos) next = head.size();
    const std::string_view line = head.substr(at, next - at);
    at = next + 2;
    if (line.empty()) return false;  // cannot happen before CRLF CRLF; leave it to JavaScript
    if (out->fields.size() / 2 >= kMaxResponseHeaderFields) return false;
    const size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) return false;
    const std::string_view name = line.substr(0, colon);
    for (char ch : name) {
      if (!IsTokenChar(static_cast<uint8_t>(ch))) return false;
    }
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && IsJsTrimmed(static_cast<uint8_t>(value.front()))) value.remove_prefix(1);
    while (!value.empty() && IsJsTrimmed(static_cast<uint8_t>(value.back()))) value.remove_suffix(1);
    for (char ch : value) {
      if (!IsFieldValueChar(static_cast<uint8_t>(ch))) return false;
    }
    out->fields.push_back(name);
    out->fields.push_back(value);
    if (EqualsLower(name, "content-length")) {
      // One plain number; lists and repeats are the JavaScript reader's to judge.
      if (out->contentLength >= 0 || value.empty() || value.size() > 15) return false;
      int64_t v = 0;
      for (char ch : value) {
        if (ch < '0' || ch > '9') return false;
        v = v * 10 + (ch - '0');
      }
      out->contentLength = v;
    } else if (EqualsLower(name, "transfer-encoding")) {
      if (out->transferEncoding || !EqualsLower(value, "chunked")) return false;
      out->transferEncoding = true;
      out->chunked = true;
    } else if (EqualsLower(name, "connection")) {
      std::string_view rest = value;
      while (true) {
        const size_t comma = rest.find(',');
        const std::string_view raw = rest.substr(0, comma);
        const std::string_view token = TrimSpHt(raw);
        // Only SP/HT around list items here; other trimmed characters go to JavaScript.
        for (char ch : raw) {
          if (IsJsTrimmed(static_cast<uint8_t>(ch)) && ch != ' ' && ch != '\t') return false;
        }
        if (EqualsLower(token, "close")) out->closeToken = true;
        else if (EqualsLower(token, "keep-alive")) out->keepAliveToken = true;
        if (comma == std::string_view::npos) break;
        rest = rest.substr(comma + 1);
      }
    }
  }
  return true;
}

}  // namespace vg

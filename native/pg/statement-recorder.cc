// See statement-recorder.h. Each function names the JavaScript it mirrors in
// workers/pg-statement-recorder.ts, src/recording/summarize-vector.ts or redact-event.ts.
#include "pg/statement-recorder.h"

#include <openssl/evp.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "recording/msgpack-writer.h"
#include "recording/record-frame.h"

namespace vg {

namespace {

namespace mp = msgpack;

// Date.now().
double NowMs() {
  return std::floor(std::chrono::duration<double, std::milli>(std::chrono::system_clock::now().time_since_epoch()).count());
}

bool IsAscii(const char* s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (static_cast<unsigned char>(s[i]) >= 0x80) return false;
  }
  return true;
}

inline char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }
inline bool IsWordChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
bool MatchAt(const char* s, size_t n, size_t i, const char* word, size_t wn) {
  if (i + wn > n) return false;
  for (size_t k = 0; k < wn; k++) {
    if (Lower(s[i + k]) != word[k]) return false;
  }
  return true;
}

// JavaScript's \s for ASCII.
inline bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }
inline bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Number() of a run of ASCII digits: strtod's correctly rounded value, from a stack copy when it fits.
double DigitsValue(const char* s, size_t n) {
  char b[64];
  if (n < sizeof b) {
    std::memcpy(b, s, n);
    b[n] = '\0';
    return std::strtod(b, nullptr);
  }
  return std::strtod(std::string(s, n).c_str(), nullptr);
}

// One number of NUMBER_LIST: -?\d+(\.\d+)?([eE][-+]?\d+)?
bool ScanNumber(const char* s, size_t n, size_t* i) {
  size_t j = *i;
  if (j < n && s[j] == '-') j++;
  size_t d = j;
  while (j < n && IsDigit(s[j])) j++;
  if (j == d) return false;
  if (j + 1 < n && s[j] == '.' && IsDigit(s[j + 1])) {
    j++;
    while (j < n && IsDigit(s[j])) j++;
  }
  if (j < n && (s[j] == 'e' || s[j] == 'E')) {
    size_t k = j + 1;
    if (k < n && (s[k] == '-' || s[k] == '+')) k++;
    if (k < n && IsDigit(s[k])) {
      while (k < n && IsDigit(s[k])) k++;
      j = k;
    }
  }
  *i = j;
  return true;
}

// NUMBER_LIST.test(text), then text.replace(/[[\]{}()\s]/g, '').split(',').map(Number).
bool ParseNumberList(const char* s, size_t n, std::vector<double>* values) {
  size_t i = 0;
  auto skip = [&] {
    while (i < n && IsSpace(s[i])) i++;
  };
  skip();
  if (i < n && (s[i] == '[' || s[i] == '{' || s[i] == '(')) i++;
  skip();
  std::vector<std::pair<size_t, size_t>> tokens;
  size_t start = i;
  if (!ScanNumber(s, n, &i)) return false;
  tokens.emplace_back(start, i);
  for (;;) {
    size_t save = i;
    skip();
    if (i < n && s[i] == ',') {
      i++;
      skip();
      start = i;
      if (!ScanNumber(s, n, &i)) return false;
      tokens.emplace_back(start, i);
      continue;
    }
    i = save;
    break;
  }
  if (tokens.size() < 2) return false;
  skip();
  if (i < n && (s[i] == ']' || s[i] == '}' || s[i] == ')')) i++;
  skip();
  if (i != n) return false;
  values->clear();
  values->reserve(tokens.size());
  std::string tok;
  for (auto& t : tokens) {
    tok.assign(s + t.first, t.second - t.first);
    values->push_back(std::strtod(tok.c_str(), nullptr));
  }
  return true;
}

const char kHex[] = "0123456789abcdef";

// summarizeVector(): {dims, norm, hash}.
void VectorSummary(const std::vector<double>& values, std::string* out) {
  std::vector<float> f(values.size());
  double sum = 0;
  for (size_t i = 0; i < values.size(); i++) {
    f[i] = static_cast<float>(values[i]);  // Math.fround
    double v = f[i];
    sum += v * v;
  }
  // Little-endian float32 bytes (this machine is little-endian, as Node's supported ones are).
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdLen = 0;
  const EVP_MD* sha256 = Sha256Digest();
  if (sha256 == nullptr || EVP_Digest(f.data(), f.size() * sizeof(float), md, &mdLen, sha256, nullptr) != 1) std::memset(md, 0, sizeof md);
  char hex[kVectorHashHexDigits];
  for (size_t k = 0; k < kVectorHashHexDigits; k++) hex[k] = kHex[(md[k / 2] >> (k % 2 ? 0 : 4)) & 0xf];
  mp::MapHeader(out, 1);
  mp::Lit(out, "vector");
  mp::MapHeader(out, 3);
  mp::Lit(out, "dims");
  mp::Number(out, static_cast<double>(values.size()));
  mp::Lit(out, "norm");
  mp::Number(out, std::sqrt(sum));
  mp::Lit(out, "hash");
  mp::Str(out, hex, kVectorHashHexDigits);
}

void RenderOrRedact(RecordSink* sink, RenderKind kind, const char* s, size_t n, std::string* out) {
  RecordRenderer* r = sink->renderer();
  if (r != nullptr && r->Render(kind, s, n, out)) return;
  mp::Lit(out, "[redacted]");  // never write what could not be checked
}

// Reads a C string at `at`; false if it has no NUL.
bool CString(const std::string& b, size_t at, size_t* start, size_t* end) {
  if (at > b.size()) return false;
  size_t e = b.find('\0', at);
  if (e == std::string::npos) return false;
  *start = at;
  *end = e;
  return true;
}

uint16_t U16(const std::string& b, size_t at) {
  return static_cast<uint16_t>((static_cast<unsigned char>(b[at]) << 8) | static_cast<unsigned char>(b[at + 1]));
}
int32_t I32(const std::string& b, size_t at) {
  uint32_t u = (static_cast<uint32_t>(static_cast<unsigned char>(b[at])) << 24) |
               (static_cast<uint32_t>(static_cast<unsigned char>(b[at + 1])) << 16) |
               (static_cast<uint32_t>(static_cast<unsigned char>(b[at + 2])) << 8) |
               static_cast<uint32_t>(static_cast<unsigned char>(b[at + 3]));
  return static_cast<int32_t>(u);
}

// What a byte may start, for the scans below: most bytes start none of the words.
enum : uint8_t { kPlain = 0, kWordStart = 1, kNonAscii = 2 };
struct ByteClasses {
  uint8_t c[256];
  constexpr ByteClasses() : c() {
    for (int b = 0x80; b < 256; b++) c[b] = kNonAscii;
    for (char w : {'p', 'i', 'b', 's'}) {
      c[static_cast<unsigned char>(w)] = kWordStart;
      c[static_cast<unsigned char>(w - 32)] = kWordStart;
    }
  }
};
constexpr ByteClasses kByteClasses;

// Whether MAYBE_SECRET_TEXT (src/recording/redact-event.ts) matches at i, where s[i] is one of p, i, b, s (either case).
bool SecretWordAt(const char* s, size_t n, size_t i) {
  switch (static_cast<char>(s[i] | 0x20)) {
    case 'p':
      return MatchAt(s, n, i, "password", 8);
    case 'i':
      return MatchAt(s, n, i, "identified", 10);
    case 'b':
      return MatchAt(s, n, i, "bearer", 6) || MatchAt(s, n, i, "basic", 5);
    default:  // 's'
      return MatchAt(s, n, i, "set_config", 10) ||
             (MatchAt(s, n, i, "set", 3) && (i == 0 || !IsWordChar(s[i - 1])) && (i + 3 == n || !IsWordChar(s[i + 3])));
  }
}

// MAYBE_SECRET_TEXT = /password|identified|\bset\b|set_config|bearer|basic/i
bool MaybeSecretText(const char* s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if ((kByteClasses.c[static_cast<unsigned char>(s[i])] & kWordStart) != 0 && SecretWordAt(s, n, i)) return true;
  }
  return false;
}

// ASCII and free of anything the redaction could change: written as it is. One pass.
bool PlainAscii(const char* s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint8_t k = kByteClasses.c[static_cast<unsigned char>(s[i])];
    if (k == kPlain) continue;
    if (k == kNonAscii || SecretWordAt(s, n, i)) return false;
  }
  return true;
}

// renderValue(text, false) then redaction, for ASCII text; false: leave it to JavaScript.
bool RenderValueNative(const char* s, size_t n, std::string* out) {
  if (!IsAscii(s, n)) return false;
  if (n > kMinVectorDimensions * 2) {
    std::vector<double> values;
    if (ParseNumberList(s, n, &values) && values.size() >= kMinVectorDimensions) {
      bool finite = true;
      for (double v : values) finite = finite && std::isfinite(v);
      if (finite) {
        VectorSummary(values, out);
        return true;
      }
    }
  }
  if (n > kMaxRecordedValueChars) {
    if (MaybeSecretText(s, kMaxRecordedValueChars)) return false;
    mp::MapHeader(out, 2);
    mp::Lit(out, "truncated");
    mp::Str(out, s, kMaxRecordedValueChars);
    mp::Lit(out, "length");
    mp::Number(out, static_cast<double>(n));
    return true;
  }
  if (MaybeSecretText(s, n)) return false;
  mp::Str(out, s, n);
  return true;
}

}  // namespace

StatementRecorder::StatementRecorder(std::shared_ptr<RecordSink> sink, const std::string& session, const std::string& connection)
    : sink_(std::move(sink)), connection_(connection) {
  Text(session.data(), session.size(), &sessionValue_);
  Text(connection.data(), connection.size(), &connectionValue_);
}

StatementRecorder::~StatementRecorder() {
  if (parked_) sink_->Unpark(this);
}

void StatementRecorder::Text(const char* s, size_t n, std::string* out) {
  if (PlainAscii(s, n)) {
    mp::Str(out, s, n);
    return;
  }
  RenderOrRedact(sink_.get(), RenderKind::Text, s, n, out);
}

void StatementRecorder::Value(const char* s, size_t n, std::string* out) {
  if (RenderValueNative(s, n, out)) return;
  RenderOrRedact(sink_.get(), RenderKind::Value, s, n, out);
}

void StatementRecorder::BasePairs(const char* type, double ts, std::string* out) {
  mp::Lit(out, "type");
  mp::Str(out, type);
  mp::Lit(out, "ts");
  mp::Number(out, ts);
  mp::Lit(out, "session");
  *out += sessionValue_;
  mp::Lit(out, "connection");
  *out += connectionValue_;
  mp::Lit(out, "seq");
  mp::Number(out, static_cast<double>(seq_));
}

void StatementRecorder::Emit(const std::string& pairs, uint32_t count) { sink_->AddMap(connection_, count, pairs); }

void StatementRecorder::Park() {
  pending_ = true;
  pendingSince_ = startedAt_;
  if (!parked_) {
    parked_ = true;
    sink_->Park(this);
  }
}

void StatementRecorder::FlushPending() {
  if (!pending_) return;
  pending_ = false;
  if (parked_) {
    parked_ = false;
    sink_->Unpark(this);
  }
  Emit(pendingPairs_, pendingCount_);
  pendingPairs_.clear();
}

// statement(protocol, sql, null, undefined, messageBytes)
void StatementRecorder::Statement(const char* protocol, const char* sql, size_t sqlLen, bool cut, uint32_t messageBytes) {
  FlushPending();
  seq_++;
  startedAt_ = NowMs();
  std::string& p = pendingPairs_;
  p.clear();
  BasePairs("statement", startedAt_, &p);
  mp::Lit(&p, "protocol");
  mp::Str(&p, protocol);
  mp::Lit(&p, "sql");
  Text(sql, sqlLen, &p);
  mp::Lit(&p, "refused");
  mp::Nil(&p);
  pendingCount_ = 8;
  if (cut) {
    mp::Lit(&p, "sqlCut");
    mp::MapHeader(&p, 1);
    mp::Lit(&p, "messageBytes");
    mp::Number(&p, messageBytes);
    pendingCount_++;
  }
  pendingIsStatement_ = true;
  pendingHasParams_ = false;
  Park();
}

// The Bind branch of onCapture() with renderBindParameters().
void StatementRecorder::Bind(const std::string& body, uint32_t length) {
  std::string fields;  // statementName, params, truncated
  size_t portalStart, portalEnd, stmtStart, stmtEnd;
  bool ok = CString(body, 0, &portalStart, &portalEnd) && CString(body, portalEnd + 1, &stmtStart, &stmtEnd);
  std::string params;
  uint32_t nRendered = 0;
  bool truncated = true;
  if (ok) {
    size_t at = stmtEnd + 1;
    std::vector<uint16_t> formats;
    if (at + 2 > body.size()) {
      ok = false;
    } else {
      uint16_t nFormats = U16(body, at);
      at += 2;
      for (uint16_t i = 0; i < nFormats && ok; i++, at += 2) {
        if (at + 2 > body.size()) ok = false;
        else formats.push_back(U16(body, at));
      }
      if (ok && at + 2 > body.size()) ok = false;
      if (ok) {
        uint16_t nParams = U16(body, at);
        at += 2;
        truncated = false;
        for (uint16_t i = 0; i < nParams; i++) {
          if (at + 4 > body.size()) {
            truncated = true;
            break;
          }
          int32_t len = I32(body, at);
          at += 4;
          if (len < 0) {
            mp::Nil(&params);
            nRendered++;
            continue;
          }
          bool binary = (nFormats == 1 ? formats[0] : (i < formats.size() ? formats[i] : 0xffff)) == 1;
          if (binary) {
            mp::MapHeader(&params, 1);
            mp::Lit(&params, "binary");
            mp::Number(&params, len);
          } else if (at + static_cast<size_t>(len) > body.size()) {
            size_t end = body.size() < at + kMaxRecordedValueChars ? body.size() : at + kMaxRecordedValueChars;
            mp::MapHeader(&params, 2);
            mp::Lit(&params, "truncated");
            Text(body.data() + at, end - at, &params);
            mp::Lit(&params, "length");
            mp::Number(&params, len);
            nRendered++;
            truncated = true;
            break;
          } else {
            Value(body.data() + at, static_cast<size_t>(len), &params);
          }
          nRendered++;
          at += static_cast<size_t>(len);
        }
      }
    }
  }
  mp::Lit(&fields, "statementName");
  if (ok) Text(body.data() + stmtStart, stmtEnd - stmtStart, &fields);
  else mp::Lit(&fields, "");
  mp::Lit(&fields, "params");
  std::string arr;
  mp::ArrayHeader(&arr, ok ? nRendered : 0);
  fields += arr;
  if (ok) fields += params;
  mp::Lit(&fields, "truncated");
  mp::Bool(&fields, ok ? (truncated || length > body.size()) : true);

  if (pending_ && pendingIsStatement_ && !pendingHasParams_) {
    pendingPairs_ += fields;
    pendingCount_ += 3;
    pendingHasParams_ = true;
    return;
  }
  // A Bind of a statement prepared earlier: it starts the next execution's record.
  FlushPending();
  startedAt_ = NowMs();
  pendingPairs_.clear();
  BasePairs("bind", startedAt_, &pendingPairs_);
  pendingPairs_ += fields;
  pendingCount_ = 5 + 3;
  pendingIsStatement_ = false;
  pendingHasParams_ = true;
  Park();
}

// finish(result)
void StatementRecorder::Finish(const std::string& pairs, uint32_t count) {
  if (pending_) {
    pending_ = false;
    if (parked_) {
      parked_ = false;
      sink_->Unpark(this);
    }
    mp::Lit(&pendingPairs_, "result");
    mp::MapHeader(&pendingPairs_, count);
    pendingPairs_ += pairs;
    Emit(pendingPairs_, pendingCount_ + 1);
    pendingPairs_.clear();
    return;
  }
  std::string& out = resultScratch_;
  out.clear();
  BasePairs("result", NowMs(), &out);
  out += pairs;
  Emit(out, 5 + count);
}

void StatementRecorder::OnCapture(bool fromClient, uint8_t type, const std::string& body, uint32_t length) {
  if (fromClient) {
    if (type == 'Q' || type == 'P' || type == 'F') {
      // capturedStatementText(): the SQL of "sql\0" or "name\0sql\0..."; cut bodies end without their NUL.
      size_t start = 0;
      size_t end = 0;
      if (type != 'F') {
        size_t nameEnd = type == 'P' ? body.find('\0') : std::string::npos;
        if (type == 'Q' || nameEnd != std::string::npos) {
          start = type == 'P' ? nameEnd + 1 : 0;
          size_t e = body.find('\0', start);
          end = e == std::string::npos ? body.size() : e;
        }
      }
      const char* protocol = type == 'Q' ? "simple" : type == 'P' ? "extended" : "function-call";
      Statement(protocol, body.data() + start, end - start, length > body.size(), length);
      return;
    }
    if (type == 'B') Bind(body, length);
    return;
  }
  if (type == 'C') {
    size_t e = body.find('\0');
    size_t tagLen = e == std::string::npos ? body.size() : e;
    std::string& pairs = pairsScratch_;
    pairs.clear();
    mp::Lit(&pairs, "tag");
    Text(body.data(), tagLen, &pairs);
    mp::Lit(&pairs, "rows");
    // /(\d+)$/ then Number()
    size_t d = tagLen;
    while (d > 0 && IsDigit(body[d - 1])) d--;
    if (d < tagLen) mp::Number(&pairs, DigitsValue(body.data() + d, tagLen - d));
    else mp::Nil(&pairs);
    mp::Lit(&pairs, "durationMs");
    mp::Number(&pairs, NowMs() - startedAt_);
    Finish(pairs, 3);
    return;
  }
  if (type == 'E') {
    // errorFields(): the last C and M fields.
    size_t at = 0;
    size_t cS = 0, cE = 0, mS = 0, mE = 0;
    bool hasC = false, hasM = false;
    while (at < body.size() && body[at] != '\0') {
      char code = body[at];
      size_t e = body.find('\0', at + 1);
      if (e == std::string::npos) break;
      if (code == 'C') hasC = true, cS = at + 1, cE = e;
      if (code == 'M') hasM = true, mS = at + 1, mE = e;
      at = e + 1;
    }
    std::string& pairs = pairsScratch_;
    pairs.clear();
    mp::Lit(&pairs, "error");
    mp::MapHeader(&pairs, 2);
    mp::Lit(&pairs, "sqlstate");
    if (hasC) Text(body.data() + cS, cE - cS, &pairs);
    else mp::Lit(&pairs, "");
    mp::Lit(&pairs, "message");
    if (hasM) Text(body.data() + mS, mE - mS, &pairs);
    else mp::Lit(&pairs, "");
    mp::Lit(&pairs, "durationMs");
    mp::Number(&pairs, NowMs() - startedAt_);
    Finish(pairs, 2);
  }
}

}  // namespace vg

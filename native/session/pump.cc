// See pump.h.
#include "session/pump.h"

#include <cstring>

#include "pg/session-pins.h"

namespace vg {

namespace {

void AppendHeader(std::string* out, uint8_t type, uint32_t bodyLength) {
  uint32_t len = bodyLength + 4;
  out->push_back(static_cast<char>(type));
  out->push_back(static_cast<char>(len >> 24));
  out->push_back(static_cast<char>(len >> 16));
  out->push_back(static_cast<char>(len >> 8));
  out->push_back(static_cast<char>(len));
}

void AppendField(std::string* body, char code, const std::string& value) {
  body->push_back(code);
  *body += value;
  body->push_back('\0');
}

std::string ErrorMessage(const char* severity, const std::string& sqlstate, const std::string& message, uint32_t position) {
  std::string body;
  AppendField(&body, 'S', severity);
  AppendField(&body, 'V', severity);
  AppendField(&body, 'C', sqlstate);
  AppendField(&body, 'M', message);
  if (position > 0) AppendField(&body, 'P', std::to_string(position));
  body.push_back('\0');
  std::string out;
  AppendHeader(&out, 'E', static_cast<uint32_t>(body.size()));
  return out + body;
}

// ErrorResponse ERROR for a refused statement: the session goes on.
std::string ErrorResponse(const StatementRefusal& r) {
  return ErrorMessage("ERROR", r.sqlstate.size() == 5 ? r.sqlstate : std::string("42501"),
                      r.message.empty() ? std::string("permission denied: statement not allowed") : r.message, r.position);
}

std::string FatalResponse(const char* sqlstate, const std::string& message) {
  return ErrorMessage("FATAL", sqlstate, message, 0);
}

// What the server gets in place of a refused statement: a message of the same kind that it
// must fail before running anything (a syntax error; a function OID that never exists), so
// it does what PostgreSQL does after an error: aborts the transaction, skips the rest of an
// extended batch until Sync, and answers at once. Its error is replaced by the refusal.
constexpr char kStandInSql[] = "vecgate refused this statement";

std::string RefusalStandIn(uint8_t type, const std::string& statementName) {
  std::string body;
  if (type == 'Q') {
    body.append(kStandInSql, sizeof(kStandInSql));  // with its NUL
  } else if (type == 'P') {
    body += statementName;
    body.push_back('\0');
    body.append(kStandInSql, sizeof(kStandInSql));
    body.append("\0\0", 2);  // no parameter types
  } else {
    // FunctionCall of OID 0: no arguments, no format codes, text result.
    body.append(10, '\0');
  }
  std::string out;
  AppendHeader(&out, type, static_cast<uint32_t>(body.size()));
  return out + body;
}

// What ends a client's COPY FROM STDIN when the client sends Terminate in the middle of it.
std::string CopyFailForTerminate() {
  static const char kReason[] = "the client ended the session (Terminate) during COPY";
  std::string out;
  AppendHeader(&out, 'f', sizeof(kReason));
  out.append(kReason, sizeof(kReason));  // with its NUL
  return out;
}

// Client-only encodings (pg_wchar.h PG_ENCODING_IS_CLIENT_ONLY), as the server names them in
// ParameterStatus: a byte of an ASCII quote or backslash can be the second byte of a
// character there, so the gateway would not read a statement as the server does.
bool IsClientOnlyEncoding(const std::string& name) {
  static const char* const kNames[] = {"SJIS", "SHIFT_JIS_2004", "BIG5", "GBK", "UHC", "GB18030", "JOHAB"};
  for (const char* n : kNames)
    if (name == n) return true;
  return false;
}

// The name of a stand-in Parse that is not the client's (no session uses it: it has a space).
const std::string kRefusedStatementName = "vecgate refused";

void AppendMessage(std::string* out, uint8_t type, const std::string& body) {
  AppendHeader(out, type, static_cast<uint32_t>(body.size()));
  *out += body;
}

// Longest Parse statement name kept for a refused statement's stand-in.
constexpr size_t kMaxStandInNameBytes = 1024;

// The statement text of a Query ("text\0") or Parse ("name\0text\0...") body.
std::string StatementText(uint8_t type, const char* body, size_t len) {
  const char* end = body + len;
  const char* start = body;
  if (type == 'P') {
    const char* nameEnd = static_cast<const char*>(std::memchr(body, '\0', len));
    if (nameEnd == nullptr) return std::string();
    start = nameEnd + 1;
  } else if (type != 'Q') {
    return std::string();
  }
  const char* textEnd = static_cast<const char*>(std::memchr(start, '\0', static_cast<size_t>(end - start)));
  return std::string(start, textEnd == nullptr ? end : textEnd);
}

}  // namespace

void Pump::EndCapture(Capture& cap, bool fromClient) {
  if (!cap.active) return;
  cap.active = false;
  deferred_.push_back(DeferredCapture{fromClient, cap.type, cap.length, std::move(cap.buf)});
  cap.buf.clear();
  if (!spareBodies_.empty()) {
    cap.buf.swap(spareBodies_.back());
    spareBodies_.pop_back();
  }
}

void Pump::DeliverCaptures() {
  if (deferred_.empty()) return;
  // Swapped out first: an observer callback may capture-and-defer again (it cannot today,
  // but the loop must not walk a vector that grows under it). The two vectors keep their
  // capacity, so a busy session allocates nothing here.
  delivering_.swap(deferred_);
  PumpObserver* observer = observer_;
  for (DeferredCapture& c : delivering_) observer->OnCapture(c.fromClient, c.type, c.body, c.length);
  for (DeferredCapture& c : delivering_) {
    if (spareBodies_.size() >= kSpareCaptureBuffers) break;
    if (c.body.capacity() > kSpareCaptureBytes) continue;
    c.body.clear();
    spareBodies_.push_back(std::move(c.body));
  }
  delivering_.clear();
}

void Pump::TrackClientStart(uint8_t type) {
  if (type == 'X') {
    // PostgreSQL reads nothing after Terminate: neither does the gateway.
    clientTerminated_ = true;
    if (stats_.reason == CloseReason::None) stats_.reason = CloseReason::ClientTerminate;
    terminateAt_ = clientParser_.messageStart();
    clientParser_.StopAfterMessage();
    return;
  }
  if (type == 'D' || type == 'C') {
    detail_ = 0;
    detailPending_ = true;
  }
  if (type == 'c' || type == 'f') copyIn_ = false;
  batchOpenBefore_ = clientUnsynced_;
  if (type != 'Q' && type != 'S' && type != 'F') clientUnsynced_ = true;
}

void Pump::ClientInspector::OnMessageStart(uint8_t type, uint32_t length) {
  pump_->clientCap_.Start(type, length);
  pump_->TrackClientStart(type);
  holding_ = false;
  dropping_ = false;
  tooLong_ = false;
  prefixing_ = false;
  if (type == 'X' && pump_->copyIn_) {
    Sink() += CopyFailForTerminate();
    pump_->copyIn_ = false;
  }
  if (type == 'X' && pump_->reuse_ && (pump_->gated_.empty() || pump_->pooling_)) {
    pump_->terminateHeld_ = true;  // sent on only if the upstream is not kept (FinishTerminate)
    dropping_ = true;
    return;
  }
  if (type == 'X') {
    // The server gets a Terminate of its proper length, whatever length the client gave it:
    // nothing after the Terminate's header is read (neither its body), so a longer one would
    // leave the server waiting for body bytes, or take a different part of it per chunking.
    Sink().append("X\0\0\0\4", 5);
    dropping_ = true;
    return;
  }
  skipping_ = pump_->skipUntilSync_;
  if (skipping_) {
    dropping_ = true;  // not run: its transaction's server is gone (Pump::AnswerSkipped)
    return;
  }
  const bool statement = type == 'Q' || type == 'P' || type == 'F';
  if (statement) {
    pump_->stats_.statements += type == 'F' ? 0 : 1;
    pump_->CheckDeadline();
  }
  scanning_ = (type == 'Q' || type == 'P') && pump_->pooling_ && !pump_->pinned_;
  scanTooLong_ = scanning_ && length > kMaxInspectedStatementBytes;
  if (scanTooLong_ && pump_->refusePins_) {
    // Too long to read for session state, so it would pin: refused (on_pin: refuse).
    held_.clear();
    AppendHeader(&held_, type, length);
    tooLong_ = true;
    dropping_ = true;
    return;
  }
  if (pump_->MigratesStatements() &&
      (type == 'B' || type == 'D' || type == 'C' || (type == 'P' && length > kMaxInspectedStatementBytes && !pump_->inspect_))) {
    StartPrefix(type, length);
    return;
  }
  // Held whole: a statement the observer decides on (read sessions), and a pooled session's
  // Query or Parse (read for session state, and rewritten for prepared statements).
  bool hold = statement && (pump_->inspect_ || (pump_->pooling_ && type != 'F' && length <= kMaxInspectedStatementBytes));
  if (!hold) {
    AppendHeader(&Sink(), type, length);
    return;
  }
  held_.clear();
  AppendHeader(&held_, type, length);
  if (length > kMaxInspectedStatementBytes) {
    tooLong_ = true;  // refused; only a Parse's name is kept, for the stand-in
    dropping_ = true;
    return;
  }
  holding_ = true;
}

std::string& Pump::ClientInspector::Sink() { return pump_->gated_.empty() ? out : pump_->gated_.back().bytes; }

void Pump::ClientInspector::OnMessageBody(uint8_t type, const uint8_t* data, size_t len) {
  pump_->clientCap_.Body(data, len);
  if (prefixing_) {
    PrefixBody(type, data, len);
    return;
  }
  if (tooLong_) {
    if (type == 'P' && held_.size() < 5 + kMaxStandInNameBytes) {
      size_t take = 5 + kMaxStandInNameBytes - held_.size();
      held_.append(reinterpret_cast<const char*>(data), len < take ? len : take);
    }
    return;
  }
  if (dropping_) return;
  if (holding_) {
    held_.append(reinterpret_cast<const char*>(data), len);
    return;
  }
  pump_->TrackClientBody(type, data, len);
  Sink().append(reinterpret_cast<const char*>(data), len);
}

// What a pooled session's Query or Parse leaves in the server session, if anything.
std::string Pump::ClientInspector::PinReason(uint8_t type) {
  if (!scanning_) return std::string();
  scanning_ = false;
  if (scanTooLong_) return "statement too long to read for session state";
  if (!holding_) return std::string();
  const char* body = held_.data() + 5;
  size_t len = held_.size() - 5;
  if (type == 'P' && len > 0 && body[0] != '\0' && !pump_->MigratesStatements()) return "named prepared statement";
  std::string text = StatementText(type, body, len);
  const char* r = SessionPinReason(text.data(), text.size());
  return r != nullptr ? std::string(r) : std::string();
}

void Pump::ClientInspector::OnMessageEnd(uint8_t type) {
  pump_->EndCapture(pump_->clientCap_, true);
  if (skipping_) {
    skipping_ = false;
    dropping_ = false;
    if (type == 'S' || type == 'Q' || type == 'F') pump_->AnswerSkipped();
    return;
  }
  if (prefixing_) {
    EndPrefix(type);
    return;
  }
  if (!holding_ && !tooLong_) {
    std::string pin = PinReason(type);
    if (!pin.empty()) pump_->PinFor(pin);
    pump_->TrackClientEnd(type, 0);
    return;
  }
  PumpObserver::Verdict verdict = PumpObserver::Verdict::Refuse;
  StatementRefusal refusal;
  uint64_t holdId = 0;
  if (tooLong_) {
    refusal.sqlstate = "54000";
    refusal.message = "statement too long for the gateway to check (limit " +
                      std::to_string(kMaxInspectedStatementBytes / (1024 * 1024)) + " MB)";
    if (scanTooLong_ && pump_->refusePins_) {
      refusal.message = "statement too long for the gateway to read for session state (limit " +
                        std::to_string(kMaxInspectedStatementBytes / (1024 * 1024)) +
                        " MB), so it could pin this session to its server connection, which this connection refuses (upstream.pool.on_pin: refuse)";
      pump_->stats_.pinRefusals++;
    }
  } else if (pump_->inspect_) {
    std::string text = type == 'F' ? std::string() : StatementText(type, held_.data() + 5, held_.size() - 5);
    pump_->DeliverCaptures();  // earlier messages of this chunk first, in order
    verdict = pump_->observer_->OnStatement(type, text, &refusal, &holdId);
  } else {
    verdict = PumpObserver::Verdict::Forward;  // held for pooling only
  }
  if (verdict == PumpObserver::Verdict::Hold) pump_->gated_.push_back(Gate{holdId, false, std::string()});
  std::string name;
  if (type == 'P' && held_.size() > 5) {
    size_t end = held_.find('\0', 5);
    name = held_.substr(5, (end == std::string::npos ? held_.size() : end) - 5);
  }
  // What the statement leaves in the server session (a refused statement never runs).
  std::string pin = verdict == PumpObserver::Verdict::Refuse ? std::string() : PinReason(type);
  if (!pin.empty() && pump_->MigratesStatements() && (type == 'Q' || name.empty())) {
    // A DEALLOCATE or DISCARD ALL the gateway answers or follows itself does not pin.
    std::string text = StatementText(type, held_.data() + 5, held_.size() - 5);
    PgDeallocate d;
    if (IsDiscardAll(text.data(), text.size()) || ParseDeallocate(text.data(), text.size(), &d)) pin.clear();
  }
  if (!pin.empty() && pump_->refusePins_) {
    verdict = PumpObserver::Verdict::Refuse;
    refusal.sqlstate = "0A000";
    refusal.message = "this statement would pin the session to its server connection (" + pin +
                      "), which this connection refuses (upstream.pool.on_pin: refuse); use SET LOCAL inside a transaction, or a "
                      "connection in session pooling for this client";
    pump_->stats_.pinRefusals++;
    pin.clear();  // (held for its audit record, the refusal waits in its place in line)
  }
  if (verdict != PumpObserver::Verdict::Refuse && pump_->MigratesStatements() && !tooLong_) {
    // Prepared statements carried between links: a named Parse is the gateway's to place, and
    // a DEALLOCATE of the client's names the gateway's to answer (neither pins).
    bool handled = false;
    bool ok = true;
    if (type == 'P' && !name.empty()) {
      handled = true;
      ok = pump_->ParseStatement(Sink(), held_.data() + 5, held_.size() - 5, &refusal);
    } else if (type == 'Q') {
      handled = pump_->StatementQuery(Sink(), held_.data() + 5, held_.size() - 5, &refusal);
      ok = !handled || refusal.message.empty();
    } else if (type == 'P') {
      handled = pump_->StatementParse(Sink(), held_.data() + 5, held_.size() - 5, &refusal);
      ok = !handled || refusal.message.empty();
    }
    if (handled) {
      scanning_ = false;
      if (!pin.empty() && ok) pump_->PinFor(pin);  // what a named statement does still counts
      if (!ok) pump_->RefuseWithStandIn(Sink(), type, kRefusedStatementName, refusal);
      holding_ = false;
      held_.clear();
      if (held_.capacity() > 64 * 1024) held_.shrink_to_fit();
      return;
    }
  }
  holding_ = false;
  dropping_ = false;
  scanning_ = false;
  if (!pin.empty()) pump_->PinFor(pin);
  if (verdict != PumpObserver::Verdict::Refuse) {
    Sink() += held_;
    pump_->TrackClientEnd(type, 0);
  } else {
    pump_->stats_.refusedStatements++;
    pump_->RefuseWithStandIn(Sink(), type, name.size() > kMaxStandInNameBytes ? name.substr(0, kMaxStandInNameBytes) : name, refusal);
  }
  tooLong_ = false;
  held_.clear();
  if (held_.capacity() > 64 * 1024) held_.shrink_to_fit();
}

void Pump::RefuseWithStandIn(std::string& sink, uint8_t type, const std::string& name, const StatementRefusal& refusal) {
  uint32_t id = nextRefusal_++;
  refusals_.push_back(PendingRefusal{id, ErrorResponse(refusal)});
  // A Bind's, Describe's or Close's stand-in is a Parse of a name no session uses: it fails
  // without touching the unnamed statement, and the server skips to Sync as it would have.
  bool statement = type == 'Q' || type == 'P' || type == 'F';
  sink += RefusalStandIn(statement ? type : 'P', statement ? name : kRefusedStatementName);
  TrackClientEnd(type, id);
}

void Pump::ClientInspector::StartPrefix(uint8_t type, uint32_t length) {
  prefixing_ = true;
  prefixDecided_ = false;
  prefixDrop_ = false;
  prefixType_ = type;
  prefixLength_ = length;
  prefixRefusal_ = 0;
  prefixAction_ = PgReplyAction::Forward;
  prefixTag_ = 0;
  prefix_.clear();
}

namespace {
// The statement name of a Bind ("portal\0statement\0..."), Describe or Close ("S" or "P",
// then "name\0"), or Parse ("name\0..."): where it starts, and false while its NUL has not come.
bool NameIn(uint8_t type, const std::string& body, size_t* start, size_t* end) {
  size_t from = 0;
  if (type == 'B') {
    size_t portalEnd = body.find('\0');
    if (portalEnd == std::string::npos) return false;
    from = portalEnd + 1;
  } else if (type == 'D' || type == 'C') {
    if (body.empty()) return false;
    from = 1;
  }
  size_t nul = body.find('\0', from);
  if (nul == std::string::npos) return false;
  *start = from;
  *end = nul;
  return true;
}
}  // namespace

void Pump::ClientInspector::PrefixBody(uint8_t type, const uint8_t* data, size_t len) {
  pump_->TrackClientBody(type, data, len);  // a Describe's or Close's kind byte
  if (prefixDecided_) {
    if (!prefixDrop_) Sink().append(reinterpret_cast<const char*>(data), len);
    return;
  }
  prefix_.append(reinterpret_cast<const char*>(data), len);
  size_t start;
  size_t end;
  if (NameIn(type, prefix_, &start, &end) || prefix_.size() > 2 * kMaxStatementNameBytes + 2) DecidePrefix();
}

void Pump::ClientInspector::DecidePrefix() {
  prefixDecided_ = true;
  const uint8_t type = prefixType_;
  size_t start = 0;
  size_t end = 0;
  bool complete = NameIn(type, prefix_, &start, &end);
  bool tooLong = !complete && prefix_.size() > 2 * kMaxStatementNameBytes + 2;
  bool byName = type == 'B' || ((type == 'D' || type == 'C') && !prefix_.empty() && prefix_[0] == 'S') || type == 'P';
  if ((!complete && !tooLong) || !byName || (complete && start == end)) {
    // A portal, the unnamed statement, or a malformed message (the server answers that): as is.
    AppendHeader(&Sink(), type, prefixLength_);
    Sink() += prefix_;
    prefix_.clear();
    return;
  }
  std::string name = complete ? prefix_.substr(start, end - start) : std::string();
  if (type == 'P') {
    // A named Parse too long to hold: it could not be prepared again on another link.
    prefixDrop_ = true;
    pump_->stats_.refusedStatements++;
    StatementRefusal r;
    r.sqlstate = "54000";
    r.message = "prepared statement \"" + name.substr(0, 256) + "\" is too long to carry between server sessions (limit " +
                std::to_string(kMaxInspectedStatementBytes / (1024 * 1024)) +
                " MB); use an unnamed statement, or session pooling for this connection";
    prefixRefusal_ = 1;  // refused at the end (RefuseWithStandIn)
    pendingRefusal_ = r;
    prefix_.clear();
    return;
  }
  auto it = complete && end - start <= kMaxStatementNameBytes ? pump_->statements_.find(name) : pump_->statements_.end();
  if (type == 'C') {
    // The client's name goes; the server keeps the statement for other sessions (the link's
    // LRU closes it when full). Closing a name that does not exist is no error.
    prefixDrop_ = true;
    prefixAction_ = PgReplyAction::Fake;
    if (it != pump_->statements_.end()) {
      prefixTag_ = pump_->AddOp(StatementOp::Kind::FakeClose, it->second, name);
      pump_->ForgetName(name);
    }
    prefix_.clear();
    return;
  }
  if (it == pump_->statements_.end()) {
    prefixDrop_ = true;
    prefixRefusal_ = 1;
    pendingRefusal_.sqlstate = "26000";
    pendingRefusal_.message = "prepared statement \"" + name.substr(0, 256) + "\" does not exist";
    prefix_.clear();
    return;
  }
  PgStatementRef stmt = it->second;
  pump_->EnsurePrepared(Sink(), stmt);
  std::string& sink = Sink();
  AppendHeader(&sink, type, static_cast<uint32_t>(prefixLength_ - name.size() + stmt->serverName.size()));
  sink.append(prefix_, 0, start);
  sink += stmt->serverName;
  sink.append(prefix_, end, std::string::npos);
  prefix_.clear();
}

void Pump::ClientInspector::EndPrefix(uint8_t type) {
  if (!prefixDecided_) DecidePrefix();
  prefixing_ = false;
  if (scanning_) {
    // A Parse too long to hold, streamed: it pins (or was refused above).
    std::string pin = prefixDrop_ ? std::string() : PinReason(type);
    if (!pin.empty()) pump_->PinFor(pin);
  }
  if (prefixRefusal_ != 0) {
    pump_->RefuseWithStandIn(Sink(), type, std::string(), pendingRefusal_);
    pendingRefusal_ = StatementRefusal();
  } else {
    pump_->TrackClientEnd(type, 0, prefixAction_, prefixTag_);
  }
  if (prefix_.capacity() > 64 * 1024) prefix_.shrink_to_fit();
}

uint32_t Pump::AddOp(StatementOp::Kind kind, PgStatementRef stmt, std::string clientName) {
  uint32_t tag = nextOpTag_++;
  if (nextOpTag_ == 0) nextOpTag_ = 1;
  StatementOp op;
  op.tag = tag;
  op.kind = kind;
  op.stmt = std::move(stmt);
  op.clientName = std::move(clientName);
  ops_.push_back(std::move(op));
  return tag;
}

PgServerStatements* Pump::LinkStatements() {
  if (upstream_ == nullptr) return nullptr;
  if (upstream_->state() == nullptr) upstream_->SetState(std::make_unique<PgServerStatements>(statementCapacity_));
  return static_cast<PgServerStatements*>(upstream_->state());
}

void Pump::ForgetName(const std::string& name) {
  auto it = statements_.find(name);
  if (it == statements_.end()) return;
  statementBytes_ -= it->first.size() + it->second->tail.size();
  statements_.erase(it);
}

void Pump::Restore(StatementOp& op) {
  // The server skipped (or failed) what dropped these names: they exist again, unless the
  // client has used the name since.
  if (op.stmt && !op.clientName.empty() && statements_.count(op.clientName) == 0) {
    statementBytes_ += op.clientName.size() + op.stmt->tail.size();
    statements_.emplace(op.clientName, op.stmt);
  }
  for (auto& e : op.removed) {
    if (statements_.count(e.first) != 0) continue;
    statementBytes_ += e.first.size() + e.second->tail.size();
    statements_.emplace(e.first, e.second);
  }
  op.removed.clear();
}

bool Pump::ParseStatement(std::string& sink, const char* body, size_t len, StatementRefusal* refusal) {
  const char* nul = static_cast<const char*>(std::memchr(body, '\0', len));
  if (nul == nullptr) {
    // Malformed: the server answers it (and will not prepare anything).
    AppendHeader(&sink, 'P', static_cast<uint32_t>(len));
    sink.append(body, len);
    TrackClientEnd('P', 0);
    return true;
  }
  std::string name(body, static_cast<size_t>(nul - body));
  const char* tail = nul + 1;
  size_t tailLen = len - name.size() - 1;
  if (statements_.count(name) != 0) {
    refusal->sqlstate = "42P05";
    refusal->message = "prepared statement \"" + name.substr(0, 256) + "\" already exists";
    return false;
  }
  if (name.size() > kMaxStatementNameBytes) {
    refusal->sqlstate = "42622";
    refusal->message = "prepared statement name longer than the gateway carries (" + std::to_string(kMaxStatementNameBytes) + " bytes)";
    return false;
  }
  if (statementBytes_ + name.size() + tailLen > kMaxSessionStatementBytes) {
    refusal->sqlstate = "54000";
    refusal->message = "this session's prepared statements hold more than the gateway keeps per session (" +
                       std::to_string(kMaxSessionStatementBytes / (1024 * 1024)) + " MB of text); close some first";
    return false;
  }
  PgStatementRef stmt = PgStatementRegistry::ForThisThread().Intern(tail, tailLen);
  statementBytes_ += name.size() + tailLen;
  statements_.emplace(name, stmt);
  PgServerStatements* link = LinkStatements();
  if (link != nullptr && link->Has(stmt.get())) {
    link->Touch(stmt.get());
    stats_.preparesReused++;
    uint32_t tag = AddOp(StatementOp::Kind::FakeParse, stmt, name);
    TrackClientEnd('P', 0, PgReplyAction::Fake, tag);
    return true;
  }
  if (link != nullptr) {
    AddToLink(sink, link, stmt);
  }
  uint32_t tag = AddOp(StatementOp::Kind::ServerParse, stmt, name);
  SendParse(sink, link, stmt->serverName, tail, tailLen, PgReplyAction::Forward, tag);
  return true;
}

void Pump::AddToLink(std::string& sink, PgServerStatements* link, const PgStatementRef& stmt) {
  // A full link closes its least recently used statement, but only where that cannot close
  // a portal of the client's (PostgreSQL closes a statement's portals with it): outside a
  // transaction, at the first message of a batch. Elsewhere the set grows past its size for
  // a while; a later prepare at such a point brings it back.
  const bool mayEvict = lastStatus_ == 'I' && replies_.Empty() && !batchOpenBefore_;
  PgStatementRef evicted = link->Add(stmt, mayEvict);
  if (!evicted) return;
  AppendMessage(&sink, 'C', "S" + evicted->serverName + std::string(1, '\0'));
  replies_.OnClientMessage('C', 'S', 0, PgReplyAction::Drop, AddOp(StatementOp::Kind::EvictClose, evicted, std::string()));
}

void Pump::SendParse(std::string& sink, PgServerStatements* link, const std::string& serverName, const char* tail, size_t tailLen,
                     PgReplyAction action, uint32_t tag) {
  if (link != nullptr && link->closeFirst()) {
    AppendMessage(&sink, 'C', "S" + serverName + std::string(1, '\0'));
    replies_.OnClientMessage('C', 'S', 0, PgReplyAction::Drop, 0);
  }
  AppendHeader(&sink, 'P', static_cast<uint32_t>(serverName.size() + 1 + tailLen));
  sink += serverName;
  sink.push_back('\0');
  sink.append(tail, tailLen);
  stats_.serverPrepares++;
  replies_.OnClientMessage('P', 0, 0, action, tag);
}

bool Pump::StatementParse(std::string& sink, const char* body, size_t len, StatementRefusal* refusal) {
  if (len == 0 || body[0] != '\0') return false;
  const char* textStart = body + 1;
  const char* textEnd = static_cast<const char*>(std::memchr(textStart, '\0', len - 1));
  if (textEnd == nullptr) return false;
  const size_t textLen = static_cast<size_t>(textEnd - textStart);
  const char* params = textEnd + 1;  // the parameter type count and OIDs, as the client sent them
  const size_t paramsLen = len - 1 - textLen - 1;
  PgDeallocate d;
  const bool discard = IsDiscardAll(textStart, textLen);
  if (!discard && !ParseDeallocate(textStart, textLen, &d)) return false;
  if (discard || d.all) {
    // Sent on as it is: the server drops every statement when it runs, which the gateway
    // cannot see from the Parse, so the link's prepared set is uncertain from here on.
    SendOnForgettingAll(sink, 'P', body, len, StatementOp::Kind::Forget);
    return true;
  }
  auto it = statements_.find(d.name);
  if (it == statements_.end()) return UnknownName(d.name, refusal);
  uint32_t tag = AddOp(StatementOp::Kind::Forget, it->second, d.name);
  ForgetName(d.name);
  // The client's statement stays on the server for other sessions; what runs is a DEALLOCATE
  // of a statement prepared for it now, so the answer is PostgreSQL's own (the DEALLOCATE
  // tag, 25P02 in an aborted transaction) wherever the client Binds and Executes it.
  const std::string dummy = PgStatementRegistry::ForThisThread().FreshName();
  static const char kDummyTail[] = "SELECT\0\0\0";  // text, then no parameter types
  SendParse(sink, nullptr, dummy, kDummyTail, sizeof(kDummyTail) - 1, PgReplyAction::Drop, 0);
  std::string text = "DEALLOCATE " + dummy;
  AppendHeader(&sink, 'P', static_cast<uint32_t>(1 + text.size() + 1 + paramsLen));
  sink.push_back('\0');
  sink += text;
  sink.push_back('\0');
  sink.append(params, paramsLen);
  TrackClientEnd('P', 0, PgReplyAction::Forward, tag);
  return true;
}

void Pump::EnsurePrepared(std::string& sink, const PgStatementRef& stmt) {
  PgServerStatements* link = LinkStatements();
  if (link == nullptr) return;
  if (link->Has(stmt.get())) {
    link->Touch(stmt.get());
    return;
  }
  AddToLink(sink, link, stmt);
  uint32_t tag = AddOp(StatementOp::Kind::ServerParse, stmt, std::string());
  SendParse(sink, link, stmt->serverName, stmt->tail.data(), stmt->tail.size(), PgReplyAction::Drop, tag);
}

void Pump::SendOnForgettingAll(std::string& sink, uint8_t type, const char* body, size_t len, StatementOp::Kind kind) {
  uint32_t tag = AddOp(kind, nullptr, std::string());
  ops_.back().removed.swap(statements_);  // back if the server fails or skips it
  statementBytes_ = 0;
  // Whether it runs is known only at its answer; what the client prepares meanwhile must not
  // be taken as there: the link's set is unknown from now on.
  if (PgServerStatements* link = LinkStatements()) link->MarkUncertain();
  AppendHeader(&sink, type, static_cast<uint32_t>(len));
  sink.append(body, len);
  TrackClientEnd(type, 0, PgReplyAction::Forward, tag);
}

bool Pump::UnknownName(const std::string& name, StatementRefusal* refusal) {
  if (pinned_) return false;  // perhaps a SQL PREPARE's name: the server's to answer
  refusal->sqlstate = "26000";
  refusal->message = "prepared statement \"" + name.substr(0, 256) + "\" does not exist";
  return true;
}

bool Pump::StatementQuery(std::string& sink, const char* body, size_t len, StatementRefusal* refusal) {
  std::string text = StatementText('Q', body, len);
  PgDeallocate d;
  if (ParseDeallocate(text.data(), text.size(), &d)) {
    if (d.all) {
      if (pinned_) {
        // The server's own statements (SQL PREPARE pinned the session) go too: it runs it.
        SendOnForgettingAll(sink, 'Q', body, len, StatementOp::Kind::DeallocateAll);
        return true;
      }
      uint32_t tag = AddOp(StatementOp::Kind::FakeDeallocate, nullptr, std::string());
      ops_.back().removed.swap(statements_);
      ops_.back().commandTag = "DEALLOCATE ALL";
      statementBytes_ = 0;
      TrackClientEnd('Q', 0, PgReplyAction::Fake, tag);
      return true;
    }
    auto it = statements_.find(d.name);
    if (it == statements_.end()) return UnknownName(d.name, refusal);
    uint32_t tag = AddOp(StatementOp::Kind::FakeDeallocate, it->second, d.name);
    ops_.back().commandTag = "DEALLOCATE";
    ForgetName(d.name);
    TrackClientEnd('Q', 0, PgReplyAction::Fake, tag);
    return true;
  }
  if (IsDiscardAll(text.data(), text.size())) {
    SendOnForgettingAll(sink, 'Q', body, len, StatementOp::Kind::DiscardAll);
    return true;
  }
  return false;
}

void Pump::OnOutcomes() {
  replies_.TakeOutcomes(&outcomes_);
  for (const PgTaggedOutcome& o : outcomes_) {
    while (!ops_.empty() && ops_.front().tag != o.tag) ops_.pop_front();  // none expected
    if (ops_.empty()) break;
    StatementOp& op = ops_.front();
    switch (op.kind) {
      case StatementOp::Kind::ServerParse:
        if (!o.ok) {
          // The server has no such statement after all (an error, or skipped after one).
          if (PgServerStatements* link = LinkStatements()) link->Remove(op.stmt.get());
          auto it = op.clientName.empty() ? statements_.end() : statements_.find(op.clientName);
          if (it != statements_.end() && it->second == op.stmt) ForgetName(op.clientName);
        }
        break;
      case StatementOp::Kind::FakeParse:
        if (!o.ok) {
          auto it = statements_.find(op.clientName);
          if (it != statements_.end() && it->second == op.stmt) ForgetName(op.clientName);
        }
        break;
      case StatementOp::Kind::FakeClose:
      case StatementOp::Kind::FakeDeallocate:
      case StatementOp::Kind::Forget:
        if (!o.ok) Restore(op);
        break;
      case StatementOp::Kind::DeallocateAll:
      case StatementOp::Kind::DiscardAll:
        if (!o.ok) Restore(op);  // (the link was marked uncertain when it was sent)
        break;
      case StatementOp::Kind::EvictClose:
        // The server skipped the Close (an error earlier in the batch): it still has the
        // statement, which the link no longer lists.
        if (!o.ok) {
          if (PgServerStatements* link = LinkStatements()) link->MarkUncertain();
        }
        break;
    }
    ops_.pop_front();
  }
  outcomes_.clear();
}

std::string Pump::TakeFakes() {
  std::string out;
  if (replies_.HasOutcomes()) OnOutcomes();
  while (replies_.FrontIsFake()) {
    PgRequest kind = replies_.FrontKind();
    uint32_t tag = replies_.FrontTag();
    if (kind == PgRequest::Parse) {
      out.append("1\0\0\0\4", 5);
    } else if (kind == PgRequest::Close) {
      out.append("3\0\0\0\4", 5);
    } else {
      // A DEALLOCATE: what PostgreSQL answers, in the transaction state the session is in.
      StatementOp* op = nullptr;
      for (StatementOp& o : ops_)
        if (o.tag == tag) op = &o;
      if (lastStatus_ == 'E') {
        out += ErrorMessage("ERROR", "25P02", "current transaction is aborted, commands ignored until end of transaction block", 0);
        if (op != nullptr) Restore(*op);
      } else {
        AppendMessage(&out, 'C', (op != nullptr ? op->commandTag : std::string("DEALLOCATE")) + std::string(1, '\0'));
      }
      AppendMessage(&out, 'Z', std::string(1, static_cast<char>(lastStatus_)));
    }
    replies_.PopFake();
    if (kind == PgRequest::Query && replies_.Empty()) clientUnsynced_ = false;
    if (replies_.HasOutcomes()) OnOutcomes();
  }
  return out;
}

void Pump::AnswerFakes() {
  // Between server messages only: the client's stream is never cut inside one.
  if (!replies_.FrontIsFake() || !upstreamParser_.AtBoundary()) return;
  std::string out = TakeFakes();
  if (!out.empty() && !client_->closed()) client_->Write(out.data(), out.size());
}

bool Pump::SurviveLinkLoss(Leg* lost) {
  CloseReason why = lost->closeReason();
  bool serverSide = why == CloseReason::Eof || why == CloseReason::ReadError || why == CloseReason::WriteError || why == CloseReason::TlsError;
  // Only between messages both ways: half a server message already reached the client, or
  // half a client message the lost server, cannot be taken back.
  if (!pooling_ || pinned_ || !serverSide || ended_ || clientClosed_ || clientTerminated_ || client_->closed() || expired_ || draining_ ||
      !gated_.empty() || !upstreamParser_.AtBoundary() || !clientParser_.AtBoundary() || stats_.reason != CloseReason::None)
    return false;
  std::string lostMessage = "the database connection serving this session's transaction ended (" + std::string(CloseReasonName(why)) +
                 (lost->closeDetail().empty() ? std::string() : ": " + lost->closeDetail()) +
                 "); the transaction is gone (a COMMIT in flight may or may not have been applied); the session goes on";
  const bool inTransaction = lastStatus_ != 'I';
  bool endsAtSyncPoint = true;
  const bool pending = !replies_.Empty();
  size_t syncPoints = replies_.Abandon(&endsAtSyncPoint);
  if (replies_.HasOutcomes()) OnOutcomes();  // statements it was preparing are not there
  std::string out;
  // The server's own words when it said why (withheld: it came with nothing asked).
  lostError_ = withheldError_.empty() ? ErrorMessage("ERROR", "08006", lostMessage, 0) : withheldError_;
  withheldError_.clear();
  const std::string& error = lostError_;
  bool errorSent = errorSinceReady_;
  for (size_t i = 0; i < syncPoints; i++) {
    if (!errorSent) out += error;
    errorSent = false;  // each later request gets its own
    AppendMessage(&out, 'Z', "I");
  }
  if (pending && !endsAtSyncPoint) {
    // The client's batch goes on up to its Sync: the error now, the ReadyForQuery then.
    if (syncPoints > 0 || !errorSinceReady_) out += error;
    skipUntilSync_ = true;
    skipErrorSent_ = true;
  } else if (!pending && inTransaction) {
    // Idle in a transaction the server took with it: the client's next request learns it.
    skipUntilSync_ = true;
    skipErrorSent_ = false;
  }
  if (!out.empty()) client_->Write(out.data(), out.size());
  lastStatus_ = 'I';
  copyIn_ = false;
  clientUnsynced_ = skipUntilSync_;
  errorSinceReady_ = false;
  refusals_.clear();
  upstreamInspecting_ = false;
  stats_.upstreamLost++;
  upstream_ = nullptr;
  observer_->OnUpstreamReleased(lost);  // closed: the owner drops it
  return true;
}

void Pump::AnswerSkipped() {
  std::string out;
  if (!skipErrorSent_) out += lostError_;
  AppendMessage(&out, 'Z', "I");
  skipUntilSync_ = false;
  skipErrorSent_ = false;
  clientUnsynced_ = false;
  if (!client_->closed()) client_->Write(out.data(), out.size());
  // What follows in the chunk is read afresh (it may need a link: OnPlaintext).
  clientParser_.StopAfterMessage();
  resumeAfterSkip_ = true;
}

// The client's stream counts as at a message boundary when its Terminate was held back: the
// server got everything before the Terminate and none of it (its body may still be arriving,
// and is never read).
bool Pump::UpstreamIdle() const {
  return reuse_ && protocol_ == PumpProtocol::Postgres && UpstreamOpen() && !expired_ && !copyIn_ && waiting_.empty() && raw_.empty() &&
         replies_.Empty() && !clientUnsynced_ && lastStatus_ == 'I' && gated_.empty() && refusals_.empty() &&
         unreadableSetting_.empty() && (clientParser_.AtBoundary() || terminateHeld_) && upstreamParser_.AtBoundary() &&
         !clientParser_.failed() && !upstreamParser_.failed() && upstream_->queuedBytes() == 0;
}

bool Pump::UpstreamReusable() const {
  return UpstreamIdle() && (!clientTerminated_ || terminateHeld_) &&
         (stats_.reason == CloseReason::ClientEof || stats_.reason == CloseReason::ClientError ||
          stats_.reason == CloseReason::ClientTerminate);
}

void Pump::FinishTerminate() {
  if (!clientTerminated_ || terminateFinished_ || ended_ || clientClosed_) return;
  if (!terminateHeld_) return;  // the Terminate went on: the server closes, then the client (OnClosed)
  // Pooled: what the client sent before its Terminate still waits for a server link.
  if (wanting_ || !waiting_.empty() || !raw_.empty()) return;
  bool upstreamOpen = UpstreamOpen();
  if (!replies_.Empty() && upstreamOpen) return;  // earlier requests still being answered
  if (!upstreamParser_.AtBoundary() && upstreamOpen) return;  // the last answer (its ReadyForQuery) is still arriving
  terminateFinished_ = true;
  if (UpstreamIdle()) {
    if (stats_.reason == CloseReason::None) stats_.reason = CloseReason::ClientTerminate;
    client_->Close(CloseReason::ClientTerminate, "");
    return;
  }
  if (upstream_ == nullptr) {
    // Pooled, between transactions: no server link to end; the session just closes.
    if (stats_.reason == CloseReason::None) stats_.reason = CloseReason::ClientTerminate;
    client_->Close(CloseReason::ClientTerminate, "");
    return;
  }
  // The server session is not clean (in a transaction, or answering): it ends with the client.
  terminateHeld_ = false;
  if (!upstream_->closed()) upstream_->Write("X\0\0\0\4", 5);
}

void Pump::Release(uint64_t holdId) {
  for (Gate& g : gated_) {
    if (g.id == holdId) {
      g.released = true;
      break;
    }
  }
  while (!gated_.empty() && gated_.front().released) {
    Gate g = std::move(gated_.front());
    gated_.pop_front();
    if (!g.bytes.empty()) ToUpstream(g.bytes.data(), g.bytes.size());
  }
  if (GatedBytes() <= highWater_ / 4 && !client_->closed()) client_->ResumeRead();
}

void Pump::CheckDeadline() {
  if (deadline_ != 0 && !expired_ && client_->Now() >= deadline_) expired_ = true;
}

void Pump::Terminate(CloseReason reason, const char* finalBytes, size_t len) {
  if (stats_.reason == CloseReason::None) stats_.reason = reason;
  if (len > 0 && !client_->closed()) client_->Write(finalBytes, len);
  client_->Close(reason, "");
  if (upstream_ != nullptr) upstream_->Close(reason, "");
  else AbandonWait();
}

void Pump::EndExpired() {
  if (stats_.reason == CloseReason::None) {
    stats_.reason = CloseReason::TokenExpired;
    stats_.detail = expiryMessage_;
  }
  std::string fatal = FatalResponse("28P01", expiryMessage_.empty() ? "access token expired; reconnect with a fresh token" : expiryMessage_);
  client_->Write(fatal.data(), fatal.size());
  client_->Close(CloseReason::TokenExpired, "");
  if (upstream_ != nullptr) upstream_->Close(CloseReason::TokenExpired, "");
  else AbandonWait();
}

void Pump::UpstreamInspector::OnMessageStart(uint8_t type, uint32_t length) {
  withholding_ = type == 'E' && pump_->pooling_ && !pump_->pinned_ && pump_->replies_.Empty() && pump_->upstream_ != nullptr;
  if (withholding_) {
    dropping_ = true;
    pump_->upstreamCap_.Start(0, length);
    pump_->withheldError_.clear();
    if (length + 5 <= kMaxWithheldErrorBytes) AppendHeader(&pump_->withheldError_, type, length);
    return;
  }
  uint32_t refusal = pump_->TrackUpstreamStart(type);
  dropping_ = false;
  std::list<PendingRefusal>& refusals = pump_->refusals_;
  if (type == 'E' && refusal != 0) {
    while (!refusals.empty() && refusals.front().id < refusal) refusals.pop_front();
    if (!refusals.empty() && refusals.front().id == refusal) {
      // The server failed the stand-in: the client gets the gateway's refusal instead.
      out += refusals.front().errorResponse;
      refusals.pop_front();
      dropping_ = true;
    }
  }
  while (!refusals.empty() && refusals.front().id <= pump_->replies_.LastRetiredRefusal()) refusals.pop_front();
  // The answer to the gateway's own Parse or Close (prepared statements carried between links).
  if (pump_->replies_.DropCurrent()) dropping_ = true;
  pump_->upstreamCap_.Start(dropping_ ? 0 : type, length);
  if (dropping_) return;
  if (type == 'S') parameter_.clear();
  AppendHeader(&out, type, length);
}

void Pump::UpstreamInspector::OnMessageBody(uint8_t type, const uint8_t* data, size_t len) {
  pump_->upstreamCap_.Body(data, len);
  if (withholding_) {
    if (!pump_->withheldError_.empty()) pump_->withheldError_.append(reinterpret_cast<const char*>(data), len);
    return;
  }
  pump_->TrackUpstreamBody(type, data, len);
  if (dropping_) return;
  if (type == 'S' && parameter_.size() < 256) parameter_.append(reinterpret_cast<const char*>(data), len);
  out.append(reinterpret_cast<const char*>(data), len);
}

void Pump::UpstreamInspector::OnMessageEnd(uint8_t type) {
  pump_->EndCapture(pump_->upstreamCap_, false);
  if (withholding_) {
    withholding_ = false;
    dropping_ = false;
    return;
  }
  if (pump_->replies_.FrontIsFake()) out += pump_->TakeFakes();  // their turn came with this message
  if (type != 'S' || dropping_) return;
  // ParameterStatus "name\0value\0": the settings that decide how statement text is read.
  size_t nameEnd = parameter_.find('\0');
  if (nameEnd == std::string::npos) return;
  std::string name = parameter_.substr(0, nameEnd);
  size_t valueEnd = parameter_.find('\0', nameEnd + 1);
  std::string value = parameter_.substr(nameEnd + 1, valueEnd == std::string::npos ? std::string::npos : valueEnd - nameEnd - 1);
  if ((name == "client_encoding" && IsClientOnlyEncoding(value)) || (name == "standard_conforming_strings" && value != "on")) {
    if (pump_->unreadableSetting_.empty()) pump_->unreadableSetting_ = name + " " + value;
  }
}

Pump::Pump(Leg* client, Leg* upstream, PumpProtocol protocol, size_t highWater, PumpObserver* observer,
           bool inspectStatements)
    : client_(client),
      upstream_(upstream),
      protocol_(protocol),
      highWater_(highWater),
      observer_(observer),
      inspect_(inspectStatements && protocol == PumpProtocol::Postgres) {
  client_->SetLowWater(highWater_ / 4);
  if (upstream_ != nullptr) upstream_->SetLowWater(highWater_ / 4);
  if (protocol_ == PumpProtocol::Postgres) client_->SetMaxTlsRecord(kPgTlsRecordPlaintext);
}

void Pump::Start() {
  if (!clientTerminated_) client_->ResumeRead();
  if (upstream_ != nullptr) upstream_->ResumeRead();
  if (client_->closed()) OnClosed(client_);
  if (upstream_ != nullptr && upstream_->closed()) OnClosed(upstream_);
  ReleaseIfIdle();  // a pooled session starts between transactions
}

void Pump::ToUpstream(const char* data, size_t len) {
  if (len == 0) return;
  if (upstream_ != nullptr) {
    if (!upstreamClosed_ && !upstream_->closed()) upstream_->Write(data, len);
    return;
  }
  if (!pooling_ || ended_ || (clientClosed_ && !draining_)) return;
  waiting_.append(data, len);
  if (!wanting_) {
    wanting_ = true;
    observer_->OnUpstreamWanted();  // may attach at once (AttachUpstream flushes waiting_)
  }
}

bool Pump::AttachUpstream(Leg* upstream) {
  if (!CanAttachUpstream() || upstream == nullptr || upstream->closed()) return false;
  upstream_ = upstream;
  upstreamClosed_ = false;
  wanting_ = false;
  stats_.upstreamAttaches++;
  upstream_->SetLowWater(highWater_ / 4);
  upstream_->ResumeRead();
  if (!waiting_.empty()) {
    std::string bytes;
    bytes.swap(waiting_);
    upstream_->Write(bytes.data(), bytes.size());
  }
  if (!raw_.empty()) {
    // What the client sent meanwhile is read now, with the link it will go to.
    std::string bytes;
    bytes.swap(raw_);
    OnPlaintext(client_, bytes.data(), bytes.size());
    if (ended_) return true;
  }
  if (!clientTerminated_ && !client_->closed() && GatedBytes() <= highWater_ / 4) client_->ResumeRead();
  if (clientTerminated_) FinishTerminate();
  return true;
}

void Pump::PinFor(const std::string& reason) {
  if (pinned_) return;
  pinned_ = true;
  stats_.pinReason = reason;
  observer_->OnPinned(reason);
}

void Pump::ReleaseIfIdle() {
  if (!pooling_ || pinned_ || holdLink_ || ended_ || upstream_ == nullptr || clientClosed_ || clientTerminated_) return;
  if (!UpstreamIdle()) return;
  Leg* u = upstream_;
  upstream_ = nullptr;
  withheldError_.clear();  // that link's
  u->PauseRead();
  stats_.upstreamReleases++;
  observer_->OnUpstreamReleased(u);
}

void Pump::OnPlaintext(Leg* from, const char* data, size_t len) {
  bool fromClient = from == client_;
  if (fromClient && clientTerminated_) return;  // after Terminate: never read
  if (!fromClient && from != upstream_) return;  // a link this pump let go of
  if (fromClient && pooling_ && upstream_ == nullptr && !ended_) {
    // Between links: kept as they came until a link is attached (a Terminate alone is read
    // at once: it needs no server).
    bool now = raw_.empty() && (!clientParser_.AtBoundary() || (len > 0 && data[0] == 'X') || skipUntilSync_);
    if (!now) {
      if (clientClosed_ && !draining_) return;
      raw_.append(data, len);
      if (!wanting_) {
        wanting_ = true;
        observer_->OnUpstreamWanted();  // may attach at once (AttachUpstream reads raw_)
      }
      return;
    }
  }
  bool upstreamInspecting = false;
  const char* rest = nullptr;  // after a skipped request was answered: read again (AnswerSkipped)
  size_t restLen = 0;
  if (protocol_ == PumpProtocol::Postgres) {
    PgFrameParser& parser = fromClient ? clientParser_ : upstreamParser_;
    PgFrameCallbacks* cb = fromClient ? static_cast<PgFrameCallbacks*>(&clientCounter_) : &upstreamCounter_;
    if (fromClient && Rebuild()) cb = &clientInspector_;
    if (!fromClient) {
      // The server's answers are rebuilt while some need rewriting; back to plain forwarding
      // only between messages (a message the inspector began may be one it drops).
      // Pooled sessions always: switching from the plain path inside a message header would
      // write the header's first bytes twice, and what needs rewriting (the gateway's own
      // requests, an ErrorResponse with nothing asked) comes in any chunk.
      bool want = inspect_ || pooling_ || !refusals_.empty() || replies_.Rewrites() > 0;
      if (want && !upstreamInspecting_) upstreamInspector_.Resume();
      if (want) upstreamInspecting_ = true;
      else if (upstreamParser_.AtBoundary()) upstreamInspecting_ = false;
      upstreamInspecting = upstreamInspecting_;
      if (upstreamInspecting) cb = &upstreamInspector_;
    }
    PgFrameResult r = parser.Feed(reinterpret_cast<const uint8_t*>(data), len, cb);
    if (r.status == PgFrameStatus::Error) {
      // Fail closed: a frame we cannot parse ends the session; nothing of it is forwarded.
      if (stats_.reason == CloseReason::None) {
        stats_.reason = CloseReason::ProtocolError;
        stats_.detail = std::string(fromClient ? "client: " : "upstream: ") + r.error;
      }
      deferred_.clear();  // messages of a chunk that is not forwarded are not recorded as sent
      client_->Destroy(CloseReason::ProtocolError, stats_.detail);
      if (upstream_ != nullptr) upstream_->Destroy(CloseReason::ProtocolError, stats_.detail);
      return;
    }
    if (fromClient && resumeAfterSkip_) {
      resumeAfterSkip_ = false;
      if (r.consumed < len) {
        rest = data + r.consumed;
        restLen = len - r.consumed;
        len = r.consumed;
      }
    }
    if (fromClient && clientTerminated_) {
      // The parser stopped after the Terminate: what follows it in this chunk is dropped.
      len = r.consumed;
      client_->PauseRead();
      bool whole = terminateAt_ != PgFrameParser::kNotInThisChunk;
      if (!Rebuild() && copyIn_) {
        copyIn_ = false;
        if (whole) {
          // In COPY FROM STDIN the server would not end on Terminate: end the copy first.
          ToUpstream(data, terminateAt_);
          std::string fail = CopyFailForTerminate();
          ToUpstream(fail.data(), fail.size());
          stats_.bytesFromClient += terminateAt_;
          data += terminateAt_;
          len -= terminateAt_;
          terminateAt_ = 0;
        } else {
          // Its header was forwarded already: the server answers it with an error and reads
          // on, so the upstream is closed after it.
          ToUpstream(data, len);
          stats_.bytesFromClient += len;
          if (upstream_ != nullptr) upstream_->Close(CloseReason::ClientTerminate, "");
          return;
        }
      }
      if (!Rebuild() && reuse_ && whole && gated_.empty()) {
        // Held back so that the upstream may be kept (a Terminate whose header began in an
        // earlier chunk was partly forwarded already, and goes on).
        terminateHeld_ = true;
        len = terminateAt_;
      }
    }
  }
  if (fromClient && expired_) {
    // Nothing of this chunk is forwarded: the statement came after the token's expiry.
    clientInspector_.out.clear();
    deferred_.clear();
    EndExpired();
    return;
  }
  if (fromClient) stats_.bytesFromClient += len;
  else stats_.bytesFromUpstream += len;
  if (fromClient ? Rebuild() : upstreamInspecting) {
    std::string& out = fromClient ? clientInspector_.out : upstreamInspector_.out;
    if (!out.empty()) {
      if (fromClient) ToUpstream(out.data(), out.size());
      else client_->Write(out.data(), out.size());
    }
    out.clear();
  } else if (len > 0) {
    if (fromClient) ToUpstream(data, len);
    else client_->Write(data, len);
  }
  DeliverCaptures();
  if (!unreadableSetting_.empty() && !ended_ && !client_->closed()) {
    std::string setting = unreadableSetting_;
    std::string fatal = FatalResponse(
        "0A000", "the session's " + setting +
                     " is one the gateway cannot read statements in, and read access is checked per statement; "
                     "reconnect with client_encoding UTF8 and standard_conforming_strings on");
    Terminate(CloseReason::UnreadableSetting, fatal.data(), fatal.size());
    return;
  }
  if (clientTerminated_) FinishTerminate();
  if (!fromClient || (pooling_ && replies_.Empty())) {
    // (A pooled client chunk may have needed no server at all: answered by the gateway.)
    FinishDrain();
    ReleaseIfIdle();
  }
  if (rest != nullptr && !ended_) OnPlaintext(client_, rest, restLen);
}

void Pump::OnReadDone(Leg* from) {
  if (from == client_) {
    // Toward the server: its link's queue, what waits for a link, and what waits behind holds.
    size_t queued = upstream_ != nullptr ? upstream_->queuedBytes() : waiting_.size() + raw_.size();
    if (queued > highWater_ || GatedBytes() > highWater_) from->PauseRead();
  } else if (from == upstream_) {
    if (client_->queuedBytes() > highWater_) from->PauseRead();
  }
}

void Pump::OnDrain(Leg* c) {
  if (c == client_) {
    if (upstream_ != nullptr && !upstream_->closed()) upstream_->ResumeRead();
    return;
  }
  if (c != upstream_) return;  // a link this pump let go of
  if (GatedBytes() > highWater_ || clientTerminated_) return;
  if (!client_->closed()) client_->ResumeRead();
  ReleaseIfIdle();
}

void Pump::OnClosed(Leg* c) {
  bool isClient = c == client_;
  if (!isClient && c != upstream_) return;  // a link this pump let go of
  if (!isClient && !upstreamClosed_ && SurviveLinkLoss(c)) return;
  if (isClient) {
    if (clientClosed_) return;
    clientClosed_ = true;
  } else {
    if (upstreamClosed_) return;
    upstreamClosed_ = true;
  }
  if (stats_.reason == CloseReason::None) {
    CloseReason why = c->closeReason();
    stats_.reason = why == CloseReason::Eof      ? (isClient ? CloseReason::ClientEof : CloseReason::UpstreamEof)
                    : why == CloseReason::Closed ? CloseReason::Closed
                                                 : (isClient ? CloseReason::ClientError : CloseReason::UpstreamError);
    stats_.detail = c->closeDetail();
  }
  if (isClient && upstream_ == nullptr) {
    if (pooling_ && (wanting_ || !waiting_.empty() || !raw_.empty()) && !expired_) {
      // Pooled, between links: what the client sent before it left still goes to a server
      // (as PostgreSQL runs what it read before the EOF); the pump ends once it is answered.
      draining_ = true;
      return;
    }
    upstreamClosed_ = true;  // no server link: nothing to keep or close
  } else if (isClient && UpstreamReusable()) {
    // The client left an idle session: the upstream stays open for the owner to reuse.
    upstream_->PauseRead();
    upstreamClosed_ = true;  // as far as this pump is concerned
    stats_.upstreamKept = true;
  } else {
    Leg* other = isClient ? upstream_ : client_;
    if (isClient && terminateHeld_ && !upstreamClosed_ && !upstream_->closed()) upstream_->Write("X\0\0\0\4", 5);
    // Deliver what the other side is still owed, then close it.
    other->Close(CloseReason::PeerClosed, "");
  }
  EndIfBothClosed();
}

void Pump::FinishDrain() {
  if (!draining_ || upstream_ == nullptr || !replies_.Empty() || !upstreamParser_.AtBoundary()) return;
  draining_ = false;
  if (UpstreamIdle() && !pinned_) {
    upstream_->PauseRead();
    stats_.upstreamKept = true;  // the owner takes it back with the end (OnPumpEnd)
  } else {
    upstream_->Close(CloseReason::PeerClosed, "");
  }
  upstreamClosed_ = true;
  EndIfBothClosed();
}

void Pump::AbandonWait() {
  // Ended from the gateway's side with no server link: nothing waits for one any more.
  waiting_.clear();
  raw_.clear();
  wanting_ = false;
  draining_ = false;
  upstreamClosed_ = true;
  EndIfBothClosed();
}

void Pump::EndIfBothClosed() {
  if (clientClosed_ && upstreamClosed_ && !ended_) {
    ended_ = true;
    stats_.messagesFromClient = clientParser_.messages();
    stats_.messagesFromUpstream = upstreamParser_.messages();
    if (!Rebuild()) stats_.statements = clientCounter_.statements;
    deferred_.clear();
    observer_->OnPumpEnd(stats_);
  }
}

}  // namespace vg

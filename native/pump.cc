// See pump.h.
#include "pump.h"

#include <cstring>

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

// ErrorResponse ERROR 42501 (insufficient_privilege): the session goes on.
std::string ErrorResponse(const std::string& message) {
  std::string body;
  body += 'S'; body += "ERROR"; body.push_back('\0');
  body += 'V'; body += "ERROR"; body.push_back('\0');
  body += 'C'; body += "42501"; body.push_back('\0');
  body += 'M'; body += message; body.push_back('\0');
  body.push_back('\0');
  std::string out;
  AppendHeader(&out, 'E', static_cast<uint32_t>(body.size()));
  return out + body;
}

std::string FatalResponse(const char* sqlstate, const std::string& message) {
  std::string body;
  body += 'S'; body += "FATAL"; body.push_back('\0');
  body += 'V'; body += "FATAL"; body.push_back('\0');
  body += 'C'; body += sqlstate; body.push_back('\0');
  body += 'M'; body += message; body.push_back('\0');
  body.push_back('\0');
  std::string out;
  AppendHeader(&out, 'E', static_cast<uint32_t>(body.size()));
  return out + body;
}

// The statement text of a Query ("text\0") or Parse ("name\0text\0...") body.
std::string StatementText(uint8_t type, const std::string& body) {
  size_t start = 0;
  if (type == 'P') {
    size_t nameEnd = body.find('\0');
    if (nameEnd == std::string::npos) return std::string();
    start = nameEnd + 1;
  } else if (type != 'Q') {
    return std::string();
  }
  size_t end = body.find('\0', start);
  return body.substr(start, end == std::string::npos ? std::string::npos : end - start);
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

void Pump::ClientInspector::OnMessageStart(uint8_t type, uint32_t length) {
  pump_->clientCap_.Start(type, length);
  pump_->TrackClient(type);
  holding_ = false;
  dropping_ = false;
  tooLong_ = false;
  if (type == 'X' && pump_->reuse_ && length == 0 && pump_->gated_.empty() && !discardToSync_) {
    pump_->terminateHeld_ = true;  // sent on only if the upstream is not kept (OnClosed)
    dropping_ = true;
    return;
  }
  if (discardToSync_) {
    if (type != 'S') {
      dropping_ = true;  // the rest of a refused extended-protocol batch
      return;
    }
    discardToSync_ = false;
    AppendHeader(&Sink(), type, length);
    pump_->syncPoints_.push_back(std::move(pendingDenial_));
    pendingDenial_.clear();
    return;
  }
  if (type == 'Q' || type == 'P' || type == 'F') {
    pump_->stats_.statements += type == 'F' ? 0 : 1;
    pump_->CheckDeadline();
    holding_ = true;
    held_.clear();
    if (length > kMaxInspectedStatementBytes) {
      tooLong_ = true;
      dropping_ = true;
      holding_ = false;
      return;
    }
    AppendHeader(&held_, type, length);
    return;
  }
  if (type == 'S') pump_->syncPoints_.push_back(std::string());
  AppendHeader(&Sink(), type, length);
}

std::string& Pump::ClientInspector::Sink() { return pump_->gated_.empty() ? out : pump_->gated_.back().bytes; }

void Pump::ClientInspector::OnMessageBody(uint8_t, const uint8_t* data, size_t len) {
  pump_->clientCap_.Body(data, len);
  if (dropping_) return;
  if (holding_) {
    held_.append(reinterpret_cast<const char*>(data), len);
    return;
  }
  Sink().append(reinterpret_cast<const char*>(data), len);
}

void Pump::ClientInspector::OnMessageEnd(uint8_t type) {
  pump_->EndCapture(pump_->clientCap_, true);
  if (!holding_ && !tooLong_) return;
  PumpObserver::Verdict verdict = PumpObserver::Verdict::Refuse;
  std::string denial;
  uint64_t holdId = 0;
  if (tooLong_) {
    denial = "statement too long to inspect";
  } else {
    std::string text = type == 'F' ? std::string() : StatementText(type, held_.substr(5));
    pump_->DeliverCaptures();  // earlier messages of this chunk first, in order
    verdict = pump_->observer_->OnStatement(type, text, &denial, &holdId);
  }
  holding_ = false;
  tooLong_ = false;
  dropping_ = false;
  if (verdict == PumpObserver::Verdict::Hold) {
    pump_->gated_.push_back(Gate{holdId, false, std::move(held_)});
    if (type == 'Q' || type == 'F') pump_->syncPoints_.push_back(std::string());
  } else if (verdict == PumpObserver::Verdict::Forward) {
    Sink() += held_;
    if (type == 'Q' || type == 'F') pump_->syncPoints_.push_back(std::string());
  } else {
    pump_->stats_.refusedStatements++;
    std::string err = ErrorResponse(denial.empty() ? "permission denied: statement not allowed" : denial);
    if (type == 'P') {
      // Discard the batch up to its Sync, which is forwarded so that earlier messages in
      // the pipeline are answered; the refusal is emitted before that Sync's ReadyForQuery.
      discardToSync_ = true;
      pendingDenial_ = std::move(err);
    } else {
      // Replace the statement with a Sync: the upstream answers ReadyForQuery in order.
      AppendHeader(&Sink(), 'S', 0);
      pump_->syncPoints_.push_back(std::move(err));
    }
  }
  held_.clear();
  held_.shrink_to_fit();
}

bool Pump::UpstreamReusable() const {
  return reuse_ && protocol_ == PumpProtocol::Postgres && !upstreamClosed_ && !upstream_->closed() &&
         (!clientTerminated_ || terminateHeld_) &&
         !expired_ && pendingSyncs_ == 0 && !clientUnsynced_ && !clientAfterTerminate_ && lastStatus_ == 'I' &&
         gated_.empty() && syncPoints_.empty() && clientParser_.AtBoundary() && upstreamParser_.AtBoundary() &&
         !clientParser_.failed() && !upstreamParser_.failed() && upstream_->queuedBytes() == 0 &&
         (stats_.reason == "client-eof" || stats_.reason == "client-error");
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
    if (!upstream_->closed() && !g.bytes.empty()) upstream_->Write(g.bytes.data(), g.bytes.size());
  }
  if (GatedBytes() <= highWater_ / 4 && !client_->closed()) client_->ResumeRead();
}

void Pump::CheckDeadline() {
  if (deadline_ != 0 && !expired_ && client_->Now() >= deadline_) expired_ = true;
}

void Pump::Terminate(const std::string& reason, const char* finalBytes, size_t len) {
  if (stats_.reason.empty()) stats_.reason = reason;
  if (len > 0 && !client_->closed()) client_->Write(finalBytes, len);
  client_->Close(reason.c_str(), "");
  upstream_->Close(reason.c_str(), "");
}

void Pump::EndExpired() {
  if (stats_.reason.empty()) {
    stats_.reason = "token-expired";
    stats_.detail = expiryMessage_;
  }
  std::string fatal = FatalResponse("28P01", expiryMessage_.empty() ? "access token expired; reconnect with a fresh token" : expiryMessage_);
  client_->Write(fatal.data(), fatal.size());
  client_->Close("token-expired", "");
  upstream_->Close("token-expired", "");
}

void Pump::UpstreamInspector::OnMessageStart(uint8_t type, uint32_t length) {
  pump_->upstreamCap_.Start(type, length);
  pump_->TrackUpstreamStart(type);
  if (type == 'Z' && !pump_->syncPoints_.empty()) {
    std::string inject = std::move(pump_->syncPoints_.front());
    pump_->syncPoints_.pop_front();
    out += inject;
  }
  AppendHeader(&out, type, length);
}

void Pump::UpstreamInspector::OnMessageBody(uint8_t type, const uint8_t* data, size_t len) {
  pump_->upstreamCap_.Body(data, len);
  pump_->TrackUpstreamBody(type, data, len);
  out.append(reinterpret_cast<const char*>(data), len);
}

void Pump::UpstreamInspector::OnMessageEnd(uint8_t) { pump_->EndCapture(pump_->upstreamCap_, false); }

Pump::Pump(Conn* client, Conn* upstream, PumpProtocol protocol, size_t highWater, PumpObserver* observer,
           bool inspectStatements)
    : client_(client),
      upstream_(upstream),
      protocol_(protocol),
      highWater_(highWater),
      observer_(observer),
      inspect_(inspectStatements && protocol == PumpProtocol::Postgres) {
  client_->SetLowWater(highWater_ / 4);
  upstream_->SetLowWater(highWater_ / 4);
}

void Pump::Start() {
  client_->ResumeRead();
  upstream_->ResumeRead();
  if (client_->closed()) OnClosed(client_);
  if (upstream_->closed()) OnClosed(upstream_);
}

void Pump::OnPlaintext(Conn* from, const char* data, size_t len) {
  bool fromClient = from == client_;
  Conn* to = fromClient ? upstream_ : client_;
  if (protocol_ == PumpProtocol::Postgres) {
    PgFrameParser& parser = fromClient ? clientParser_ : upstreamParser_;
    PgFrameCallbacks* cb = fromClient ? static_cast<PgFrameCallbacks*>(&clientCounter_) : &upstreamCounter_;
    if (inspect_) cb = fromClient ? static_cast<PgFrameCallbacks*>(&clientInspector_) : &upstreamInspector_;
    PgFrameResult r = parser.Feed(reinterpret_cast<const uint8_t*>(data), len, cb);
    if (r.status == PgFrameStatus::Error) {
      // Fail closed: a frame we cannot parse ends the session; nothing of it is forwarded.
      if (stats_.reason.empty()) {
        stats_.reason = "protocol-error";
        stats_.detail = std::string(fromClient ? "client: " : "upstream: ") + r.error;
      }
      deferred_.clear();  // messages of a chunk that is not forwarded are not recorded as sent
      client_->Destroy("protocol-error", stats_.detail);
      upstream_->Destroy("protocol-error", stats_.detail);
      return;
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
  if (inspect_) {
    std::string& out = fromClient ? clientInspector_.out : upstreamInspector_.out;
    if (!out.empty()) to->Write(out.data(), out.size());
    out.clear();
    DeliverCaptures();
    return;
  }
  if (fromClient && reuse_ && clientTerminated_ && !terminateHeld_ && !clientAfterTerminate_ && len >= 5 &&
      memcmp(data + len - 5, "X\0\0\0\4", 5) == 0 && clientParser_.AtBoundary()) {
    // The client's Terminate ends this chunk: hold it back so the upstream may be kept.
    terminateHeld_ = true;
    len -= 5;
  }
  if (len > 0) to->Write(data, len);
  DeliverCaptures();
}

void Pump::OnReadDone(Conn* from) {
  Conn* to = from == client_ ? upstream_ : client_;
  if (to->queuedBytes() > highWater_) from->PauseRead();
  // Bytes queued behind held statements count as queued toward the upstream.
  if (from == client_ && GatedBytes() > highWater_) from->PauseRead();
}

void Pump::OnDrain(Conn* c) {
  Conn* other = c == client_ ? upstream_ : client_;
  if (other == client_ && GatedBytes() > highWater_) return;
  if (!other->closed()) other->ResumeRead();
}

void Pump::OnClosed(Conn* c) {
  bool isClient = c == client_;
  if (isClient) {
    if (clientClosed_) return;
    clientClosed_ = true;
  } else {
    if (upstreamClosed_) return;
    upstreamClosed_ = true;
  }
  if (stats_.reason.empty()) {
    const std::string& why = c->closeReason();
    std::string side = isClient ? "client" : "upstream";
    stats_.reason = why == "eof" ? side + "-eof" : why == "closed" ? "closed" : side + "-error";
    stats_.detail = c->closeDetail();
  }
  Conn* other = isClient ? upstream_ : client_;
  if (isClient && UpstreamReusable()) {
    // The client left an idle session: the upstream stays open for the owner to reuse.
    upstream_->PauseRead();
    upstreamClosed_ = true;  // as far as this pump is concerned
    stats_.upstreamKept = true;
  } else {
    if (isClient && terminateHeld_ && !upstreamClosed_ && !upstream_->closed()) upstream_->Write("X\0\0\0\4", 5);
    // Deliver what the other side is still owed, then close it.
    other->Close("peer-closed", "");
  }
  if (clientClosed_ && upstreamClosed_ && !ended_) {
    ended_ = true;
    stats_.messagesFromClient = clientParser_.messages();
    stats_.messagesFromUpstream = upstreamParser_.messages();
    if (!inspect_) stats_.statements = clientCounter_.statements;
    deferred_.clear();
    observer_->OnPumpEnd(stats_);
  }
}

}  // namespace vg

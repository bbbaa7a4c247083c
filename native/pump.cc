// See pump.h.
#include "pump.h"

namespace vg {

Pump::Pump(Conn* client, Conn* upstream, PumpProtocol protocol, size_t highWater, PumpObserver* observer)
    : client_(client), upstream_(upstream), protocol_(protocol), highWater_(highWater), observer_(observer) {
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
    Counter& counter = fromClient ? clientCounter_ : upstreamCounter_;
    PgFrameResult r = parser.Feed(reinterpret_cast<const uint8_t*>(data), len, &counter);
    if (r.status == PgFrameStatus::Error) {
      // Fail closed: a frame we cannot parse ends the session; nothing of it is forwarded.
      if (stats_.reason.empty()) {
        stats_.reason = "protocol-error";
        stats_.detail = std::string(fromClient ? "client: " : "upstream: ") + r.error;
      }
      client_->Destroy("protocol-error", stats_.detail);
      upstream_->Destroy("protocol-error", stats_.detail);
      return;
    }
  }
  if (fromClient) stats_.bytesFromClient += len;
  else stats_.bytesFromUpstream += len;
  to->Write(data, len);
}

void Pump::OnReadDone(Conn* from) {
  Conn* to = from == client_ ? upstream_ : client_;
  if (to->queuedBytes() > highWater_) from->PauseRead();
}

void Pump::OnDrain(Conn* c) {
  Conn* other = c == client_ ? upstream_ : client_;
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
  // Deliver what the other side is still owed, then close it.
  other->Close("peer-closed", "");
  if (clientClosed_ && upstreamClosed_ && !ended_) {
    ended_ = true;
    stats_.messagesFromClient = clientParser_.messages();
    stats_.messagesFromUpstream = upstreamParser_.messages();
    stats_.statements = clientCounter_.statements;
    observer_->OnPumpEnd(stats_);
  }
}

}  // namespace vg

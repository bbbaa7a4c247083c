// libFuzzer target for the pump's statement inspection (session/pump.h) on a read session,
// driven through fake legs (net/leg.h) as a hostile client and a confused server would drive
// it, with every chunking of the client's bytes:
//  - safety: every Query, Parse and FunctionCall the server receives is one the observer let
//    through (forwarded or held, then released) or the gateway's stand-in for a refusal, and
//    nothing follows a Terminate;
//  - chunking does not matter: fed whole, split at every offset, or a byte at a time, the
//    server and the client receive the same bytes, the observer sees the same statements and
//    messages, and the session ends the same way (a frame error or an unreadable setting ends
//    it after the chunk that carried it, so there only the ending is compared);
//  - the pump always ends once its legs have closed; ASan/UBSan find the rest.
//
// Input: byte 0 flags (bit 0: reuse the upstream; bit 1: capture messages for recording; bit 2:
// refuse FunctionCalls; bit 3: no inspection, the plain counting path, checked for crashes
// only), bytes 1-2 the client stream's length (big-endian, modulo what is left), then the
// client's bytes, then the server's. Statements are refused when their text holds a 'w', held
// when it holds an 'h', forwarded otherwise; holds are released after all client bytes, in
// reverse order.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "net/leg.h"
#include "session/pump.h"

namespace {

constexpr char kStandIn[] = "vecgate refused this statement";

struct FakeLeg final : vg::Leg {
  std::string written;
  bool closing = false;
  bool closeDelivered = false;
  vg::CloseReason reason = vg::CloseReason::None;
  std::string detail;
  bool Write(const char* data, size_t len) override {
    if (closing) return false;
    written.append(data, len);
    return true;
  }
  void PauseRead() override {}
  void ResumeRead() override {}
  void Close(vg::CloseReason r, const std::string& d) override { End(r, d); }
  void Destroy(vg::CloseReason r, const std::string& d) override { End(r, d); }
  bool closed() const override { return closing; }
  size_t queuedBytes() const override { return 0; }
  vg::CloseReason closeReason() const override { return reason; }
  const std::string& closeDetail() const override { return detail; }
  void SetLowWater(size_t) override {}
  void SetMaxTlsRecord(size_t) override {}
  uint64_t Now() const override { return 1; }
  void End(vg::CloseReason r, const std::string& d) {
    if (closing) return;
    closing = true;
    reason = r;
    detail = d;
  }
};

struct Observer final : vg::PumpObserver {
  bool refuseFunctionCalls = false;
  bool ended = false;
  vg::PumpStats stats;
  std::vector<std::string> allowed;  // texts let through ('F' + "" for FunctionCalls)
  std::string log;                   // statements and captures in the order seen
  std::vector<uint64_t> holds;
  uint64_t nextHold = 1;
  void OnPumpEnd(const vg::PumpStats& s) override {
    if (ended) abort();  // once only
    ended = true;
    stats = s;
  }
  void OnCapture(bool fromClient, uint8_t type, const std::string& body, uint32_t length) override {
    if (body.size() > length) abort();
    log += fromClient ? "c" : "u";
    log.push_back(static_cast<char>(type));
    log += std::to_string(length) + ":" + body + "|";
  }
  Verdict OnStatement(uint8_t type, const std::string& text, vg::StatementRefusal* refusal, uint64_t* holdId) override {
    log += "s";
    log.push_back(static_cast<char>(type));
    log += text + "|";
    bool refuse = type == 'F' ? refuseFunctionCalls : text.find('w') != std::string::npos;
    if (refuse) {
      refusal->message = "refused by the fuzz observer";
      return Verdict::Refuse;
    }
    allowed.push_back(std::string(1, static_cast<char>(type)) + text);
    if (type != 'F' && text.find('h') != std::string::npos) {
      *holdId = nextHold++;
      holds.push_back(*holdId);
      return Verdict::Hold;
    }
    return Verdict::Forward;
  }
};

struct Outcome {
  std::string toUpstream;
  std::string toClient;
  std::string log;
  vg::CloseReason reason = vg::CloseReason::None;
  uint64_t statements = 0;
  uint64_t refused = 0;
  bool upstreamKept = false;
  // How the client leg was closed, and whether that happened while the client's bytes were fed.
  vg::CloseReason clientLegEnd = vg::CloseReason::None;
  bool endedByClientBytes = false;
};

uint32_t Be32(const std::string& s, size_t at) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(s[at])) << 24) | (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 2])) << 8) | static_cast<uint32_t>(static_cast<uint8_t>(s[at + 3]));
}

// What the server receives, read as the server reads it: every statement is one the observer
// allowed or the stand-in, and nothing follows a Terminate.
void CheckWhatTheServerGets(const std::string& out, const Observer& obs) {
  size_t at = 0;
  while (at + 5 <= out.size()) {
    uint8_t type = static_cast<uint8_t>(out[at]);
    uint32_t len = Be32(out, at + 1);
    if (len < 4) abort();  // the pump never forwards a frame the server cannot read
    if (at + 1 + len > out.size()) return;  // the client's last message is still arriving
    std::string body = out.substr(at + 5, len - 4);
    if (type == 'Q' || type == 'P' || type == 'F') {
      std::string text;
      bool standIn = false;
      if (type == 'F') {
        standIn = body == std::string(10, '\0');
      } else {
        size_t start = 0;
        if (type == 'P') start = body.find('\0') == std::string::npos ? body.size() : body.find('\0') + 1;
        size_t end = body.find('\0', start);
        text = body.substr(start, end == std::string::npos ? std::string::npos : end - start);
        standIn = text == kStandIn;
      }
      bool allowed = false;
      std::string key = std::string(1, static_cast<char>(type)) + text;
      for (const std::string& a : obs.allowed) allowed = allowed || a == key;
      if (!standIn && !allowed) abort();  // a statement the observer never let through
    }
    at += 1 + len;
    if (type == 'X' && at != out.size()) abort();  // bytes after Terminate
  }
}

// Runs one session. `cuts` are the offsets at which the client's bytes are split into chunks
// (ascending); the server's bytes are split at `upstreamCut`.
Outcome Run(uint8_t flags, const std::string& client, const std::string& upstream, const std::vector<size_t>& cuts, size_t upstreamCut) {
  FakeLeg c;
  FakeLeg u;
  Observer obs;
  bool endedByClientBytes = false;
  obs.refuseFunctionCalls = flags & 4;
  bool inspect = !(flags & 8);
  {
    vg::Pump p(&c, &u, vg::PumpProtocol::Postgres, vg::kDefaultPumpHighWaterBytes, &obs, inspect);
    p.SetReuseUpstream(flags & 1);
    if (flags & 2) {
      // Not 'X': nothing reads a Terminate's body, so its capture would end per chunking (and
      // the recorder never asks for it).
      vg::CaptureSpec spec{"QPFBEDCZSdfc", 64, 1024};
      p.SetCapture(spec, spec);
    }
    p.Start();
    size_t from = 0;
    for (size_t i = 0; i <= cuts.size(); i++) {
      size_t to = i < cuts.size() ? cuts[i] : client.size();
      if (to > from && !p.ended()) p.OnPlaintext(&c, client.data() + from, to - from);
      if (!p.ended()) p.OnReadDone(&c);
      from = to;
    }
    endedByClientBytes = c.closing;
    for (size_t i = obs.holds.size(); i-- > 0;)
      if (!p.ended()) p.Release(obs.holds[i]);
    if (upstreamCut > 0 && !p.ended()) p.OnPlaintext(&u, upstream.data(), upstreamCut);
    if (upstream.size() > upstreamCut && !p.ended()) p.OnPlaintext(&u, upstream.data() + upstreamCut, upstream.size() - upstreamCut);
    // The legs' close events, as the loop would deliver them; then the client leaves.
    for (int round = 0; round < 4 && !p.ended(); round++) {
      if (round == 2 && !c.closing) c.End(vg::CloseReason::Eof, "");
      for (FakeLeg* leg : {&c, &u}) {
        if (leg->closing && !leg->closeDelivered) {
          leg->closeDelivered = true;
          p.OnClosed(leg);
        }
      }
    }
    if (!p.ended() && !(u.closing && !u.closeDelivered)) {
      // Only an upstream kept for reuse may stay open; the pump must have ended anyway.
      abort();
    }
    if (!obs.ended && p.ended()) abort();
  }
  if (inspect) CheckWhatTheServerGets(u.written, obs);
  Outcome o;
  o.toUpstream = std::move(u.written);
  o.toClient = std::move(c.written);
  o.log = std::move(obs.log);
  o.reason = obs.stats.reason;
  o.statements = obs.stats.statements;
  o.refused = obs.stats.refusedStatements;
  o.upstreamKept = obs.stats.upstreamKept;
  o.clientLegEnd = c.reason;
  o.endedByClientBytes = endedByClientBytes;
  return o;
}

void Compare(const Outcome& whole, const Outcome& split) {
  if (whole.reason != split.reason || whole.clientLegEnd != split.clientLegEnd) abort();
  // A frame error or an unreadable setting ends the session after the chunk that carried it:
  // what else of that side's stream went through depends on where the chunk ended.
  bool cutShort = whole.clientLegEnd == vg::CloseReason::ProtocolError || whole.clientLegEnd == vg::CloseReason::UnreadableSetting;
  if (cutShort && whole.endedByClientBytes != split.endedByClientBytes) abort();
  if (cutShort && whole.endedByClientBytes) return;
  if (whole.toUpstream != split.toUpstream) abort();
  if (cutShort) return;
  if (whole.toClient != split.toClient || whole.log != split.log || whole.statements != split.statements ||
      whole.refused != split.refused || whole.upstreamKept != split.upstreamKept)
    abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const uint8_t flags = data[0];
  size_t rest = size - 3;
  size_t clientLen = ((static_cast<size_t>(data[1]) << 8) | data[2]) % (rest + 1);
  std::string client(reinterpret_cast<const char*>(data + 3), clientLen);
  std::string upstream(reinterpret_cast<const char*>(data + 3 + clientLen), rest - clientLen);

  Outcome whole = Run(flags, client, upstream, {}, 0);
  bool differential = !(flags & 8);
  for (size_t k = 1; k < client.size(); k++) {
    Outcome split = Run(flags, client, upstream, {k}, upstream.empty() ? 0 : k % (upstream.size() + 1));
    if (differential) Compare(whole, split);
  }
  std::vector<size_t> bytewise;
  for (size_t k = 1; k < client.size(); k++) bytewise.push_back(k);
  Outcome bytes = Run(flags, client, upstream, bytewise, upstream.size() / 2);
  if (differential) Compare(whole, bytes);
  return 0;
}

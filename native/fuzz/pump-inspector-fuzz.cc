// libFuzzer target for the pump's statement inspection (session/pump.h) on a read session,
// driven through fake legs (net/leg.h) as a hostile client and a confused server would drive
// it, with every chunking of the client's bytes:
//  - safety: every Query, Parse and FunctionCall the server receives is one the observer let
//    through (forwarded or held, then released) or the gateway's stand-in for a refusal, and
//    nothing follows a Terminate;
//  - chunking does not matter: the client's bytes fed whole, split at every offset, or a byte
//    at a time, the server and the client receive the same bytes, the observer sees the same statements and
//    messages, and the session ends the same way (a frame error or an unreadable setting ends
//    it after the chunk that carried it, so there only the ending is compared);
//  - pooled: a link goes back only between whole messages, never with a Terminate, and is
//    never written to after; what the client sent while it had no link reaches the next one;
//  - the pump always ends once its legs have closed; ASan/UBSan find the rest.
//
// Input: byte 0 flags (bit 0: reuse the upstream; bit 1: capture messages for recording; bit 2:
// refuse FunctionCalls; bit 3: no inspection, the plain counting path, checked for crashes
// only; bit 4: transaction pooling, the server link released at each transaction's end and a
// fresh one attached when the client has more (bit 5: attached at once, else after the
// chunk); bit 6: the session pinned to its link), bytes 1-2 the client stream's length (big-endian, modulo what is left), then the
// client's bytes, then the server's. Statements are refused when their text holds a 'w', held
// when it holds an 'h', forwarded otherwise; holds are released after all client bytes, in
// reverse order.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "net/leg.h"
#include "session/pump.h"
#include "test/fake-leg.h"

namespace {

using vg::test::FakeLeg;

constexpr char kStandIn[] = "vecgate refused this statement";

struct Observer final : vg::PumpObserver {
  bool refuseFunctionCalls = false;
  bool ended = false;
  vg::PumpStats stats;
  std::vector<std::string> allowed;  // texts let through ('F' + "" for FunctionCalls)
  std::string log;                   // statements and captures in the order seen
  std::vector<uint64_t> holds;
  uint64_t nextHold = 1;
  // Transaction pooling: the pump, every server link in attach order, and how links come.
  vg::Pump* pump = nullptr;
  std::vector<std::unique_ptr<FakeLeg>>* links = nullptr;
  bool attachAtOnce = false;
  bool wanted = false;
  void Attach() {
    wanted = false;
    links->push_back(std::make_unique<FakeLeg>());
    if (!pump->AttachUpstream(links->back().get())) abort();  // it asked for one
  }
  void OnUpstreamWanted() override {
    if (wanted || pump->upstream() != nullptr) abort();  // once per wait, and only without a link
    wanted = true;
    if (attachAtOnce) Attach();
  }
  void OnUpstreamReleased(vg::Leg* upstream) override;
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

uint32_t Be32(const std::string& s, size_t at) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(s[at])) << 24) | (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 2])) << 8) | static_cast<uint32_t>(static_cast<uint8_t>(s[at + 3]));
}

// A link given back: every message whole (links go back only between messages), none a Terminate.
void CheckReleasedLink(const std::string& out) {
  size_t at = 0;
  while (at < out.size()) {
    if (at + 5 > out.size()) abort();
    uint32_t len = Be32(out, at + 1);
    if (len < 4 || at + 1 + len > out.size() || out[at] == 'X') abort();
    at += 1 + len;
  }
}

void Observer::OnUpstreamReleased(vg::Leg* upstream) {
  if (links == nullptr || links->empty() || upstream != links->back().get()) abort();  // the link it had
  FakeLeg* leg = links->back().get();
  if (leg->released || leg->closing) abort();
  leg->released = true;
  CheckReleasedLink(leg->written);
}

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
// (ascending); the server's bytes are split at `upstreamCut` and go to the link attached then.
Outcome Run(uint8_t flags, const std::string& client, const std::string& upstream, const std::vector<size_t>& cuts, size_t upstreamCut) {
  FakeLeg c;
  std::vector<std::unique_ptr<FakeLeg>> links;
  links.push_back(std::make_unique<FakeLeg>());  // the link the session started with
  Observer obs;
  bool endedByClientBytes = false;
  obs.refuseFunctionCalls = flags & 4;
  bool inspect = !(flags & 8);
  bool pooling = flags & 16;
  obs.links = &links;
  obs.attachAtOnce = flags & 32;
  {
    vg::Pump p(&c, links.back().get(), vg::PumpProtocol::Postgres, vg::kDefaultPumpHighWaterBytes, &obs, inspect);
    obs.pump = &p;
    p.SetReuseUpstream(flags & 1);
    p.SetTransactionPooling(pooling);
    if (flags & 2) {
      // Not 'X': nothing reads a Terminate's body, so its capture would end per chunking (and
      // the recorder never asks for it).
      vg::CaptureSpec spec{"QPFBEDCZSdfc", 64, 1024};
      p.SetCapture(spec, spec);
    }
    if (flags & 64) p.Pin();
    p.Start();
    auto attachIfWanted = [&] {
      if (obs.wanted && !p.ended()) obs.Attach();
    };
    size_t from = 0;
    for (size_t i = 0; i <= cuts.size(); i++) {
      size_t to = i < cuts.size() ? cuts[i] : client.size();
      if (to > from && !p.ended()) p.OnPlaintext(&c, client.data() + from, to - from);
      if (!p.ended()) p.OnReadDone(&c);
      from = to;
      attachIfWanted();
    }
    endedByClientBytes = c.closing;
    for (size_t i = obs.holds.size(); i-- > 0;)
      if (!p.ended()) p.Release(obs.holds[i]);
    attachIfWanted();
    auto feedServer = [&](const char* data, size_t len) {
      vg::Leg* link = p.upstream();
      if (len > 0 && link != nullptr && !p.ended()) p.OnPlaintext(link, data, len);
      if (!links.empty() && links.back()->released && !p.ended()) p.OnPlaintext(links.back().get(), "Z", 1);  // ignored
      attachIfWanted();
    };
    feedServer(upstream.data(), upstreamCut);
    feedServer(upstream.data() + upstreamCut, upstream.size() - upstreamCut);
    // The legs' close events, as the loop would deliver them; then the client leaves; then the
    // server link, if a request is still unanswered.
    for (int round = 0; round < 6 && !p.ended(); round++) {
      if (round == 2 && !c.closing) c.End(vg::CloseReason::Eof, "");
      if (round == 4 && p.upstream() != nullptr && !p.upstream()->closed()) static_cast<FakeLeg*>(p.upstream())->End(vg::CloseReason::Eof, "");
      std::vector<FakeLeg*> legs{&c};
      for (auto& l : links) legs.push_back(l.get());
      for (FakeLeg* leg : legs) {
        if (leg->closing && !leg->closeDelivered) {
          leg->closeDelivered = true;
          p.OnClosed(leg);
        }
      }
      attachIfWanted();
    }
    if (!p.ended() || !obs.ended) abort();  // every session ends once its legs have closed
  }
  std::string toUpstream;
  for (auto& l : links) {
    if (inspect) CheckWhatTheServerGets(l->written, obs);
    toUpstream += l->written;
  }
  Outcome o;
  o.toUpstream = std::move(toUpstream);
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
    Outcome split = Run(flags, client, upstream, {k}, 0);
    if (differential) Compare(whole, split);
  }
  std::vector<size_t> bytewise;
  for (size_t k = 1; k < client.size(); k++) bytewise.push_back(k);
  Outcome bytes = Run(flags, client, upstream, bytewise, 0);
  if (differential) Compare(whole, bytes);
  // The server's bytes split too: checked for safety only, since when a session ends (after
  // the last answer it was owed) decides what of an unsolicited rest the client still gets.
  for (size_t k = 1; k < upstream.size(); k++) Run(flags, client, upstream, {}, k);
  return 0;
}

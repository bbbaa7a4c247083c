// Joins two set-up connections and forwards bytes between them in C++: backpressure both
// ways (a side stops being read while the other has more than `highWater` bytes queued),
// PostgreSQL message framing tracked for boundaries and counters, nothing copied to JS.
#pragma once
#include <cstdint>
#include <deque>
#include <list>
#include <string>
#include <unordered_map>
#include <vector>

#include "net/leg.h"
#include "pg/pg-frame-parser.h"
#include "pg/pg-reply-tracker.h"
#include "pg/prepared-statements.h"

namespace vg {

struct PumpStats {
  uint64_t bytesFromClient = 0;
  uint64_t bytesFromUpstream = 0;
  uint64_t messagesFromClient = 0;
  uint64_t messagesFromUpstream = 0;
  uint64_t statements = 0;
  uint64_t refusedStatements = 0;
  // The client left while the upstream was idle (ReadyForQuery 'I', nothing in flight): the
  // upstream was NOT closed and is the owner's again, paused, for reuse (SetReuseUpstream).
  bool upstreamKept = false;
  // Transaction pooling: server links attached to and released from this session.
  uint64_t upstreamAttaches = 0;
  uint64_t upstreamReleases = 0;
  // Transaction pooling: why the session was pinned to its server session (empty: never).
  std::string pinReason;
  // Transaction pooling with prepared statements carried (SetPreparedStatements): Parses sent
  // to a server (the client's, or the gateway's before a Bind or Describe on another link),
  // and the client's Parses answered without one (the link had the statement prepared).
  uint64_t serverPrepares = 0;
  uint64_t preparesReused = 0;
  // Transaction pooling: server links that ended under the session (the server closed, or the
  // connection broke) while it was not pinned; the session went on (OnUpstreamReleased got them).
  uint64_t upstreamLost = 0;
  // Transaction pooling with SetRefusePins: statements refused because they would have pinned.
  uint64_t pinRefusals = 0;
  CloseReason reason = CloseReason::None;
  std::string detail;
};

// A statement the gateway refuses, worded as PostgreSQL would: SQLSTATE, message, and the
// 1-based character position of a syntax error (0: none).
struct StatementRefusal {
  std::string sqlstate = "42501";
  std::string message;
  uint32_t position = 0;
};

class PumpObserver {
 public:
  virtual ~PumpObserver() = default;
  // Both connections are closed; the pump may be deleted after this returns.
  virtual void OnPumpEnd(const PumpStats& stats) = 0;
  // Statement inspection (read-only sessions): `type` is 'Q' (simple query), 'P' (Parse) or
  // 'F' (FunctionCall, text empty). Forward, or Refuse with `refusal` filled in.
  // Hold: forward nothing from here on until Release(holdId) (e.g. until the statement's
  // audit record is durable); everything after it queues behind it, in order.
  enum class Verdict { Forward, Refuse, Hold };
  // A captured message (recording): `body` is at most the capture limit of its `length`.
  virtual void OnCapture(bool fromClient, uint8_t type, const std::string& body, uint32_t length) {}
  virtual Verdict OnStatement(uint8_t type, const std::string& text, StatementRefusal* refusal, uint64_t* holdId) {
    return Verdict::Forward;
  }
  // Transaction pooling (Pump::SetTransactionPooling): the client has bytes for the server and
  // the session has no server link. Answer with Pump::AttachUpstream, now or later, or end the
  // pump. Called once per wait.
  virtual void OnUpstreamWanted() {}
  // Transaction pooling: at a transaction boundary (ReadyForQuery 'I', every request answered,
  // nothing half-sent either way) the pump let go of `upstream`: it is paused, no longer the
  // pump's, and the owner's to pool. The owner must not delete the pump from here.
  virtual void OnUpstreamReleased(Leg* upstream) {}
  // Transaction pooling: a statement pinned the session to its server session (once).
  virtual void OnPinned(const std::string& reason) {}
};

enum class PumpProtocol { Raw, Postgres };

// Bytes queued toward one side before the other stops being read (pump highWaterBytes):
// the range the bindings accept (server.limits.pump_high_water has the same one).
constexpr size_t kMinPumpHighWaterBytes = 16 * 1024;
constexpr size_t kMaxPumpHighWaterBytes = 64 * 1024 * 1024;
constexpr size_t kDefaultPumpHighWaterBytes = 256 * 1024;
// Largest capture body (CaptureSpec::maxBytes) the bindings accept.
constexpr uint32_t kMaxCaptureBytes = 16 * 1024 * 1024;

// Longest statement buffered for inspection; a longer one is refused (fail closed).
constexpr uint32_t kMaxInspectedStatementBytes = 1024 * 1024;
// Transaction pooling with prepared statements carried: the most text (names, statements and
// parameter types) one session's named statements may hold in the gateway, and the longest
// statement or portal name read (a longer name is no statement's: "does not exist").
constexpr size_t kMaxSessionStatementBytes = 64 * 1024 * 1024;
constexpr size_t kMaxStatementNameBytes = 64 * 1024;
// Most statements one server link keeps prepared (SetPreparedStatements; config checks the same).
constexpr size_t kMaxPreparedStatementsPerLink = 100000;

// Which messages of one direction are handed to the observer whole (up to a byte limit),
// for recording. DataRows stop being captured after `maxRowBytes` per ReadyForQuery.
struct CaptureSpec {
  std::string types;
  uint32_t maxBytes = 0;
  uint64_t maxRowBytes = 0;
};

class Pump {
 public:
  void SetCapture(const CaptureSpec& fromClient, const CaptureSpec& fromUpstream) {
    clientCap_.spec = fromClient;
    upstreamCap_.spec = fromUpstream;
  }
  Pump(Leg* client, Leg* upstream, PumpProtocol protocol, size_t highWater, PumpObserver* observer,
       bool inspectStatements = false);
  // Client bytes that arrived during setup (after the password message, before
  // AuthenticationOk): read like any later bytes, inspection included. Call before Start().
  void FeedEarlyClientBytes(const char* data, size_t len) { OnPlaintext(client_, data, len); }
  // Begin forwarding. Bytes the setup phase left unread are already in the sockets.
  void Start();
  // Routed here by the connections' owners.
  void OnPlaintext(Leg* from, const char* data, size_t len);
  void OnReadDone(Leg* from);
  void OnDrain(Leg* c);
  void OnClosed(Leg* c);
  bool ended() const { return ended_; }
  const PumpStats& stats() const { return stats_; }
  void End(CloseReason reason, const char* finalBytes, size_t len) { Terminate(reason, finalBytes, len); }
  // Releases a held statement (and what queued behind it, up to the next hold).
  void Release(uint64_t holdId);
  size_t GatedBytes() const {
    size_t n = 0;
    for (const Gate& g : gated_) n += g.bytes.size();
    return n;
  }
  // Upstream reuse: when the client ends the session (Terminate or EOF) at a message boundary
  // while the upstream is idle outside a transaction, the upstream leg is kept open (the
  // client's Terminate is not forwarded) instead of closed; OnPumpEnd reports upstreamKept.
  void SetReuseUpstream(bool on) { reuse_ = on; }
  // Transaction pooling (PostgreSQL only): the session holds a server link only from the first
  // message of a transaction to its ReadyForQuery 'I'. Then the link goes back to the owner
  // (OnUpstreamReleased); client bytes for the server with no link wait in the pump (bounded
  // by highWater: the client stops being read) until the owner attaches one (OnUpstreamWanted,
  // AttachUpstream). The client's Terminate never reaches a pooled server. Implies
  // SetReuseUpstream(true). `upstream` may be null at construction then.
  void SetTransactionPooling(bool on) {
    pooling_ = on && protocol_ == PumpProtocol::Postgres;
    if (pooling_) reuse_ = true;
  }
  bool transactionPooling() const { return pooling_; }
  // Transaction pooling: the client's named prepared statements work on every server link
  // (pg/prepared-statements.h), each link keeping at most `perLink` prepared; 0: a named
  // Parse pins the session instead. Set before Start().
  void SetPreparedStatements(size_t perLink) { statementCapacity_ = perLink; }
  bool MigratesStatements() const { return pooling_ && statementCapacity_ > 0; }
  // Transaction pooling: a statement that would pin the session is refused instead (0A000,
  // naming why), and the session keeps sharing links (upstream.pool.on_pin: refuse).
  void SetRefusePins(bool on) { refusePins_ = on; }
  // Keeps the current server link for the rest of the session (state that cannot move between
  // server sessions); takes effect at once, also while no link is attached (the next one stays).
  void Pin() { PinFor("pinned by the gateway"); }
  // Pins with the reason the end stats, and OnPinned, report (the first reason only).
  void PinFor(const std::string& reason);
  bool pinned() const { return pinned_; }
  // While on, the current server link is not released (a cancel for the session is on its
  // way to that link's backend: another session must not get the link until it arrived).
  // Turned off, the link goes back at once if the session is between transactions.
  void HoldUpstream(bool on) {
    holdLink_ = on;
    if (!on) ReleaseIfIdle();
  }
  // Gives the session a server link after OnUpstreamWanted; what waited is written to it.
  // False (the link stays the caller's) when the pump has ended, its client is gone, or it
  // has a link already.
  bool AttachUpstream(Leg* upstream);
  bool waitingForUpstream() const { return wanting_; }
  // AttachUpstream would take a link now.
  bool CanAttachUpstream() const { return pooling_ && !ended_ && upstream_ == nullptr && (!clientClosed_ || draining_); }
  Leg* upstream() const { return upstream_; }
  size_t WaitingBytes() const { return waiting_.size() + raw_.size(); }
  // The client's named prepared statements (SetPreparedStatements).
  size_t ClientStatements() const { return statements_.size(); }
  // Sessions are bound to their token: the first statement after `deadline` (uv_now() ms)
  // gets FATAL `message` and the session ends.
  void SetDeadline(uint64_t deadline, const std::string& message) {
    deadline_ = deadline;
    expiryMessage_ = message;
  }

 private:
  // Client -> upstream when statements are inspected: rebuilds the forwarded stream message
  // by message, holding Q/P/F whole until the observer decides. A refused statement is
  // replaced by one the server must fail at once (see RefusalStandIn in pump.cc), so that
  // the server's state after it is what PostgreSQL's would be after an error (transaction
  // aborted, the rest of an extended batch skipped to Sync) and the answer comes at once,
  // Flush or not; its ErrorResponse is then replaced by the gateway's refusal.
  class ClientInspector : public PgFrameCallbacks {
   public:
    explicit ClientInspector(Pump* p) : pump_(p) {}
    void OnMessageStart(uint8_t type, uint32_t length) override;
    void OnMessageBody(uint8_t type, const uint8_t* data, size_t len) override;
    void OnMessageEnd(uint8_t type) override;
    std::string out;  // bytes to forward for the current chunk
    std::string PinReason(uint8_t type);

   private:
    // Where forwarded bytes go: straight out, or behind the newest held statement.
    std::string& Sink();
    Pump* pump_;
    bool holding_ = false;
    bool dropping_ = false;
    bool tooLong_ = false;
    std::string held_;
    // Transaction pooling: a Query or Parse read for what it leaves in the server session
    // (pg/session-pins.h), held whole meanwhile; past kMaxInspectedStatementBytes it is
    // streamed on, and pins.
    bool scanning_ = false;
    bool scanTooLong_ = false;
    // Prepared statements carried (MigratesStatements): a Bind, Describe or Close (or a Parse
    // too long to hold) is held until its statement name has arrived, then written with the
    // server's name for it, and the rest streamed (a Bind's parameters may be large).
    void StartPrefix(uint8_t type, uint32_t length);
    void PrefixBody(uint8_t type, const uint8_t* data, size_t len);
    void DecidePrefix();
    void EndPrefix(uint8_t type);
    bool skipping_ = false;  // dropped after a lost link (Pump::AnswerSkipped)
    bool prefixing_ = false;
    bool prefixDecided_ = false;
    bool prefixDrop_ = false;  // the message is not sent on (answered by the gateway, or refused)
    uint8_t prefixType_ = 0;
    uint32_t prefixLength_ = 0;
    std::string prefix_;
    // How the message's request is tracked once it ends.
    uint32_t prefixRefusal_ = 0;
    PgReplyAction prefixAction_ = PgReplyAction::Forward;
    uint32_t prefixTag_ = 0;
    StatementRefusal pendingRefusal_;
  };
  // Upstream -> client when statements are inspected: puts the gateway's refusal in place of
  // the server's error for a stand-in, and watches the settings that change how statements
  // are read (client_encoding, standard_conforming_strings).
  class UpstreamInspector : public PgFrameCallbacks {
   public:
    explicit UpstreamInspector(Pump* p) : pump_(p) {}
    void OnMessageStart(uint8_t type, uint32_t length) override;
    void OnMessageBody(uint8_t type, const uint8_t* data, size_t len) override;
    void OnMessageEnd(uint8_t type) override;
    // Takes over from the plain path, perhaps inside a message it did not see begin.
    void Resume() { dropping_ = false; }
    std::string out;

   private:
    Pump* pump_;
    bool dropping_ = false;
    bool withholding_ = false;  // an unasked-for ErrorResponse (Pump::withheldError_)
    std::string parameter_;  // a ParameterStatus body, to check
  };
  friend class ClientInspector;
  friend class UpstreamInspector;

  class Counter : public PgFrameCallbacks {
   public:
    Counter(Pump* p, bool fromClient) : pump_(p), fromClient_(fromClient) {}
    // Without inspection, messages are still captured for recording (statements too, when
    // the capture spec names Q/P/F): they reach the observer after their chunk is forwarded.
    void OnMessageStart(uint8_t type, uint32_t length) override {
      (fromClient_ ? pump_->clientCap_ : pump_->upstreamCap_).Start(type, length);
      if (fromClient_) {
        pump_->TrackClientStart(type);
        if (type == 'Q' || type == 'P' || type == 'F') {
          if (type != 'F') statements++;
          pump_->CheckDeadline();
        }
      } else {
        pump_->TrackUpstreamStart(type);
      }
    }
    void OnMessageBody(uint8_t type, const uint8_t* data, size_t len) override {
      (fromClient_ ? pump_->clientCap_ : pump_->upstreamCap_).Body(data, len);
      if (fromClient_) pump_->TrackClientBody(type, data, len);
      else pump_->TrackUpstreamBody(type, data, len);
    }
    void OnMessageEnd(uint8_t type) override {
      pump_->EndCapture(fromClient_ ? pump_->clientCap_ : pump_->upstreamCap_, fromClient_);
      if (fromClient_) pump_->TrackClientEnd(type, 0);
    }
    uint64_t statements = 0;

   private:
    Pump* pump_;
    bool fromClient_;
  };
  // What the server owes the client (replies), and whether the session is idle: every
  // request answered, no extended batch open since the last ReadyForQuery, whose status was 'I'.
  void TrackClientStart(uint8_t type);
  void TrackClientBody(uint8_t type, const uint8_t* data, size_t len) {
    if ((type == 'D' || type == 'C') && detailPending_ && len > 0) {
      detail_ = data[0];
      detailPending_ = false;
    }
  }
  void TrackClientEnd(uint8_t type, uint32_t refusal, PgReplyAction action = PgReplyAction::Forward, uint32_t tag = 0) {
    if (type == 'X') return;
    replies_.OnClientMessage(type, detail_, refusal, action, tag);
    if (action == PgReplyAction::Fake) AnswerFakes();
  }
  uint32_t TrackUpstreamStart(uint8_t type) {
    if (type == 'E') errorSinceReady_ = true;
    if (type == 'Z') errorSinceReady_ = false;
    uint32_t refusal = replies_.OnServerMessage(type);
    if (replies_.HasOutcomes()) OnOutcomes();
    if (type == 'G') copyIn_ = true;
    if (type == 'E') copyIn_ = false;  // an error ends copy-in; what the client still sends is dropped
    if (type == 'Z') {
      copyIn_ = false;
      lastStatus_ = 0;  // set by the body
      if (replies_.Empty()) clientUnsynced_ = false;
    }
    return refusal;
  }
  void TrackUpstreamBody(uint8_t type, const uint8_t* data, size_t len) {
    if (type == 'Z' && len > 0) lastStatus_ = data[0];
  }
  // Prepared statements carried between server links (SetPreparedStatements).
  struct StatementOp {
    // Forget: names dropped as a message was sent on, back if the server failed or skipped it.
    enum class Kind : uint8_t { ServerParse, FakeParse, FakeClose, FakeDeallocate, DeallocateAll, DiscardAll, Forget, EvictClose };
    uint32_t tag;
    Kind kind;
    PgStatementRef stmt;
    std::string clientName;  // the client's name it registered or dropped ("" for the gateway's own Parse)
    std::unordered_map<std::string, PgStatementRef> removed;  // names a DEALLOCATE ALL or DISCARD ALL dropped
    std::string commandTag;  // a DEALLOCATE the gateway answers: its CommandComplete tag
  };
  uint32_t AddOp(StatementOp::Kind kind, PgStatementRef stmt, std::string clientName);
  PgServerStatements* LinkStatements();
  // The client's named Parse: registered, then answered at once when the link has its
  // statement, else sent with the server's name. False: refused (`refusal` filled in).
  bool ParseStatement(std::string& sink, const char* body, size_t len, StatementRefusal* refusal);
  // Prepares `stmt` on the link before a message that uses it (closing the least recently used one if full).
  void EnsurePrepared(std::string& sink, const PgStatementRef& stmt);
  // A simple Query the gateway answers or follows for prepared statements (DEALLOCATE,
  // DISCARD ALL). False: not one of those; forward it as usual.
  bool StatementQuery(std::string& sink, const char* body, size_t len, StatementRefusal* refusal);
  // A DISCARD ALL or DEALLOCATE ALL sent on as it is: every client name dropped (back if the
  // server fails or skips it), the link's prepared set unknown from now on.
  void SendOnForgettingAll(std::string& sink, uint8_t type, const char* body, size_t len, StatementOp::Kind kind);
  // A DEALLOCATE of a name the session does not have: 26000, or false (pinned: the server's to answer).
  bool UnknownName(const std::string& name, StatementRefusal* refusal);
  // The same in an unnamed Parse (psycopg sends its DEALLOCATEs so): a DEALLOCATE of a client's
  // name runs as a DEALLOCATE of a statement the gateway prepares for it just before.
  bool StatementParse(std::string& sink, const char* body, size_t len, StatementRefusal* refusal);
  // Records `stmt` as prepared on the link, closing the least recently used one first when full.
  void AddToLink(std::string& sink, PgServerStatements* link, const PgStatementRef& stmt);
  // Writes a Parse of `stmt` under its server name (after a Close of it when the link is uncertain).
  void SendParse(std::string& sink, PgServerStatements* link, const std::string& serverName, const char* tail, size_t tailLen,
                 PgReplyAction action, uint32_t tag);
  void ForgetName(const std::string& name);
  void Restore(StatementOp& op);
  void OnOutcomes();
  // Answers of the gateway's own (Fake) requests now oldest in line.
  std::string TakeFakes();
  // From the client side: writes them when the client's stream is between server messages.
  void AnswerFakes();
  // A refused message: the server gets a stand-in it must fail, the client the refusal.
  void RefuseWithStandIn(std::string& sink, uint8_t type, const std::string& name, const StatementRefusal& refusal);
  bool UpstreamIdle() const;
  bool UpstreamReusable() const;
  // Writes toward the server: to the attached link, or into waiting_ (asking for a link).
  void ToUpstream(const char* data, size_t len);
  // Transaction pooling: gives the link back at a transaction boundary (see SetTransactionPooling).
  void ReleaseIfIdle();
  // Transaction pooling: the attached link ended (not pinned, both streams between messages):
  // what it owed the client is answered with an error (the transaction is gone, as its backend
  // is), the link goes to the owner (closed), and the session goes on. False: it cannot (the
  // session ends as without pooling).
  bool SurviveLinkLoss(Leg* lost);
  // After a lost link: the client's messages up to its next Sync (or Query, FunctionCall) are
  // not run; that one is answered with the error (unless given already) and ReadyForQuery 'I'.
  void AnswerSkipped();
  bool UpstreamOpen() const { return upstream_ != nullptr && !upstreamClosed_ && !upstream_->closed(); }
  // Pooled client gone with requests still waiting for a link: ends the pump once answered.
  void FinishDrain();
  void AbandonWait();
  void EndIfBothClosed();
  // After the client's Terminate: once everything before it is answered, close the client
  // (keeping the upstream when it is idle) or send the Terminate on.
  void FinishTerminate();
  // Ends the session from the gateway's side: `finalBytes` (e.g. ErrorResponse FATAL) go to
  // the client after everything already queued, then both legs close.
  void Terminate(CloseReason reason, const char* finalBytes, size_t len);
  // Marks the session expired when a statement arrives past the deadline.
  void CheckDeadline();
  void EndExpired();

  Leg* client_;
  Leg* upstream_;  // null while a pooled session has no server link
  PumpProtocol protocol_;
  size_t highWater_;
  PumpObserver* observer_;
  PgFrameParser clientParser_;
  PgFrameParser upstreamParser_;
  Counter clientCounter_{this, true};
  Counter upstreamCounter_{this, false};
  PgReplyTracker replies_;
  uint8_t detail_ = 0;  // the current Describe's or Close's first body byte
  bool detailPending_ = false;
  uint64_t deadline_ = 0;  // uv_now() milliseconds; 0 = none
  bool expired_ = false;
  std::string expiryMessage_;
  bool inspect_ = false;  // statements are checked by the observer (read sessions)
  // The upstream's stream is rebuilt message by message (UpstreamInspector): with inspection,
  // and while the server's answers need rewriting (refusals, the gateway's own requests).
  // Switched off only between server messages.
  bool upstreamInspecting_ = false;
  // Client -> server messages are rebuilt message by message (ClientInspector) rather than
  // forwarded as read: with inspection, and with transaction pooling, so that no message is
  // ever split between two server links and a Terminate never reaches a pooled server.
  bool Rebuild() const { return inspect_ || pooling_; }
  ClientInspector clientInspector_{this};
  UpstreamInspector upstreamInspector_{this};
  // The gateway's answers for stand-ins the server has not answered yet, by refusal id (in order).
  struct PendingRefusal {
    uint32_t id;
    std::string errorResponse;
  };
  std::list<PendingRefusal> refusals_;  // a list allocates nothing while empty (most sessions)
  uint32_t nextRefusal_ = 1;
  // A setting the gateway reads statements by changed to a value it cannot read exactly
  // (inspected sessions): the session ends after the current chunk.
  std::string unreadableSetting_;
  struct Capture {
    CaptureSpec spec;
    bool active = false;
    uint8_t type = 0;
    uint32_t length = 0;
    uint64_t rowBytes = 0;
    std::string buf;
    void Start(uint8_t t, uint32_t len) {
      active = !spec.types.empty() && spec.types.find(static_cast<char>(t)) != std::string::npos;
      if (t == 'D' && active) {
        rowBytes += len;
        if (rowBytes > spec.maxRowBytes) active = false;
      }
      if (t == 'Z') rowBytes = 0;
      if (!active) return;
      type = t;
      length = len;
      buf.clear();
    }
    void Body(const uint8_t* data, size_t len) {
      if (!active || buf.size() >= spec.maxBytes) return;
      size_t take = spec.maxBytes - buf.size();
      buf.append(reinterpret_cast<const char*>(data), len < take ? len : take);
    }
  };
  void EndCapture(Capture& cap, bool fromClient);
  // Captured messages are handed to the observer after the chunk they came in was forwarded
  // (so recording work is not between the upstream's answer and the client), and before any
  // statement verdict (so the observer sees every message in stream order).
  struct DeferredCapture {
    bool fromClient;
    uint8_t type;
    uint32_t length;
    std::string body;
  };
  void DeliverCaptures();
  std::vector<DeferredCapture> deferred_;
  std::vector<DeferredCapture> delivering_;
  // Bodies already delivered, kept for the next captures: a recorded session allocates no
  // string per message. At most kSpareCaptureBuffers, each at most kSpareCaptureBytes.
  std::vector<std::string> spareBodies_;
  static constexpr size_t kSpareCaptureBuffers = 8;
  static constexpr size_t kSpareCaptureBytes = 4096;
  Capture clientCap_;
  Capture upstreamCap_;
  struct Gate {
    uint64_t id;
    bool released;
    std::string bytes;  // the held statement, then everything after it up to the next hold
  };
  std::list<Gate> gated_;
  bool reuse_ = false;
  bool pooling_ = false;
  bool pinned_ = false;
  bool holdLink_ = false;
  bool wanting_ = false;  // OnUpstreamWanted sent, no link attached since
  std::string waiting_;   // client bytes for a server link not attached yet
  // Pooled, no link: the client's bytes as they came, read once a link is attached (what is
  // done with a message may depend on the link: pg/prepared-statements.h).
  std::string raw_;
  size_t statementCapacity_ = 0;
  bool refusePins_ = false;
  std::unordered_map<std::string, PgStatementRef> statements_;  // the client's names
  size_t statementBytes_ = 0;
  std::deque<StatementOp> ops_;  // by tag, oldest first
  uint32_t nextOpTag_ = 1;
  std::vector<PgTaggedOutcome> outcomes_;
  bool errorSinceReady_ = false;  // an ErrorResponse reached the client since the last ReadyForQuery
  bool skipUntilSync_ = false;    // see AnswerSkipped
  bool skipErrorSent_ = false;
  bool resumeAfterSkip_ = false;
  std::string lostError_;  // the ErrorResponse AnswerSkipped gives
  // Transaction pooling, not pinned: an ErrorResponse the server sent with nothing asked (the
  // FATAL before it closes: a shutdown, pg_terminate_backend, idle_in_transaction_session_timeout)
  // is held back, and answers the client's next request if the link then ends under it.
  std::string withheldError_;
  static constexpr size_t kMaxWithheldErrorBytes = 8 * 1024;
  bool draining_ = false;  // the client left while its bytes waited for a link (FinishDrain)
  bool clientUnsynced_ = false;
  bool batchOpenBefore_ = false;  // clientUnsynced_ before the current client message
  uint8_t lastStatus_ = 'I';  // the ReadyForQuery the owner saw before pumping
  // The client sent Terminate: nothing it sends after it is read (PostgreSQL stops there).
  bool clientTerminated_ = false;
  // Where the Terminate began in the chunk that carried it (kNotInThisChunk: in an earlier one).
  size_t terminateAt_ = PgFrameParser::kNotInThisChunk;
  // The client's Terminate was held back (reuse); sent on after all if the upstream is not kept.
  bool terminateHeld_ = false;
  // The server is in COPY FROM STDIN (CopyInResponse seen, no CopyDone/CopyFail or error since).
  // There a Terminate is not the end of the session but a protocol error the server answers
  // and then reads on: the gateway sends a CopyFail before it (CopyFailForTerminate).
  bool copyIn_ = false;
  bool terminateFinished_ = false;
  bool clientClosed_ = false;
  bool upstreamClosed_ = false;
  bool ended_ = false;
  PumpStats stats_;
};

}  // namespace vg

// Unit tests for transaction pooling in the pump (session/pump.h, SetTransactionPooling),
// driven through fake legs; built with AddressSanitizer and UBSan by
// test/native/native-unit.test.ts. The server's answers are written by hand, as PostgreSQL
// would send them.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "session/pump.h"
#include "test/fake-leg.h"
#include "test/unit-check.h"

namespace {

using vg::test::FakeLeg;


std::string Msg(char type, const std::string& body) {
  uint32_t len = static_cast<uint32_t>(body.size() + 4);
  std::string out(1, type);
  out.push_back(static_cast<char>(len >> 24));
  out.push_back(static_cast<char>(len >> 16));
  out.push_back(static_cast<char>(len >> 8));
  out.push_back(static_cast<char>(len));
  return out + body;
}
std::string Query(const std::string& sql) { return Msg('Q', sql + std::string(1, '\0')); }
std::string Ready(char status) { return Msg('Z', std::string(1, status)); }
std::string Complete(const std::string& tag) { return Msg('C', tag + std::string(1, '\0')); }
const std::string kTerminate = Msg('X', "");
const std::string kSync = Msg('S', "");
const std::string kFlush = Msg('H', "");
std::string Parse(const std::string& name, const std::string& sql) { return Msg('P', name + std::string(1, '\0') + sql + std::string(1, '\0') + std::string(2, '\0')); }
const std::string kParseComplete = Msg('1', "");
const std::string kBindComplete = Msg('2', "");
const std::string kCloseComplete = Msg('3', "");
const std::string kNoData = Msg('n', "");
const std::string kExecute = Msg('E', std::string("\0\0\0\0\0", 5));
const std::string kZ = std::string(1, '\0');
std::string Bind(const std::string& stmt, const std::string& param) {
  // Portal "", statement, no format codes, one text parameter, no result formats.
  std::string b = kZ + stmt + kZ + std::string(2, '\0') + std::string("\0\1", 2);
  uint32_t n = static_cast<uint32_t>(param.size());
  b.push_back(static_cast<char>(n >> 24));
  b.push_back(static_cast<char>(n >> 16));
  b.push_back(static_cast<char>(n >> 8));
  b.push_back(static_cast<char>(n));
  return Msg('B', b + param + std::string(2, '\0'));
}
std::string Describe(const std::string& stmt) { return Msg('D', "S" + stmt + kZ); }
std::string CloseStmt(const std::string& stmt) { return Msg('C', "S" + stmt + kZ); }
std::string Error(const std::string& sqlstate) { return Msg('E', "SERROR" + kZ + "C" + sqlstate + kZ + "Mfailed" + kZ + kZ); }
std::string Row(const std::string& v) { return Msg('D', std::string("\0\1\0\0\0", 5) + std::string(1, static_cast<char>(v.size())) + v); }
// The server-side name in the n-th Parse the gateway wrote (as the server reads it).
std::string ServerNameIn(const std::string& written, size_t nth = 0) {
  size_t at = 0;
  for (size_t i = 0;; i++) {
    at = written.find("vecgate_", at);
    if (at == std::string::npos) return std::string();
    if (i == nth) break;
    at++;
  }
  return written.substr(at, written.find('\0', at) - at);
}

// Owns the legs; hands out a fresh link when the pump asks (at once, or when told to).
struct Session : vg::PumpObserver {
  FakeLeg client;
  std::vector<std::unique_ptr<FakeLeg>> links;
  std::unique_ptr<vg::Pump> pump;
  bool attachAtOnce = true;
  int wanted = 0;
  std::vector<FakeLeg*> released;
  bool ended = false;
  vg::PumpStats stats;

  explicit Session(bool inspect = false, size_t highWater = vg::kMinPumpHighWaterBytes) {
    links.push_back(std::make_unique<FakeLeg>());
    pump = std::make_unique<vg::Pump>(&client, links.back().get(), vg::PumpProtocol::Postgres, highWater, this, inspect);
    pump->SetTransactionPooling(true);
  }
  FakeLeg* link() { return static_cast<FakeLeg*>(pump->upstream()); }
  // Attaches a link this session (or another) had before, as the pool would hand it back.
  void Reattach(FakeLeg* leg) {
    leg->released = false;
    leg->written.clear();
    CHECK(pump->AttachUpstream(leg));
  }
  void Attach() {
    links.push_back(std::make_unique<FakeLeg>());
    CHECK(pump->AttachUpstream(links.back().get()));
  }
  // Each transaction gets the link released last (written: what it got since), as a pool
  // with one idle link does.
  bool sameLink = false;
  void OnUpstreamWanted() override {
    wanted++;
    if (sameLink && !released.empty()) Reattach(released.back());
    else if (attachAtOnce) Attach();
  }
  void OnUpstreamReleased(vg::Leg* u) override {
    auto* leg = static_cast<FakeLeg*>(u);
    leg->released = true;  // writing to it now aborts
    released.push_back(leg);
  }
  void OnPumpEnd(const vg::PumpStats& s) override {
    ended = true;
    stats = s;
  }
  void FromClient(const std::string& bytes) { pump->OnPlaintext(&client, bytes.data(), bytes.size()); }
  void FromServer(const std::string& bytes) { pump->OnPlaintext(link(), bytes.data(), bytes.size()); }
  void CloseClient(vg::CloseReason why) {
    client.End(why, "");
    pump->OnClosed(&client);
  }
};

void TestReleasedBetweenTransactions() {
  Session s;
  s.pump->Start();
  CHECK(s.link() == nullptr);  // idle from the start: the startup link goes back
  CHECK(s.released.size() == 1 && s.released[0] == s.links[0].get());
  s.FromClient(Query("select 1"));
  CHECK(s.wanted == 1 && s.link() == s.links[1].get());
  CHECK(s.links[1]->written == Query("select 1"));
  CHECK(s.links[1]->reading);
  s.FromServer(Complete("SELECT 1") + Ready('I'));
  CHECK(s.client.written == Complete("SELECT 1") + Ready('I'));
  CHECK(s.link() == nullptr && s.released.size() == 2);
  // A transaction keeps its link from BEGIN to the ReadyForQuery 'I' after COMMIT.
  s.FromClient(Query("begin"));
  FakeLeg* tx = s.link();
  CHECK(tx == s.links[2].get());
  s.FromServer(Complete("BEGIN") + Ready('T'));
  CHECK(s.link() == tx);
  s.FromClient(Query("insert into t values (1)"));
  CHECK(s.link() == tx && s.wanted == 2);
  s.FromServer(Complete("INSERT 0 1") + Ready('T'));
  s.FromClient(Query("commit"));
  CHECK(tx->written == Query("begin") + Query("insert into t values (1)") + Query("commit"));
  s.FromServer(Complete("COMMIT") + Ready('I'));
  CHECK(s.link() == nullptr && s.released.back() == tx);
  CHECK(s.pump->stats().upstreamAttaches == 2 && s.pump->stats().upstreamReleases == 3);
  // A failed transaction ('E' status) keeps it too, until ROLLBACK.
  s.FromClient(Query("begin"));
  s.FromServer(Complete("BEGIN") + Ready('T'));
  s.FromServer(Msg('E', "SERROR\0C22012\0Mdivision by zero\0\0") + Ready('E'));
  CHECK(s.link() != nullptr);
}

void TestExtendedProtocolHoldsToSync() {
  Session s;
  s.pump->Start();
  // Parse + Flush: answered, but the batch is open until Sync: the link stays.
  s.FromClient(Parse("", "select 1") + kFlush);
  FakeLeg* l = s.link();
  CHECK(l != nullptr);
  s.FromServer(kParseComplete);
  CHECK(s.link() == l);
  s.FromClient(kSync);
  s.FromServer(Ready('I'));
  CHECK(s.link() == nullptr && s.released.back() == l);
  CHECK(l->written == Parse("", "select 1") + kFlush + kSync);
}

void TestPinnedKeepsItsLink() {
  Session s;
  s.pump->Pin();
  s.pump->Start();
  CHECK(s.link() == s.links[0].get() && s.released.empty());
  s.FromClient(Query("set search_path = x"));
  s.FromServer(Complete("SET") + Ready('I'));
  CHECK(s.link() == s.links[0].get() && s.released.empty() && s.wanted == 0);
}

void TestStatementsThatPin() {
  {
    // A session-level SET stays in the server session: the client keeps it from then on.
    Session s;
    s.pump->Start();
    s.FromClient(Query("set search_path = app"));
    FakeLeg* l = s.link();
    s.FromServer(Complete("SET") + Ready('I'));
    CHECK(s.link() == l && s.pump->pinned());
    CHECK(s.pump->stats().pinReason == "SET");
    s.FromClient(Query("select 1"));
    s.FromServer(Complete("SELECT 1") + Ready('I'));
    CHECK(s.link() == l && s.wanted == 1);
  }
  {
    // SET LOCAL ends with its transaction: no pin.
    Session s;
    s.pump->Start();
    s.FromClient(Query("begin; set local search_path = app; select 1; commit"));
    s.FromServer(Complete("BEGIN") + Complete("SET") + Complete("SELECT 1") + Complete("COMMIT") + Ready('I'));
    CHECK(s.link() == nullptr && !s.pump->pinned());
  }
  {
    // A named prepared statement (protocol level) lives in the server session: pins.
    Session s;
    s.pump->Start();
    s.FromClient(Parse("s1", "select 1") + kSync);
    s.FromServer(kParseComplete + Ready('I'));
    CHECK(s.link() != nullptr && s.pump->stats().pinReason == "named prepared statement");
  }
  {
    // Split across reads, the SET is still seen.
    Session s;
    s.pump->Start();
    std::string q = Query("SET statement_timeout = 1000");
    s.FromClient(q.substr(0, 9));
    s.FromClient(q.substr(9));
    s.FromServer(Complete("SET") + Ready('I'));
    CHECK(s.pump->pinned() && s.link() != nullptr);
  }
}

void TestTerminateNeverReachesAPooledServer() {
  {
    // Between transactions: the session just ends.
    Session s;
    s.pump->Start();
    s.FromClient(kTerminate);
    CHECK(s.client.closing);
    s.pump->OnClosed(&s.client);
    CHECK(s.ended && s.wanted == 0);
    CHECK(s.links[0]->written.empty());
  }
  {
    // Pipelined behind a query sent while there was no link (attached later): the query runs,
    // then the session ends and the link is kept for the owner; no Terminate on it.
    Session s;
    s.attachAtOnce = false;
    s.pump->Start();
    s.FromClient(Query("insert into t values (2)") + kTerminate);
    CHECK(s.wanted == 1 && !s.client.closing);
    s.Attach();
    FakeLeg* l = s.link();
    CHECK(l->written == Query("insert into t values (2)"));
    s.FromServer(Complete("INSERT 0 1") + Ready('I'));
    CHECK(s.client.written == Complete("INSERT 0 1") + Ready('I'));
    CHECK(s.client.closing);
    s.pump->OnClosed(&s.client);
    CHECK(s.ended && s.stats.upstreamKept && !l->closing);
    CHECK(l->written.find('X') == std::string::npos);
  }
  {
    // Inside a transaction: that server session is not clean, so it ends with the client.
    Session s;
    s.pump->Start();
    s.FromClient(Query("begin"));
    s.FromServer(Complete("BEGIN") + Ready('T'));
    FakeLeg* l = s.link();
    s.FromClient(kTerminate);
    CHECK(l->written == Query("begin") + kTerminate);
  }
}

void TestClientEofDeliversWhatWaited() {
  Session s;
  s.attachAtOnce = false;
  s.pump->Start();
  s.FromClient(Query("insert into t values (3)"));
  s.CloseClient(vg::CloseReason::Eof);
  CHECK(!s.ended);  // the insert still goes to a server
  s.Attach();
  FakeLeg* l = s.link();
  CHECK(l->written == Query("insert into t values (3)"));
  s.FromServer(Complete("INSERT 0 1") + Ready('I'));
  CHECK(s.ended && s.stats.upstreamKept && !l->closing);
}

void TestWaitingIsBounded() {
  Session s(false, vg::kMinPumpHighWaterBytes);
  s.attachAtOnce = false;
  s.pump->Start();
  s.client.ResumeRead();
  std::string big = Query(std::string(vg::kMinPumpHighWaterBytes + 10, 'a'));
  s.FromClient(big);
  s.pump->OnReadDone(&s.client);
  CHECK(!s.client.reading);  // no more is read while it waits for a link
  CHECK(s.pump->WaitingBytes() == big.size());
  s.Attach();
  CHECK(s.client.reading && s.pump->WaitingBytes() == 0 && s.link()->written == big);
}

void TestEndedWhileWaiting() {
  Session s;
  s.attachAtOnce = false;
  s.pump->Start();
  s.FromClient(Query("select 1"));
  s.pump->End(vg::CloseReason::Shutdown, nullptr, 0);
  CHECK(s.client.closing);
  s.pump->OnClosed(&s.client);
  CHECK(s.ended);
  FakeLeg spare;
  CHECK(!s.pump->AttachUpstream(&spare));  // the owner keeps its link
}

void TestReadSessionStatementsStillChecked() {
  struct Refusing : Session {
    Refusing() : Session(true) {}
    Verdict OnStatement(uint8_t, const std::string& text, vg::StatementRefusal* r, uint64_t*) override {
      if (text.find("delete") == std::string::npos) return Verdict::Forward;
      r->message = "refused";
      return Verdict::Refuse;
    }
  } s;
  s.pump->Start();
  s.FromClient(Query("delete from t"));
  FakeLeg* l = s.link();
  CHECK(l != nullptr && l->written == Query("vecgate refused this statement"));
  s.FromServer(Msg('E', std::string("SERROR\0C42601\0Msyntax error\0\0", 30)) + Ready('I'));
  CHECK(s.client.written.find("refused") != std::string::npos);
  CHECK(s.link() == nullptr);  // answered: released like any other
  // A refused statement never runs, so it does not pin either.
  s.FromClient(Query("delete from t; set role x"));
  s.FromServer(Msg('E', std::string("SERROR\0C42601\0Msyntax error\0\0", 30)) + Ready('I'));
  CHECK(!s.pump->pinned() && s.link() == nullptr);
}


// Prepared statements carried between links (SetPreparedStatements): a statement the client
// named works on whichever link serves the transaction; each link prepares it once.
void TestPreparedStatementMovesBetweenLinks() {
  Session s;
  s.pump->SetPreparedStatements(10);
  s.pump->Start();
  s.FromClient(Parse("s1", "select $1") + Describe("s1") + kSync);
  FakeLeg* first = s.link();
  CHECK(first == s.links[1].get());
  const std::string name = ServerNameIn(first->written);
  CHECK(name.size() > 8);
  CHECK(first->written == Parse(name, "select $1") + Describe(name) + kSync);
  s.FromServer(kParseComplete + Msg('t', std::string("\0\1\0\0\0\x19", 6)) + kNoData + Ready('I'));
  CHECK(s.client.written == kParseComplete + Msg('t', std::string("\0\1\0\0\0\x19", 6)) + kNoData + Ready('I'));
  CHECK(s.link() == nullptr && s.released.back() == first);
  CHECK(s.pump->ClientStatements() == 1 && !s.pump->pinned());
  // The next transaction gets a link that never saw it: prepared there first, its
  // ParseComplete not the client's.
  s.client.written.clear();
  s.FromClient(Bind("s1", "7") + kExecute + kSync);
  FakeLeg* second = s.link();
  CHECK(second == s.links[2].get());
  CHECK(second->written == Parse(name, "select $1") + Bind(name, "7") + kExecute + kSync);
  s.FromServer(kParseComplete + kBindComplete + Row("7") + Complete("SELECT 1") + Ready('I'));
  CHECK(s.client.written == kBindComplete + Row("7") + Complete("SELECT 1") + Ready('I'));
  CHECK(s.link() == nullptr);
  // Back on the first link: it has the statement, so only the Bind goes.
  s.attachAtOnce = false;
  s.client.written.clear();
  s.FromClient(Bind("s1", "8") + kExecute + kSync);
  CHECK(s.link() == nullptr && s.pump->waitingForUpstream());  // kept until a link comes
  s.Reattach(first);
  CHECK(first->written == Bind(name, "8") + kExecute + kSync);
  s.FromServer(kBindComplete + Row("8") + Complete("SELECT 1") + Ready('I'));
  CHECK(s.client.written == kBindComplete + Row("8") + Complete("SELECT 1") + Ready('I'));
  CHECK(s.pump->stats().serverPrepares == 2 && s.pump->stats().preparesReused == 0);
  // Another name for the same statement on a link that has it: answered by the gateway, in
  // its place in line (after the Query before it).
  s.client.written.clear();
  s.FromClient(Query("select 2") + Parse("s2", "select $1") + kSync);
  s.Reattach(second);
  CHECK(second->written == Query("select 2") + kSync);
  CHECK(s.client.written.empty());
  s.FromServer(Complete("SELECT 1") + Ready('I') + Ready('I'));
  CHECK(s.client.written == Complete("SELECT 1") + Ready('I') + kParseComplete + Ready('I'));
  CHECK(s.pump->stats().preparesReused == 1 && s.pump->ClientStatements() == 2);
  CHECK(!s.pump->pinned());
}

void TestPreparedStatementNamesAsPostgresKeepsThem() {
  Session s;
  s.sameLink = true;
  s.pump->SetPreparedStatements(10);
  s.pump->Start();
  s.FromClient(Parse("s1", "select 1") + kSync);
  FakeLeg* l = s.link();
  s.FromServer(kParseComplete + Ready('I'));
  s.client.written.clear();
  // A name in use: 42P05, as PostgreSQL answers, and the batch is skipped to Sync.
  s.FromClient(Parse("s1", "select 2") + Bind("s1", "x") + kSync);
  l = s.link();
  CHECK(l->written.find("select 2") == std::string::npos && l->written.find("vecgate refused") != std::string::npos);
  s.FromServer(Error("42601") + Ready('I'));
  CHECK(s.client.written.find("C42P05") != std::string::npos && s.client.written.find("already exists") != std::string::npos);
  // A name never prepared: 26000.
  s.client.written.clear();
  s.FromClient(Bind("nope", "x") + kExecute + kSync);
  s.FromServer(Error("42601") + Ready('I'));
  CHECK(s.client.written.find("C26000") != std::string::npos && s.client.written.find("\"nope\" does not exist") != std::string::npos);
  // A Parse the server fails leaves no name behind (and nothing on the link).
  s.client.written.clear();
  s.FromClient(Parse("bad", "selec 1") + kSync);
  s.FromServer(Error("42601") + Ready('I'));
  s.FromClient(Describe("bad") + kSync);
  s.FromServer(Error("42601") + Ready('I'));
  CHECK(s.client.written.find("\"bad\" does not exist") != std::string::npos);
  // Close: the name goes (answered by the gateway), the server keeps the statement for others;
  // closing a name that does not exist is no error.
  s.client.written.clear();
  s.FromClient(CloseStmt("s1") + CloseStmt("never") + kSync);
  l = s.link();
  CHECK(l->written == kSync);
  s.FromServer(Ready('I'));
  CHECK(s.client.written == kCloseComplete + kCloseComplete + Ready('I'));
  CHECK(s.pump->ClientStatements() == 0);
  // Prepared again under the same name: the link has it, the gateway answers.
  s.client.written.clear();
  s.FromClient(Parse("s1", "select 1") + kSync);
  CHECK(s.link()->written == kSync);
  s.FromServer(Ready('I'));
  CHECK(s.client.written == kParseComplete + Ready('I'));
}

void TestFullLinkClosesLeastRecentlyUsed() {
  Session s;
  s.sameLink = true;
  s.pump->SetPreparedStatements(2);
  s.pump->Start();
  s.FromClient(Parse("a", "select 'a'") + Parse("b", "select 'b'") + Bind("a", "") + kSync);
  FakeLeg* l = s.link();
  const std::string na = ServerNameIn(l->written, 0);
  const std::string nb = ServerNameIn(l->written, 1);
  s.FromServer(kParseComplete + kParseComplete + kBindComplete + Ready('I'));
  s.client.written.clear();
  // A third statement: the least recently used (b: a was bound after it) is closed first,
  // and the server's CloseComplete is not the client's.
  s.FromClient(Parse("c", "select 'c'") + kSync);
  l = s.link();
  const std::string nc = ServerNameIn(l->written, 1);  // after the Close's
  CHECK(l->written == CloseStmt(nb) + Parse(nc, "select 'c'") + kSync);
  s.FromServer(kCloseComplete + kParseComplete + Ready('I'));
  CHECK(s.client.written == kParseComplete + Ready('I'));
  // b still works: prepared again before its Bind (closing a now).
  s.client.written.clear();
  s.FromClient(Bind("b", "") + kSync);
  l = s.link();
  CHECK(l->written == CloseStmt(na) + Parse(nb, "select 'b'") + Bind(nb, "") + kSync);
  s.FromServer(kCloseComplete + kParseComplete + kBindComplete + Ready('I'));
  CHECK(s.client.written == kBindComplete + Ready('I'));
}

void TestDeallocateAnsweredByTheGateway() {
  Session s;
  s.pump->SetPreparedStatements(10);
  s.pump->Start();
  s.FromClient(Parse("s1", "select 1") + Parse("s2", "select 2") + kSync);
  s.FromServer(kParseComplete + kParseComplete + Ready('I'));
  s.client.written.clear();
  s.FromClient(Query("DEALLOCATE s1;"));
  CHECK(s.client.written == Complete("DEALLOCATE") + Ready('I'));
  CHECK(s.link() == nullptr && s.pump->ClientStatements() == 1 && !s.pump->pinned());
  s.client.written.clear();
  s.FromClient(Query("deallocate prepare \"s1\""));  // gone already: 26000
  s.FromServer(Error("42601") + Ready('I'));
  CHECK(s.client.written.find("C26000") != std::string::npos);
  // Inside a failed transaction PostgreSQL refuses it (25P02) and the name stays.
  s.client.written.clear();
  s.FromClient(Query("begin"));
  s.FromServer(Complete("BEGIN") + Ready('T'));
  s.FromClient(Query("select 1/0"));
  s.FromServer(Error("22012") + Ready('E'));
  s.client.written.clear();
  s.FromClient(Query("DEALLOCATE ALL"));
  CHECK(s.client.written.find("C25P02") != std::string::npos && s.client.written.substr(s.client.written.size() - 6) == Ready('E'));
  CHECK(s.pump->ClientStatements() == 1);
  s.FromClient(Query("rollback"));
  s.FromServer(Complete("ROLLBACK") + Ready('I'));
  s.client.written.clear();
  s.FromClient(Query("DEALLOCATE ALL"));
  CHECK(s.client.written == Complete("DEALLOCATE ALL") + Ready('I'));
  CHECK(s.pump->ClientStatements() == 0);
  // Through the extended protocol (psycopg sends its DEALLOCATEs so): what runs is a DEALLOCATE
  // of a statement the gateway prepares for it, so the tag and any error are PostgreSQL's.
  s.FromClient(Parse("s3", "select 3") + kSync);
  s.FromServer(kParseComplete + Ready('I'));
  s.client.written.clear();
  s.FromClient(Parse("", "DEALLOCATE s3") + Bind("", "") + kExecute + kSync);
  FakeLeg* l = s.link();
  const std::string dummy = ServerNameIn(l->written, 0);
  CHECK(l->written == Parse(dummy, "SELECT") + Parse("", "DEALLOCATE " + dummy) + Bind("", "") + kExecute + kSync);
  s.FromServer(kParseComplete + kParseComplete + kBindComplete + Complete("DEALLOCATE") + Ready('I'));
  CHECK(s.client.written == kParseComplete + kBindComplete + Complete("DEALLOCATE") + Ready('I'));
  CHECK(s.pump->ClientStatements() == 0);
  CHECK(s.link() == nullptr && !s.pump->pinned());
  // A failed one (here: in an aborted transaction, the server refuses the first Parse) gives
  // the name back.
  s.FromClient(Parse("s4", "select 4") + kSync);
  s.FromServer(kParseComplete + Ready('I'));
  s.FromClient(Parse("", "DEALLOCATE s4") + Bind("", "") + kExecute + kSync);
  s.FromServer(Error("25P02") + Ready('E'));
  CHECK(s.pump->ClientStatements() == 1);
  // DEALLOCATE ALL so: sent on; the link's prepared set is uncertain from then on, so its
  // next Parse closes the name first.
  s.FromClient(Query("rollback"));
  s.FromServer(Complete("ROLLBACK") + Ready('I'));
  s.sameLink = true;
  s.FromClient(Parse("", "DEALLOCATE ALL") + Bind("", "") + kExecute + kSync);
  l = s.link();
  CHECK(l->written == Parse("", "DEALLOCATE ALL") + Bind("", "") + kExecute + kSync);
  s.FromServer(kParseComplete + kBindComplete + Complete("DEALLOCATE ALL") + Ready('I'));
  CHECK(s.pump->ClientStatements() == 0);
  s.FromClient(Parse("s5", "select 5") + kSync);
  l = s.link();
  const std::string n5 = ServerNameIn(l->written, 0);
  CHECK(l->written == CloseStmt(n5) + Parse(n5, "select 5") + kSync);
  s.client.written.clear();
  s.FromServer(kCloseComplete + kParseComplete + Ready('I'));
  CHECK(s.client.written == kParseComplete + Ready('I'));
  // DEALLOCATE inside other text cannot be answered for the client: it pins.
  s.FromClient(Query("select 1; deallocate all"));
  CHECK(s.pump->pinned() && s.pump->stats().pinReason == "DEALLOCATE");
}

// A link that ends under a session (its backend terminated, the server restarted, the network
// broke) fails what was in flight with an error and ReadyForQuery 'I', as the transaction is
// gone; the session goes on with another link.
void TestLostLinkFailsOnlyItsTransaction() {
  const std::string fatal = Msg('E', "SFATAL" + kZ + "C57P01" + kZ + "Mterminating connection due to administrator command" + kZ + kZ);
  {
    Session s;
    s.pump->Start();
    s.FromClient(Query("begin"));
    FakeLeg* l = s.link();
    s.FromServer(Complete("BEGIN") + Ready('T'));
    s.FromClient(Query("insert into t values (1)"));
    s.client.written.clear();
    // The server's own error reaches the client, then the gateway's ReadyForQuery.
    s.FromServer(fatal);
    l->End(vg::CloseReason::Eof, "");
    s.pump->OnClosed(l);
    CHECK(!s.ended && !s.client.closing);
    CHECK(s.client.written == fatal + Ready('I'));
    CHECK(s.link() == nullptr && s.released.back() == l && s.pump->stats().upstreamLost == 1);
    s.client.written.clear();
    s.FromClient(Query("select 1"));
    CHECK(s.link() != nullptr && s.link() != l && s.link()->written == Query("select 1"));
    s.FromServer(Complete("SELECT 1") + Ready('I'));
    CHECK(s.client.written == Complete("SELECT 1") + Ready('I'));
  }
  {
    // Gone without a word, two requests in flight: each gets the gateway's error.
    Session s;
    s.pump->Start();
    s.FromClient(Query("select pg_sleep(10)") + Query("select 2"));
    FakeLeg* l = s.link();
    l->End(vg::CloseReason::ReadError, "ECONNRESET");
    s.pump->OnClosed(l);
    CHECK(!s.ended);
    CHECK(s.client.written.find("C08006") != std::string::npos && s.client.written.find("ECONNRESET") != std::string::npos);
    const std::string ready = Ready('I');
    size_t first = s.client.written.find(ready);
    CHECK(first != std::string::npos && s.client.written.find(ready, first + 1) != std::string::npos);
  }
  {
    // Idle in a transaction: the client's next request (here an extended batch) is not run;
    // its Sync gets the error and ReadyForQuery 'I'; what follows runs on a new link.
    Session s;
    s.pump->Start();
    s.FromClient(Query("begin"));
    FakeLeg* l = s.link();
    s.FromServer(Complete("BEGIN") + Ready('T'));
    l->End(vg::CloseReason::Eof, "");
    s.pump->OnClosed(l);
    CHECK(!s.ended && s.client.written == Complete("BEGIN") + Ready('T'));
    s.client.written.clear();
    size_t links = s.links.size();
    s.FromClient(Parse("", "insert into t values (2)") + Bind("", "") + kExecute + kSync + Query("select 3"));
    CHECK(s.client.written.find("C08006") != std::string::npos);
    CHECK(s.links.size() == links + 1 && s.link()->written == Query("select 3"));
    s.FromServer(Complete("SELECT 1") + Ready('I'));
    CHECK(s.client.written.substr(s.client.written.size() - 2 * 6 - 14) == Ready('I') + Complete("SELECT 1") + Ready('I'));
  }
  {
    // Mid-batch (no Sync yet): the error at once; the Sync, when it comes, only ReadyForQuery.
    Session s;
    s.pump->Start();
    s.FromClient(Parse("", "select 1") + Bind("", "") + kExecute + kFlush);
    FakeLeg* l = s.link();
    l->End(vg::CloseReason::Eof, "");
    s.pump->OnClosed(l);
    CHECK(s.client.written.find("C08006") != std::string::npos && s.client.written.find('Z') == std::string::npos);
    s.client.written.clear();
    s.FromClient(kSync);
    CHECK(s.client.written == Ready('I'));
  }
  {
    // Pinned: its state went with the server; the session ends.
    Session s;
    s.pump->Start();
    s.FromClient(Query("set search_path = x"));
    FakeLeg* l = s.link();
    s.FromServer(Complete("SET") + Ready('I'));
    CHECK(s.pump->pinned());
    l->End(vg::CloseReason::Eof, "");
    s.pump->OnClosed(l);
    CHECK(s.client.closing);
  }
  {
    // Half a server message reached the client: the stream cannot be mended; the session ends.
    Session s;
    s.pump->Start();
    s.FromClient(Query("select 1"));
    FakeLeg* l = s.link();
    std::string row = Row("1");
    s.FromServer(row.substr(0, 3));
    l->End(vg::CloseReason::Eof, "");
    s.pump->OnClosed(l);
    CHECK(s.client.closing);
  }
}

// upstream.pool.on_pin: refuse: what would pin is refused (0A000, naming why); the session keeps
// sharing links.
void TestRefusePins() {
  Session s;
  s.pump->SetPreparedStatements(10);
  s.pump->SetRefusePins(true);
  s.pump->Start();
  s.FromClient(Query("set search_path = x"));
  FakeLeg* l = s.link();
  CHECK(l->written == Query("vecgate refused this statement"));
  s.FromServer(Error("42601") + Ready('I'));
  CHECK(s.client.written.find("C0A000") != std::string::npos && s.client.written.find("(SET)") != std::string::npos);
  CHECK(!s.pump->pinned() && s.link() == nullptr && s.pump->stats().pinRefusals == 1);
  // SET LOCAL does not pin: it runs.
  s.client.written.clear();
  s.FromClient(Query("begin; set local search_path = x; select 1; commit"));
  CHECK(s.link()->written == Query("begin; set local search_path = x; select 1; commit"));
  s.FromServer(Complete("COMMIT") + Ready('I'));
  // A named statement that would pin is refused, and leaves no name.
  s.FromClient(Parse("p", "listen ch") + kSync);
  s.FromServer(Error("42601") + Ready('I'));
  CHECK(s.pump->ClientStatements() == 0 && s.pump->stats().pinRefusals == 2 && !s.pump->pinned());
  // Too long to read for session state: refused, not streamed.
  s.client.written.clear();
  s.FromClient(Query("select '" + std::string(vg::kMaxInspectedStatementBytes, 'x') + "'"));
  CHECK(s.link()->written.size() < 100);
  s.FromServer(Error("42601") + Ready('I'));
  CHECK(s.client.written.find("C54000") != std::string::npos && s.pump->stats().pinRefusals == 3);
  // DEALLOCATE of its own names is the gateway's: no pin, so no refusal.
  s.client.written.clear();
  s.FromClient(Query("deallocate all"));
  CHECK(s.client.written == Complete("DEALLOCATE ALL") + Ready('I'));
}

}  // namespace

int main() {
  TestReleasedBetweenTransactions();
  TestExtendedProtocolHoldsToSync();
  TestPinnedKeepsItsLink();
  TestStatementsThatPin();
  TestTerminateNeverReachesAPooledServer();
  TestClientEofDeliversWhatWaited();
  TestWaitingIsBounded();
  TestEndedWhileWaiting();
  TestReadSessionStatementsStillChecked();
  TestPreparedStatementMovesBetweenLinks();
  TestPreparedStatementNamesAsPostgresKeepsThem();
  TestFullLinkClosesLeastRecentlyUsed();
  TestDeallocateAnsweredByTheGateway();
  TestLostLinkFailsOnlyItsTransaction();
  TestRefusePins();
  return vg::test::ChecksResult("pump-pooling");
}

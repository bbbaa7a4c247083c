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
  void Attach() {
    links.push_back(std::make_unique<FakeLeg>());
    CHECK(pump->AttachUpstream(links.back().get()));
  }
  void OnUpstreamWanted() override {
    wanted++;
    if (attachAtOnce) Attach();
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
  return vg::test::ChecksResult("pump-pooling");
}

// Unit tests for pg/session-pins.h, built with AddressSanitizer and UBSan by
// test/native/native-unit.test.ts: what pins a pooled session and what does not, with the
// text split as PostgreSQL's scanner splits it.
#include <cstdio>
#include <cstring>
#include <string>

#include "pg/session-pins.h"
#include "test/unit-check.h"

namespace {

void Expect(const char* sql, const char* reason) {
  const char* got = vg::SessionPinReason(sql, std::strlen(sql));
  bool ok = reason == nullptr ? got == nullptr : got != nullptr && std::string(got) == reason;
  if (!ok) {
    std::fprintf(stderr, "for %s: expected %s, got %s\n", sql, reason ? reason : "no pin", got ? got : "no pin");
    vg::test::CheckFailures()++;
  }
}

void TestPins() {
  Expect("SET search_path = app", "SET");
  Expect("set role reader", "SET");
  Expect("  /* c */ SeT statement_timeout TO 5", "SET");
  Expect("SET SESSION AUTHORIZATION x", "SET");
  Expect("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", "SET");
  Expect("select 1; set search_path = x", "SET");
  Expect("PREPARE q AS select 1", "PREPARE");
  Expect("LISTEN jobs", "LISTEN");
  Expect("LOAD 'auto_explain'", "LOAD");
  Expect("DO $$ BEGIN PERFORM 1; END $$", "DO block");
  Expect("DECLARE c CURSOR WITH HOLD FOR select 1", "cursor WITH HOLD");
  Expect("CREATE TEMP TABLE t (x int)", "temporary table");
  Expect("create local temporary table t (x int)", "temporary table");
  Expect("CREATE TEMPORARY VIEW v AS select 1", "temporary table");
  Expect("select * into temp t from items", "temporary table");
  Expect("select set_config('search_path', 'x', false)", "set_config()");
  Expect("WITH a AS (select 1) select pg_advisory_lock(1)", "session advisory lock");
  Expect("select pg_try_advisory_lock_shared(1, 2)", "session advisory lock");
  Expect("select dblink_connect('c', 'dbname=x')", "dblink connection");
}

void TestNoPins() {
  Expect("select * from items order by embedding <-> $1 limit 10", nullptr);
  Expect("SET LOCAL search_path = app", nullptr);
  Expect("set transaction isolation level serializable", nullptr);
  Expect("update items set name = 'x' where id = 1", nullptr);
  Expect("insert into items (name) values ('set search_path = x')", nullptr);
  Expect("select 'a'';set role x' as s", nullptr);
  Expect("select $$; set role x$$", nullptr);
  Expect("select $tag$ ; set role x $tag$", nullptr);
  Expect("select 1 -- ; set role x", nullptr);
  Expect("select /* /* nested */ ; set role x */ 1", nullptr);
  Expect("select \"set\" from t", nullptr);
  Expect("DECLARE c CURSOR FOR select 1", nullptr);
  Expect("select pg_advisory_xact_lock(1)", nullptr);
  Expect("reset search_path", nullptr);
  Expect("discard plans", nullptr);
  // What drops prepared statements pins when the pump has not answered it itself (a pooled
  // session's own DEALLOCATE and a lone DISCARD ALL are handled before: pump.cc StatementQuery).
  Expect("discard all", "DISCARD");
  Expect("select 1; DEALLOCATE ALL", "DEALLOCATE");
  Expect("begin; commit", nullptr);
  Expect("", nullptr);
}

void TestBothBackslashReadings() {
  // With standard_conforming_strings off, \' stays inside the string: the SET is a statement.
  Expect("select 'it\\'s'; set role x; select '", "SET");
  // With it on, 'C:\' ends at the quote: the SET is a statement too.
  Expect("select 'C:\\'; set role x", "SET");
  // E'' strings take backslash escapes in either reading.
  Expect("select E'\\'; set role x'", nullptr);
}

}  // namespace

int main() {
  TestPins();
  TestNoPins();
  TestBothBackslashReadings();
  return vg::test::ChecksResult("session-pins");
}

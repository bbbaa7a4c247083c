# Probes of what drivers do that a PostgreSQL gateway can get wrong (pipeline, COPY, cancel, session state),
# run by test/drivers/driver-suites.ts with the same harness as psycopg's own suite. Not psycopg's tests.
import time, threading
import psycopg, pytest
from psycopg import sql

def test_pipeline(conn):
    with conn.pipeline():
        cur = conn.execute("SELECT %s::int", [1])
        cur2 = conn.execute("SELECT %s::text", ['a'])
    assert cur.fetchone()[0] == 1 and cur2.fetchone()[0] == 'a'

def test_pipeline_error(conn):
    with pytest.raises(psycopg.errors.DivisionByZero):
        with conn.pipeline():
            conn.execute("SELECT %s::int / 0", [1])
            conn.execute("SELECT 1")
    conn.rollback()
    assert conn.execute("SELECT 3").fetchone()[0] == 3

def test_copy(conn):
    conn.execute("CREATE TEMP TABLE c (a int, b text)")
    with conn.cursor().copy("COPY c FROM STDIN") as cp:
        for i in range(1000): cp.write_row((i, 'x'))
    with conn.cursor().copy("COPY c TO STDOUT (FORMAT BINARY)") as cp:
        assert len(b''.join(cp)) > 1000
    assert conn.execute("SELECT count(*) FROM c").fetchone()[0] == 1000

def test_named_cursor(conn):
    with conn.cursor(name='sc') as cur:
        cur.execute("SELECT generate_series(1, 1000)")
        assert len(cur.fetchall()) == 1000

def test_notifies(dsn):
    c = psycopg.connect(dsn, autocommit=True)
    c.execute("LISTEN ch")
    o = psycopg.connect(dsn, autocommit=True)
    o.execute("NOTIFY ch, 'x'")
    for n in c.notifies():
        break
    assert n.payload == 'x'
    c.close(); o.close()

def test_cancel(conn):
    t = threading.Timer(0.5, conn.cancel); t.start()
    with pytest.raises(psycopg.errors.QueryCanceled):
        conn.execute("SELECT pg_sleep(10)")
    conn.rollback()
    assert conn.execute("SELECT 1").fetchone()[0] == 1

def test_prepared(dsn):
    c = psycopg.connect(dsn, prepare_threshold=0)
    for i in range(10):
        assert c.execute("SELECT %s::int + 1", [i]).fetchone()[0] == i + 1
    c.close()

def test_tpc(dsn):
    c = psycopg.connect(dsn)
    c.execute("CREATE TABLE IF NOT EXISTS tpc_t (a int)"); c.commit()
    x = c.xid(1, 'gtrid', 'bq')
    c.tpc_begin(x)
    c.execute("INSERT INTO tpc_t VALUES (1)")
    c.tpc_prepare()
    c.tpc_commit()
    c.close()

def test_options_param(dsn):
    c = psycopg.connect(dsn, options='-c statement_timeout=1234')
    assert c.execute("SHOW statement_timeout").fetchone()[0] == '1234ms'
    c.close()

def test_error_fields(conn):
    with pytest.raises(psycopg.errors.UndefinedTable) as e:
        conn.execute("SELECT * FROM nosuch")
    assert e.value.diag.sqlstate == '42P01'
    conn.rollback()

def test_autocommit_vacuum(dsn):
    c = psycopg.connect(dsn, autocommit=True)
    c.execute("VACUUM")
    c.close()

def test_info(conn):
    assert conn.info.server_version >= 150000
    assert conn.info.parameter_status('integer_datetimes') == 'on'
    assert conn.info.encoding == 'utf-8'

def test_notifies_pid(dsn):
    c = psycopg.connect(dsn, autocommit=True)
    c.execute("LISTEN ch2")
    o = psycopg.connect(dsn, autocommit=True)
    o.execute("NOTIFY ch2, 'y'")
    for n in c.notifies():
        break
    assert n.payload == 'y'
    assert n.pid == o.info.backend_pid
    c.close(); o.close()

def test_backend_pid(conn):
    assert conn.info.backend_pid == conn.execute("SELECT pg_backend_pid()").fetchone()[0]

def test_latin1(conn):
    conn.execute("SET client_encoding TO 'LATIN1'")
    assert conn.execute("SELECT 'caf\u00e9'").fetchone()[0] == 'caf\u00e9'

def test_startup_latin1(dsn):
    c = psycopg.connect(dsn, client_encoding='LATIN1')
    assert c.info.encoding == 'iso8859-1'
    c.close()

def test_session_state_not_leaked(dsn):
    c = psycopg.connect(dsn, autocommit=True)
    c.execute("CREATE TEMP TABLE leak_t (a int)")
    c.execute("SET work_mem = '7MB'")
    c.execute("PREPARE leak_p AS SELECT 1")
    c.execute("LISTEN leak_ch")
    c.execute("SELECT pg_advisory_lock(77)")
    c.close()
    time.sleep(0.3)
    c = psycopg.connect(dsn, autocommit=True)
    assert c.execute("SELECT count(*) FROM pg_class WHERE relname = 'leak_t' AND relpersistence = 't'").fetchone()[0] == 0
    assert c.execute("SHOW work_mem").fetchone()[0] == '4MB'
    assert c.execute("SELECT count(*) FROM pg_prepared_statements WHERE name = 'leak_p'").fetchone()[0] == 0
    assert c.execute("SELECT count(*) FROM pg_listening_channels()").fetchone()[0] == 0
    o = psycopg.connect(dsn, autocommit=True)
    assert o.execute("SELECT pg_try_advisory_lock(77)").fetchone()[0]
    o.close(); c.close()

def test_big_copy(conn):
    conn.execute("CREATE TEMP TABLE bc (b text)")
    row = 'x' * 10000
    with conn.cursor().copy("COPY bc FROM STDIN") as cp:
        for i in range(2000): cp.write_row((row,))
    assert conn.execute("SELECT count(*) FROM bc").fetchone()[0] == 2000

def test_binary_params(conn):
    assert conn.execute("SELECT %b::bytea", [b'\x00\x01']).fetchone()[0] == b'\x00\x01'
    cur = conn.cursor(binary=True)
    assert cur.execute("SELECT %s::int", [5]).fetchone()[0] == 5

def test_other_dbname(dsn):
    c = psycopg.connect(dsn, dbname='template1')
    assert c.execute("SELECT current_database()").fetchone()[0] == 'template1'
    c.close()

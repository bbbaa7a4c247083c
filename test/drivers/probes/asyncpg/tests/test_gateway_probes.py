# Probes of what drivers do that a PostgreSQL gateway can get wrong (protocol, session state, cancel keys),
# run by test/drivers/driver-suites.ts with the same harness as asyncpg's own suite. Not asyncpg's tests.
import asyncio, time
import asyncpg
from asyncpg import _testbase as tb

class TestProbe(tb.ConnectedTestCase):
    async def test_args_error(self):
        with self.assertRaises(asyncpg.DivisionByZeroError):
            await self.con.fetchval('SELECT $1::int / 0', 1)
        self.assertEqual(await self.con.fetchval('SELECT 1'), 1)
    async def test_syntax_error_with_args(self):
        with self.assertRaises(asyncpg.PostgresSyntaxError):
            await self.con.fetchval('SELEC $1::int', 1)
        self.assertEqual(await self.con.fetchval('SELECT 1'), 1)
    async def test_executemany(self):
        await self.con.execute('CREATE TEMP TABLE em (a int, b text)')
        await self.con.executemany('INSERT INTO em VALUES ($1, $2)', [(i, str(i)) for i in range(100)])
        self.assertEqual(await self.con.fetchval('SELECT count(*) FROM em'), 100)
    async def test_copy(self):
        await self.con.execute('CREATE TEMP TABLE cp (a int, b text)')
        await self.con.copy_records_to_table('cp', records=[(i, 'x') for i in range(1000)])
        import io
        buf = io.BytesIO()
        await self.con.copy_from_table('cp', output=buf)
        self.assertEqual(buf.getvalue().count(b'\n'), 1000)
    async def test_listen_notify(self):
        got = asyncio.get_running_loop().create_future()
        await self.con.add_listener('chan', lambda *a: got.done() or got.set_result(a[3]))
        other = await self.connect()
        try:
            await other.execute("NOTIFY chan, 'hello'")
            self.assertEqual(await asyncio.wait_for(got, 5), 'hello')
        finally:
            await other.close()
    async def test_cancel(self):
        with self.assertRaises(asyncio.TimeoutError):
            await asyncio.wait_for(self.con.fetch('SELECT pg_sleep(10)'), 0.5)
        t = time.monotonic()
        self.assertEqual(await self.con.fetchval('SELECT 2'), 2)
        self.assertLess(time.monotonic() - t, 5)
    async def test_cursor(self):
        async with self.con.transaction():
            n = 0
            async for r in self.con.cursor('SELECT g FROM generate_series(1, 1000) g', prefetch=50):
                n += 1
            self.assertEqual(n, 1000)
    async def test_tx_error_state(self):
        tr = self.con.transaction(); await tr.start()
        with self.assertRaises(asyncpg.DivisionByZeroError):
            await self.con.execute('SELECT 1/0')
        with self.assertRaises(asyncpg.InFailedSQLTransactionError):
            await self.con.execute('SELECT 1')
        await tr.rollback()
    async def test_enum_codec(self):
        await self.con.execute("DROP TYPE IF EXISTS probe_mood; CREATE TYPE probe_mood AS ENUM ('a','b')")
        self.assertEqual(await self.con.fetchval("SELECT $1::probe_mood", 'b'), 'b')
    async def test_hstore_codec(self):
        await self.con.execute('CREATE EXTENSION IF NOT EXISTS hstore')
        await self.con.set_builtin_type_codec('hstore', codec_name='pg_contrib.hstore')
        self.assertEqual(await self.con.fetchval("SELECT 'a=>1'::hstore"), {'a': '1'})
    async def test_close_fast(self):
        c = await self.connect()
        t = time.monotonic()
        await asyncio.wait_for(c.close(), 10)
        self.assertLess(time.monotonic() - t, 2)
    async def test_pool_reset(self):
        async with self.create_pool(min_size=1, max_size=1) as p:
            for _ in range(3):
                async with p.acquire() as c:
                    await c.execute("SET search_path = public")
                    self.assertEqual(await c.fetchval('SELECT 1'), 1)
    async def test_server_settings_statement_timeout(self):
        c = await self.connect(server_settings={'statement_timeout': '1234'})
        try:
            self.assertEqual(await c.fetchval('SHOW statement_timeout'), '1234ms')
        finally:
            await c.close()
    async def test_application_name(self):
        c = await self.connect(server_settings={'application_name': 'probe-app'})
        try:
            self.assertEqual(await c.fetchval('SHOW application_name'), 'probe-app')
        finally:
            await c.close()
    async def test_script(self):
        await self.con.execute('CREATE TEMP TABLE s1 (a int); INSERT INTO s1 VALUES (1); INSERT INTO s1 VALUES (2)')
        self.assertEqual(await self.con.fetchval('SELECT sum(a) FROM s1'), 3)
    async def test_large_result(self):
        rows = await self.con.fetch("SELECT g, repeat('x', 1000) FROM generate_series(1, 20000) g")
        self.assertEqual(len(rows), 20000)
    async def test_prepare_reuse(self):
        st = await self.con.prepare('SELECT $1::int * 2')
        for i in range(50):
            self.assertEqual(await st.fetchval(i), i * 2)
    async def test_reset(self):
        c = await self.connect()
        try:
            await c.execute("SET work_mem = '8MB'")
            await c.reset()
            self.assertEqual(await c.fetchval('SHOW work_mem'), '4MB')
        finally:
            await c.close()
    async def test_advisory(self):
        self.assertTrue(await self.con.fetchval('SELECT pg_try_advisory_lock(42)'))
        await self.con.execute('SELECT pg_advisory_unlock_all()')
    async def test_server_pid(self):
        self.assertEqual(self.con.get_server_pid(), await self.con.fetchval('SELECT pg_backend_pid()'))
    async def test_notify_pid(self):
        got = asyncio.get_running_loop().create_future()
        await self.con.add_listener('chan3', lambda c, pid, ch, p: got.done() or got.set_result(pid))
        other = await self.connect()
        try:
            await other.execute("NOTIFY chan3, 'x'")
            self.assertEqual(await asyncio.wait_for(got, 5), other.get_server_pid())
        finally:
            await other.close()
    async def test_terminate_then_reconnect_state(self):
        c = await self.connect()
        await c.execute("SET work_mem = '9MB'")
        c.terminate()
        await asyncio.sleep(0.3)
        c = await self.connect()
        try:
            self.assertEqual(await c.fetchval('SHOW work_mem'), '4MB')
        finally:
            await c.close()
    async def test_open_tx_then_close(self):
        c = await self.connect()
        await c.execute("CREATE TABLE IF NOT EXISTS otx (a int)")
        await c.execute("BEGIN; INSERT INTO otx VALUES (1)")
        await c.close()
        await asyncio.sleep(0.3)
        self.assertEqual(await self.con.fetchval('SELECT count(*) FROM otx'), 0)

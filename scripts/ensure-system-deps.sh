#!/usr/bin/env bash
# Installs the Debian 12 packages that `npm test` needs (and, with `bench`, the benchmark
# peers too), only those that are missing; safe to run any number of times. Quiet on
# success: one summary line. Not root and something missing: prints the command and exits 1.
#
#   bash scripts/ensure-system-deps.sh [test] [bench]
set -euo pipefail

# What the tests use: an ephemeral PostgreSQL 15 cluster (initdb, pg_ctl, psql), openssl for
# certificate checks, clang-14 with its sanitizer/libFuzzer runtime for the native parser
# tests, the toolchain node-gyp builds the addon with, and nginx as a real TLS upstream for the
# HTTP data path (test/harness/nginx-upstream.ts starts its own on loopback), and psycopg (libpq
# in non-blocking mode, Debian's python3) and asyncpg (it names every statement: transaction
# pooling's prepared statements) as real drivers for what only a driver shows.
TEST_PACKAGES=(postgresql-15 postgresql-client-15 openssl clang-14 libclang-rt-14-dev g++ make python3 python3-psycopg python3-asyncpg nginx)
# The peers and load generators the benchmarks run side by side with the gateway.
BENCH_PACKAGES=(pgbouncer haproxy nginx libnginx-mod-stream wrk nghttp2-client stunnel4)
# A command each package must provide: catches a package that is half-installed or removed by hand.
declare -A PROVIDES=(
  [postgresql-15]=/usr/lib/postgresql/15/bin/initdb
  [postgresql-client-15]=/usr/lib/postgresql/15/bin/psql
  [openssl]=openssl
  [clang-14]=clang++-14
  [g++]=g++
  [make]=make
  [pgbouncer]=pgbouncer
  [haproxy]=haproxy
  [nginx]=nginx
  [wrk]=wrk
  [nghttp2-client]=h2load
  [stunnel4]=stunnel4
)
# initdb refuses to run as root; the tests run it as this user, which postgresql-common creates.
PG_SYSTEM_USER=postgres

wanted=()
sets=()
[ $# -eq 0 ] && set -- test
for arg in "$@"; do
  case "$arg" in
    test) wanted+=("${TEST_PACKAGES[@]}"); sets+=(test) ;;
    bench) wanted+=("${TEST_PACKAGES[@]}" "${BENCH_PACKAGES[@]}"); sets+=(bench) ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "ensure-system-deps: unknown set '$arg' (use: test, bench)" >&2; exit 2 ;;
  esac
done

installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ] || return 1
  local cmd="${PROVIDES[$1]:-}"
  [ -z "$cmd" ] || command -v "$cmd" >/dev/null 2>&1
}

missing=()
declare -A seen=()
for p in "${wanted[@]}"; do
  [ -n "${seen[$p]:-}" ] && continue
  seen[$p]=1
  installed "$p" || missing+=("$p")
done
need_user=0
id -u "$PG_SYSTEM_USER" >/dev/null 2>&1 || need_user=1

if [ ${#missing[@]} -eq 0 ] && [ $need_user -eq 0 ]; then
  echo "ensure-system-deps: ${#seen[@]} packages for ${sets[*]} present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-system-deps: missing system packages for ${sets[*]}; as root, run:" >&2
  [ ${#missing[@]} -gt 0 ] && echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
  [ $need_user -eq 1 ] && echo "  useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash $PG_SYSTEM_USER" >&2
  exit 1
fi

if [ ${#missing[@]} -gt 0 ]; then
  log="$(mktemp /tmp/ensure-system-deps.XXXXXX.log)"
  # Packages are wanted for their programs, which the tests start themselves on loopback:
  # keep the daemons they ship (nginx on :80, a PostgreSQL on :5432, ...) from starting.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# written by vecgate scripts/ensure-system-deps.sh for one install\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  cleanup() { [ $made_policy -eq 1 ] && rm -f /usr/sbin/policy-rc.d; return 0; }
  trap cleanup EXIT
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "ensure-system-deps: installing ${missing[*]} failed (full log: $log)" >&2
    exit 1
  fi
  rm -f "$log"
  still=()
  for p in "${missing[@]}"; do installed "$p" || still+=("$p"); done
  if [ ${#still[@]} -gt 0 ]; then
    echo "ensure-system-deps: installed, but still missing or incomplete: ${still[*]}" >&2
    exit 1
  fi
fi

if ! id -u "$PG_SYSTEM_USER" >/dev/null 2>&1; then
  useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash "$PG_SYSTEM_USER"
fi

echo "ensure-system-deps: ${#seen[@]} packages for ${sets[*]} present (installed now: ${missing[*]:-none})"

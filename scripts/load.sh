#!/usr/bin/env bash
# HTTP load test of the example server: distinct signed tool-calls and end-of-call reports for
# every organisation of the tenants file, over loopback, with wrk.
#
#   scripts/load.sh [-d SECONDS] [-n REQUESTS] [-c CONNECTIONS] [-t THREADS] [--tenants FILE]
#                   [--kind mixed|tool-calls|small-tool-calls|report] [--report-bytes N]
#                   [--inbox [--workers N] [--async-commit]]
#
# --inbox: end-of-call reports only, through the server's durable inbox on Postgres
# (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test; a scratch database is created
# on that server and dropped afterwards). Also prints how fast the workers (N, default 2, in the
# same process) stored them; --async-commit passes the server's flag of that name.
#
# Prints requests/s, p50/p99 latency, the non-2xx count, the server's CPU time per request
# (user + system, from /proc: it holds on a busy machine, where requests/s do not) and its peak
# RSS (VmHWM). The run lasts SECONDS (default 20). REQUESTS distinct signed requests (default
# 90000) are generated right before it (signatures are valid ±300 s); when they run out they
# are sent again, and the server's replay guard answers those repeats 200 without running the
# handler (counted as "replays"). --kind picks the messages (default mixed: three tool calls to
# one end-of-call report); --report-bytes grows the report (e.g. 49152).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=20
count=90000
connections=16
threads=1
tenants=examples/tenants.toml
kind=mixed
report_bytes=0
inbox=0
workers=2
async_commit=0

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    -d|--duration) duration="$2"; shift 2 ;;
    -n|--requests) count="$2"; shift 2 ;;
    -c|--connections) connections="$2"; shift 2 ;;
    -t|--threads) threads="$2"; shift 2 ;;
    --tenants) tenants="$2"; shift 2 ;;
    --kind) kind="$2"; shift 2 ;;
    --report-bytes) report_bytes="$2"; shift 2 ;;
    --inbox) inbox=1; shift ;;
    --workers) workers="$2"; shift 2 ;;
    --async-commit) async_commit=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 >&2 ;;
  esac
done

if ! command -v wrk >/dev/null; then
  echo "==> installing wrk" >&2
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq wrk >&2
fi

echo "==> building the example server and the request generator (release)" >&2
server_args=(--tenants "$tenants" --listen 127.0.0.1:0)
loadgen_args=()
if [[ $inbox -eq 1 ]]; then
  cargo build --release --quiet --features inbox --example server --example loadgen
  database_url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
  scratch="vapi_load_$$"
  psql -qX "$database_url" -c "CREATE DATABASE $scratch" >/dev/null
  # Same server and credentials, the scratch database.
  base="${database_url%%\?*}"
  query="${database_url#"$base"}"
  scratch_url="${base%/*}/$scratch$query"
  server_args+=(--database-url "$scratch_url" --inbox --workers "$workers")
  [[ $async_commit -eq 1 ]] && server_args+=(--async-commit)
  loadgen_args+=(--reports-only)
else
  cargo build --release --quiet --example server --example loadgen
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  if [[ -n "${scratch:-}" ]]; then
    psql -qX "$database_url" -c "DROP DATABASE IF EXISTS $scratch WITH (FORCE)" >/dev/null || true
  fi
}
trap cleanup EXIT INT TERM

# The binary itself, not `cargo run`, so that the PID (and its VmHWM) is the server's.
RUST_LOG="${RUST_LOG:-warn}" target/release/examples/server "${server_args[@]}" \
  >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
url=""
for _ in $(seq 1 100); do
  url="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$work/server.out" 2>/dev/null | head -1 || true)"
  [[ -n "$url" ]] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the server exited:" >&2
    cat "$work/server.err" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z "$url" ]]; then
  echo "the server printed no address in 10 s" >&2
  exit 1
fi

echo "==> signing $count distinct requests" >&2
target/release/examples/loadgen --tenants "$tenants" --count "$count" --out "$work/requests.tsv" \
  --kind "$kind" --report-bytes "$report_bytes" ${loadgen_args[@]+"${loadgen_args[@]}"}

# utime + stime of the server, in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
ticks_per_second="$(getconf CLK_TCK)"

echo "==> wrk: ${duration}s, $connections connections, $threads thread(s), $url" >&2
cpu_before="$(cpu_ticks)"
LOAD_REQUESTS="$work/requests.tsv" wrk --threads "$threads" --connections "$connections" \
  --duration "${duration}s" --timeout 10s --script scripts/load.lua "$url" -- "$threads" \
  | sed -n '/^requests /,$p' | tee "$work/wrk.out"
cpu_after="$(cpu_ticks)"

answered="$(awk '/^requests / {print $2}' "$work/wrk.out")"
replays="$(awk '/^replays / {print $2}' "$work/wrk.out")"
awk -v ticks="$((cpu_after - cpu_before))" -v hz="$ticks_per_second" -v n="$answered" -v r="$replays" '
  BEGIN {
    if (n > 0) printf "server CPU      %.1f us per request (%.2f s over %d requests)\n", ticks / hz * 1e6 / n, ticks / hz, n
    if (r > 0) printf "                (%d of them replays: re-run with a larger -n for handler-only figures)\n", r
  }'

awk '/^VmHWM:/ {printf "server peak RSS %.1f MiB (VmHWM)\n", $2 / 1024}' "/proc/$server_pid/status"

if [[ $inbox -eq 1 ]]; then
  echo "==> waiting for the workers to store every accepted report" >&2
  count_sql="SELECT count(*) FILTER (WHERE status NOT IN ('done', 'dead')) FROM vapi_webhooks.inbox"
  for _ in $(seq 1 600); do
    left="$(psql -qXtA "$scratch_url" -c "$count_sql")"
    [[ "$left" == "0" ]] && break
    sleep 1
  done
  psql -qXtA -F ' ' "$scratch_url" -c "
    SELECT count(*) FILTER (WHERE status = 'done'),
           count(*) FILTER (WHERE status <> 'done'),
           round(extract(epoch FROM max(finished_at) - min(received_at))::numeric, 2),
           round(count(*) FILTER (WHERE status = 'done')
                 / greatest(extract(epoch FROM max(finished_at) - min(received_at)), 0.001)::numeric)
    FROM vapi_webhooks.inbox" | {
    read -r done other seconds rate
    printf 'inbox           %s stored by %s worker(s), %s not done; first accepted to last stored %s s\n' \
      "$done" "$workers" "$other" "$seconds"
    printf 'processing      %s reports/s (while accepting, then draining)\n' "$rate"
  }
fi

#!/usr/bin/env bash
# Measures the gateway against the same echo service called directly and
# through nginx, in the same run, on this machine (load generator included),
# and the memory of `quis up` idle and under load. Figures are recorded in
# docs/benchmarks.md, never gated.
#
#   bash scripts/bench.sh
#
# Phases: build, nginx if missing (apt, as root), keys and a token, the three
# targets, closed-loop peaks over a small grid of --concurrency x --connections
# (all targets with the same settings in each run), an open loop at half the
# gateway's peak for the added latency, the access log on vs off, a per-thread
# CPU snapshot (and a perf profile when perf works), `quis up` RSS, a summary.
#
# Before each measurement it waits (up to BENCH_WAIT_MAX seconds, polling every
# 30 s) while a compiler or test binary runs, watches for one during the
# measurement and repeats the measurement if one appeared.
#
# Knobs (environment): BENCH_SECONDS (10), BENCH_GRID ("64x4 128x4 32x2 256x8",
# concurrency x connections), BENCH_WAIT_MAX (900), BENCH_PERF (1 = profile if
# perf works), BENCH_KEEP (1 = keep the temporary directory), QUIS_BIN (skip
# the build and use this binary), CARGO_TARGET_DIR (/var/tmp/quis-target).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SECS=${BENCH_SECONDS:-10}
GRID=${BENCH_GRID:-"64x4 128x4 32x2 256x8"}
WAIT_MAX=${BENCH_WAIT_MAX:-900}
PERF=${BENCH_PERF:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/quis-target}

log() { printf '\n== %s\n' "$*"; }
note() { printf '   %s\n' "$*"; }
die() { printf 'bench.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- cleanup
TMP=$(mktemp -d /tmp/quis-bench.XXXXXX)
PIDS=()
NGINX_PID=""
cleanup() {
    local rc=$?
    set +e
    [[ -n $NGINX_PID ]] && kill -QUIT "$NGINX_PID" 2>/dev/null
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}" $NGINX_PID; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- machine load
# Compilers, linkers and test binaries of the other checkouts sharing the machine.
busy() {
    local found
    found=$( { pgrep -l -x 'rustc|cargo|cc|cc1|ld|ld.lld|mold|clippy-driver|rustdoc|nextest|cargo-nextest' || true
               pgrep -l -f '/target/[^ ]*/deps/' || true; } | tr '\n' ' ')
    [[ -n $found ]] && { echo "$found"; return 0; }
    return 1
}

wait_quiet() {
    local waited=0 who
    while who=$(busy); do
        if (( waited >= WAIT_MAX )); then
            note "machine still busy after ${waited}s ($who); measuring anyway, figures marked BUSY"
            return 1
        fi
        note "machine busy ($who); waiting 30 s (waited ${waited}s)"
        sleep 30
        waited=$((waited + 30))
    done
    return 0
}

# measure OUTFILE -- quis bench args...: waits for a quiet machine, runs the
# bench while sampling for busy processes every 2 s, repeats (up to twice) if
# one appeared, and prints the load before and after next to the figures.
measure() {
    local out=$1; shift; [[ $1 == -- ]] && shift
    local attempt sampler flag=$TMP/busy.flag quiet
    for attempt in 1 2 3; do
        quiet=yes
        wait_quiet || quiet=no
        rm -f "$flag"
        ( while :; do b=$(busy) && echo "$b" >>"$flag"; sleep 2; done ) &
        sampler=$!
        note "load before: $(uptime | sed 's/.*load average/load average/')"
        note "\$ quis bench $*"
        "$QUIS" bench "$@" | tee "$out"
        kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
        note "load after:  $(uptime | sed 's/.*load average/load average/')"
        if [[ -s $flag ]]; then
            note "BUSY during the run: $(sort -u "$flag" | head -3 | tr '\n' ' ')"
            (( attempt < 3 )) && { note "repeating the measurement"; continue; }
            quiet=no
        fi
        [[ $quiet == no ]] && note "BUSY: these figures were taken on a busy machine"
        if awk 'NR > 1 && $3 > 0 { bad = 1 } END { exit !bad }' "$out"; then
            note "WARNING: some calls failed (errors column)"
        fi
        return 0
    done
}

# field TARGET COLUMN FILE: a column of a `quis bench` result line (2 calls/s, 3 errors, 6 p99).
field() { awk -v t="$1" -v c="$2" '$1 == t { print $c; exit }' "$3"; }

# wait_line FILE REGEX: the first match of REGEX in FILE, waiting up to 60 s.
wait_line() {
    local file=$1 re=$2 line
    for _ in $(seq 600); do
        line=$(grep -m1 -oE "$re" "$file" 2>/dev/null || true)
        [[ -n $line ]] && { echo "$line"; return 0; }
        sleep 0.1
    done
    cat "$file" "${file%.out}.err" >&2 2>/dev/null || true
    die "timed out waiting for '$re' in $file"
}

wait_ready() {
    local url=$1
    for _ in $(seq 300); do
        curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        sleep 0.2
    done
    curl -sS "$url" >&2 || true
    die "not ready: $url"
}

free_port() {
    local port used
    used=$(ss -Htan | awk '{ n = split($4, a, ":"); print a[n] }')
    while :; do
        port=$((20000 + RANDOM % 30000))
        grep -qx "$port" <<<"$used" || { echo "$port"; return; }
    done
}

# Peak RSS: VmRSS and VmHWM of a process, in MiB.
rss() { awk '/^VmRSS|^VmHWM/ { printf "%s %.1f MiB  ", $1, $2 / 1024 }' "/proc/$1/status"; echo; }
hwm_mib() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
rss_mib() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# ---------------------------------------------------------------- 0. the machine
log "machine"
note "date: $(date -u +%FT%TZ)"
note "nproc: $(nproc); CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1); memory: $(free -m | awk '/^Mem:/ { print $2 " MiB" }')"
note "kernel: $(uname -r)"
note "uptime: $(uptime)"
note "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?') ($(git status --short 2>/dev/null | wc -l) paths modified or untracked in the working tree)"

# ---------------------------------------------------------------- 1. build, nginx
log "build"
if [[ -n ${QUIS_BIN:-} ]]; then
    QUIS=$QUIS_BIN
    note "using QUIS_BIN=$QUIS"
else
    wait_quiet || true
    started=$(date +%s)
    # The working tree is shared with ongoing edits: a failing build is retried for a while.
    for attempt in $(seq 10); do
        if cargo build --release -p quis --locked >"$TMP/build.log" 2>&1; then break; fi
        tail -5 "$TMP/build.log"
        (( attempt == 10 )) && die "the release build keeps failing"
        note "build failed (attempt $attempt); retrying in 60 s"
        sleep 60
    done
    note "built in $(( $(date +%s) - started )) s"
    # A private copy, so that a rebuild of the shared target directory cannot swap it mid-run.
    cp "$CARGO_TARGET_DIR/release/quis" "$TMP/quis"
    QUIS=$TMP/quis
fi
"$QUIS" version

if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
    log "installing nginx"
    [[ $(id -u) == 0 ]] || die "nginx is missing and this is not root: apt-get install nginx-light"
    # Keep the package from starting the system nginx (port 80); ours uses its own configuration.
    policy_created=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_created=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nginx-light >/dev/null 2>&1 || apt-get install -y -qq nginx >/dev/null
    [[ -n $policy_created ]] && rm -f /usr/sbin/policy-rc.d
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
note "$($NGINX -v 2>&1)"
$NGINX -V 2>&1 | grep -q -- '--without-http_grpc_module' && die "this nginx has no gRPC module"

# ---------------------------------------------------------------- 2. keys and a token
log "keys and token"
D=$TMP/data
"$QUIS" --data-dir "$D" init >/dev/null
TOKEN=$("$QUIS" --data-dir "$D" token --sub bench --role caseworker --ttl 1h)
note "data dir $D; token of ${#TOKEN} bytes for sub=bench (cached by the verifiers after the first call)"

# ---------------------------------------------------------------- 3. the targets
log "targets"
# Rate limits far above any rate reached here: the limiter still runs on every call.
LIMITS=(
    QUIS_GATEWAY__RATE_LIMIT__PER_PRINCIPAL_PER_SEC=100000000
    QUIS_GATEWAY__RATE_LIMIT__PER_PRINCIPAL_BURST=100000000
    QUIS_GATEWAY__RATE_LIMIT__PER_ADDRESS_PER_SEC=100000000
    QUIS_GATEWAY__RATE_LIMIT__PER_ADDRESS_BURST=100000000
)

env QUIS_LOG__LEVEL=warn \
    QUIS_SERVICES__ECHO__LISTEN=127.0.0.1:0 QUIS_SERVICES__ECHO__ADMIN_LISTEN=127.0.0.1:0 \
    "$QUIS" --data-dir "$D" serve echo >"$TMP/echo.out" 2>"$TMP/echo.err" &
ECHO_PID=$!; PIDS+=("$ECHO_PID")
ECHO=$(wait_line "$TMP/echo.out" 'echo listening on [0-9.:]+' | awk '{ print $NF }')
ECHO_ADMIN=$(wait_line "$TMP/echo.out" 'echo admin on http://[0-9.:]+' | awk '{ print $NF }')

# start_gateway NAME LOG_LEVEL: a gateway in front of the echo service; sets GW_PID and GW_ADDR.
start_gateway() {
    local name=$1 level=$2
    env "${LIMITS[@]}" QUIS_LOG__LEVEL="$level" \
        QUIS_GATEWAY__UPSTREAMS__ECHO="[\"http://$ECHO\"]" \
        QUIS_SERVICES__GATEWAY__LISTEN=127.0.0.1:0 QUIS_SERVICES__GATEWAY__ADMIN_LISTEN=127.0.0.1:0 \
        "$QUIS" --data-dir "$D" serve gateway >"$TMP/$name.out" 2>"$TMP/$name.err" &
    GW_PID=$!; PIDS+=("$GW_PID")
    GW_ADDR=$(wait_line "$TMP/$name.out" 'gateway listening on [0-9.:]+' | awk '{ print $NF }')
    wait_ready "$(wait_line "$TMP/$name.out" 'gateway admin on http://[0-9.:]+' | awk '{ print $NF }')/readyz"
}
start_gateway gateway warn
GATEWAY=$GW_ADDR; GATEWAY_PID=$GW_PID
# The same gateway with the access log on (one line per call at info, to a file).
start_gateway gateway-log "warn,quis_gateway::access=info"
GATEWAY_LOG=$GW_ADDR; GATEWAY_LOG_PID=$GW_PID
wait_ready "$ECHO_ADMIN/readyz"

NGINX_PORT=$(free_port)
NGINX_ADDR=127.0.0.1:$NGINX_PORT
mkdir -p "$TMP/nginx"
sed -e "s|@PREFIX@|$TMP/nginx|g" -e "s|@LISTEN@|$NGINX_ADDR|g" -e "s|@UPSTREAM@|$ECHO|g" \
    scripts/nginx-grpc.conf >"$TMP/nginx/nginx.conf"
# Workers run as nobody when started as root; they only need the listening socket.
$NGINX -t -q -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf"
$NGINX -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx/stdout" 2>&1 &
NGINX_PID=$!
for _ in $(seq 100); do ss -Htln "sport = :$NGINX_PORT" | grep -q . && break; sleep 0.1; done

note "echo (direct)      $ECHO  pid $ECHO_PID"
note "gateway            $GATEWAY  pid $GATEWAY_PID  (log level warn: no access log)"
note "gateway, log on    $GATEWAY_LOG  pid $GATEWAY_LOG_PID  (access log at info to a file)"
note "nginx              $NGINX_ADDR  master pid $NGINX_PID  ($(pgrep -P "$NGINX_PID" | wc -l) workers)"

# ---------------------------------------------------------------- 4. readiness
log "smoke (every target answers with the token)"
"$QUIS" bench direct="$ECHO" gateway="$GATEWAY" gateway-log="$GATEWAY_LOG" nginx="$NGINX_ADDR" \
    --token "$TOKEN" --seconds 1 --concurrency 4 --connections 1 | tee "$TMP/smoke.txt"
for t in direct gateway gateway-log nginx; do
    calls=$(field "$t" 2 "$TMP/smoke.txt"); errors=$(field "$t" 3 "$TMP/smoke.txt")
    [[ ${errors:-1} == 0 && ${calls%.*} -gt 0 ]] || die "target $t is not answering correctly (see above)"
done

# ---------------------------------------------------------------- 5. peak, closed loop
log "peak throughput, closed loop, ${SECS} s per target after 1 s of warm-up"
BEST_GW=0; BEST_SETTING=""
declare -A BEST=([direct]=0 [gateway]=0 [nginx]=0) BEST_AT=()
RUNS=()
for setting in $GRID; do
    c=${setting%x*}; n=${setting#*x}
    log "run: --concurrency $c --connections $n"
    out=$TMP/peak-$setting.txt
    measure "$out" -- direct="$ECHO" gateway="$GATEWAY" nginx="$NGINX_ADDR" \
        --token "$TOKEN" --seconds "$SECS" --concurrency "$c" --connections "$n"
    d=$(field direct 2 "$out"); g=$(field gateway 2 "$out"); x=$(field nginx 2 "$out")
    note "$(awk -v d="$d" -v g="$g" -v x="$x" 'BEGIN { printf "gateway/direct %.2f  gateway/nginx %.2f", g / d, g / x }')"
    RUNS+=("$setting $d $g $x")
    for t in direct gateway nginx; do
        v=$(field "$t" 2 "$out")
        if (( v > BEST[$t] )); then BEST[$t]=$v; BEST_AT[$t]=$setting; fi
    done
    if (( g > BEST_GW )); then BEST_GW=$g; BEST_SETTING=$setting; BEST_OUT=$out; fi
done
C=${BEST_SETTING%x*}; N=${BEST_SETTING#*x}

# ---------------------------------------------------------------- 5b. added latency, open loop
RATE=$(( BEST_GW / 2 ))
log "added latency: open loop at ${RATE} calls/s (half the gateway's peak), --concurrency $C --connections $N"
measure "$TMP/half.txt" -- direct="$ECHO" gateway="$GATEWAY" \
    --token "$TOKEN" --seconds "$SECS" --concurrency "$C" --connections "$N" --rate "$RATE"

# ---------------------------------------------------------------- 5c. access log
log "access log: the gateway at warn (off) and at info (one line per call), --concurrency $C --connections $N"
measure "$TMP/accesslog.txt" -- gateway="$GATEWAY" gateway-log="$GATEWAY_LOG" \
    --token "$TOKEN" --seconds "$SECS" --concurrency "$C" --connections "$N"
note "access log written: $(wc -l <"$TMP/gateway-log.err") lines, $(du -h "$TMP/gateway-log.err" | cut -f1)"
: >"$TMP/gateway-log.err"
kill -TERM "$GATEWAY_LOG_PID" 2>/dev/null || true

# ---------------------------------------------------------------- 5d. where the CPU goes
log "CPU per thread while the gateway is at peak (--concurrency $C --connections $N)"
wait_quiet || true
"$QUIS" bench gateway="$GATEWAY" --token "$TOKEN" --seconds 8 --concurrency "$C" --connections "$N" \
    >"$TMP/profile-bench.txt" &
BENCH_PID=$!; PIDS+=("$BENCH_PID")
sleep 3
# Two frames 2 s apart; the second shows the CPU used in those 2 s.
top -H -b -n 2 -d 2 -p "$BENCH_PID,$GATEWAY_PID,$ECHO_PID" -w 120 \
    | awk '/^top -/ { frame++ } frame == 2' | sed -n '/PID/,$p' | awk 'NF' | head -16
note "(bench = load generator pid $BENCH_PID, gateway pid $GATEWAY_PID, echo pid $ECHO_PID)"
if [[ $PERF == 1 ]] && command -v perf >/dev/null 2>&1; then
    if perf record -q -F 499 -a -g -o "$TMP/perf.data" -- sleep 3 >/dev/null 2>&1; then
        wait "$BENCH_PID" || true
        log "perf: CPU samples by process (whole machine, 3 s)"
        perf report -i "$TMP/perf.data" --no-children --sort comm --stdio 2>/dev/null \
            | grep -v '^#' | awk 'NF' | head -8
        log "perf: top symbols in the gateway process (self time)"
        perf report -i "$TMP/perf.data" --no-children --pid "$GATEWAY_PID" --sort dso,symbol --stdio -g none \
            --percent-limit 1.2 2>/dev/null | grep -v '^#' | awk 'NF' | cut -c1-150 | head -40
    else
        note "perf record failed; skipped"
    fi
fi
wait "$BENCH_PID" 2>/dev/null || true
cat "$TMP/profile-bench.txt"

# ---------------------------------------------------------------- 6. quis up RSS
log "quis up: RSS idle and under the peak load"
# Stop the separate processes so that `quis up` has the machine to itself.
[[ -n $NGINX_PID ]] && kill -QUIT "$NGINX_PID" 2>/dev/null || true
kill -TERM "$GATEWAY_PID" "$ECHO_PID" 2>/dev/null || true
sleep 1
D2=$TMP/up
env "${LIMITS[@]}" QUIS_LOG__LEVEL=warn "$QUIS" --data-dir "$D2" up --port 0 >"$TMP/up.out" 2>"$TMP/up.err" &
UP_PID=$!; PIDS+=("$UP_PID")
UP=$(wait_line "$TMP/up.out" 'gateway listening on [0-9.:]+' | awk '{ print $NF }')
wait_ready "$(wait_line "$TMP/up.out" 'on http://[0-9.:]+' | awk '{ print $NF }')/readyz"
UP_TOKEN=$("$QUIS" --data-dir "$D2" token --sub bench --role caseworker --ttl 1h)
sleep 3
IDLE_RSS=$(rss_mib "$UP_PID"); IDLE_HWM=$(hwm_mib "$UP_PID")
note "idle:        $(rss "$UP_PID")"
measure "$TMP/up.txt" -- gateway="$UP" --token "$UP_TOKEN" --seconds "$SECS" --concurrency "$C" --connections "$N"
LOAD_RSS=$(rss_mib "$UP_PID"); LOAD_HWM=$(hwm_mib "$UP_PID")
note "after load:  $(rss "$UP_PID")"

# ---------------------------------------------------------------- 7. summary
log "summary"
note "grid (calls/s):   setting   direct  gateway    nginx   gw/direct  gw/nginx"
for r in "${RUNS[@]}"; do
    read -r s d g x <<<"$r"
    note "$(awk -v s="$s" -v d="$d" -v g="$g" -v x="$x" \
        'BEGIN { printf "                  %7s %8d %8d %8d %10.2f %9.2f", s, d, g, x, g / d, g / x }')"
done
pd=$(field direct 2 "$BEST_OUT"); pg=$(field gateway 2 "$BEST_OUT"); px=$(field nginx 2 "$BEST_OUT")
hd=$(field direct 6 "$TMP/half.txt"); hg=$(field gateway 6 "$TMP/half.txt")
al_off=$(field gateway 2 "$TMP/accesslog.txt"); al_on=$(field gateway-log 2 "$TMP/accesslog.txt")
awk -v pd="$pd" -v pg="$pg" -v px="$px" -v bd="${BEST[direct]}" -v bg="${BEST[gateway]}" -v bx="${BEST[nginx]}" \
    -v sd="${BEST_AT[direct]}" -v sg="${BEST_AT[gateway]}" -v sx="${BEST_AT[nginx]}" -v bs="$BEST_SETTING" \
    -v rate="$RATE" -v hd="$hd" -v hg="$hg" -v on="$al_on" -v off="$al_off" \
    -v ir="$IDLE_RSS" -v ih="$IDLE_HWM" -v lr="$LOAD_RSS" -v lh="$LOAD_HWM" '
function verdict(ok) { return ok ? "met" : "MISSED" }
BEGIN {
    printf "   best of each target:  direct %d (%s)  gateway %d (%s)  nginx %d (%s)\n", bd, sd, bg, sg, bx, sx
    printf "   run with the gateway'\''s best setting (%s): direct %d, gateway %d, nginx %d calls/s\n", bs, pd, pg, px
    printf "   gateway/direct  %.2f   (target >= 0.45: %s)\n", pg / pd, verdict(pg / pd >= 0.45)
    printf "   gateway/nginx   %.2f   (target >= 1.25: %s)\n", pg / px, verdict(pg / px >= 1.25)
    printf "   p99 at %d calls/s: direct %d us, gateway %d us, added %.2f ms (target < 2 ms: %s)\n", \
        rate, hd, hg, (hg - hd) / 1000, verdict(hg - hd < 2000)
    printf "   access log on: %d calls/s vs %d off (%.0f%%)\n", on, off, 100 * (on - off) / off
    printf "   quis up RSS: idle %.1f MiB (peak %.1f), after %s of load %.1f MiB (peak %.1f MiB)\n", \
        ir, ih, bs, lr, lh
}'
note "uptime: $(uptime)"

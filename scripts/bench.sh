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
# gateway's peak for the added latency, a closed loop with 4 calls in flight
# (latency without queueing), the access log on vs off, a per-thread CPU
# snapshot (and a perf profile when perf works), `quis up` RSS, a summary.
#
# Before each measurement it waits (up to BENCH_WAIT_MAX seconds, polling every
# 30 s) while a compiler or linker runs or other processes use more than
# BENCH_BUSY_CPU % of a core, watches for either during the measurement and
# repeats the measurement (up to twice) if the machine got busy.
#
# Knobs (environment): BENCH_SECONDS (10), BENCH_GRID ("64x4 128x4 32x2 256x8",
# concurrency x connections), BENCH_OPEN ("auto 64": open-loop workers; auto
# gives each worker a 2 ms period), BENCH_BUSY_CPU (15, % of a core),
# BENCH_ECHO_NODELAY (1 = an LD_PRELOAD shim sets TCP_NODELAY on the echo
# service's accepted sockets; quis_runtime does so itself since 5463471, the
# knob compares older builds), BENCH_WAIT_MAX (900), BENCH_PERF (1 = profile if
# perf works), BENCH_KEEP (1 = keep the temporary directory), QUIS_BIN (skip
# the build and use this binary), CARGO_TARGET_DIR (/var/tmp/quis-target).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECONDS:-10}
GRID=${BENCH_GRID:-"64x4 128x4 32x2 256x8"}
OPEN=${BENCH_OPEN:-"auto 64"}
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
# The machine is shared: "busy" means a compiler or linker is running, or the
# processes outside this script's process group (kernel threads aside) used
# more than BUSY_CPU percent of one core over a 2 s sample.
BUSY_CPU=${BENCH_BUSY_CPU:-15}
MYPGID=$(ps -o pgid= $$ | tr -d ' ')

# ticks: "pid ticks comm" of every user-space process outside this process group.
ticks() {
    local f line rest comm fields
    for f in /proc/[0-9]*/stat; do
        { read -r line <"$f"; } 2>/dev/null || continue
        rest=${line##*) }
        comm=${line#*(}; comm=${comm%) *}
        read -r -a fields <<<"$rest"
        # fields: 0 state, 1 ppid, 2 pgrp, ... 11 utime, 12 stime
        [[ ${fields[2]} == 0 || ${fields[2]} == "$MYPGID" || ${fields[1]} == 2 ]] && continue
        echo "${line%% *} $(( fields[11] + fields[12] )) $comm"
    done
}

# busy: prints why and succeeds when the machine is busy (takes 2 s).
busy() {
    local before after names
    before=$(ticks); sleep 2; after=$(ticks)
    names=$(ps -eo pid=,comm= | awk '
        $2 ~ /^(rustc|cc|cc1|cc1plus|ld|ld\.lld|mold|clippy-driver|rustdoc)$/ { printf "%s(%s) ", $2, $1 }')
    awk -v names="$names" -v limit="$BUSY_CPU" '
        NR == FNR { t[$1] = $2; next }
        { d = $2 - ($1 in t ? t[$1] : $2); if (d > 0) { total += d; who[$3 "(" $1 ")"] = d } }
        END {
            pct = total / 2   # ticks are 1/100 s over 2 s: percent of one core
            if (names == "" && pct <= limit) exit 1
            n = asorti(who, k, "@val_num_desc") ; top = ""
            for (i = 1; i <= n && i <= 4; i++) top = top k[i] " " who[k[i]] / 2 "% "
            printf "others used %.0f%% of a core [%s] %s\n", pct, top, (names == "" ? "" : "compiling: " names)
        }' <(echo "$before") <(echo "$after")
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
    local attempt sampler flag=$TMP/busy.flag quiet shown
    shown=$(printf '%s ' "$@" | sed "s|$TOKEN|\$TOKEN|g; s|${UP_TOKEN:-no-up-token}|\$TOKEN|g")
    for attempt in 1 2 3; do
        quiet=yes
        wait_quiet || quiet=no
        rm -f "$flag"
        ( while :; do b=$(busy) && echo "$b" >>"$flag"; done ) &
        sampler=$!
        note "load before: $(uptime | sed 's/.*load average/load average/')"
        note "\$ quis bench $shown"
        "$QUIS" bench "$@" | tee "$out"
        kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
        note "load after:  $(uptime | sed 's/.*load average/load average/')"
        if [[ -s $flag ]]; then
            note "BUSY during the run: $(head -1 "$flag" | cut -c1-160)"
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

# thread_cpu SECONDS NAME=PID...: CPU of each process and thread over SECONDS, in % of one core.
thread_cpu() {
    local secs=$1; shift
    snap() {
        local spec name pid f line rest fields
        for spec in "$@"; do
            name=${spec%%=*}; pid=${spec#*=}
            for f in /proc/"$pid"/task/*/stat; do
                { read -r line <"$f"; } 2>/dev/null || continue
                rest=${line##*) }; read -r -a fields <<<"$rest"
                local comm=${line#*(}; comm=${comm%) *}
                echo "$name ${line%% *} ${comm// /_} $(( fields[11] + fields[12] ))"
            done
        done
    }
    local before after
    before=$(snap "$@"); sleep "$secs"; after=$(snap "$@")
    awk -v secs="$secs" '
        NR == FNR { t[$2] = $4; next }
        { d = ($4 - ($2 in t ? t[$2] : $4)) / secs; proc[$1] += d
          if (d >= 1) line[++n] = sprintf("      %-8s tid %-7s %-16s %5.0f%%", $1, $2, $3, d) }
        END {
            for (p in proc) printf "   %-8s %5.0f%% of a core\n", p, proc[p]
            for (i = 1; i <= n; i++) print line[i]
        }' <(echo "$before") <(echo "$after")
}

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

ECHO_PRELOAD=()
if [[ ${BENCH_ECHO_NODELAY:-0} == 1 ]]; then
    # Experiment: what the echo service does once its accepted sockets have TCP_NODELAY.
    cat >"$TMP/nodelay.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
static int nodelay(int fd) {
    int one = 1;
    if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}
int accept4(int s, struct sockaddr *a, socklen_t *l, int flags) {
    static int (*real)(int, struct sockaddr *, socklen_t *, int);
    if (!real) real = dlsym(RTLD_NEXT, "accept4");
    return nodelay(real(s, a, l, flags));
}
int accept(int s, struct sockaddr *a, socklen_t *l) {
    static int (*real)(int, struct sockaddr *, socklen_t *);
    if (!real) real = dlsym(RTLD_NEXT, "accept");
    return nodelay(real(s, a, l));
}
C
    cc -O2 -shared -fPIC -o "$TMP/nodelay.so" "$TMP/nodelay.c" -ldl
    ECHO_PRELOAD=(LD_PRELOAD="$TMP/nodelay.so")
    note "EXPERIMENT: the echo service runs with TCP_NODELAY forced on its accepted sockets (LD_PRELOAD)"
fi
env "${ECHO_PRELOAD[@]}" QUIS_LOG__LEVEL=warn \
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
# `quis bench --rate R` starts all its workers at the same instant with the
# same period, so calls leave in bursts of --concurrency at once; p99 then
# includes draining a whole burst. Fewer workers give smaller bursts, but each
# worker needs a period well above the timer's 1 ms resolution. The headline
# is the first entry of BENCH_OPEN.
RATE=$(( BEST_GW / 2 ))
# tokio's timer ticks every millisecond: a worker period under ~2 ms measures
# the timer more than the target. "auto" is the fewest workers with a 2 ms period.
AUTO=$(( (RATE * 2 + 999) / 1000 ))
OPEN=${OPEN//auto/$AUTO}
OPEN_RUNS=()
for c in $OPEN; do
    n=$(( N < c ? N : c ))
    log "added latency: open loop at ${RATE} calls/s (half the gateway's peak), --concurrency $c --connections $n"
    measure "$TMP/half-$c.txt" -- direct="$ECHO" gateway="$GATEWAY" \
        --token "$TOKEN" --seconds "$SECS" --concurrency "$c" --connections "$n" --rate "$RATE"
    OPEN_RUNS+=("$c")
done
HALF=${OPEN_RUNS[0]}

# Without queueing: 4 calls in flight, closed loop, the latency each hop adds per call.
log "latency without queueing: closed loop, --concurrency 4 --connections 1"
measure "$TMP/c4.txt" -- direct="$ECHO" gateway="$GATEWAY" \
    --token "$TOKEN" --seconds "$SECS" --concurrency 4 --connections 1

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
thread_cpu 2 bench="$BENCH_PID" gateway="$GATEWAY_PID" echo="$ECHO_PID"
note "(over 2 s; bench = the load generator; threads under 1% left out)"
if [[ $PERF == 1 ]] && command -v perf >/dev/null 2>&1; then
    if perf record -q -F 499 -a -o "$TMP/perf.data" -- sleep 3 >/dev/null 2>&1; then
        wait "$BENCH_PID" || true
        log "perf: CPU samples by process (whole machine, 3 s)"
        { perf report -i "$TMP/perf.data" --no-children --sort pid --stdio -g none 2>/dev/null || true; } \
            | grep -v '^#' | awk 'NF' | head -8 || true
        log "perf: top symbols in the gateway process (self time, % of the gateway's samples)"
        { perf report -i "$TMP/perf.data" --no-children --pid "$GATEWAY_PID" --sort dso,symbol --stdio -g none \
            --percentage relative --percent-limit 1 2>/dev/null || true; } | grep -v '^#' | awk 'NF' | cut -c1-150 | head -45 || true
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
for f in "$TMP"/peak-*.txt "$TMP"/half-*.txt "$TMP/c4.txt" "$TMP/accesslog.txt" "$TMP/up.txt"; do
    awk -v f="$(basename "$f" .txt)" 'NR > 1 && $3 > 0 { printf "   ERRORS: %s: %s failed %d calls\n", f, $1, $3 }' "$f"
done
pd=$(field direct 2 "$BEST_OUT"); pg=$(field gateway 2 "$BEST_OUT"); px=$(field nginx 2 "$BEST_OUT")
note "open loop at $RATE calls/s:  workers  direct p50/p99 us  gateway p50/p99 us  added p99 ms"
for c in "${OPEN_RUNS[@]}"; do
    f=$TMP/half-$c.txt
    note "$(printf '                          %7s %10s/%-7s %10s/%-7s %8s' "$c" \
        "$(field direct 4 "$f")" "$(field direct 6 "$f")" "$(field gateway 4 "$f")" "$(field gateway 6 "$f")" \
        "$(awk -v d="$(field direct 6 "$f")" -v g="$(field gateway 6 "$f")" 'BEGIN { printf "%.2f", (g - d) / 1000 }')")"
done
note "$(awk '$1 == "direct" { d50 = $4; d99 = $6; dr = $2 } $1 == "gateway" { g50 = $4; g99 = $6; gr = $2 }
    END { printf "closed loop, 4 in flight: direct %d calls/s p50/p99 %d/%d us; gateway %d calls/s p50/p99 %d/%d us (+%d/+%d us)", \
        dr, d50, d99, gr, g50, g99, g50 - d50, g99 - d99 }' "$TMP/c4.txt")"
hd=$(field direct 6 "$TMP/half-$HALF.txt"); hg=$(field gateway 6 "$TMP/half-$HALF.txt")
al_off=$(field gateway 2 "$TMP/accesslog.txt"); al_on=$(field gateway-log 2 "$TMP/accesslog.txt")
awk -v pd="$pd" -v pg="$pg" -v px="$px" -v bd="${BEST[direct]}" -v bg="${BEST[gateway]}" -v bx="${BEST[nginx]}" \
    -v sd="${BEST_AT[direct]}" -v sg="${BEST_AT[gateway]}" -v sx="${BEST_AT[nginx]}" -v bs="$BEST_SETTING" \
    -v rate="$RATE" -v half="$HALF" -v hd="$hd" -v hg="$hg" -v on="$al_on" -v off="$al_off" \
    -v ir="$IDLE_RSS" -v ih="$IDLE_HWM" -v lr="$LOAD_RSS" -v lh="$LOAD_HWM" '
function verdict(ok) { return ok ? "met" : "MISSED" }
BEGIN {
    printf "   best of each target:  direct %d (%s)  gateway %d (%s)  nginx %d (%s)\n", bd, sd, bg, sg, bx, sx
    printf "   run with the gateway'\''s best setting (%s): direct %d, gateway %d, nginx %d calls/s\n", bs, pd, pg, px
    printf "   gateway/direct  %.2f   (target >= 0.45: %s)\n", pg / pd, verdict(pg / pd >= 0.45)
    printf "   gateway/nginx   %.2f   (target >= 1.25: %s)\n", pg / px, verdict(pg / px >= 1.25)
    printf "   p99 at %d calls/s (%d workers): direct %d us, gateway %d us, added %.2f ms (target < 2 ms: %s)\n", \
        rate, half, hd, hg, (hg - hd) / 1000, verdict(hg - hd < 2000)
    printf "   access log on: %d calls/s vs %d off (%.0f%%)\n", on, off, 100 * (on - off) / off
    printf "   quis up RSS: idle %.1f MiB (peak %.1f), after %s of load %.1f MiB (peak %.1f MiB)\n", \
        ir, ih, bs, lr, lh
}'
note "uptime: $(uptime)"

#!/usr/bin/env bash
# Benchmark: what the card's HTTP proxy saves the host server, against the same server on kernel sockets and
# against nginx in front of it; same run, same clients (cm-httpload in the emulator's client namespace).
#
#   A  card:   cmfw --proxy-http 80 --proxy-pool 16 in the card namespace; cm-httpd --backend cm in the root
#              namespace on the card's bus (16 pooled bus connections)
#   B  kernel: cm-httpd --backend kernel --listen 198.18.1.2:80 in a peer namespace (bench_lib.sh), facing the
#              clients directly
#   C  nginx:  nginx (1 worker) on 198.18.1.2:80 in the peer namespace, proxy_pass to cm-httpd --backend kernel
#              on 127.0.0.1:8080 with an upstream keep-alive pool of 16, proxy buffering on
#
# For each N in PROXY_BENCH_SLOW (default "1000 10000"): cm-httpload --slow N --fast PROXY_BENCH_FAST (16)
# --duration PROXY_BENCH_SECONDS (20) --warmup PROXY_BENCH_WARMUP (3) against A, B and C. Measured:
#   host CPU per 1,000 ok requests: cm-httpd (A, B); nginx master + worker + cm-httpd (C). CPU is read from
#     /proc/PID/schedstat (cpu_ns) at the end of the warm-up and at the end of the load's duration (timed from
#     the load's start), so it covers the same window as cm-httpload's ok counts;
#   requests per second (ok: fast, slow), slow_requests_ok and every kind of failure;
#   server-side connections at peak: cm-httpd's connections_peak; nginx's client and upstream connections
#     (ss, sampled every second in the peer namespace); client connections open at peak (ss, client side);
#   A only: proxy.clients_peak, proxy.bus_peak, proxy.bus_busy_peak and the card's own CPU (cmfw: not host CPU).
# Then requests per second on one core: cmfw pinned to CPU 0 vs nginx pinned to CPU 0 (cm-httpd on CPU 1 in
# both), cm-httpload --fast 64 and wrk -t1 -c64 for PROXY_BENCH_ONECORE_SECONDS (10), no slow clients.
# Every set-up gets fresh servers (and, per N, a fresh emulator), so peaks are per run. Prints figures, never
# fails on them (only when setup fails).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/bench/bench_lib.sh
source "$HERE/bench_lib.sh"
ROOT=$(cd "$HERE/../.." && pwd)
CMEMU=${CMEMU:-$ROOT/tools/cmemu}
CMHTTPD=${CMHTTPD:-$ROOT/build/tools/cm-httpd}
CMHTTPLOAD=${CMHTTPLOAD:-$ROOT/build/tools/cm-httpload}
SLOW_LIST=${PROXY_BENCH_SLOW:-1000 10000}
SECS=${PROXY_BENCH_SECONDS:-20}
WARMUP=${PROXY_BENCH_WARMUP:-3}
FAST=${PROXY_BENCH_FAST:-16}
ONECORE_SECS=${PROXY_BENCH_ONECORE_SECONDS:-10}
POOL=${PROXY_BENCH_POOL:-16}
SETUPS=${PROXY_BENCH_SETUPS:-A B C}  # a subset for a quicker look, e.g. "A B"; the one-core part: ONECORE_SECONDS=0 skips it
has_setup() { [[ " $SETUPS " == *" $1 "* ]]; }
NGINX=${NGINX:-nginx}
WRK=${WRK:-wrk}
# shellcheck disable=SC2206 # PROXY_BENCH_CARD_ARGS: more cmfw options, split on blanks
CARD_ARGS=(--proxy-http 80 --proxy-pool "$POOL" --tcp-max-connections 40000 ${PROXY_BENCH_CARD_ARGS-})
((EUID == 0)) || { echo "proxy_bench: needs root (network namespaces)" >&2; exit 1; }
[[ -x $CMHTTPD && -x $CMHTTPLOAD ]] || { echo "proxy_bench: build cm-httpd and cm-httpload first" >&2; exit 1; }
command -v "$NGINX" >/dev/null || { echo "proxy_bench: nginx not installed (tools/install-deps.sh bench)" >&2; exit 1; }
command -v ss >/dev/null || { echo "proxy_bench: ss (iproute2) not installed" >&2; exit 1; }
if [[ -n ${CMFW-} ]]; then export CMFW; fi
((NCPU = $(nproc), NCPU >= 2)) || echo "proxy_bench: only $(nproc) CPU; the one-core comparison needs 2" >&2

echo "== command"
printf 'PROXY_BENCH_SLOW="%s" PROXY_BENCH_SECONDS=%s PROXY_BENCH_WARMUP=%s PROXY_BENCH_FAST=%s PROXY_BENCH_POOL=%s PROXY_BENCH_SETUPS="%s" PROXY_BENCH_ONECORE_SECONDS=%s PROXY_BENCH_CARD_ARGS="%s" CMFW=%s CMHTTPD=%s CMHTTPLOAD=%s bash %s' \
    "$SLOW_LIST" "$SECS" "$WARMUP" "$FAST" "$POOL" "$SETUPS" "$ONECORE_SECS" "${PROXY_BENCH_CARD_ARGS-}" \
    "${CMFW:-$ROOT/build/firmware/app/cmfw}" "$CMHTTPD" "$CMHTTPLOAD" "${BASH_SOURCE[0]}"
(($# == 0)) || printf ' %q' "$@"
echo
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), Linux $(uname -r), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# 10,000 slow clients + 16 fast ones in one process (cm-httpload), and as many sockets in the server.
ulimit -Hn 1048576 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
echo "open files limit: $(ulimit -n) (cm-httpload needs N + $FAST + a few; nginx 2 per slow client at most)"

TMP=$(mktemp -d /tmp/proxy_bench.XXXXXX)
chmod 755 "$TMP"
BG=()          # pids we started and end on exit
EMU=""
PEER_NS=""
T_START=$EPOCHREALTIME
cleanup() {
    local rc=$? p i
    set +e
    trap - INT TERM
    for p in "${BG[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${BG[@]}"; do
        for ((i = 0; i < 30; i++)); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null
    done
    [[ -z $EMU ]] || "$CMEMU" down "$EMU" >/dev/null 2>&1
    [[ -z $PEER_NS ]] || kernel_peer_down "$PEER_NS"
    if ((rc != 0 && rc != 130 && rc != 143)) && [[ -d $TMP ]]; then
        for f in "$TMP"/*.log; do
            [[ -s $f ]] && { echo "--- tail of $(basename "$f")"; tail -n 5 "$f"; }
        done >&2
    fi
    if [[ ${PROXY_BENCH_KEEP:-0} == 1 ]]; then echo "proxy_bench: files kept in $TMP" >&2; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bg_add() { BG+=("$1"); }
bg_forget() {
    local i
    for i in "${!BG[@]}"; do [[ ${BG[$i]} != "$1" ]] || unset 'BG[i]'; done
}
# stop PID: SIGTERM, wait (it is our child), forget.
stop() {
    [[ -n ${1-} ]] || return 0
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    bg_forget "$1"
}
say() { echo "+ $*"; }
now() { echo "$EPOCHREALTIME"; }
# sleep_until T0 SECONDS: until SECONDS after the $EPOCHREALTIME value T0.
sleep_until() {
    local left
    left=$(awk -v t0="$1" -v s="$2" -v n="$EPOCHREALTIME" 'BEGIN { d = t0 + s - n; printf "%.3f", (d > 0 ? d : 0) }')
    sleep "$left"
}
kv() { awk -v k="$1" '$1 == k { print $2; found = 1 } END { if (!found) print "" }' "$2"; }
calc() { awk "BEGIN { $1 }"; }

# ---- set-up pieces -----------------------------------------------------------------------------------------

RUN=0
# emu_up: a fresh emulator (card proxy) and kernel peer namespace; sets EMU, PEER_NS, CLIENT_NS, CARD_IP,
# CMFW_PID, BUS_SOCKET.
emu_up() {
    RUN=$((RUN + 1))
    EMU=bproxy-$$-$RUN
    PEER_NS=cm-$EMU-peer
    local hash status
    hash=$(printf '%s' "$EMU" | sha256sum | cut -c1-8)
    say "$CMEMU up $EMU -- ${CARD_ARGS[*]}"
    "$CMEMU" up "$EMU" -- "${CARD_ARGS[@]}" >"$TMP/cmemu-up.log" 2>&1 || {
        cat "$TMP/cmemu-up.log" >&2
        exit 1
    }
    status=$("$CMEMU" status "$EMU")
    CLIENT_NS=$(sed -n 's/^client_ns=//p' <<<"$status")
    CARD_IP=$(sed -n 's/^card_ip=//p' <<<"$status")
    CMFW_PID=$(sed -n 's/^cmfw_pid=//p' <<<"$status")
    BUS_SOCKET=$(sed -n 's/^bus_socket=//p' <<<"$status")
    kernel_peer_up "$CLIENT_NS" "$PEER_NS" "$hash"
    # One client namespace opens 10,000+ connections to each server, run after run: wide ports, reuse of its
    # own TIME_WAIT ports. The servers' namespace: a listen backlog as large as the servers ask for.
    ip netns exec "$CLIENT_NS" sysctl -q -w net.ipv4.ip_local_port_range="1024 65000" net.ipv4.tcp_tw_reuse=1
    ip netns exec "$PEER_NS" sysctl -q -w net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535
}
emu_down() {
    "$CMEMU" down "$EMU" >/dev/null 2>&1 || true
    kernel_peer_down "$PEER_NS"
    EMU="" PEER_NS=""
}

# httpd_start NAME NS|- ARGS...: cm-httpd in namespace NS ("-": the root namespace), waits for its ready
# file; sets HTTPD_PID and HTTPD_STATS.
httpd_start() {
    local name=$1 ns=$2 i
    shift 2
    HTTPD_STATS=$TMP/$name.stats
    local ready=$TMP/$name.ready
    rm -f "$HTTPD_STATS" "$ready"
    local cmd=("$CMHTTPD" "$@" --stats-file "$HTTPD_STATS" --ready-file "$ready" --quiet)
    [[ $ns == - ]] || cmd=(ip netns exec "$ns" "${cmd[@]}")
    say "${cmd[*]}"
    "${cmd[@]}" >"$TMP/$name.log" 2>&1 &
    HTTPD_PID=$!
    bg_add "$HTTPD_PID"
    for ((i = 0; i < 100; i++)); do
        [[ -s $ready ]] && break
        kill -0 "$HTTPD_PID" 2>/dev/null || break
        sleep 0.1
    done
    [[ -s $ready ]] || { echo "proxy_bench: cm-httpd ($name) did not start" >&2; cat "$TMP/$name.log" >&2; exit 1; }
    local pid
    pid=$(sed -n 's/^pid=//p' "$ready")
    [[ -z $pid || $pid == "$HTTPD_PID" ]] || { bg_add "$pid"; HTTPD_PID=$pid; }
}

# nginx_start NAME [AFFINITY]: nginx in the peer namespace on $KERNEL_PEER_IP:80 in front of cm-httpd on
# 127.0.0.1:8080; sets NGINX_PID (master) and NGINX_WORKER.
nginx_start() {
    local name=$1 affinity=${2-} dir=$TMP/$1 i
    mkdir -p "$dir"
    chmod 755 "$dir"
    cat >"$dir/nginx.conf" <<EOF
daemon off;
user root;
worker_processes 1;
${affinity:+worker_cpu_affinity $affinity;}
worker_rlimit_nofile $(ulimit -n);
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {
    worker_connections 40000;
    use epoll;
}
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    keepalive_requests 1000000;   # as cm-httpd and the card: no limit on requests per client connection
    keepalive_timeout 75s;
    upstream backend {
        server 127.0.0.1:8080;
        keepalive $POOL;
        keepalive_requests 1000000;
    }
    server {
        listen $KERNEL_PEER_IP:80 backlog=4096;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;
        }
    }
}
EOF
    local cmd=(ip netns exec "$PEER_NS" "$NGINX" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf")
    say "${cmd[*]}   (config: worker_processes 1, worker_connections 40000, worker_rlimit_nofile $(ulimit -n)," \
        "access_log off, upstream 127.0.0.1:8080 keepalive $POOL, proxy_http_version 1.1, Connection \"\"," \
        "proxy_buffering on, keepalive_requests 1000000${affinity:+, worker_cpu_affinity $affinity})"
    "${cmd[@]}" >"$TMP/$name.log" 2>&1 &
    NGINX_PID=$!
    bg_add "$NGINX_PID"
    NGINX_WORKER=""
    for ((i = 0; i < 100; i++)); do
        NGINX_WORKER=$(awk '{ print $1 }' "/proc/$NGINX_PID/task/$NGINX_PID/children" 2>/dev/null)
        [[ -n $NGINX_WORKER ]] && break
        kill -0 "$NGINX_PID" 2>/dev/null || break
        sleep 0.1
    done
    [[ -n $NGINX_WORKER ]] || { echo "proxy_bench: nginx did not start" >&2; cat "$TMP/$name.log" "$dir/error.log" >&2; exit 1; }
    for ((i = 0; i < 50; i++)); do
        ip netns exec "$PEER_NS" ss -Htln "( sport = :80 )" | grep -q . && break
        sleep 0.1
    done
}

# sampler NAME T0 [card]: every second, the most established connections seen: client side (client namespace,
# to port 80), server side in the peer namespace (local port 80, and local port 8080 = nginx's upstream
# connections). With "card": also the card's proxy.responses (cmemu counters: a signal to cmfw, never to the
# host server, which a signal would wake) as "seconds-since-T0 responses" lines in NAME.progress.
sampler() {
    local out=$TMP/$1.conns t0=$2 card=${3-} cl=0 s80=0 s8080=0 a b c
    while :; do
        if [[ -n $card ]]; then
            c=$("$CMEMU" counters "$EMU" 2>/dev/null | awk '$1 == "proxy.responses" { print $2 }')
            [[ -z $c ]] || echo "$(calc "printf \"%.1f\", $EPOCHREALTIME - $t0") $c" >>"$TMP/$1.progress"
        fi
        a=$(ip netns exec "$CLIENT_NS" ss -Htn state established "( dport = :80 )" 2>/dev/null | wc -l)
        b=$(ip netns exec "$PEER_NS" ss -Htn state established "( sport = :80 )" 2>/dev/null | wc -l)
        c=$(ip netns exec "$PEER_NS" ss -Htn state established "( sport = :8080 )" 2>/dev/null | wc -l)
        ((a > cl)) && cl=$a
        ((b > s80)) && s80=$b
        ((c > s8080)) && s8080=$c
        echo "$cl $s80 $s8080" >"$out.tmp" && mv "$out.tmp" "$out"
        sleep 1
    done
}

# cpu_sum PIDS...: the sum of cpu_ns of the processes (ns).
cpu_sum() {
    local p s=0 v
    for p in "$@"; do
        v=$(cpu_ns "$p")
        s=$((s + ${v:-0}))
    done
    echo "$s"
}

declare -A R   # results: R[key,run] ("run" = "$N,A" etc.)

# measure RUN TARGET "HOST PIDS" "CARD PID": cm-httpload against TARGET with $SLOW_N slow clients; host and
# card CPU over the measurement window; the report in $TMP/RUN.report.
measure() {
    local run=$1 target=$2 host_pids=$3 card_pid=${4-} t0 h0 h1 c0 c1 spid lpid
    local rep=$TMP/${run//,/-}.report
    rm -f "$rep" "$TMP/${run//,/-}.conns" "$TMP/${run//,/-}.progress"
    local cmd=("$CMHTTPLOAD" --target "$target" --slow "$SLOW_N" --fast "$FAST" --duration "$SECS" --warmup "$WARMUP"
        --report "$rep")
    say "ip netns exec $CLIENT_NS ${cmd[*]}"
    t0=$(now)
    sampler "${run//,/-}" "$t0" "${card_pid:+card}" &
    spid=$!
    bg_add "$spid"
    ip netns exec "$CLIENT_NS" "${cmd[@]}" >"$TMP/${run//,/-}.load.log" 2>&1 &
    lpid=$!
    bg_add "$lpid"
    sleep_until "$t0" "$WARMUP"
    # shellcheck disable=SC2086
    h0=$(cpu_sum $host_pids)
    c0=$([[ -n $card_pid ]] && cpu_ns "$card_pid" || echo 0)
    sleep_until "$t0" "$SECS"
    # shellcheck disable=SC2086
    h1=$(cpu_sum $host_pids)
    c1=$([[ -n $card_pid ]] && cpu_ns "$card_pid" || echo 0)
    wait "$lpid" || true
    bg_forget "$lpid"
    kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null || true
    bg_forget "$spid"
    [[ -s $rep ]] || { echo "proxy_bench: cm-httpload wrote no report" >&2; cat "$TMP/${run//,/-}.load.log" >&2; exit 1; }
    local k
    for k in slow_requests_ok fast_requests_ok slow_rps fast_rps slow_requests_failed fast_requests_failed \
        slow_requests_unfinished slow_connect_errors fast_connect_errors slow_resets fast_resets slow_timeouts \
        fast_timeouts slow_short_responses fast_short_responses slow_status_5xx fast_status_5xx slow_status_4xx \
        fast_status_4xx slow_conns_peak fast_conns_peak slow_latency_p50_us fast_latency_p50_us \
        fast_latency_p99_us measured_s; do
        R[$k,$run]=$(kv "$k" "$rep")
    done
    R[ok,$run]=$((${R[slow_requests_ok,$run]:-0} + ${R[fast_requests_ok,$run]:-0}))
    R[rps,$run]=$(calc "printf \"%.0f\", ${R[slow_rps,$run]:-0} + ${R[fast_rps,$run]:-0}")
    R[failed,$run]=$((${R[slow_requests_failed,$run]:-0} + ${R[fast_requests_failed,$run]:-0}))
    R[connect_errors,$run]=$((${R[slow_connect_errors,$run]:-0} + ${R[fast_connect_errors,$run]:-0}))
    R[host_ns,$run]=$((h1 - h0))
    R[card_ns,$run]=$((c1 - c0))
    R[host_ms_per_1k,$run]=$(calc "if (${R[ok,$run]} > 0) printf \"%.1f\", $((h1 - h0)) / 1e6 / ${R[ok,$run]} * 1000; else print \"-\"")
    R[card_ms_per_1k,$run]=$(calc "if (${R[ok,$run]} > 0) printf \"%.1f\", $((c1 - c0)) / 1e6 / ${R[ok,$run]} * 1000; else print \"-\"")
    local cl='?' s80='?' s8080='?'
    read -r cl s80 s8080 <"$TMP/${run//,/-}.conns" || true
    R[client_conns,$run]=$cl R[peer80,$run]=$s80 R[peer8080,$run]=$s8080
    echo "  ok ${R[ok,$run]} (fast ${R[fast_requests_ok,$run]}, slow ${R[slow_requests_ok,$run]}), ${R[rps,$run]}/s;" \
        "failed ${R[failed,$run]} (slow ${R[slow_requests_failed,$run]}: resets ${R[slow_resets,$run]}, timeouts" \
        "${R[slow_timeouts,$run]}, short ${R[slow_short_responses,$run]}, 5xx ${R[slow_status_5xx,$run]};" \
        "fast ${R[fast_requests_failed,$run]}), connect errors ${R[connect_errors,$run]}, slow unfinished" \
        "${R[slow_requests_unfinished,$run]}; slow p50 ${R[slow_latency_p50_us,$run]} us, fast p50/p99" \
        "${R[fast_latency_p50_us,$run]}/${R[fast_latency_p99_us,$run]} us; client conns peak (ss)" \
        "${R[client_conns,$run]:-?}; host CPU $(calc "printf \"%.2f\", $((h1 - h0)) / 1e9") s" \
        "= ${R[host_ms_per_1k,$run]} ms per 1k requests"
}

# card_stall COUNTERS PROGRESS: after the load ended (every client gone), requests the card forwarded that
# the host server never answered, with clients still queued behind them, mean the server stopped taking
# requests: prints a description (when it stopped, from PROGRESS), or nothing when all is well.
card_stall() {
    local fwd resp queued
    fwd=$(kv proxy.requests_forwarded "$1") resp=$(kv proxy.responses "$1") queued=$(kv proxy.ready_queued "$1")
    ((${fwd:-0} > ${resp:-0} && ${queued:-0} > 0)) || return 0
    local since="?"
    [[ ! -s $2 ]] || since=$(awk '$2 != last { t = $1; last = $2 } END { print t }' "$2")
    echo "STALLED: the host server stopped answering at t~${since} s of the load (proxy.responses flat from then;" \
        "after the load: $((fwd - resp)) requests forwarded and unanswered, $queued clients queued) — a lost" \
        "wake-up of cm-httpd on the bus; figures of this run are not the card's"
}

# httpd_finish NAME RUN: stops cm-httpd (its stats file) and keeps its statistics for RUN.
httpd_finish() {
    local run=$2 k
    stop "$HTTPD_PID"
    for k in requests connections_peak requests_assembled_slowly incomplete_at_close; do
        R[httpd_$k,$run]=$(kv "$k" "$HTTPD_STATS")
    done
    echo "  cm-httpd: requests ${R[httpd_requests,$run]}, connections_peak ${R[httpd_connections_peak,$run]}," \
        "requests_assembled_slowly ${R[httpd_requests_assembled_slowly,$run]}, incomplete_at_close" \
        "${R[httpd_incomplete_at_close,$run]}"
}

# wait_quiet: lets the previous run's connections close (the clients' FINs, the servers' closes).
wait_quiet() { sleep 2; }

# ---- the runs -----------------------------------------------------------------------------------------------

for SLOW_N in $SLOW_LIST; do
    echo
    echo "== $SLOW_N slow clients + $FAST fast, ${SECS} s (warm-up ${WARMUP} s)"
    emu_up
    echo "card: $CARD_IP (cmfw pid $CMFW_PID), kernel peer: $KERNEL_PEER_IP"

    if has_setup A; then
        echo "-- A: card"
        # shellcheck disable=SC2086 # PROXY_BENCH_HTTPD_CM_ARGS: more cm-httpd options for the card set-up
        httpd_start "A-$SLOW_N" - --backend cm --device "$BUS_SOCKET" --port 80 ${PROXY_BENCH_HTTPD_CM_ARGS-}
        for ((i = 0; i < 50; i++)); do
            b=$("$CMEMU" counters "$EMU" 2>/dev/null | awk '$1 == "proxy.bus_open" { print $2 }')
            ((${b:-0} >= POOL)) && break
            sleep 0.1
        done
        echo "  pooled bus connections open: ${b:-?}"
        measure "$SLOW_N,A" "$CARD_IP:80" "$HTTPD_PID" "$CMFW_PID"
        sleep 1 # what was in flight when the clients left is answered (or not: card_stall)
        "$CMEMU" counters "$EMU" >"$TMP/A-$SLOW_N.counters" 2>/dev/null || echo "  (cmemu counters failed)"
        for k in clients_peak bus_peak bus_busy_peak ready_peak requests status_408 status_502 status_503 status_504 \
            send_timeouts keepalive_closed; do
            R[proxy_$k,$SLOW_N,A]=$(kv "proxy.$k" "$TMP/A-$SLOW_N.counters")
        done
        R[stall,$SLOW_N,A]=$(card_stall "$TMP/A-$SLOW_N.counters" "$TMP/$SLOW_N-A.progress")
        [[ -z ${R[stall,$SLOW_N,A]} ]] || echo "  !! ${R[stall,$SLOW_N,A]}"
        echo "  card: proxy.clients_peak ${R[proxy_clients_peak,$SLOW_N,A]}, bus_peak ${R[proxy_bus_peak,$SLOW_N,A]}," \
            "bus_busy_peak ${R[proxy_bus_busy_peak,$SLOW_N,A]}, ready_peak ${R[proxy_ready_peak,$SLOW_N,A]}," \
            "status 408/502/503/504 ${R[proxy_status_408,$SLOW_N,A]}/${R[proxy_status_502,$SLOW_N,A]}/${R[proxy_status_503,$SLOW_N,A]}/${R[proxy_status_504,$SLOW_N,A]};" \
            "cmfw CPU $(calc "printf \"%.2f\", ${R[card_ns,$SLOW_N,A]} / 1e9") s = ${R[card_ms_per_1k,$SLOW_N,A]} ms per 1k requests" \
            "($(awk '/^Threads:/ { print $2 }' "/proc/$CMFW_PID/status") thread(s))"
        httpd_finish "A-$SLOW_N" "$SLOW_N,A"
        wait_quiet

    fi
    if has_setup B; then
        echo "-- B: kernel"
        httpd_start "B-$SLOW_N" "$PEER_NS" --backend kernel --listen "$KERNEL_PEER_IP:80"
        measure "$SLOW_N,B" "$KERNEL_PEER_IP:80" "$HTTPD_PID"
        echo "  server-side connections (ss, peak): ${R[peer80,$SLOW_N,B]:-?}"
        httpd_finish "B-$SLOW_N" "$SLOW_N,B"
        wait_quiet

    fi
    if has_setup C; then
        echo "-- C: nginx -> cm-httpd (kernel, 127.0.0.1:8080)"
        httpd_start "C-$SLOW_N" "$PEER_NS" --backend kernel --listen 127.0.0.1:8080
        nginx_start "nginx-$SLOW_N"
        measure "$SLOW_N,C" "$KERNEL_PEER_IP:80" "$NGINX_PID $NGINX_WORKER $HTTPD_PID"
        R[nginx_ns,$SLOW_N,C]=$(( $(cpu_sum "$NGINX_PID" "$NGINX_WORKER") ))
        echo "  nginx connections (ss, peak): clients ${R[peer80,$SLOW_N,C]:-?}, upstream ${R[peer8080,$SLOW_N,C]:-?}"
        stop "$NGINX_PID"
        httpd_finish "C-$SLOW_N" "$SLOW_N,C"
    fi
    emu_down
done

# ---- one core ----------------------------------------------------------------------------------------------
if ((ONECORE_SECS > 0)); then

    echo
    echo "== requests per second on one core: the proxy on CPU 0, cm-httpd on CPU 1, clients unpinned; --fast 64, ${ONECORE_SECS} s"
    emu_up
    declare -A ONE
    # onecore NAME TARGET PROXY_PIDS: cm-httpload --fast 64, then wrk -t1 -c64; the proxy's CPU share.
    onecore() {
        local name=$1 target=$2 pids=$3 rep=$TMP/one-$1.report t0 c0 c1
        local cmd=("$CMHTTPLOAD" --target "$target" --fast 64 --duration "$ONECORE_SECS" --warmup 2 --report "$rep")
        say "ip netns exec $CLIENT_NS ${cmd[*]}"
        t0=$(now)
        ip netns exec "$CLIENT_NS" "${cmd[@]}" >"$TMP/one-$name.load.log" 2>&1 &
        local lpid=$!
        bg_add "$lpid"
        sleep_until "$t0" 2
        # shellcheck disable=SC2086
        c0=$(cpu_sum $pids)
        sleep_until "$t0" "$ONECORE_SECS"
        # shellcheck disable=SC2086
        c1=$(cpu_sum $pids)
        wait "$lpid" || true
        bg_forget "$lpid"
        ONE[load,$name]=$(kv fast_rps "$rep" | awk '{ printf "%.0f", $1 }')
        ONE[failed,$name]=$(kv fast_requests_failed "$rep")
        ONE[cpu,$name]=$(calc "printf \"%.2f\", ($c1 - $c0) / 1e9 / ($ONECORE_SECS - 2)")
        sleep 1
        local wcmd=("$WRK" -t1 -c64 -d"${ONECORE_SECS}s" "http://$target/")
        say "ip netns exec $CLIENT_NS ${wcmd[*]}"
        if command -v "$WRK" >/dev/null; then
            ip netns exec "$CLIENT_NS" "${wcmd[@]}" >"$TMP/one-$name.wrk.log" 2>&1 || true
            ONE[wrk,$name]=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$TMP/one-$name.wrk.log")
            ONE[wrk_err,$name]=$(awk '/Non-2xx|Socket errors/ { sub(/^ +/, ""); printf "%s; ", $0 }' "$TMP/one-$name.wrk.log")
        fi
        echo "  cm-httpload ${ONE[load,$name]:-?}/s (failed ${ONE[failed,$name]:-?}), wrk ${ONE[wrk,$name]:--}/s${ONE[wrk_err,$name]:+ (${ONE[wrk_err,$name]%; })};" \
            "proxy CPU ${ONE[cpu,$name]} of a core"
    }

    echo "-- card: cmfw on CPU 0"
    say "taskset -a -p -c 0 $CMFW_PID"
    taskset -a -p -c 0 "$CMFW_PID" >/dev/null
    httpd_start one-A - --backend cm --device "$BUS_SOCKET" --port 80
    taskset -a -p -c 1 "$HTTPD_PID" >/dev/null
    sleep 1
    onecore card "$CARD_IP:80" "$CMFW_PID"
    sleep 1
    "$CMEMU" counters "$EMU" >"$TMP/one-card.counters" 2>/dev/null || echo "  (cmemu counters failed)"
    ONE[stall,card]=$(card_stall "$TMP/one-card.counters" /dev/null)
    [[ -z ${ONE[stall,card]} ]] || echo "  !! ${ONE[stall,card]}"
    stop "$HTTPD_PID"
    sleep 1

    echo "-- nginx on CPU 0"
    httpd_start one-C "$PEER_NS" --backend kernel --listen 127.0.0.1:8080
    taskset -a -p -c 1 "$HTTPD_PID" >/dev/null
    nginx_start nginx-one 01
    taskset -a -p -c 0 "$NGINX_PID" >/dev/null
    taskset -a -p -c 0 "$NGINX_WORKER" >/dev/null
    onecore nginx "$KERNEL_PEER_IP:80" "$NGINX_PID $NGINX_WORKER"
    stop "$NGINX_PID"
    stop "$HTTPD_PID"
    emu_down
fi

# ---- the tables --------------------------------------------------------------------------------------------
# Set-ups left out (PROXY_BENCH_SETUPS) have no figures: print them empty rather than stop.
set +u

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || a == "-" || b + 0 <= 0) print "-"; else printf "%.2f", a / b }'; }
# verdict RUN: whether the slow clients were served without errors.
verdict() {
    local run=$1 notes=""
    ((${R[slow_requests_ok,$run]:-0} > 0)) || notes+="NO slow request completed; "
    ((${R[failed,$run]:-0} == 0)) || notes+="${R[failed,$run]} requests failed; "
    ((${R[connect_errors,$run]:-0} == 0)) || notes+="${R[connect_errors,$run]} connect errors; "
    ((${R[slow_conns_peak,$run]:-0} >= $2)) || notes+="slow clients connected at peak ${R[slow_conns_peak,$run]:-?} < $2; "
    [[ -z ${R[stall,$run]-} ]] || notes+="host server STALLED from t~$(sed -n 's/.*at t~\([^ ]*\) s.*/\1/p' <<<"${R[stall,$run]}") s (lost wake-up); "
    notes=${notes%; }
    echo "${notes:-ok}"
}
SETUP_A="card (cm-httpd over the bus)"
SETUP_B="kernel (cm-httpd on sockets)"
SETUP_C="nginx + cm-httpd"
echo
echo "== results: cm-httpload --slow N --fast $FAST --duration $SECS --warmup $WARMUP; CPU over the ${SECS}-${WARMUP} s window"
echo "   (host CPU: cm-httpd in A and B, nginx master+worker+cm-httpd in C; cmfw's CPU is the card's, not the host's)"
echo
echo "| slow clients | set-up | ok requests/s (fast + slow) | slow requests ok | host CPU per 1k requests | server connections peak | card: clients / bus / bus busy peak | cmfw CPU per 1k requests | slow requests at the server (assembled slowly) | errors |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for n in $SLOW_LIST; do
    for s in A B C; do
        has_setup "$s" || continue
        run=$n,$s
        case $s in
            A) name=$SETUP_A conns="${R[httpd_connections_peak,$run]} (bus)"
               card="${R[proxy_clients_peak,$run]} / ${R[proxy_bus_peak,$run]} / ${R[proxy_bus_busy_peak,$run]}"
               fw="${R[card_ms_per_1k,$run]} ms" ;;
            B) name=$SETUP_B conns="${R[httpd_connections_peak,$run]}" card="-" fw="-" ;;
            C) name=$SETUP_C card="-" fw="-"
               conns="nginx ${R[peer80,$run]:-?} clients / ${R[peer8080,$run]:-?} upstream; cm-httpd ${R[httpd_connections_peak,$run]}" ;;
        esac
        printf '| %s | %s | %s (%s + %s) | %s | %s ms | %s | %s | %s | %s | %s |\n' "$n" "$name" "${R[rps,$run]}" \
            "$(calc "printf \"%.0f\", ${R[fast_rps,$run]:-0}")" "$(calc "printf \"%.0f\", ${R[slow_rps,$run]:-0}")" \
            "${R[slow_requests_ok,$run]}" "${R[host_ms_per_1k,$run]}" "$conns" "$card" "$fw" \
            "${R[httpd_requests_assembled_slowly,$run]}" "$(verdict "$run" "$n")"
    done
done
echo
for n in $SLOW_LIST; do
    [[ -z ${R[stall,$n,A]-} ]] || echo "- $n slow clients: the card's run STALLED (host server lost a wake-up): its figures below are not the card's"
    echo "- $n slow clients: host CPU per 1k requests: card ${R[host_ms_per_1k,$n,A]} ms, kernel ${R[host_ms_per_1k,$n,B]} ms" \
        "(card/kernel = $(ratio "${R[host_ms_per_1k,$n,A]}" "${R[host_ms_per_1k,$n,B]}")), nginx+server" \
        "${R[host_ms_per_1k,$n,C]} ms (card/(nginx+server) = $(ratio "${R[host_ms_per_1k,$n,A]}" "${R[host_ms_per_1k,$n,C]}"));" \
        "ok requests/s: card ${R[rps,$n,A]}, kernel ${R[rps,$n,B]} (card/kernel = $(ratio "${R[rps,$n,A]}" "${R[rps,$n,B]}")), nginx" \
        "${R[rps,$n,C]} (card/nginx = $(ratio "${R[rps,$n,A]}" "${R[rps,$n,C]}")); server connections peak: card" \
        "${R[httpd_connections_peak,$n,A]}, kernel ${R[httpd_connections_peak,$n,B]}, nginx ${R[peer80,$n,C]:-?}" \
        "(its server ${R[httpd_connections_peak,$n,C]})"
done
if ((ONECORE_SECS > 0)); then
    echo
    echo "| one core (proxy on CPU 0, cm-httpd on CPU 1), 64 closed-loop clients, ${ONECORE_SECS} s | cm-httpload requests/s | wrk -t1 -c64 requests/s | proxy CPU (cores) |"
    echo "|---|---|---|---|"
    echo "| card (cmfw)${ONE[stall,card]:+ (host server STALLED: lost wake-up)} | ${ONE[load,card]:--} | ${ONE[wrk,card]:--} | ${ONE[cpu,card]} |"
    echo "| nginx (1 worker) | ${ONE[load,nginx]:--} | ${ONE[wrk,nginx]:--} | ${ONE[cpu,nginx]} |"
    if [[ -n ${ONE[stall,card]-} ]]; then
        echo "| card / nginx | - (card stalled) | - (card stalled) | |"
    else
        echo "| card / nginx | $(ratio "${ONE[load,card]:--}" "${ONE[load,nginx]:--}") | $(ratio "${ONE[wrk,card]:--}" "${ONE[wrk,nginx]:--}") | |"
    fi
fi
echo
echo "total run time: $(calc "printf \"%.0f\", $EPOCHREALTIME - $T_START") s"

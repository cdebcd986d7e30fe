#!/usr/bin/env bash
# Slow clients against the card's HTTP proxy while normal clients are served: what the card exists for.
# slowhttptest with 2,000 connections in slowloris (-H), slow-body (-B) and slow-read (-X) mode, each while
# an open-loop probe (a new connection every 100 ms, 2 s timeout) and cm-httpload --fast 4 run; then
# cm-httpload --slow 2000 --fast 8. Checks: the probe gets >= 95% 200s, the fast clients fail <= 5%, the
# card holds >= 1,000 client connections at once with no more bus connections than its pool (16), and the
# host server (cm-httpd) never sees a request that is incomplete or assembled slowly.
# PROXY_SLOW_CARD_ARGS: more cmfw arguments for the card (e.g. to try another --tcp-pool-chunks).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ITEST_DIR/proxy_lib.sh"
proxy_init proxy_slow_clients
[[ -x $CM_HTTPLOAD ]] || fail "CM_HTTPLOAD (cm-httpload) not set or not executable: $CM_HTTPLOAD"
command -v slowhttptest >/dev/null || skip "slowhttptest not installed"
note "open files: $(ulimit -n)"

POOL=16
CONNS=2000
LENGTH=15          # seconds of each slowhttptest run
REQUEST_TIMEOUT=10000
# shellcheck disable=SC2086 # word splitting of the extra arguments is intended
emu_up -- --proxy-http 80 --proxy-pool "$POOL" --tcp-max-connections 20000 \
    --proxy-request-timeout "$REQUEST_TIMEOUT" ${PROXY_SLOW_CARD_ARGS-}
httpd_start
wait_counter proxy.bus_open '>=' "$POOL" || note "pool not full after 5 s"

# rep KEY FILE: a value from a "key value" report.
rep() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }

# pct PART WHOLE: PART * 100 / WHOLE, one decimal (0 when WHOLE is 0).
pct() { awk -v p="$1" -v w="$2" 'BEGIN { v = 0; if (w > 0) v = p * 100 / w; printf "%.1f", v }'; }

# at_least_pct PART WHOLE PERCENT
at_least_pct() { awk -v p="$1" -v w="$2" -v q="$3" 'BEGIN { exit !(w > 0 && p * 100 >= w * q) }'; }

# settle: wait (up to 20 s) until the card holds few client connections, so that each phase's peak is its own.
settle() {
    wait_counter proxy.clients_active '<' 20 20 || note "still $(counter proxy.clients_active) clients after 20 s"
}

# phase LABEL SLOWHTTPTEST_ARGS...: slowhttptest with the normal clients alongside; the checks above.
phase() {
    local label=$1 i peak_clients=0 peak_bus=0 v
    shift
    settle
    snap
    local dur=$((LENGTH + 2)) probe=$ITEST_TMP/$label.probe load=$ITEST_TMP/$label.load slow=$ITEST_TMP/$label.slow
    pyclient probe "$CARD" "$dur" >"$probe" 2>&1 &
    local probe_pid=$!
    bg_add "$probe_pid"
    in_client "$CM_HTTPLOAD" --target "$CARD:80" --fast 4 --duration "$dur" --timeout 2000 --report "$load.rep" \
        >"$load" 2>&1 &
    local load_pid=$!
    bg_add "$load_pid"
    in_client slowhttptest "$@" -c "$CONNS" -r 500 -l "$LENGTH" -p 3 >"$slow" 2>&1 &
    local slow_pid=$!
    bg_add "$slow_pid"
    for ((i = 0; i < LENGTH + 20; i++)); do
        counters
        v=$(counter proxy.clients_active)
        ((v > peak_clients)) && peak_clients=$v
        v=$(counter proxy.bus_open)
        ((v > peak_bus)) && peak_bus=$v
        kill -0 "$slow_pid" 2>/dev/null || kill -0 "$load_pid" 2>/dev/null || kill -0 "$probe_pid" 2>/dev/null || break
        sleep 1
    done
    for v in "$slow_pid" "$load_pid" "$probe_pid"; do
        kill "$v" 2>/dev/null || true
        wait "$v" 2>/dev/null || true
        bg_forget "$v"
    done
    counters
    local summary
    summary=$(sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$slow" | awk '
        /^(connected|closed|error|pending):/ { gsub(/ +/, " "); v[$1] = $2 }
        /service available:/ { avail = $NF }
        /Exit status:/ { sub(/.*Exit status: */, ""); ex = $0 }
        END { printf "connected %s, closed %s, error %s at the end; service available %s; exit: %s", v["connected:"], v["closed:"], v["error:"], avail, ex }')
    note "$label: slowhttptest $*: $summary"
    local probe_out
    probe_out=$(tail -n 1 "$probe")
    note "$label: probe (new connection every 100 ms): $probe_out"
    local ok failed
    ok=$(rep fast_requests_ok "$load.rep")
    failed=$(rep fast_requests_failed "$load.rep")
    note "$label: cm-httpload --fast 4: ${ok:-?} ok (${ok:+$(rep fast_rps "$load.rep")}/s), ${failed:-?} failed," \
        "p50 $(rep fast_latency_p50_us "$load.rep") us, p99 $(rep fast_latency_p99_us "$load.rep") us, max $(rep fast_latency_max_us "$load.rep") us"
    note "$label: card: clients peak $peak_clients (sampled each second), bus connections peak $peak_bus," \
        "status_408 +$(delta proxy.status_408), status_400 +$(delta proxy.status_400), status_413 +$(delta proxy.status_413)," \
        "requests +$(delta proxy.requests), tcp.pool.alloc_failures +$(delta tcp.pool.alloc_failures)"
    check "$label: the probe got 200 for >= 95% ($(kv answered "$probe_out")/$(kv sent "$probe_out") = $(pct "$(kv answered "$probe_out")" "$(kv sent "$probe_out")")%)" \
        at_least_pct "$(kv answered "$probe_out")" "$(kv sent "$probe_out")" 95
    check "$label: fast clients: >= 95% of requests ok ($(pct "${ok:-0}" $((${ok:-0} + ${failed:-0})))%)" \
        at_least_pct "${ok:-0}" $((${ok:-0} + ${failed:-0})) 95
    check "$label: the card held >= 1000 client connections at once ($peak_clients)" ge "$peak_clients" 1000
    check "$label: bus connections <= the pool, $POOL ($peak_bus)" ge "$POOL" "$peak_bus"
}

phase slowloris -H -i 5 -u "http://$CARD/"
phase slow-body -B -i 5 -s 8192 -u "http://$CARD/sha256"
phase slow-read -X -k 3 -w 512 -y 1024 -n 5 -z 32 -u "http://$CARD/bytes/20000"
check "the card's bus_peak never exceeded the pool ($(counter proxy.bus_peak))" ge "$POOL" "$(counter proxy.bus_peak)"
note "card: clients_peak $(counter proxy.clients_peak), status_408 $(counter proxy.status_408), send_timeouts $(counter proxy.send_timeouts)," \
    "response_buffered_peak $(counter proxy.response_buffered_peak), tcp.pool.alloc_failures $(counter tcp.pool.alloc_failures)"

# ---- cm-httpload: 2,000 slow clients (trickled requests, slow reads) and 8 fast ones ------------------------------
settle
snap
rc=0
in_client "$CM_HTTPLOAD" --target "$CARD:80" --slow "$CONNS" --fast 8 --duration 10 --warmup 2 --ramp 2 \
    --report "$ITEST_TMP/mixed.rep" >"$ITEST_TMP/mixed.out" 2>&1 || rc=$?
sed 's/^/#   /' "$ITEST_TMP/mixed.out"
counters
r=$ITEST_TMP/mixed.rep
check "cm-httpload exit status 0 (no failed request or connect)" eq "$rc" 0
check "slow clients: requests completed ($(rep slow_requests_ok "$r") ok)" ge "$(rep slow_requests_ok "$r")" 1
check "slow clients: none failed ($(rep slow_requests_failed "$r"))" eq "$(rep slow_requests_failed "$r")" 0
check "fast clients: requests completed ($(rep fast_requests_ok "$r") ok, $(rep fast_rps "$r")/s)" ge "$(rep fast_requests_ok "$r")" 1
check "fast clients: none failed ($(rep fast_requests_failed "$r"))" eq "$(rep fast_requests_failed "$r")" 0
check "slow clients all connected ($(rep slow_conns_peak "$r") peak)" ge "$(rep slow_conns_peak "$r")" "$CONNS"
check "bus connections <= the pool ($(counter proxy.bus_peak))" ge "$POOL" "$(counter proxy.bus_peak)"
# Slow requests may wait up to 20 ms (--proxy-slow-request-delay) for cm-httpd's next wake-up, and TX_DONE alone
# for its next one (--bus-lazy-completions-ms): both happened, and nobody stalled (the counts above).
check "slow requests handed over as may-wait ($(counter proxy.requests_slow_delayed))" ge "$(counter proxy.requests_slow_delayed)" 1
check "host wake-ups held back for events that may wait ($(counter bus.notifications_lazy))" ge "$(counter bus.notifications_lazy)" 1
note "bus: notifications $(counter bus.notifications), held lazily $(counter bus.notifications_lazy), doorbells $(counter bus.doorbells)"

# ---- what the host server saw ------------------------------------------------------------------------------------
httpd_stop
s=${HTTPD_ALL_STATS[0]-}
[[ -n $s ]] || fail "cm-httpd left no statistics"
note "cm-httpd: $(grep -E '^(requests|connections_peak|parse_errors|incomplete_at_close|requests_assembled_slowly|max_request_assembly_us) ' "$s" | tr '\n' ' ')"
check "server: no request incomplete at close" eq "$(rep incomplete_at_close "$s")" 0
check "server: no request assembled slowly (> 100 ms)" eq "$(rep requests_assembled_slowly "$s")" 0
check "server: no parse errors" eq "$(rep parse_errors "$s")" 0
check "server: connections_peak <= the pool ($(rep connections_peak "$s"))" ge "$POOL" "$(rep connections_peak "$s")"
bad=$(awk '$1 ~ /^bus\.bad_/ && $2 != 0' "$ITEST_TMP/counters")
check "no bus.bad_* counter ($(tr '\n' ' ' <<<"${bad:-none}"))" test -z "$bad"

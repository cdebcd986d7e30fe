#!/usr/bin/env bash
# 10,000 concurrent connections from Linux clients: cm-tcpload opens them all at once against the card's
# echo service, and only when every one is established does each send a pattern and check that the same
# bytes come back; then all close. Afterwards the card's connection table and buffer pool are empty again.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/tcp_lib.sh"
itest_init many_connections
[[ -x ${CM_TCPLOAD-} ]] || fail "CM_TCPLOAD not set or not executable"
CONNECTIONS=${CM_MANY_CONNECTIONS:-10000}

# The client's ephemeral ports are the only limit on the Linux side: widen them in the client namespace.
emu_up --test-services -- --tcp-max-connections 32768 --tcp-syn-backlog 16384
in_client sysctl -q -w net.ipv4.ip_local_port_range="10000 65000"
out=$(in_client "$CM_TCPLOAD" --mode hold --target "$(st card_ip):7" --connections "$CONNECTIONS" --bytes 1000 \
    --duration 120 2>&1) || true
note "$(tr '\n' ' ' <<<"$out")"
check "all $CONNECTIONS connections established at once" eq "$(sed -n 's/^established=//p' <<<"$out")" "$CONNECTIONS"
check "all $CONNECTIONS echoed 1000 bytes back byte-exact" eq "$(sed -n 's/^echoed=//p' <<<"$out")" "$CONNECTIONS"
check "no connection failed" eq "$(sed -n 's/^errors=//p' <<<"$out")" 0
counters
note "card: tcp.passive_opens=$(counter tcp.passive_opens) tcp.syn_cookies_sent=$(counter tcp.syn_cookies_sent)" \
    "tcp.conn_closed=$(counter tcp.conn_closed) tcp.pool.chunks_high_water=$(counter tcp.pool.chunks_high_water)"
check "the card accepted every one (tcp.passive_opens >= $CONNECTIONS)" ge "$(counter tcp.passive_opens)" "$CONNECTIONS"
wait_idle

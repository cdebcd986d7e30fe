#!/usr/bin/env bash
# Benchmark: the card's TCP against Linux's own, same run, same client, identical veth links.
#
#   card:   cmfw --test-services in the emulator's card namespace            (echo 7, discard 9, chargen 19)
#   kernel: cm-tcpservices (the same services on Linux sockets) in a peer namespace (bench_lib.sh)
#
# Measured with cm-tcpload from the client namespace, each for CM_BENCH_SECONDS (default 5):
#   goodput, 1 connection, card -> client (chargen) and client -> card (discard)
#   aggregate goodput over CM_BENCH_CONNECTIONS connections (default 1000), card -> client
#   connections per second: connect, echo one byte, close, 64 at a time
# and, for the card, cmfw's CPU time per MB moved and per connection. Ratios card/kernel are printed; this
# prints figures and never fails on them (it fails only when setup fails).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/bench/bench_lib.sh
source "$HERE/bench_lib.sh"
ROOT=$(cd "$HERE/../.." && pwd)
CMEMU=${CMEMU:-$ROOT/tools/cmemu}
TCPLOAD=${CM_TCPLOAD:-$ROOT/build/tools/cm-tcpload}
TCPSERVICES=${CM_TCPSERVICES:-$ROOT/build/tools/cm-tcpservices}
SECS=${CM_BENCH_SECONDS:-5}
MANY=${CM_BENCH_CONNECTIONS:-1000}
((EUID == 0)) || { echo "tcp_bench: needs root (network namespaces)" >&2; exit 1; }
[[ -x $TCPLOAD && -x $TCPSERVICES ]] || { echo "tcp_bench: build cm-tcpload and cm-tcpservices first" >&2; exit 1; }
if [[ -n ${CMFW-} ]]; then export CMFW; fi

EMU=bench-tcp-$$
HASH=$(printf '%s' "$EMU" | sha256sum | cut -c1-8)
PEER_NS=cm-$EMU-peer
cleanup() {
    local rc=$?
    set +e
    "$CMEMU" down "$EMU" >/dev/null 2>&1
    kernel_peer_down "$PEER_NS"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== setup"
"$CMEMU" up "$EMU" --test-services -- --tcp-max-connections 65536 --tcp-syn-backlog 4096 >/dev/null
status=$("$CMEMU" status "$EMU")
CLIENT_NS=$(sed -n 's/^client_ns=//p' <<<"$status")
CARD_IP=$(sed -n 's/^card_ip=//p' <<<"$status")
CMFW_PID=$(sed -n 's/^cmfw_pid=//p' <<<"$status")
kernel_peer_up "$CLIENT_NS" "$PEER_NS" "$HASH"
ip netns exec "$PEER_NS" "$TCPSERVICES" >/dev/null 2>&1 &
disown
# Many short connections from one client: widen its ports and let it reuse its own TIME_WAIT ports.
ip netns exec "$CLIENT_NS" sysctl -q -w net.ipv4.ip_local_port_range="10000 65000" net.ipv4.tcp_tw_reuse=1
sleep 0.5
echo "card:   $CARD_IP (cmfw pid $CMFW_PID)   kernel: $KERNEL_PEER_IP (Linux $(uname -r), cm-tcpservices)"

# load TARGET ARGS...: runs cm-tcpload in the client namespace; sets OUT (its key=value lines), FW_TICKS
# (cmfw's CPU during the run).
load() {
    local c0
    c0=$(cpu_ticks "$CMFW_PID")
    OUT=$(ip netns exec "$CLIENT_NS" "$TCPLOAD" --target "$@" 2>&1) || true
    FW_TICKS=$(($(cpu_ticks "$CMFW_PID") - c0))
}
val() { sed -n "s/^$1=//p" <<<"$OUT"; }

declare -A card kernel card_cpu
run() { # NAME KEY ARGS... (ARGS after the target's port)
    local name=$1 key=$2 port=$3
    shift 3
    echo "== $name"
    load "$CARD_IP:$port" "$@"
    card[$name]=$(val "$key")
    local moved
    if [[ $key == per_s ]]; then moved=$(val completed); else moved=$(val bytes); fi
    card_cpu[$name]=$(awk -v t="$FW_TICKS" -v hz="$CLK_TCK" -v m="$moved" -v k="$key" \
        'BEGIN { if (m <= 0) { print "-"; exit } s = t / hz; if (k == "per_s") printf "%.1f us/conn", s / m * 1e6; else printf "%.2f ms/MB", s / (m / 1e6) * 1e3 }')
    echo "card:   $(tr '\n' ' ' <<<"$OUT")"
    load "$KERNEL_PEER_IP:$port" "$@"
    kernel[$name]=$(val "$key")
    echo "kernel: $(tr '\n' ' ' <<<"$OUT")"
}

run "goodput 1 conn, card->client" mbytes_per_s 19 --mode receive --connections 1 --duration "$SECS"
run "goodput 1 conn, client->card" mbytes_per_s 9 --mode send --connections 1 --duration "$SECS"
run "goodput $MANY conns, card->client" mbytes_per_s 19 --mode receive --connections "$MANY" --duration "$SECS"
run "connections/s (echo 1 byte, close)" per_s 7 --mode connect --connections 64 --bytes 1 --duration "$SECS"

echo
echo "== card (cmfw) vs kernel (Linux $(uname -r)), $(nproc) CPUs, ${SECS} s each"
printf '%-38s %12s %12s %8s %18s\n' measurement card kernel ratio "cmfw CPU"
for name in "goodput 1 conn, card->client" "goodput 1 conn, client->card" "goodput $MANY conns, card->client" \
    "connections/s (echo 1 byte, close)"; do
    unit=MB/s
    [[ $name == connections* ]] && unit=conn/s
    printf '%-38s %12s %12s %8s %18s\n' "$name" "${card[$name]:--} $unit" "${kernel[$name]:--}" \
        "$(awk -v c="${card[$name]:-0}" -v k="${kernel[$name]:-0}" 'BEGIN { if (k > 0) printf "%.2f", c / k; else print "-" }')" \
        "${card_cpu[$name]}"
done

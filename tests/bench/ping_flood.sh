#!/usr/bin/env bash
# Benchmark: ICMP echo flood against the card (cmfw in a cmemu emulator) and, in the same run, against a
# plain Linux kernel peer, from the same client namespace.
#
#   - card:   client ns --veth--> card ns (cmfw, libpcap)            ping -f -c N 198.18.0.2
#   - kernel: client ns --veth--> peer ns (an address on the veth)   ping -f -c N 198.18.1.2
#   - card, busy-polling: a second emulator whose cmfw runs with --busy-poll (it spins for that many
#     microseconds after each packet instead of sleeping; see EventLoop::set_busy_poll)
#
# Reports per peer: loss, ping's wall time, packets per second; for the card, cmfw's CPU time (utime +
# stime from /proc/PID/stat) per echo; for both, the whole machine's busy CPU time per echo (from
# /proc/stat, all processes: noisy when the machine does other work). The kernel's own CPU for the
# baseline cannot be attributed to a process, so the comparison is ping's wall time (and the machine
# figure). It prints figures and never fails on them; it fails only when the setup fails.
#
# Environment: CM_BENCH_COUNT (echo requests per run, default 20000), CM_BENCH_SIZE (ICMP payload bytes,
# default 56), CM_BENCH_DEADLINE (seconds per run, default 120), CM_BENCH_BUSY_POLL_US (the busy-polling
# card's window, default 200), CMEMU, CMFW (as for tools/cmemu).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/bench/bench_lib.sh
source "$HERE/bench_lib.sh"
CMEMU=${CMEMU:-$(cd "$HERE/../.." && pwd)/tools/cmemu}
COUNT=${CM_BENCH_COUNT:-20000}
SIZE=${CM_BENCH_SIZE:-56}
DEADLINE=${CM_BENCH_DEADLINE:-120}
BUSY_POLL_US=${CM_BENCH_BUSY_POLL_US:-200}
[[ $COUNT =~ ^[1-9][0-9]*$ ]] || { echo "CM_BENCH_COUNT must be a positive integer" >&2; exit 2; }
if [[ ! $SIZE =~ ^[0-9]+$ ]] || ((SIZE > 1472)); then echo "CM_BENCH_SIZE must be 0..1472" >&2; exit 2; fi
((EUID == 0)) || { echo "ping_flood: needs root (network namespaces, ping -f)" >&2; exit 1; }
if [[ -n ${CMFW-} ]]; then export CMFW; fi

EMU=bench-flood-$$
EMU_BP=bench-flood-bp-$$
HASH=$(printf '%s' "$EMU" | sha256sum | cut -c1-8)
PEER_NS=cm-$EMU-peer
PEER_IP=198.18.1.2

cleanup() {
    local rc=$?
    set +e
    "$CMEMU" down "$EMU" >/dev/null 2>&1
    "$CMEMU" down "$EMU_BP" >/dev/null 2>&1
    kernel_peer_down "$PEER_NS"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== setup"
"$CMEMU" up "$EMU" >/dev/null
status=$("$CMEMU" status "$EMU")
get() { sed -n "s/^$1=//p" <<<"$status"; }
CLIENT_NS=$(get client_ns)
CARD_IP=$(get card_ip)
CMFW_PID=$(get cmfw_pid)
echo "card:   $CARD_IP (cmfw pid $CMFW_PID, $(get fw))"
kernel_peer_up "$CLIENT_NS" "$PEER_NS" "$HASH"
echo "kernel: $PEER_IP (Linux $(uname -r) in namespace $PEER_NS)"
"$CMEMU" up "$EMU_BP" -- --busy-poll "$BUSY_POLL_US" >/dev/null
status_bp=$("$CMEMU" status "$EMU_BP")
BP_CLIENT_NS=$(sed -n 's/^client_ns=//p' <<<"$status_bp")
BP_CARD_IP=$(sed -n 's/^card_ip=//p' <<<"$status_bp")
BP_CMFW_PID=$(sed -n 's/^cmfw_pid=//p' <<<"$status_bp")
echo "card, --busy-poll $BUSY_POLL_US: $BP_CARD_IP (cmfw pid $BP_CMFW_PID, emulator $EMU_BP)"

now_ns() { date +%s%N; }

# flood TARGET: runs the flood; sets SENT RECEIVED LOSS WALL_S MACHINE_TICKS CMFW_TICKS.
flood() {
    local target=$1 out m0 m1 c0=0 c1=0 s0 s1 t0 t1
    # Warm-up: resolve ARP and touch the path, not counted.
    ip netns exec "$CLIENT_NS" ping -n -q -c 3 -i 0.2 -w 5 "$target" >/dev/null 2>&1 || true
    c0=$(cpu_ticks "$CMFW_PID")
    s0=$(cpu_ns "$CMFW_PID")
    m0=$(machine_busy_ticks)
    t0=$(now_ns)
    out=$(ip netns exec "$CLIENT_NS" ping -n -q -f -c "$COUNT" -s "$SIZE" -w "$DEADLINE" "$target" 2>&1) || true
    t1=$(now_ns)
    m1=$(machine_busy_ticks)
    c1=$(cpu_ticks "$CMFW_PID")
    s1=$(cpu_ns "$CMFW_PID")
    SENT=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' <<<"$out")
    RECEIVED=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' <<<"$out")
    LOSS=$(sed -n 's/.* \([0-9.]*\)% packet loss.*/\1/p' <<<"$out")
    SENT=${SENT:-0} RECEIVED=${RECEIVED:-0} LOSS=${LOSS:-?}
    WALL_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    MACHINE_TICKS=$((m1 - m0))
    CMFW_TICKS=$((c1 - c0))
    CMFW_NS=""
    if [[ -n $s0 && -n $s1 ]]; then CMFW_NS=$((s1 - s0)); fi
    RTT=$(sed -n 's|^rtt min/avg/max/mdev = \([^ ]*\) ms.*|\1|p' <<<"$out")
    if [[ -z $SENT || $SENT == 0 ]]; then
        echo "ping output was:" >&2
        echo "$out" >&2
    fi
}

per_echo_us() { # TICKS PACKETS
    awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { if (n > 0) printf "%.1f", t / hz / n * 1e6; else print "-" }'
}
rate() { # PACKETS SECONDS
    awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print "-" }'
}

echo "== cmfw idle (1 s)"
c0=$(cpu_ticks "$CMFW_PID")
sleep 1
c1=$(cpu_ticks "$CMFW_PID")
IDLE_MS=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.0f", t / hz * 1000 }')
echo "cmfw used ${IDLE_MS} ms of CPU in 1 s while idle"

echo "== flood: card"
flood "$CARD_IP"
C_SENT=$SENT C_RECV=$RECEIVED C_LOSS=$LOSS C_WALL=$WALL_S C_MACH=$MACHINE_TICKS C_FW=$CMFW_TICKS C_FW_NS=$CMFW_NS C_RTT=$RTT
pid_alive=yes
[[ -d /proc/$CMFW_PID ]] || pid_alive="NO (cmfw died)"
echo "done: $C_RECV/$C_SENT in ${C_WALL}s, cmfw still running: $pid_alive"

echo "== flood: kernel"
flood "$PEER_IP"
K_SENT=$SENT K_RECV=$RECEIVED K_LOSS=$LOSS K_WALL=$WALL_S K_MACH=$MACHINE_TICKS K_RTT=$RTT
echo "done: $K_RECV/$K_SENT in ${K_WALL}s"

echo "== flood: card, --busy-poll $BUSY_POLL_US"
MAIN_CLIENT_NS=$CLIENT_NS MAIN_CMFW_PID=$CMFW_PID
CLIENT_NS=$BP_CLIENT_NS CMFW_PID=$BP_CMFW_PID
flood "$BP_CARD_IP"
CLIENT_NS=$MAIN_CLIENT_NS CMFW_PID=$MAIN_CMFW_PID
B_SENT=$SENT B_RECV=$RECEIVED B_LOSS=$LOSS B_WALL=$WALL_S B_MACH=$MACHINE_TICKS B_FW=$CMFW_TICKS B_RTT=$RTT
echo "done: $B_RECV/$B_SENT in ${B_WALL}s"

echo "== counters (icmp)"
"$CMEMU" counters "$EMU" 2>/dev/null | grep -E '^icmp\.' || echo "(no icmp counters)"

echo
echo "== ping -f -c $COUNT -s $SIZE, $(nproc) CPUs, CLK_TCK $CLK_TCK"
printf '%-8s %8s %8s %7s %8s %8s %-22s %14s %16s\n' peer sent received loss% wall_s echo/s "rtt min/avg/max/mdev" \
    cmfw_cpu_us/echo machine_cpu_us/echo
printf '%-8s %8s %8s %7s %8s %8s %-22s %14s %16s\n' card "$C_SENT" "$C_RECV" "$C_LOSS" "$C_WALL" \
    "$(rate "$C_RECV" "$C_WALL")" "${C_RTT:--}" "$(per_echo_us "$C_FW" "$C_SENT")" "$(per_echo_us "$C_MACH" "$C_SENT")"
printf '%-8s %8s %8s %7s %8s %8s %-22s %14s %16s\n' card+bp "$B_SENT" "$B_RECV" "$B_LOSS" "$B_WALL" \
    "$(rate "$B_RECV" "$B_WALL")" "${B_RTT:--}" "$(per_echo_us "$B_FW" "$B_SENT")" "$(per_echo_us "$B_MACH" "$B_SENT")"
printf '%-8s %8s %8s %7s %8s %8s %-22s %14s %16s\n' kernel "$K_SENT" "$K_RECV" "$K_LOSS" "$K_WALL" \
    "$(rate "$K_RECV" "$K_WALL")" "${K_RTT:--}" - "$(per_echo_us "$K_MACH" "$K_SENT")"
awk -v c="$C_WALL" -v b="$B_WALL" -v k="$K_WALL" 'BEGIN { if (k > 0) printf "wall-time ratio card/kernel: %.2f; card with --busy-poll/kernel: %.2f\n", c / k, b / k }'
if [[ -n $C_FW_NS ]]; then
    awk -v ns="$C_FW_NS" -v n="$C_SENT" 'BEGIN { if (n > 0) printf "cmfw on-CPU time (schedstat): %.2f us/echo (%.1f ms in all)\n", ns / n / 1000, ns / 1e6 }'
fi
echo "cmfw idle CPU: ${IDLE_MS} ms/s"

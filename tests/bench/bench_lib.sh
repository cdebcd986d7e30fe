# shellcheck shell=bash
# Shared by the benchmarks (sourced): a Linux kernel peer beside the emulated card, and CPU accounting.
#
# The kernel peer is a third namespace joined to the emulator's client namespace by a second veth pair,
# so the client reaches the card and the kernel through identical links: the baseline of every benchmark.

# kernel_peer_up CLIENT_NS PEER_NS HASH: creates PEER_NS with 198.18.1.2/24 on a veth to CLIENT_NS (client
# end 198.18.1.1/24). Sets KERNEL_PEER_IP. The caller deletes PEER_NS (kernel_peer_down).
kernel_peer_up() {
    local client_ns=$1 peer_ns=$2 hash=$3
    local client_if=cmp$hash peer_if=cmq$hash
    ip netns add "$peer_ns"
    ip link add "$client_if" netns "$client_ns" type veth peer name "$peer_if" netns "$peer_ns"
    ip netns exec "$peer_ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1
    ip -n "$peer_ns" link set dev lo up
    ip -n "$peer_ns" address add 198.18.1.2/24 dev "$peer_if"
    ip -n "$peer_ns" link set dev "$peer_if" up
    ip -n "$client_ns" address add 198.18.1.1/24 dev "$client_if"
    ip -n "$client_ns" link set dev "$client_if" up
    KERNEL_PEER_IP=198.18.1.2
}

# kernel_peer_down PEER_NS: ends whatever runs in it and deletes it (idempotent).
kernel_peer_down() {
    if [[ -e /run/netns/$1 ]]; then
        ip netns pids "$1" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
        ip netns delete "$1"
    fi
}

CLK_TCK=$(getconf CLK_TCK)
# cpu_ticks PID: utime + stime of a process, in clock ticks.
cpu_ticks() {
    local s
    s=$(cat "/proc/$1/stat")
    s=${s##*) } # fields from 3 (state) on; utime and stime are fields 14 and 15
    read -ra f <<<"$s"
    echo $((f[11] + f[12]))
}
# cpu_ns PID: time on CPU in ns from /proc/PID/schedstat (finer than the ticks of /proc/PID/stat); "" if absent.
cpu_ns() {
    local ns _
    if read -r ns _ 2>/dev/null <"/proc/$1/schedstat"; then echo "$ns"; else echo ""; fi
}
# machine_busy_ticks: busy (non-idle, non-iowait) ticks of all CPUs since boot.
machine_busy_ticks() {
    local _cpu user nice system _idle _iowait irq softirq steal
    read -r _cpu user nice system _idle _iowait irq softirq steal _ </proc/stat
    echo $((user + nice + system + irq + softirq + steal))
}

#!/usr/bin/env bash
# cmemu down leaves nothing behind, even after cmfw was killed with SIGKILL: no namespace, no veth, no
# process, no state directory. down is idempotent, and up works again after down.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
itest_init ns_cleanup

# nothing_left NAME CLIENT_NS CARD_NS CLIENT_IF CARD_IF STATE_DIR: true when no trace of the emulator remains.
nothing_left() {
    local name=$1 cns=$2 kns=$3 cif=$4 kif=$5 dir=$6 ok=0 f
    if ip netns list | awk '{ print $1 }' | grep -qxF -e "$cns" -e "$kns"; then
        echo "#   left: namespace ($(ip netns list | grep -F "cm-$name-" | tr '\n' ' '))"
        ok=1
    fi
    if ip -o link show | grep -qF -e "$cif" -e "$kif"; then
        echo "#   left: veth in the root namespace"
        ok=1
    fi
    if ip -all netns exec ip -o link show 2>/dev/null | grep -qF -e "$cif" -e "$kif"; then
        echo "#   left: veth in some namespace"
        ok=1
    fi
    for f in /proc/[0-9]*/cmdline; do
        if tr '\0' ' ' 2>/dev/null <"$f" | grep -qF -- "$dir/ready"; then
            echo "#   left: process ${f//[^0-9]/}: $(tr '\0' ' ' 2>/dev/null <"$f")"
            ok=1
        fi
    done
    if [[ -e $dir ]]; then
        echo "#   left: $dir"
        ok=1
    fi
    return "$ok"
}

emu_up
cns=$(st client_ns) kns=$(st card_ns) cif=$(st client_if) kif=$(st card_if) dir=$(st state_dir)
pid=$(st cmfw_pid)
[[ $pid =~ ^[0-9]+$ ]] || fail "no cmfw_pid in cmemu status"
note "cmfw pid $pid; killing it with SIGKILL"
kill -KILL "$pid"
for _ in $(seq 50); do [[ -e /proc/$pid ]] && [[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) != Z ]] && sleep 0.1; done
rc=0
"$CMEMU" status "$EMU" >/dev/null || rc=$?
check "status after SIGKILL: degraded, exit 1 (got $rc, state=$(st state))" eq "$rc:$(st state)" 1:degraded

rc=0
"$CMEMU" down "$EMU" || rc=$?
check "down after SIGKILL: exit 0 (got $rc)" eq "$rc" 0
check "nothing left after down" nothing_left "$EMU" "$cns" "$kns" "$cif" "$kif" "$dir"

rc=0
"$CMEMU" down "$EMU" || rc=$?
check "down again: exit 0 (got $rc)" eq "$rc" 0
rc=0
"$CMEMU" down "never-existed-$$" || rc=$?
check "down on a name that never existed: exit 0 (got $rc)" eq "$rc" 0

# up after down, same name; then an ordinary down (cmfw gets SIGTERM and exits by itself).
rc=0
"$CMEMU" up "$EMU" >/dev/null || rc=$?
check "up after down: exit 0 (got $rc)" eq "$rc" 0
check "status after up again: up" eq "$(st state)" up
pid=$(st cmfw_pid)
rc=0
"$CMEMU" down "$EMU" || rc=$?
check "down of a running card: exit 0 (got $rc)" eq "$rc" 0
check "cmfw $pid has exited" test ! -e "/proc/$pid/cmdline" -o "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" = Z
check "nothing left after the second down" nothing_left "$EMU" "$cns" "$kns" "$cif" "$kif" "$dir"

#!/usr/bin/env bash
# A host application must not hang when the card goes away. Two libcm applications wait for a connection
# that never comes, one blocked inside cm_accept, one in an epoll loop of its own on cm_qp_fd; cmfw is then
# killed with SIGKILL (no clean shutdown, nothing written to the bus). Both must return -ENODEV within
# seconds, not hang.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
itest_init bus_card_death
[[ -x ${BUS_CLIENT-} ]] || fail "BUS_CLIENT not set or not executable"

emu_up --bus-size 8
export CM_DEVICE=$(st bus_socket)

"$BUS_CLIENT" wait-card --port 9101 >"$ITEST_TMP/blocking" 2>&1 &
blocking=$!
"$BUS_CLIENT" wait-card --port 9102 --epoll >"$ITEST_TMP/epoll" 2>&1 &
polling=$!
for f in blocking epoll; do
    for ((i = 0; i < 100; i++)); do
        grep -q waiting "$ITEST_TMP/$f" && break
        sleep 0.1
    done
    check "the $f application is waiting" grep -q waiting "$ITEST_TMP/$f"
done

kill -KILL "$(st cmfw_pid)"
killed_at=$(date +%s%N)

# finished_within PID SECONDS: waits for PID to exit; its exit status, or 124 if it had to be killed.
finished_within() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$1" 2>/dev/null || { wait "$1"; return $?; }
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    return 124
}
rc=0
finished_within "$blocking" 5 || rc=$?
check "blocking cm_accept returned -ENODEV ($(tail -n 1 "$ITEST_TMP/blocking"))" eq "$rc" 0
rc=0
finished_within "$polling" 5 || rc=$?
check "the epoll application saw cm_qp_fd readable and cm_qp_poll returned -ENODEV ($(tail -n 1 "$ITEST_TMP/epoll"))" eq "$rc" 0
note "both returned $((($(date +%s%N) - killed_at) / 1000000)) ms after the kill"

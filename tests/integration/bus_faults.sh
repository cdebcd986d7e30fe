#!/usr/bin/env bash
# The card survives its hosts. (1) Applications killed mid-transfer (one streaming, one that never reads and
# so holds slots and credit): their queue pairs, slots and connections come back, and an application
# transferring at the same time is unaffected. (2) A hostile process writes garbage descriptors and an
# impossible index into its queue pair: the card counts each kind, faults that queue pair only, and a
# concurrent application completes byte-exact.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
itest_init bus_faults
[[ -x ${BUS_CLIENT-} && -x ${BUS_HOSTILE-} ]] || fail "BUS_CLIENT / BUS_HOSTILE not set or not executable"

emu_up --fw-arg --bus-echo --bus-size 32
sock=$(st bus_socket)
export CM_DEVICE=$sock

# wait_line FILE TEXT: waits up to 10 s for TEXT in FILE.
wait_line() {
    local i
    for ((i = 0; i < 100; i++)); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# ---- 1. killed mid-transfer ----
"$BUS_CLIENT" stream >"$ITEST_TMP/stream" 2>&1 &
stream_pid=$!
"$BUS_CLIENT" hog >"$ITEST_TMP/hog" 2>&1 &
hog_pid=$!
"$BUS_CLIENT" echo --conns 2 --bytes 20000000 >"$ITEST_TMP/bystander" 2>&1 &
bystander_pid=$!
check "streaming application is transferring" wait_line "$ITEST_TMP/stream" streaming
check "hog application has filled its credit" wait_line "$ITEST_TMP/hog" hogging
counters
note "while running: qp_in_use $(counter bus.qp_in_use), conns_open $(counter bus.conns_open), c2h_lent $(counter bus.c2h_lent), h2c_held $(counter bus.h2c_held)"
check "the hog holds slots" ge "$(counter bus.h2c_held)" 1
kill -KILL "$stream_pid" "$hog_pid"
wait "$stream_pid" "$hog_pid" 2>/dev/null || true
rc=0
wait "$bystander_pid" || rc=$?
check "the concurrent application is unaffected ($(tail -n 1 "$ITEST_TMP/bystander"))" eq "$rc" 0
for _ in $(seq 50); do
    counters
    [[ $(counter bus.qp_in_use) == 0 ]] && break
    sleep 0.1
done
check "killed processes detected (peers_gone >= 2)" ge "$(counter bus.peers_gone)" 2
check "their connections reclaimed (conns_reclaimed >= 2)" ge "$(counter bus.conns_reclaimed)" 2
check "queue pairs, connections and slots all back" \
    eq "$(counter bus.qp_in_use):$(counter bus.conns_open):$(counter bus.c2h_lent):$(counter bus.h2c_held)" 0:0:0:0
check "a new application works after the kills" "$BUS_CLIENT" echo --conns 2 --bytes 500000

# ---- 2. hostile process ----
"$BUS_CLIENT" echo --conns 2 --bytes 20000000 >"$ITEST_TMP/bystander2" 2>&1 &
bystander_pid=$!
rc=0
"$BUS_HOSTILE" "" 3000 >"$ITEST_TMP/hostile" 2>&1 || rc=$?
sed 's/^/# /' "$ITEST_TMP/hostile"
check "hostile queue pair faulted on its impossible index" eq "$rc" 0
rc=0
wait "$bystander_pid" || rc=$?
check "the concurrent application is unaffected ($(tail -n 1 "$ITEST_TMP/bystander2"))" eq "$rc" 0
check "cmfw still up" "$CMEMU" status "$EMU"
counters
for c in bad_opcode bad_conn bad_slot bad_return no_credit qp_faults sq_index_faults; do
    check "counted: bus.$c = $(counter "bus.$c")" ge "$(counter "bus.$c")" 1
done
check "a new application works after the hostile one" "$BUS_CLIENT" dial --port 8090 --conns 2 --bytes 100000
counters
check "everything back after the hostile process left" \
    eq "$(counter bus.qp_in_use):$(counter bus.conns_open):$(counter bus.c2h_lent):$(counter bus.h2c_held)" 0:0:0:0

#!/usr/bin/env bash
# The bus end to end with two processes: cmfw (in its emulator, with the echo test service) and libcm
# applications attached to it through the attach socket. Byte-exact echo over several connections and
# queue pairs at once, connections dialled in by the card and accepted with the client's address (blocking
# and from epoll on cm_qp_fd), API error codes, the default device lookup, and cmemu's bus files.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
itest_init bus_echo
[[ -x ${BUS_CLIENT-} ]] || fail "BUS_CLIENT (the bus_client test program) not set or not executable"

emu_up --fw-arg --bus-echo --bus-size 32
mem=$(st bus_memory)
sock=$(st bus_socket)
check "status names the bus memory ($mem) and it exists" test -f "$mem"
check "status names the attach socket ($sock) and it is a socket" test -S "$sock"
check "bus memory is 32 MiB" eq "$(stat -c %s "$mem")" $((32 << 20))

out=$("$BUS_CLIENT" --device "$sock" info)
note "$out"
check "info: firmware ready (state=2)" grep -q 'state=2' <<<"$out"

# Several processes at once, each on its own queue pair.
pids=()
for i in 1 2 3; do
    "$BUS_CLIENT" --device "$sock" echo --conns 4 --bytes $((300000 * i)) --seed "$i" >"$ITEST_TMP/echo$i" 2>&1 &
    pids+=($!)
done
for i in 1 2 3; do
    rc=0
    wait "${pids[$((i - 1))]}" || rc=$?
    check "echo process $i: byte-exact ($(tail -n 1 "$ITEST_TMP/echo$i"))" eq "$rc" 0
done
check "echo, one large transfer (16 MB)" "$BUS_CLIENT" --device "$sock" echo --conns 1 --bytes 16000000
check "dial: the card opens connections, accepted with the client's address" \
    "$BUS_CLIENT" --device "$sock" dial --port 8080 --conns 8 --bytes 200000
check "dial from epoll with non-blocking calls" "$BUS_CLIENT" --device "$sock" dial --port 8081 --conns 8 --bytes 200000 --epoll
check "API error codes" "$BUS_CLIENT" --device "$sock" errors
# The default device: $CM_DEVICE, else the single emulator with a bus under $CM_RUN_DIR.
check "default device from CM_DEVICE" env CM_DEVICE="$sock" "$BUS_CLIENT" info

counters
check "no queue pair left attached" eq "$(counter bus.qp_in_use)" 0
check "no bus connection left open" eq "$(counter bus.conns_open)" 0
check "no slot left lent or held" eq "$(counter bus.c2h_lent):$(counter bus.h2c_held)" 0:0
check "nothing rejected" eq "$(counter bus.bad_slot):$(counter bus.bad_conn):$(counter bus.bad_return)" 0:0:0
note "bytes h2c $(counter bus.bytes_h2c), c2h $(counter bus.bytes_c2h), doorbells $(counter bus.doorbells), notifications $(counter bus.notifications)"

"$CMEMU" down "$EMU" >/dev/null
check "down removes the bus memory" test ! -e "$mem"

#!/usr/bin/env bash
# Benchmark: the host bus through one queue pair (libcm -> cmfw's echo service -> libcm) against a UNIX
# socket pair and TCP over loopback, in the same run, with memcpy bandwidth as the ceiling (bus_bench.cpp).
# cmfw runs in a cmemu emulator with --bus-echo and busy polling (CM_BENCH_BUS_BUSY_POLL_US, default 200;
# 0: it sleeps and hosts ring its doorbell), the application spins CM_BENCH_APP_BUSY_POLL_US (default 50)
# before sleeping. Prints figures; never fails on them. Needs root (cmemu).
# Environment: BUS_BENCH (the binary), CMEMU, CMFW, CM_BENCH_BUS_ARGS (more bus_bench arguments).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CMEMU=${CMEMU:-$(cd "$HERE/../.." && pwd)/tools/cmemu}
: "${BUS_BENCH:?BUS_BENCH must name the bus_bench binary}"
((EUID == 0)) || { echo "bus_bench: needs root (cmemu)" >&2; exit 1; }
if [[ -n ${CMFW-} ]]; then export CMFW; fi
EMU=bench-bus-$$
trap '"$CMEMU" down "$EMU" >/dev/null 2>&1 || true' EXIT
"$CMEMU" up "$EMU" --bus-size 128 --fw-arg --bus-echo --fw-arg --bus-slot-size --fw-arg 65536 \
    --fw-arg --busy-poll --fw-arg "${CM_BENCH_BUS_BUSY_POLL_US:-200}" >/dev/null
sock=$("$CMEMU" status "$EMU" | sed -n 's/^bus_socket=//p')
echo "cmfw: --bus-echo --bus-slot-size 65536 --busy-poll ${CM_BENCH_BUS_BUSY_POLL_US:-200}; $(nproc) CPUs"
# shellcheck disable=SC2086 # extra arguments are a list
"$BUS_BENCH" --device "$sock" --busy-poll "${CM_BENCH_APP_BUSY_POLL_US:-50}" ${CM_BENCH_BUS_ARGS-}
"$CMEMU" counters "$EMU" | grep -E '^bus\.(doorbells|notifications|events|bytes_c2h) '

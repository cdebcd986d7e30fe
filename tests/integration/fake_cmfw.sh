#!/usr/bin/env bash
# A stand-in for cmfw that speaks only its process contract, not the network: it writes its ready file
# (its pid), rewrites the counters file atomically on SIGUSR1, and on SIGTERM writes it a last time and
# exits 0. cmemu's lifecycle test (cmemu_lifecycle.sh) uses it, so cmemu can be tested without firmware.
#
# Extra switches to exercise cmemu's failure paths:
#   --fake-fail-start   print a message and exit 3 before becoming ready
#   --fake-never-ready  run, but never write the ready file
#   --fake-ignore-term  ignore SIGTERM (cmemu down must SIGKILL it)
set -euo pipefail

ready="" counters="" fail_start=0 never_ready=0 ignore_term=0
args=("$@")
while (($#)); do
    case $1 in
    --ready-file) ready=$2; shift ;;
    --counters-file) counters=$2; shift ;;
    --interface | --ip | --mac | --pcap-tap | --log-level | --config) shift ;;
    --fake-fail-start) fail_start=1 ;;
    --fake-never-ready) never_ready=1 ;;
    --fake-ignore-term) ignore_term=1 ;;
    *) ;;
    esac
    shift
done
[[ -n $ready && -n $counters ]] || { echo "fake_cmfw: --ready-file and --counters-file are required" >&2; exit 2; }
echo "fake_cmfw: started, pid $$, args: ${args[*]}"
if ((fail_start)); then
    echo "fake_cmfw: failing on purpose (--fake-fail-start)" >&2
    exit 3
fi

seq=0
write_counters() {
    seq=$((seq + 1))
    printf 'fake.dumps %d\nfake.pid %d\n' "$seq" "$$" >"$counters.tmp"
    mv -f -- "$counters.tmp" "$counters"
}
stop() {
    write_counters
    echo "fake_cmfw: SIGTERM, exiting"
    exit 0
}
trap write_counters USR1
if ((ignore_term)); then trap '' TERM; else trap stop TERM; fi

if ((!never_ready)); then
    printf '%d\n' "$$" >"$ready.tmp"
    mv -f -- "$ready.tmp" "$ready"
fi
while :; do
    sleep 1 &
    wait $! || true
done

#!/usr/bin/env bash
# The cm demo (`make demo`): brings an emulated card up in network namespaces, talks to it from the client
# side with arping and ping, shows its counters, and takes it down again. Needs root.
# Environment: CMFW (the firmware binary; default <repo>/build/firmware/app/cmfw), CMEMU, DEMO_PINGS (20).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CMEMU=${CMEMU:-$HERE/cmemu}
PINGS=${DEMO_PINGS:-20}
NAME=demo-$$
if [[ -n ${CMFW-} ]]; then export CMFW; fi

section() {
    printf '\n=== %s\n' "$*"
}

((EUID == 0)) || { echo "demo: needs root (it creates network namespaces)" >&2; exit 1; }
trap '"$CMEMU" down "$NAME" >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section "1. Bring the card up: cmemu up $NAME"
"$CMEMU" up "$NAME" >/dev/null
status=$("$CMEMU" status "$NAME")
get() { sed -n "s/^$1=//p" <<<"$status"; }
cat <<EOF
The firmware (cmfw, pid $(get cmfw_pid)) owns the card's port, veth $(get card_if) in namespace $(get card_ns).
The client side is veth $(get client_if) in namespace $(get client_ns), address $(get client_ip).
The card answers as $(get card_ip) / $(get card_mac); its log: $(get log)
EOF

section "2. cmemu status $NAME"
printf '%s\n' "$status"

section "3. ARP: arping -c 3 $(get card_ip) from the client"
"$CMEMU" exec "$NAME" client -- arping -c 3 -w 5 -I "$(get client_if)" "$(get card_ip)" || true

section "4. ICMP: ping -c $PINGS $(get card_ip) from the client"
out=$("$CMEMU" exec "$NAME" client -- ping -n -c "$PINGS" -i 0.2 -w $((PINGS / 5 + 10)) "$(get card_ip)" 2>&1) || true
printf '%s\n' "$out"
received=$(sed -n 's/.* \([0-9][0-9]*\) received.*/\1/p' <<<"$out")
received=${received:-0}

section "5. The card's counters (cmemu status $NAME --counters)"
"$CMEMU" counters "$NAME" || echo "(cmfw did not write its counters)"

section "6. Tear down: cmemu down $NAME"
"$CMEMU" down "$NAME"
trap - EXIT
echo "namespaces, veth pair, cmfw process and state directory removed"

section "Result"
if ((received < PINGS)); then
    echo "FAILED: $received of $PINGS echo replies"
    exit 1
fi
echo "OK: $received of $PINGS echo replies from the card"

#!/usr/bin/env bash
# cmemu's --netem impairs both directions of the link, --netem-to-card one only. Where the kernel has the
# netem qdisc, tc does it on the veths; where it has not, cmfw does it on its own port in user space
# (ImpairedLink, cmfw --impair-to-card/--impair-to-client). The client sees the same either way: delayed
# round trips, lost pings. CMEMU_NETEM_IMPL=tc|cmfw in the environment forces one implementation.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
itest_init netem

# between LOW VALUE HIGH: LOW <= VALUE <= HIGH, decimals allowed.
between() {
    awk -v lo="$1" -v v="$2" -v hi="$3" 'BEGIN { exit !(v >= lo && v <= hi) }'
}

# ping_five LABEL MIN_MS: 5 pings to the card, every one answered, none faster than MIN_MS.
ping_five() {
    local out got min
    out=$(in_client ping -n -c 5 -i 0.2 -w 10 "$(st card_ip)" 2>&1) || true
    tail -n 2 <<<"$out" | sed 's/^/#   /'
    got=$(ping_received "$out")
    min=$(ping_rtt_min "$out")
    check "$1ping -c 5: 5 replies (got $got)" eq "$got" 5
    check "$1minimum RTT >= $2 ms (got ${min:-none})" awk -v m="${min:-0}" -v want="$2" 'BEGIN { exit !(m >= want) }'
}

# near A B SLACK: |A - B| <= SLACK (integers).
near() {
    local d=$(($1 - $2))
    ((d < 0)) && d=$((-d))
    ((d <= $3))
}

# Both directions, 20 ms each: every round trip takes at least 40 ms.
emu_up --netem "delay 20ms"
impl=$(st netem_impl)
note "netem implementation: ${impl:-none}"
check "status: netem_impl is tc or cmfw (got '$impl')" grep -qxE 'tc|cmfw' <<<"$impl"
check "status: netem=delay 20ms" eq "$(st netem)" "delay 20ms"
client_qdiscs=$(in_client tc qdisc show dev "$(st client_if)" 2>/dev/null || true)
card_qdiscs=$("$CMEMU" exec "$EMU" card -- tc qdisc show dev "$(st card_if)" 2>/dev/null || true)
if [[ $impl == tc ]]; then
    check "netem qdisc on the client veth" grep -q netem <<<"$client_qdiscs"
    check "netem qdisc on the card veth" grep -q netem <<<"$card_qdiscs"
else
    check "no netem qdisc on either veth" test "${client_qdiscs/netem/}${card_qdiscs/netem/}" = "$client_qdiscs$card_qdiscs"
fi
ping_five "" 40
if [[ $impl == cmfw ]]; then
    counters
    check "impair.to_card.delayed >= 5 (got $(counter impair.to_card.delayed))" ge "$(counter impair.to_card.delayed)" 5
    check "impair.to_client.delayed >= 5 (got $(counter impair.to_client.delayed))" \
        ge "$(counter impair.to_client.delayed)" 5
    check "impair.to_card: nothing lost" eq "$(counter impair.to_card.lost)" 0
fi
"$CMEMU" down "$EMU" >/dev/null

# One direction, 30 ms towards the card only: at least 30 ms, and nothing done on the way back.
emu_up --netem-to-card "delay 30ms"
check "status: netem_to_card=delay 30ms, netem_to_client empty" \
    eq "$(st netem_to_card)|$(st netem_to_client)" "delay 30ms|"
card_qdiscs=$("$CMEMU" exec "$EMU" card -- tc qdisc show dev "$(st card_if)" 2>/dev/null || true)
check "no netem qdisc on the card veth" test "${card_qdiscs/netem/}" = "$card_qdiscs"
ping_five "one-way: " 30
if [[ $(st netem_impl) == cmfw ]]; then
    counters
    check "one-way: impair.to_card.delayed >= 5" ge "$(counter impair.to_card.delayed)" 5
    check "one-way: impair.to_client.delayed == 0" eq "$(counter impair.to_client.delayed)" 0
fi
"$CMEMU" down "$EMU" >/dev/null

# Loss both ways, 30% each: about 1 - 0.7^2 = 51% of pings go unanswered. The client's neighbour entry for
# the card is pinned, so a lost ARP exchange cannot stall the client.
emu_up --netem "loss 30% seed 7"
card_ip=$(st card_ip)
in_client ip neigh replace "$card_ip" lladdr "$(st card_mac)" dev "$(st client_if)" nud permanent
out=$(in_client ping -n -q -c 200 -i 0.01 -W 1 "$card_ip" 2>&1) || true
tail -n 2 <<<"$out" | sed 's/^/#   /'
got=$(ping_received "$out")
lost_pct=$(((200 - got) / 2))
check "loss 30% both ways: 35% to 65% of 200 pings unanswered (got ${lost_pct}%)" between 35 "$lost_pct" 65
if [[ $(st netem_impl) == cmfw ]]; then
    counters
    sed 's/^/#   /' "$ITEST_TMP/counters" | grep -E '^#   (impair|icmp)\.' || true
    to_card_in=$(counter impair.to_card.frames_in)
    to_card_lost=$(counter impair.to_card.lost)
    to_client_in=$(counter impair.to_client.frames_in)
    to_client_lost=$(counter impair.to_client.lost)
    requests=$(counter icmp.rx_echo_request)
    replies=$(counter icmp.tx_echo_reply)
    check "impair.to_card.frames_in >= 200 (got $to_card_in)" ge "$to_card_in" 200
    check "to card: 15% to 45% lost (got $to_card_lost of $to_card_in)" between 0.15 "$(awk -v l="$to_card_lost" -v n="$to_card_in" 'BEGIN { print l / n }')" 0.45
    check "to client: 15% to 45% lost (got $to_client_lost of $to_client_in)" between 0.15 "$(awk -v l="$to_client_lost" -v n="$to_client_in" 'BEGIN { print l / n }')" 0.45
    check "echo requests the card got ~ 200 - lost to card ($requests vs $((200 - to_card_lost)))" \
        near "$requests" $((200 - to_card_lost)) 5
    check "card replied to every request it got ($replies of $requests)" eq "$replies" "$requests"
    check "replies ping got ~ replies sent - lost to client ($got vs $((to_client_in - to_client_lost)))" \
        near "$got" $((to_client_in - to_client_lost)) 5
fi

#!/usr/bin/env bash
# A SYN flood of 60,000 SYN/s with spoofed sources (cm-synflood) against the card's echo port, while a real
# Linux client connects and completes a byte-exact transfer. The card answers the flood with SYN cookies,
# its memory stays bounded (cmfw's resident size hardly moves; the table holds at most the backlog).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/tcp_lib.sh"
itest_init syn_flood
[[ -x ${CM_SYNFLOOD-} ]] || fail "CM_SYNFLOOD not set or not executable"
RATE=${CM_SYN_FLOOD_RATE:-60000}
SECONDS_OF_FLOOD=${CM_SYN_FLOOD_SECONDS:-6}

# Spoofed sources are off-link (198.19.128.0/17): the card answers them through its gateway, the client
# namespace, whose kernel drops SYN-ACKs for addresses it does not own, as a real router's upstream would.
BACKLOG=1024
emu_up --test-services -- --gateway 198.18.0.1 --tcp-syn-backlog "$BACKLOG"
pid=$(st cmfw_pid)
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
rss_before=$(rss_kb "$pid")

in_client "$CM_SYNFLOOD" --interface "$(st client_if)" --dst-ip "$(st card_ip)" --dst-mac "$(st card_mac)" \
    --dst-port 7 --src-net 198.19.128.0/17 --rate "$RATE" --duration "$SECONDS_OF_FLOOD" >"$ITEST_TMP/flood" 2>&1 &
flood=$!
sleep 1
# The real client, in the middle of the flood.
transfer "during the flood, echo" echo "$(scaled 2000000)"
wait "$flood" || true
note "flood: $(tr '\n' ' ' <<<"$(cat "$ITEST_TMP/flood")")"
sent=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' "$ITEST_TMP/flood")
rate=$(sed -n 's/.* rate=\([0-9]*\).*/\1/p' "$ITEST_TMP/flood")
check "the flood reached at least 50,000 SYN/s (rate=$rate)" ge "${rate:-0}" 50000
rss_after=$(rss_kb "$pid")
counters
note "card: tcp.rx_syn=$(counter tcp.rx_syn) tcp.syn_backlog_overflow=$(counter tcp.syn_backlog_overflow)" \
    "tcp.syn_cookies_sent=$(counter tcp.syn_cookies_sent) tcp.syn_dropped=$(counter tcp.syn_dropped)" \
    "link.rx_kernel_dropped=$(counter link.rx_kernel_dropped) cmfw RSS ${rss_before} -> ${rss_after} kB"
# Every SYN is accounted for: processed (tcp.rx_syn) or dropped by the capture and counted
# (link.rx_kernel_dropped): a slower build (the sanitizer one) keeps up with less of the flood, and says so.
seen=$(counter tcp.rx_syn)
dropped=$(counter link.rx_kernel_dropped)
check "every SYN processed or counted as dropped (rx_syn $seen + kernel_dropped $dropped >= 90% of $sent)" \
    ge $((seen + dropped)) $((sent * 9 / 10))
check "every SYN beyond the backlog answered with a cookie (syn_cookies_sent >= rx_syn - backlog)" \
    ge "$(counter tcp.syn_cookies_sent)" $((seen - BACKLOG))
check "its memory stayed bounded (RSS grew by less than 16 MiB: ${rss_before} -> ${rss_after} kB)" \
    ge $((rss_before + 16384)) "$rss_after"
# What the flood leaves is at most the listener's backlog of half-open connections (they wait out their
# SYN-ACK retransmissions and go); everything beyond it was answered statelessly.
check "the table holds no more than the backlog (tcp.conn_active=$(counter tcp.conn_active) <= $BACKLOG)" \
    ge "$BACKLOG" "$(counter tcp.conn_active)"
check "no data buffers held (tcp.pool.chunks_in_use=$(counter tcp.pool.chunks_in_use))" eq "$(counter tcp.pool.chunks_in_use)" 0

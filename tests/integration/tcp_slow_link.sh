#!/usr/bin/env bash
# 1 MB each way at once (echo) to a slow client: netem "rate 1mbit" both ways (netem's 1000-frame queue:
# the card's congestion control must not drown it).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ITEST_DIR/tcp_lib.sh"
itest_init tcp_slow_link
emu_up --test-services --netem "rate 1mbit"
size=$(scaled 1000000)
transfer "rate 1mbit: echo" echo "$size" --timeout 200
wait_idle
show_counters '^tcp\.(retransmits|rto_timeouts|tx_data_bytes)$|^impair\..*(lost|dropped)'

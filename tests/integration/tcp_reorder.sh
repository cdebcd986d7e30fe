#!/usr/bin/env bash
# 10 MB each way at once (echo) over a jittery link that loses, reorders and duplicates:
# netem "delay 20ms 10ms loss 3% reorder 25% duplicate 1%" both ways.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ITEST_DIR/tcp_lib.sh"
itest_init tcp_reorder
emu_up --test-services --netem "delay 20ms 10ms loss 3% reorder 25% duplicate 1%"
size=$(scaled 10000000)
transfer "loss 3% reorder 25% duplicate 1%: echo" echo "$size" --timeout 400
wait_idle
check "reordered data was held for reassembly (tcp.rx_out_of_order > 0)" ge "$(counter tcp.rx_out_of_order)" 1
check "duplicates were recognised (tcp.rx_duplicate_segments + rx_partial_duplicates > 0)" \
    ge $(($(counter tcp.rx_duplicate_segments) + $(counter tcp.rx_partial_duplicates) + $(counter tcp.rx_out_of_window))) 1
show_counters '^tcp\.(retransmits|fast_retransmits|sack_retransmits|rto_timeouts|rx_out_of_order|rx_duplicate_segments|rx_paws_rejected)$|^impair\.'

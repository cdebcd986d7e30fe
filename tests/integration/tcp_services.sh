#!/usr/bin/env bash
# cmfw --test-services through cmemu up --test-services: echo (7), discard (9) and chargen (19) answer a
# real Linux client, chargen's two modes (a byte count, or a stream until the client leaves), a closed port
# is refused, and every tcp.* counter is visible.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ITEST_DIR/tcp_lib.sh"
itest_init tcp_services
emu_up --test-services
card_ip=$(st card_ip)

transfer "echo" echo 100000
transfer "chargen" chargen 100000
transfer "discard" discard 100000
transfer "chargen 0 bytes" chargen 0

# chargen without a count: the pattern flows until the client closes.
out=$(in_client python3 - "$card_ip" <<'PY' 2>&1
import socket, sys, time
s = socket.create_connection((sys.argv[1], 19), timeout=5)
got = b""
while len(got) < 300000:
    d = s.recv(65536)
    if not d:
        break
    got += d
s.close()
period = b"".join(bytes(32 + (l + c) % 95 for c in range(72)) + b"\r\n" for l in range(95))
want = (period * (len(got) // len(period) + 1))[:len(got)]
print("ok" if len(got) >= 300000 and got == want else "bad %d" % len(got))
PY
)
check "chargen with no count streams the pattern until the client leaves ($out)" eq "$out" ok

# A port nobody listens on: refused (the card answers RST).
out=$(in_client python3 -c "
import socket, sys
try:
    socket.create_connection(('$card_ip', 81), timeout=5)
    print('connected')
except ConnectionRefusedError:
    print('refused')
" 2>&1)
check "closed port: connection refused ($out)" eq "$out" refused

wait_idle
check "svc.discard_bytes = 100000" eq "$(counter svc.discard_bytes)" 100000
check "svc.echo_bytes = 100000" eq "$(counter svc.echo_bytes)" 100000
check "tcp.rx_no_connection >= 1" ge "$(counter tcp.rx_no_connection)" 1
check "tcp.passive_opens = 5" eq "$(counter tcp.passive_opens)" 5
for c in rx_bad_checksum syn_cookies_sent zero_window_probes rto_timeouts challenge_acks conn_time_wait; do
    counter "tcp.$c" >/dev/null
done
show_counters '^(tcp|svc)\.'

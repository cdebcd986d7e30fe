#!/usr/bin/env python3
"""Writes the seeds of fuzz_tcp_connections into tests/fuzz/corpus/tcp_connections/.

Each seed is a script in the target's record format (see the top of fuzz_tcp_connections.cpp): 12-byte
records, a segment record followed by its payload. Re-run after changing a seed:
python3 tests/fuzz/make_corpus_tcp_connections.py
"""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "tcp_connections")

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
MSS, WS, SACKP, TS, SACK1, SACK3 = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
PORT80, ECHO, CHARGEN, ACTIVE = 0, 1, 2, 3


def seg(flags, client=0, port=PORT80, seq=0, ack=0, win=65535, opts=0, payload=b"", raw_seq=False, raw_ack=False):
    mode = (1 if raw_seq else 0) | (2 if raw_ack else 0)
    rec = struct.pack(">BBBBhhHBB", 0, flags, client | port << 2, mode, seq, ack, win, opts, len(payload))
    return rec + payload


def wait(tens_ms, seconds=False):
    return struct.pack(">BBB9x", 1, tens_ms, 1 if seconds else 0)


def app(action, arg=0, conn=0):
    return struct.pack(">BBBB8x", 2, action, arg, conn)


def raw(segment, fix=True):
    return struct.pack(">BHB8x", 3, len(segment), 1 if fix else 0) + segment


def handshake(client=0, port=PORT80, opts=MSS | WS | SACKP | TS):
    return seg(SYN, client, port, opts=opts) + seg(ACK, client, port, opts=opts & TS)


SEEDS = {
    "handshake_data_close": handshake() + seg(ACK | PSH, payload=b"GET / HTTP/1.0\r\n\r\n", opts=TS)
    + app(0, 40) + wait(5) + seg(ACK, opts=TS) + app(2) + wait(2) + seg(ACK | FIN, opts=TS) + wait(150),
    "echo_session": handshake(1, ECHO) + seg(ACK | PSH, 1, ECHO, payload=b"hello echo" * 20)
    + wait(3) + seg(ACK, 1, ECHO) + seg(ACK | FIN, 1, ECHO) + wait(3) + seg(ACK, 1, ECHO),
    "chargen_count": handshake(2, CHARGEN) + seg(ACK | PSH, 2, CHARGEN, payload=b"5000\n") + wait(2)
    + seg(ACK, 2, CHARGEN, win=2000) + wait(50) + seg(ACK, 2, CHARGEN) + wait(10) + seg(ACK | FIN, 2, CHARGEN),
    "syn_flood_cookie": b"".join(seg(SYN, c, PORT80, seq=c * 7, opts=MSS | TS | WS | SACKP) for c in range(4))
    + seg(ACK, 3, PORT80, opts=TS) + seg(ACK | PSH, 3, PORT80, payload=b"after cookie"),
    "out_of_order_sack": handshake() + seg(ACK, seq=400, payload=b"B" * 200) + seg(ACK, seq=200, payload=b"A" * 200)
    + seg(ACK, payload=b"0" * 200) + seg(ACK, seq=200, payload=b"dup" * 10) + wait(5),
    "sender_loss_sack": handshake() + app(0, 200) + wait(1) + seg(ACK, ack=-20000, opts=SACK1 | TS)
    + seg(ACK, ack=-20000, opts=SACK3 | TS) + seg(ACK, ack=-20000, opts=SACK3 | TS) + wait(30) + seg(ACK),
    "zero_window_persist": handshake(opts=MSS) + seg(ACK, win=0) + app(0, 100) + wait(100) + seg(ACK, win=0)
    + wait(100) + seg(ACK, win=3000) + wait(10) + seg(ACK),
    "rst_variants": handshake() + seg(RST, seq=100) + seg(RST, seq=30000) + seg(SYN, seq=5) + seg(ACK, ack=-30000, payload=b"x")
    + seg(RST),
    "active_open": app(8, 1) + seg(SYN | ACK, 1, ACTIVE, opts=MSS | WS | TS) + app(0, 10, 0) + wait(2)
    + seg(ACK | FIN, 1, ACTIVE) + app(2, 0, 0) + wait(2) + seg(ACK, 1, ACTIVE),
    "keepalive_timer": handshake() + app(5) + app(6, 50) + wait(200) + wait(3, seconds=True),
    "raw_segments": raw(bytes.fromhex("9c401f9000000001000000005002ffff00000000")) + raw(b"\x00" * 19)
    + raw(bytes.fromhex("9c400050000000010000000060020000000000000204ffff"), fix=True),
    "simultaneous_close": handshake() + app(3) + wait(1) + seg(ACK | FIN, ack=-1) + seg(ACK) + wait(150),
}


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(SEEDS)} seeds to {OUT}")


if __name__ == "__main__":
    main()

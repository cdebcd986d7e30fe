#!/usr/bin/env python3
"""A real Linux TCP client for the card's test services (cmfw --test-services; docs/tcp.md).

Run inside the client namespace (cmemu exec NAME client -- python3 tcp_peer.py ...). Every transfer is
checked byte-exact with SHA-256; the last line printed is `key=value` pairs for the shell tests:

  echo HOST BYTES      send BYTES pseudo-random bytes to port 7 while reading the echo back (both
                       directions at once); checks sha256(received) == sha256(sent)
  chargen HOST BYTES   ask port 19 for BYTES pattern bytes ("BYTES\\n"), read to EOF; checks the pattern's
                       SHA-256 (RFC 864 lines, as firmware/tcp/test_services.hpp defines them)
  discard HOST BYTES   send BYTES to port 9, half-close, wait for the card's FIN; prints sha256 of what was sent
                       (the shell test compares the card's svc.discard_bytes)

Options: --rcvbuf N (SO_RCVBUF before connect), --read-pause-every N --read-pause SEC (a slow reader: sleep
SEC after every N bytes read), --read-chunk N, --timeout SEC (the whole transfer), --seed N.
Exit status 0 when the check passes, 1 when it fails, 2 on errors (connection refused, timeout).
"""
import argparse
import hashlib
import random
import socket
import sys
import threading
import time

LINE = 74
CHARS = 72


def chargen_period():
    """One full period of the pattern: 95 lines of 74 bytes."""
    out = bytearray()
    for line in range(95):
        out += bytes(32 + (line + c) % 95 for c in range(CHARS)) + b"\r\n"
    return bytes(out)


def chargen_stream_hash(n):
    period = chargen_period()
    h = hashlib.sha256()
    full, rest = divmod(n, len(period))
    for _ in range(full):
        h.update(period)
    h.update(period[:rest])
    return h.hexdigest()


def payload_blocks(total, seed, block=1 << 16):
    rng = random.Random(seed)
    sent = 0
    while sent < total:
        n = min(block, total - sent)
        yield rng.randbytes(n)
        sent += n


class Reader:
    """Reads to EOF into a running hash, optionally slowly."""

    def __init__(self, sock, args):
        self.sock = sock
        self.args = args
        self.hash = hashlib.sha256()
        self.count = 0
        self.error = None
        self.first = None

    def run(self):
        try:
            since_pause = 0
            while True:
                d = self.sock.recv(self.args.read_chunk)
                if not d:
                    return
                if self.first is None:
                    self.first = bytes(d[:80])
                self.hash.update(d)
                self.count += len(d)
                since_pause += len(d)
                if self.args.read_pause_every and since_pause >= self.args.read_pause_every:
                    since_pause = 0
                    time.sleep(self.args.read_pause)
        except OSError as e:
            self.error = e


def connect(args, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if args.rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    s.settimeout(args.timeout)
    s.connect((args.host, port))
    return s


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["echo", "chargen", "discard"])
    p.add_argument("host")
    p.add_argument("bytes", type=int)
    p.add_argument("--rcvbuf", type=int, default=0)
    p.add_argument("--read-chunk", type=int, default=1 << 16)
    p.add_argument("--read-pause-every", type=int, default=0)
    p.add_argument("--read-pause", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    start = time.monotonic()
    port = {"echo": 7, "discard": 9, "chargen": 19}[args.mode]
    try:
        s = connect(args, port)
    except OSError as e:
        print(f"result=error error={e!r}")
        return 2
    sent_hash = hashlib.sha256()
    reader = Reader(s, args)
    ok = False
    try:
        if args.mode == "chargen":
            s.sendall(b"%d\n" % args.bytes)
            reader.run()
            expected = chargen_stream_hash(args.bytes)
            ok = reader.error is None and reader.count == args.bytes and reader.hash.hexdigest() == expected
            sent_hash = None
        else:
            thread = threading.Thread(target=reader.run, daemon=True)
            thread.start()
            for block in payload_blocks(args.bytes, args.seed):
                s.sendall(block)
                sent_hash.update(block)
            s.shutdown(socket.SHUT_WR)
            thread.join(max(1.0, args.timeout - (time.monotonic() - start)))
            if thread.is_alive():
                reader.error = reader.error or TimeoutError("no EOF from the card")
            if args.mode == "echo":
                ok = (reader.error is None and reader.count == args.bytes
                      and reader.hash.hexdigest() == sent_hash.hexdigest())
            else:
                ok = reader.error is None and reader.count == 0
    except OSError as e:
        reader.error = reader.error or e
    finally:
        s.close()
    seconds = time.monotonic() - start
    mbit = (args.bytes * 8 / seconds / 1e6) if seconds > 0 else 0.0
    fields = {
        "result": "ok" if ok else "fail",
        "mode": args.mode,
        "bytes": args.bytes,
        "received": reader.count,
        "seconds": f"{seconds:.2f}",
        "mbit_s": f"{mbit:.1f}",
        "sha256_received": reader.hash.hexdigest(),
    }
    if sent_hash is not None:
        fields["sha256_sent"] = sent_hash.hexdigest()
    if reader.error is not None:
        fields["error"] = repr(reader.error).replace(" ", "_")
    print(" ".join(f"{k}={v}" for k, v in fields.items()))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

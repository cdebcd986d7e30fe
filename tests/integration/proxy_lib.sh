# shellcheck shell=bash
# Shared by the proxy_*.sh integration tests (sourced after lib.sh): the card's proxy (cmfw --proxy-http,
# --proxy-pass) in front of cm-httpd, which runs in the root namespace attached to the card's bus, with real
# clients (curl, wrk, ab, slowhttptest, python3, cm-httpload) in the client namespace.
#
#   proxy_init NAME            itest_init NAME, and background processes (servers, load) killed on exit
#   httpd_start [EMU] [args]   starts cm-httpd on the bus of EMU (default $EMU), waits for its ready file;
#                              sets HTTPD_PID and HTTPD_STATS (a stats file of its own per start)
#   httpd_stop [SIGNAL]        stops the last started cm-httpd (TERM: it writes its stats file)
#   httpd_stat KEY             a value from the running cm-httpd's statistics (SIGUSR1, fresh file)
#   pyclient CMD ARGS...       runs $PROXY_PY (raw-socket clients: pipelining, aborts, ...) in the client ns
#   delta NAME                 counter NAME of the last dump minus its value in the dump before (snap)
# Environment: CM_HTTPD, CM_HTTPLOAD (the tools of this build; default: build/tools/ of the source tree).

PROXY_SRC=$(cd "$ITEST_DIR/../.." && pwd)
: "${CM_HTTPD:=$PROXY_SRC/build/tools/cm-httpd}"
: "${CM_HTTPLOAD:=$PROXY_SRC/build/tools/cm-httpload}"
CARD=198.18.0.2
PROXY_BG=()      # pids of background processes to end on exit
HTTPD_PID=""
HTTPD_STATS=""
HTTPD_RUNS=0
HTTPD_ALL_STATS=()   # every stats file a cleanly stopped cm-httpd wrote

proxy_cleanup() {
    local rc=$? p i
    set +e
    for p in "${PROXY_BG[@]}"; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${PROXY_BG[@]}"; do
        for ((i = 0; i < 20; i++)); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null
    done
    (exit "$rc")
    itest_cleanup
}

proxy_init() {
    itest_init "$1"
    trap proxy_cleanup EXIT
    [[ -x $CM_HTTPD ]] || fail "CM_HTTPD (cm-httpd) not set or not executable: $CM_HTTPD"
    PROXY_PY=$ITEST_TMP/proxy_client.py
    write_proxy_client "$PROXY_PY"
    local hard
    hard=$(ulimit -Hn)
    [[ $hard == unlimited ]] && hard=1048576
    ulimit -n $((hard < 65536 ? hard : 65536)) || true
}

# bg_add PID: ended on exit.
bg_add() { PROXY_BG+=("$1"); }

# bg_forget PID: no longer ours to end (it was waited for).
bg_forget() {
    local i
    for i in "${!PROXY_BG[@]}"; do
        [[ ${PROXY_BG[$i]} != "$1" ]] || unset 'PROXY_BG[i]'
    done
}

# httpd_start [EMU] [cm-httpd args]: cm-httpd --backend cm on the card's bus port 80.
httpd_start() {
    local emu=$EMU
    if [[ -n ${1-} && ${1-} != -* ]]; then
        emu=$1
        shift
    fi
    HTTPD_RUNS=$((HTTPD_RUNS + 1))
    local ready=$ITEST_TMP/httpd$HTTPD_RUNS.ready i
    HTTPD_STATS=$ITEST_TMP/httpd$HTTPD_RUNS.stats
    "$CM_HTTPD" --backend cm --device "$(st bus_socket "$emu")" --port 80 --stats-file "$HTTPD_STATS" \
        --ready-file "$ready" --quiet "$@" >"$ITEST_TMP/httpd$HTTPD_RUNS.log" 2>&1 &
    HTTPD_PID=$!
    bg_add "$HTTPD_PID"
    for ((i = 0; i < 100; i++)); do
        [[ -s $ready ]] && return 0
        kill -0 "$HTTPD_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$ITEST_TMP/httpd$HTTPD_RUNS.log" >&2
    fail "cm-httpd did not become ready on $emu"
}

# httpd_stop [SIGNAL=TERM]: ends the current cm-httpd and waits for it; after TERM its stats are kept for
# the final checks (HTTPD_ALL_STATS).
httpd_stop() {
    local sig=${1:-TERM} pid=$HTTPD_PID
    [[ -n $pid ]] || return 0
    kill -"$sig" "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    bg_forget "$pid"
    HTTPD_PID=""
    if [[ $sig == TERM && -s $HTTPD_STATS ]]; then
        HTTPD_ALL_STATS+=("$HTTPD_STATS")
    fi
}

# httpd_stat KEY: from a fresh statistics dump of the running cm-httpd.
httpd_stat() {
    local i
    rm -f "$HTTPD_STATS"
    kill -USR1 "$HTTPD_PID"
    for ((i = 0; i < 50; i++)); do
        [[ -s $HTTPD_STATS ]] && break
        sleep 0.05
    done
    awk -v k="$1" '$1 == k { print $2; found = 1 } END { exit !found }' "$HTTPD_STATS" ||
        fail "cm-httpd statistics have no '$1'"
}

# snap: the last counter dump becomes the base of delta.
snap() { cp "$ITEST_TMP/counters" "$ITEST_TMP/counters.base"; }

delta() {
    local base
    base=$(awk -v k="$1" '$1 == k { print $2 }' "$ITEST_TMP/counters.base")
    echo $(($(counter "$1") - ${base:-0}))
}

# compare A OP B: OP one of == >= <= < >.
compare() {
    case $2 in
    '==') (($1 == $3)) ;;
    '>=') (($1 >= $3)) ;;
    '<=') (($1 <= $3)) ;;
    '<') (($1 < $3)) ;;
    '>') (($1 > $3)) ;;
    *) fail "compare: unknown operator '$2'" ;;
    esac
}

# wait_counter NAME OP VALUE [SECONDS=5]: fresh dumps until (( NAME OP VALUE )) holds; false at the end.
wait_counter() {
    local name=$1 op=$2 want=$3 secs=${4:-5} i v
    for ((i = 0; i < secs * 10; i++)); do
        counters
        v=$(counter "$name")
        if compare "$v" "$op" "$want"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

pyclient() { in_client python3 "$PROXY_PY" "$@"; }

# matches REGEX TEXT / not_matches REGEX TEXT: whether a line of TEXT matches the extended REGEX.
matches() { grep -qE -- "$1" <<<"$2"; }
not_matches() { ! grep -qE -- "$1" <<<"$2"; }

# kv KEY LINE: the value of KEY in a "k=v k=v" line.
kv() {
    tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -n 1
}

# pattern_sha N: sha256 of cm-httpd's /bytes/N body ("0123456789abcdef" repeated).
pattern_sha() {
    python3 -c 'import hashlib, sys
n = int(sys.argv[1]); h = hashlib.sha256(); block = b"0123456789abcdef" * 65536
while n > 0:
    h.update(block[:min(n, len(block))]); n -= len(block)
print(h.hexdigest())' "$1"
}

# sha_of_url URL [curl args]: sha256 of a body fetched by curl in the client namespace ("curl-failed-RC").
sha_of_url() {
    local url=$1 out
    shift
    out=$(in_client curl -sS --max-time 30 -o "$ITEST_TMP/body" "$@" "$url" 2>&1) || {
        echo "curl-failed: $out"
        return 0
    }
    sha256sum "$ITEST_TMP/body" | cut -d' ' -f1
}

# post_sha FILE [curl args]: the hash cm-httpd's POST /sha256 computed of FILE.
post_sha() {
    local file=$1
    shift
    in_client curl -sS --max-time 30 --data-binary "@$file" "$@" "http://$CARD/sha256" 2>&1 || true
}

write_proxy_client() {
    cat >"$1" <<'PY'
"""Raw-socket HTTP clients for the proxy tests. Prints one line "result=ok ..." or "result=fail ..."."""
import socket
import sys
import time

PATTERN = b"0123456789abcdef"


def pattern(n):
    return (PATTERN * (n // 16 + 1))[:n]


class Conn:
    def __init__(self, host, port=80, timeout=10.0):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def fill(self):
        data = self.s.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def response(self, head=False):
        """(status, headers dict (lower-case names), body) of the next response."""
        while b"\r\n\r\n" not in self.buf:
            self.fill()
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if head or status in (204, 304) or 100 <= status < 200:
            return status, headers, b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self.fill()
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self.fill()
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    return status, headers, body
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self.fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body


def done(ok, **kw):
    print("result=" + ("ok" if ok else "fail") + "".join(f" {k}={v}" for k, v in kw.items()))
    sys.exit(0)


def cmd_pipeline(host):
    """Four requests in one write; the responses come in order, the HEAD one without a body."""
    c = Conn(host)
    c.s.sendall(b"GET /bytes/10 HTTP/1.1\r\nHost: card\r\n\r\n"
                b"HEAD /bytes/5000 HTTP/1.1\r\nHost: card\r\n\r\n"
                b"GET /whoami HTTP/1.1\r\nHost: card\r\n\r\n"
                b"HEAD / HTTP/1.1\r\nHost: card\r\n\r\n")
    port = c.s.getsockname()[1]
    r1 = c.response()
    r2 = c.response(head=True)
    r3 = c.response()
    r4 = c.response(head=True)
    c.s.settimeout(0.3)
    try:
        c.fill()
    except (socket.timeout, EOFError):
        pass
    ok = (r1[0] == 200 and r1[2] == pattern(10) and r2[0] == 200 and r2[1].get("content-length") == "5000"
          and r3[0] == 200 and r3[2] == f"client=198.18.0.1:{port}\n".encode() and r4[0] == 200
          and c.buf == b"")
    done(ok, statuses=",".join(str(r[0]) for r in (r1, r2, r3, r4)), whoami=r3[2].decode().strip(),
         leftover=len(c.buf))


def cmd_keepalive(host, count):
    """count GET requests one after the other on one connection, bodies of 1000, 5000, 10000 and 20000 bytes
    in turn, each checked: the time they took."""
    c = Conn(host)
    sizes = [1000, 5000, 10000, 20000]
    start, slowest, bad, over30 = time.monotonic(), 0.0, 0, {}
    for i in range(int(count)):
        n = sizes[i % len(sizes)]
        t = time.monotonic()
        c.s.sendall(f"GET /bytes/{n} HTTP/1.1\r\nHost: card\r\n\r\n".encode())
        status, _, body = c.response()
        took = time.monotonic() - t
        slowest = max(slowest, took)
        if took > 0.030:
            over30[n] = over30.get(n, 0) + 1
        bad += status != 200 or body != pattern(n)
    done(bad == 0, seconds=f"{time.monotonic() - start:.3f}", slowest_ms=f"{slowest * 1000:.1f}", bad=bad,
         over_30ms=sum(over30.values()), over_30ms_by_size=",".join(f"{k}:{v}" for k, v in sorted(over30.items())) or "none")


def cmd_whoami(host):
    c = Conn(host)
    addr, port = c.s.getsockname()
    c.s.sendall(b"GET /whoami HTTP/1.1\r\nHost: card\r\n\r\n")
    status, headers, body = c.response()
    text = body.decode().strip()
    done(status == 200 and text == f"client={addr}:{port}", status=status, body=text, own=f"{addr}:{port}",
         source=headers.get("x-client-source", "?"))


def cmd_raw(host, kind):
    """garbage: a request no parser takes (400). stall: half a request, then nothing (408)."""
    c = Conn(host)
    if kind == "garbage":
        c.s.sendall(b"\x16\x03\x01 THIS IS NOT HTTP\x00\x01\r\n\r\n")
    else:
        c.s.sendall(b"GET /bytes/10 HTTP/1.1\r\nHost: card\r\nX-Half: ")
    start = time.monotonic()
    try:
        status, _, _ = c.response()
    except (EOFError, OSError) as e:
        done(False, error=type(e).__name__)
    done(True, status=status, seconds=f"{time.monotonic() - start:.2f}")


def cmd_hold(host, n, header=""):
    """n connections, one after the other, each asks GET / (with header, if given) and is kept open: what
    each got."""
    conns, results = [], []
    extra = (header + "\r\n").encode() if header else b""
    for _ in range(int(n)):
        try:
            c = Conn(host, timeout=3)
            conns.append(c)
            c.s.sendall(b"GET / HTTP/1.1\r\nHost: card\r\n" + extra + b"\r\n")
            results.append(str(c.response()[0]))
        except ConnectionResetError:
            results.append("reset")
        except ConnectionRefusedError:
            results.append("refused")
        except EOFError:
            results.append("eof")
        except OSError as e:
            results.append(type(e).__name__)
    done(True, results=",".join(results))


def cmd_abort(host, path, nbytes):
    """GET path, read nbytes of it, close with RST (SO_LINGER 0)."""
    import struct
    c = Conn(host)
    c.s.sendall(f"GET {path} HTTP/1.1\r\nHost: card\r\n\r\n".encode())
    got = len(c.buf)
    while got < int(nbytes):
        data = c.s.recv(65536)
        if not data:
            break
        got += len(data)
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.s.close()
    done(got >= int(nbytes), read=got)


def cmd_probe(host, seconds, interval="0.1", timeout="2"):
    """An open-loop probe: every `interval` s a new connection asks GET / (timeout `timeout` s), whatever
    the earlier ones are doing: the share answered 200 is the share of time the service was available."""
    import threading
    lat, fails, lock = [], [], threading.Lock()

    def one():
        start = time.monotonic()
        try:
            c = Conn(host, timeout=float(timeout))
            c.s.sendall(b"GET / HTTP/1.1\r\nHost: card\r\nConnection: close\r\n\r\n")
            status = c.response()[0]
            c.s.close()
            ok = status == 200
            what = str(status)
        except Exception as e:
            ok, what = False, type(e).__name__
        with lock:
            (lat if ok else fails).append(time.monotonic() - start if ok else what)

    threads, end = [], time.monotonic() + float(seconds)
    next_at = time.monotonic()
    while next_at < end:
        t = threading.Thread(target=one, daemon=True)
        t.start()
        threads.append(t)
        next_at += float(interval)
        time.sleep(max(0.0, next_at - time.monotonic()))
    for t in threads:
        t.join(float(timeout) + 1)
    lat.sort()
    pct = lambda p: f"{lat[min(len(lat) - 1, int(p * len(lat)))] * 1000:.1f}" if lat else "-"
    kinds = {}
    for f in fails:
        kinds[f] = kinds.get(f, 0) + 1
    done(True, sent=len(threads), answered=len(lat), failed=len(fails), p50_ms=pct(0.5), p99_ms=pct(0.99),
         max_ms=pct(1.0), fail_kinds=",".join(f"{k}:{v}" for k, v in sorted(kinds.items())) or "none")


if __name__ == "__main__":
    try:
        globals()["cmd_" + sys.argv[1]](*sys.argv[2:])
    except SystemExit:
        raise
    except Exception as e:  # any other failure is a result too
        done(False, error=f"{type(e).__name__}:{str(e).replace(' ', '_')}")
PY
}

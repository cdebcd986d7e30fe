// cm-httpload: an HTTP/1.1 load generator for tests and benchmarks of the card's proxy and of the host
// servers behind it. One thread, one epoll loop, non-blocking sockets: one process drives 10,000+
// connections. Two kinds of clients run at once:
//
//   slow  --slow N clients that behave like the clients the card exists to absorb: each sends its request
//         (headers and, with --method POST, the body) in pieces of --slow-chunk bytes with --slow-pause ms
//         (+-20 %) between pieces, then reads the response through a small receive buffer (SO_RCVBUF
//         --slow-rcvbuf, set before connect) at most --slow-read-bytes every --slow-read-pause ms. After a
//         complete response it sends the next request on the same connection. Their connects are spread
//         over --ramp seconds so the SYN burst does not overflow the server's backlog.
//   fast  --fast M closed-loop keep-alive clients: the next request goes out as soon as the response is
//         complete (like wrk -c M).
//
// Responses are parsed with llhttp (status line, headers, Content-Length, chunked or close-delimited
// bodies). A response is ok when its status is 2xx. A server may answer before it has the whole request
// (nginx's `return` does not wait for a POST body): the response is counted then, the rest of the request
// still goes out, and the next request follows on the same connection. A client whose connection fails or
// is closed reconnects after --reconnect-pause ms (doubled after each consecutive connect failure, up to
// 32x), so a dead server costs a few connects per client per second, not a spin.
//
// Timeouts (--timeout ms): a fast request fails when it has not completed within the timeout of its start;
// a slow request, which its own pauses stretch out, fails when the server has made no progress (no byte
// accepted or delivered) for the timeout. A connect counts as a connect error after the same time.
//
// Output: a human summary on stdout and, with --report FILE, "key value" lines (docs/load.md lists them).
// Only what finishes inside the measurement window [--warmup, --duration) is counted. The exit status is 0
// when no request failed and no connect failed in the window, 1 otherwise, 2 for bad arguments.
#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <llhttp.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Millis = std::chrono::duration<double, std::milli>;
constexpr TimePoint never = TimePoint::max();
constexpr std::uint32_t no_index = UINT32_MAX;
constexpr std::size_t recv_buffer_size = 65536;
constexpr std::size_t max_reads_per_event = 16;  // x 64 KiB: bounded work per event, as in cm-tcpload
constexpr unsigned max_backoff_shift = 5;         // reconnect pause at most 32x --reconnect-pause

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_stop_signal(int) { g_stop = 1; }

struct Options {
    std::string target;
    std::string host;
    double duration = 0;
    double warmup = 0;
    std::size_t slow = 0;
    std::size_t fast = 0;
    std::size_t slow_chunk = 10;
    double slow_pause_ms = 500;
    int slow_rcvbuf = 4096;
    std::size_t slow_read_bytes = 512;
    double slow_read_pause_ms = 200;
    double ramp = 2;
    std::string path = "/";
    std::string slow_path;
    std::string method = "GET";
    std::size_t body_size = 0;
    std::string bind_ip;
    std::string report;
    double timeout_ms = 30000;
    double reconnect_pause_ms = 100;
    bool progress = false;
    std::uint64_t seed = 1;
};

enum class Kind : std::uint8_t { slow, fast };

// idle: no socket (waiting for its first connect or a reconnect). connecting: connect() in progress.
// sending: a request is being written (for a slow client, including its pauses). receiving: the whole
// request is written and the response is being read. Every connected client has a request in flight.
enum class State : std::uint8_t { idle, connecting, sending, receiving };

/// Latencies in microseconds, log-linear buckets (64 per power of two: values within 1.6 %), exact max.
class Histogram {
public:
    void add(std::uint64_t us)
    {
        ++_counts[index(us)];
        ++_total;
        _max = std::max(_max, us);
    }

    std::uint64_t percentile(double p) const
    {
        if (_total == 0) {
            return 0;
        }
        const auto target = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(p / 100.0 * static_cast<double>(_total) + 0.5));
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < _counts.size(); ++i) {
            seen += _counts[i];
            if (seen >= target) {
                return std::min(value(i), _max);
            }
        }
        return _max;
    }

    std::uint64_t max() const { return _max; }

private:
    static constexpr unsigned linear_below_bits = 7;  // values below 128 us have a bucket each
    static constexpr unsigned sub_bits = 6;           // 64 buckets per power of two above
    static constexpr std::size_t linear = std::size_t{1} << linear_below_bits;
    static constexpr std::size_t per_power = std::size_t{1} << sub_bits;

    static std::size_t index(std::uint64_t v)
    {
        if (v < linear) {
            return static_cast<std::size_t>(v);
        }
        const auto e = static_cast<unsigned>(std::bit_width(v) - 1);
        return linear + (e - linear_below_bits) * per_power + static_cast<std::size_t>((v >> (e - sub_bits)) - per_power);
    }

    static std::uint64_t value(std::size_t i)
    {
        if (i < linear) {
            return i;
        }
        const std::size_t j = i - linear;
        const unsigned e = static_cast<unsigned>(j / per_power) + linear_below_bits;
        const std::uint64_t width = std::uint64_t{1} << (e - sub_bits);
        return static_cast<std::uint64_t>(j % per_power + per_power) * width + width / 2;
    }

    std::vector<std::uint64_t> _counts = std::vector<std::uint64_t>(linear + (64 - linear_below_bits) * per_power);
    std::uint64_t _total = 0;
    std::uint64_t _max = 0;
};

/// What one class of clients did inside the measurement window (open/open_peak: over the whole run).
struct Stats {
    std::uint64_t ok = 0;
    std::uint64_t failed = 0;  // non-2xx + resets + timeouts + short + protocol + other errors
    std::uint64_t unfinished = 0;
    std::uint64_t connect_errors = 0;
    std::uint64_t resets = 0;
    std::uint64_t timeouts = 0;
    std::uint64_t short_responses = 0;
    std::uint64_t protocol_errors = 0;
    std::uint64_t other_errors = 0;
    std::uint64_t status_3xx = 0;
    std::uint64_t status_4xx = 0;
    std::uint64_t status_5xx = 0;
    std::uint64_t status_other = 0;
    std::uint64_t bytes = 0;
    std::uint64_t bytes_sent = 0;
    std::size_t open = 0;
    std::size_t open_peak = 0;
    Histogram latency;
    std::map<std::string, std::uint64_t> connect_error_kinds;  // for the human summary
};

struct Conn {
    int fd = -1;
    Kind kind = Kind::fast;
    State state = State::idle;
    std::uint32_t generation = 0;  // bumped per socket: epoll events of a closed socket are recognised
    std::uint32_t interest = 0;    // the epoll events registered for fd
    bool send_blocked = false;     // the last send hit EAGAIN: wait for EPOLLOUT
    bool read_paused = false;      // slow: EPOLLIN taken off until read_ok_at (the read budget is spent)
    bool keep_alive = false;
    bool response_done = false;
    bool answered = false;  // the response came before the whole request was sent (e.g. a POST body)
    unsigned connect_failures = 0;  // consecutive: the reconnect pause backs off
    int status = 0;
    std::size_t sent = 0;
    std::size_t piece_end = 0;
    TimePoint connect_at = never;
    TimePoint piece_at = never;
    TimePoint read_ok_at{};
    TimePoint request_start{};
    // The one pending wake-up of this client in the timer heap (entries with another seq are stale).
    TimePoint wake_at = never;
    std::uint32_t timer_seq = 0;
    // The timeout list: every deadline is "now + --timeout" when set, so appending keeps it sorted.
    TimePoint deadline = never;
    std::uint32_t prev = no_index;
    std::uint32_t next = no_index;
    llhttp_t parser{};
};

struct TimerEntry {
    TimePoint when;
    std::uint32_t index;
    std::uint32_t seq;
    bool operator>(const TimerEntry& o) const { return when > o.when; }
};

int on_headers_complete(llhttp_t* p)
{
    static_cast<Conn*>(p->data)->status = llhttp_get_status_code(p);
    return 0;
}

int on_message_complete(llhttp_t* p)
{
    auto* c = static_cast<Conn*>(p->data);
    if (c->status >= 100 && c->status < 200 && c->status != 101) {
        return 0;  // informational: the final response follows
    }
    c->keep_alive = llhttp_should_keep_alive(p) != 0;
    c->response_done = true;
    return HPE_PAUSED;  // stop at the message boundary
}

std::string errno_name(int err)
{
    switch (err) {
    case ECONNREFUSED: return "refused";
    case ECONNRESET: return "reset";
    case ETIMEDOUT: return "timeout";
    case EADDRNOTAVAIL: return "no_local_address";
    case EMFILE:
    case ENFILE: return "no_descriptors";
    case ENETUNREACH:
    case EHOSTUNREACH: return "unreachable";
    default: return fmt::format("errno_{}", err);
    }
}

class Load {
public:
    explicit Load(Options o) : _o(std::move(o)), _rng(_o.seed) {}

    int run()
    {
        if (!parse_target()) {
            return 2;
        }
        build_requests();
        raise_fd_limit();
        _ep = epoll_create1(EPOLL_CLOEXEC);
        if (_ep < 0) {
            fmt::print(stderr, "cm-httpload: epoll_create1: {}\n", std::strerror(errno));
            return 2;
        }
        llhttp_settings_init(&_settings);
        _settings.on_headers_complete = on_headers_complete;
        _settings.on_message_complete = on_message_complete;

        _conns.resize(_o.slow + _o.fast);
        for (std::size_t i = 0; i < _conns.size(); ++i) {
            _conns[i].kind = i < _o.slow ? Kind::slow : Kind::fast;
            _conns[i].parser.data = &_conns[i];
        }
        _start = Clock::now();
        _now = _start;
        _measure_start = _start + to_duration(_o.warmup * 1000);
        _end = _start + to_duration(_o.duration * 1000);
        for (std::size_t i = 0; i < _o.slow; ++i) {
            Conn& c = _conns[i];
            c.connect_at = _start + to_duration(_o.ramp * 1000 * static_cast<double>(i) / static_cast<double>(_o.slow));
            update(static_cast<std::uint32_t>(i));
        }
        for (std::size_t i = _o.slow; i < _conns.size(); ++i) {
            open(static_cast<std::uint32_t>(i));
        }
        loop();
        finish();
        return _stats[0].failed + _stats[1].failed + _stats[0].connect_errors + _stats[1].connect_errors == 0 ? 0 : 1;
    }

private:
    static Clock::duration to_duration(double ms)
    {
        return std::chrono::duration_cast<Clock::duration>(Millis(ms));
    }

    Stats& stats(const Conn& c) { return _stats[c.kind == Kind::slow ? 0 : 1]; }
    bool counting() const { return _now >= _measure_start && _now < _end; }
    Clock::duration jitter(double ms) { return to_duration(ms * std::uniform_real_distribution<double>(0.8, 1.2)(_rng)); }

    bool parse_target()
    {
        const auto colon = _o.target.rfind(':');
        int port = 0;
        if (colon != std::string::npos) {
            try {
                port = std::stoi(_o.target.substr(colon + 1));
            } catch (const std::exception&) {
                port = 0;
            }
        }
        if (colon == std::string::npos || port <= 0 || port > 65535) {
            fmt::print(stderr, "cm-httpload: --target wants IP:PORT\n");
            return false;
        }
        _addr.sin_family = AF_INET;
        _addr.sin_port = htons(static_cast<std::uint16_t>(port));
        if (inet_pton(AF_INET, _o.target.substr(0, colon).c_str(), &_addr.sin_addr) != 1) {
            fmt::print(stderr, "cm-httpload: bad address in --target\n");
            return false;
        }
        if (!_o.bind_ip.empty()) {
            _bind.sin_family = AF_INET;
            if (inet_pton(AF_INET, _o.bind_ip.c_str(), &_bind.sin_addr) != 1) {
                fmt::print(stderr, "cm-httpload: bad --bind-ip\n");
                return false;
            }
        }
        return true;
    }

    void build_requests()
    {
        const std::string host = _o.host.empty() ? _o.target : _o.host;
        std::string body;
        std::string body_headers;
        if (_o.method == "POST") {
            body.resize(_o.body_size);
            for (std::size_t i = 0; i < body.size(); ++i) {
                body[i] = static_cast<char>('a' + i % 26);
            }
            body_headers = fmt::format("Content-Type: application/octet-stream\r\nContent-Length: {}\r\n", _o.body_size);
        }
        const auto request = [&](const std::string& path) {
            return fmt::format("{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: cm-httpload\r\n{}\r\n{}", _o.method, path, host, body_headers,
                               body);
        };
        _request[0] = request(_o.slow_path.empty() ? _o.path : _o.slow_path);
        _request[1] = request(_o.path);
    }

    void raise_fd_limit() const
    {
        const rlim_t needed = _o.slow + _o.fast + 64;
        rlimit rl{};
        if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
            return;
        }
        if (rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur < needed) {
            fmt::print(stderr,
                       "cm-httpload: RLIMIT_NOFILE is {} (hard limit), below the {} descriptors {} clients need: the rest "
                       "will fail to connect (raise the hard limit: ulimit -Hn, or as root)\n",
                       rl.rlim_cur, needed, _o.slow + _o.fast);
        }
    }

    // ---- the loop: timers, timeouts, progress, epoll -------------------------------------------------

    void loop()
    {
        std::vector<epoll_event> events(1024);
        TimePoint next_progress = _start + std::chrono::seconds(1);
        while (g_stop == 0) {
            _now = Clock::now();
            if (_now >= _end) {
                break;
            }
            run_timers();
            expire_timeouts();
            if (_o.progress && _now >= next_progress) {
                print_progress();
                next_progress += std::chrono::seconds(1);
            }
            TimePoint next = std::min(_end, _o.progress ? next_progress : never);
            if (!_timers.empty()) {
                next = std::min(next, _timers.front().when);
            }
            if (_timeout_head != no_index) {
                next = std::min(next, _conns[_timeout_head].deadline);
            }
            const auto wait = std::chrono::duration_cast<std::chrono::microseconds>(next - _now).count();
            const int wait_ms = static_cast<int>(std::clamp<std::int64_t>((wait + 999) / 1000, 0, 1000));
            const int n = epoll_wait(_ep, events.data(), static_cast<int>(events.size()), wait_ms);
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                fmt::print(stderr, "cm-httpload: epoll_wait: {}\n", std::strerror(errno));
                break;
            }
            _now = Clock::now();
            for (int k = 0; k < n; ++k) {
                const epoll_event& ev = events[static_cast<std::size_t>(k)];
                handle(static_cast<std::uint32_t>(ev.data.u64), static_cast<std::uint32_t>(ev.data.u64 >> 32), ev.events);
            }
        }
        _now = std::min(Clock::now(), _end);
    }

    void run_timers()
    {
        while (!_timers.empty() && _timers.front().when <= _now) {
            std::pop_heap(_timers.begin(), _timers.end(), std::greater<>{});
            const TimerEntry t = _timers.back();
            _timers.pop_back();
            Conn& c = _conns[t.index];
            if (t.seq != c.timer_seq) {
                continue;  // replaced or cancelled
            }
            c.wake_at = never;
            on_wake(t.index);
        }
    }

    void expire_timeouts()
    {
        while (_timeout_head != no_index && _conns[_timeout_head].deadline <= _now) {
            const std::uint32_t i = _timeout_head;
            Conn& c = _conns[i];
            if (c.state == State::connecting) {
                connect_failed(i, ETIMEDOUT);
            } else {
                request_failed(i, &Stats::timeouts);
            }
        }
    }

    void print_progress()
    {
        fmt::print(stderr, "cm-httpload: {:.0f}s open slow {} fast {} | ok slow {} fast {} | failed slow {} fast {} | connect errors {}\n",
                   std::chrono::duration<double>(_now - _start).count(), _stats[0].open, _stats[1].open, _stats[0].ok, _stats[1].ok,
                   _stats[0].failed, _stats[1].failed, _stats[0].connect_errors + _stats[1].connect_errors);
    }

    // ---- per-client scheduling: one wake-up in the heap, the interest set in epoll ------------------

    void schedule(std::uint32_t i, TimePoint when)
    {
        Conn& c = _conns[i];
        if (when == c.wake_at) {
            return;
        }
        c.wake_at = when;
        ++c.timer_seq;
        if (when != never) {
            _timers.push_back(TimerEntry{when, i, c.timer_seq});
            std::push_heap(_timers.begin(), _timers.end(), std::greater<>{});
        }
    }

    /// Brings epoll interest and the wake-up time in line with the client's state. Called at the end of
    /// every entry point (event, wake-up, open).
    void update(std::uint32_t i)
    {
        Conn& c = _conns[i];
        if (c.fd < 0) {
            schedule(i, c.state == State::idle ? c.connect_at : never);
            return;
        }
        std::uint32_t want = 0;
        TimePoint wake = never;
        if (c.state == State::connecting) {
            want = EPOLLOUT;
        } else {
            if (c.send_blocked) {
                want |= EPOLLOUT;
            } else if (c.kind == Kind::slow && c.state == State::sending) {
                wake = c.piece_at;
            }
            if (c.read_paused) {
                wake = std::min(wake, c.read_ok_at);
            } else {
                want |= EPOLLIN;
            }
        }
        if (want != c.interest) {
            epoll_event ev{};
            ev.events = want;
            ev.data.u64 = (std::uint64_t{c.generation} << 32) | i;
            epoll_ctl(_ep, EPOLL_CTL_MOD, c.fd, &ev);
            c.interest = want;
        }
        schedule(i, wake);
    }

    void timeout_remove(std::uint32_t i)
    {
        Conn& c = _conns[i];
        if (c.deadline == never) {
            return;
        }
        (c.prev == no_index ? _timeout_head : _conns[c.prev].next) = c.next;
        (c.next == no_index ? _timeout_tail : _conns[c.next].prev) = c.prev;
        c.prev = c.next = no_index;
        c.deadline = never;
    }

    /// (Re)starts the client's timeout at now + --timeout: it goes to the tail of the sorted list.
    void timeout_restart(std::uint32_t i)
    {
        timeout_remove(i);
        Conn& c = _conns[i];
        c.deadline = _now + _timeout;
        c.prev = _timeout_tail;
        (_timeout_tail == no_index ? _timeout_head : _conns[_timeout_tail].next) = i;
        _timeout_tail = i;
    }

    // ---- connection life ---------------------------------------------------------------------------

    void open(std::uint32_t i)
    {
        Conn& c = _conns[i];
        c.state = State::connecting;
        c.interest = 0;
        c.send_blocked = false;
        c.read_paused = false;
        c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c.fd < 0) {
            connect_failed(i, errno);
            return;
        }
        ++c.generation;
        const int one = 1;
        setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (c.kind == Kind::slow && _o.slow_rcvbuf > 0) {
            // Before connect: the window scale offered in the SYN follows from it.
            setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &_o.slow_rcvbuf, sizeof _o.slow_rcvbuf);
        }
        if (!_o.bind_ip.empty()) {
            // The port is chosen at connect, per destination, so 4-tuples rather than ports run out.
            setsockopt(c.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            if (::bind(c.fd, reinterpret_cast<const sockaddr*>(&_bind), sizeof _bind) != 0) {
                connect_failed(i, errno);
                return;
            }
        }
        if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&_addr), sizeof _addr) != 0 && errno != EINPROGRESS) {
            connect_failed(i, errno);
            return;
        }
        epoll_event ev{};
        ev.events = EPOLLOUT;
        ev.data.u64 = (std::uint64_t{c.generation} << 32) | i;
        if (epoll_ctl(_ep, EPOLL_CTL_ADD, c.fd, &ev) != 0) {
            connect_failed(i, errno);
            return;
        }
        c.interest = EPOLLOUT;
        timeout_restart(i);
        update(i);
    }

    /// Closes the socket (if any) and schedules the next connect at `reconnect_at`.
    void drop(std::uint32_t i, TimePoint reconnect_at)
    {
        Conn& c = _conns[i];
        timeout_remove(i);
        if (c.fd >= 0) {
            ::close(c.fd);
            c.fd = -1;
        }
        if (c.state == State::sending || c.state == State::receiving) {
            --stats(c).open;
        }
        c.state = State::idle;
        c.connect_at = reconnect_at;
        update(i);
    }

    TimePoint reconnect_time(const Conn& c)
    {
        return _now + jitter(_o.reconnect_pause_ms * static_cast<double>(1u << std::min(c.connect_failures, max_backoff_shift)));
    }

    void connect_failed(std::uint32_t i, int err)
    {
        Conn& c = _conns[i];
        if (counting()) {
            ++stats(c).connect_errors;
            ++stats(c).connect_error_kinds[errno_name(err)];
        }
        const TimePoint again = reconnect_time(c);
        ++c.connect_failures;
        drop(i, again);
    }

    void request_failed(std::uint32_t i, std::uint64_t Stats::*what)
    {
        Conn& c = _conns[i];
        if (counting()) {
            ++(stats(c).*what);
            ++stats(c).failed;
        }
        drop(i, reconnect_time(c));
    }

    void io_failed(std::uint32_t i, int err)
    {
        request_failed(i, err == ECONNRESET || err == EPIPE ? &Stats::resets : err == ETIMEDOUT ? &Stats::timeouts : &Stats::other_errors);
    }

    void on_connected(std::uint32_t i)
    {
        Conn& c = _conns[i];
        c.connect_failures = 0;
        Stats& s = stats(c);
        ++s.open;
        s.open_peak = std::max(s.open_peak, s.open);
        start_request(i);
    }

    void start_request(std::uint32_t i)
    {
        Conn& c = _conns[i];
        llhttp_init(&c.parser, HTTP_RESPONSE, &_settings);
        c.parser.data = &c;
        c.status = 0;
        c.response_done = false;
        c.answered = false;
        c.keep_alive = false;
        c.sent = 0;
        c.piece_end = 0;
        c.state = State::sending;
        c.request_start = Clock::now();
        timeout_restart(i);
        if (c.kind == Kind::fast) {
            send_fast(i);
        } else {
            send_piece(i);
        }
    }

    /// Fast clients: the whole request at once (the rest on EPOLLOUT).
    void send_fast(std::uint32_t i)
    {
        Conn& c = _conns[i];
        const std::string& req = _request[1];
        while (c.sent < req.size()) {
            const ssize_t n = ::send(c.fd, req.data() + c.sent, req.size() - c.sent, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN) {
                    c.send_blocked = true;
                    return;
                }
                io_failed(i, errno);
                return;
            }
            c.sent += static_cast<std::size_t>(n);
            if (counting()) {
                stats(c).bytes_sent += static_cast<std::size_t>(n);
            }
        }
        c.send_blocked = false;
        c.state = State::receiving;
        if (c.answered) {
            start_request(i);
        }
    }

    /// Slow clients: the current piece (--slow-chunk bytes), then a pause before the next one.
    void send_piece(std::uint32_t i)
    {
        Conn& c = _conns[i];
        const std::string& req = _request[0];
        if (c.piece_end <= c.sent) {
            c.piece_end = std::min(c.sent + _o.slow_chunk, req.size());
        }
        const ssize_t n = ::send(c.fd, req.data() + c.sent, c.piece_end - c.sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) {
                c.send_blocked = true;
                return;
            }
            io_failed(i, errno);
            return;
        }
        c.sent += static_cast<std::size_t>(n);
        if (counting()) {
            stats(c).bytes_sent += static_cast<std::size_t>(n);
        }
        timeout_restart(i);  // progress
        c.send_blocked = c.sent < c.piece_end;
        if (c.sent == req.size()) {
            c.state = State::receiving;
            if (c.answered) {
                start_request(i);
            }
        } else if (!c.send_blocked) {
            c.piece_at = _now + jitter(_o.slow_pause_ms);
        }
    }

    void on_wake(std::uint32_t i)
    {
        Conn& c = _conns[i];
        if (c.state == State::idle) {
            open(i);
            return;
        }
        if (c.read_paused && _now >= c.read_ok_at) {
            // Read directly: while the response keeps coming this costs no epoll_ctl; when nothing is
            // waiting, EPOLLIN goes back on.
            c.read_paused = false;
            if (read_slow(i, false) && c.fd >= 0) {
                c.read_paused = true;
            }
            if (c.fd < 0) {
                return;
            }
        }
        if (c.kind == Kind::slow && c.state == State::sending && !c.send_blocked && c.piece_at <= _now) {
            send_piece(i);
            if (c.fd < 0) {
                return;
            }
        }
        update(i);
    }

    void handle(std::uint32_t i, std::uint32_t generation, std::uint32_t events)
    {
        if (i >= _conns.size()) {
            return;
        }
        Conn& c = _conns[i];
        if (c.fd < 0 || c.generation != generation) {
            return;  // an event for a socket closed earlier in this batch
        }
        if (c.state == State::connecting) {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0) {
                connect_failed(i, err != 0 ? err : ECONNRESET);
                return;
            }
            on_connected(i);
            if (c.fd >= 0) {
                update(i);
            }
            return;
        }
        if ((events & EPOLLERR) != 0) {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0) {
                io_failed(i, err);
                return;
            }
        }
        if ((events & EPOLLOUT) != 0 && c.send_blocked) {
            if (c.kind == Kind::fast) {
                send_fast(i);
            } else {
                send_piece(i);
            }
            if (c.fd < 0) {
                return;
            }
        }
        if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) {
            const bool hup = (events & (EPOLLHUP | EPOLLERR)) != 0;
            if (c.kind == Kind::fast) {
                read_fast(i);
            } else if (!hup && _now < c.read_ok_at) {
                c.read_paused = true;  // the budget is spent: EPOLLIN off until read_ok_at
            } else {
                read_slow(i, hup);
            }
            if (c.fd < 0) {
                return;
            }
        }
        update(i);
    }

    // ---- reading and parsing -----------------------------------------------------------------------

    void read_fast(std::uint32_t i)
    {
        Conn& c = _conns[i];
        for (std::size_t round = 0; round < max_reads_per_event; ++round) {
            const ssize_t n = ::recv(c.fd, _buf.data(), _buf.size(), 0);
            if (n > 0) {
                if (feed(i, static_cast<std::size_t>(n)) || static_cast<std::size_t>(n) < _buf.size()) {
                    return;  // a response is done (the next request is out), or the socket is drained
                }
                continue;
            }
            if (n == 0) {
                on_eof(i);
            } else if (errno != EAGAIN) {
                io_failed(i, errno);
            }
            return;
        }
    }

    /// Slow clients: one read of at most --slow-read-bytes (everything, when the peer has hung up).
    /// Returns true if bytes were read.
    bool read_slow(std::uint32_t i, bool drain)
    {
        Conn& c = _conns[i];
        bool got = false;
        while (c.fd >= 0) {
            const std::size_t want = drain ? _buf.size() : std::min(_o.slow_read_bytes, _buf.size());
            const ssize_t n = ::recv(c.fd, _buf.data(), want, 0);
            if (n > 0) {
                got = true;
                c.read_ok_at = _now + _slow_read_pause;
                timeout_restart(i);  // progress
                if (feed(i, static_cast<std::size_t>(n)) || !drain) {
                    return got;
                }
                continue;
            }
            if (n == 0) {
                on_eof(i);
            } else if (errno != EAGAIN) {
                io_failed(i, errno);
            }
            return got;
        }
        return got;
    }

    /// Parses n bytes of _buf. Returns true when a response completed (or the connection failed).
    bool feed(std::uint32_t i, std::size_t n)
    {
        Conn& c = _conns[i];
        if (counting()) {
            stats(c).bytes += n;
        }
        if (c.answered) {
            request_failed(i, &Stats::protocol_errors);  // bytes after the response, before the next request
            return true;
        }
        const llhttp_errno_t err = llhttp_execute(&c.parser, _buf.data(), n);
        if (c.response_done) {
            const char* pos = llhttp_get_error_pos(&c.parser);
            const bool extra = pos != nullptr && pos < _buf.data() + n;
            on_response(i, extra);
            return true;
        }
        if (err != HPE_OK) {
            request_failed(i, &Stats::protocol_errors);
            return true;
        }
        return false;
    }

    void on_eof(std::uint32_t i)
    {
        Conn& c = _conns[i];
        if (c.answered) {
            drop(i, _now);  // the server closed after its (counted) response, before it had the whole request
            return;
        }
        llhttp_finish(&c.parser);
        if (c.response_done) {
            c.keep_alive = false;
            on_response(i, false);
        } else {
            request_failed(i, &Stats::short_responses);
        }
    }

    /// A complete response. `extra`: bytes followed it that no request asked for (a protocol error: the
    /// request fails whatever its status).
    void on_response(std::uint32_t i, bool extra)
    {
        Conn& c = _conns[i];
        if (extra) {
            request_failed(i, &Stats::protocol_errors);
            return;
        }
        const auto latency = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - c.request_start).count();
        const bool ok = c.status >= 200 && c.status < 300;
        if (counting()) {
            Stats& s = stats(c);
            if (ok) {
                ++s.ok;
                s.latency.add(static_cast<std::uint64_t>(std::max<std::int64_t>(0, latency)));
            } else {
                ++s.failed;
                ++(c.status >= 500 && c.status < 600   ? s.status_5xx
                   : c.status >= 400 && c.status < 500 ? s.status_4xx
                   : c.status >= 300 && c.status < 400 ? s.status_3xx
                                                       : s.status_other);
            }
        }
        if (!c.keep_alive) {
            drop(i, ok ? _now : reconnect_time(c));  // the server closes: a new connection
            return;
        }
        if (c.state == State::sending) {
            c.answered = true;  // the rest of the request still goes out, then the next request
            return;
        }
        start_request(i);
    }

    // ---- the end -----------------------------------------------------------------------------------

    void finish()
    {
        for (Conn& c : _conns) {
            if (c.state == State::sending || c.state == State::receiving) {
                ++stats(c).unfinished;
            }
            if (c.fd >= 0) {
                ::close(c.fd);
                c.fd = -1;
            }
        }
        ::close(_ep);
        const double elapsed = std::chrono::duration<double>(_now - _start).count();
        const double measured = std::max(0.0, std::chrono::duration<double>(_now - _measure_start).count());
        print_summary(elapsed, measured);
        if (!_o.report.empty()) {
            write_report(elapsed, measured);
        }
    }

    static double rate(std::uint64_t n, double seconds) { return seconds > 0 ? static_cast<double>(n) / seconds : 0.0; }

    void print_summary(double elapsed, double measured) const
    {
        fmt::print("cm-httpload: {} against {}, {:.1f} s ({:.1f} s measured after {:.1f} s warm-up)\n", _o.method, _o.target, elapsed,
                   measured, _o.warmup);
        const char* names[2] = {"slow", "fast"};
        const std::size_t clients[2] = {_o.slow, _o.fast};
        for (int k = 0; k < 2; ++k) {
            const Stats& s = _stats[k];
            if (clients[k] == 0) {
                continue;
            }
            const std::string& path = k == 0 && !_o.slow_path.empty() ? _o.slow_path : _o.path;
            fmt::print("  {} ({}): {} clients, peak {} open | {} ok ({:.1f}/s), {} failed, {} unfinished at the end\n", names[k], path,
                       clients[k], s.open_peak, s.ok, rate(s.ok, measured), s.failed, s.unfinished);
            fmt::print("        latency p50 {:.3f} ms, p99 {:.3f} ms, max {:.3f} ms | {:.2f} MB received, {:.2f} MB sent\n",
                       static_cast<double>(s.latency.percentile(50)) / 1000, static_cast<double>(s.latency.percentile(99)) / 1000,
                       static_cast<double>(s.latency.max()) / 1000, static_cast<double>(s.bytes) / 1e6,
                       static_cast<double>(s.bytes_sent) / 1e6);
            fmt::print("        errors: connect {}, resets {}, timeouts {}, short {}, protocol {}, other {} | status 3xx {}, 4xx {}, "
                       "5xx {}, other {}\n",
                       s.connect_errors, s.resets, s.timeouts, s.short_responses, s.protocol_errors, s.other_errors, s.status_3xx,
                       s.status_4xx, s.status_5xx, s.status_other);
            if (!s.connect_error_kinds.empty()) {
                std::string kinds;
                for (const auto& [what, count] : s.connect_error_kinds) {
                    kinds += fmt::format(" {} {}", what, count);
                }
                fmt::print("        connect errors:{}\n", kinds);
            }
        }
    }

    void write_report(double elapsed, double measured) const
    {
        std::FILE* f = std::fopen(_o.report.c_str(), "w");
        if (f == nullptr) {
            fmt::print(stderr, "cm-httpload: cannot write {}: {}\n", _o.report, std::strerror(errno));
            return;
        }
        fmt::print(f, "duration_s {:.3f}\nwarmup_s {:.3f}\nmeasured_s {:.3f}\n", elapsed, _o.warmup, measured);
        const char* names[2] = {"slow", "fast"};
        const std::size_t clients[2] = {_o.slow, _o.fast};
        for (int k = 0; k < 2; ++k) {
            const Stats& s = _stats[k];
            const char* p = names[k];
            fmt::print(f, "{}_clients {}\n{}_requests_ok {}\n{}_requests_failed {}\n{}_requests_unfinished {}\n", p, clients[k], p, s.ok, p,
                       s.failed, p, s.unfinished);
            fmt::print(f, "{}_connect_errors {}\n{}_resets {}\n{}_timeouts {}\n{}_short_responses {}\n{}_protocol_errors {}\n", p,
                       s.connect_errors, p, s.resets, p, s.timeouts, p, s.short_responses, p, s.protocol_errors);
            fmt::print(f, "{}_other_errors {}\n{}_status_3xx {}\n{}_status_4xx {}\n{}_status_5xx {}\n{}_status_other {}\n", p,
                       s.other_errors, p, s.status_3xx, p, s.status_4xx, p, s.status_5xx, p, s.status_other);
            fmt::print(f, "{}_bytes {}\n{}_bytes_sent {}\n{}_latency_p50_us {}\n{}_latency_p99_us {}\n{}_latency_max_us {}\n", p, s.bytes,
                       p, s.bytes_sent, p, s.latency.percentile(50), p, s.latency.percentile(99), p, s.latency.max());
            fmt::print(f, "{}_rps {:.1f}\n{}_conns_peak {}\n", p, rate(s.ok, measured), p, s.open_peak);
        }
        std::fclose(f);
    }

    Options _o;
    std::mt19937_64 _rng;
    const Clock::duration _timeout = to_duration(_o.timeout_ms);
    const Clock::duration _slow_read_pause = to_duration(_o.slow_read_pause_ms);
    sockaddr_in _addr{};
    sockaddr_in _bind{};
    std::string _request[2];  // slow, fast
    int _ep = -1;
    llhttp_settings_t _settings{};
    std::vector<Conn> _conns;
    std::vector<TimerEntry> _timers;  // a min-heap on when
    std::uint32_t _timeout_head = no_index;
    std::uint32_t _timeout_tail = no_index;
    Stats _stats[2];  // slow, fast
    std::vector<char> _buf = std::vector<char>(recv_buffer_size);
    TimePoint _start{};
    TimePoint _now{};
    TimePoint _measure_start{};
    TimePoint _end{};
};

}  // namespace

int main(int argc, char** argv)
{
    Options o;
    CLI::App app{"HTTP/1.1 load generator for cm's tests and benchmarks: slow clients (trickled requests, slow reads) and fast "
                 "closed-loop clients, on one epoll loop.",
                 "cm-httpload"};
    app.add_option("--target", o.target, "IP:PORT of the server")->required();
    app.add_option("--host", o.host, "Host header (default: the --target text)");
    app.add_option("--duration", o.duration, "seconds to run")->required()->check(CLI::PositiveNumber);
    app.add_option("--warmup", o.warmup, "seconds at the start whose requests are not counted")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--slow", o.slow, "slow clients")->check(CLI::Range(0, 1000000))->capture_default_str();
    app.add_option("--fast", o.fast, "fast closed-loop keep-alive clients")->check(CLI::Range(0, 1000000))->capture_default_str();
    app.add_option("--slow-chunk", o.slow_chunk, "bytes per piece of a slow client's request")
        ->check(CLI::Range(1, 1 << 30))
        ->capture_default_str();
    app.add_option("--slow-pause", o.slow_pause_ms, "ms between a slow client's pieces (+-20 %)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--slow-rcvbuf", o.slow_rcvbuf, "SO_RCVBUF of slow clients, set before connect (0: the kernel's)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--slow-read-bytes", o.slow_read_bytes, "bytes a slow client reads at most per --slow-read-pause")
        ->check(CLI::Range(1, 1 << 30))
        ->capture_default_str();
    app.add_option("--slow-read-pause", o.slow_read_pause_ms, "ms between a slow client's reads")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--ramp", o.ramp, "seconds over which the slow clients' first connects are spread")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--path", o.path, "request path")->capture_default_str();
    app.add_option("--slow-path", o.slow_path, "request path of slow clients (default: --path)");
    app.add_option("--method", o.method, "GET or POST")->check(CLI::IsMember({"GET", "POST"}))->capture_default_str();
    app.add_option("--body-size", o.body_size, "POST body bytes of every request (slow clients trickle it too)")->capture_default_str();
    app.add_option("--bind-ip", o.bind_ip, "source address of the connections");
    app.add_option("--report", o.report, "file for the \"key value\" report");
    app.add_option("--timeout", o.timeout_ms, "ms: fast requests must complete within it; slow ones fail after it without progress")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--reconnect-pause", o.reconnect_pause_ms, "ms before a client reconnects after an error (+-20 %, backs off)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_flag("--progress", o.progress, "once a second on stderr: open connections, requests so far");
    app.add_option("--seed", o.seed, "seed of the pause jitter")->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    if (o.slow + o.fast == 0) {
        fmt::print(stderr, "cm-httpload: nothing to do: give --slow and/or --fast\n");
        return 2;
    }
    if (o.warmup >= o.duration) {
        fmt::print(stderr, "cm-httpload: --warmup must be shorter than --duration\n");
        return 2;
    }
    if (o.method == "GET" && o.body_size > 0) {
        fmt::print(stderr, "cm-httpload: --body-size needs --method POST\n");
        return 2;
    }
    if (o.slow > 0 && (o.slow_pause_ms * 1.2 >= o.timeout_ms || o.slow_read_pause_ms >= o.timeout_ms)) {
        fmt::print(stderr, "cm-httpload: --timeout must exceed the slow clients' pauses (their own waits are not timeouts)\n");
        return 2;
    }
    struct sigaction sa{};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
    return Load(std::move(o)).run();
}

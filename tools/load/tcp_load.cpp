// cm-tcpload: a TCP load generator for tests and benchmarks, with one epoll loop and non-blocking sockets
// (so one process drives thousands of connections). It talks to the classic test services (echo 7,
// discard 9, a source like chargen 19) on the card, or on any Linux peer used as the baseline.
//
//   hold     open --connections N at once, and when all are up, each sends --bytes B to an echo service and
//            checks that the same bytes come back; then all close. For "N concurrent connections".
//   send     --connections N stream a pattern to a discard service for --duration seconds.
//   receive  --connections N read from a source service for --duration seconds (the source's prefix
//            protocol: --request is sent first, e.g. "0\n"; see the card's test-service docs).
//   connect  --connections N at a time, connect, (echo one byte when --bytes > 0), close, repeat, for
//            --duration seconds: connections completed per second.
//
// Output: key=value lines (mode, connections, seconds, bytes, mbytes_per_s, completed, per_s, errors,
// error_*), for scripts. The exit status is 0 when no connection failed, 1 otherwise.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t max_rounds_per_event = 16;  // x 64 KiB

struct Options {
    std::string mode = "hold";
    std::string target;
    std::size_t connections = 1;
    double duration = 5;
    std::size_t bytes = 1024;
    std::string request;
    int rcvbuf = 0;
    int sndbuf = 0;
};

/// Byte i of the pattern every connection sends: cheap to produce and to verify at any offset.
inline unsigned char pattern(std::size_t i) { return static_cast<unsigned char>('a' + i % 23); }

struct Conn {
    int fd = -1;
    bool connected = false;
    std::size_t sent = 0;
    std::size_t received = 0;
    bool request_sent = false;
};

class Load {
public:
    explicit Load(Options o) : _o(std::move(o)) {}

    int run()
    {
        const auto colon = _o.target.rfind(':');
        if (colon == std::string::npos) {
            fmt::print(stderr, "cm-tcpload: --target wants IP:PORT\n");
            return 2;
        }
        _addr.sin_family = AF_INET;
        _addr.sin_port = htons(static_cast<std::uint16_t>(std::stoi(_o.target.substr(colon + 1))));
        if (inet_pton(AF_INET, _o.target.substr(0, colon).c_str(), &_addr.sin_addr) != 1) {
            fmt::print(stderr, "cm-tcpload: bad address in --target\n");
            return 2;
        }
        raise_fd_limit();
        _ep = epoll_create1(EPOLL_CLOEXEC);
        _conns.resize(_o.connections);
        _start = Clock::now();
        const auto deadline = _start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(_o.duration));
        for (std::size_t i = 0; i < _conns.size(); ++i) {
            open(i);
        }
        std::vector<epoll_event> events(1024);
        bool hold_exchanging = false;
        while (true) {
            const auto now = Clock::now();
            if (_o.mode == "hold") {
                if (!hold_exchanging && _connected == _conns.size()) {
                    _all_up = now;
                    hold_exchanging = true;
                    for (std::size_t i = 0; i < _conns.size(); ++i) {
                        arm(i, EPOLLIN | EPOLLOUT);
                    }
                }
                if (_finished + _failed == _conns.size() || now > deadline) {
                    break;
                }
            } else if (now > deadline) {
                break;
            }
            const int n = epoll_wait(_ep, events.data(), static_cast<int>(events.size()), 100);
            for (int k = 0; k < n; ++k) {
                handle(static_cast<std::size_t>(events[static_cast<std::size_t>(k)].data.u64), events[static_cast<std::size_t>(k)].events,
                       hold_exchanging);
            }
        }
        const double seconds = std::chrono::duration<double>(Clock::now() - _start).count();
        report(seconds);
        return _failed == 0 && (_o.mode != "hold" || _finished == _conns.size()) ? 0 : 1;
    }

private:
    static void raise_fd_limit()
    {
        rlimit rl{};
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }

    void fail(std::size_t i, const char* what)
    {
        ++_errors[what];
        ++_failed;
        close_conn(i);
    }

    void close_conn(std::size_t i)
    {
        if (_conns[i].fd >= 0) {
            ::close(_conns[i].fd);
            _conns[i].fd = -1;
        }
    }

    void arm(std::size_t i, std::uint32_t events)
    {
        epoll_event ev{};
        ev.events = events;
        ev.data.u64 = i;
        epoll_ctl(_ep, EPOLL_CTL_MOD, _conns[i].fd, &ev);
    }

    void open(std::size_t i)
    {
        Conn& c = _conns[i];
        c = Conn{};
        c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c.fd < 0) {
            ++_errors["socket"];
            ++_failed;
            return;
        }
        if (_o.rcvbuf > 0) {
            setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &_o.rcvbuf, sizeof _o.rcvbuf);
        }
        if (_o.sndbuf > 0) {
            setsockopt(c.fd, SOL_SOCKET, SO_SNDBUF, &_o.sndbuf, sizeof _o.sndbuf);
        }
        const int r = ::connect(c.fd, reinterpret_cast<const sockaddr*>(&_addr), sizeof _addr);
        if (r != 0 && errno != EINPROGRESS) {
            fail(i, "connect");
            return;
        }
        epoll_event ev{};
        ev.events = EPOLLOUT;
        ev.data.u64 = i;
        epoll_ctl(_ep, EPOLL_CTL_ADD, c.fd, &ev);
    }

    void handle(std::size_t i, std::uint32_t events, bool hold_exchanging)
    {
        Conn& c = _conns[i];
        if (c.fd < 0) {
            return;
        }
        if (!c.connected) {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
                fail(i, err == ECONNREFUSED ? "refused" : err == ETIMEDOUT ? "timeout" : "connect_error");
                if (_o.mode == "connect") {
                    open(i);
                }
                return;
            }
            c.connected = true;
            ++_connected;
            if (_o.mode == "hold") {
                arm(i, hold_exchanging ? (EPOLLIN | EPOLLOUT) : EPOLLIN);  // wait for the others
                return;
            }
            arm(i, _o.mode == "receive" ? EPOLLIN | EPOLLOUT : _o.mode == "send" ? EPOLLOUT : EPOLLIN | EPOLLOUT);
            return;
        }
        if (events & EPOLLOUT) {
            on_writable(i);
        }
        if (c.fd >= 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
            on_readable(i);
        }
    }

    void on_writable(std::size_t i)
    {
        Conn& c = _conns[i];
        char buf[65536];
        if (_o.mode == "receive") {
            if (!c.request_sent && !_o.request.empty()) {
                (void)::send(c.fd, _o.request.data(), _o.request.size(), MSG_NOSIGNAL);
            }
            c.request_sent = true;
            arm(i, EPOLLIN);
            return;
        }
        const std::size_t limit = _o.mode == "send" ? SIZE_MAX : (_o.mode == "connect" ? std::min<std::size_t>(_o.bytes, 1) : _o.bytes);
        // Bounded work per event, so one fast connection cannot keep the loop from its deadline and the others.
        for (std::size_t round = 0; c.sent < limit && round < max_rounds_per_event; ++round) {
            const std::size_t chunk = std::min(sizeof buf, limit - c.sent);
            for (std::size_t k = 0; k < chunk; ++k) {
                buf[k] = static_cast<char>(pattern(c.sent + k));
            }
            const ssize_t n = ::send(c.fd, buf, chunk, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno != EAGAIN) {
                    fail(i, "send");
                }
                return;
            }
            c.sent += static_cast<std::size_t>(n);
            _bytes_sent += static_cast<std::size_t>(n);
        }
        if (c.sent < limit) {
            return;  // more to send: still armed for EPOLLOUT
        }
        arm(i, EPOLLIN);
        if (limit == 0 && _o.mode == "connect") {
            complete(i);
        }
    }

    void on_readable(std::size_t i)
    {
        Conn& c = _conns[i];
        char buf[65536];
        for (std::size_t round = 0; round < max_rounds_per_event; ++round) {
            const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
            if (n > 0) {
                if (_o.mode != "receive") {
                    for (ssize_t k = 0; k < n; ++k) {
                        if (static_cast<unsigned char>(buf[k]) != pattern(c.received + static_cast<std::size_t>(k))) {
                            fail(i, "corrupt_echo");
                            return;
                        }
                    }
                }
                c.received += static_cast<std::size_t>(n);
                _bytes_received += static_cast<std::size_t>(n);
                const std::size_t want = _o.mode == "connect" ? std::min<std::size_t>(_o.bytes, 1) : _o.bytes;
                if ((_o.mode == "hold" || _o.mode == "connect") && c.received >= want) {
                    complete(i);
                    return;
                }
                continue;
            }
            if (n == 0) {
                if (_o.mode == "receive" || _o.mode == "send") {
                    close_conn(i);  // the service closed: fine at the end of a timed run
                } else {
                    fail(i, "closed_early");
                }
                return;
            }
            if (errno != EAGAIN) {
                fail(i, errno == ECONNRESET ? "reset" : "recv");
            }
            return;
        }
    }

    void complete(std::size_t i)
    {
        ++_finished;
        close_conn(i);
        if (_o.mode == "connect") {
            open(i);
        }
    }

    void report(double seconds) const
    {
        const std::size_t bytes = _o.mode == "send" ? _bytes_sent : _bytes_received;
        fmt::print("mode={}\nconnections={}\nseconds={:.3f}\n", _o.mode, _o.connections, seconds);
        if (_o.mode == "hold") {
            const double up = _all_up == Clock::time_point{} ? -1 : std::chrono::duration<double>(_all_up - _start).count();
            fmt::print("established={}\nall_up_seconds={:.3f}\nechoed={}\n", _connected, up, _finished);
        }
        fmt::print("bytes={}\nmbytes_per_s={:.2f}\ncompleted={}\nper_s={:.0f}\nerrors={}\n", bytes,
                   static_cast<double>(bytes) / seconds / 1e6, _finished, static_cast<double>(_finished) / seconds, _failed);
        for (const auto& [what, count] : _errors) {
            fmt::print("error_{}={}\n", what, count);
        }
    }

    Options _o;
    sockaddr_in _addr{};
    int _ep = -1;
    std::vector<Conn> _conns;
    std::size_t _connected = 0;
    std::size_t _finished = 0;
    std::size_t _failed = 0;
    std::size_t _bytes_sent = 0;
    std::size_t _bytes_received = 0;
    std::map<std::string, std::size_t> _errors;
    Clock::time_point _start{};
    Clock::time_point _all_up{};
};

}  // namespace

int main(int argc, char** argv)
{
    Options o;
    CLI::App app{"TCP load generator for cm's tests and benchmarks (echo, discard and source services).", "cm-tcpload"};
    app.add_option("--mode", o.mode, "hold, send, receive or connect")
        ->check(CLI::IsMember({"hold", "send", "receive", "connect"}))
        ->capture_default_str();
    app.add_option("--target", o.target, "IP:PORT of the service")->required();
    app.add_option("--connections", o.connections, "concurrent connections")->check(CLI::Range(1, 1000000))->capture_default_str();
    app.add_option("--duration", o.duration, "seconds (timed modes), or the limit for hold")->capture_default_str();
    app.add_option("--bytes", o.bytes, "bytes each connection echoes (hold, connect)")->capture_default_str();
    app.add_option("--request", o.request, "bytes sent first in receive mode (e.g. a byte count and a newline)");
    app.add_option("--rcvbuf", o.rcvbuf, "SO_RCVBUF for every connection (0: the kernel's default)");
    app.add_option("--sndbuf", o.sndbuf, "SO_SNDBUF for every connection (0: the kernel's default)");
    CLI11_PARSE(app, argc, argv);
    return Load(std::move(o)).run();
}

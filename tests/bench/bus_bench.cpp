// bus_bench: one queue pair, host -> card -> host through cmfw's echo service, against a UNIX domain socket
// pair and TCP over loopback to an echo process, in the same run. Prints figures and ratios, never fails on
// them; the machine's memcpy bandwidth is printed as the ceiling.
//
//   bus_bench --device SOCKET [--latency N] [--messages N] [--window W] [--bytes B] [--busy-poll USEC]
//
// Per transport: round-trip latency of a 64-byte message (N ping-pongs: median, 99th percentile), message
// rate (64-byte messages, W in flight), and bandwidth (B bytes echoed in 1 MiB writes; GB/s of payload
// each way). The socket echo servers are separate processes (fork) doing read -> write.
#include "cm/cm.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0)
{
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

[[noreturn]] void die(const std::string& what, int err)
{
    std::fprintf(stderr, "bus_bench: %s: %s\n", what.c_str(), std::strerror(err < 0 ? -err : err));
    std::exit(1);
}

/// Non-blocking byte stream to an echo peer.
class Transport {
public:
    virtual ~Transport() = default;
    virtual const char* name() const = 0;
    /// Bytes taken, or -EAGAIN.
    virtual long write_some(const unsigned char* p, std::size_t n) = 0;
    /// Bytes read, or -EAGAIN.
    virtual long read_some(unsigned char* p, std::size_t n) = 0;
    /// Sleeps until something may have changed (want_write: also for room to write).
    virtual void wait(bool want_write) = 0;
};

class BusTransport final : public Transport {
public:
    BusTransport(const char* device, unsigned busy_poll_us)
    {
        if (int rc = cm_device_open(device, &_dev); rc != 0) {
            die("cm_device_open", rc);
        }
        if (int rc = cm_qp_open(_dev, &_qp); rc != 0) {
            die("cm_qp_open", rc);
        }
        cm_qp_set_busy_poll(_qp, busy_poll_us);
        if (int rc = cm_connect(_qp, CM_CLIENT_ECHO, &_conn, nullptr); rc != 0) {
            die("cm_connect(echo)", rc);
        }
        // A wider window towards us than the default credit: the whole queue pair's share.
        cm_device_info info{};
        cm_device_get_info(_dev, &info);
        (void)cm_conn_setopt(_conn, CM_OPT_RECV_WINDOW, info.slots_per_qp / 2);
    }
    ~BusTransport() override
    {
        cm_close(_conn);
        cm_qp_close(_qp);
        cm_device_close(_dev);
    }
    const char* name() const override { return "bus (libcm)"; }
    long write_some(const unsigned char* p, std::size_t n) override { return cm_write(_conn, p, n, CM_NONBLOCK); }
    long read_some(unsigned char* p, std::size_t n) override
    {
        const long r = cm_read(_conn, p, n, CM_NONBLOCK);
        if (r == 0) {
            die("bus echo closed", EPIPE);
        }
        return r;
    }
    void wait(bool) override
    {
        cm_ready ready[16];
        if (int rc = cm_qp_poll(_qp, ready, 16, 1000); rc < 0) {
            die("cm_qp_poll", rc);
        }
    }

private:
    cm_device* _dev = nullptr;
    cm_qp* _qp = nullptr;
    cm_conn* _conn = nullptr;
};

/// Spins up to `busy_us` on poll(0) for `events`, then sleeps in poll: the same trade the bus makes.
void spin_then_poll(int fd, short events, unsigned busy_us)
{
    pollfd p{fd, events, 0};
    const auto until = Clock::now() + std::chrono::microseconds(busy_us);
    while (Clock::now() < until) {
        if (::poll(&p, 1, 0) > 0) {
            return;
        }
    }
    ::poll(&p, 1, 1000);
}

void echo_server(int fd, unsigned busy_us)
{
    std::vector<char> buf(1 << 20);
    ::fcntl(fd, F_SETFL, O_NONBLOCK);
    for (;;) {
        spin_then_poll(fd, POLLIN, busy_us);
        const ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EAGAIN) {
            continue;
        }
        if (n <= 0) {
            _exit(0);
        }
        for (ssize_t off = 0; off < n;) {
            const ssize_t w = ::write(fd, buf.data() + off, static_cast<std::size_t>(n - off));
            if (w < 0 && errno == EAGAIN) {
                spin_then_poll(fd, POLLOUT, busy_us);
                continue;
            }
            if (w <= 0) {
                _exit(0);
            }
            off += w;
        }
    }
}

class SocketTransport final : public Transport {
public:
    /// tcp: TCP over loopback (Nagle off); otherwise a UNIX stream socket pair.
    /// busy_us: both ends spin that long before sleeping (as libcm and cmfw do in this benchmark).
    SocketTransport(bool tcp, unsigned busy_us) : _tcp(tcp), _busy_us(busy_us)
    {
        int server = -1;
        if (tcp) {
            const int l = ::socket(AF_INET, SOCK_STREAM, 0);
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            socklen_t len = sizeof a;
            if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l, 1) != 0 ||
                ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
                die("tcp listen", errno);
            }
            _fd = ::socket(AF_INET, SOCK_STREAM, 0);
            if (::connect(_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
                die("tcp connect", errno);
            }
            server = ::accept(l, nullptr, nullptr);
            ::close(l);
            const int one = 1;
            ::setsockopt(_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            ::setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        } else {
            int sv[2];
            if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
                die("socketpair", errno);
            }
            _fd = sv[0];
            server = sv[1];
        }
        _child = ::fork();
        if (_child == 0) {
            ::close(_fd);
            echo_server(server, busy_us);
        }
        ::close(server);
        ::fcntl(_fd, F_SETFL, O_NONBLOCK);
    }
    ~SocketTransport() override
    {
        ::close(_fd);
        ::waitpid(_child, nullptr, 0);
    }
    const char* name() const override { return _tcp ? "TCP loopback" : "UNIX socketpair"; }
    long write_some(const unsigned char* p, std::size_t n) override
    {
        const ssize_t w = ::write(_fd, p, n);
        return w < 0 ? (errno == EAGAIN ? -EAGAIN : (die("write", errno), 0)) : w;
    }
    long read_some(unsigned char* p, std::size_t n) override
    {
        const ssize_t r = ::read(_fd, p, n);
        if (r == 0) {
            die("echo closed", EPIPE);
        }
        return r < 0 ? (errno == EAGAIN ? -EAGAIN : (die("read", errno), 0)) : r;
    }
    void wait(bool want_write) override
    {
        spin_then_poll(_fd, static_cast<short>(POLLIN | (want_write ? POLLOUT : 0)), _busy_us);
    }

private:
    bool _tcp;
    unsigned _busy_us;
    int _fd = -1;
    pid_t _child = -1;
};

struct Result {
    double rtt_median_us = 0;
    double rtt_p99_us = 0;
    double msgs_per_s = 0;
    double gb_per_s = 0;
};

/// Writes `total` bytes from `out` (cycled) while reading the echo back, at most `window` bytes in flight.
double stream(Transport& t, std::size_t total, std::size_t chunk, std::size_t window)
{
    std::vector<unsigned char> out(chunk, 0x3c);
    std::vector<unsigned char> in(std::max<std::size_t>(chunk, 1 << 20));
    std::size_t sent = 0;
    std::size_t got = 0;
    const auto t0 = Clock::now();
    while (got < total) {
        bool progress = false;
        while (sent < total && sent - got < window) {
            const std::size_t n = std::min({chunk - sent % chunk, total - sent, window - (sent - got)});
            const long w = t.write_some(out.data() + sent % chunk, n);
            if (w <= 0) {
                break;
            }
            sent += static_cast<std::size_t>(w);
            progress = true;
        }
        for (;;) {
            const long r = t.read_some(in.data(), in.size());
            if (r <= 0) {
                break;
            }
            got += static_cast<std::size_t>(r);
            progress = true;
        }
        if (!progress) {
            t.wait(sent < total && sent - got < window);
        }
    }
    return seconds_since(t0);
}

Result measure(Transport& t, int pings, std::size_t messages, std::size_t window, std::size_t bytes)
{
    Result r;
    constexpr std::size_t msg = 64;
    std::vector<double> rtts;
    unsigned char out[msg] = {1};
    unsigned char in[msg];
    for (int i = 0; i < pings + 100; ++i) {  // the first 100 warm up
        const auto t0 = Clock::now();
        for (std::size_t off = 0; off < msg;) {
            const long w = t.write_some(out + off, msg - off);
            if (w > 0) {
                off += static_cast<std::size_t>(w);
            } else {
                t.wait(true);
            }
        }
        for (std::size_t got = 0; got < msg;) {
            const long n = t.read_some(in + got, msg - got);
            if (n > 0) {
                got += static_cast<std::size_t>(n);
            } else {
                t.wait(false);
            }
        }
        if (i >= 100) {
            rtts.push_back(seconds_since(t0) * 1e6);
        }
    }
    std::sort(rtts.begin(), rtts.end());
    r.rtt_median_us = rtts[rtts.size() / 2];
    r.rtt_p99_us = rtts[rtts.size() * 99 / 100];
    r.msgs_per_s = static_cast<double>(messages) / stream(t, messages * msg, msg, window * msg);
    r.gb_per_s = static_cast<double>(bytes) / stream(t, bytes, 1 << 20, 8u << 20) / 1e9;
    return r;
}

/// memcpy bandwidth between two buffers of n bytes (n <= the cache: cache-resident; 64 MiB: memory).
double memcpy_gb_per_s(std::size_t n)
{
    std::vector<char> a(n, 1);
    std::vector<char> b(n, 2);
    std::memcpy(b.data(), a.data(), n);  // fault the pages in
    const int rounds = static_cast<int>(std::max<std::size_t>(16, (1u << 30) / n));
    const auto t0 = Clock::now();
    for (int i = 0; i < rounds; ++i) {
        std::memcpy(i % 2 ? a.data() : b.data(), i % 2 ? b.data() : a.data(), n);
    }
    const double s = seconds_since(t0);
    if (a[n / 2] == 7) {
        std::puts("");  // keep the copies
    }
    return static_cast<double>(n) * rounds / s / 1e9;
}

}  // namespace

int main(int argc, char** argv)
{
    const char* device = nullptr;
    int pings = 20000;
    std::size_t messages = 500000;
    std::size_t window = 64;
    std::size_t bytes = 2u << 30;
    unsigned busy_poll = 50;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        const char* v = argv[i + 1];
        if (a == "--device") {
            device = v;
        } else if (a == "--latency") {
            pings = std::atoi(v);
        } else if (a == "--messages") {
            messages = std::strtoull(v, nullptr, 10);
        } else if (a == "--window") {
            window = std::strtoull(v, nullptr, 10);
        } else if (a == "--bytes") {
            bytes = std::strtoull(v, nullptr, 10);
        } else if (a == "--busy-poll") {
            busy_poll = static_cast<unsigned>(std::atoi(v));
        }
    }
    std::signal(SIGPIPE, SIG_IGN);
    // The bus's working set (one queue pair's slots and the application's buffers) is about 8 MiB: the
    // same-size memcpy is the ceiling for one copy; the 64 MiB one is memory bandwidth.
    const double ceiling = memcpy_gb_per_s(8u << 20);
    const double memory = memcpy_gb_per_s(64u << 20);
    std::printf("bus_bench: %d ping-pongs of 64 B; %zu messages of 64 B, %zu in flight; %zu MiB in 1 MiB writes\n",
                pings, messages, window, bytes >> 20);
    std::printf("memcpy (this machine): %.2f GB/s in 8 MiB blocks (the bus's working set: the ceiling for one copy), "
                "%.2f GB/s in 64 MiB blocks (memory)\n",
                ceiling, memory);
    std::printf("each byte echoed is copied 3 times: application -> slot, slot -> slot (card), slot -> application\n");
    std::printf("busy polling: libcm and cmfw, and the socket client and echo server alike, %u us\n\n", busy_poll);
    Result results[3];
    const char* names[3];
    {
        BusTransport bus(device, busy_poll);
        names[0] = bus.name();
        results[0] = measure(bus, pings, messages, window, bytes);
    }
    for (int k = 1; k < 3; ++k) {
        SocketTransport s(k == 2, busy_poll);
        names[k] = s.name();
        results[k] = measure(s, pings, messages, window, bytes);
    }
    std::printf("%-16s %12s %12s %14s %10s %14s\n", "transport", "rtt p50 us", "rtt p99 us", "msgs/s (64 B)", "GB/s",
                "GB/s / memcpy");
    for (int k = 0; k < 3; ++k) {
        std::printf("%-16s %12.2f %12.2f %14.0f %10.2f %14.2f\n", names[k], results[k].rtt_median_us,
                    results[k].rtt_p99_us, results[k].msgs_per_s, results[k].gb_per_s, results[k].gb_per_s / ceiling);
    }
    std::printf("\nratios, bus vs       %12s %12s %14s %10s\n", "latency", "(p99)", "msg rate", "GB/s");
    for (int k = 1; k < 3; ++k) {
        std::printf("  %-18s %11.2fx %11.2fx %13.2fx %9.2fx\n", names[k], results[k].rtt_median_us / results[0].rtt_median_us,
                    results[k].rtt_p99_us / results[0].rtt_p99_us, results[0].msgs_per_s / results[k].msgs_per_s,
                    results[0].gb_per_s / results[k].gb_per_s);
    }
    std::printf("(latency ratios: socket RTT / bus RTT; rate and GB/s: bus / socket; > 1 means the bus is better)\n");
    return 0;
}

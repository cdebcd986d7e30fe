// The kernel front end: Linux TCP sockets, non-blocking, one epoll loop (edge-triggered for connections).
// This is the baseline the card is measured against: the same sessions, fed by the kernel directly.
#include "frontend.hpp"

#include <fmt/core.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>

namespace cm::httpd {

namespace {

constexpr std::uint64_t signal_id = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint64_t listener_id = signal_id - 1;

/// A connected socket. read/writev never block; close drains what the peer sent so that the kernel ends
/// the connection with a FIN after our data rather than a reset (unread input at close() means RST).
class SocketTransport final : public Transport {
public:
    SocketTransport(int fd, const sockaddr_in& peer) : _fd(fd), _peer(peer) {}
    ~SocketTransport() override
    {
        if (_fd >= 0) {
            ::close(_fd);
        }
    }
    SocketTransport(const SocketTransport&) = delete;
    SocketTransport& operator=(const SocketTransport&) = delete;

    ssize_t read(void* buf, std::size_t len) override
    {
        for (;;) {
            const ssize_t n = ::recv(_fd, buf, len, 0);
            if (n >= 0) {
                return n;
            }
            if (errno != EINTR) {
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
            }
        }
    }

    ssize_t writev(const iovec* iov, int count) override
    {
        msghdr m{};
        m.msg_iov = const_cast<iovec*>(iov);
        m.msg_iovlen = static_cast<std::size_t>(count);
        for (;;) {
            const ssize_t n = ::sendmsg(_fd, &m, MSG_NOSIGNAL);
            if (n >= 0) {
                return n;
            }
            if (errno != EINTR) {
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
            }
        }
    }

    void close() override
    {
        char sink[4096];
        for (int i = 0; i < 64 && ::recv(_fd, sink, sizeof sink, 0) > 0; ++i) {
        }
        ::shutdown(_fd, SHUT_WR);
        ::close(_fd);  // also leaves the epoll set
        _fd = -1;
    }

    PeerAddress peer() const override
    {
        char ip[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &_peer.sin_addr, ip, sizeof ip);
        return {fmt::format("{}:{}", ip, ntohs(_peer.sin_port)), "socket"};
    }

private:
    int _fd;
    sockaddr_in _peer;
};

bool parse_listen(const std::string& text, sockaddr_in& out)
{
    const std::size_t colon = text.rfind(':');
    if (colon == std::string::npos) {
        return false;
    }
    const std::string ip = text.substr(0, colon);
    unsigned port = 0;
    const char* first = text.data() + colon + 1;
    const char* last = text.data() + text.size();
    const auto [end, ec] = std::from_chars(first, last, port);
    if (ec != std::errc{} || end != last || first == last || port > 65535) {
        return false;
    }
    out = sockaddr_in{};
    out.sin_family = AF_INET;
    out.sin_port = htons(static_cast<std::uint16_t>(port));
    return inet_pton(AF_INET, ip.empty() ? "0.0.0.0" : ip.c_str(), &out.sin_addr) == 1;
}

class KernelFrontend {
public:
    KernelFrontend(const Config& config, const RunOptions& options, Stats& stats)
        : _config(config), _options(options), _stats(stats)
    {
    }
    ~KernelFrontend()
    {
        _sessions.clear();
        if (_listener >= 0) {
            ::close(_listener);
        }
        if (_ep >= 0) {
            ::close(_ep);
        }
    }
    KernelFrontend(const KernelFrontend&) = delete;
    KernelFrontend& operator=(const KernelFrontend&) = delete;

    int run(const std::string& listen_on)
    {
        sockaddr_in sa{};
        if (!parse_listen(listen_on, sa)) {
            fmt::print(stderr, "cm-httpd: --listen {}: want IPv4:PORT\n", listen_on);
            return 1;
        }
        rlimit rl{};
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        _ep = epoll_create1(EPOLL_CLOEXEC);
        _listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        const int one = 1;
        setsockopt(_listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(_listener, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0 || ::listen(_listener, 4096) != 0) {
            fmt::print(stderr, "cm-httpd: {}: {}\n", listen_on, std::strerror(errno));
            return 1;
        }
        socklen_t len = sizeof sa;
        getsockname(_listener, reinterpret_cast<sockaddr*>(&sa), &len);
        char ip[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
        const unsigned port = ntohs(sa.sin_port);

        add(_listener, EPOLLIN, listener_id);
        add(_signals.fd(), EPOLLIN, signal_id);
        if (!_options.quiet) {
            fmt::print(stderr, "cm-httpd: kernel backend listening on {}:{}\n", ip, port);
        }
        if (!_options.ready_file.empty() &&
            !write_file_atomically(_options.ready_file,
                                   fmt::format("backend=kernel\naddress={}\nport={}\npid={}\n", ip, port, getpid()))) {
            return 1;
        }

        std::vector<epoll_event> events(256);
        bool stop = false;
        while (!stop) {
            const int n = epoll_wait(_ep, events.data(), static_cast<int>(events.size()), _sessions.has_deferred() ? 0 : -1);
            if (n < 0 && errno != EINTR) {
                fmt::print(stderr, "cm-httpd: epoll_wait: {}\n", std::strerror(errno));
                return 1;
            }
            for (int i = 0; i < n; ++i) {
                const epoll_event& ev = events[static_cast<std::size_t>(i)];
                if (ev.data.u64 == signal_id) {
                    stop = _signals.handle(_options, _stats) || stop;
                } else if (ev.data.u64 == listener_id) {
                    accept_all();
                } else if (HttpSession* s = _sessions.find(ev.data.u64); s != nullptr) {
                    if ((ev.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
                        s->on_readable();
                    } else {
                        s->on_writable();
                    }
                    _sessions.settle(ev.data.u64);
                }
            }
            _sessions.run_deferred();
        }
        return 0;
    }

private:
    void add(int fd, std::uint32_t events, std::uint64_t id)
    {
        epoll_event ev{};
        ev.events = events;
        ev.data.u64 = id;
        epoll_ctl(_ep, EPOLL_CTL_ADD, fd, &ev);
    }

    void accept_all()
    {
        for (;;) {
            sockaddr_in peer{};
            socklen_t len = sizeof peer;
            const int fd = accept4(_listener, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EINTR || errno == ECONNABORTED) {
                    continue;
                }
                if (errno != EAGAIN && errno != EWOULDBLOCK && !_options.quiet) {
                    fmt::print(stderr, "cm-httpd: accept: {}\n", std::strerror(errno));
                }
                return;
            }
            const int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            const std::uint64_t id =
                _sessions.add(std::make_unique<HttpSession>(std::make_unique<SocketTransport>(fd, peer), _config, _stats));
            add(fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, id);
            // Nothing to read yet as a rule; the first edge comes from epoll.
        }
    }

    const Config& _config;
    const RunOptions& _options;
    Stats& _stats;
    Signals _signals;
    Sessions _sessions;
    int _ep = -1;
    int _listener = -1;
};

}  // namespace

int run_kernel(const std::string& listen, const Config& config, const RunOptions& options, Stats& stats)
{
    KernelFrontend frontend(config, options, stats);
    return frontend.run(listen);
}

}  // namespace cm::httpd

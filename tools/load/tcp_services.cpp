// cm-tcpservices: the card's TCP test services (firmware/tcp/test_services.hpp) on Linux kernel sockets, so
// benchmarks can compare the card's TCP with Linux's on identical terms: same services, same pattern, same
// byte-count protocol, one epoll thread, non-blocking sockets.
//
//   echo 7, discard 9, chargen 19 (a decimal byte count line within 100 ms, else the pattern until close)
//
//   cm-tcpservices [--address 0.0.0.0] [--port-offset 0]     (ports 7, 9, 19 plus the offset)
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
enum class Service { echo, discard, chargen };

/// Byte `offset` of RFC 864's rotating pattern, exactly as the card's TestServices::chargen_byte.
char chargen_byte(std::uint64_t offset)
{
    const std::uint64_t line = offset / 74;
    const std::uint64_t column = offset % 74;
    if (column == 72) {
        return '\r';
    }
    if (column == 73) {
        return '\n';
    }
    return static_cast<char>(32 + (line + column) % 95);
}

struct Conn {
    Service service;
    std::string pending;           // echo: received, not yet sent back; chargen: the count line so far
    bool counting = true;          // chargen: still waiting for the count line
    bool limited = false;          // chargen: a count was given
    std::uint64_t offset = 0;      // chargen: pattern bytes sent
    std::uint64_t limit = 0;
    bool peer_done = false;        // echo: the client finished sending
    Clock::time_point opened;
};

class Server {
public:
    int run(const std::string& address, int offset)
    {
        signal(SIGPIPE, SIG_IGN);
        rlimit rl{};
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        _ep = epoll_create1(EPOLL_CLOEXEC);
        for (auto [port, service] : {std::pair{7, Service::echo}, {9, Service::discard}, {19, Service::chargen}}) {
            if (!listen_on(address, port + offset, service)) {
                return 1;
            }
        }
        fmt::print("listening on {} ports {} {} {}\n", address, 7 + offset, 9 + offset, 19 + offset);
        std::fflush(stdout);
        std::vector<epoll_event> events(512);
        for (;;) {
            const int n = epoll_wait(_ep, events.data(), static_cast<int>(events.size()), 20);
            for (int i = 0; i < n; ++i) {
                const auto& ev = events[static_cast<std::size_t>(i)];
                const int fd = static_cast<int>(ev.data.u64 & 0xffffffff);
                if (ev.data.u64 >> 32) {
                    accept_all(fd, static_cast<Service>((ev.data.u64 >> 32) - 1));
                } else {
                    serve(fd, ev.events);
                }
            }
            start_unlimited_chargens();
        }
    }

private:
    bool listen_on(const std::string& address, int port, Service service)
    {
        const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        const int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(static_cast<std::uint16_t>(port));
        inet_pton(AF_INET, address.c_str(), &sa.sin_addr);
        if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || listen(fd, 65535) != 0) {
            fmt::print(stderr, "cm-tcpservices: {}:{}: {}\n", address, port, std::strerror(errno));
            return false;
        }
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = (std::uint64_t{static_cast<unsigned>(service) + 1} << 32) | static_cast<std::uint32_t>(fd);
        epoll_ctl(_ep, EPOLL_CTL_ADD, fd, &ev);
        return true;
    }

    void accept_all(int listener, Service service)
    {
        for (;;) {
            const int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                return;
            }
            Conn c{service, {}, true, false, 0, 0, false, Clock::now()};
            c.counting = service == Service::chargen;
            _conns.emplace(fd, std::move(c));
            epoll_event ev{};
            ev.events = EPOLLIN | EPOLLRDHUP;
            ev.data.u64 = static_cast<std::uint32_t>(fd);
            epoll_ctl(_ep, EPOLL_CTL_ADD, fd, &ev);
            if (service == Service::chargen) {
                _waiting_count.push_back(fd);
            }
        }
    }

    void close_conn(int fd)
    {
        epoll_ctl(_ep, EPOLL_CTL_DEL, fd, nullptr);
        ::close(fd);
        _conns.erase(fd);
    }

    void want_write(int fd, bool on)
    {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP | (on ? std::uint32_t{EPOLLOUT} : 0u);
        ev.data.u64 = static_cast<std::uint32_t>(fd);
        epoll_ctl(_ep, EPOLL_CTL_MOD, fd, &ev);
    }

    /// Chargen connections that sent no count within 100 ms get the endless pattern.
    void start_unlimited_chargens()
    {
        const auto now = Clock::now();
        std::vector<int> still;
        for (int fd : _waiting_count) {
            auto it = _conns.find(fd);
            if (it == _conns.end() || !it->second.counting) {
                continue;
            }
            if (now - it->second.opened >= std::chrono::milliseconds(100)) {
                it->second.counting = false;
                want_write(fd, true);
            } else {
                still.push_back(fd);
            }
        }
        _waiting_count.swap(still);
    }

    void serve(int fd, std::uint32_t events)
    {
        auto it = _conns.find(fd);
        if (it == _conns.end()) {
            return;
        }
        Conn& c = it->second;
        char buf[65536];
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
            for (;;) {
                // Echo takes input only as fast as it can send it back (backpressure, like the card).
                if (c.service == Service::echo && c.pending.size() >= sizeof buf) {
                    break;
                }
                const ssize_t n = recv(fd, buf, sizeof buf, 0);
                if (n > 0) {
                    if (c.service == Service::echo) {
                        c.pending.append(buf, static_cast<std::size_t>(n));
                    } else if (c.service == Service::chargen && c.counting) {
                        c.pending.append(buf, static_cast<std::size_t>(n));
                        parse_count(fd, c);
                    }
                    continue;
                }
                if (n == 0) {
                    if (c.service == Service::echo) {
                        c.peer_done = true;
                    } else {
                        close_conn(fd);
                        return;
                    }
                } else if (errno != EAGAIN) {
                    close_conn(fd);
                    return;
                }
                break;
            }
        }
        if (c.service == Service::echo) {
            while (!c.pending.empty()) {
                const ssize_t n = send(fd, c.pending.data(), c.pending.size(), MSG_NOSIGNAL);
                if (n <= 0) {
                    break;
                }
                c.pending.erase(0, static_cast<std::size_t>(n));
            }
            if (c.pending.empty() && c.peer_done) {
                close_conn(fd);
                return;
            }
            want_write(fd, !c.pending.empty());
            return;
        }
        if (c.service == Service::chargen && !c.counting) {
            for (int round = 0; round < 16; ++round) {
                std::size_t len = sizeof buf;
                if (c.limited) {
                    len = static_cast<std::size_t>(std::min<std::uint64_t>(len, c.limit - c.offset));
                }
                if (len == 0) {
                    shutdown(fd, SHUT_WR);
                    want_write(fd, false);
                    return;
                }
                for (std::size_t k = 0; k < len; ++k) {
                    buf[k] = chargen_byte(c.offset + k);
                }
                const ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
                if (n <= 0) {
                    if (n < 0 && errno != EAGAIN) {
                        close_conn(fd);
                    }
                    return;
                }
                c.offset += static_cast<std::uint64_t>(n);
            }
        }
    }

    void parse_count(int fd, Conn& c)
    {
        const auto nl = c.pending.find('\n');
        if (nl == std::string::npos && c.pending.size() <= 21) {
            return;
        }
        const std::string line = c.pending.substr(0, nl);
        c.counting = false;
        c.pending.clear();
        if (!line.empty() && line.size() <= 20 && line.find_first_not_of("0123456789") == std::string::npos) {
            c.limited = true;
            c.limit = std::stoull(line);
        }
        want_write(fd, true);
    }

    int _ep = -1;
    std::unordered_map<int, Conn> _conns;
    std::vector<int> _waiting_count;
};

}  // namespace

int main(int argc, char** argv)
{
    std::string address = "0.0.0.0";
    int offset = 0;
    CLI::App app{"The card's TCP test services (echo 7, discard 9, chargen 19) on Linux sockets: the baseline.",
                 "cm-tcpservices"};
    app.add_option("--address", address, "address to listen on")->capture_default_str();
    app.add_option("--port-offset", offset, "added to 7, 9 and 19 (to run unprivileged)")->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    return Server().run(address, offset);
}

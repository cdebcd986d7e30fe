// bus_client: a libcm application for the bus integration tests, talking to cmfw's echo service.
//
//   bus_client [--device PATH] info
//   bus_client [--device PATH] echo  [--conns N] [--bytes B] [--seed S]   connect to the echo service, send B
//                                    pseudo-random bytes on each of N connections, check the echo byte for byte
//   bus_client [--device PATH] dial  [--port P] [--conns N] [--bytes B] [--epoll]
//                                    listen, let the echo service dial in (as the proxy will for clients),
//                                    accept with the client's address, check the echo; --epoll: drive it all
//                                    from epoll on cm_qp_fd with non-blocking calls
//   bus_client [--device PATH] stream   echo forever (for kill tests); prints "streaming" once going
//   bus_client [--device PATH] hog      write without reading until blocked, then sleep (for kill tests)
//   bus_client [--device PATH] errors   API error cases return the documented codes; deferred doorbells
// Exit 0 when everything checked out; failures are printed.
#include "cm/cm.h"
#include "cm/cm.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

int failures = 0;

#define EXPECT(cond, ...)                                          \
    do {                                                           \
        if (!(cond)) {                                             \
            std::fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            std::fprintf(stderr, __VA_ARGS__);                     \
            std::fprintf(stderr, "\n");                            \
            ++failures;                                            \
        }                                                          \
    } while (0)

[[noreturn]] void die(const char* what, int rc)
{
    std::fprintf(stderr, "bus_client: %s: %s\n", what, cm_strerror(rc));
    std::exit(1);
}

std::vector<unsigned char> pattern(std::size_t n, unsigned seed)
{
    std::vector<unsigned char> v(n);
    std::mt19937 rng(seed);
    for (auto& b : v) {
        b = static_cast<unsigned char>(rng());
    }
    return v;
}

struct Stream {
    cm_conn* conn = nullptr;
    std::vector<unsigned char> out;
    std::vector<unsigned char> in;
    std::size_t sent = 0;
    bool shut = false;
    bool eof = false;
};

/// Pumps every stream (non-blocking writes and reads) until all are echoed back and closed by EOF.
/// With epoll_fd >= 0 it sleeps in epoll on the queue pair's fd between rounds.
void pump(cm_qp* qp, std::vector<Stream>& streams, int epoll_fd)
{
    std::vector<unsigned char> buf(65536);
    std::size_t done = 0;
    while (done < streams.size()) {
        bool progress = false;
        done = 0;
        for (Stream& s : streams) {
            if (s.sent < s.out.size()) {
                const ssize_t n = cm_write(s.conn, s.out.data() + s.sent, s.out.size() - s.sent, CM_NONBLOCK);
                if (n > 0) {
                    s.sent += static_cast<std::size_t>(n);
                    progress = true;
                } else if (n != -EAGAIN) {
                    die("cm_write", static_cast<int>(n));
                }
            }
            if (s.sent == s.out.size() && !s.shut) {
                if (int rc = cm_shutdown(s.conn); rc != 0) {
                    die("cm_shutdown", rc);
                }
                s.shut = true;
                progress = true;
            }
            while (!s.eof) {
                const ssize_t n = cm_read(s.conn, buf.data(), buf.size(), CM_NONBLOCK);
                if (n == -EAGAIN) {
                    break;
                }
                if (n < 0) {
                    die("cm_read", static_cast<int>(n));
                }
                if (n == 0) {
                    s.eof = true;
                } else {
                    s.in.insert(s.in.end(), buf.begin(), buf.begin() + n);
                }
                progress = true;
            }
            done += s.eof ? 1 : 0;
        }
        if (!progress && done < streams.size()) {
            if (epoll_fd >= 0) {
                cm_ready ready[64];
                int n = cm_qp_poll(qp, ready, 64, 0);
                if (n < 0) {
                    die("cm_qp_poll", n);
                }
                if (n == 0) {
                    epoll_event ev{};
                    if (epoll_wait(epoll_fd, &ev, 1, 5000) == 0) {
                        die("epoll_wait: no event in 5 s", -ETIMEDOUT);
                    }
                }
            } else {
                cm_ready ready[64];
                if (int n = cm_qp_poll(qp, ready, 64, 5000); n < 0) {
                    die("cm_qp_poll", n);
                }
            }
        }
    }
    for (Stream& s : streams) {
        EXPECT(s.in == s.out, "echo differs: sent %zu bytes, got %zu back", s.out.size(), s.in.size());
        EXPECT(cm_close(s.conn) == 0, "cm_close");
    }
}

int cmd_echo(cm_qp* qp, int conns, std::size_t bytes, unsigned seed)
{
    std::vector<Stream> streams(static_cast<std::size_t>(conns));
    for (int i = 0; i < conns; ++i) {
        cm_conn_info info{};
        if (int rc = cm_connect(qp, CM_CLIENT_ECHO, &streams[static_cast<std::size_t>(i)].conn, &info); rc != 0) {
            die("cm_connect(echo)", rc);
        }
        streams[static_cast<std::size_t>(i)].out = pattern(bytes + static_cast<std::size_t>(i), seed + static_cast<unsigned>(i));
    }
    pump(qp, streams, -1);
    std::printf("echo: %d connection(s), %zu bytes each, %s\n", conns, bytes, failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 1;
}

int cmd_dial(cm_qp* qp, std::uint16_t port, int conns, std::size_t bytes, bool use_epoll)
{
    cm_listener* l = nullptr;
    if (int rc = cm_listen(qp, port, &l); rc != 0) {
        die("cm_listen", rc);
    }
    int epoll_fd = -1;
    if (use_epoll) {
        epoll_fd = epoll_create1(0);
        epoll_event ev{};
        ev.events = EPOLLIN;
        if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, cm_qp_fd(qp), &ev) != 0) {
            die("epoll_ctl", -errno);
        }
    }
    if (int rc = cm_set_global(qp, CM_GOPT_ECHO_DIAL, port | static_cast<std::uint64_t>(conns) << 16); rc != 0) {
        die("cm_set_global(ECHO_DIAL)", rc);
    }
    std::vector<Stream> streams;
    while (static_cast<int>(streams.size()) < conns) {
        cm_conn* c = nullptr;
        cm_conn_info info{};
        const int rc = cm_accept(l, &c, &info, use_epoll ? CM_NONBLOCK : 0);
        if (rc == -EAGAIN) {
            cm_ready ready[8];
            if (cm_qp_poll(qp, ready, 8, 0) == 0) {
                epoll_event ev{};
                EXPECT(epoll_wait(epoll_fd, &ev, 1, 5000) == 1, "no accept readiness in 5 s");
            }
            continue;
        }
        if (rc != 0) {
            die("cm_accept", rc);
        }
        EXPECT(info.client.ipv4 == 0xc0000201, "client address %08x, want 192.0.2.1", info.client.ipv4);
        EXPECT(info.client.port >= 40000, "client port %u", info.client.port);
        EXPECT(info.local.port == port, "local port %u, want %u", info.local.port, port);
        Stream s;
        s.conn = c;
        s.out = pattern(bytes, static_cast<unsigned>(streams.size()) + 100);
        streams.push_back(std::move(s));
    }
    pump(qp, streams, epoll_fd);
    EXPECT(cm_listener_close(l) == 0, "cm_listener_close");
    if (epoll_fd >= 0) {
        close(epoll_fd);
    }
    std::printf("dial: %d connection(s) accepted on port %u, %zu bytes each%s, %s\n", conns, port, bytes,
                use_epoll ? " (epoll)" : "", failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 1;
}

int cmd_stream(cm_qp* qp)
{
    cm_conn* c = nullptr;
    if (int rc = cm_connect(qp, CM_CLIENT_ECHO, &c, nullptr); rc != 0) {
        die("cm_connect", rc);
    }
    std::vector<unsigned char> out(256 * 1024, 0x5a);
    std::vector<unsigned char> in(out.size());
    bool said = false;
    for (;;) {
        const ssize_t w = cm_write(c, out.data(), out.size(), CM_NONBLOCK);
        if (w < 0 && w != -EAGAIN) {
            die("cm_write", static_cast<int>(w));
        }
        const ssize_t r = cm_read(c, in.data(), in.size(), CM_NONBLOCK);
        if (r < 0 && r != -EAGAIN) {
            die("cm_read", static_cast<int>(r));
        }
        if (!said && r > 0) {
            std::printf("streaming\n");
            std::fflush(stdout);
            said = true;
        }
    }
}

int cmd_hog(cm_qp* qp)
{
    cm_conn* c = nullptr;
    if (int rc = cm_connect(qp, CM_CLIENT_ECHO, &c, nullptr); rc != 0) {
        die("cm_connect", rc);
    }
    std::vector<unsigned char> out(64 * 1024, 0xa5);
    std::size_t total = 0;
    for (int idle = 0; idle < 200;) {
        const ssize_t w = cm_write(c, out.data(), out.size(), CM_NONBLOCK);
        if (w > 0) {
            total += static_cast<std::size_t>(w);
            idle = 0;
        } else {
            cm_ready ready[4];
            (void)cm_qp_poll(qp, ready, 4, 1);
            ++idle;
        }
    }
    std::printf("hogging: %zu bytes written, never read\n", total);
    std::fflush(stdout);
    for (;;) {
        pause();
    }
}

/// Listens and waits for a connection that never comes, blocked in cm_accept or (--epoll) in an epoll of
/// the application's own on cm_qp_fd. Prints "waiting", then how the wait ended; exits 0 when it ended with
/// -ENODEV (the card went away), 1 otherwise.
int cmd_wait_card(cm_qp* qp, std::uint16_t port, bool use_epoll)
{
    cm_listener* l = nullptr;
    if (int rc = cm_listen(qp, port, &l); rc != 0) {
        die("cm_listen", rc);
    }
    std::printf("waiting\n");
    std::fflush(stdout);
    int rc = 0;
    if (use_epoll) {
        const int ep = epoll_create1(EPOLL_CLOEXEC);
        epoll_event ev{};
        ev.events = EPOLLIN;
        epoll_ctl(ep, EPOLL_CTL_ADD, cm_qp_fd(qp), &ev);
        for (int round = 0; round < 600 && rc == 0; ++round) {
            if (epoll_wait(ep, &ev, 1, 100) > 0) {
                cm_ready ready[4];
                const int n = cm_qp_poll(qp, ready, 4, 0);
                rc = n < 0 ? n : 0;
            }
        }
        ::close(ep);
    } else {
        cm_conn* c = nullptr;
        rc = cm_accept(l, &c, nullptr, 0);
    }
    std::printf("ended: %s\n", rc == 0 ? "no error" : cm_strerror(rc));
    return rc == -ENODEV ? 0 : 1;
}

int cmd_errors(cm_qp* qp)
{
    cm_listener* l = nullptr;
    cm_listener* l2 = nullptr;
    EXPECT(cm_listen(qp, 7001, &l) == 0, "listen");
    EXPECT(cm_listen(qp, 7001, &l2) == -EADDRINUSE, "listen twice");
    cm_conn* c = nullptr;
    EXPECT(cm_accept(l, &c, nullptr, CM_NONBLOCK) == -EAGAIN, "accept with nothing pending");
    EXPECT(cm_connect(qp, 12345, &c, nullptr) == -ECONNREFUSED, "connect to an unknown client");
    EXPECT(cm_set_global(qp, 999, 1) == -EOPNOTSUPP, "unknown global option");
    EXPECT(cm_set_global(qp, CM_GOPT_ECHO_DIAL, 7002 | (1ULL << 16)) == -ENOENT, "dial a port nobody listens on");
    EXPECT(cm_set_global(qp, CM_GOPT_HEARTBEAT_MS, 5) == -EINVAL, "heartbeat out of range");
    EXPECT(cm_connect(qp, CM_CLIENT_ECHO, &c, nullptr) == 0, "connect to echo");
    EXPECT(cm_conn_setopt(c, CM_OPT_RECV_WINDOW, 0) == -EINVAL, "window 0");
    EXPECT(cm_conn_setopt(c, CM_OPT_RECV_WINDOW, 4) == 0, "window 4");
    EXPECT(cm_conn_setopt(c, 77, 1) == -EINVAL, "unknown option");
    char buf[16];
    EXPECT(cm_read(c, buf, sizeof buf, CM_NONBLOCK) == -EAGAIN, "read with nothing pending");
    EXPECT(cm_shutdown(c) == 0, "shutdown");
    EXPECT(cm_write(c, "x", 1, 0) == -EPIPE, "write after shutdown");
    EXPECT(cm_read(c, buf, sizeof buf, 0) == 0, "EOF echoed back");
    EXPECT(cm_reset(c) == 0, "reset");
    EXPECT(cm_listener_close(l) == 0, "unlisten");
    // Deferred doorbells: a write leaves the sleeping card unrung until cm_qp_flush rings it once. The card
    // is asleep after 20 ms idle (unless its heartbeat woke it just then: a few tries).
    EXPECT(cm_qp_flush(nullptr) == -EINVAL, "flush without a queue pair");
    EXPECT(cm_connect(qp, CM_CLIENT_ECHO, &c, nullptr) == 0, "connect to echo (deferred doorbells)");
    cm_qp_set_defer_doorbell(qp, 1);
    bool deferred_then_rung = false;
    for (int attempt = 0; attempt < 5 && !deferred_then_rung; ++attempt) {
        cm_qp_stats before{}, written{}, flushed{};
        usleep(20000);
        cm_qp_get_stats(qp, &before);
        EXPECT(cm_write(c, "deferred", 8, CM_NONBLOCK) == 8, "write with the doorbell deferred");
        EXPECT(cm_write(c, "deferred", 8, CM_NONBLOCK) == 8, "second write with the doorbell deferred");
        cm_qp_get_stats(qp, &written);
        EXPECT(written.doorbells == before.doorbells, "no doorbell before the flush (%llu -> %llu)",
               static_cast<unsigned long long>(before.doorbells), static_cast<unsigned long long>(written.doorbells));
        EXPECT(cm_qp_flush(qp) == 0, "flush");
        cm_qp_get_stats(qp, &flushed);
        EXPECT(flushed.doorbells <= before.doorbells + 1, "at most one doorbell for both writes");
        deferred_then_rung = flushed.doorbells == before.doorbells + 1;
        EXPECT(cm_qp_flush(qp) == 0, "flush again");
        cm_qp_stats again{};
        cm_qp_get_stats(qp, &again);
        EXPECT(again.doorbells == flushed.doorbells, "nothing owed after a flush: no second doorbell");
        char echo[16];
        std::size_t have = 0;
        while (have < 16) {
            const ssize_t r = cm_read(c, echo + have, 16 - have, 0);
            if (r <= 0) {
                EXPECT(r > 0, "read the deferred writes back: %s", cm_strerror(static_cast<int>(r)));
                break;
            }
            have += static_cast<std::size_t>(r);
        }
        EXPECT(have == 16 && std::memcmp(echo, "deferreddeferred", 16) == 0, "deferred writes echoed");
    }
    EXPECT(deferred_then_rung, "cm_qp_flush rang the sleeping card (5 tries)");
    cm_qp_set_defer_doorbell(qp, 0);
    EXPECT(cm_reset(c) == 0, "reset the deferred-doorbell connection");
    // The C++ layer: the same through std::error_code.
    std::error_code ec;
    cm::QueuePair borrowed(qp);
    cm::Connection conn = borrowed.connect(CM_CLIENT_ECHO, ec);
    EXPECT(!ec, "C++ connect: %s", ec.message().c_str());
    const std::byte hello[5]{std::byte{'h'}, std::byte{'e'}, std::byte{'l'}, std::byte{'l'}, std::byte{'o'}};
    EXPECT(conn.write(hello, ec) == 5 && !ec, "C++ write");
    std::byte back[5]{};
    std::size_t got = 0;
    while (got < 5 && !ec) {
        got += conn.read(std::span<std::byte>(back).subspan(got), ec);
    }
    EXPECT(got == 5 && std::memcmp(back, hello, 5) == 0, "C++ read back");
    (void)borrowed.connect(12345, ec);
    EXPECT(ec == std::errc::connection_refused, "C++ connect refused: %s", ec.message().c_str());
    conn.close();
    (void)borrowed.release();
    std::printf("errors: %s\n", failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv)
{
    std::string device;
    std::string mode;
    int conns = 4;
    std::size_t bytes = 1 << 20;
    unsigned seed = 1;
    std::uint16_t port = 8080;
    bool use_epoll = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
        if (a == "--device") {
            device = next();
        } else if (a == "--conns") {
            conns = std::atoi(next().c_str());
        } else if (a == "--bytes") {
            bytes = std::strtoull(next().c_str(), nullptr, 10);
        } else if (a == "--seed") {
            seed = static_cast<unsigned>(std::atoi(next().c_str()));
        } else if (a == "--port") {
            port = static_cast<std::uint16_t>(std::atoi(next().c_str()));
        } else if (a == "--epoll") {
            use_epoll = true;
        } else {
            mode = a;
        }
    }
    cm_device* dev = nullptr;
    if (int rc = cm_device_open(device.empty() ? nullptr : device.c_str(), &dev); rc != 0) {
        die("cm_device_open", rc);
    }
    if (mode == "info") {
        cm_device_info info{};
        cm_device_get_info(dev, &info);
        std::printf("path=%s peer=%u fw=%s state=%u qps=%u slot_size=%u slots_per_qp=%u credit=%u memory=%llu\n",
                    info.path, info.peer_id, info.fw_version_str, info.fw_state, info.qp_count, info.slot_size,
                    info.slots_per_qp, info.conn_credit, static_cast<unsigned long long>(info.memory_size));
        cm_device_close(dev);
        return 0;
    }
    cm_qp* qp = nullptr;
    if (int rc = cm_qp_open(dev, &qp); rc != 0) {
        die("cm_qp_open", rc);
    }
    int rc = 2;
    if (mode == "echo") {
        rc = cmd_echo(qp, conns, bytes, seed);
    } else if (mode == "dial") {
        rc = cmd_dial(qp, port, conns, bytes, use_epoll);
    } else if (mode == "stream") {
        rc = cmd_stream(qp);
    } else if (mode == "hog") {
        rc = cmd_hog(qp);
    } else if (mode == "wait-card") {
        rc = cmd_wait_card(qp, port, use_epoll);
    } else if (mode == "errors") {
        rc = cmd_errors(qp);
    } else {
        std::fprintf(stderr, "bus_client: unknown mode '%s'\n", mode.c_str());
    }
    cm_qp_close(qp);
    cm_device_close(dev);
    return rc;
}

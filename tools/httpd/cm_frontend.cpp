// The cm front end: the card's bus connections through libcm. The card has already terminated the clients'
// TCP connections and buffered their requests; a bus connection carries complete requests (possibly many in
// a row, from the card's connection pool) and takes our responses. One queue pair, one epoll loop:
// cm_qp_fd() is readable when the queue pair has events, cm_qp_poll() says which listener or connection
// became ready (edge-triggered), and the sessions read and write with CM_NONBLOCK until -EAGAIN.
//
// -ECONNRESET (the card reset a connection) ends that session only. -ENODEV (the card went away) and -EIO
// (the queue pair faulted) end the program with status 1.
#include "frontend.hpp"

#include <cm/cm.h>

#include <fmt/core.h>

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>

namespace cm::httpd {

namespace {

constexpr std::uint64_t signal_id = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint64_t qp_id = signal_id - 1;
constexpr int poll_batch = 64;

bool fatal_error(long rc) { return rc == -ENODEV || rc == -EIO; }

/// One bus connection. `fatal` is the front end's: set when the card is gone, checked after each event.
class BusTransport final : public Transport {
public:
    BusTransport(cm_conn* conn, const cm_conn_info& info, int& fatal) : _conn(conn), _info(info), _fatal(fatal) {}

    ssize_t read(void* buf, std::size_t len) override { return note(cm_read(_conn, buf, len, CM_NONBLOCK)); }
    ssize_t writev(const iovec* iov, int count) override { return note(cm_writev(_conn, iov, count, CM_NONBLOCK)); }
    // cm_close: what we wrote is still delivered to the client by the card; the handle is freed at once.
    void close() override { (void)cm_close(_conn); }

    PeerAddress peer() const override
    {
        const std::uint32_t a = _info.client.ipv4;
        return {fmt::format("{}.{}.{}.{}:{}", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff, _info.client.port),
                "bus"};
    }

private:
    ssize_t note(ssize_t rc)
    {
        if (fatal_error(rc) && _fatal == 0) {
            _fatal = static_cast<int>(rc);
        }
        return rc;
    }

    cm_conn* _conn;
    cm_conn_info _info;
    int& _fatal;
};

class CmFrontend {
public:
    CmFrontend(const Config& config, const RunOptions& options, Stats& stats)
        : _config(config), _options(options), _stats(stats), _sessions([this](std::uint64_t id) { forget(id); })
    {
    }
    ~CmFrontend()
    {
        if (_fatal != 0) {
            _sessions.abandon_all();
        } else {
            if (_listener != nullptr) {
                (void)cm_listener_close(_listener);
            }
            _sessions.clear();
        }
        if (_qp != nullptr) {
            cm_qp_close(_qp);
        }
        if (_dev != nullptr) {
            cm_device_close(_dev);
        }
        if (_ep >= 0) {
            ::close(_ep);
        }
    }
    CmFrontend(const CmFrontend&) = delete;
    CmFrontend& operator=(const CmFrontend&) = delete;

    int run(const std::string& device, std::uint16_t port)
    {
        const char* path = device.empty() ? nullptr : device.c_str();
        if (int rc = cm_device_open(path, &_dev); rc != 0) {
            fmt::print(stderr, "cm-httpd: cannot open the card {}: {}\n", device.empty() ? "(default)" : device,
                       cm_strerror(rc));
            return 1;
        }
        if (int rc = cm_qp_open(_dev, &_qp); rc != 0) {
            fmt::print(stderr, "cm-httpd: cm_qp_open: {}\n", cm_strerror(rc));
            return 1;
        }
        if (int rc = cm_listen(_qp, port, &_listener); rc != 0) {
            fmt::print(stderr, "cm-httpd: cm_listen on the card's port {}: {}\n", port, cm_strerror(rc));
            return 1;
        }
        // A round answers many requests; the card is rung once, before the loop sleeps (cm_qp_flush below).
        cm_qp_set_defer_doorbell(_qp, _options.defer_doorbell ? 1 : 0);
        _ep = epoll_create1(EPOLL_CLOEXEC);
        add(cm_qp_fd(_qp), qp_id);
        add(_signals.fd(), signal_id);
        cm_device_info info{};
        (void)cm_device_get_info(_dev, &info);
        if (!_options.quiet) {
            fmt::print(stderr, "cm-httpd: cm backend listening on the card's port {} ({}, firmware {})\n", port,
                       info.path, info.fw_version_str);
        }
        if (!_options.ready_file.empty() &&
            !write_file_atomically(_options.ready_file, fmt::format("backend=cm\ndevice={}\nport={}\npid={}\n",
                                                                    info.path, port, getpid()))) {
            return 1;
        }

        // The fd only promises a wake-up for events after a cm_qp_poll that left nothing ready: poll once
        // first (cm_listen may already have taken in connections that came right after its answer).
        drain_queue_pair();
        epoll_event events[16];
        bool stop = false;
        while (!stop && _fatal == 0) {
            if (const int rc = cm_qp_flush(_qp); rc < 0) {
                _fatal = rc;
                break;
            }
            const int n = epoll_wait(_ep, events, 16, _sessions.has_deferred() ? 0 : -1);
            if (n < 0 && errno != EINTR) {
                fmt::print(stderr, "cm-httpd: epoll_wait: {}\n", std::strerror(errno));
                return 1;
            }
            for (int i = 0; i < n; ++i) {
                if (events[i].data.u64 == signal_id) {
                    stop = _signals.handle(_options, _stats) || stop;
                }
            }
            // The queue pair is polled on every round: cheap when idle, and it also picks up what libcm
            // took in during the sessions' own calls.
            drain_queue_pair();
            _sessions.run_deferred();
            drain_queue_pair();
        }
        if (_fatal != 0) {
            fmt::print(stderr, "cm-httpd: the card went away ({}): exiting\n", cm_strerror(_fatal));
            return 1;
        }
        return 0;
    }

private:
    void add(int fd, std::uint64_t id)
    {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = id;
        epoll_ctl(_ep, EPOLL_CTL_ADD, fd, &ev);
    }

    /// cm_qp_poll until it returns fewer entries than asked (it re-arms the fd's notification then).
    void drain_queue_pair()
    {
        cm_ready ready[poll_batch];
        int n = poll_batch;
        while (n == poll_batch && _fatal == 0) {
            n = cm_qp_poll(_qp, ready, poll_batch, 0);
            if (n < 0) {
                _fatal = fatal_error(n) ? n : -EIO;
                return;
            }
            for (int i = 0; i < n && _fatal == 0; ++i) {
                if (ready[i].listener != nullptr) {
                    accept_all();
                } else {
                    serve(ready[i].conn, ready[i].events);
                }
            }
        }
    }

    void accept_all()
    {
        for (;;) {
            cm_conn* conn = nullptr;
            cm_conn_info info{};
            const int rc = cm_accept(_listener, &conn, &info, CM_NONBLOCK);
            if (rc == -EAGAIN) {
                return;
            }
            if (rc != 0) {
                if (fatal_error(rc)) {
                    _fatal = rc;
                } else if (!_options.quiet) {
                    fmt::print(stderr, "cm-httpd: cm_accept: {}\n", cm_strerror(rc));
                }
                return;
            }
            const std::uint64_t id = _sessions.add(
                std::make_unique<HttpSession>(std::make_unique<BusTransport>(conn, info, _fatal), _config, _stats));
            _conn_of[id] = conn;
            _id_of[conn] = id;
            // Its data may already be here (the request usually comes with the connection).
            if (HttpSession* s = _sessions.find(id); s != nullptr) {
                s->pump();
                _sessions.settle(id);
            }
        }
    }

    /// A ready entry for a connection. Entries may name connections closed meanwhile (not found: skipped)
    /// or, after the handle's memory was reused, a newer connection: a spurious event, which costs one
    /// read that says -EAGAIN.
    void serve(cm_conn* conn, std::uint32_t events)
    {
        const auto it = _id_of.find(conn);
        if (it == _id_of.end()) {
            return;
        }
        const std::uint64_t id = it->second;
        HttpSession* s = _sessions.find(id);
        if (s == nullptr) {
            return;
        }
        if ((events & (CM_READY_READ | CM_READY_CLOSED)) != 0) {
            s->on_readable();  // data, end of data or a reset: the read says which
        } else {
            s->on_writable();
        }
        _sessions.settle(id);
    }

    void forget(std::uint64_t id)
    {
        const auto it = _conn_of.find(id);
        if (it == _conn_of.end()) {
            return;
        }
        if (const auto c = _id_of.find(it->second); c != _id_of.end() && c->second == id) {
            _id_of.erase(c);
        }
        _conn_of.erase(it);
    }

    const Config& _config;
    const RunOptions& _options;
    Stats& _stats;
    Signals _signals;
    int _fatal = 0;  // -ENODEV or -EIO: the card is gone
    cm_device* _dev = nullptr;
    cm_qp* _qp = nullptr;
    cm_listener* _listener = nullptr;
    int _ep = -1;
    std::unordered_map<std::uint64_t, cm_conn*> _conn_of;
    std::unordered_map<cm_conn*, std::uint64_t> _id_of;
    Sessions _sessions;  // last: destroyed first, while the maps its callback uses still exist
};

}  // namespace

int run_cm(const std::string& device, std::uint16_t port, const Config& config, const RunOptions& options,
           Stats& stats)
{
    CmFrontend frontend(config, options, stats);
    return frontend.run(device, port);
}

}  // namespace cm::httpd

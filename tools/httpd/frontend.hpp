// cm-httpd's two front ends and what they share: the table of sessions, the signals, the ready file.
// A front end owns one epoll loop: it accepts connections, wraps each in a Transport and an HttpSession,
// and tells the session when its connection became readable or writable. Nothing HTTP happens here.
#pragma once

#include "http_session.hpp"
#include "stats.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace cm::httpd {

struct RunOptions {
    std::string stats_file;  // written on SIGUSR1 (and by main at exit)
    std::string ready_file;  // written once listening
    bool quiet = false;
    bool defer_doorbell = true;  // cm: one doorbell to the card per loop round, not one per call (cm_qp_flush)
};

/// The sessions of a front end by id, and the ones that stopped early to let others run (pumped again
/// after the current batch of events).
class Sessions {
public:
    /// Called with a session's id just before the session is destroyed.
    explicit Sessions(std::function<void(std::uint64_t)> on_destroy = {}) : _on_destroy(std::move(on_destroy)) {}

    std::uint64_t add(std::unique_ptr<HttpSession> session);
    /// nullptr when the session is gone (an event for a connection already closed).
    HttpSession* find(std::uint64_t id);
    /// After a session ran: destroys it if it closed, or remembers it if it wants to run again.
    void settle(std::uint64_t id);
    bool has_deferred() const { return !_deferred.empty(); }
    /// Pumps every session that asked to run again, once.
    void run_deferred();
    /// The transports are gone (the card went away): drop every session without touching them.
    void abandon_all();
    /// Closes (through the destructors) and drops every session.
    void clear();

private:
    void destroy(std::uint64_t id);

    std::unordered_map<std::uint64_t, std::unique_ptr<HttpSession>> _sessions;
    std::vector<std::uint64_t> _deferred;
    std::uint64_t _next_id = 1;
    std::function<void(std::uint64_t)> _on_destroy;
};

/// SIGTERM, SIGINT and SIGUSR1, blocked and read from a signalfd that sits in the front end's epoll set.
class Signals {
public:
    Signals();
    ~Signals();
    Signals(const Signals&) = delete;
    Signals& operator=(const Signals&) = delete;
    int fd() const { return _fd; }
    /// Reads the pending signals: SIGUSR1 writes the stats file. True when the server should stop.
    bool handle(const RunOptions& options, const Stats& stats);

private:
    int _fd = -1;
};

/// Writes `text` to `path` through a temporary file and a rename; prints why on failure.
bool write_file_atomically(const std::string& path, const std::string& text);

/// Linux sockets on `listen` ("IP:PORT"). Returns the exit status.
int run_kernel(const std::string& listen, const Config& config, const RunOptions& options, Stats& stats);
/// The card's bus connections through libcm, on the card's `port`. Returns the exit status.
int run_cm(const std::string& device, std::uint16_t port, const Config& config, const RunOptions& options,
           Stats& stats);

}  // namespace cm::httpd

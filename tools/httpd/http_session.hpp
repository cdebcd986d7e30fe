// HttpSession: one HTTP/1.1 connection of cm-httpd, whichever front end (card bus or kernel socket) it came
// from. The front ends differ only in the Transport they give a session and in how they learn that a
// connection became readable or writable; everything HTTP is here.
//
// Call order: front end event -> on_readable()/on_writable() -> pump(): parse what is buffered and queue
// responses (process_input) -> hand the output queue to the transport (flush) -> read more (read_some) ->
// round again while something moved -> close when done (maybe_close). Readiness is edge-triggered for both
// front ends: a session reads and writes until the transport says -EAGAIN, and the front end tells it again
// only when that changes. A session that stops early to be fair to others says so with wants_more().
#pragma once

#include "stats.hpp"

#include <llhttp.h>

#include <sys/types.h>
#include <sys/uio.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX

namespace cm::httpd {

/// The connection's peer as its transport knows it.
struct PeerAddress {
    std::string text;    // "A.B.C.D:PORT"
    const char* source;  // "bus" (cm_conn_info.client) or "socket" (getpeername)
};

/// How a session reaches its connection. Owned by the session; single-threaded like everything here.
class Transport {
public:
    virtual ~Transport() = default;
    /// Up to `len` bytes: > 0 bytes read, 0 at the end of the peer's data, -EAGAIN when none now (a
    /// readable event follows), another negative errno when the connection failed or was reset.
    virtual ssize_t read(void* buf, std::size_t len) = 0;
    /// Bytes taken (> 0), -EAGAIN when none can be taken now (a writable event follows), or a negative
    /// errno when the connection failed.
    virtual ssize_t writev(const iovec* iov, int count) = 0;
    /// Ends the connection; bytes already taken are still delivered to the peer. Called at most once,
    /// and nothing else is called after it.
    virtual void close() = 0;
    virtual PeerAddress peer() const = 0;
};

/// What the routes serve; shared by every session.
struct Config {
    std::uint64_t body_size = 64;              // GET /
    std::string root;                          // realpath of --root; empty: /files/ answers 404
    std::uint64_t max_body = 64ULL << 20;      // POST /echo keeps the body in memory: larger is 413
};

/// Byte `offset` of the deterministic content of GET / and GET /bytes/N: "0123456789abcdef" repeated.
inline char pattern_byte(std::uint64_t offset) { return "0123456789abcdef"[offset % 16]; }

/// An owned file descriptor.
class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : _fd(fd) {}
    UniqueFd(UniqueFd&& other) noexcept : _fd(std::exchange(other._fd, -1)) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept;
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd();
    int get() const { return _fd; }

private:
    int _fd = -1;
};

class HttpSession {
public:
    HttpSession(std::unique_ptr<Transport> transport, const Config& config, Stats& stats);
    ~HttpSession();  // closes the transport if the session has not
    HttpSession(const HttpSession&) = delete;
    HttpSession& operator=(const HttpSession&) = delete;

    /// The connection has something to read (data, end of data or a reset).
    void on_readable();
    /// The connection can take output again.
    void on_writable();
    /// Serves whatever it can now (what on_readable/on_writable do after noting the event).
    void pump();
    /// True once the transport is closed: the front end destroys the session.
    bool closed() const { return _closed; }
    /// True when the session stopped with input still to read (fairness): pump() it again soon.
    bool wants_more() const { return !_closed && _yielded; }
    /// The transport is gone without a close (the card went away): the session must not touch it again.
    void abandon();

private:
    enum class Route { root, bytes, files, sha256, echo, whoami, close_early, status, not_found };

    /// One piece of the output queue: bytes in memory, a stretch of the pattern, or a stretch of a file.
    struct Output {
        enum class Kind { bytes, pattern, file };
        Kind kind = Kind::bytes;
        std::string data;             // bytes; file: read from the file, not yet written
        std::size_t offset = 0;       // into data
        std::uint64_t position = 0;   // pattern: the next byte's offset; file: the next offset to read
        std::uint64_t remaining = 0;  // pattern: bytes still to write; file: bytes still to read
        UniqueFd file;
        std::uint32_t ends = 0;       // responses this piece is the last of
    };

    /// The request being parsed. Reset at each message's first byte.
    struct Request {
        std::string url;
        std::string field;            // the header field being read
        std::string value;
        std::string forwarded;        // Forwarded:
        bool expect_continue = false;
        std::size_t head_bytes = 0;   // URL and headers, against the limit
        Route route = Route::not_found;
        bool head = false;            // HEAD: the same headers, no body
        std::uint64_t argument = 0;   // /bytes/N, /status/NNN
        std::string path;             // /files/: the resolved file
        int file_status = 0;          // /files/: 0, 403 or 404
        std::string body;             // /echo
        std::uint64_t body_bytes = 0;
        evp_md_ctx_st* sha = nullptr; // /sha256: the digest so far (owned)
        std::chrono::steady_clock::time_point first_byte;
        bool first_byte_seen = false;
        bool keep_alive = true;
        bool http10 = false;
    };

    // llhttp callbacks (static trampolines in the .cpp call these)
    friend struct ParserCallbacks;
    int on_message_begin();
    int on_method(const char* at, std::size_t len);
    int on_url(const char* at, std::size_t len);
    int on_header_field(const char* at, std::size_t len);
    int on_header_value(const char* at, std::size_t len);
    int on_header_value_complete();
    int on_headers_complete();
    int on_body(const char* at, std::size_t len);
    int on_message_complete();

    bool process_input();
    std::size_t read_some();  // bytes read, 0 when none (EAGAIN, end of data, failure)
    bool flush();
    void maybe_close();
    void close_transport();
    bool backpressured() const;
    bool partial_request_buffered() const;

    void route_request();
    void respond();
    void respond_error(int status);
    std::string response_head(int status, std::string_view content_type, std::uint64_t content_length,
                              std::string_view extra_headers = {}, bool has_length = true) const;
    void queue_bytes(std::string data, bool ends_response);
    void queue_stream(Output piece);
    bool fill_file(Output& piece);
    void resolve_file(std::string_view relative);
    void reject(int status);
    void reset_request();
    std::chrono::steady_clock::time_point arrival(std::uint64_t stream_position) const;

    std::unique_ptr<Transport> _transport;
    const Config& _config;
    Stats& _stats;

    llhttp_t _parser{};
    Request _req;
    bool _in_message = false;
    bool _expect_pause = false;      // paused after the headers of an Expect: 100-continue request

    std::string _in;                 // bytes read; [_parsed, size) not yet given to the parser
    std::size_t _parsed = 0;
    std::uint64_t _in_origin = 0;    // stream position of _in[0]
    /// When the bytes up to each stream position arrived (one entry per read still needed for timing).
    std::deque<std::pair<std::uint64_t, std::chrono::steady_clock::time_point>> _arrivals;

    std::deque<Output> _out;
    std::uint64_t _out_bytes = 0;    // in-memory bytes queued
    std::size_t _streams_queued = 0; // pattern and file pieces queued

    bool _readable = true;           // not known to be drained: try reading
    bool _peer_done = false;         // the peer ended its data
    bool _broken = false;            // the connection failed or was reset: close now
    bool _stop_parsing = false;      // no more requests: answer what is queued (input read and dropped), close
    bool _reject_pending = false;    // a callback refused the request (_reject_status)
    int _reject_status = 0;
    bool _yielded = false;
    bool _closed = false;
};

}  // namespace cm::httpd

// HTTP/1.1 message framing for the proxy, on llhttp (Node.js's parser; third_party/llhttp).
//
// The proxy does not interpret requests and responses beyond what it must to buffer them whole and to
// reuse bus connections: where a request ends (request line and headers, then a Content-Length or chunked
// body: RFC 9112 6.3), whether the client wants to keep its connection, Expect: 100-continue, the limits;
// and where a response ends (Content-Length, chunked, close-delimited, and no body for HEAD, 1xx, 204, 304).
//
// Both framers are fed bytes as they arrive and stop exactly at the end of one message (llhttp is paused in
// on_message_complete), so pipelined bytes that follow stay unparsed for the next message.
#pragma once

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace cm::proxy {

struct RequestLimits {
    std::size_t max_header_bytes = 16 * 1024;       // request line + headers; beyond: 431
    std::uint64_t max_body_bytes = 16 * 1024 * 1024;  // beyond: 413
    std::string required_header;                     // lower-case name; "" = none required
};

/// Frames one request at a time. feed() returns how many bytes belong to the current request; once
/// complete() the rest of the input is the next request (reset() starts on it).
class RequestFramer {
public:
    enum class Status { need_more, complete, error };

    explicit RequestFramer(const RequestLimits& limits);
    RequestFramer(const RequestFramer&) = delete;
    RequestFramer& operator=(const RequestFramer&) = delete;

    /// Parses `data` (the bytes after those already fed). Returns the bytes consumed: all of them unless
    /// the request completed (then the bytes up to its end) or an error was found.
    std::size_t feed(std::string_view data);
    /// Starts the next request.
    void reset();

    [[nodiscard]] Status status() const noexcept { return _status; }
    /// After error: the status code to answer with (400, 413, 417, 431).
    [[nodiscard]] int error_status() const noexcept { return _error_status; }
    /// Bytes of the current request fed so far.
    [[nodiscard]] std::size_t bytes() const noexcept { return _bytes; }
    [[nodiscard]] bool started() const noexcept { return _bytes > 0; }
    [[nodiscard]] bool headers_complete() const noexcept { return _headers_done; }
    /// Bytes of the request line and headers, the blank line included (valid once headers_complete()).
    [[nodiscard]] std::size_t head_bytes() const noexcept { return _head_bytes; }
    /// The client sent Expect: 100-continue and a body is to follow.
    [[nodiscard]] bool expects_continue() const noexcept { return _expect_continue; }
    [[nodiscard]] bool is_head() const noexcept { return _method == HTTP_HEAD; }
    /// Valid once headers_complete(): the request line says HTTP/1.0 (not persistent by default).
    [[nodiscard]] bool is_http10() const noexcept { return _http10; }
    [[nodiscard]] bool has_body() const noexcept { return _has_body; }
    [[nodiscard]] std::uint64_t body_bytes() const noexcept { return _body_bytes; }
    /// Valid once complete(): the client's connection may carry another request.
    [[nodiscard]] bool keep_alive() const noexcept { return _keep_alive; }
    [[nodiscard]] bool required_header_present() const noexcept { return _required_seen; }
    /// The value of the required header (empty when absent).
    [[nodiscard]] const std::string& required_header_value() const noexcept { return _required_value; }
    [[nodiscard]] const char* error_reason() const noexcept { return _error_reason; }

private:
    static int on_header_field(llhttp_t* p, const char* at, std::size_t len);
    static int on_header_value(llhttp_t* p, const char* at, std::size_t len);
    static int on_header_value_complete(llhttp_t* p);
    static int on_headers_complete(llhttp_t* p);
    static int on_body(llhttp_t* p, const char* at, std::size_t len);
    static int on_message_complete(llhttp_t* p);
    void fail(int status, const char* reason);

    enum class Field : std::uint8_t { other, expect, required };
    [[nodiscard]] Field kind_of_field() const;
    const RequestLimits& _limits;
    llhttp_settings_t _settings{};
    llhttp_t _parser{};
    Status _status = Status::need_more;
    int _error_status = 0;
    const char* _error_reason = "";
    std::size_t _bytes = 0;
    std::size_t _head_bytes = 0;
    std::uint64_t _body_bytes = 0;
    std::string _field;          // the header name being read, lower case (bounded)
    std::string _value;          // the value of an interesting header (bounded)
    Field _field_kind = Field::other;
    bool _field_done = false;
    std::uint8_t _method = 0;
    bool _headers_done = false;
    bool _http10 = false;
    bool _host_seen = false;
    bool _expect_continue = false;
    bool _expect_other = false;
    bool _has_body = false;
    bool _keep_alive = false;
    bool _required_seen = false;
    std::string _required_value;
};

/// Frames one response at a time from a server, knowing the request it answers (HEAD has no body).
class ResponseFramer {
public:
    enum class Status { need_more, complete, error };

    ResponseFramer();
    ResponseFramer(const ResponseFramer&) = delete;
    ResponseFramer& operator=(const ResponseFramer&) = delete;

    /// Starts a response to a request; `head_request`: the request was HEAD.
    void start(bool head_request);
    /// Bytes of `data` that belong to the response (all, unless it completed inside them or is malformed).
    std::size_t feed(std::string_view data);
    /// The server ended its stream: completes a close-delimited response, else it is truncated (error).
    void finish();

    [[nodiscard]] Status status() const noexcept { return _status; }
    [[nodiscard]] int status_code() const noexcept { return _final_status; }
    /// Valid once complete(): the server keeps its connection (Content-Length or chunked, no close).
    [[nodiscard]] bool keep_alive() const noexcept { return _keep_alive; }
    /// The response ends only when the server closes.
    [[nodiscard]] bool close_delimited() const noexcept { return _close_delimited; }
    [[nodiscard]] std::size_t bytes() const noexcept { return _bytes; }
    [[nodiscard]] const char* error_reason() const noexcept { return _error_reason; }

private:
    static int on_headers_complete(llhttp_t* p);
    static int on_message_complete(llhttp_t* p);

    llhttp_settings_t _settings{};
    llhttp_t _parser{};
    Status _status = Status::need_more;
    bool _head_request = false;
    bool _keep_alive = false;
    bool _close_delimited = false;
    int _final_status = 0;
    std::size_t _bytes = 0;
    const char* _error_reason = "";
};

}  // namespace cm::proxy

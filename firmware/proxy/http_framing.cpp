#include "proxy/http_framing.hpp"

#include <algorithm>
#include <cctype>

namespace cm::proxy {
namespace {

constexpr std::size_t max_tracked_name = 64;
constexpr std::size_t max_tracked_value = 256;

void append_lower(std::string& out, const char* at, std::size_t len, std::size_t cap)
{
    for (std::size_t i = 0; i < len && out.size() < cap; ++i) {
        out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(at[i]))));
    }
}

std::string_view trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

}  // namespace

// ---- requests ---------------------------------------------------------------------------------------

RequestFramer::RequestFramer(const RequestLimits& limits) : _limits(limits)
{
    llhttp_settings_init(&_settings);
    _settings.on_header_field = &RequestFramer::on_header_field;
    _settings.on_header_value = &RequestFramer::on_header_value;
    _settings.on_header_value_complete = &RequestFramer::on_header_value_complete;
    _settings.on_headers_complete = &RequestFramer::on_headers_complete;
    _settings.on_body = &RequestFramer::on_body;
    _settings.on_message_complete = &RequestFramer::on_message_complete;
    reset();
}

void RequestFramer::reset()
{
    llhttp_init(&_parser, HTTP_REQUEST, &_settings);
    _parser.data = this;
    _status = Status::need_more;
    _error_status = 0;
    _error_reason = "";
    _bytes = 0;
    _head_bytes = 0;
    _body_bytes = 0;
    _field.clear();
    _value.clear();
    _field_kind = Field::other;
    _field_done = false;
    _method = 0;
    _headers_done = false;
    _http10 = false;
    _host_seen = false;
    _expect_continue = false;
    _expect_other = false;
    _has_body = false;
    _keep_alive = false;
    _required_seen = false;
    _required_value.clear();
}

RequestFramer::Field RequestFramer::kind_of_field() const
{
    if (_field == "expect") {
        return Field::expect;
    }
    if (!_limits.required_header.empty() && _field == _limits.required_header) {
        return Field::required;
    }
    return Field::other;
}

void RequestFramer::fail(int status, const char* reason)
{
    _status = Status::error;
    _error_status = status;
    _error_reason = reason;
}

std::size_t RequestFramer::feed(std::string_view data)
{
    if (_status != Status::need_more || data.empty()) {
        return 0;
    }
    llhttp_errno_t err = llhttp_execute(&_parser, data.data(), data.size());
    std::size_t used = data.size();
    if (err == HPE_PAUSED && _status == Status::need_more) {
        // Paused at the end of the head (on_headers_complete): llhttp says where the head ends, so the proxy
        // rewrites exactly what llhttp parsed as headers. Then on with the body.
        const auto head_end = static_cast<std::size_t>(llhttp_get_error_pos(&_parser) - data.data());
        _head_bytes = _bytes + head_end;
        // The answers that depend on the whole head, in the order a client broke them.
        if (_head_bytes > _limits.max_header_bytes) {
            fail(431, "request line and headers too large");
        } else if ((_parser.flags & F_CONTENT_LENGTH) != 0 && _parser.content_length > _limits.max_body_bytes) {
            fail(413, "Content-Length over the body limit");
        } else if (_expect_other) {
            fail(417, "Expect other than 100-continue");
        } else if (!_host_seen && _parser.http_major == 1 && _parser.http_minor >= 1) {
            fail(400, "HTTP/1.1 request without Host (RFC 9112 3.2)");
        }
        if (_status == Status::error) {
            _bytes += head_end;
            return head_end;
        }
        llhttp_resume(&_parser);
        err = llhttp_execute(&_parser, data.data() + head_end, data.size() - head_end);  // also when empty: a
        // request without a body completes here
    }
    if (err == HPE_PAUSED) {
        used = static_cast<std::size_t>(llhttp_get_error_pos(&_parser) - data.data());
        llhttp_resume(&_parser);
    } else if (err == HPE_PAUSED_UPGRADE) {
        // Upgrade (WebSocket, h2c): the request itself is complete; what follows is not HTTP/1.1, and the
        // proxy does not tunnel it (docs/proxy.md).
        used = static_cast<std::size_t>(llhttp_get_error_pos(&_parser) - data.data());
    } else if (err != HPE_OK && _status != Status::error) {
        used = static_cast<std::size_t>(std::max<std::ptrdiff_t>(0, llhttp_get_error_pos(&_parser) - data.data()));
        // Past the head limit the limit is what the client broke first (also when the bytes came in pieces).
        if (!_headers_done && _bytes + used > _limits.max_header_bytes) {
            fail(431, "request line and headers too large");
        } else {
            fail(400, llhttp_errno_name(err));
        }
    }
    _bytes += used;
    if (_status == Status::need_more && !_headers_done && _bytes > _limits.max_header_bytes) {
        fail(431, "request line and headers too large");
    }
    return used;
}

int RequestFramer::on_header_field(llhttp_t* p, const char* at, std::size_t len)
{
    auto& self = *static_cast<RequestFramer*>(p->data);
    if (self._field_done) {  // a new header starts
        self._field.clear();
        self._value.clear();
        self._field_done = false;
    }
    append_lower(self._field, at, len, max_tracked_name);
    return 0;
}

int RequestFramer::on_header_value(llhttp_t* p, const char* at, std::size_t len)
{
    auto& self = *static_cast<RequestFramer*>(p->data);
    if (!self._field_done) {
        self._field_done = true;
        self._field_kind = self.kind_of_field();
    }
    if (self._field_kind != Field::other) {
        self._value.append(at, std::min(len, max_tracked_value - std::min(self._value.size(), max_tracked_value)));
    }
    return 0;
}

int RequestFramer::on_header_value_complete(llhttp_t* p)
{
    auto& self = *static_cast<RequestFramer*>(p->data);
    if (!self._field_done) {  // empty value: on_header_value was never called
        self._field_done = true;
        self._field_kind = self.kind_of_field();
    }
    const std::string_view value = trim(self._value);
    self._host_seen = self._host_seen || self._field == "host";
    if (self._field_kind == Field::expect) {
        std::string lower;
        append_lower(lower, value.data(), value.size(), max_tracked_value);
        (lower == "100-continue" ? self._expect_continue : self._expect_other) = true;
    } else if (self._field_kind == Field::required && !self._required_seen) {
        self._required_seen = true;
        self._required_value.assign(value);
    }
    self._field.clear();
    self._value.clear();
    self._field_kind = Field::other;
    self._field_done = true;
    return 0;
}

int RequestFramer::on_headers_complete(llhttp_t* p)
{
    auto& self = *static_cast<RequestFramer*>(p->data);
    self._headers_done = true;
    self._method = p->method;
    self._http10 = p->http_major == 1 && p->http_minor == 0;
    self._has_body = (p->flags & F_CHUNKED) != 0 || ((p->flags & F_CONTENT_LENGTH) != 0 && p->content_length > 0);
    if (!self._has_body) {
        self._expect_continue = false;  // nothing to wait for
    }
    return HPE_PAUSED;  // feed() notes where the head ends and resumes
}

int RequestFramer::on_body(llhttp_t* p, const char* /*at*/, std::size_t len)
{
    auto& self = *static_cast<RequestFramer*>(p->data);
    self._body_bytes += len;
    if (self._body_bytes > self._limits.max_body_bytes) {
        self.fail(413, "body over the limit");
        return -1;
    }
    return 0;
}

int RequestFramer::on_message_complete(llhttp_t* p)
{
    auto& self = *static_cast<RequestFramer*>(p->data);
    self._status = Status::complete;
    self._keep_alive = llhttp_should_keep_alive(p) != 0;
    return HPE_PAUSED;  // stop at the end of this request: what follows is the next one
}

// ---- responses --------------------------------------------------------------------------------------

ResponseFramer::ResponseFramer()
{
    llhttp_settings_init(&_settings);
    _settings.on_headers_complete = &ResponseFramer::on_headers_complete;
    _settings.on_message_complete = &ResponseFramer::on_message_complete;
    start(false);
}

void ResponseFramer::start(bool head_request)
{
    llhttp_init(&_parser, HTTP_RESPONSE, &_settings);
    _parser.data = this;
    _status = Status::need_more;
    _head_request = head_request;
    _keep_alive = false;
    _close_delimited = false;
    _final_status = 0;
    _bytes = 0;
    _error_reason = "";
}

std::size_t ResponseFramer::feed(std::string_view data)
{
    if (_status != Status::need_more || data.empty()) {
        return 0;
    }
    const llhttp_errno_t err = llhttp_execute(&_parser, data.data(), data.size());
    std::size_t used = data.size();
    if (err == HPE_PAUSED) {
        used = static_cast<std::size_t>(llhttp_get_error_pos(&_parser) - data.data());
        llhttp_resume(&_parser);
    } else if (err == HPE_PAUSED_UPGRADE) {
        used = static_cast<std::size_t>(llhttp_get_error_pos(&_parser) - data.data());
        _status = Status::error;
        _error_reason = "101 Switching Protocols: upgrades are not proxied";
    } else if (err != HPE_OK) {
        _status = Status::error;
        _error_reason = llhttp_errno_name(err);
        used = static_cast<std::size_t>(std::max<std::ptrdiff_t>(0, llhttp_get_error_pos(&_parser) - data.data()));
    }
    _bytes += used;
    return used;
}

void ResponseFramer::finish()
{
    if (_status != Status::need_more) {
        return;
    }
    // llhttp_finish completes a message whose end is the end of the stream; anything else is cut short.
    // (on_message_complete pauses the parser, so llhttp_finish reports HPE_PAUSED when it completed.)
    if (_bytes > 0 && llhttp_message_needs_eof(&_parser) != 0) {
        const llhttp_errno_t err = llhttp_finish(&_parser);
        if ((err == HPE_OK || err == HPE_PAUSED) && _status == Status::complete) {
            return;
        }
    }
    _status = Status::error;
    _error_reason = _bytes == 0 ? "the server closed without a response" : "the server closed in mid-response";
}

int ResponseFramer::on_headers_complete(llhttp_t* p)
{
    auto& self = *static_cast<ResponseFramer*>(p->data);
    const int code = p->status_code;
    if (code >= 100 && code < 200) {
        return 0;  // interim: no body, the final response follows (101 ends as an upgrade)
    }
    self._final_status = code;
    self._close_delimited = self._head_request ? false : llhttp_message_needs_eof(p) != 0;
    return self._head_request ? 1 : 0;  // 1: no body (llhttp's convention for responses to HEAD)
}

int ResponseFramer::on_message_complete(llhttp_t* p)
{
    auto& self = *static_cast<ResponseFramer*>(p->data);
    if (p->status_code >= 100 && p->status_code < 200 && p->status_code != 101) {
        return 0;  // 1xx: keep parsing, the final response is what counts
    }
    self._status = Status::complete;
    self._keep_alive = llhttp_should_keep_alive(p) != 0 && !self._close_delimited;
    return HPE_PAUSED;
}

}  // namespace cm::proxy

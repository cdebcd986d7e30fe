#include "http_session.hpp"

#include <fmt/core.h>
#include <openssl/evp.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <ctime>

namespace cm::httpd {

using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t read_chunk = 64 * 1024;     // one read call
constexpr std::size_t max_unparsed = 1 << 20;     // input buffered beyond the parser: stop reading
constexpr std::uint64_t max_queued = 256 * 1024;  // output queued in memory: stop taking requests
constexpr std::size_t max_head = 64 * 1024;       // request line and headers: larger is 431
constexpr std::size_t read_budget = 1 << 20;      // bytes one pump() reads before letting others go
constexpr std::size_t piece = 64 * 1024;          // pattern and file pieces written at once
constexpr std::size_t inline_body = 16 * 1024;    // smaller pattern bodies go out with their headers
constexpr std::uint64_t max_bytes_route = 1ULL << 30;
constexpr int max_iov = 16;

/// `piece` bytes of the pattern plus one period: every stretch of up to `piece` bytes is one view into it.
const char* pattern_block()
{
    static const std::string block = [] {
        std::string s(piece + 16, '\0');
        for (std::size_t i = 0; i < s.size(); ++i) {
            s[i] = pattern_byte(i);
        }
        return s;
    }();
    return block.data();
}

/// The read buffer every session reads into (single-threaded), before appending to its own input.
char* read_buffer()
{
    static std::array<char, read_chunk> buffer;
    return buffer.data();
}

const std::string& date_header()
{
    static std::string cached;
    static std::time_t cached_at = 0;
    const std::time_t now = std::time(nullptr);
    if (now != cached_at || cached.empty()) {
        cached_at = now;
        std::tm gmt{};
        gmtime_r(&now, &gmt);
        char buf[64];
        const std::size_t n = std::strftime(buf, sizeof buf, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &gmt);
        cached.assign(buf, n);
    }
    return cached;
}

std::string_view reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

std::string_view content_type_of(std::string_view path)
{
    const std::size_t slash = path.rfind('/');
    const std::size_t dot = path.rfind('.');
    if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash)) {
        return "application/octet-stream";
    }
    const std::string_view ext = path.substr(dot + 1);
    static constexpr std::pair<std::string_view, std::string_view> types[] = {
        {"html", "text/html; charset=utf-8"}, {"htm", "text/html; charset=utf-8"},
        {"txt", "text/plain; charset=utf-8"}, {"css", "text/css"},
        {"js", "text/javascript"},            {"json", "application/json"},
        {"xml", "application/xml"},           {"svg", "image/svg+xml"},
        {"png", "image/png"},                 {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},               {"gif", "image/gif"},
        {"webp", "image/webp"},               {"ico", "image/x-icon"},
        {"pdf", "application/pdf"},           {"wasm", "application/wasm"},
    };
    for (const auto& [e, type] : types) {
        if (e == ext) {
            return type;
        }
    }
    return "application/octet-stream";
}

bool iequals(std::string_view a, std::string_view b)
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return (x | 0x20) == (y | 0x20) || x == y;
           });
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

bool parse_u64(std::string_view s, std::uint64_t& out)
{
    if (s.empty() || s.size() > 19) {
        return false;
    }
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && end == s.data() + s.size();
}

/// RFC 7239: the for= parameter of the first element, unquoted ("A.B.C.D:PORT" as the card writes it).
/// Empty when absent or when it holds characters no address has.
std::string forwarded_for(std::string_view header)
{
    const std::string_view element = header.substr(0, header.find(','));
    std::size_t start = 0;
    while (start <= element.size()) {
        const std::size_t end = std::min(element.find(';', start), element.size());
        const std::string_view pair = trim(element.substr(start, end - start));
        if (pair.size() > 4 && iequals(pair.substr(0, 4), "for=")) {
            std::string_view value = trim(pair.substr(4));
            if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
                value = value.substr(1, value.size() - 2);
            }
            const bool plausible = !value.empty() && value.size() <= 64 &&
                                   std::all_of(value.begin(), value.end(), [](char c) {
                                       return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                                              (c >= 'A' && c <= 'Z') || c == '.' || c == ':' || c == '[' ||
                                              c == ']' || c == '_' || c == '-';
                                   });
            return plausible ? std::string(value) : std::string();
        }
        start = end + 1;
    }
    return {};
}

bool percent_decode(std::string_view in, std::string& out)
{
    out.clear();
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '%') {
            out += in[i];
            continue;
        }
        if (i + 2 >= in.size()) {
            return false;
        }
        unsigned value = 0;
        const auto [end, ec] = std::from_chars(in.data() + i + 1, in.data() + i + 3, value, 16);
        if (ec != std::errc{} || end != in.data() + i + 3) {
            return false;
        }
        out += static_cast<char>(value);
        i += 2;
    }
    return out.find('\0') == std::string::npos;
}

/// The path of a request target: origin-form as is, absolute-form without scheme and authority; no query.
std::string_view target_path(std::string_view url)
{
    if (const std::size_t scheme = url.find("://"); scheme != std::string_view::npos && url.front() != '/') {
        const std::size_t slash = url.find('/', scheme + 3);
        url = slash == std::string_view::npos ? std::string_view("/") : url.substr(slash);
    }
    return url.substr(0, url.find_first_of("?#"));
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

}  // namespace

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept
{
    if (this != &other) {
        if (_fd >= 0) {
            ::close(_fd);
        }
        _fd = std::exchange(other._fd, -1);
    }
    return *this;
}

UniqueFd::~UniqueFd()
{
    if (_fd >= 0) {
        ::close(_fd);
    }
}

// ---- llhttp callbacks --------------------------------------------------------------------------------------

struct ParserCallbacks {
    static HttpSession& self(llhttp_t* p) { return *static_cast<HttpSession*>(p->data); }
    static int message_begin(llhttp_t* p) { return self(p).on_message_begin(); }
    static int method(llhttp_t* p, const char* at, std::size_t n) { return self(p).on_method(at, n); }
    static int url(llhttp_t* p, const char* at, std::size_t n) { return self(p).on_url(at, n); }
    static int header_field(llhttp_t* p, const char* at, std::size_t n) { return self(p).on_header_field(at, n); }
    static int header_value(llhttp_t* p, const char* at, std::size_t n) { return self(p).on_header_value(at, n); }
    static int header_value_complete(llhttp_t* p) { return self(p).on_header_value_complete(); }
    static int headers_complete(llhttp_t* p) { return self(p).on_headers_complete(); }
    static int body(llhttp_t* p, const char* at, std::size_t n) { return self(p).on_body(at, n); }
    static int message_complete(llhttp_t* p) { return self(p).on_message_complete(); }

    static const llhttp_settings_t* settings()
    {
        static const llhttp_settings_t s = [] {
            llhttp_settings_t v;
            llhttp_settings_init(&v);
            v.on_message_begin = &message_begin;
            v.on_method = &method;
            v.on_url = &url;
            v.on_header_field = &header_field;
            v.on_header_value = &header_value;
            v.on_header_value_complete = &header_value_complete;
            v.on_headers_complete = &headers_complete;
            v.on_body = &body;
            v.on_message_complete = &message_complete;
            return v;
        }();
        return &s;
    }
};

HttpSession::HttpSession(std::unique_ptr<Transport> transport, const Config& config, Stats& stats)
    : _transport(std::move(transport)), _config(config), _stats(stats)
{
    llhttp_init(&_parser, HTTP_REQUEST, ParserCallbacks::settings());
    _parser.data = this;
    _stats.opened();
}

HttpSession::~HttpSession()
{
    if (!_closed) {
        close_transport();
    }
    reset_request();
}

void HttpSession::abandon()
{
    if (!_closed) {
        _closed = true;
        _stats.closed();
    }
    _out.clear();
}

void HttpSession::reset_request()
{
    if (_req.sha != nullptr) {
        EVP_MD_CTX_free(_req.sha);
    }
    _req = Request{};
}

Clock::time_point HttpSession::arrival(std::uint64_t stream_position) const
{
    for (const auto& [end, when] : _arrivals) {
        if (stream_position < end) {
            return when;
        }
    }
    return Clock::now();
}

int HttpSession::on_message_begin()
{
    reset_request();
    _in_message = true;
    return 0;
}

int HttpSession::on_method(const char* at, std::size_t len)
{
    if (!_req.first_byte_seen) {
        _req.first_byte_seen = true;
        _req.first_byte = arrival(_in_origin + static_cast<std::uint64_t>(at - _in.data()));
    }
    _req.head_bytes += len;
    return 0;
}

int HttpSession::on_url(const char* at, std::size_t len)
{
    _req.head_bytes += len;
    if (_req.head_bytes > max_head) {
        reject(431);
        return -1;
    }
    _req.url.append(at, len);
    return 0;
}

int HttpSession::on_header_field(const char* at, std::size_t len)
{
    _req.head_bytes += len;
    if (_req.head_bytes > max_head) {
        reject(431);
        return -1;
    }
    _req.field.append(at, len);
    return 0;
}

int HttpSession::on_header_value(const char* at, std::size_t len)
{
    _req.head_bytes += len;
    if (_req.head_bytes > max_head) {
        reject(431);
        return -1;
    }
    _req.value.append(at, len);
    return 0;
}

int HttpSession::on_header_value_complete()
{
    if (iequals(_req.field, "expect")) {
        _req.expect_continue = iequals(trim(_req.value), "100-continue");
    } else if (iequals(_req.field, "forwarded") && _req.forwarded.empty()) {
        _req.forwarded = _req.value;
    }
    _req.field.clear();
    _req.value.clear();
    return 0;
}

int HttpSession::on_headers_complete()
{
    _req.http10 = llhttp_get_http_major(&_parser) == 1 && llhttp_get_http_minor(&_parser) == 0;
    route_request();
    const bool chunked = (_parser.flags & F_CHUNKED) != 0;
    const bool has_body = chunked || _parser.content_length > 0;
    if (_req.route == Route::echo && !chunked && _parser.content_length > _config.max_body) {
        reject(413);
        return -1;
    }
    if (_req.route == Route::sha256) {
        _req.sha = EVP_MD_CTX_new();
        if (_req.sha == nullptr || EVP_DigestInit_ex(_req.sha, EVP_sha256(), nullptr) != 1) {
            reject(500);
            return -1;
        }
    }
    // RFC 9110 10.1.1: the client waits for a 100 (Continue) before it sends the body. Pause here so that
    // process_input can see whether the body is already buffered (then no 100: a proxy such as the card
    // sends complete requests and should not have to skip interim responses).
    if (_req.expect_continue && has_body && !_req.http10) {
        _expect_pause = true;
        return HPE_PAUSED;
    }
    return 0;
}

int HttpSession::on_body(const char* at, std::size_t len)
{
    _req.body_bytes += len;
    if (_req.route == Route::sha256) {
        if (EVP_DigestUpdate(_req.sha, at, len) != 1) {
            reject(500);
            return -1;
        }
    } else if (_req.route == Route::echo) {
        if (_req.body.size() + len > _config.max_body) {
            reject(413);
            return -1;
        }
        _req.body.append(at, len);
    }
    return 0;
}

int HttpSession::on_message_complete()
{
    _in_message = false;
    _req.keep_alive = llhttp_should_keep_alive(&_parser) != 0 && llhttp_get_upgrade(&_parser) == 0;
    ++_stats.requests;
    return HPE_PAUSED;  // stop at the message boundary: process_input answers it, then resumes
}

void HttpSession::reject(int status)
{
    _reject_pending = true;
    _reject_status = status;
}

// ---- the routes --------------------------------------------------------------------------------------------

void HttpSession::route_request()
{
    const std::string_view path = target_path(_req.url);
    const auto method = static_cast<llhttp_method_t>(llhttp_get_method(&_parser));
    _req.head = method == HTTP_HEAD;
    const bool get = method == HTTP_GET || method == HTTP_HEAD;
    const bool post = method == HTTP_POST || method == HTTP_PUT;
    std::uint64_t n = 0;
    _req.route = Route::not_found;
    if (get && path == "/") {
        _req.route = Route::root;
    } else if (get && starts_with(path, "/bytes/") && parse_u64(path.substr(7), n) && n <= max_bytes_route) {
        _req.route = Route::bytes;
        _req.argument = n;
    } else if (get && starts_with(path, "/files/")) {
        _req.route = Route::files;
        resolve_file(path.substr(7));
    } else if (post && path == "/sha256") {
        _req.route = Route::sha256;
    } else if (post && path == "/echo") {
        _req.route = Route::echo;
    } else if (get && path == "/whoami") {
        _req.route = Route::whoami;
    } else if (get && path == "/close-early") {
        _req.route = Route::close_early;
    } else if (get && starts_with(path, "/status/") && path.size() == 11 && parse_u64(path.substr(8), n) &&
               n >= 200 && n <= 599) {
        _req.route = Route::status;
        _req.argument = n;
    }
}

/// /files/: `relative` (still percent-encoded) under the root. 403 for ".." or a symlink out of the root.
void HttpSession::resolve_file(std::string_view relative)
{
    _req.file_status = 404;
    std::string decoded;
    if (_config.root.empty() || !percent_decode(relative, decoded)) {
        return;
    }
    std::string candidate = _config.root;
    bool any = false;
    std::size_t start = 0;
    while (start <= decoded.size()) {
        const std::size_t end = std::min(decoded.find('/', start), decoded.size());
        const std::string_view segment = std::string_view(decoded).substr(start, end - start);
        if (segment == "..") {
            _req.file_status = 403;
            return;
        }
        if (!segment.empty() && segment != ".") {
            candidate += '/';
            candidate += segment;
            any = true;
        }
        start = end + 1;
    }
    if (!any) {
        return;
    }
    char resolved[PATH_MAX];
    if (realpath(candidate.c_str(), resolved) == nullptr) {
        _req.file_status = errno == ENOENT || errno == ENOTDIR ? 404 : 403;
        return;
    }
    const std::string_view real(resolved);
    const std::string& root = _config.root;
    const bool inside = root == "/" || (real.size() > root.size() && starts_with(real, root) && real[root.size()] == '/');
    if (!inside) {
        _req.file_status = 403;
        return;
    }
    struct stat st{};
    if (stat(resolved, &st) != 0 || !S_ISREG(st.st_mode)) {
        return;
    }
    _req.file_status = 0;
    _req.path = resolved;
}

std::string HttpSession::response_head(int status, std::string_view content_type, std::uint64_t content_length,
                                       std::string_view extra_headers, bool has_length) const
{
    std::string h = fmt::format("HTTP/1.1 {} {}\r\nServer: cm-httpd\r\n", status, reason(status));
    h += date_header();
    if (has_length) {
        h += fmt::format("Content-Length: {}\r\n", content_length);
    }
    if (!content_type.empty()) {
        h += fmt::format("Content-Type: {}\r\n", content_type);
    }
    h += extra_headers;
    if (_stop_parsing) {
        h += "Connection: close\r\n";
    } else if (_req.http10) {
        h += "Connection: keep-alive\r\n";
    }
    h += "\r\n";
    return h;
}

void HttpSession::respond_error(int status)
{
    const std::string body = fmt::format("{} {}\n", status, reason(status));
    std::string r = response_head(status, "text/plain", body.size());
    if (!_req.head) {
        r += body;
    }
    queue_bytes(std::move(r), true);
}

void HttpSession::respond()
{
    if (!_req.keep_alive) {
        _stop_parsing = true;  // answer this one, then close
    }
    const bool head = _req.head;
    switch (_req.route) {
    case Route::root:
    case Route::bytes: {
        const std::uint64_t size = _req.route == Route::root ? _config.body_size : _req.argument;
        std::string r = response_head(200, "text/plain", size);
        if (head) {
            queue_bytes(std::move(r), true);
        } else if (size <= inline_body) {
            r.append(pattern_block(), size);
            queue_bytes(std::move(r), true);
        } else {
            queue_bytes(std::move(r), false);
            Output p;
            p.kind = Output::Kind::pattern;
            p.remaining = size;
            queue_stream(std::move(p));
        }
        break;
    }
    case Route::files: {
        UniqueFd fd(_req.file_status == 0 ? ::open(_req.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1);
        struct stat st{};
        if (fd.get() < 0 || fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
            respond_error(_req.file_status == 403 ? 403 : 404);
            break;
        }
        const auto size = static_cast<std::uint64_t>(st.st_size);
        std::string r = response_head(200, content_type_of(_req.path), size);
        queue_bytes(std::move(r), head || size == 0);
        if (!head && size > 0) {
            Output p;
            p.kind = Output::Kind::file;
            p.remaining = size;
            p.file = std::move(fd);
            queue_stream(std::move(p));
        }
        break;
    }
    case Route::sha256: {
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        if (EVP_DigestFinal_ex(_req.sha, digest, &len) != 1) {
            respond_error(500);
            break;
        }
        std::string body;
        for (unsigned int i = 0; i < len; ++i) {
            body += fmt::format("{:02x}", digest[i]);
        }
        body += '\n';
        std::string r = response_head(200, "text/plain", body.size(),
                                      fmt::format("X-Body-Length: {}\r\n", _req.body_bytes));
        r += body;
        queue_bytes(std::move(r), true);
        break;
    }
    case Route::echo: {
        std::string r = response_head(200, "application/octet-stream", _req.body.size());
        if (_req.body.size() <= inline_body) {
            r += _req.body;
            queue_bytes(std::move(r), true);
        } else {
            queue_bytes(std::move(r), false);
            queue_bytes(std::move(_req.body), true);
        }
        break;
    }
    case Route::whoami: {
        std::string who = forwarded_for(_req.forwarded);
        const char* source = "forwarded";
        if (who.empty()) {
            PeerAddress peer = _transport->peer();
            who = std::move(peer.text);
            source = peer.source;
        }
        const std::string body = fmt::format("client={}\n", who);
        std::string r = response_head(200, "text/plain", body.size(), fmt::format("X-Client-Source: {}\r\n", source));
        if (!head) {
            r += body;
        }
        queue_bytes(std::move(r), true);
        break;
    }
    case Route::close_early: {
        // A server that dies mid-response: no "Connection: close" (the body's shortfall is the only sign).
        std::string r = fmt::format("HTTP/1.1 200 OK\r\nServer: cm-httpd\r\n{}Content-Length: 100000\r\n"
                                    "Content-Type: text/plain\r\n\r\n",
                                    date_header());
        if (!head) {
            r.append(pattern_block(), 1000);
        }
        queue_bytes(std::move(r), true);
        _stop_parsing = true;
        break;
    }
    case Route::status: {
        const int status = static_cast<int>(_req.argument);
        // RFC 9110 8.6: no Content-Length in 204; a 304 would announce the selected representation's.
        queue_bytes(response_head(status, {}, 0, {}, status != 204 && status != 304), true);
        break;
    }
    case Route::not_found:
        respond_error(404);
        break;
    }
}

// ---- output ------------------------------------------------------------------------------------------------

void HttpSession::queue_bytes(std::string data, bool ends_response)
{
    if (data.empty()) {
        if (ends_response) {
            if (_out.empty()) {
                ++_stats.responses;
            } else {
                ++_out.back().ends;
            }
        }
        return;
    }
    _out_bytes += data.size();
    Output o;
    o.data = std::move(data);
    o.ends = ends_response ? 1 : 0;
    _out.push_back(std::move(o));
}

void HttpSession::queue_stream(Output p)
{
    p.ends = 1;
    ++_streams_queued;
    _out.push_back(std::move(p));
}

bool HttpSession::fill_file(Output& p)
{
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(p.remaining, piece));
    p.data.resize(want);
    const ssize_t n = pread(p.file.get(), p.data.data(), want, static_cast<off_t>(p.position));
    if (n <= 0) {
        return false;  // the file shrank under us: the promised length can no longer be kept
    }
    p.data.resize(static_cast<std::size_t>(n));
    p.offset = 0;
    p.position += static_cast<std::uint64_t>(n);
    p.remaining -= static_cast<std::uint64_t>(n);
    return true;
}

bool HttpSession::backpressured() const { return _streams_queued > 0 || _out_bytes > max_queued; }

bool HttpSession::flush()
{
    bool wrote = false;
    while (!_out.empty() && !_broken) {
        iovec iov[max_iov];
        int count = 0;
        for (Output& o : _out) {
            if (count == max_iov) {
                break;
            }
            if (o.kind == Output::Kind::pattern) {
                const auto len = static_cast<std::size_t>(std::min<std::uint64_t>(o.remaining, piece));
                iov[count++] = {const_cast<char*>(pattern_block() + o.position % 16), len};
                break;  // a stream: one piece per round
            }
            if (o.kind == Output::Kind::file && o.offset == o.data.size() && !fill_file(o)) {
                _broken = true;
                return wrote;
            }
            iov[count++] = {o.data.data() + o.offset, o.data.size() - o.offset};
            if (o.kind == Output::Kind::file) {
                break;
            }
        }
        const ssize_t n = _transport->writev(iov, count);
        if (n == -EAGAIN || n == 0) {
            break;
        }
        if (n < 0) {
            _broken = true;
            break;
        }
        wrote = true;
        _stats.bytes_out += static_cast<std::uint64_t>(n);
        auto left = static_cast<std::size_t>(n);
        while (left > 0) {
            Output& o = _out.front();
            bool done = false;
            if (o.kind == Output::Kind::pattern) {
                const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(o.remaining, left));
                o.position += take;
                o.remaining -= take;
                left -= take;
                done = o.remaining == 0;
            } else {
                const std::size_t take = std::min(o.data.size() - o.offset, left);
                o.offset += take;
                left -= take;
                if (o.kind == Output::Kind::bytes) {
                    _out_bytes -= take;
                }
                done = o.offset == o.data.size() && o.remaining == 0;
            }
            if (!done) {
                break;
            }
            _stats.responses += o.ends;
            if (o.kind != Output::Kind::bytes) {
                --_streams_queued;
            }
            _out.pop_front();
        }
    }
    return wrote;
}

// ---- input and the session's life --------------------------------------------------------------------------

std::size_t HttpSession::read_some()
{
    const std::size_t room = _stop_parsing ? read_chunk : max_unparsed - std::min(max_unparsed, _in.size() - _parsed);
    if (room == 0) {
        return 0;
    }
    char* buf = read_buffer();
    const ssize_t n = _transport->read(buf, std::min(room, read_chunk));
    if (n > 0) {
        const auto got = static_cast<std::size_t>(n);
        _stats.bytes_in += got;
        if (_stop_parsing) {
            return got;  // no more requests on this connection: drop it
        }
        _in.append(buf, got);
        _arrivals.emplace_back(_in_origin + _in.size(), Clock::now());
        return got;
    }
    _readable = false;
    if (n == 0) {
        _peer_done = true;
    } else if (n != -EAGAIN) {
        _broken = true;
    }
    return 0;
}

bool HttpSession::process_input()
{
    bool progressed = false;
    while (!_stop_parsing && !_broken && _parsed < _in.size() && !backpressured()) {
        progressed = true;
        const llhttp_errno_t err = llhttp_execute(&_parser, _in.data() + _parsed, _in.size() - _parsed);
        if (err == HPE_OK) {
            _parsed = _in.size();
            break;
        }
        if (err == HPE_PAUSED && _expect_pause) {
            _expect_pause = false;
            _parsed = static_cast<std::size_t>(llhttp_get_error_pos(&_parser) - _in.data());
            llhttp_resume(&_parser);
            if (_parsed == _in.size()) {
                queue_bytes("HTTP/1.1 100 Continue\r\n\r\n", false);
            }
            continue;
        }
        if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
            _parsed = static_cast<std::size_t>(llhttp_get_error_pos(&_parser) - _in.data());
            if (err == HPE_PAUSED) {
                llhttp_resume(&_parser);
            } else {
                _req.keep_alive = false;
            }
            if (_req.first_byte_seen && _parsed > 0) {
                const Clock::time_point last = arrival(_in_origin + _parsed - 1);
                _stats.assembled(static_cast<std::uint64_t>(
                    std::chrono::duration_cast<std::chrono::microseconds>(last - _req.first_byte).count()));
            }
            respond();
            continue;
        }
        // A request we cannot take: answer it and close (llhttp keeps failing from here on).
        _stop_parsing = true;
        _in_message = false;
        if (_reject_pending) {
            if (_reject_status == 431) {
                ++_stats.parse_errors;
            }
            respond_error(_reject_status);
        } else {
            ++_stats.parse_errors;
            _req.head = false;
            respond_error(400);
        }
        _parsed = _in.size();
    }
    // Drop what the parser has seen (header and body pieces were copied by the callbacks).
    if (_parsed == _in.size()) {
        _in_origin += _in.size();
        _in.clear();
        _parsed = 0;
        if (_in.capacity() > 4 * read_chunk) {
            _in.shrink_to_fit();
        }
    } else if (_parsed >= read_chunk && _parsed * 2 >= _in.size()) {
        _in.erase(0, _parsed);
        _in_origin += _parsed;
        _parsed = 0;
    }
    while (!_arrivals.empty() && _arrivals.front().first <= _in_origin + _parsed) {
        _arrivals.pop_front();
    }
    return progressed;
}

void HttpSession::on_readable()
{
    _readable = true;
    pump();
}

void HttpSession::on_writable() { pump(); }

void HttpSession::pump()
{
    _yielded = false;
    std::size_t budget = read_budget;
    while (!_closed) {
        bool moved = process_input();
        moved = flush() || moved;
        if (_broken) {
            break;
        }
        // After the last request (_stop_parsing) input is still read, and dropped, until the answer is out:
        // a peer that cannot send cannot always take what we write either (and unread input turns a
        // socket's close into a reset).
        if (_readable && !_peer_done) {
            if (budget == 0) {
                _yielded = true;  // more to read: the front end calls pump() again after the others
                break;
            }
            if (const std::size_t got = read_some(); got > 0) {
                budget -= std::min(budget, got);
                moved = true;
            }
        }
        if (!moved) {
            break;
        }
    }
    maybe_close();
}

bool HttpSession::partial_request_buffered() const
{
    if (_in_message) {
        return true;
    }
    return std::any_of(_in.begin() + static_cast<std::ptrdiff_t>(_parsed), _in.end(),
                       [](char c) { return c != '\r' && c != '\n'; });
}

void HttpSession::maybe_close()
{
    if (_closed) {
        return;
    }
    if (_broken) {
        if (!_stop_parsing && partial_request_buffered()) {
            ++_stats.incomplete_at_close;
        }
        close_transport();
        return;
    }
    if (!_out.empty()) {
        return;
    }
    if (_stop_parsing) {
        close_transport();
    } else if (_peer_done) {
        if (partial_request_buffered()) {
            ++_stats.incomplete_at_close;
        }
        close_transport();
    }
}

void HttpSession::close_transport()
{
    _closed = true;
    _yielded = false;
    _out.clear();
    _transport->close();
    _stats.closed();
}

}  // namespace cm::httpd

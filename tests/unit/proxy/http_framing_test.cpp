#include "proxy/http_framing.hpp"

#include <catch2/catch.hpp>

#include <string>

using cm::proxy::RequestFramer;
using cm::proxy::RequestLimits;
using cm::proxy::ResponseFramer;

namespace {

/// Feeds `text` in pieces of `step` bytes; returns the bytes consumed.
std::size_t feed_in_pieces(RequestFramer& f, const std::string& text, std::size_t step)
{
    std::size_t used = 0;
    while (used < text.size() && f.status() == RequestFramer::Status::need_more) {
        const std::size_t n = f.feed(std::string_view(text).substr(used, step));
        used += n;
        if (n < std::min(step, text.size() - used + n)) {
            break;
        }
    }
    return used;
}

std::size_t feed_response(ResponseFramer& f, const std::string& text, std::size_t step)
{
    std::size_t used = 0;
    while (used < text.size() && f.status() == ResponseFramer::Status::need_more) {
        const std::size_t n = f.feed(std::string_view(text).substr(used, step));
        used += n;
        if (n == 0) {
            break;
        }
    }
    return used;
}

}  // namespace

TEST_CASE("request framing: a GET completes at the end of its headers, byte by byte or whole", "[proxy][http]")
{
    RequestLimits limits;
    const std::string get = "GET /a HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n";
    for (std::size_t step : {std::size_t{1}, std::size_t{3}, get.size()}) {
        RequestFramer f(limits);
        CHECK(feed_in_pieces(f, get, step) == get.size());
        CHECK(f.status() == RequestFramer::Status::complete);
        CHECK(f.head_bytes() == get.size());
        CHECK(f.keep_alive());
        CHECK_FALSE(f.has_body());
    }
}

TEST_CASE("request framing: pipelined requests stop exactly at each end", "[proxy][http]")
{
    RequestLimits limits;
    const std::string one = "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    const std::string two = "GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    const std::string both = one + two;
    RequestFramer f(limits);
    CHECK(f.feed(both) == one.size());
    CHECK(f.status() == RequestFramer::Status::complete);
    CHECK(f.body_bytes() == 5);
    f.reset();
    CHECK(f.feed(std::string_view(both).substr(one.size())) == two.size());
    CHECK(f.status() == RequestFramer::Status::complete);
    CHECK_FALSE(f.keep_alive());
}

TEST_CASE("request framing: chunked bodies, split anywhere", "[proxy][http]")
{
    RequestLimits limits;
    const std::string req =
        "POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    for (std::size_t step = 1; step < 12; ++step) {
        RequestFramer f(limits);
        CHECK(feed_in_pieces(f, req + "GET", step) == req.size());
        CHECK(f.status() == RequestFramer::Status::complete);
        CHECK(f.body_bytes() == 11);
    }
}

TEST_CASE("request framing: Expect 100-continue is seen only when a body follows", "[proxy][http]")
{
    RequestLimits limits;
    RequestFramer f(limits);
    f.feed("PUT /x HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n");
    CHECK(f.headers_complete());
    CHECK(f.expects_continue());
    CHECK(f.status() == RequestFramer::Status::need_more);
    f.feed("abc");
    CHECK(f.status() == RequestFramer::Status::complete);

    RequestFramer g(limits);
    g.feed("GET /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n");
    CHECK_FALSE(g.expects_continue());

    RequestFramer h(limits);
    h.feed("PUT /x HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\nContent-Length: 3\r\n\r\n");
    CHECK(h.status() == RequestFramer::Status::error);
    CHECK(h.error_status() == 417);
}

TEST_CASE("request framing: limits answer 431 and 413, garbage 400", "[proxy][http]")
{
    RequestLimits limits;
    limits.max_header_bytes = 256;
    limits.max_body_bytes = 1000;
    {
        RequestFramer f(limits);
        std::string big = "GET / HTTP/1.1\r\nX-Big: " + std::string(300, 'a');
        f.feed(big);  // the headers never end: refused as soon as they pass the limit
        CHECK(f.status() == RequestFramer::Status::error);
        CHECK(f.error_status() == 431);
    }
    {
        RequestFramer f(limits);
        f.feed("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n");
        CHECK(f.error_status() == 413);
    }
    {
        RequestFramer f(limits);
        f.feed("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
        for (int i = 0; i < 20 && f.status() == RequestFramer::Status::need_more; ++i) {
            f.feed("64\r\n" + std::string(100, 'b') + "\r\n");
        }
        CHECK(f.status() == RequestFramer::Status::error);
        CHECK(f.error_status() == 413);
    }
    for (const char* bad : {"GARBAGE\r\n\r\n", "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                            "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"}) {
        RequestFramer f(limits);
        f.feed(bad);
        INFO(bad);
        CHECK(f.status() == RequestFramer::Status::error);
        CHECK(f.error_status() == 400);
    }
}

TEST_CASE("request framing: the required header and its value are captured", "[proxy][http]")
{
    RequestLimits limits;
    limits.required_header = "x-token";
    RequestFramer f(limits);
    f.feed("GET / HTTP/1.1\r\nHost: x\r\nX-Token:  s3cret \r\n\r\n");
    CHECK(f.required_header_present());
    CHECK(f.required_header_value() == "s3cret");
    RequestFramer g(limits);
    g.feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_FALSE(g.required_header_present());
}

TEST_CASE("request framing: an HTTP/1.1 request without Host is answered 400, HTTP/1.0 needs none", "[proxy][http]")
{
    RequestLimits limits;
    RequestFramer f(limits);
    f.feed("GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n");
    CHECK(f.status() == RequestFramer::Status::error);
    CHECK(f.error_status() == 400);
    RequestFramer g(limits);
    g.feed("GET / HTTP/1.0\r\n\r\n");
    CHECK(g.status() == RequestFramer::Status::complete);
}

TEST_CASE("request framing: HTTP/1.0 closes unless keep-alive is asked for", "[proxy][http]")
{
    RequestLimits limits;
    RequestFramer f(limits);
    f.feed("GET / HTTP/1.0\r\n\r\n");
    CHECK(f.status() == RequestFramer::Status::complete);
    CHECK_FALSE(f.keep_alive());
    RequestFramer g(limits);
    g.feed("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    CHECK(g.keep_alive());
}

TEST_CASE("response framing: Content-Length, chunked, close-delimited, HEAD, 1xx, 204, 304", "[proxy][http]")
{
    struct Case {
        const char* name;
        std::string text;
        bool head;
        bool keep_alive;
        bool needs_eof;
    };
    const Case cases[] = {
        {"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, true, false},
        {"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", false, true, false},
        {"HEAD with a length", "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n", true, true, false},
        {"204", "HTTP/1.1 204 No Content\r\n\r\n", false, true, false},
        {"304", "HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", false, true, false},
        {"1xx first", "HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false,
         true, false},
        {"connection close", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", false, false, false},
        {"close-delimited", "HTTP/1.1 200 OK\r\n\r\nuntil the end", false, false, true},
    };
    for (const Case& c : cases) {
        for (std::size_t step : {std::size_t{1}, std::size_t{7}, c.text.size()}) {
            INFO(c.name << " step " << step);
            ResponseFramer f;
            f.start(c.head);
            const std::string extra = c.needs_eof ? "" : "XYZ";  // bytes after the response are not taken
            CHECK(feed_response(f, c.text + extra, step) == c.text.size());
            if (c.needs_eof) {
                CHECK(f.status() == ResponseFramer::Status::need_more);
                f.finish();
            }
            CHECK(f.status() == ResponseFramer::Status::complete);
            CHECK(f.keep_alive() == c.keep_alive);
        }
    }
}

TEST_CASE("response framing: a truncated response or garbage is an error", "[proxy][http]")
{
    ResponseFramer f;
    f.start(false);
    f.feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    f.finish();
    CHECK(f.status() == ResponseFramer::Status::error);

    ResponseFramer g;
    g.start(false);
    g.finish();
    CHECK(g.status() == ResponseFramer::Status::error);

    ResponseFramer h;
    h.start(false);
    h.feed("NOT HTTP AT ALL\r\n\r\n");
    CHECK(h.status() == ResponseFramer::Status::error);
}

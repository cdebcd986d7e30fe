// The proxy's HTTP framing (firmware/proxy/http_framing.hpp) on client and server bytes.
//
// Input: byte 0 picks requests (even) or responses (odd) and, for responses, whether the request was HEAD;
// byte 1 is the piece size the bytes arrive in (1..256); the rest is the stream. Oracle:
//   - framing does not depend on how the bytes are split: the stream fed in pieces and fed whole give the
//     same messages (lengths, statuses, error codes);
//   - a framer never consumes more than it is given; a complete request's head lies inside it;
//   - errors carry one of the status codes the proxy answers with.
#include "proxy/http_framing.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Message {
    int status;  // 0 need_more, 1 complete, 2 error
    std::size_t length;
    int code;
    bool operator==(const Message&) const = default;
};

[[noreturn]] void violated() { std::abort(); }

std::vector<Message> frame_requests(std::string_view stream, std::size_t piece)
{
    cm::proxy::RequestLimits limits;
    limits.max_header_bytes = 512;
    limits.max_body_bytes = 4096;
    limits.required_header = "x-token";
    cm::proxy::RequestFramer f(limits);
    std::vector<Message> out;
    std::size_t pos = 0;
    std::size_t fed_end = 0;  // bytes handed to the framer for the current message
    while (pos < stream.size()) {
        // Hand over the next piece of what has arrived (the proxy re-feeds what a completed message left).
        const std::size_t arrived = std::min(stream.size(), std::max(fed_end, pos) + piece);
        const std::size_t offered = arrived - pos;
        const std::size_t used = f.feed(stream.substr(pos, offered));
        if (used > offered) {
            violated();
        }
        pos += used;
        fed_end = arrived;
        if (f.status() == cm::proxy::RequestFramer::Status::complete) {
            if (f.head_bytes() == 0 || f.head_bytes() > f.bytes()) {
                violated();
            }
            out.push_back({1, f.bytes(), 0});
            f.reset();
            continue;
        }
        if (f.status() == cm::proxy::RequestFramer::Status::error) {
            const int code = f.error_status();
            if (code != 400 && code != 413 && code != 417 && code != 431) {
                violated();
            }
            out.push_back({2, 0, code});
            return out;  // the proxy answers and stops reading this client
        }
        if (used < offered) {
            violated();  // need_more consumes all it is given
        }
        if (arrived == stream.size()) {
            break;
        }
    }
    out.push_back({0, f.bytes(), 0});
    return out;
}

std::vector<Message> frame_responses(std::string_view stream, std::size_t piece, bool head)
{
    cm::proxy::ResponseFramer f;
    f.start(head);
    std::vector<Message> out;
    std::size_t pos = 0;
    while (pos < stream.size()) {
        const std::size_t offered = std::min(piece, stream.size() - pos);
        const std::size_t used = f.feed(stream.substr(pos, offered));
        if (used > offered) {
            violated();
        }
        pos += used;
        if (f.status() == cm::proxy::ResponseFramer::Status::complete) {
            out.push_back({1, f.bytes(), f.status_code()});
            f.start(head);
            continue;
        }
        if (f.status() == cm::proxy::ResponseFramer::Status::error) {
            out.push_back({2, 0, 0});
            return out;
        }
        if (used < offered) {
            violated();
        }
    }
    f.finish();  // the server closes: a close-delimited response completes, anything else is cut short
    out.push_back({static_cast<int>(f.status()), f.bytes(), f.status() == cm::proxy::ResponseFramer::Status::complete ? f.status_code() : 0});
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size < 2) {
        return 0;
    }
    const bool responses = (data[0] & 1) != 0;
    const bool head = (data[0] & 2) != 0;
    const std::size_t piece = 1 + data[1];
    const std::string_view stream(reinterpret_cast<const char*>(data + 2), size - 2);
    if (responses) {
        if (frame_responses(stream, piece, head) != frame_responses(stream, stream.size() + 1, head)) {
            violated();
        }
    } else if (frame_requests(stream, piece) != frame_requests(stream, stream.size() + 1)) {
        violated();
    }
    return 0;
}

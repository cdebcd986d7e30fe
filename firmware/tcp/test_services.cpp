#include "tcp/test_services.hpp"

#include <algorithm>
#include <cstring>

namespace cm::tcp {

namespace {
constexpr std::uint64_t line_len = 74;
constexpr std::uint64_t line_chars = 72;
constexpr std::uint64_t pattern_period = line_len * 95;  // the pattern repeats every 95 lines (7030 bytes)
}  // namespace

TestServices::TestServices(TcpLayer& tcp) : _tcp(tcp)
{
    _tcp.listen(echo_port, *this);
    _tcp.listen(discard_port, *this);
    _tcp.listen(chargen_port, *this);
}

TestServices::~TestServices()
{
    _tcp.unlisten(echo_port);
    _tcp.unlisten(discard_port);
    _tcp.unlisten(chargen_port);
}

std::byte TestServices::chargen_byte(std::uint64_t offset) noexcept
{
    const std::uint64_t line = offset / line_len;
    const std::uint64_t column = offset % line_len;
    if (column == line_chars) {
        return std::byte{'\r'};
    }
    if (column == line_chars + 1) {
        return std::byte{'\n'};
    }
    return static_cast<std::byte>(32 + (line + column) % 95);
}

void TestServices::chargen_fill(std::uint64_t offset, std::span<std::byte> out) noexcept
{
    // One period of the pattern, built once: filling is then a few memcpy calls (a division per byte costs
    // more than the rest of the card's work per byte at hundreds of MB/s).
    static const std::array<std::byte, pattern_period> pattern = [] {
        std::array<std::byte, pattern_period> p{};
        for (std::uint64_t i = 0; i < pattern_period; ++i) {
            p[i] = chargen_byte(i);
        }
        return p;
    }();
    std::size_t pos = static_cast<std::size_t>(offset % pattern_period);
    std::size_t done = 0;
    while (done < out.size()) {
        const std::size_t n = std::min(out.size() - done, static_cast<std::size_t>(pattern_period) - pos);
        std::memcpy(out.data() + done, pattern.data() + pos, n);
        done += n;
        pos = 0;
    }
}

void TestServices::register_counters(CounterRegistry& registry) const
{
    registry.add("svc", _counters);
}

TestServices::Conn& TestServices::conn(ConnectionId id)
{
    if (id.index >= _conns.size()) {
        _conns.resize(static_cast<std::size_t>(id.index) + 1);
    }
    return _conns[id.index];
}

bool TestServices::on_accept(ConnectionId id, const FourTuple& tuple)
{
    Conn& c = conn(id);
    c = Conn{};
    switch (tuple.local_port) {
    case echo_port:
        c.service = Service::echo;
        ++_counters.echo_connections;
        _tcp.set_nodelay(id, true);
        return true;
    case discard_port:
        c.service = Service::discard;
        ++_counters.discard_connections;
        return true;
    case chargen_port:
        c.service = Service::chargen;
        c.counting = true;
        ++_counters.chargen_connections;
        _tcp.set_timer(id, chargen_count_wait);
        return true;
    default:
        return false;
    }
}

void TestServices::on_readable(ConnectionId id)
{
    Conn& c = conn(id);
    switch (c.service) {
    case Service::echo: echo(id); break;
    case Service::discard: discard(id); break;
    case Service::chargen: chargen_read(id, c); break;
    case Service::none: break;
    }
}

void TestServices::on_writable(ConnectionId id)
{
    Conn& c = conn(id);
    if (c.service == Service::echo) {
        echo(id);
    } else if (c.service == Service::chargen && !c.counting) {
        chargen_send(id, c);
    }
}

void TestServices::on_timer(ConnectionId id)
{
    Conn& c = conn(id);
    if (c.service == Service::chargen && c.counting) {
        c.counting = false;
        c.unlimited = true;
        chargen_send(id, c);
    }
}

void TestServices::on_closed(ConnectionId id, CloseReason reason)
{
    if (reason == CloseReason::reset) {
        ++_counters.closed_by_peer_reset;
    }
    if (id.index < _conns.size()) {
        _conns[id.index] = Conn{};
    }
}

void TestServices::echo(ConnectionId id)
{
    // Take only what the send queue has room for: the rest stays in the receive queue and closes the
    // client's window until it reads its echo (on_writable brings us back).
    for (;;) {
        const std::size_t room = std::min(_tcp.send_space(id), _scratch.size());
        if (room == 0) {
            break;
        }
        const std::size_t n = _tcp.peek(id, std::span(_scratch).first(room));
        if (n == 0) {
            break;
        }
        const std::size_t sent = _tcp.send(id, std::span(_scratch).first(n));
        _tcp.consume(id, sent);
        _counters.echo_bytes += sent;
        if (sent < n) {
            break;
        }
    }
    if (_tcp.peer_closed(id)) {
        Conn& c = conn(id);
        c.done = true;
        _tcp.close(id);  // FIN after the last echoed byte
    }
}

void TestServices::discard(ConnectionId id)
{
    for (;;) {
        const std::size_t n = _tcp.read(id, _scratch);
        if (n == 0) {
            break;
        }
        _counters.discard_bytes += n;
    }
    if (_tcp.peer_closed(id)) {
        _tcp.close(id);
    }
}

void TestServices::chargen_read(ConnectionId id, Conn& c)
{
    if (c.counting) {
        std::array<std::byte, 32> buf{};
        // Read byte by byte up to the newline, so what follows the count stays unread (and is discarded below).
        while (c.counting) {
            if (_tcp.read(id, std::span(buf).first(1)) == 0) {
                break;
            }
            const char ch = static_cast<char>(buf[0]);
            if (ch == '\n') {
                c.counting = false;
                std::uint64_t count = 0;
                bool digits = c.line_len > 0;
                for (std::size_t i = 0; i < c.line_len; ++i) {
                    const char d = c.line[i];
                    if (d == '\r' && i + 1 == c.line_len) {
                        break;
                    }
                    if (d < '0' || d > '9') {
                        digits = false;
                        break;
                    }
                    count = count * 10 + static_cast<std::uint64_t>(d - '0');
                }
                _tcp.cancel_timer(id);
                if (digits) {
                    ++_counters.chargen_counted;
                    c.remaining = count;
                } else {
                    c.unlimited = true;
                }
                chargen_send(id, c);
                if (!_tcp.valid(id)) {
                    return;
                }
            } else if (c.line_len < c.line.size()) {
                c.line[c.line_len++] = ch;
            } else {
                c.counting = false;  // too long to be a count
                c.unlimited = true;
                _tcp.cancel_timer(id);
                chargen_send(id, c);
                if (!_tcp.valid(id)) {
                    return;
                }
            }
        }
    }
    if (!c.counting) {
        while (_tcp.read(id, _scratch) > 0) {
        }
    }
    if (_tcp.peer_closed(id) && !c.done) {
        if (c.unlimited || c.counting) {
            c.done = true;
            _tcp.close(id);
        }
        // counted mode: the client half-closed after its request; keep sending, close when done.
    }
}

void TestServices::chargen_send(ConnectionId id, Conn& c)
{
    if (c.done) {
        return;
    }
    for (;;) {
        std::size_t want = std::min(_tcp.send_space(id), _scratch.size());
        if (!c.unlimited) {
            want = static_cast<std::size_t>(std::min<std::uint64_t>(want, c.remaining));
        }
        if (want == 0) {
            break;
        }
        chargen_fill(c.offset, std::span(_scratch).first(want));
        const std::size_t sent = _tcp.send(id, std::span(_scratch).first(want));
        c.offset += sent;
        _counters.chargen_bytes += sent;
        if (!c.unlimited) {
            c.remaining -= sent;
        }
        if (sent < want) {
            break;
        }
    }
    if (!c.unlimited && c.remaining == 0) {
        c.done = true;
        _tcp.close(id);  // FIN after the last pattern byte
    }
}

}  // namespace cm::tcp

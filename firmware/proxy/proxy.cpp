#include "proxy/proxy.hpp"

#include "base/log.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

namespace cm::proxy {
namespace {

constexpr std::size_t read_chunk = 16 * 1024;
constexpr std::size_t pass_chunk = 64 * 1024;
constexpr auto fill_interval = std::chrono::milliseconds(100);

const char* reason_phrase(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Error";
    }
}

std::string error_response(int status)
{
    const std::string body = fmt::format("{} {}\n", status, reason_phrase(status));
    return fmt::format("HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                       status, reason_phrase(status), body.size(), body);
}

std::string dotted(std::uint32_t a)
{
    return fmt::format("{}.{}.{}.{}", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
}

/// Hop-by-hop headers (RFC 9110 7.6.1) and the ones the card answers or owns itself.
bool dropped_header(std::string_view line)
{
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) {
        return false;
    }
    std::string name;
    for (char ch : line.substr(0, colon)) {
        name.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(ch))));
    }
    return name == "connection" || name == "keep-alive" || name == "proxy-connection" || name == "te" ||
           name == "upgrade" || name == "expect" || name == "forwarded";
}

std::string_view bytes_view(std::span<const std::byte> data)
{
    return {reinterpret_cast<const char*>(data.data()), data.size()};
}

wire::Bytes as_bytes(const char* data, std::size_t size)
{
    return {reinterpret_cast<const std::byte*>(data), size};
}

wire::MutableBytes as_writable(char* data, std::size_t size)
{
    return {reinterpret_cast<std::byte*>(data), size};
}

}  // namespace

Proxy::Proxy(tcp::TcpLayer& tcp, bus::BusEngine& bus, core::TimerWheel& timers, const ProxyConfig& config)
    : _tcp(tcp),
      _bus(bus),
      _timers(timers),
      _config(config),
      _security(config.security),
      _clients(tcp.config().max_connections),
      _links(config.max_bus_connections),
      _scratch(pass_chunk),
      _fill_timer(&Proxy::on_fill_timer, this)
{
    if (_config.max_clients == 0 || _config.max_clients > tcp.config().max_connections) {
        _config.max_clients = static_cast<std::uint32_t>(tcp.config().max_connections);
    }
    _free_links.reserve(_links.size());
    for (std::size_t i = _links.size(); i-- > 0;) {
        _free_links.push_back(static_cast<std::uint32_t>(i));
    }
    _link_by_ref.reserve(_links.size() * 2);
}

Proxy::~Proxy()
{
    // Nothing may call back into a destroyed proxy: the bus connections are reset (their handler is
    // detached at once) and the client connections aborted (no callback follows an abort).
    for (std::uint32_t i = 0; i < _links.size(); ++i) {
        if (_links[i].used) {
            _bus.reset(_links[i].ref, CM_BUS_ECONNRESET);
        }
    }
    for (Client& c : _clients) {
        if (c.state != State::free) {
            _tcp.abort(c.id);
        }
    }
    for (const Port& p : _ports) {
        _tcp.unlisten(p.config.port);
    }
}

std::string Proxy::start()
{
    if (_config.ports.size() > 255) {
        return "at most 255 proxy ports";
    }
    for (const ProxyPort& p : _config.ports) {
        Port port;
        port.config = p;
        if (port.config.bus_port == 0) {
            port.config.bus_port = p.port;
        }
        if (!_tcp.listen(p.port, _client_side)) {
            return fmt::format("proxy: port {} is already in use on the card", p.port);
        }
        _ports.push_back(std::move(port));
    }
    if (_config.bus_mode == BusMode::pooled) {
        _timers.schedule_after(_fill_timer, fill_interval);
    }
    return {};
}

std::optional<TimePoint> Proxy::next_wakeup() const
{
    if (_dispatch_pending) {
        return TimePoint{};  // due now: the loop must not sleep before poll() dispatches
    }
    return std::nullopt;
}

std::size_t Proxy::poll(TimePoint /*now*/)
{
    if (!_dispatch_pending) {
        return 0;
    }
    _dispatch_pending = false;
    dispatch();
    return 1;
}

void Proxy::update_gauges()
{
    _counters.clients_peak = std::max(_counters.clients_peak, _counters.clients_active);
    _counters.bus_peak = std::max(_counters.bus_peak, _counters.bus_open);
    _counters.bus_busy_peak = std::max(_counters.bus_busy_peak, _counters.bus_busy);
    _counters.ready_peak = std::max(_counters.ready_peak, _counters.ready_queued);
    _counters.response_buffered_peak = std::max(_counters.response_buffered_peak, _counters.response_buffered);
}

// ---- client side ------------------------------------------------------------------------------------

Proxy::Client* Proxy::client(tcp::ConnectionId id)
{
    if (id.index >= _clients.size()) {
        return nullptr;
    }
    Client& c = _clients[id.index];
    return c.state != State::free && c.id == id ? &c : nullptr;
}

bool Proxy::client_accept(tcp::ConnectionId id, const tcp::FourTuple& tuple)
{
    if (_counters.clients_active >= _config.max_clients) {
        ++_counters.refused_max_clients;
        return false;
    }
    switch (_security.admit(tuple.remote_ip.value)) {
    case Verdict::denied: ++_counters.refused_denied; return false;
    case Verdict::not_allowed: ++_counters.refused_not_allowed; return false;
    case Verdict::source_cap: ++_counters.refused_source_cap; return false;
    case Verdict::allowed: break;
    }
    std::uint8_t port = 0;
    while (port < _ports.size() && _ports[port].config.port != tuple.local_port) {
        ++port;
    }
    if (port == _ports.size() || id.index >= _clients.size()) {
        _security.release(tuple.remote_ip.value);
        return false;
    }
    Client& c = _clients[id.index];
    c.id = id;
    c.port = port;
    c.source = tuple.remote_ip.value;
    c.source_port = tuple.remote_port;
    c.local_addr = tuple.local_ip.value;
    c.local_port = tuple.local_port;
    c.keep_alive = c.head = c.continue_sent = c.response_started = c.close_after = false;
    c.eof_to_bus = c.eof_from_bus = false;
    c.link = none;
    c.fed = c.request_len = c.out_head = 0;
    ++_counters.clients_accepted;
    ++_counters.clients_active;
    // The card writes whole responses: Nagle would hold a response's last partial segment until the
    // client's delayed ACK of the one before (40 ms per keep-alive response), as it does for nginx without
    // tcp_nodelay.
    _tcp.set_nodelay(id, true);
    if (_ports[port].config.kind == ProxyKind::pass) {
        ++_counters.pass_clients;
        enqueue(c);
    } else {
        c.state = State::idle;
        if (!c.framer) {
            c.framer = std::make_unique<RequestFramer>(_config.limits);
        } else {
            c.framer->reset();
        }
        _tcp.set_timer(id, _config.keepalive_timeout);
    }
    update_gauges();
    return true;
}

void Proxy::client_readable(tcp::ConnectionId id)
{
    Client* c = client(id);
    if (c == nullptr) {
        return;
    }
    switch (c->state) {
    case State::idle:
    case State::reading:
        read_request(*c);
        break;
    case State::lingering: {
        // An error answer went out; read and drop what the client still sends so that closing does not
        // reset the connection before the client has read the answer.
        while (_tcp.read(id, as_writable(_scratch.data(), _scratch.size())) > 0) {
        }
        if (_tcp.peer_closed(id)) {
            finish_client(*c, false);
        }
        break;
    }
    case State::streaming:
        pump_to_bus(*c);
        break;
    default:
        break;  // a request is in flight: the next one waits in TCP's buffer (its window is the limit)
    }
}

void Proxy::read_request(Client& c)
{
    const std::size_t max_buffer = _config.limits.max_header_bytes + 2 * _config.limits.max_body_bytes + 4096;
    RequestFramer& framer = *c.framer;
    for (;;) {
        if (c.fed == c.in.size()) {
            if (c.in.size() >= max_buffer) {
                answer_error(c, 413);
                return;
            }
            const std::size_t old = c.in.size();
            c.in.resize(old + std::min(read_chunk, max_buffer - old));
            const std::size_t n =
                _tcp.read(c.id, as_writable(c.in.data() + old, c.in.size() - old));
            c.in.resize(old + n);
            _counters.bytes_from_clients += n;
            if (n == 0) {
                break;
            }
        }
        const bool had_headers = framer.headers_complete();
        c.fed += framer.feed(std::string_view(c.in).substr(c.fed));
        if (framer.started() && c.state == State::idle) {
            c.state = State::reading;
            c.request_started = _timers.current_time();
            _tcp.set_timer(c.id, _config.request_timeout);
        }
        if (framer.status() == RequestFramer::Status::error) {
            answer_error(c, framer.error_status());
            return;
        }
        if (!had_headers && framer.headers_complete()) {
            if (!_security.header_ok(framer.required_header_present(), framer.required_header_value())) {
                ++_counters.refused_header;
                answer_error(c, 403);
                return;
            }
            if (framer.expects_continue() && framer.status() == RequestFramer::Status::need_more && !c.continue_sent) {
                static constexpr std::string_view continue_line = "HTTP/1.1 100 Continue\r\n\r\n";
                c.continue_sent = true;
                ++_counters.continues_sent;
                deliver(c, continue_line);
            }
        }
        if (framer.status() == RequestFramer::Status::complete) {
            request_complete(c);
            return;
        }
    }
    if (_tcp.peer_closed(c.id)) {
        // The client finished sending. Between requests that is its way of saying goodbye; inside one, the
        // request can never complete.
        finish_client(c, false);
    }
}

void Proxy::request_complete(Client& c)
{
    ++_counters.requests;
    c.request_len = c.fed;
    c.keep_alive = c.framer->keep_alive();
    c.head = c.framer->is_head();
    c.response_started = false;
    if (c.in.size() > c.request_len) {
        ++_counters.requests_pipelined;
    }
    rewrite_head(c);
    enqueue(c);
}

void Proxy::rewrite_head(Client& c)
{
    const std::size_t head_len = c.framer->head_bytes();
    if (head_len == 0 || head_len > c.request_len) {
        return;  // cannot happen for a request llhttp completed; forward it untouched if it does
    }
    const std::string_view head = std::string_view(c.in).substr(0, head_len);
    std::string out;
    out.reserve(head_len + 64);
    bool first = true;
    bool dropping = false;
    std::size_t pos = 0;
    while (pos < head.size()) {
        std::size_t end = head.find('\n', pos);
        if (end == std::string_view::npos) {
            end = head.size();
        }
        std::string_view line = head.substr(pos, end - pos);
        pos = end + 1;
        if (!line.empty() && line.back() == '\r') {
            line.remove_suffix(1);
        }
        if (line.empty()) {
            continue;  // leading empty lines and the final one
        }
        if (first) {
            out.append(line).append("\r\n");
            first = false;
            continue;
        }
        if (line.front() == ' ' || line.front() == '\t') {  // obsolete line folding: part of the last header
            if (!dropping) {
                out.append(line).append("\r\n");
            }
            continue;
        }
        dropping = dropped_header(line);
        if (!dropping) {
            out.append(line).append("\r\n");
        }
    }
    // HTTP/1.0 is not persistent by default: ask the server to keep the bus connection (an HTTP/1.0 client
    // that asked for keep-alive then also finds it in the response; the card closes the others itself).
    if (c.framer->is_http10()) {
        out.append("Connection: keep-alive\r\n");
    }
    // RFC 7239: who the client is, for the server (in pooled mode the bus connection says nothing).
    out.append(fmt::format("Forwarded: for=\"{}:{}\"\r\n\r\n", dotted(c.source), c.source_port));
    c.in.replace(0, head_len, out);
    c.request_len = c.request_len - head_len + out.size();
    c.fed = c.fed - head_len + out.size();
}

void Proxy::enqueue(Client& c)
{
    c.state = State::queued;
    _ports[c.port].ready.push_back(c.id);
    ++_counters.ready_queued;
    _tcp.set_timer(c.id, _config.response_timeout);
    _dispatch_pending = true;
    update_gauges();
}

void Proxy::answer_error(Client& c, int status)
{
    switch (status) {
    case 400: ++_counters.status_400; break;
    case 408: ++_counters.status_408; break;
    case 413: ++_counters.status_413; break;
    case 417: ++_counters.status_417; break;
    case 431: ++_counters.status_431; break;
    case 502: ++_counters.status_502; break;
    case 503: ++_counters.status_503; break;
    case 504: ++_counters.status_504; break;
    default: break;
    }
    if (c.link != none) {
        reset_link(c.link);
        c.link = none;
    }
    if (c.state == State::queued) {
        --_counters.ready_queued;  // its FIFO entry is skipped as stale
    }
    c.state = State::lingering;
    c.close_after = true;
    deliver(c, error_response(status));
    _tcp.shutdown_write(c.id);
    _tcp.set_timer(c.id, _config.linger_timeout);
    c.in.clear();
    c.fed = c.request_len = 0;
}

std::size_t Proxy::response_room(Client& c)
{
    const std::size_t queued = c.out.size() - c.out_head;
    const std::size_t room = queued < _config.response_buffer ? _config.response_buffer - queued : 0;
    return room + (queued == 0 ? _tcp.send_space(c.id) : 0);
}

void Proxy::deliver(Client& c, std::string_view bytes)
{
    if (c.out.size() == c.out_head) {
        const std::size_t n =
            _tcp.send(c.id, as_bytes(bytes.data(), bytes.size()));
        _counters.bytes_to_clients += n;
        bytes.remove_prefix(n);
        c.out.clear();
        c.out_head = 0;
    }
    if (!bytes.empty()) {
        c.out.append(bytes);
        _counters.response_buffered += bytes.size();
        update_gauges();
    }
}

bool Proxy::drain(Client& c)
{
    if (c.out.size() > c.out_head) {
        const std::size_t n = _tcp.send(c.id, as_bytes(c.out.data() + c.out_head, c.out.size() - c.out_head));
        c.out_head += n;
        _counters.bytes_to_clients += n;
        _counters.response_buffered -= n;
        if (c.out_head == c.out.size()) {
            c.out.clear();
            c.out_head = 0;
        } else if (c.out_head > c.out.size() / 2 && c.out_head > 64 * 1024) {
            c.out.erase(0, c.out_head);  // keep the queue from growing without bound at the front
            c.out_head = 0;
        }
        if (n > 0 && c.state == State::draining) {
            _tcp.set_timer(c.id, _config.send_timeout);
        }
    }
    return c.out.size() == c.out_head;
}

void Proxy::client_writable(tcp::ConnectionId id)
{
    Client* c = client(id);
    if (c == nullptr) {
        return;
    }
    const bool empty = drain(*c);
    switch (c->state) {
    case State::forwarding:
        if (c->link != none && _links[c->link].blocked && response_room(*c) > 0) {
            _links[c->link].blocked = false;
            _bus.resume(_links[c->link].ref);
        }
        break;
    case State::draining:
        if (empty) {
            after_response(*c);
        }
        break;
    case State::streaming:
        if (c->link != none) {
            _bus.resume(_links[c->link].ref);
        }
        break;
    default:
        break;
    }
}

void Proxy::response_done(Client& c)
{
    ++_counters.responses;
    const Link& l = _links[c.link];
    c.close_after = !(c.keep_alive && l.framer.keep_alive());
    c.link = none;
    c.state = State::draining;
    c.in.erase(0, c.request_len);
    c.fed -= c.request_len;
    c.request_len = 0;
    c.framer->reset();
    c.continue_sent = false;
    _tcp.set_timer(c.id, _config.send_timeout);
    if (drain(c)) {
        after_response(c);
    }
}

void Proxy::after_response(Client& c)
{
    if (c.close_after) {
        finish_client(c, false);
        return;
    }
    c.state = State::idle;
    c.fed = 0;  // the framer starts over on what is buffered (a pipelined request)
    _tcp.set_timer(c.id, _config.keepalive_timeout);
    read_request(c);
}

void Proxy::client_timer(tcp::ConnectionId id)
{
    Client* c = client(id);
    if (c == nullptr) {
        return;
    }
    switch (c->state) {
    case State::idle:
        ++_counters.keepalive_closed;
        finish_client(*c, false);
        break;
    case State::reading:
        answer_error(*c, 408);
        break;
    case State::queued:
        if (_ports[c->port].config.kind == ProxyKind::pass) {
            --_counters.ready_queued;
            ++_counters.status_503;
            finish_client(*c, true);
        } else {
            answer_error(*c, 503);
        }
        break;
    case State::forwarding:
        if (!c->response_started) {
            answer_error(*c, 504);
        } else {
            ++_counters.status_504;
            finish_client(*c, true);
        }
        break;
    case State::draining:
        ++_counters.send_timeouts;
        finish_client(*c, true);
        break;
    case State::lingering:
        finish_client(*c, false);
        break;
    case State::streaming:
        ++_counters.pass_idle_closed;
        finish_client(*c, false);
        break;
    case State::free:
        break;
    }
}

void Proxy::client_closed(tcp::ConnectionId id, tcp::CloseReason /*reason*/)
{
    Client* c = client(id);
    if (c == nullptr) {
        return;
    }
    if (c->state == State::forwarding || c->state == State::streaming) {
        ++_counters.client_aborts;
    }
    if (c->state == State::queued) {
        --_counters.ready_queued;
    }
    if (c->link != none) {
        reset_link(c->link);
        c->link = none;
    }
    free_client(*c);  // the id is already gone: nothing to close
}

void Proxy::finish_client(Client& c, bool reset)
{
    if (c.link != none) {
        if (c.state == State::streaming && !reset) {
            // pass-through: the host already sent its EOF (or never will); let the link close normally
            Link& l = _links[c.link];
            l.client = none;
            if (!c.eof_to_bus) {
                _bus.send_eof(l.ref);
            }
            l.retiring = true;
            --_counters.bus_busy;
        } else {
            reset_link(c.link);
        }
        c.link = none;
    }
    if (reset) {
        _tcp.abort(c.id);
    } else {
        _tcp.close(c.id);
    }
    free_client(c);
}

void Proxy::free_client(Client& c)
{
    _counters.response_buffered -= c.out.size() - c.out_head;
    _security.release(c.source);
    c.state = State::free;
    std::string().swap(c.in);  // an idle client holds no buffer memory
    std::string().swap(c.out);
    c.out_head = c.fed = c.request_len = 0;
    --_counters.clients_active;
}

// ---- pass-through -----------------------------------------------------------------------------------

void Proxy::pump_to_bus(Client& c)
{
    if (c.link == none) {
        return;
    }
    Link& l = _links[c.link];
    for (;;) {
        const std::size_t n = _tcp.peek(c.id, as_writable(_scratch.data(), _scratch.size()));
        if (n == 0) {
            break;
        }
        const std::size_t taken = _bus.send(l.ref, {reinterpret_cast<const std::byte*>(_scratch.data()), n});
        _tcp.consume(c.id, taken);
        _counters.bytes_from_clients += taken;
        if (taken > 0) {
            _tcp.set_timer(c.id, _config.pass_idle_timeout);
        }
        if (taken < n) {
            return;  // on_writable of the bus connection brings us back
        }
    }
    if (_tcp.peer_closed(c.id) && !c.eof_to_bus) {
        c.eof_to_bus = true;
        _bus.send_eof(l.ref);
        maybe_end_pass(c);
    }
}

void Proxy::maybe_end_pass(Client& c)
{
    if (c.eof_to_bus && c.eof_from_bus && c.out.size() == c.out_head) {
        finish_client(c, false);
    }
}

// ---- bus side -----------------------------------------------------------------------------------------

Proxy::Link* Proxy::link(bus::ConnRef conn)
{
    const auto it = _link_by_ref.find(key(conn));
    if (it == _link_by_ref.end()) {
        return nullptr;
    }
    Link& l = _links[it->second];
    return l.used && l.ref == conn ? &l : nullptr;
}

std::uint32_t Proxy::open_link(std::uint8_t port, bool pooled, const Client* c, std::uint32_t& error)
{
    if (_free_links.empty()) {
        error = CM_BUS_ENOSPC;
        return none;
    }
    const Port& p = _ports[port];
    bus::ConnInfo info;
    info.local_port = p.config.port;
    info.proxy_id = static_cast<std::uint16_t>(port + 1);
    if (c != nullptr) {
        info.peer_addr = c->source;
        info.peer_port = c->source_port;
        info.local_addr = c->local_addr;
        info.client_id = std::uint64_t{c->id.index} << 32 | c->id.generation;
    }
    auto opened = _bus.open_connection(p.config.bus_port, info, _server_side);
    if (!opened) {
        ++_counters.bus_open_failed;
        error = opened.error();
        return none;
    }
    const std::uint32_t index = _free_links.back();
    _free_links.pop_back();
    Link& l = _links[index];
    l.ref = *opened;
    l.used = true;
    l.pooled = pooled;
    l.idle = l.retiring = l.host_eof = l.blocked = l.served = false;
    l.port = port;
    l.client = none;
    l.sent = 0;
    _link_by_ref[key(l.ref)] = index;
    ++_counters.bus_opened;
    ++_counters.bus_open;
    if (pooled) {
        ++_ports[port].pooled;
    }
    update_gauges();
    return index;
}

void Proxy::forget_link(std::uint32_t index)
{
    Link& l = _links[index];
    if (!l.used) {
        return;
    }
    if (l.client != none) {
        --_counters.bus_busy;
    }
    if (l.pooled) {
        Port& p = _ports[l.port];
        --p.pooled;
        if (l.idle) {
            p.idle.erase(std::remove(p.idle.begin(), p.idle.end(), index), p.idle.end());
        }
    }
    _link_by_ref.erase(key(l.ref));
    l.used = false;
    l.client = none;
    _free_links.push_back(index);
    --_counters.bus_open;
    _dispatch_pending = true;  // a bus connection less: a queued request may open one
}

void Proxy::reset_link(std::uint32_t index)
{
    Link& l = _links[index];
    if (l.used) {
        _bus.reset(l.ref, CM_BUS_ECONNRESET);
        forget_link(index);
    }
}

void Proxy::dispatch()
{
    const bool pooled = _config.bus_mode == BusMode::pooled;
    for (std::size_t k = 0; k < _ports.size(); ++k) {
        const auto port = static_cast<std::uint8_t>((_next_port + k) % _ports.size());
        Port& p = _ports[port];
        while (!p.ready.empty()) {
            Client* c = client(p.ready.front());
            if (c == nullptr || c->state != State::queued) {
                p.ready.pop_front();  // gone or answered meanwhile; already uncounted
                continue;
            }
            const bool pass = p.config.kind == ProxyKind::pass;
            std::uint32_t index = none;
            std::uint32_t error = 0;
            if (!pass && pooled) {
                if (!p.idle.empty()) {
                    index = p.idle.back();
                    p.idle.pop_back();
                    _links[index].idle = false;
                } else if (p.pooled < _config.pool_size && _counters.bus_open < _config.max_bus_connections) {
                    index = open_link(port, true, nullptr, error);
                }
            } else if (_counters.bus_open < _config.max_bus_connections) {
                index = open_link(port, false, c, error);
            }
            if (index == none) {
                if (error == CM_BUS_ENOENT) {  // no host server listens: waiting would not help
                    p.ready.pop_front();
                    if (pass) {
                        --_counters.ready_queued;
                        ++_counters.status_503;
                        finish_client(*c, true);
                    } else {
                        answer_error(*c, 503);
                    }
                    continue;
                }
                break;  // every bus connection is busy: the FIFO waits for one to be released
            }
            p.ready.pop_front();
            --_counters.ready_queued;
            Link& l = _links[index];
            if (l.served) {
                ++_counters.bus_reused;
            }
            l.served = true;
            l.client = c->id.index;
            l.sent = 0;
            l.blocked = false;
            l.framer.start(c->head);
            c->link = index;
            ++_counters.bus_busy;
            if (pass) {
                c->state = State::streaming;
                _tcp.set_timer(c->id, _config.pass_idle_timeout);
                pump_to_bus(*c);
            } else {
                c->state = State::forwarding;
                send_request(l);
            }
            update_gauges();
        }
    }
    _next_port = _ports.empty() ? 0 : (_next_port + 1) % _ports.size();
}

void Proxy::send_request(Link& l)
{
    Client& c = _clients[l.client];
    // Only while bus connections are to spare: a held request holds its bus connection, and requests queued
    // for one must not wait for the host's wake-up too. When they run short, the next request wakes the host
    // for every one held.
    const Port& p = _ports[c.port];
    const bool to_spare = p.ready.empty() && (_config.bus_mode == BusMode::pooled
                                                  ? !p.idle.empty()
                                                  : _counters.bus_open + 1 < _config.max_bus_connections);
    const bool slow = _config.slow_request_delay > Duration::zero() && to_spare &&
                      _timers.current_time() - c.request_started >= _config.slow_request_after;
    const Duration may_wait = slow ? _config.slow_request_delay : Duration::zero();
    while (l.sent < c.request_len) {
        const std::size_t n = _bus.send(l.ref, {reinterpret_cast<const std::byte*>(c.in.data() + l.sent), c.request_len - l.sent},
                                        may_wait);
        if (n == 0) {
            return;  // on_writable continues
        }
        l.sent += n;
    }
    if (l.sent == c.request_len) {
        ++_counters.requests_forwarded;
        _counters.requests_slow_delayed += slow ? 1 : 0;
        l.sent = c.request_len + 1;  // counted once
    }
}

std::size_t Proxy::bus_data(bus::ConnRef conn, std::span<const std::byte> data)
{
    Link* lp = link(conn);
    if (lp == nullptr) {
        return data.size();
    }
    Link& l = *lp;
    const std::uint32_t index = static_cast<std::uint32_t>(&l - _links.data());
    if (l.client == none) {
        // A host talking without a request (an idle pooled connection, or after its last response).
        _counters.server_extra_bytes += data.size();
        reset_link(index);
        return data.size();
    }
    Client& c = _clients[l.client];
    if (c.state == State::streaming) {
        const std::size_t n = _tcp.send(c.id, data);
        _counters.bytes_to_clients += n;
        if (n > 0) {
            _tcp.set_timer(c.id, _config.pass_idle_timeout);
        }
        return n;  // the rest waits in the engine; the client's on_writable resumes it
    }
    if (c.state != State::forwarding) {
        _counters.server_extra_bytes += data.size();
        reset_link(index);
        return data.size();
    }
    const std::size_t room = response_room(c);
    const std::size_t take = std::min(room, data.size());
    if (take == 0) {
        l.blocked = true;
        ++_counters.response_backpressure;
        return 0;
    }
    const std::string_view bytes = bytes_view(data.first(take));
    const std::size_t used = l.framer.feed(bytes);
    if (l.framer.status() == ResponseFramer::Status::error) {
        ++_counters.server_bad_responses;
        server_failed(c, l, l.framer.error_reason());
        return data.size();
    }
    deliver(c, bytes.substr(0, used));
    c.response_started = c.response_started || used > 0;
    if (l.framer.status() != ResponseFramer::Status::complete) {
        if (take < data.size()) {
            l.blocked = true;
            ++_counters.response_backpressure;
        }
        return used;
    }
    const bool extra = used < data.size();
    if (extra) {
        _counters.server_extra_bytes += data.size() - used;
    }
    release_link(l, !extra && l.framer.keep_alive());
    response_done(c);
    return data.size();
}

void Proxy::release_link(Link& l, bool reusable)
{
    Client& c = _clients[l.client];
    const std::uint32_t index = c.link;
    l.client = none;
    l.blocked = false;
    --_counters.bus_busy;
    if (l.pooled && reusable && !l.host_eof && _config.bus_mode == BusMode::pooled) {
        l.idle = true;
        _ports[l.port].idle.push_back(index);
        _dispatch_pending = true;
        return;
    }
    if (!reusable && l.framer.status() == ResponseFramer::Status::complete && !l.host_eof && l.pooled) {
        // The server said it closes (or sent more than its response): the link cannot serve again.
        reset_link(index);
        return;
    }
    // Per-request mode (or a close-delimited response): our EOF tells the host to close; its CLOSE frees the
    // connection (bus_closed).
    l.retiring = true;
    _bus.send_eof(l.ref);
}

void Proxy::server_failed(Client& c, Link& l, const char* why)
{
    log::debug("proxy: host connection {}/{} failed: {}", l.ref.qp, l.ref.id, why);
    const std::uint32_t index = c.link;
    if (!c.response_started) {
        answer_error(c, 502);  // resets the link
        return;
    }
    ++_counters.responses_cut;
    reset_link(index);
    c.link = none;
    finish_client(c, true);
}

void Proxy::bus_eof(bus::ConnRef conn)
{
    Link* lp = link(conn);
    if (lp == nullptr) {
        return;
    }
    Link& l = *lp;
    l.host_eof = true;
    const std::uint32_t index = static_cast<std::uint32_t>(&l - _links.data());
    if (l.client == none) {
        if (l.idle) {  // the server closes an idle pooled connection (its keep-alive timeout)
            l.idle = false;
            auto& idle = _ports[l.port].idle;
            idle.erase(std::remove(idle.begin(), idle.end(), index), idle.end());
        }
        if (!l.retiring) {
            l.retiring = true;
            _bus.send_eof(l.ref);
        }
        return;
    }
    Client& c = _clients[l.client];
    if (c.state == State::streaming) {
        c.eof_from_bus = true;
        _tcp.shutdown_write(c.id);
        maybe_end_pass(c);
        return;
    }
    l.framer.finish();
    if (l.framer.status() == ResponseFramer::Status::complete) {
        release_link(l, false);
        response_done(c);
        return;
    }
    server_failed(c, l, l.framer.error_reason());
}

void Proxy::bus_writable(bus::ConnRef conn)
{
    Link* l = link(conn);
    if (l == nullptr || l->client == none) {
        return;
    }
    Client& c = _clients[l->client];
    if (c.state == State::streaming) {
        pump_to_bus(c);
    } else if (c.state == State::forwarding) {
        send_request(*l);
    }
}

void Proxy::bus_closed(bus::ConnRef conn, bus::CloseReason reason)
{
    Link* lp = link(conn);
    if (lp == nullptr) {
        return;
    }
    Link& l = *lp;
    const std::uint32_t index = static_cast<std::uint32_t>(&l - _links.data());
    const std::uint32_t client_index = l.client;
    forget_link(index);  // the engine no longer knows the connection
    if (client_index == none) {
        return;
    }
    Client& c = _clients[client_index];
    c.link = none;
    if (c.state == State::streaming) {
        if (reason == bus::CloseReason::host_close && c.eof_from_bus) {
            c.eof_to_bus = true;
            maybe_end_pass(c);
        } else if (reason == bus::CloseReason::host_close) {
            c.eof_from_bus = c.eof_to_bus = true;
            _tcp.shutdown_write(c.id);
            maybe_end_pass(c);
        } else {
            finish_client(c, true);
        }
        return;
    }
    if (c.state == State::forwarding) {
        if (!c.response_started) {
            answer_error(c, 502);
        } else {
            ++_counters.responses_cut;
            finish_client(c, true);
        }
    }
}

// ---- pools --------------------------------------------------------------------------------------------

void Proxy::on_fill_timer(void* self)
{
    auto* proxy = static_cast<Proxy*>(self);
    proxy->fill_pools();
    proxy->_timers.schedule_after(proxy->_fill_timer, fill_interval);
}

void Proxy::fill_pools()
{
    // Pooled bus connections are opened ahead of requests, as soon as (and as long as) the host listens.
    for (std::size_t i = 0; i < _ports.size(); ++i) {
        Port& p = _ports[i];
        if (p.config.kind != ProxyKind::http || !_bus.listening(p.config.bus_port)) {
            continue;
        }
        while (p.pooled < _config.pool_size && _counters.bus_open < _config.max_bus_connections) {
            std::uint32_t error = 0;
            const std::uint32_t index = open_link(static_cast<std::uint8_t>(i), true, nullptr, error);
            if (index == none) {
                break;
            }
            _links[index].idle = true;
            p.idle.push_back(index);
            _dispatch_pending = true;
        }
    }
}

std::string Proxy::check_invariants() const
{
    std::uint64_t busy = 0, open = 0;
    for (std::size_t i = 0; i < _links.size(); ++i) {
        const Link& l = _links[i];
        if (!l.used) {
            continue;
        }
        ++open;
        if (l.client != none) {
            ++busy;
            const Client& c = _clients[l.client];
            if (c.link != i) {
                return fmt::format("link {} names client {} which names link {}", i, l.client, c.link);
            }
        }
    }
    if (open != _counters.bus_open || busy != _counters.bus_busy) {
        return fmt::format("bus_open {} (counted {}), bus_busy {} (counted {})", open, _counters.bus_open, busy,
                           _counters.bus_busy);
    }
    std::uint64_t active = 0, buffered = 0;
    for (const Client& c : _clients) {
        if (c.state != State::free) {
            ++active;
            buffered += c.out.size() - c.out_head;
        }
    }
    if (active != _counters.clients_active || buffered != _counters.response_buffered) {
        return fmt::format("clients {} (counted {}), buffered {} (counted {})", active, _counters.clients_active,
                           buffered, _counters.response_buffered);
    }
    return {};
}

}  // namespace cm::proxy

// The proxy: the heart of cm. Client connections end on the card; each client's request is buffered
// until it is complete, only then handed to the host server over a bus connection; the response is taken
// whole into the card's memory so the bus connection is free at once, and trickled back to the client.
// Many client connections, few bus connections.
//
// Structure (nginx's upstream module and HAProxy's stream/connection split, reduced to one loop):
//   master      ClientSide (a tcp::TcpHandler) accepts on every configured port; the security stage runs
//               first (CIDR deny/allow, per-source cap, global client cap); the client's record (address,
//               state, input queue, output queue, its bus connection) lives in a table indexed by the TCP
//               connection index, so nothing is allocated per connection beyond the queues' bytes.
//   proxies     chosen by port: http (complete-request buffering, pipelining, keep-alive, 100-continue,
//               limits answered 400/403/408/413/417/431, response framing for bus reuse) and pass
//               (bytes both ways over one bus connection per client).
//   bus side    ServerSide (a bus::BusConnHandler) owns the bus connections: per request (opened when a
//               request is complete, closed after its response) or pooled (opened at start-up and while the
//               host listens, reused by requests of many clients, one request at a time).
//   queues      per proxy a FIFO of clients whose request is complete and waits for a bus connection
//               (max_bus_connections bounds those); the clients awaiting a response are the busy links.
//
// Client state machine (HTTP):
//   idle --byte--> reading --complete--> queued --bus connection--> forwarding --response complete-->
//   draining --output sent--> idle (keep-alive) | closed;   any error --> lingering (answer sent, input
//   discarded until the client closes or linger_timeout)
// Pass-through: queued --bus connection--> streaming --both directions ended--> closed.
//
// Re-entrancy: bus callbacks touch only their own bus connection; work that touches others (dispatching
// queued requests to freed or new bus connections) is deferred to poll(), which runs after the bus
// engine's in every loop iteration (add the proxy to the loop after the bus device).
#pragma once

#include "base/clock.hpp"
#include "base/counters.hpp"
#include "bus/engine.hpp"
#include "core/event_loop.hpp"
#include "core/timer_wheel.hpp"
#include "proxy/http_framing.hpp"
#include "proxy/security.hpp"
#include "tcp/tcp.hpp"

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace cm::proxy {

enum class ProxyKind : std::uint8_t { http, pass };
enum class BusMode : std::uint8_t { per_request, pooled };

struct ProxyPort {
    std::uint16_t port = 0;      // the card's port clients connect to
    ProxyKind kind = ProxyKind::http;
    std::uint16_t bus_port = 0;  // the port the host server listens on over the bus (0: the same)
};

struct ProxyConfig {
    std::vector<ProxyPort> ports;
    BusMode bus_mode = BusMode::pooled;
    std::uint32_t pool_size = 16;             // pooled mode: persistent bus connections per HTTP port
    std::uint32_t max_clients = 0;            // client connections at once (0: the TCP layer's limit)
    std::uint32_t max_bus_connections = 256;  // bus connections open at once, all ports together
    RequestLimits limits;
    std::size_t response_buffer = 1024 * 1024;  // per client, beyond the TCP send buffer; then backpressure
    Duration request_timeout = std::chrono::seconds(30);    // first byte to complete request; then 408
    Duration keepalive_timeout = std::chrono::seconds(75);  // idle between requests; then closed
    Duration response_timeout = std::chrono::seconds(60);   // complete request to complete response; 503/504
    Duration send_timeout = std::chrono::seconds(60);       // a client that takes nothing of its response
    Duration linger_timeout = std::chrono::seconds(5);      // after an error answer, reading what still comes
    Duration pass_idle_timeout = std::chrono::minutes(5);   // pass-through: no byte either way; then closed
    // A request that took at least slow_request_after from its first byte to its end is handed to a host armed
    // for work as "may wait" slow_request_delay: it rides with the host's next wake-up instead of one of its
    // own (0: no delay). What a slow client sent over seconds loses nothing by a few more milliseconds.
    Duration slow_request_after = std::chrono::milliseconds(100);
    Duration slow_request_delay = std::chrono::milliseconds(20);
    SecurityConfig security;
};

#define CM_PROXY_COUNTERS(X)                                                                            \
    X(clients_accepted, "client connections accepted by the proxies")                                  \
    X(clients_active, "gauge: client connections held now")                                            \
    X(clients_peak, "most client connections held at once")                                             \
    X(refused_max_clients, "connections refused: max_clients reached")                                 \
    X(refused_denied, "connections refused: source in the deny list")                                  \
    X(refused_not_allowed, "connections refused: source not in the allow list")                        \
    X(refused_source_cap, "connections refused: too many from that source")                             \
    X(refused_header, "requests refused (403): the required header missing or wrong")                  \
    X(requests, "complete requests received from clients")                                              \
    X(requests_pipelined, "requests that arrived behind another one on the same connection")          \
    X(requests_forwarded, "requests handed whole to the host over the bus")                            \
    X(requests_slow_delayed, "slow requests handed over as may-wait (slow_request_delay)")             \
    X(responses, "complete responses taken from the host")                                              \
    X(continues_sent, "100 Continue answers sent for Expect: 100-continue")                             \
    X(status_400, "400 Bad Request: malformed requests")                                                \
    X(status_408, "408 Request Timeout: requests not complete in request_timeout")                    \
    X(status_413, "413 Content Too Large: bodies over the limit")                                       \
    X(status_417, "417 Expectation Failed: an Expect other than 100-continue")                          \
    X(status_431, "431 Request Header Fields Too Large")                                                \
    X(status_502, "502 Bad Gateway: the host closed or answered garbage before a response")            \
    X(status_503, "503 Service Unavailable: no host server listening, or no bus connection in time")   \
    X(status_504, "504 Gateway Timeout: no response within response_timeout")                           \
    X(keepalive_closed, "idle client connections closed after keepalive_timeout")                      \
    X(send_timeouts, "clients closed after taking nothing of their response for send_timeout")        \
    X(client_aborts, "clients gone with a request at the host (its bus connection reset)")            \
    X(responses_cut, "responses cut short by the host after bytes reached the client (client reset)")  \
    X(server_bad_responses, "responses the framer could not parse (502 or client reset)")              \
    X(server_extra_bytes, "bytes a host sent beyond its response or without a request (reset)")        \
    X(bus_opened, "bus connections opened")                                                             \
    X(bus_open, "gauge: bus connections open now")                                                      \
    X(bus_busy, "gauge: bus connections carrying a request or a pass-through client now")              \
    X(bus_peak, "most bus connections open at once")                                                    \
    X(bus_busy_peak, "most bus connections busy at once")                                               \
    X(bus_reused, "requests sent on a pooled bus connection that had served before")                   \
    X(bus_open_failed, "bus connections the engine could not open (no listener, table full)")          \
    X(ready_queued, "gauge: clients with a complete request waiting for a bus connection")             \
    X(ready_peak, "most clients waiting for a bus connection at once")                                  \
    X(response_buffered, "gauge: response bytes held on the card beyond the TCP send buffers")        \
    X(response_buffered_peak, "most response bytes held at once")                                       \
    X(response_backpressure, "times a response waited because its client's buffer was full")          \
    X(bytes_from_clients, "request bytes read from clients")                                            \
    X(bytes_to_clients, "response bytes given to clients' TCP connections")                             \
    X(pass_clients, "pass-through client connections")                                                   \
    X(pass_idle_closed, "pass-through connections closed after pass_idle_timeout without a byte")
CM_DECLARE_COUNTERS(ProxyCounters, CM_PROXY_COUNTERS)

class Proxy final : public core::EventSource {
public:
    Proxy(tcp::TcpLayer& tcp, bus::BusEngine& bus, core::TimerWheel& timers, const ProxyConfig& config);
    ~Proxy() override;
    Proxy(const Proxy&) = delete;
    Proxy& operator=(const Proxy&) = delete;

    /// Listens on every configured port; an error message when a port is taken or the config is wrong.
    [[nodiscard]] std::string start();

    // EventSource: dispatches queued requests to bus connections (deferred work, see the top).
    std::size_t poll(TimePoint now) override;
    void flush() override {}
    [[nodiscard]] int wait_fd() const override { return -1; }
    [[nodiscard]] std::optional<TimePoint> next_wakeup() const override;

    [[nodiscard]] const ProxyCounters& counters() const noexcept { return _counters; }
    void register_counters(CounterRegistry& registry) const { registry.add("proxy", _counters); }
    /// Consistency of the bookkeeping (tests): empty when all is well.
    [[nodiscard]] std::string check_invariants() const;

private:
    static constexpr std::uint32_t none = UINT32_MAX;
    enum class State : std::uint8_t { free, idle, reading, queued, forwarding, draining, lingering, streaming };

    struct Client {
        tcp::ConnectionId id;
        State state = State::free;
        std::uint8_t port = 0;          // index into _ports
        bool keep_alive = false;        // the client may send another request after this response
        bool head = false;              // the request is HEAD
        bool continue_sent = false;
        bool response_started = false;  // bytes of the current response reached the client
        bool close_after = false;       // close once the output is out
        bool eof_to_bus = false;        // pass: the client's FIN went to the host
        bool eof_from_bus = false;      // pass: the host's EOF went to the client
        std::uint32_t source = 0;       // client address (host order) and port
        std::uint16_t source_port = 0;
        std::uint16_t local_port = 0;
        std::uint32_t local_addr = 0;
        std::uint32_t link = none;      // its bus connection (index into _links)
        std::string in;                 // HTTP: request bytes read; [0, request_len) the current request
        std::size_t fed = 0;            // bytes of `in` the framer has seen
        std::size_t request_len = 0;
        TimePoint request_started{};    // the current request's first byte (as the timer wheel knows the time)
        std::string out;                // response bytes the TCP send buffer had no room for
        std::size_t out_head = 0;
        std::unique_ptr<RequestFramer> framer;
    };

    struct Link {
        bus::ConnRef ref;
        bool used = false;
        bool pooled = false;
        bool idle = false;              // pooled, in its port's idle list
        bool retiring = false;          // EOF sent after its last response; waiting for the host to close
        bool host_eof = false;
        bool blocked = false;           // on_data took less: resume when the client has room
        bool served = false;            // has carried a request before (pooled reuse)
        std::uint8_t port = 0;
        std::uint32_t client = none;
        std::size_t sent = 0;           // request bytes sent to the host
        ResponseFramer framer;
    };

    struct Port {
        ProxyPort config;
        std::deque<tcp::ConnectionId> ready;  // clients waiting for a bus connection, oldest first
        std::vector<std::uint32_t> idle;      // pooled links free for a request
        std::uint32_t pooled = 0;             // pooled links open (idle or busy)
    };

    class ClientSide final : public tcp::TcpHandler {
    public:
        explicit ClientSide(Proxy& proxy) : _proxy(proxy) {}
        bool on_accept(tcp::ConnectionId id, const tcp::FourTuple& tuple) override { return _proxy.client_accept(id, tuple); }
        void on_readable(tcp::ConnectionId id) override { _proxy.client_readable(id); }
        void on_writable(tcp::ConnectionId id) override { _proxy.client_writable(id); }
        void on_timer(tcp::ConnectionId id) override { _proxy.client_timer(id); }
        void on_closed(tcp::ConnectionId id, tcp::CloseReason reason) override { _proxy.client_closed(id, reason); }

    private:
        Proxy& _proxy;
    };

    class ServerSide final : public bus::BusConnHandler {
    public:
        explicit ServerSide(Proxy& proxy) : _proxy(proxy) {}
        std::size_t on_data(bus::ConnRef conn, std::span<const std::byte> data) override { return _proxy.bus_data(conn, data); }
        void on_eof(bus::ConnRef conn) override { _proxy.bus_eof(conn); }
        void on_writable(bus::ConnRef conn) override { _proxy.bus_writable(conn); }
        void on_closed(bus::ConnRef conn, bus::CloseReason reason) override { _proxy.bus_closed(conn, reason); }

    private:
        Proxy& _proxy;
    };

    // ---- client side (proxy.cpp) ----
    bool client_accept(tcp::ConnectionId id, const tcp::FourTuple& tuple);
    void client_readable(tcp::ConnectionId id);
    void client_writable(tcp::ConnectionId id);
    void client_timer(tcp::ConnectionId id);
    void client_closed(tcp::ConnectionId id, tcp::CloseReason reason);
    Client* client(tcp::ConnectionId id);
    void read_request(Client& c);
    void request_complete(Client& c);
    /// Rewrites the head of the request for the host: hop-by-hop headers out, Forwarded in.
    void rewrite_head(Client& c);
    void enqueue(Client& c);
    void answer_error(Client& c, int status);
    void deliver(Client& c, std::string_view bytes);
    /// Moves the output queue into the TCP send buffer; true when it is empty.
    bool drain(Client& c);
    void response_done(Client& c);
    void after_response(Client& c);
    void finish_client(Client& c, bool reset);
    void free_client(Client& c);
    void pump_to_bus(Client& c);
    void maybe_end_pass(Client& c);
    [[nodiscard]] std::size_t response_room(Client& c);

    // ---- bus side ----
    std::size_t bus_data(bus::ConnRef conn, std::span<const std::byte> data);
    void bus_eof(bus::ConnRef conn);
    void bus_writable(bus::ConnRef conn);
    void bus_closed(bus::ConnRef conn, bus::CloseReason reason);
    Link* link(bus::ConnRef conn);
    std::uint32_t open_link(std::uint8_t port, bool pooled, const Client* c, std::uint32_t& error);
    void send_request(Link& l);
    /// The response is complete: the link goes back to its pool or is retired.
    void release_link(Link& l, bool reusable);
    /// Resets the link towards the host and forgets it.
    void reset_link(std::uint32_t index);
    void forget_link(std::uint32_t index);
    void server_failed(Client& c, Link& l, const char* why);
    void dispatch();
    void fill_pools();
    static void on_fill_timer(void* self);

    void update_gauges();
    [[nodiscard]] static std::uint64_t key(bus::ConnRef ref) { return std::uint64_t{ref.qp} << 32 | ref.id; }

    tcp::TcpLayer& _tcp;
    bus::BusEngine& _bus;
    core::TimerWheel& _timers;
    ProxyConfig _config;
    SecurityPolicy _security;
    ClientSide _client_side{*this};
    ServerSide _server_side{*this};
    std::vector<Client> _clients;                      // by TCP connection index
    std::vector<Link> _links;
    std::vector<std::uint32_t> _free_links;
    std::unordered_map<std::uint64_t, std::uint32_t> _link_by_ref;
    std::vector<Port> _ports;
    std::vector<char> _scratch;
    core::Timer _fill_timer;
    bool _dispatch_pending = false;
    std::size_t _next_port = 0;                        // round robin over the ports' FIFOs
    ProxyCounters _counters;
};

}  // namespace cm::proxy

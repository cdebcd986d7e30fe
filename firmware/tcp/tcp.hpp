// TCP on the card (RFC 9293), and the interface the proxy uses.
//
// The layer terminates every client connection: passive opens on listening ports (SYN backlog, SYN
// cookies when it overflows: RFC 4987), active opens, MSS / window scale / SACK / timestamps (RFC 7323,
// RFC 2018), RTO per RFC 6298, fast retransmit and recovery (NewReno RFC 6582, SACK-based RFC 6675),
// CUBIC or NewReno congestion control, flow control both ways with persist probes and SWS avoidance,
// delayed ACKs, FIN/half-close/simultaneous close, RST with RFC 5961's protections, TIME_WAIT on the
// timer wheel, keep-alives. Input and output are split (tcp_input.cpp, tcp_output.cpp; each opens with
// its call order), timers are in tcp_timers.cpp, the API and bookkeeping in tcp_layer.cpp.
//
// Plugging in: the layer is the interface's handler for IP protocol 6 and an EventSource of the loop.
// Input runs when the interface delivers a segment; replies that answer one segment (RST, challenge ACK,
// SYN-ACK from a cookie) go out at once; everything else a connection wants to send (data, ACKs, window
// updates, retransmissions, probes) is queued on a pending list and sent by flush(), which the loop calls
// after input and timers and BEFORE the interface flushes the link: several segments that arrive in one
// batch get one ACK, and at most `TcpConfig::tx_budget` segments leave per iteration (the link's transmit
// batch is finite). Add the layer to the loop before the interface.
//
// ---- The API, folly AsyncTransport style ------------------------------------------------------------
// Thread rule: every call, and every callback, happens on the loop's thread. Callbacks are never made
// from inside an API call (an API call only queues work), so the application may call any API function
// from inside any callback, including close/abort of the connection being called back.
//
// Connections are named by ConnectionId {index, generation}. index < TcpConfig::max_connections, so an
// application keeps its per-connection state in an array indexed by it. An id is valid from on_accept /
// connect() until the application calls close() or abort(), or until on_closed() is delivered; after
// that every call with it is a harmless no-op returning 0/false (the generation no longer matches).
//
// Ownership of data: send() copies what it takes into the card's buffer pool; read() copies out. Bytes
// passed to callbacks never point into the stack's memory.
//
// Close semantics:
//   shutdown_write(id)  half-close: a FIN goes after every byte already accepted by send(); reading goes
//                       on; the id stays valid (the application must still close() or see on_closed).
//   close(id)           graceful close: like shutdown_write, and the application gives the id up at once:
//                       no further callbacks, the layer finishes sending queued data and the FIN in the
//                       background (FIN_WAIT_2 is bounded by fin_wait2_timeout). If unread data is waiting,
//                       or data arrives after close, the connection is reset instead (RFC 9293 3.10.4 /
//                       RFC 2525: the peer must learn its data was not read), as Linux does.
//   abort(id)           reset: RST to the peer, queued data dropped, the id given up at once, no callback.
//                       (folly's closeNow and closeWithReset are both this.)
//   on_closed(id, why)  the layer ends a connection the application has not closed: reset by the peer,
//                       retransmission or keep-alive timeout, refused connect, or an orderly end of both
//                       directions (TIME_WAIT expired / last ACK received). Exactly once per connection the
//                       application was given and has not closed or aborted; the id is invalid afterwards.
#pragma once

#include "base/clock.hpp"
#include "base/counters.hpp"
#include "core/event_loop.hpp"
#include "core/timer_wheel.hpp"
#include "stack/interface.hpp"
#include "tcp/buffer_pool.hpp"
#include "tcp/congestion.hpp"
#include "tcp/connection_table.hpp"
#include "tcp/four_tuple.hpp"
#include "tcp/isn.hpp"
#include "tcp/rtt_estimator.hpp"
#include "tcp/syn_cookie.hpp"
#include "tcp/tcb.hpp"
#include "wire/tcp.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace cm::tcp {

struct TcpConfig {
    std::size_t max_connections = 65536;  // control blocks (every state but LISTEN), allocated at start
    std::size_t syn_backlog = 1024;       // SYN_RECEIVED blocks per listener; beyond: SYN cookies
    bool syn_cookies = true;              // false: SYNs beyond the backlog are dropped
    std::size_t buffer_sets = 0;          // connections with buffers attached at once; 0: max_connections
    std::size_t pool_chunk_size = 2048;   // the shared data pool ...
    std::size_t pool_chunks = 16384;      // ... (32 MiB by default)
    std::uint32_t send_buffer = 256 * 1024;  // per-connection cap on queued outgoing bytes
    std::uint32_t send_buffer_min = 4096;    // under memory pressure a sender may still queue this much
                                             // (Linux tcp_wmem[0]); see send_cap() in tcp_layer.cpp
    std::uint32_t recv_buffer = 256 * 1024;  // per-connection cap on received, unread bytes (the window)
    std::uint16_t mss = 1460;             // what we announce (the interface's MTU - 40)
    CongestionAlgorithm congestion = CongestionAlgorithm::cubic;
    RtoLimits rto{};
    Duration delayed_ack = std::chrono::milliseconds(40);
    Duration time_wait = std::chrono::seconds(1);  // short: the card never reuses a client's port
    Duration fin_wait2_timeout = std::chrono::seconds(60);  // after close(), waiting for the peer's FIN
    Duration persist_max = std::chrono::seconds(60);        // zero-window probe interval cap
    unsigned syn_retries = 5;       // SYN / SYN-ACK retransmissions before giving up
    unsigned max_retries = 15;      // data retransmission timeouts in a row before giving up (Linux tcp_retries2)
    bool nagle = true;              // default for new connections (set_nodelay per connection)
    bool timestamps = true;         // offer/accept RFC 7323 timestamps
    bool sack = true;               // offer/accept RFC 2018 SACK
    bool window_scaling = true;
    unsigned challenge_ack_limit = 1000;  // RFC 5961 challenge ACKs per second, all connections together
    std::size_t tx_budget = 192;          // segments flush() sends per loop iteration
    SipKey secret{};                      // table hash key and ISN/cookie secrets derive from it
};

/// A connection as the application names it (see the top of the file).
struct ConnectionId {
    std::uint32_t index = UINT32_MAX;
    std::uint32_t generation = 0;
    bool operator==(const ConnectionId&) const noexcept = default;
};

enum class CloseReason : std::uint8_t {
    normal,             // both directions finished (FIN both ways, acknowledged)
    reset,              // the peer sent RST
    timed_out,          // retransmissions (or the handshake) went unanswered
    keepalive_timeout,  // keep-alive probes went unanswered
    refused,            // connect(): the peer answered RST
    shutdown,           // the layer is being destroyed
};
[[nodiscard]] const char* close_reason_name(CloseReason reason) noexcept;

/// The application's side of its connections. One handler may serve any number of connections (it gets
/// the id with every call). Virtual calls, not std::function: nothing is allocated per connection.
class TcpHandler {
public:
    virtual ~TcpHandler() = default;
    /// A passive open completed (three-way handshake done). Return false to refuse: the layer resets the
    /// connection and the id is never used again.
    virtual bool on_accept(ConnectionId id, const FourTuple& tuple)
    {
        (void)id;
        (void)tuple;
        return true;
    }
    /// An active open (connect) completed.
    virtual void on_connected(ConnectionId id) { (void)id; }
    /// New bytes can be read, or the peer finished sending (read() then returns 0 and peer_closed() is true).
    virtual void on_readable(ConnectionId id) = 0;
    /// After a short send(): room in the send buffer again.
    virtual void on_writable(ConnectionId id) { (void)id; }
    /// The timer set with set_timer() expired.
    virtual void on_timer(ConnectionId id) { (void)id; }
    /// See "Close semantics" at the top of the file.
    virtual void on_closed(ConnectionId id, CloseReason reason) = 0;
};

struct KeepAliveSettings {
    bool enabled = false;
    Duration idle = std::chrono::seconds(7200);    // quiet time before the first probe (<= 18 h)
    Duration interval = std::chrono::seconds(75);  // between probes (<= 18 h)
    unsigned probes = 9;                           // unanswered probes before the connection is reset
};

/// A snapshot for tests, tracing and management.
struct ConnectionInfo {
    FourTuple tuple;
    TcpState state;
    std::uint32_t snd_wnd, rcv_wnd, cwnd, ssthresh, snd_mss;
    std::uint32_t bytes_in_flight, send_queued, recv_queued, ooo_bytes;
    std::optional<Duration> srtt;
    Duration rto;
    bool sack, timestamps, window_scaling;
    std::uint8_t snd_wscale, rcv_wscale;
};

#define CM_TCP_COUNTERS(X)                                                                                  \
    X(rx_segments, "segments received")                                                                   \
    X(rx_truncated, "dropped: shorter than a TCP header or its data offset")                             \
    X(rx_bad_header_length, "dropped: data offset below 5")                                              \
    X(rx_bad_checksum, "dropped: checksum wrong")                                                        \
    X(rx_malformed_options, "dropped: an option with a bad length")                                      \
    X(rx_broadcast, "dropped: sent to a broadcast address")                                              \
    X(rx_bad_ports, "dropped: source or destination port 0")                                             \
    X(rx_bad_flags, "dropped: SYN with FIN or RST, or no ACK where one is required")                     \
    X(rx_no_connection, "segments for no connection and no listener (answered with RST)")               \
    X(rx_listen_dropped, "dropped at a listener: not SYN, not a valid cookie ACK")                       \
    X(rx_out_of_window, "segments outside the receive window (answered with an ACK)")                    \
    X(rx_paws_rejected, "segments with an old timestamp (RFC 7323 PAWS), answered with an ACK")          \
    X(rx_old_ack, "segments whose ACK is older than the window allows (RFC 5961 5.2)")                   \
    X(rx_ack_unsent, "segments acknowledging data never sent (answered with an ACK)")                    \
    X(rx_duplicate_segments, "data segments wholly received before")                                    \
    X(rx_partial_duplicates, "data segments partly received before (trimmed)")                           \
    X(rx_out_of_order, "data segments held for reassembly")                                              \
    X(rx_ooo_dropped, "dropped: out-of-order data beyond the reassembly limits")                         \
    X(rx_beyond_window, "data segments trimmed at the right edge of the window")                         \
    X(rx_buffer_exhausted, "data not taken: the buffer pool or buffer sets ran out")                     \
    X(rx_data_after_close, "data after the application closed (connection reset)")                      \
    X(rx_data_bytes, "bytes received in order")                                                          \
    X(rx_dupacks, "duplicate ACKs received")                                                             \
    X(rx_window_updates, "window updates received")                                                      \
    X(rx_zero_windows, "segments that closed the peer's window")                                         \
    X(rx_sack_blocks, "SACK blocks received")                                                            \
    X(rx_rst, "RST segments received")                                                                   \
    X(rx_rst_accepted, "RSTs that ended a connection")                                                   \
    X(rx_rst_challenged, "RSTs in the window but not at RCV.NXT (answered with a challenge ACK)")        \
    X(rx_rst_ignored, "RSTs outside the window (dropped)")                                               \
    X(rx_syn_in_sync, "SYNs on a synchronized connection (answered with a challenge ACK)")               \
    X(challenge_acks, "challenge ACKs sent (RFC 5961)")                                                  \
    X(challenge_acks_limited, "challenge ACKs not sent: over the rate limit")                            \
    X(rx_syn, "SYNs received by listeners")                                                              \
    X(syn_backlog_overflow, "SYNs that found their listener's backlog (or the table) full")              \
    X(syn_dropped, "SYNs dropped: backlog full and cookies off, or no control block")                    \
    X(syn_cookies_sent, "SYN-ACKs carrying a SYN cookie")                                                \
    X(syn_cookies_validated, "connections established from a valid cookie")                              \
    X(syn_cookies_failed, "ACKs to a listener with an invalid or expired cookie (answered with RST)")    \
    X(syn_ack_timeouts, "half-open connections given up after SYN-ACK retransmissions")                  \
    X(syn_retransmits, "SYN and SYN-ACK retransmissions")                                                \
    X(table_full, "connections refused: no free control block")                                          \
    X(passive_opens, "connections established from a listener")                                          \
    X(active_opens, "connect() calls that sent a SYN")                                                   \
    X(active_established, "active opens that completed")                                                \
    X(accept_refused, "connections the application refused in on_accept (reset)")                        \
    X(tx_segments, "segments sent")                                                                      \
    X(tx_data_segments, "segments sent carrying data")                                                   \
    X(tx_data_bytes, "data bytes sent (retransmissions included)")                                       \
    X(tx_acks, "segments sent with no data, SYN or FIN (ACKs, window updates, probes)")                  \
    X(tx_delayed_acks, "ACKs sent when the delayed-ACK timer expired")                                   \
    X(tx_window_updates, "ACKs sent because our window opened")                                          \
    X(tx_rst, "RSTs sent")                                                                               \
    X(tx_failed, "segments the interface refused (see ipv4.tx_*)")                                       \
    X(tx_budget_exhausted, "flushes that stopped at tx_budget with output still pending")                \
    X(retransmits, "segments retransmitted")                                                             \
    X(retransmitted_bytes, "data bytes retransmitted")                                                   \
    X(fast_retransmits, "fast retransmits (entering recovery)")                                          \
    X(sack_retransmits, "retransmissions of holes the SACK scoreboard found")                            \
    X(rto_timeouts, "retransmission timeouts")                                                           \
    X(zero_window_probes, "zero-window probes sent (persist timer)")                                     \
    X(keepalive_probes, "keep-alive probes sent")                                                        \
    X(keepalive_timeouts, "connections reset after unanswered keep-alives")                              \
    X(retransmit_timeouts, "connections given up after max_retries timeouts")                           \
    X(fin_wait2_timeouts, "closed connections given up in FIN_WAIT_2")                                   \
    X(time_wait_expired, "connections that left TIME_WAIT")                                              \
    X(time_wait_reused, "TIME_WAIT connections replaced by a new SYN (RFC 6191)")                        \
    X(conn_reset_by_peer, "connections ended by the peer's RST")                                         \
    X(conn_aborted, "connections the application aborted (RST sent)")                                    \
    X(conn_closed, "connections freed, whatever the reason")                                             \
    X(conn_active, "control blocks in use now (every state)")                                            \
    X(conn_syn_received, "connections in SYN_RECEIVED now")                                              \
    X(conn_established, "connections in ESTABLISHED now")                                                \
    X(conn_time_wait, "connections in TIME_WAIT now")                                                    \
    X(buffers_attached, "connections with buffers attached now")                                         \
    X(buffer_sets_exhausted, "times a connection needed buffers and no buffer set was free")            \
    X(senders, "connections with bytes queued to send or waiting for pool room, now")                   \
    X(send_share_limited, "send()/send_space() calls held to the connection's share of the pool")       \
    X(pool_waiters, "connections waiting for pool room to send, now")                                     \
    X(api_stale_id, "API calls with an id that is no longer valid (ignored)")
CM_DECLARE_COUNTERS(TcpCounters, CM_TCP_COUNTERS)

class TcpLayer final : public stack::Ipv4ProtocolHandler, public core::EventSource {
public:
    /// Registers itself with `interface` for protocol 6. Allocates the table, the control blocks, the
    /// buffer sets and the pool (once; nothing allocates per connection afterwards). `clock` and `timers`
    /// are the loop's.
    TcpLayer(stack::NetworkInterface& interface, core::TimerWheel& timers, Clock& clock, const TcpConfig& config);
    /// Ends every connection without a word on the wire; handlers get on_closed(shutdown).
    ~TcpLayer() override;
    TcpLayer(const TcpLayer&) = delete;
    TcpLayer& operator=(const TcpLayer&) = delete;

    // ---- listeners ----
    /// Accepts connections to `port` (any local address), reporting them to `handler`, which must outlive
    /// the listener. `backlog` 0 takes the config's. False if the port already has a listener.
    bool listen(std::uint16_t port, TcpHandler& handler, std::size_t backlog = 0);
    /// Stops accepting on `port`; connections already accepted or half-open are not affected.
    void unlisten(std::uint16_t port);

    // ---- connections ----
    /// Active open to remote:port from an ephemeral local port. nullopt when no control block or local
    /// port is free, or the destination has no route. on_connected or on_closed(refused/timed_out) follows.
    std::optional<ConnectionId> connect(wire::Ipv4Address remote, std::uint16_t remote_port, TcpHandler& handler);

    /// Queues up to data.size() bytes for sending; returns how many were taken (0 when the send buffer is
    /// full, the pool is exhausted, after shutdown_write/close, or for an invalid id). A short return (or
    /// a full buffer) arms on_writable.
    ///
    /// The send buffer is `send_buffer` while the pool can hold that much for every connection that is
    /// sending; when it cannot (memory pressure), each sender's buffer is its equal share of three quarters
    /// of the pool, never below `send_buffer_min` (Linux: tcp_mem pressure, sk_stream_moderate_sndbuf and
    /// the per-socket fair share of __sk_mem_raise_allocated, tcp_wmem[0]). The shares converge: a
    /// connection above its share takes nothing more until its ACKs bring it below.
    std::size_t send(ConnectionId id, wire::Bytes data);
    /// Bytes send() would take now: the connection's send buffer (see send()) minus what is queued, and
    /// no more than the pool has free. A send that fills the buffer, a short send, and a send_space() of 0
    /// all arm on_writable, which comes once at least half of the buffer is free again (or, when the pool
    /// was what ran out, once it has room again: waiters are woken a few at a time, oldest first).
    std::size_t send_space(ConnectionId id);
    /// Copies up to out.size() received bytes out and consumes them; opens the window.
    std::size_t read(ConnectionId id, wire::MutableBytes out);
    /// Copies up to out.size() received bytes out without consuming them.
    std::size_t peek(ConnectionId id, wire::MutableBytes out) const;
    /// Consumes n received bytes (at most readable()); opens the window.
    void consume(ConnectionId id, std::size_t n);
    /// Bytes read() would return now.
    [[nodiscard]] std::size_t readable(ConnectionId id) const;
    /// True when the peer's FIN has arrived and every byte before it has been read.
    [[nodiscard]] bool peer_closed(ConnectionId id) const;

    void shutdown_write(ConnectionId id);
    void close(ConnectionId id);
    void abort(ConnectionId id);

    /// Nagle off (true) or on.
    void set_nodelay(ConnectionId id, bool nodelay);
    void set_keepalive(ConnectionId id, const KeepAliveSettings& settings);
    /// One-shot timer for the application: on_timer(id) after `delay` (< 24 days). Replaces a pending one.
    void set_timer(ConnectionId id, Duration delay);
    void cancel_timer(ConnectionId id);

    [[nodiscard]] bool valid(ConnectionId id) const { return lookup(id) != nullptr; }
    [[nodiscard]] std::optional<ConnectionInfo> info(ConnectionId id) const;
    [[nodiscard]] std::optional<TcpState> state(ConnectionId id) const;

    // ---- the layer ----
    void on_ipv4_packet(const stack::Ipv4PacketInfo& info, wire::Bytes payload) override;
    std::size_t poll(TimePoint now) override;
    void flush() override;
    [[nodiscard]] int wait_fd() const override { return -1; }
    [[nodiscard]] std::optional<TimePoint> next_wakeup() const override;

    /// Resets every connection (RST sent) and frees it; handlers of connections the application still
    /// holds get on_closed(shutdown). For tests and orderly shutdown.
    void abort_all();

    [[nodiscard]] std::size_t connection_count() const noexcept { return _table.size(); }
    [[nodiscard]] std::size_t buffer_sets_in_use() const noexcept { return _buffers_in_use; }
    [[nodiscard]] const BufferPool& pool() const noexcept { return _pool; }
    [[nodiscard]] const ConnectionTable& table() const noexcept { return _table; }
    [[nodiscard]] const TcpCounters& counters() const noexcept { return _counters; }
    [[nodiscard]] const TcpConfig& config() const noexcept { return _config; }
    /// Adds tcp.* and tcp.pool.* to `registry`.
    void register_counters(CounterRegistry& registry) const;

    static constexpr std::size_t tcb_size = sizeof(Tcb);
    static constexpr std::size_t buffers_size = sizeof(TcbBuffers);

private:
    friend struct Tcb;
    struct Segment;  // a parsed incoming segment (tcp_input.cpp)
    struct Listener {
        std::uint16_t port = 0;
        std::uint16_t handler = 0;
        std::uint32_t backlog = 0;
        std::uint32_t syn_received = 0;
        bool active = false;
    };
    struct ClosedEvent {
        std::uint16_t handler;
        ConnectionId id;
        CloseReason reason;
    };

    // ---- bookkeeping (tcp_layer.cpp) ----
    [[nodiscard]] Tcb* lookup(ConnectionId id) const;
    [[nodiscard]] Tcb* lookup_or_count(ConnectionId id);
    [[nodiscard]] ConnectionId id_of(const Tcb& t) const noexcept;
    [[nodiscard]] std::uint32_t index_of(const Tcb& t) const noexcept;
    Tcb* allocate(const FourTuple& tuple);
    /// Frees the block; queues on_closed(reason) when the application holds the id.
    void destroy(Tcb& t, CloseReason reason);
    void set_state(Tcb& t, TcpState next);
    std::uint16_t handler_index(TcpHandler& handler);
    [[nodiscard]] TcbBuffers* buffers(const Tcb& t) const noexcept;
    TcbBuffers* attach_buffers(Tcb& t);
    void maybe_release_buffers(Tcb& t);
    void request_output(Tcb& t, std::uint32_t flag = 0);
    /// Delivers the events queued on `t` (accept, readable, writable, timer). `t` may be freed by them.
    void notify(Tcb& t);
    void deliver_closed_events();
    [[nodiscard]] std::uint32_t now_ms() const noexcept;
    [[nodiscard]] std::uint32_t tsval(const Tcb& t) const noexcept;
    [[nodiscard]] std::size_t send_queued(const Tcb& t) const noexcept;
    /// The connection's send buffer now: send_buffer, or its share of the pool under pressure (send()).
    [[nodiscard]] std::size_t send_cap(const Tcb& t) const noexcept;
    /// Pool bytes send() may still take: what is free beyond the receive reserve (an eighth of the pool).
    [[nodiscard]] std::size_t send_pool_room() const noexcept;
    /// Keeps tcb_flag::sender and the senders gauge in step with the send queue and the pool wait.
    void update_sender(Tcb& t) noexcept;
    /// Puts `t` on the pool waiters (once) and arms on_writable.
    void wait_for_pool(Tcb& t);
    /// Wakes waiters (oldest first) for whom the pool has room now.
    void wake_pool_waiters();
    [[nodiscard]] std::size_t recv_queued(const Tcb& t) const noexcept;
    void do_shutdown(Tcb& t);
    /// SMSS: the payload of a full-sized segment we send (the peer's MSS less our timestamp option).
    [[nodiscard]] static std::uint32_t smss(const Tcb& t) noexcept
    {
        return t.snd_mss - ((t.flags & tcb_flag::ts_ok) != 0 ? 12u : 0u);
    }
    void init_tcb_common(Tcb& t);
    std::uint32_t pipe(const Tcb& t, const TcbBuffers& b) const;

    // ---- input (tcp_input.cpp) ----
    void listen_input(Listener& listener, const Segment& seg);
    void syn_to_listener(Listener& listener, const Segment& seg);
    void cookie_ack_to_listener(Listener& listener, const Segment& seg);
    void syn_sent_input(Tcb& t, const Segment& seg);
    void syn_acknowledged(Tcb& t, const Segment& seg);
    void segment_arrives(Tcb& t, const Segment& seg);
    bool process_ack(Tcb& t, const Segment& seg);
    void process_data(Tcb& t, const Segment& seg);
    void process_fin(Tcb& t);
    void enter_time_wait(Tcb& t);
    bool sequence_acceptable(const Tcb& t, const Segment& seg) const;
    void update_ts_recent(Tcb& t, const Segment& seg);
    [[nodiscard]] static std::int32_t paws_tolerance_ms(const Tcb& t) noexcept;
    void challenge_ack(Tcb& t);
    void negotiate_options(Tcb& t, const Segment& seg);

    // ---- output (tcp_output.cpp) ----
    /// Sends what `t` may send now, at most `budget` segments; returns how many it sent.
    std::size_t output(Tcb& t, std::size_t budget);
    std::size_t output_data(Tcb& t, std::size_t budget);
    /// Builds and sends one segment of `t`: `len` bytes of the send queue from `seq`. Returns the data
    /// bytes actually carried (the header may leave less room than asked for), or -1 when not sent.
    long transmit(Tcb& t, wire::SeqNumber seq, std::size_t len, std::uint8_t flags);
    /// The largest payload a data segment of `t` carries now (MSS, options and MTU considered).
    [[nodiscard]] std::size_t max_payload(const Tcb& t) const;
    /// RST (or RST+ACK) in answer to a segment that has no connection.
    void send_reset_for(const Segment& seg);
    void send_reset(Tcb& t);
    /// The window field for a segment of `t` now; moves rcv_adv right (never left).
    std::uint16_t advertise_window(Tcb& t, bool syn);
    [[nodiscard]] std::uint32_t receive_space(const Tcb& t) const;
    [[nodiscard]] bool window_update_due(const Tcb& t) const;
    bool emit_segment(const FourTuple& tuple, wire::TcpRepr& repr);

    // ---- timers (tcp_timers.cpp) ----
    static void timer_callback(void* tcb);
    void on_timer(Tcb& t);
    void arm(Tcb& t, TimerSlot slot, Duration delay);
    void disarm(Tcb& t, TimerSlot slot);
    void arm_retransmit(Tcb& t);
    void restart_keepalive(Tcb& t);
    void retransmit_timeout(Tcb& t);
    void persist_timeout(Tcb& t);
    void keepalive_timeout(Tcb& t);
    void reschedule(Tcb& t);

    stack::NetworkInterface& _interface;
    core::TimerWheel& _timers;
    Clock& _clock;
    TcpConfig _config;
    TimePoint _epoch;
    ConnectionTable _table;
    IsnGenerator _isn;
    SynCookies _cookies;
    BufferPool _pool;
    std::unique_ptr<Tcb[]> _tcbs;  // constructed in place: see tcp_layer.cpp
    std::size_t _tcb_count = 0;
    std::uint32_t _free_tcbs = 0;  // index + 1
    std::unique_ptr<TcbBuffers[]> _buffers;
    std::size_t _buffer_count = 0;
    std::uint32_t _free_buffers = 0;  // index + 1
    std::size_t _buffers_in_use = 0;
    std::vector<Listener> _listeners;
    std::unique_ptr<std::uint16_t[]> _listener_by_port;  // 65536 entries: listener index + 1, 0: none
    std::vector<TcpHandler*> _handlers;
    std::vector<ConnectionId> _pending;      // connections with output to send (tcb_flag::pending)
    std::vector<ConnectionId> _pending_work;  // flush() swaps it with _pending
    std::vector<ClosedEvent> _closed_events;
    std::vector<ConnectionId> _writable_waiters;  // short send() because the pool ran out (tcb_flag::pool_wait)
    std::size_t _waiters_head = 0;                // _writable_waiters[_waiters_head..] are still waiting
    std::uint16_t _next_ephemeral = 0;
    std::uint32_t _challenge_window_start = 0;
    std::uint32_t _challenge_count = 0;
    std::uint8_t _rcv_wscale = 0;  // our window shift, from recv_buffer
    bool _destroying = false;
    TcpCounters _counters;
};

}  // namespace cm::tcp

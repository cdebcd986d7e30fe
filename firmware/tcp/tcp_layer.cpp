// TcpLayer: construction, control block and buffer slabs, the application API, event delivery, and the
// pending-output list that flush() serves. Input is in tcp_input.cpp, output in tcp_output.cpp, timers
// in tcp_timers.cpp.
#include "tcp/tcp.hpp"

#include "wire/ipv4.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

namespace cm::tcp {

using wire::SeqNumber;

const char* state_name(TcpState state) noexcept
{
    switch (state) {
    case TcpState::closed: return "CLOSED";
    case TcpState::syn_sent: return "SYN_SENT";
    case TcpState::syn_received: return "SYN_RECEIVED";
    case TcpState::established: return "ESTABLISHED";
    case TcpState::fin_wait_1: return "FIN_WAIT_1";
    case TcpState::fin_wait_2: return "FIN_WAIT_2";
    case TcpState::close_wait: return "CLOSE_WAIT";
    case TcpState::closing: return "CLOSING";
    case TcpState::last_ack: return "LAST_ACK";
    case TcpState::time_wait: return "TIME_WAIT";
    }
    return "?";
}

const char* close_reason_name(CloseReason reason) noexcept
{
    switch (reason) {
    case CloseReason::normal: return "normal";
    case CloseReason::reset: return "reset";
    case CloseReason::timed_out: return "timed_out";
    case CloseReason::keepalive_timeout: return "keepalive_timeout";
    case CloseReason::refused: return "refused";
    case CloseReason::shutdown: return "shutdown";
    }
    return "?";
}

Tcb::Tcb() noexcept : timer(&TcpLayer::timer_callback, this) {}

namespace {

/// A key for one purpose, derived from the configured secret (domain-separated SipHash outputs).
SipKey derive_key(const SipKey& secret, std::uint8_t purpose)
{
    SipKey key{};
    for (std::uint8_t half = 0; half < 2; ++half) {
        const std::array<std::byte, 3> label{std::byte{'c'}, std::byte{purpose}, std::byte{half}};
        const std::uint64_t h = siphash24(label, secret);
        for (std::size_t i = 0; i < 8; ++i) {
            key[half * 8 + i] = static_cast<std::uint8_t>(h >> (8 * i));
        }
    }
    return key;
}

/// The smallest window shift that lets a 16-bit window field cover `buffer` bytes (RFC 7323 2.2, max 14).
std::uint8_t window_shift_for(std::uint32_t buffer)
{
    std::uint8_t shift = 0;
    while (shift < 14 && (buffer >> shift) > 0xffff) {
        ++shift;
    }
    return shift;
}

constexpr std::uint16_t ephemeral_first = 32768;
constexpr std::uint16_t ephemeral_count = 61000 - 32768;  // Linux's ip_local_port_range

}  // namespace

TcpLayer::TcpLayer(stack::NetworkInterface& interface, core::TimerWheel& timers, Clock& clock, const TcpConfig& config)
    : _interface(interface),
      _timers(timers),
      _clock(clock),
      _config(config),
      _epoch(clock.now()),
      _table(std::max<std::size_t>(config.max_connections, 1), derive_key(config.secret, 1)),
      _isn(derive_key(config.secret, 2)),
      _cookies(derive_key(config.secret, 3)),
      _pool(config.pool_chunk_size, config.pool_chunks)
{
    _config.max_connections = std::max<std::size_t>(_config.max_connections, 1);
    _config.mss = std::clamp<std::uint16_t>(_config.mss, 88, static_cast<std::uint16_t>(stack::NetworkInterface::max_ipv4_payload - 20));
    _config.tx_budget = std::max<std::size_t>(_config.tx_budget, 1);
    _config.recv_buffer = std::max<std::uint32_t>(_config.recv_buffer, 2u * _config.mss);
    _config.send_buffer = std::max<std::uint32_t>(_config.send_buffer, _config.mss);

    _tcb_count = _config.max_connections;
    _tcbs = std::make_unique<Tcb[]>(_tcb_count);
    for (std::size_t i = _tcb_count; i-- > 0;) {
        _tcbs[i].layer = this;
        _tcbs[i].next_free = _free_tcbs;
        _free_tcbs = static_cast<std::uint32_t>(i + 1);
    }
    _buffer_count = _config.buffer_sets != 0 ? _config.buffer_sets : _config.max_connections;
    _buffers = std::make_unique<TcbBuffers[]>(_buffer_count);
    for (std::size_t i = _buffer_count; i-- > 0;) {
        _buffers[i].next_free = _free_buffers;
        _free_buffers = static_cast<std::uint32_t>(i + 1);
    }
    _listener_by_port = std::make_unique<std::uint16_t[]>(65536);
    _rcv_wscale = _config.window_scaling ? window_shift_for(_config.recv_buffer) : 0;
    _pending.reserve(1024);
    _pending_work.reserve(1024);
    _closed_events.reserve(64);
    const SipKey port_key = derive_key(_config.secret, 4);
    _next_ephemeral = static_cast<std::uint16_t>((port_key[0] | (port_key[1] << 8)) % ephemeral_count);
    _interface.set_protocol_handler(wire::ip_protocol::tcp, this);
}

TcpLayer::~TcpLayer()
{
    _interface.set_protocol_handler(wire::ip_protocol::tcp, nullptr);
    _destroying = true;
    for (std::size_t i = 0; i < _tcb_count; ++i) {
        Tcb& t = _tcbs[i];
        t.timer.cancel();
        if (TcbBuffers* b = buffers(t)) {
            b->send.clear(_pool);
            b->recv.clear(_pool);
            b->ooo.clear(_pool);
        }
    }
}

// ---- bookkeeping ----------------------------------------------------------------------------------------

std::uint32_t TcpLayer::now_ms() const noexcept
{
    return static_cast<std::uint32_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(_clock.now() - _epoch).count());
}

std::uint32_t TcpLayer::tsval(const Tcb& t) const noexcept
{
    return SynCookies::timestamp_clock(_clock.now()) + ((t.flags & tcb_flag::cookie) != 0 ? 0 : t.iss.raw());
}

std::uint32_t TcpLayer::index_of(const Tcb& t) const noexcept
{
    return static_cast<std::uint32_t>(&t - _tcbs.get());
}

ConnectionId TcpLayer::id_of(const Tcb& t) const noexcept
{
    return ConnectionId{index_of(t), t.generation};
}

Tcb* TcpLayer::lookup(ConnectionId id) const
{
    if (id.index >= _tcb_count) {
        return nullptr;
    }
    Tcb& t = _tcbs[id.index];
    if (t.generation != id.generation || t.state == TcpState::closed) {
        return nullptr;
    }
    if ((t.flags & tcb_flag::app_owned) == 0 || (t.flags & tcb_flag::orphan) != 0) {
        return nullptr;
    }
    return &t;
}

Tcb* TcpLayer::lookup_or_count(ConnectionId id)
{
    Tcb* t = lookup(id);
    if (t == nullptr) {
        ++_counters.api_stale_id;
    }
    return t;
}

TcbBuffers* TcpLayer::buffers(const Tcb& t) const noexcept
{
    return t.buffers == 0 ? nullptr : &_buffers[t.buffers - 1];
}

std::size_t TcpLayer::send_queued(const Tcb& t) const noexcept
{
    const TcbBuffers* b = buffers(t);
    return b == nullptr ? 0 : b->send.size();
}

std::size_t TcpLayer::recv_queued(const Tcb& t) const noexcept
{
    const TcbBuffers* b = buffers(t);
    return b == nullptr ? 0 : b->recv.size();
}

Tcb* TcpLayer::allocate(const FourTuple& tuple)
{
    if (_free_tcbs == 0) {
        ++_counters.table_full;
        return nullptr;
    }
    const std::uint32_t index = _free_tcbs - 1;
    if (!_table.insert(tuple, index)) {
        ++_counters.table_full;
        return nullptr;
    }
    Tcb& t = _tcbs[index];
    _free_tcbs = t.next_free;
    t.tuple = tuple;
    init_tcb_common(t);
    ++_counters.conn_active;
    return &t;
}

void TcpLayer::init_tcb_common(Tcb& t)
{
    // Everything but the timer, the owner, the generation and the tuple goes back to its initial value.
    t.iss = t.snd_una = t.snd_nxt = t.snd_max = t.snd_wl1 = t.snd_wl2 = SeqNumber{};
    t.snd_wnd = t.max_snd_wnd = 0;
    t.rcv_nxt = t.rcv_adv = t.last_ack_sent = SeqNumber{};
    t.ts_recent = t.rtt_start = 0;
    t.rtt = RttEstimator(_config.rto);
    t.cc = CongestionState{};
    std::fill(std::begin(t.deadline), std::end(t.deadline), 0u);
    t.timer_at = 0;
    t.buffers = 0;
    t.flags = _config.nagle ? 0 : tcb_flag::nodelay;
    t.snd_mss = 536;
    t.handler = 0;
    t.listener = 0;
    t.keepalive_interval_s = 0;
    t.state = TcpState::closed;
    t.armed = 0;
    t.snd_wscale = t.rcv_wscale = 0;
    t.dupacks = 0;
    t.retries = 0;
    t.keepalive_probes = 0;
    t.keepalive_count = 0;
}

void TcpLayer::set_state(Tcb& t, TcpState next)
{
    const auto gauge = [&](TcpState s) -> std::uint64_t* {
        switch (s) {
        case TcpState::syn_received: return &_counters.conn_syn_received;
        case TcpState::established: return &_counters.conn_established;
        case TcpState::time_wait: return &_counters.conn_time_wait;
        default: return nullptr;
        }
    };
    if (std::uint64_t* g = gauge(t.state)) {
        --*g;
    }
    if (std::uint64_t* g = gauge(next)) {
        ++*g;
    }
    t.state = next;
}

void TcpLayer::destroy(Tcb& t, CloseReason reason)
{
    if (t.state == TcpState::closed) {
        return;
    }
    const bool tell_app = (t.flags & tcb_flag::app_owned) != 0 && (t.flags & tcb_flag::orphan) == 0;
    const ConnectionId id = id_of(t);
    const std::uint16_t handler = t.handler;
    if ((t.flags & tcb_flag::counted_syn_rcvd) != 0 && t.listener < _listeners.size()) {
        Listener& l = _listeners[t.listener];
        if (l.syn_received > 0) {
            --l.syn_received;
        }
    }
    set_state(t, TcpState::closed);
    _table.erase(t.tuple);
    if ((t.flags & tcb_flag::sender) != 0) {
        --_counters.senders;
    }
    if ((t.flags & tcb_flag::pool_wait) != 0) {
        --_counters.pool_waiters;  // (its id stays in _writable_waiters; the generation no longer matches)
    }
    if (TcbBuffers* b = buffers(t)) {
        b->send.clear(_pool);
        b->recv.clear(_pool);
        b->ooo.clear(_pool);
        b->next_free = _free_buffers;
        _free_buffers = t.buffers;
        t.buffers = 0;
        --_buffers_in_use;
        --_counters.buffers_attached;
    }
    t.timer.cancel();
    t.armed = 0;
    t.flags = 0;
    ++t.generation;
    t.next_free = _free_tcbs;  // (t.buffers is 0 here: the union's other member takes over)
    _free_tcbs = index_of(t) + 1;
    --_counters.conn_active;
    ++_counters.conn_closed;
    if (tell_app && !_destroying) {
        _closed_events.push_back(ClosedEvent{handler, id, reason});
    }
}

TcbBuffers* TcpLayer::attach_buffers(Tcb& t)
{
    if (TcbBuffers* b = buffers(t)) {
        return b;
    }
    if (_free_buffers == 0) {
        ++_counters.buffer_sets_exhausted;
        return nullptr;
    }
    t.buffers = _free_buffers;
    TcbBuffers& b = _buffers[t.buffers - 1];
    _free_buffers = b.next_free;
    b.next_free = 0;
    b.scoreboard.reset(t.snd_una);
    b.high_rxt = t.snd_una;
    b.recover = t.snd_una;
    b.rtt_seq = t.snd_una;
    b.rcv_fin = SeqNumber{};
    ++_buffers_in_use;
    ++_counters.buffers_attached;
    return &b;
}

void TcpLayer::maybe_release_buffers(Tcb& t)
{
    TcbBuffers* b = buffers(t);
    if (b == nullptr || !b->send.empty() || !b->recv.empty() || !b->ooo.empty() ||
        (t.flags & tcb_flag::fin_ooo) != 0) {
        return;
    }
    b->next_free = _free_buffers;
    _free_buffers = t.buffers;
    t.buffers = 0;
    --_buffers_in_use;
    --_counters.buffers_attached;
}

std::uint16_t TcpLayer::handler_index(TcpHandler& handler)
{
    for (std::size_t i = 0; i < _handlers.size(); ++i) {
        if (_handlers[i] == &handler) {
            return static_cast<std::uint16_t>(i);
        }
    }
    _handlers.push_back(&handler);
    return static_cast<std::uint16_t>(_handlers.size() - 1);
}

void TcpLayer::request_output(Tcb& t, std::uint32_t flag)
{
    t.flags |= flag;
    if ((t.flags & tcb_flag::pending) == 0) {
        t.flags |= tcb_flag::pending;
        _pending.push_back(id_of(t));
    }
}

void TcpLayer::notify(Tcb& t)
{
    const std::uint32_t generation = t.generation;
    constexpr std::uint32_t events =
        tcb_flag::ev_established | tcb_flag::ev_readable | tcb_flag::ev_writable | tcb_flag::ev_timer;
    for (;;) {
        if (t.generation != generation || t.state == TcpState::closed) {
            return;
        }
        if ((t.flags & tcb_flag::orphan) != 0) {
            t.flags &= ~events;
            return;
        }
        const ConnectionId id = id_of(t);
        TcpHandler* handler = t.handler < _handlers.size() ? _handlers[t.handler] : nullptr;
        if (handler == nullptr) {
            t.flags &= ~events;
            return;
        }
        if ((t.flags & tcb_flag::ev_established) != 0) {
            t.flags &= ~tcb_flag::ev_established;
            t.flags |= tcb_flag::app_owned;
            if ((t.flags & tcb_flag::active_open) != 0) {
                handler->on_connected(id);
            } else if (!handler->on_accept(id, t.tuple)) {
                if (t.generation == generation && t.state != TcpState::closed) {
                    ++_counters.accept_refused;
                    t.flags |= tcb_flag::orphan;
                    send_reset(t);
                    destroy(t, CloseReason::reset);
                }
                return;
            }
            continue;
        }
        if ((t.flags & tcb_flag::app_owned) == 0) {
            return;  // not accepted yet: events wait for on_accept
        }
        if ((t.flags & tcb_flag::ev_readable) != 0) {
            t.flags &= ~tcb_flag::ev_readable;
            handler->on_readable(id);
            continue;
        }
        if ((t.flags & tcb_flag::ev_writable) != 0) {
            t.flags &= ~tcb_flag::ev_writable;
            handler->on_writable(id);
            continue;
        }
        if ((t.flags & tcb_flag::ev_timer) != 0) {
            t.flags &= ~tcb_flag::ev_timer;
            handler->on_timer(id);
            continue;
        }
        return;
    }
}

void TcpLayer::deliver_closed_events()
{
    // A callback may end other connections (or this loop's own by API calls that queue nothing): take the
    // events one at a time from the front.
    for (std::size_t i = 0; i < _closed_events.size(); ++i) {
        const ClosedEvent e = _closed_events[i];
        if (e.handler < _handlers.size() && _handlers[e.handler] != nullptr) {
            _handlers[e.handler]->on_closed(e.id, e.reason);
        }
    }
    _closed_events.clear();
}

// ---- listeners and connect ---------------------------------------------------------------------------------

bool TcpLayer::listen(std::uint16_t port, TcpHandler& handler, std::size_t backlog)
{
    if (port == 0 || _listener_by_port[port] != 0) {
        return false;
    }
    std::size_t index = _listeners.size();
    for (std::size_t i = 0; i < _listeners.size(); ++i) {
        if (!_listeners[i].active && _listeners[i].syn_received == 0) {
            index = i;
            break;
        }
    }
    if (index == _listeners.size()) {
        if (_listeners.size() >= 0xfffe) {
            return false;
        }
        _listeners.emplace_back();
    }
    Listener& l = _listeners[index];
    l.port = port;
    l.handler = handler_index(handler);
    l.backlog = static_cast<std::uint32_t>(std::max<std::size_t>(backlog != 0 ? backlog : _config.syn_backlog, 1));
    l.syn_received = 0;
    l.active = true;
    _listener_by_port[port] = static_cast<std::uint16_t>(index + 1);
    return true;
}

void TcpLayer::unlisten(std::uint16_t port)
{
    const std::uint16_t slot = _listener_by_port[port];
    if (slot == 0) {
        return;
    }
    _listeners[slot - 1].active = false;
    _listener_by_port[port] = 0;
}

std::optional<ConnectionId> TcpLayer::connect(wire::Ipv4Address remote, std::uint16_t remote_port, TcpHandler& handler)
{
    if (remote_port == 0) {
        return std::nullopt;
    }
    FourTuple tuple{_interface.config().address.address, remote, 0, remote_port};
    bool found = false;
    for (std::uint32_t tries = 0; tries < ephemeral_count; ++tries) {
        tuple.local_port = static_cast<std::uint16_t>(ephemeral_first + _next_ephemeral);
        _next_ephemeral = static_cast<std::uint16_t>((_next_ephemeral + 1) % ephemeral_count);
        if (_table.find(tuple) == ConnectionTable::none && _listener_by_port[tuple.local_port] == 0) {
            found = true;
            break;
        }
    }
    if (!found) {
        return std::nullopt;
    }
    Tcb* t = allocate(tuple);
    if (t == nullptr) {
        return std::nullopt;
    }
    t->handler = handler_index(handler);
    t->flags |= tcb_flag::active_open | tcb_flag::app_owned;
    t->iss = _isn.generate(tuple, _clock.now());
    t->snd_una = t->snd_nxt = t->snd_max = t->iss;
    t->rcv_wscale = _rcv_wscale;  // offered; 0 again if the peer does not answer with its own
    t->snd_mss = _config.mss;
    t->rtt_start = now_ms();
    set_state(*t, TcpState::syn_sent);
    ++_counters.active_opens;
    arm(*t, TimerSlot::retransmit, t->rtt.rto());
    request_output(*t, tcb_flag::send_syn);
    return id_of(*t);
}

// ---- data ----------------------------------------------------------------------------------------------

std::size_t TcpLayer::send(ConnectionId id, wire::Bytes data)
{
    Tcb* t = lookup_or_count(id);
    if (t == nullptr || data.empty() || (t->flags & tcb_flag::fin_queued) != 0) {
        return 0;
    }
    switch (t->state) {
    case TcpState::syn_sent:
    case TcpState::syn_received:
    case TcpState::established:
    case TcpState::close_wait:
        break;
    default:
        return 0;
    }
    const std::size_t queued = send_queued(*t);
    const std::size_t cap = send_cap(*t);
    const std::size_t room = cap > queued ? cap - queued : 0;
    if (room < data.size() && cap < _config.send_buffer) {
        ++_counters.send_share_limited;
    }
    const std::size_t pool_room = send_pool_room();
    const std::size_t want = std::min({room, data.size(), pool_room});
    std::size_t taken = 0;
    if (want < std::min(room, data.size())) {
        wait_for_pool(*t);  // the pool's receive reserve is reached: wait until senders give chunks back
    }
    if (want > 0) {
        if (TcbBuffers* b = attach_buffers(*t)) {
            taken = b->send.push(_pool, data.first(want));
        }
        if (taken < want) {
            // The pool (or the buffer sets) ran out, not the connection's buffer: nothing of this connection's
            // own may free room, so it waits for the pool.
            wait_for_pool(*t);
        }
    }
    if (taken < data.size() || queued + taken >= cap) {
        t->flags |= tcb_flag::want_writable;  // short, or now full: on_writable once half of it has gone
    }
    if (taken > 0) {
        request_output(*t);
    } else {
        maybe_release_buffers(*t);
    }
    update_sender(*t);
    return taken;
}

std::size_t TcpLayer::send_space(ConnectionId id)
{
    Tcb* t = lookup(id);
    if (t == nullptr || (t->flags & tcb_flag::fin_queued) != 0) {
        return 0;
    }
    const std::size_t queued = send_queued(*t);
    const std::size_t cap = send_cap(*t);
    if (queued >= cap) {
        if (cap < _config.send_buffer) {
            ++_counters.send_share_limited;
        }
        t->flags |= tcb_flag::want_writable;  // the caller found it full: tell it when there is room
        return 0;
    }
    // Never promise more than the pool holds now: an application that fills a buffer only to see send()
    // take nothing wastes the loop's time (with a thousand such connections, enough of it to delay ACKs
    // past the peer's retransmission timeout).
    const bool has_set = t->buffers != 0 || _free_buffers != 0;
    const std::size_t pool_room = has_set ? send_pool_room() : 0;
    if (pool_room == 0) {
        wait_for_pool(*t);
        update_sender(*t);
        return 0;
    }
    return std::min(cap - queued, pool_room);
}

std::size_t TcpLayer::send_pool_room() const noexcept
{
    // Senders never take the last eighth of the pool: it is the receive side's, so that a new client's
    // request still finds room while thousands of slow readers hold the rest (without it the pool ran dry
    // under slowhttptest's slow-read attack and new connections' data was dropped until they timed out).
    const std::size_t reserve = _pool.capacity() / 8;
    const std::size_t available = _pool.available();
    return available > reserve ? (available - reserve) * _pool.chunk_size() : 0;
}

std::size_t TcpLayer::send_cap(const Tcb& t) const noexcept
{
    // Linux's tcp_mem pressure, made deterministic: the pool is shared equally among the connections that
    // are sending (bytes queued, or waiting for room), three quarters of it (the rest absorbs the partly
    // filled chunks at the ends of each queue and the receive side), and a sender's buffer is its share,
    // at most send_buffer, at least send_buffer_min (tcp_wmem[0]). With few senders the share is above
    // send_buffer and nothing changes; with many, a connection above its share takes nothing until its
    // ACKs bring it below, so the shares converge and the pool does not run dry.
    const std::uint64_t others = _counters.senders - ((t.flags & tcb_flag::sender) != 0 ? 1 : 0);
    const std::size_t senders = static_cast<std::size_t>(others) + 1;
    const std::size_t share = (_pool.capacity() * 3 / 4) / senders * _pool.chunk_size();
    // And no more than twice what the peer's window lets fly: more would only sit in the pool. A slow
    // reader that offers a few hundred bytes then holds send_buffer_min, not send_buffer; a fast one is
    // not limited (its window is the bandwidth-delay product it can take), as with Linux's sndbuf
    // autotuning, which sizes the buffer from what the connection can actually carry.
    const std::size_t window_cap = 2 * std::size_t{std::max(t.snd_wnd, t.max_snd_wnd / 4)};
    const std::size_t cap = std::min<std::size_t>(_config.send_buffer, std::max<std::size_t>(window_cap, _config.send_buffer_min));
    return std::clamp<std::size_t>(share, std::min<std::size_t>(_config.send_buffer_min, cap), cap);
}

void TcpLayer::update_sender(Tcb& t) noexcept
{
    const bool sending = send_queued(t) > 0 || (t.flags & tcb_flag::pool_wait) != 0;
    if (sending == ((t.flags & tcb_flag::sender) != 0)) {
        return;
    }
    if (sending) {
        t.flags |= tcb_flag::sender;
        ++_counters.senders;
    } else {
        t.flags &= ~tcb_flag::sender;
        --_counters.senders;
    }
}

void TcpLayer::wait_for_pool(Tcb& t)
{
    t.flags |= tcb_flag::want_writable;
    if ((t.flags & tcb_flag::pool_wait) == 0) {
        t.flags |= tcb_flag::pool_wait;
        ++_counters.pool_waiters;
        _writable_waiters.push_back(id_of(t));
    }
}

void TcpLayer::wake_pool_waiters()
{
    // Oldest first, and only as many as the free chunks can give a minimum buffer each: waking every
    // waiter whenever one chunk is free makes each of them try (and fail) again, every iteration.
    const std::size_t floor_bytes = std::min(_config.send_buffer_min, _config.send_buffer);
    const std::size_t per_waiter = std::max<std::size_t>(1, (floor_bytes + _pool.chunk_size() - 1) / _pool.chunk_size());
    std::size_t wakes = send_pool_room() / _pool.chunk_size() / per_waiter;
    while (wakes > 0 && _waiters_head < _writable_waiters.size()) {
        const ConnectionId id = _writable_waiters[_waiters_head];
        Tcb& t = _tcbs[id.index];
        const bool current = t.generation == id.generation && t.state != TcpState::closed &&
                             (t.flags & tcb_flag::pool_wait) != 0;
        if (current && t.buffers == 0 && _free_buffers == 0) {
            break;  // it needs a buffer set first: wait for one (the order is kept)
        }
        ++_waiters_head;
        if (!current) {
            continue;
        }
        t.flags &= ~tcb_flag::pool_wait;
        --_counters.pool_waiters;
        update_sender(t);
        --wakes;
        if ((t.flags & tcb_flag::want_writable) != 0 && (t.flags & tcb_flag::orphan) == 0) {
            t.flags &= ~tcb_flag::want_writable;
            t.flags |= tcb_flag::ev_writable;
            notify(t);  // may send (and wait again: at the back of the list)
        }
    }
    if (_waiters_head == _writable_waiters.size()) {
        _writable_waiters.clear();
        _waiters_head = 0;
    } else if (_waiters_head > 64 && _waiters_head > _writable_waiters.size() / 2) {
        _writable_waiters.erase(_writable_waiters.begin(),
                                _writable_waiters.begin() + static_cast<std::ptrdiff_t>(_waiters_head));
        _waiters_head = 0;
    }
}

std::size_t TcpLayer::peek(ConnectionId id, wire::MutableBytes out) const
{
    const Tcb* t = lookup(id);
    const TcbBuffers* b = t == nullptr ? nullptr : buffers(*t);
    return b == nullptr ? 0 : b->recv.peek(0, out);
}

void TcpLayer::consume(ConnectionId id, std::size_t n)
{
    Tcb* t = lookup_or_count(id);
    TcbBuffers* b = t == nullptr ? nullptr : buffers(*t);
    if (b == nullptr || n == 0) {
        return;
    }
    b->recv.consume(_pool, n);
    if (window_update_due(*t)) {
        request_output(*t);
    }
    maybe_release_buffers(*t);
}

std::size_t TcpLayer::read(ConnectionId id, wire::MutableBytes out)
{
    const std::size_t n = peek(id, out);
    consume(id, n);
    return n;
}

std::size_t TcpLayer::readable(ConnectionId id) const
{
    const Tcb* t = lookup(id);
    return t == nullptr ? 0 : recv_queued(*t);
}

bool TcpLayer::peer_closed(ConnectionId id) const
{
    const Tcb* t = lookup(id);
    return t != nullptr && (t->flags & tcb_flag::fin_received) != 0 && recv_queued(*t) == 0;
}

// ---- closing ---------------------------------------------------------------------------------------------

void TcpLayer::do_shutdown(Tcb& t)
{
    if ((t.flags & tcb_flag::fin_queued) != 0) {
        return;
    }
    switch (t.state) {
    case TcpState::syn_sent:
    case TcpState::syn_received:
        t.flags |= tcb_flag::fin_queued;  // FIN_WAIT_1 once established (see process_ack)
        break;
    case TcpState::established:
        t.flags |= tcb_flag::fin_queued;
        set_state(t, TcpState::fin_wait_1);
        request_output(t);
        break;
    case TcpState::close_wait:
        t.flags |= tcb_flag::fin_queued;
        set_state(t, TcpState::last_ack);
        request_output(t);
        break;
    default:
        break;
    }
}

void TcpLayer::shutdown_write(ConnectionId id)
{
    if (Tcb* t = lookup_or_count(id)) {
        do_shutdown(*t);
    }
}

void TcpLayer::close(ConnectionId id)
{
    Tcb* t = lookup_or_count(id);
    if (t == nullptr) {
        return;
    }
    const TcbBuffers* b = buffers(*t);
    if (b != nullptr && (!b->recv.empty() || !b->ooo.empty())) {
        // Unread data: the peer must not believe it was delivered (RFC 9293 3.10.4, RFC 2525 2.17).
        ++_counters.conn_aborted;
        t->flags |= tcb_flag::orphan;
        send_reset(*t);
        destroy(*t, CloseReason::reset);
        return;
    }
    t->flags |= tcb_flag::orphan;
    t->flags &= ~tcb_flag::want_writable;
    disarm(*t, TimerSlot::user);
    if (t->state == TcpState::syn_sent) {
        destroy(*t, CloseReason::normal);
        return;
    }
    do_shutdown(*t);
    if (t->state == TcpState::fin_wait_2) {
        arm(*t, TimerSlot::retransmit, _config.fin_wait2_timeout);
    }
}

void TcpLayer::abort(ConnectionId id)
{
    Tcb* t = lookup_or_count(id);
    if (t == nullptr) {
        return;
    }
    ++_counters.conn_aborted;
    t->flags |= tcb_flag::orphan;
    if (t->state != TcpState::syn_sent) {
        send_reset(*t);
    }
    destroy(*t, CloseReason::reset);
}

void TcpLayer::abort_all()
{
    for (std::size_t i = 0; i < _tcb_count; ++i) {
        Tcb& t = _tcbs[i];
        if (t.state == TcpState::closed) {
            continue;
        }
        if (t.state != TcpState::syn_sent && t.state != TcpState::time_wait) {
            send_reset(t);
        }
        destroy(t, CloseReason::shutdown);
    }
    deliver_closed_events();
}

// ---- settings ----------------------------------------------------------------------------------------

void TcpLayer::set_nodelay(ConnectionId id, bool nodelay)
{
    if (Tcb* t = lookup_or_count(id)) {
        if (nodelay) {
            t->flags |= tcb_flag::nodelay;
            if (send_queued(*t) > 0) {
                request_output(*t);
            }
        } else {
            t->flags &= ~tcb_flag::nodelay;
        }
    }
}

void TcpLayer::set_keepalive(ConnectionId id, const KeepAliveSettings& settings)
{
    Tcb* t = lookup_or_count(id);
    if (t == nullptr) {
        return;
    }
    if (!settings.enabled) {
        t->flags &= ~tcb_flag::keepalive;
        disarm(*t, TimerSlot::keepalive);
        return;
    }
    const auto seconds = [](Duration d) {
        const auto s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
        return static_cast<std::uint16_t>(std::clamp<long long>(s, 1, 0xffff));
    };
    t->keepalive_idle_s = seconds(settings.idle);  // (shares its place with `listener`, unused once accepted)
    t->keepalive_interval_s = seconds(settings.interval);
    t->keepalive_count = static_cast<std::uint8_t>(std::clamp<unsigned>(settings.probes, 1, 255));
    t->flags |= tcb_flag::keepalive;
    restart_keepalive(*t);
}

void TcpLayer::set_timer(ConnectionId id, Duration delay)
{
    if (Tcb* t = lookup_or_count(id)) {
        arm(*t, TimerSlot::user, std::clamp<Duration>(delay, Duration::zero(), std::chrono::hours(24 * 24)));
    }
}

void TcpLayer::cancel_timer(ConnectionId id)
{
    if (Tcb* t = lookup_or_count(id)) {
        disarm(*t, TimerSlot::user);
        t->flags &= ~tcb_flag::ev_timer;
    }
}

std::optional<TcpState> TcpLayer::state(ConnectionId id) const
{
    if (id.index >= _tcb_count) {
        return std::nullopt;
    }
    const Tcb& t = _tcbs[id.index];
    if (t.generation != id.generation || t.state == TcpState::closed) {
        return std::nullopt;
    }
    return t.state;
}

std::optional<ConnectionInfo> TcpLayer::info(ConnectionId id) const
{
    if (!state(id)) {
        return std::nullopt;
    }
    const Tcb& t = _tcbs[id.index];
    const TcbBuffers* b = buffers(t);
    ConnectionInfo i{};
    i.tuple = t.tuple;
    i.state = t.state;
    i.snd_wnd = t.snd_wnd;
    i.rcv_wnd = static_cast<std::uint32_t>(std::max(0, t.rcv_adv - t.rcv_nxt));
    i.cwnd = t.cc.cwnd;
    i.ssthresh = t.cc.ssthresh;
    i.snd_mss = t.snd_mss;
    i.bytes_in_flight = static_cast<std::uint32_t>(std::max(0, t.snd_max - t.snd_una));
    i.send_queued = b == nullptr ? 0 : static_cast<std::uint32_t>(b->send.size());
    i.recv_queued = b == nullptr ? 0 : static_cast<std::uint32_t>(b->recv.size());
    i.ooo_bytes = b == nullptr ? 0 : static_cast<std::uint32_t>(b->ooo.bytes());
    i.srtt = t.rtt.srtt();
    i.rto = t.rtt.rto();
    i.sack = (t.flags & tcb_flag::sack_ok) != 0;
    i.timestamps = (t.flags & tcb_flag::ts_ok) != 0;
    i.window_scaling = (t.flags & tcb_flag::ws_ok) != 0;
    i.snd_wscale = t.snd_wscale;
    i.rcv_wscale = t.rcv_wscale;
    return i;
}

void TcpLayer::register_counters(CounterRegistry& registry) const
{
    registry.add("tcp", _counters);
    registry.add("tcp.pool", _pool.counters());
}

// ---- the loop --------------------------------------------------------------------------------------------

std::size_t TcpLayer::poll(TimePoint /*now*/)
{
    return _pending.size();
}

std::optional<TimePoint> TcpLayer::next_wakeup() const
{
    if (!_pending.empty()) {
        return _clock.now();
    }
    return std::nullopt;
}

void TcpLayer::flush()
{
    // Connections whose short send() was the pool's fault hear about it once chunks are free again.
    if (_waiters_head < _writable_waiters.size() && _pool.available() > 0) {
        wake_pool_waiters();
        deliver_closed_events();
    }
    if (_pending.empty()) {
        return;
    }
    _pending_work.clear();
    _pending_work.swap(_pending);
    std::size_t budget = _config.tx_budget;
    bool exhausted = false;
    for (const ConnectionId id : _pending_work) {
        Tcb& t = _tcbs[id.index];
        if (t.generation != id.generation || t.state == TcpState::closed || (t.flags & tcb_flag::pending) == 0) {
            continue;
        }
        if (budget == 0) {
            _pending.push_back(id);  // still flagged pending: next iteration
            exhausted = true;
            continue;
        }
        t.flags &= ~tcb_flag::pending;
        const std::size_t sent = output(t, budget);
        if (sent >= budget) {
            budget = 0;
            request_output(t);  // it may have more: look again next iteration
        } else {
            budget -= sent;
        }
        maybe_release_buffers(t);
    }
    if (exhausted) {
        ++_counters.tx_budget_exhausted;
    }
    deliver_closed_events();
}

}  // namespace cm::tcp

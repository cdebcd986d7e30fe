#include "bus/engine.hpp"

#include <algorithm>
#include <cstring>
#include <string>

namespace cm::bus {
namespace {

constexpr std::uint32_t event_reserve = 2;  // events one submission may need at once (e.g. RESET + TX_DONE)

bool is_conn_opcode(std::uint16_t op)
{
    return op == CM_BUS_SQ_DATA || op == CM_BUS_SQ_EOF || op == CM_BUS_SQ_CLOSE || op == CM_BUS_SQ_RESET ||
           op == CM_BUS_SQ_SETOPT;
}

}  // namespace

BusEngine::BusEngine(std::byte* memory, const Layout& layout, const EngineConfig& config, TimePoint now)
    : _memory(memory), _layout(layout), _config(config)
{
    // Format: everything zero, the control block, every queue pair free; the magic last, so a host that
    // maps the memory while this runs sees no magic rather than half a layout.
    std::memset(_memory, 0, _layout.slot_offset);
    cm_bus_ctrl& c = ctrl();
    describe_layout(_layout, c);
    c.fw_state = CM_BUS_FW_BOOTING;
    c.fw_version = _config.fw_version;
    c.heartbeat_ms = static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(_config.heartbeat).count());
    c.format_id = static_cast<std::uint64_t>(now.time_since_epoch().count());
    std::strncpy(reinterpret_cast<char*>(c.fw_version_str), _config.fw_version_str, sizeof c.fw_version_str - 1);

    _qps.resize(_layout.qp_count);
    for (std::uint32_t i = 0; i < _layout.qp_count; ++i) {
        QueuePair& q = _qps[i];
        q.index = i;
        q.hdr = &qp_header(i);
        q.hdr->state = CM_BUS_QP_FREE;
        q.hdr->sq_offset = _layout.sq_offset();
        q.hdr->eq_offset = _layout.eq_offset();
        q.hdr->entries = _layout.ring_entries;
        q.hdr->h2c_slot_first = _layout.h2c_first(i);
        q.hdr->h2c_slot_count = _layout.h2c_count();
        q.hdr->c2h_slot_first = _layout.c2h_first(i);
        q.hdr->c2h_slot_count = _layout.c2h_count();
        q.hdr->conn_credit = _layout.conn_credit;
        q.hdr->max_conns = _layout.max_conns_per_qp;
        q.hdr->vector = i;
    }
    c.fw_state = CM_BUS_FW_READY;
    _next_heartbeat = now + _config.heartbeat;
    store_release(c.magic, CM_BUS_MAGIC);
}

BusEngine::~BusEngine() = default;

cm_bus_qp& BusEngine::qp_header(std::uint32_t qp) noexcept
{
    return *reinterpret_cast<cm_bus_qp*>(_memory + _layout.qp_base(qp));
}

std::span<std::byte> BusEngine::slot_bytes(std::uint32_t slot)
{
    return {_memory + _layout.slot_byte_offset(slot), _layout.slot_size};
}

void BusEngine::stop()
{
    store_release(ctrl().fw_state, CM_BUS_FW_STOPPED);
}

// ---- queue pairs ---------------------------------------------------------------------------------------

std::optional<std::uint32_t> BusEngine::attach(std::uint32_t peer)
{
    for (QueuePair& q : _qps) {
        if (!q.attached) {
            attach_qp(q, peer);
            return q.index;
        }
    }
    return std::nullopt;
}

void BusEngine::attach_qp(QueuePair& q, std::uint32_t peer)
{
    auto* descs = reinterpret_cast<cm_bus_desc*>(reinterpret_cast<std::byte*>(q.hdr));
    cm_bus_desc* sq = descs + _layout.sq_offset() / CM_BUS_DESC_SIZE;
    cm_bus_desc* eq = descs + _layout.eq_offset() / CM_BUS_DESC_SIZE;
    // Indices start at 0: written before the state says ATTACHED (release), read by the host after.
    q.hdr->sq_prod = q.hdr->sq_cons = q.hdr->eq_prod = q.hdr->eq_cons = 0;
    q.hdr->card_need_wakeup = q.hdr->host_need_wakeup = 0;
    q.hdr->host_fault = 0;
    q.hdr->release_req = 0;
    q.hdr->fault = CM_BUS_FAULT_NONE;
    q.notify_owed = q.notify_held = q.lazy_counted = false;
    q.post_wait = no_wait_limit;
    q.wake_by = TimePoint::max();
    q.last_notified = {};
    q.hdr->owner_peer = peer;
    q.hdr->generation = ++q.generation;
    q.sq = RingConsumer({sq, _layout.ring_entries, &q.hdr->sq_prod, &q.hdr->sq_cons, &q.hdr->card_need_wakeup}, 0);
    q.eq = RingProducer({eq, _layout.ring_entries, &q.hdr->eq_prod, &q.hdr->eq_cons, &q.hdr->host_need_wakeup}, 0);
    q.h2c = SlotHolding(_layout.h2c_first(q.index), _layout.h2c_count());
    q.held.assign(_layout.h2c_count(), HeldSlot{});
    q.c2h = SlotPool(_layout.c2h_first(q.index), _layout.c2h_count());
    q.lent_to.assign(_layout.c2h_count(), 0);
    if (q.conns.empty()) {
        q.conns.resize(_layout.max_conns_per_qp);  // generations survive detach: stale ids stay stale
    }
    q.free_conns.clear();
    for (std::uint32_t i = _layout.max_conns_per_qp; i > 0; --i) {
        q.free_conns.push_back(i - 1);
    }
    q.work.clear();
    q.writers.clear();
    q.errors = 0;
    q.peer = peer;
    q.faulted = false;
    q.attached = true;
    store_release(q.hdr->state, CM_BUS_QP_ATTACHED);
    ++_counters.qp_attached;
    update_gauges();
}

bool BusEngine::release_requested(const QueuePair& q) const
{
    return q.attached && q.peer == CM_BUS_MEMORY_PEER && load_acquire(q.hdr->release_req) == q.generation;
}

bool BusEngine::memory_peer_active(std::uint32_t qp, std::uint32_t& generation) const
{
    if (qp >= _qps.size() || !_qps[qp].attached || _qps[qp].peer != CM_BUS_MEMORY_PEER) {
        return false;
    }
    const QueuePair& q = _qps[qp];
    generation = q.generation;
    return load_relaxed(q.hdr->host_pid) != 0 || release_requested(q);
}

bool BusEngine::memory_peer_active() const
{
    for (const QueuePair& q : _qps) {
        if (q.attached && q.peer == CM_BUS_MEMORY_PEER &&
            (load_relaxed(q.hdr->host_pid) != 0 || release_requested(q))) {
            return true;
        }
    }
    return false;
}

bool BusEngine::detach(std::uint32_t qp, std::uint32_t peer)
{
    if (qp >= _qps.size() || !_qps[qp].attached || _qps[qp].peer != peer) {
        return false;
    }
    detach_qp(_qps[qp]);
    return true;
}

std::uint32_t BusEngine::detach_peer(std::uint32_t peer)
{
    std::uint32_t n = 0;
    for (QueuePair& q : _qps) {
        if (q.attached && q.peer == peer) {
            detach_qp(q);
            ++n;
        }
    }
    return n;
}

void BusEngine::detach_qp(QueuePair& q)
{
    // Handlers hear about every connection first (the proxy re-queues or closes its clients), then the
    // queue pair's slots and table are simply reset: nothing of the host's is trusted or waited for.
    for (std::uint32_t i = 0; i < q.conns.size(); ++i) {
        Conn& c = q.conns[i];
        if (c.state == ConnState::free) {
            continue;
        }
        BusConnHandler* handler = c.handler;
        const ConnRef ref{q.index, q.generation, conn_id(i, c.generation)};
        c.handler = nullptr;
        if (handler != nullptr) {
            handler->on_closed(ref, CloseReason::detached);
        }
        ++_counters.conns_reclaimed;
        c.rx_head = c.rx_tail = CM_BUS_NO_SLOT;
        free_conn(q, i);
    }
    for (auto& [port, qps] : _listeners) {
        std::erase(qps, q.index);
    }
    std::erase_if(_listeners, [](const auto& entry) { return entry.second.empty(); });
    q.attached = false;
    q.faulted = false;
    q.work.clear();
    q.writers.clear();
    q.h2c.reset();
    q.c2h.reset();
    q.hdr->owner_peer = 0;
    store_release(q.hdr->state, CM_BUS_QP_FREE);
    ++_counters.qp_detached;
    update_gauges();
}

void BusEngine::fault(QueuePair& q, std::uint32_t why)
{
    if (q.faulted) {
        return;
    }
    q.faulted = true;
    q.hdr->fault = why;
    store_release(q.hdr->state, CM_BUS_QP_FAULT);
    ++_counters.qp_faults;
    if (_notify) {
        _notify(q.index);  // the host learns at once, whether it asked for a doorbell or not
    }
}

void BusEngine::update_gauges()
{
    std::uint64_t qps = 0;
    std::uint64_t open = 0;
    std::uint64_t lent = 0;
    std::uint64_t held = 0;
    for (const QueuePair& q : _qps) {
        if (!q.attached) {
            continue;
        }
        ++qps;
        open += q.conns.size() - q.free_conns.size();
        lent += q.c2h.in_use();
        held += q.h2c.held();
    }
    _counters.qp_in_use = qps;
    _counters.conns_open = open;
    _counters.c2h_lent = lent;
    _counters.h2c_held = held;
}

// ---- connections ---------------------------------------------------------------------------------------

std::optional<std::uint32_t> BusEngine::alloc_conn(QueuePair& q)
{
    if (q.free_conns.empty()) {
        return std::nullopt;
    }
    const std::uint32_t index = q.free_conns.back();
    q.free_conns.pop_back();
    Conn& c = q.conns[index];
    const std::uint16_t generation = c.generation;
    c = Conn{};
    c.generation = generation;
    c.state = ConnState::open;
    c.h2c.limit = _layout.conn_credit;
    c.c2h.limit = _layout.conn_credit;
    ++_counters.conns_opened;
    return index;
}

void BusEngine::free_conn(QueuePair& q, std::uint32_t index)
{
    Conn& c = q.conns[index];
    c.state = ConnState::free;
    c.handler = nullptr;
    c.generation = static_cast<std::uint16_t>(c.generation + 1 == 0 ? 1 : c.generation + 1);
    q.free_conns.push_back(index);
}

BusEngine::Conn* BusEngine::live_conn(QueuePair& q, std::uint32_t id)
{
    const std::uint32_t index = conn_index(id);
    if (index >= q.conns.size()) {
        return nullptr;
    }
    Conn& c = q.conns[index];
    if (c.state == ConnState::free || c.state == ConnState::closing || c.generation != conn_generation(id)) {
        return nullptr;
    }
    return &c;
}

BusEngine::QueuePair* BusEngine::resolve_qp(ConnRef ref)
{
    if (ref.qp >= _qps.size()) {
        return nullptr;
    }
    QueuePair& q = _qps[ref.qp];
    if (!q.attached || q.generation != ref.qp_generation) {
        return nullptr;
    }
    return &q;
}

BusEngine::Conn* BusEngine::resolve(ConnRef ref)
{
    QueuePair* q = resolve_qp(ref);
    return q == nullptr ? nullptr : live_conn(*q, ref.id);
}

const BusEngine::Conn* BusEngine::resolve(ConnRef ref) const
{
    return const_cast<BusEngine*>(this)->resolve(ref);
}

cm_bus_desc BusEngine::conn_event(std::uint16_t opcode, std::uint32_t id, const Conn& c) const
{
    cm_bus_desc e{};
    e.opcode = opcode;
    e.conn = id;
    e.slot = CM_BUS_NO_SLOT;
    if (opcode == CM_BUS_EV_NEW_CONN || opcode == CM_BUS_EV_CONNECTED) {
        e.credit = c.h2c.limit;
        e.cookie = c.cookie;
        e.value = c.info.client_id;
        e.peer_addr = c.info.peer_addr;
        e.peer_port = c.info.peer_port;
        e.local_addr = c.info.local_addr;
        e.local_port = c.info.local_port;
        e.proxy_id = c.info.proxy_id;
    }
    if (opcode == CM_BUS_EV_RESET) {
        e.status = c.reset_status;
    }
    return e;
}

Expected<ConnRef, std::uint32_t> BusEngine::open_connection(std::uint16_t port, const ConnInfo& info,
                                                            BusConnHandler& handler, std::optional<std::uint32_t> only_qp)
{
    const auto it = _listeners.find(port);
    if (it == _listeners.end() || it->second.empty()) {
        ++_counters.no_listener;
        return Unexpected{CM_BUS_ENOENT};
    }
    std::vector<std::uint32_t>& qps = it->second;
    std::size_t& next = _next_listener[port];
    for (std::size_t tries = 0; tries < qps.size(); ++tries) {
        const std::uint32_t qi = qps[(next + tries) % qps.size()];
        QueuePair& q = _qps[qi];
        if ((only_qp && *only_qp != qi) || q.faulted) {
            continue;
        }
        const auto index = alloc_conn(q);
        if (!index) {
            continue;
        }
        next = (next + tries + 1) % qps.size();
        Conn& c = q.conns[*index];
        c.handler = &handler;
        c.info = info;
        c.info.local_port = port;
        c.pending_new = true;
        mark_work(q, *index);
        do_work(q, *index);
        update_gauges();
        return ConnRef{q.index, q.generation, conn_id(*index, c.generation)};
    }
    if (only_qp && std::find(qps.begin(), qps.end(), *only_qp) == qps.end()) {
        ++_counters.no_listener;
        return Unexpected{CM_BUS_ENOENT};
    }
    ++_counters.conn_table_full;
    return Unexpected{CM_BUS_ENOSPC};
}

bool BusEngine::can_send(ConnRef ref) const
{
    const Conn* c = resolve(ref);
    return c != nullptr && c->state == ConnState::open && !c->eof_sent && !c->pending_eof;
}

bool BusEngine::listening(std::uint16_t port) const
{
    return _listeners.contains(port);
}

std::size_t BusEngine::send(ConnRef ref, std::span<const std::byte> data, Duration may_wait)
{
    QueuePair* q = resolve_qp(ref);
    Conn* c = q == nullptr ? nullptr : live_conn(*q, ref.id);
    if (c == nullptr || c->state != ConnState::open || c->eof_sent || c->pending_eof || q->faulted) {
        return 0;
    }
    std::size_t sent = 0;
    while (sent < data.size()) {
        // Events keep their order: nothing overtakes a NEW_CONN that is still waiting for ring space.
        if (c->pending_new || !c->c2h.available() || q->c2h.available() == 0 || !room(*q, 1 + event_reserve)) {
            break;
        }
        const std::uint32_t slot = *q->c2h.acquire();
        const std::size_t n = std::min<std::size_t>(data.size() - sent, _layout.slot_size);
        std::memcpy(slot_bytes(slot).data(), data.data() + sent, n);
        (void)c->c2h.take();
        q->lent_to[slot - q->c2h.first()] = ref.id;
        cm_bus_desc e{};
        e.opcode = CM_BUS_EV_DATA;
        e.conn = ref.id;
        e.slot = slot;
        e.len = static_cast<std::uint32_t>(n);
        post(*q, e, may_wait);
        sent += n;
        ++_counters.data_c2h;
        _counters.bytes_c2h += n;
    }
    if (sent < data.size()) {
        ++_counters.send_blocked;
        if (!c->want_writable) {
            c->want_writable = true;
            q->writers.push_back(conn_index(ref.id));
        }
    }
    return sent;
}

bool BusEngine::send_eof(ConnRef ref)
{
    QueuePair* q = resolve_qp(ref);
    Conn* c = q == nullptr ? nullptr : live_conn(*q, ref.id);
    if (c == nullptr || c->state != ConnState::open) {
        return false;
    }
    if (!c->eof_sent && !c->pending_eof) {
        c->pending_eof = true;
        mark_work(*q, conn_index(ref.id));
        do_work(*q, conn_index(ref.id));
    }
    return true;
}

bool BusEngine::reset(ConnRef ref, std::uint32_t status)
{
    QueuePair* q = resolve_qp(ref);
    Conn* c = q == nullptr ? nullptr : live_conn(*q, ref.id);
    if (c == nullptr || c->state != ConnState::open) {
        return false;
    }
    ++_counters.conns_reset_by_card;
    c->state = ConnState::dead;
    c->handler = nullptr;
    c->reset_status = status;
    c->pending_eof = false;
    // A NEW_CONN not posted yet still goes first: the host cannot close an id it never heard of.
    c->pending_reset = true;
    drop_held(*q, *c, true);
    mark_work(*q, conn_index(ref.id));
    do_work(*q, conn_index(ref.id));
    return true;
}

void BusEngine::resume(ConnRef ref)
{
    QueuePair* q = resolve_qp(ref);
    if (q != nullptr && live_conn(*q, ref.id) != nullptr) {
        mark_work(*q, conn_index(ref.id));
    }
}

void BusEngine::mark_work(QueuePair& q, std::uint32_t index)
{
    Conn& c = q.conns[index];
    if (!c.in_work) {
        c.in_work = true;
        q.work.push_back(index);
    }
}

void BusEngine::drop_held(QueuePair& q, Conn& c, bool post_events)
{
    while (c.rx_head != CM_BUS_NO_SLOT) {
        const std::uint32_t slot = c.rx_head;
        HeldSlot& h = q.held[slot - _layout.h2c_first(q.index)];
        c.rx_head = h.next;
        (void)q.h2c.give(slot);
        (void)c.h2c.give();
        if (post_events) {
            // TX_DONE always fits: each held slot was accepted with event_reserve room, and the host can
            // only have `entries` events outstanding; if it does not, the queue pair's host is not reading
            // and the slot comes back when it detaches.
            cm_bus_desc e{};
            e.opcode = CM_BUS_EV_TX_DONE;
            e.conn = h.conn;
            e.slot = slot;
            if (room(q, 1)) {
                post(q, e);
            }
        }
    }
    c.rx_tail = CM_BUS_NO_SLOT;
}

// Feeds held data to the handler, returning each slot (TX_DONE) as it is taken.
void BusEngine::deliver(QueuePair& q, std::uint32_t index)
{
    Conn& c = q.conns[index];
    const std::uint32_t id = conn_id(index, c.generation);
    const ConnRef ref{q.index, q.generation, id};
    while (c.rx_head != CM_BUS_NO_SLOT && (c.state == ConnState::open || c.state == ConnState::closing)) {
        if (!room(q, 1 + event_reserve)) {
            mark_work(q, index);
            return;
        }
        const std::uint32_t slot = c.rx_head;
        HeldSlot& h = q.held[slot - _layout.h2c_first(q.index)];
        std::size_t taken = h.len;
        if (c.handler != nullptr) {
            taken = std::min<std::size_t>(h.len, c.handler->on_data(ref, slot_bytes(slot).subspan(h.offset, h.len)));
            if (!q.attached || q.generation != ref.qp_generation || c.generation != conn_generation(id) ||
                c.rx_head != slot) {
                return;  // the handler reset or closed the connection from inside on_data
            }
        }
        h.offset += static_cast<std::uint32_t>(taken);
        h.len -= static_cast<std::uint32_t>(taken);
        if (h.len > 0) {
            return;  // the handler is full; it calls resume()
        }
        c.rx_head = h.next;
        if (c.rx_head == CM_BUS_NO_SLOT) {
            c.rx_tail = CM_BUS_NO_SLOT;
        }
        (void)q.h2c.give(slot);
        (void)c.h2c.give();
        cm_bus_desc e{};
        e.opcode = CM_BUS_EV_TX_DONE;
        e.conn = id;
        e.slot = slot;
        post(q, e);
    }
    if (c.rx_head != CM_BUS_NO_SLOT) {
        return;
    }
    if (c.state == ConnState::open && c.host_eof && !c.eof_delivered) {
        c.eof_delivered = true;
        if (c.handler != nullptr) {
            c.handler->on_eof(ref);
        }
    }
    if (c.state == ConnState::closing && !c.pending_closed) {
        // Everything the host sent before CLOSE was taken: the handler hears the close, the host CLOSED.
        BusConnHandler* handler = c.handler;
        c.handler = nullptr;
        if (handler != nullptr) {
            handler->on_closed(ref, c.close_reason);
        }
        c.pending_closed = true;  // do_work, our caller, posts CLOSED next
    }
}

// Posts what a connection still owes the host, in order: NEW_CONN/CONNECTED, data (deliver), EOF, RESET,
// CLOSED (after which the id is free).
void BusEngine::do_work(QueuePair& q, std::uint32_t index)
{
    Conn& c = q.conns[index];
    c.in_work = false;
    if (c.state == ConnState::free) {
        return;
    }
    const std::uint32_t id = conn_id(index, c.generation);
    // Posts one pending event; false (the connection waits for the next poll) when it does not fit.
    const auto post_pending = [&](bool& pending, std::uint16_t opcode, std::uint32_t needed) {
        if (!pending) {
            return true;
        }
        if (!room(q, needed)) {
            mark_work(q, index);
            return false;
        }
        post(q, conn_event(opcode, id, c));
        pending = false;
        return true;
    };
    if (!post_pending(c.pending_new, c.connected ? CM_BUS_EV_CONNECTED : CM_BUS_EV_NEW_CONN, 1 + event_reserve)) {
        return;
    }
    deliver(q, index);
    if (c.state == ConnState::free || c.in_work) {
        return;
    }
    const bool eof = c.pending_eof;
    if (!post_pending(c.pending_eof, CM_BUS_EV_EOF, 1 + event_reserve)) {
        return;
    }
    c.eof_sent = c.eof_sent || eof;
    if (!post_pending(c.pending_reset, CM_BUS_EV_RESET, 1)) {
        return;
    }
    const bool closed = c.pending_closed;
    if (post_pending(c.pending_closed, CM_BUS_EV_CLOSED, 1) && closed) {
        ++_counters.conns_closed;
        free_conn(q, index);
        update_gauges();
    }
}

void BusEngine::wake_writers(QueuePair& q)
{
    if (q.writers.empty() || q.c2h.available() == 0 || !room(q, 1 + event_reserve)) {
        return;
    }
    std::vector<std::uint32_t> writers;
    writers.swap(q.writers);
    for (std::uint32_t index : writers) {
        Conn& c = q.conns[index];
        if (!c.want_writable) {
            continue;
        }
        c.want_writable = false;
        if (c.state == ConnState::open && c.handler != nullptr) {
            c.handler->on_writable(ConnRef{q.index, q.generation, conn_id(index, c.generation)});
        }
        if (!q.attached) {
            return;
        }
    }
}

// ---- events --------------------------------------------------------------------------------------------

bool BusEngine::room(QueuePair& q, std::uint32_t n)
{
    if (q.faulted) {
        return false;
    }
    if (q.eq.space() >= n) {
        return true;
    }
    if (!q.eq.refresh()) {
        ++_counters.eq_index_faults;
        fault(q, CM_BUS_FAULT_EQ_INDEX);
        return false;
    }
    return q.eq.space() >= n;
}

void BusEngine::post(QueuePair& q, const cm_bus_desc& d, Duration may_wait)
{
    q.post_wait = std::min(q.post_wait, d.opcode == CM_BUS_EV_TX_DONE ? _config.lazy_completions : may_wait);
    q.eq.push(d);
    ++_counters.events;
}

void BusEngine::post_ack(QueuePair& q, const cm_bus_desc& d, std::uint32_t status)
{
    cm_bus_desc e{};
    e.opcode = CM_BUS_EV_ACK;
    e.conn = d.conn;
    e.slot = CM_BUS_NO_SLOT;
    e.status = status;
    e.aux = d.opcode;
    e.cookie = d.cookie;
    post(q, e);
}

void BusEngine::reject(QueuePair& q, const cm_bus_desc& d, std::uint64_t& counter, std::uint32_t status)
{
    ++counter;
    cm_bus_desc e{};
    e.opcode = CM_BUS_EV_ERROR;
    e.conn = d.conn;
    e.slot = d.slot;
    e.status = status;
    e.aux = d.opcode;
    e.cookie = d.cookie;
    post(q, e);  // poll_qp made room for it
    if (++q.errors >= CM_BUS_QP_ERROR_LIMIT) {
        fault(q, CM_BUS_FAULT_TOO_MANY_ERRORS);
    }
}

// ---- submissions ---------------------------------------------------------------------------------------

std::size_t BusEngine::poll(TimePoint now)
{
    _now = now;
    std::size_t work = 0;
    if (_next_heartbeat && now >= *_next_heartbeat) {
        cm_bus_ctrl& c = ctrl();
        std::atomic_ref<std::uint64_t>(c.heartbeat).fetch_add(1, std::memory_order_relaxed);
        _next_heartbeat = now + _config.heartbeat;
    }
    const std::size_t n = _qps.size();
    for (std::size_t k = 0; k < n; ++k) {
        QueuePair& q = _qps[(_next_qp + k) % n];
        if (release_requested(q)) {
            // The host's driver gave it back (its process closed the device or died): drop everything of
            // the old owner, as for an attach-socket peer that hung up, and lend it again, faulted or not.
            detach_qp(q);
            attach_qp(q, CM_BUS_MEMORY_PEER);
            ++_counters.qp_released;
            ++work;
            continue;
        }
        if (q.attached && !q.faulted) {
            work += poll_qp(q, now);
        }
    }
    _next_qp = static_cast<std::uint32_t>((_next_qp + 1) % n);
    return work;
}

std::size_t BusEngine::poll_qp(QueuePair& q, TimePoint now)
{
    // Deferred work first: it is older than anything new in the ring.
    std::size_t work = run_work(q);
    if (!q.attached || q.faulted) {
        return work;
    }
    if (!q.sq.refresh()) {
        ++_counters.sq_index_faults;
        fault(q, CM_BUS_FAULT_SQ_INDEX);
        return work + 1;
    }
    std::uint32_t budget = _config.batch;
    while (budget > 0 && q.sq.available() > 0 && q.attached && !q.faulted && room(q, event_reserve + 1)) {
        const cm_bus_desc d = q.sq.pop();
        ++_counters.sq_descs;
        handle(q, d);
        --budget;
        ++work;
    }
    if (q.attached) {
        q.sq.release();
    }
    if (q.attached && !q.faulted) {
        wake_writers(q);
        // What the ring and the writers just started (a close, a handler resuming) goes out now.
        run_work(q);
    }
    if (work > 0) {
        q.last_work = now;
        q.sq.disarm();
    } else if (q.attached && !q.faulted && now - q.last_work >= _config.arm_after) {
        if (!q.sq.arm()) {
            ++work;  // something arrived while arming: the loop goes round again
        }
    }
    return work;
}

std::size_t BusEngine::run_work(QueuePair& q)
{
    std::size_t work = 0;
    if (q.work.empty()) {
        return 0;
    }
    std::vector<std::uint32_t> pending;
    pending.swap(q.work);
    for (std::uint32_t index : pending) {
        q.conns[index].in_work = false;
    }
    for (std::uint32_t index : pending) {
        if (!q.attached || q.faulted) {
            break;
        }
        do_work(q, index);
        ++work;
    }
    return work;
}

void BusEngine::handle(QueuePair& q, const cm_bus_desc& d)
{
    if (is_conn_opcode(d.opcode) && d.opcode != CM_BUS_SQ_DATA) {
        Conn* c = live_conn(q, d.conn);
        if (c == nullptr) {
            reject(q, d, _counters.bad_conn, CM_BUS_ENOENT);
            return;
        }
        switch (d.opcode) {
        case CM_BUS_SQ_EOF:
            if (c->state != ConnState::open || c->host_eof) {
                reject(q, d, _counters.bad_state, CM_BUS_EPROTO);
                return;
            }
            c->host_eof = true;
            deliver(q, conn_index(d.conn));
            return;
        case CM_BUS_SQ_CLOSE:
        case CM_BUS_SQ_RESET:
            handle_close(q, *c, conn_index(d.conn), d.opcode == CM_BUS_SQ_RESET);
            return;
        default:
            handle_setopt(q, d);
            return;
        }
    }
    switch (d.opcode) {
    case CM_BUS_SQ_NOP:
        post_ack(q, d, 0);
        return;
    case CM_BUS_SQ_LISTEN:
    case CM_BUS_SQ_UNLISTEN: {
        if (d.aux == 0 || d.aux > 65535) {
            ++_counters.listen_refused;
            post_ack(q, d, CM_BUS_EINVAL);
            return;
        }
        const auto port = static_cast<std::uint16_t>(d.aux);
        auto& qps = _listeners[port];
        const bool present = std::find(qps.begin(), qps.end(), q.index) != qps.end();
        if (d.opcode == CM_BUS_SQ_LISTEN) {
            if (present) {
                ++_counters.listen_refused;
                post_ack(q, d, CM_BUS_EADDRINUSE);
                return;
            }
            qps.push_back(q.index);
            ++_counters.listens;
            post_ack(q, d, 0);
            return;
        }
        std::erase(qps, q.index);
        if (qps.empty()) {
            _listeners.erase(port);
        }
        post_ack(q, d, present ? 0 : CM_BUS_ENOENT);
        return;
    }
    case CM_BUS_SQ_CONNECT:
        handle_connect(q, d);
        return;
    case CM_BUS_SQ_DATA:
        handle_data(q, d);
        return;
    case CM_BUS_SQ_SET_GLOBAL:
        handle_global(q, d);
        return;
    case CM_BUS_SQ_BUF_RETURN:
        handle_buf_return(q, d);
        return;
    default:
        reject(q, d, _counters.bad_opcode, CM_BUS_EBADMSG);
        return;
    }
}

void BusEngine::handle_data(QueuePair& q, const cm_bus_desc& d)
{
    Conn* c = live_conn(q, d.conn);
    const bool slot_ok = q.h2c.contains(d.slot) && !q.h2c.holds(d.slot);
    const auto give_back = [&] {
        // The slot is the host's and we did not take it: say so, so the host does not lose it.
        if (slot_ok) {
            cm_bus_desc e{};
            e.opcode = CM_BUS_EV_TX_DONE;
            e.conn = d.conn;
            e.slot = d.slot;
            post(q, e);
        }
    };
    if (c == nullptr) {
        reject(q, d, _counters.bad_conn, CM_BUS_ENOENT);
        give_back();
        return;
    }
    const ConnRef ref{q.index, q.generation, d.conn};
    if (!slot_ok) {
        reject(q, d, _counters.bad_slot, CM_BUS_EINVAL);
        reset(ref, CM_BUS_EPROTO);
        return;
    }
    if (d.len == 0 || d.offset > _layout.slot_size || d.len > _layout.slot_size - d.offset) {
        reject(q, d, _counters.bad_length, CM_BUS_EINVAL);
        give_back();
        reset(ref, CM_BUS_EPROTO);
        return;
    }
    if (c->state != ConnState::open || c->host_eof) {
        // Data after the host's own EOF, or racing a reset by the card (then it is simply dropped).
        if (c->state == ConnState::open) {
            reject(q, d, _counters.bad_state, CM_BUS_EPROTO);
        }
        give_back();
        return;
    }
    if (!c->h2c.take()) {
        reject(q, d, _counters.no_credit, CM_BUS_ENOSPC);
        give_back();
        reset(ref, CM_BUS_EPROTO);
        return;
    }
    (void)q.h2c.take(d.slot);
    HeldSlot& h = q.held[d.slot - _layout.h2c_first(q.index)];
    h = HeldSlot{d.offset, d.len, CM_BUS_NO_SLOT, d.conn};
    if (c->rx_tail == CM_BUS_NO_SLOT) {
        c->rx_head = d.slot;
    } else {
        q.held[c->rx_tail - _layout.h2c_first(q.index)].next = d.slot;
    }
    c->rx_tail = d.slot;
    ++_counters.data_h2c;
    _counters.bytes_h2c += d.len;
    if (c->rx_head == d.slot) {
        deliver(q, conn_index(d.conn));
    }
}

void BusEngine::handle_close(QueuePair& q, Conn& c, std::uint32_t index, bool reset_it)
{
    const std::uint32_t id = conn_id(index, c.generation);
    const ConnRef ref{q.index, q.generation, id};
    c.pending_eof = false;
    c.pending_reset = false;  // the host closes anyway: no RESET needed any more
    c.want_writable = false;
    if (reset_it || c.state == ConnState::dead) {
        if (reset_it) {
            ++_counters.conns_reset_by_host;
        }
        drop_held(q, c, true);
        BusConnHandler* handler = c.handler;
        c.handler = nullptr;
        c.state = ConnState::closing;
        if (handler != nullptr) {
            handler->on_closed(ref, reset_it ? CloseReason::host_reset : CloseReason::host_close);
        }
        c.pending_closed = true;
        mark_work(q, index);
        return;
    }
    // Graceful: what the host sent before CLOSE is still offered to the handler, then on_closed, CLOSED.
    c.state = ConnState::closing;
    c.close_reason = CloseReason::host_close;
    mark_work(q, index);
}

void BusEngine::handle_setopt(QueuePair& q, const cm_bus_desc& d)
{
    Conn& c = *live_conn(q, d.conn);
    const ConnRef ref{q.index, q.generation, d.conn};
    switch (d.aux) {
    case CM_BUS_OPT_C2H_WINDOW:
        if (d.value == 0 || d.value > CM_BUS_MAX_CREDIT) {
            ++_counters.bad_option;
            post_ack(q, d, CM_BUS_EINVAL);
            return;
        }
        c.c2h.limit = static_cast<std::uint32_t>(d.value);
        break;
    case CM_BUS_OPT_IDLE_TIMEOUT_MS:
    case CM_BUS_OPT_KEEPALIVE:
    case CM_BUS_OPT_ALWAYS_ACTIVE:
        break;  // the client-side policies: the handler (the proxy) applies them
    default:
        ++_counters.bad_option;
        post_ack(q, d, CM_BUS_EINVAL);
        return;
    }
    post_ack(q, d, 0);
    if (c.handler != nullptr) {
        c.handler->on_option(ref, d.aux, d.value);
    }
    if (d.aux == CM_BUS_OPT_C2H_WINDOW && c.want_writable) {
        wake_writers(q);
    }
}

void BusEngine::handle_global(QueuePair& q, const cm_bus_desc& d)
{
    if (d.aux == CM_BUS_GOPT_HEARTBEAT_MS) {
        if (d.value < 10 || d.value > 10000) {
            ++_counters.bad_option;
            post_ack(q, d, CM_BUS_EINVAL);
            return;
        }
        _config.heartbeat = std::chrono::milliseconds(d.value);
        store_relaxed(ctrl().heartbeat_ms, static_cast<std::uint32_t>(d.value));
        post_ack(q, d, 0);
        return;
    }
    // Connections a service opens while handling the option (NEW_CONN) are posted before the answer, so
    // a host that sees the answer has them all.
    for (BusService* service : _services) {
        const std::uint32_t generation = q.generation;
        if (auto status = service->on_global_option(q.index, d.aux, d.value)) {
            if (q.attached && q.generation == generation && room(q, 1)) {
                post_ack(q, d, *status);
            }
            return;
        }
    }
    ++_counters.bad_option;
    post_ack(q, d, CM_BUS_EOPNOTSUPP);
}

void BusEngine::handle_connect(QueuePair& q, const cm_bus_desc& d)
{
    const auto index = alloc_conn(q);
    if (!index) {
        ++_counters.connect_refused;
        ++_counters.conn_table_full;
        post_ack(q, d, CM_BUS_ENOSPC);
        return;
    }
    Conn& c = q.conns[*index];
    const ConnRef ref{q.index, q.generation, conn_id(*index, c.generation)};
    for (BusService* service : _services) {
        c.handler = service->on_connect(d.value, ref);
        if (c.handler != nullptr) {
            break;
        }
    }
    if (c.handler == nullptr) {
        --_counters.conns_opened;
        free_conn(q, *index);
        ++_counters.connect_refused;
        post_ack(q, d, CM_BUS_ECONNREFUSED);
        return;
    }
    ++_counters.connects;
    c.connected = true;
    c.cookie = d.cookie;
    c.info.client_id = d.value;
    c.pending_new = true;
    do_work(q, *index);
    update_gauges();
}

void BusEngine::handle_buf_return(QueuePair& q, const cm_bus_desc& d)
{
    if (!q.c2h.release(d.slot)) {
        reject(q, d, _counters.bad_return, CM_BUS_EINVAL);
        return;
    }
    const std::uint32_t id = q.lent_to[d.slot - q.c2h.first()];
    Conn* c = live_conn(q, id);
    if (c == nullptr) {
        // The connection closed meanwhile; its credit went with it. Look at dead/closing ones too.
        const std::uint32_t index = conn_index(id);
        if (index < q.conns.size() && q.conns[index].generation == conn_generation(id)) {
            (void)q.conns[index].c2h.give();
        }
    } else {
        (void)c->c2h.give();
    }
    // Any writer of this queue pair may go on: the slot is free for all, the credit for one.
}

// ---- flush -----------------------------------------------------------------------------------------------

void BusEngine::flush()
{
    for (QueuePair& q : _qps) {
        if (!q.attached || q.faulted) {
            continue;
        }
        if (q.eq.unpublished()) {
            q.eq.publish_entries();
            q.notify_owed = true;
            q.wake_by = std::min(q.wake_by, _now + q.post_wait);  // _now: this loop pass, like the posts
            q.post_wait = no_wait_limit;
        }
        if (q.notify_owed) {
            notify_host(q);
        }
    }
    update_gauges();
}

void BusEngine::notify_host(QueuePair& q)
{
    const auto settle = [&q] {
        q.notify_owed = q.notify_held = q.lazy_counted = false;
        q.wake_by = TimePoint::max();
    };
    // A host that is not asleep (need_wakeup clear, read after the entries were published) looks at the ring
    // again before it sleeps, so it needs no wake-up for them: nothing is owed then. Nor does a host armed
    // for work that has taken in everything posted: one armed so makes itself runnable for what it takes in
    // outside its poll (libcm's kick). One armed for anything may have taken events in without handling them
    // yet, counting on our notification: it gets it.
    const std::uint32_t level = q.eq.wakeup_level();
    if (level == 0 || (level == CM_BUS_WAKE_WORK && q.eq.refresh() && q.eq.in_flight() == 0)) {
        settle();
        return;
    }
    TimePoint due = _now;
    // A host armed for work only lets events that may wait (TX_DONE; requests the proxy marks) ride with its
    // next wake-up, up to the earliest of their delays; a half-full ring is woken at once. A host whose needs
    // change while it sleeps re-arms for anything and rings us: we look again.
    if (level == CM_BUS_WAKE_WORK && q.eq.in_flight() < _layout.ring_entries / 2 && q.wake_by > _now) {
        due = q.wake_by;
        if (!q.lazy_counted) {
            q.lazy_counted = true;
            ++_counters.notifications_lazy;
        }
    }
    // Interrupt moderation, as a NIC's rx-usecs: a host that was woken less than a period ago waits for the
    // rest of it, and then takes everything posted meanwhile in one wake-up instead of one each.
    if (_config.notify_coalesce > Duration::zero()) {
        const TimePoint period_end = q.last_notified + _config.notify_coalesce;
        if (period_end > due) {
            if (!q.notify_held) {
                q.notify_held = true;
                ++_counters.notifications_held;
            }
            due = period_end;
        }
    }
    if (_now < due) {
        q.notify_due = due;  // next_wakeup() brings the loop back then
        return;
    }
    settle();
    if (q.eq.take_wakeup() && _notify) {
        ++_counters.notifications;
        q.last_notified = _now;
        _notify(q.index);
    }
}

std::optional<TimePoint> BusEngine::next_wakeup() const
{
    std::optional<TimePoint> wake = _next_heartbeat;
    for (const QueuePair& q : _qps) {
        if (q.notify_owed && q.attached && !q.faulted && (!wake || q.notify_due < *wake)) {
            wake = q.notify_due;
        }
    }
    return wake;
}

std::string BusEngine::check_invariants() const
{
    for (const QueuePair& q : _qps) {
        if (!q.attached) {
            continue;
        }
        std::uint64_t held = 0;
        std::uint64_t lent = 0;
        for (const Conn& c : q.conns) {
            if (c.state == ConnState::free) {
                continue;
            }
            if (c.h2c.used > c.h2c.limit && c.state == ConnState::open) {
                return "queue pair " + std::to_string(q.index) + ": connection over its h2c credit";
            }
            held += c.h2c.used;
            std::uint32_t n = 0;
            for (std::uint32_t s = c.rx_head; s != CM_BUS_NO_SLOT; s = q.held[s - _layout.h2c_first(q.index)].next) {
                if (!q.h2c.holds(s) || ++n > _layout.h2c_count()) {
                    return "queue pair " + std::to_string(q.index) + ": bad held-slot list";
                }
            }
            if (n != c.h2c.used) {
                return "queue pair " + std::to_string(q.index) + ": held slots != h2c credit used";
            }
            lent += c.c2h.used;
        }
        if (held != q.h2c.held()) {
            return "queue pair " + std::to_string(q.index) + ": held slot count mismatch";
        }
        if (lent > q.c2h.in_use()) {
            return "queue pair " + std::to_string(q.index) + ": more c2h credit used than slots lent";
        }
    }
    return {};
}

}  // namespace cm::bus

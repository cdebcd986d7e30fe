// The card's side of the bus, without any file descriptor: queue pairs, bus connections, slots, credits
// and the validation of everything the host writes. BusDevice (device.hpp) puts it behind the attach
// socket and the doorbells; the unit tests and the fuzzer drive it directly over plain memory.
//
// Call order, per poll():
//   for each attached queue pair (round robin, a bounded batch each):
//     sq refresh (index checked) -> copy each descriptor out -> validate -> act:
//       DATA -> held on the connection (slot + credit) -> handler.on_data -> TX_DONE when consumed
//       CLOSE/RESET -> handler.on_closed -> CLOSED (the id is free again)
//   connections with deferred work (an event that did not fit, data a handler did not take) are retried
//   writers waiting for credit, slots or ring space get on_writable
// flush(): publish the event rings, ring the host's doorbell where it asked for one.
//
// Card-side users (the echo test service now, the proxy later) implement BusConnHandler for each bus
// connection and BusService for what is not tied to one connection (CONNECT targets, global options).
#pragma once

#include "base/clock.hpp"
#include "base/counters.hpp"
#include "base/expected.hpp"
#include "cmbus/layout.hpp"
#include "cmbus/ring.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace cm::bus {

#define CM_BUS_COUNTERS(X)                                                                              \
    X(peers_connected, "attach-socket peers accepted")                                                  \
    X(peers_gone, "peers whose socket closed (exit or death); their queue pairs were reclaimed")        \
    X(bad_attach_msgs, "rejected: malformed attach-socket requests")                                    \
    X(attach_refused, "attach requests refused (no free queue pair)")                                   \
    X(qp_attached, "queue pairs attached")                                                              \
    X(qp_detached, "queue pairs detached (by request or reclaimed)")                                    \
    X(qp_released, "memory-peer queue pairs the host's driver released (connections reset, lent again)")   \
    X(qp_faults, "queue pairs faulted (impossible index or too many bad descriptors)")                  \
    X(qp_in_use, "gauge: queue pairs attached now")                                                     \
    X(sq_index_faults, "faults: a submission producer index more than a ring ahead")                    \
    X(eq_index_faults, "faults: an event consumer index outside what the card produced")                \
    X(sq_descs, "descriptors read from submission rings")                                               \
    X(events, "events posted to event rings")                                                           \
    X(doorbells, "doorbells received from hosts")                                                       \
    X(notifications, "notifications sent to hosts")                                                     \
    X(notifications_held, "notifications held back by coalescing (sent when the period is up, if still wanted)") \
    X(notifications_lazy, "wake-ups held back for events that may wait (TX_DONE, slow requests): host armed for work")  \
    X(memory_peer_polls, "loop passes made to look at the memory peer's rings (it has no doorbells)")    \
    X(memory_peer_doorbells, "doorbells rung by the memory peer (a VM behind ivshmem-doorbell)")          \
    X(bad_opcode, "rejected: unknown submission opcode")                                                \
    X(bad_conn, "rejected: descriptor names no live connection of its queue pair")                     \
    X(bad_slot, "rejected: slot outside the queue pair's h2c range or not owned by the host")           \
    X(bad_length, "rejected: empty data, or offset + length past the slot")                             \
    X(no_credit, "rejected: data beyond the connection's credit (connection reset)")                    \
    X(bad_return, "rejected: buffer return of a slot the card did not lend to that queue pair")         \
    X(bad_option, "rejected: unknown option or value out of range")                                     \
    X(bad_state, "rejected: descriptor not allowed in the connection's state (e.g. data after EOF)")    \
    X(listens, "listen requests accepted")                                                              \
    X(listen_refused, "listen requests refused (port in use on that queue pair, bad port)")            \
    X(connects, "connect requests accepted")                                                            \
    X(connect_refused, "connect requests refused (unknown client, table full)")                         \
    X(no_listener, "connections the card could not open: no listener on the port")                     \
    X(conn_table_full, "connections the card could not open: the queue pair's table is full")           \
    X(conns_opened, "bus connections opened")                                                           \
    X(conns_closed, "bus connections closed (CLOSED sent)")                                             \
    X(conns_reset_by_host, "bus connections reset by the host")                                         \
    X(conns_reset_by_card, "bus connections reset by the card (protocol error or service)")             \
    X(conns_reclaimed, "bus connections dropped because their queue pair went away")                    \
    X(conns_open, "gauge: bus connections open now")                                                    \
    X(data_h2c, "data descriptors accepted from hosts")                                                 \
    X(bytes_h2c, "bytes accepted from hosts")                                                           \
    X(data_c2h, "data events sent to hosts")                                                            \
    X(bytes_c2h, "bytes sent to hosts")                                                                 \
    X(c2h_lent, "gauge: c2h slots lent to hosts now")                                                   \
    X(h2c_held, "gauge: h2c slots the card holds now")                                                  \
    X(send_blocked, "sends cut short by credit, slots or event-ring space")
CM_DECLARE_COUNTERS(BusCounters, CM_BUS_COUNTERS)

/// A bus connection as card-side code names it. Stale references (the connection or its queue pair is
/// gone) are detected and refused, never confused with a newer connection.
struct ConnRef {
    std::uint32_t qp = 0;
    std::uint32_t qp_generation = 0;
    std::uint32_t id = 0;
    friend bool operator==(const ConnRef&, const ConnRef&) = default;
};

/// Who the connection is for (what NEW_CONN tells the host).
struct ConnInfo {
    std::uint32_t peer_addr = 0;
    std::uint16_t peer_port = 0;
    std::uint16_t local_port = 0;
    std::uint32_t local_addr = 0;
    std::uint16_t proxy_id = 0;
    std::uint64_t client_id = 0;
};

enum class CloseReason { host_close, host_reset, detached };

/// Card-side end of one bus connection. Callbacks come from inside BusEngine::poll() (or from the engine
/// call the handler itself made); a handler may call back into the engine for its own connection.
class BusConnHandler {
public:
    virtual ~BusConnHandler() = default;
    /// Bytes from the host. Returns how many it took; the engine keeps the rest (and the host's slot and
    /// credit) and offers it again after resume().
    virtual std::size_t on_data(ConnRef conn, std::span<const std::byte> data) = 0;
    /// The host sends no more (after all its data was taken).
    virtual void on_eof(ConnRef conn) = 0;
    /// A send() that was cut short may go on.
    virtual void on_writable(ConnRef /*conn*/) {}
    /// A connection option from the host (the engine handles the bus's own ones first).
    virtual void on_option(ConnRef /*conn*/, std::uint32_t /*option*/, std::uint64_t /*value*/) {}
    /// The connection is gone; the reference is dead once this returns.
    virtual void on_closed(ConnRef conn, CloseReason reason) = 0;
};

/// What is not tied to one connection.
class BusService {
public:
    virtual ~BusService() = default;
    /// CONNECT towards `client_id`: the handler of the new connection, or nullptr when the id is not this
    /// service's (the next service is asked; none: ECONNREFUSED).
    virtual BusConnHandler* on_connect(std::uint64_t /*client_id*/, ConnRef /*conn*/) { return nullptr; }
    /// A global option the engine does not know: the status to answer (0 or an errno value), or nullopt
    /// when it is not this service's.
    virtual std::optional<std::uint32_t> on_global_option(std::uint32_t /*qp*/, std::uint32_t /*option*/,
                                                          std::uint64_t /*value*/)
    {
        return std::nullopt;
    }
};

/// Longer than any delay an event may be given (a sentinel that cannot overflow a TimePoint).
inline constexpr Duration no_wait_limit = std::chrono::hours(24);

struct EngineConfig {
    std::uint32_t batch = 256;                    // descriptors per queue pair per poll
    Duration heartbeat = std::chrono::milliseconds(100);
    Duration arm_after{0};                        // idle time before asking hosts for doorbells (busy-poll)
    // At most one notification per queue pair per period (0: each loop pass that posted events notifies a
    // sleeping host at once). Events are always visible at once; only the wake-up waits, at most this long.
    Duration notify_coalesce{0};
    // A host asleep at CM_BUS_WAKE_WORK is not woken for TX_DONE alone for up to this long (0: it is).
    Duration lazy_completions{0};
    std::uint32_t fw_version = 0;
    const char* fw_version_str = "";
};

class BusEngine {
public:
    /// Formats `memory` (size bytes, page-aligned) with `layout` and starts with every queue pair free.
    BusEngine(std::byte* memory, const Layout& layout, const EngineConfig& config, TimePoint now);
    ~BusEngine();
    BusEngine(const BusEngine&) = delete;
    BusEngine& operator=(const BusEngine&) = delete;

    // ---- queue pairs (the attach socket's requests) ----
    /// Attaches a free queue pair for `peer`; nullopt when none is free.
    std::optional<std::uint32_t> attach(std::uint32_t peer);
    /// Detaches queue pair `qp` of `peer` (its connections are closed towards their handlers, its slots
    /// reclaimed); false when it is not that peer's.
    bool detach(std::uint32_t qp, std::uint32_t peer);
    /// Detaches every queue pair of `peer`; returns how many.
    std::uint32_t detach_peer(std::uint32_t peer);
    /// True while a memory-peer queue pair (CM_BUS_MEMORY_PEER: no doorbells) has a process on it
    /// (host_pid != 0) or a release pending: BusDevice then polls the rings on a timer.
    [[nodiscard]] bool memory_peer_active() const;
    /// The same for queue pair `qp` alone; `generation` gets its current lending (when it is the memory
    /// peer's), so BusDevice can tell whether the host of this lending rings doorbells.
    [[nodiscard]] bool memory_peer_active(std::uint32_t qp, std::uint32_t& generation) const;
    /// Called with a queue pair whose host asked to be notified of new events.
    void set_notify(std::function<void(std::uint32_t qp)> notify) { _notify = std::move(notify); }
    void add_service(BusService& service) { _services.push_back(&service); }

    // ---- the loop ----
    std::size_t poll(TimePoint now);
    void flush();
    /// The heartbeat, or sooner a notification held back by coalescing.
    [[nodiscard]] std::optional<TimePoint> next_wakeup() const;
    /// The firmware is going away: the memory says so.
    void stop();

    // ---- card-side use of bus connections ----
    /// Opens a bus connection towards a listener on `port` (round robin over the queue pairs listening
    /// there; `only_qp` restricts it to one). Errors: ENOENT (no listener), ENOSPC (table full).
    Expected<ConnRef, std::uint32_t> open_connection(std::uint16_t port, const ConnInfo& info, BusConnHandler& handler,
                                                     std::optional<std::uint32_t> only_qp = std::nullopt);
    /// Copies as much of `data` as credit, slots and ring space allow into c2h slots; returns the bytes
    /// taken. Less than all: on_writable follows when more can go. `may_wait`: a host asleep for work
    /// (CM_BUS_WAKE_WORK) need not be woken for this data before that long (it rides with the next wake-up).
    std::size_t send(ConnRef conn, std::span<const std::byte> data, Duration may_wait = Duration::zero());
    /// End of data towards the host (after everything sent). False for a dead reference.
    bool send_eof(ConnRef conn);
    /// Kills the connection: the host gets RESET (status), data held for it is dropped, the handler is
    /// detached (no more callbacks). The host answers with CLOSE, which frees the id.
    bool reset(ConnRef conn, std::uint32_t status);
    /// The handler can take data again (after an on_data that took less than offered).
    void resume(ConnRef conn);
    /// True while the connection can still carry data to the host.
    [[nodiscard]] bool can_send(ConnRef conn) const;
    [[nodiscard]] bool listening(std::uint16_t port) const;

    [[nodiscard]] const BusCounters& counters() const noexcept { return _counters; }
    /// For BusDevice, which counts the attach socket's events in the same group.
    [[nodiscard]] BusCounters& counters() noexcept { return _counters; }
    [[nodiscard]] const Layout& layout() const noexcept { return _layout; }
    [[nodiscard]] cm_bus_ctrl& ctrl() noexcept { return *reinterpret_cast<cm_bus_ctrl*>(_memory); }
    [[nodiscard]] cm_bus_qp& qp_header(std::uint32_t qp) noexcept;
    /// Consistency of the engine's own bookkeeping (tests and the fuzzer): empty when all is well.
    [[nodiscard]] std::string check_invariants() const;

private:
    enum class ConnState : std::uint8_t { free, open, dead, closing };
    struct Conn {
        std::uint16_t generation = 1;
        ConnState state = ConnState::free;
        bool host_eof = false;          // SQ_EOF received
        bool eof_delivered = false;     // handler told
        bool pending_new = false;       // NEW_CONN or CONNECTED still to post
        bool pending_eof = false;       // EV_EOF still to post
        bool eof_sent = false;
        bool pending_reset = false;     // EV_RESET still to post
        bool pending_closed = false;    // EV_CLOSED still to post (then the id is free)
        bool want_writable = false;
        bool in_work = false;
        bool connected = false;         // opened by CONNECT (CONNECTED instead of NEW_CONN)
        std::uint32_t reset_status = 0;
        std::uint64_t cookie = 0;
        CloseReason close_reason = CloseReason::host_close;
        Credit h2c;                     // slots the host has submitted and the card holds
        Credit c2h;                     // slots lent to the host
        std::uint32_t rx_head = CM_BUS_NO_SLOT;
        std::uint32_t rx_tail = CM_BUS_NO_SLOT;
        BusConnHandler* handler = nullptr;
        ConnInfo info;
    };
    struct HeldSlot {                   // an h2c slot the card holds (data not yet taken by the handler)
        std::uint32_t offset = 0;
        std::uint32_t len = 0;
        std::uint32_t next = CM_BUS_NO_SLOT;
        std::uint32_t conn = 0;         // connection id
    };
    struct QueuePair {
        std::uint32_t index = 0;
        bool attached = false;
        bool faulted = false;
        std::uint32_t peer = 0;
        std::uint32_t generation = 0;
        std::uint32_t errors = 0;
        cm_bus_qp* hdr = nullptr;
        RingConsumer sq;
        RingProducer eq;
        SlotHolding h2c;                // h2c slots the card holds
        std::vector<HeldSlot> held;     // by h2c slot - h2c_first
        SlotPool c2h;                   // c2h slots the card lends
        std::vector<std::uint32_t> lent_to;  // by c2h slot - c2h_first: connection id
        std::vector<Conn> conns;
        std::vector<std::uint32_t> free_conns;
        std::vector<std::uint32_t> work;     // connection indices with deferred work
        std::vector<std::uint32_t> writers;  // connection indices waiting to send
        TimePoint last_work{};
        bool notify_owed = false;       // events published since the host was last looked at for a wake-up
        bool notify_held = false;       // ... and its wake-up is held back by coalescing (counted once)
        bool lazy_counted = false;      // ... and a host armed for work lets them wait (counted once)
        Duration post_wait = no_wait_limit;       // least "may wait" of the events posted since the last flush
        TimePoint wake_by = TimePoint::max();     // a host armed for work must be woken by then for what it owes
        TimePoint last_notified{};      // the last notification (coalescing counts from here)
        TimePoint notify_due{};         // while owed: when the held wake-up is due
    };

    void attach_qp(QueuePair& q, std::uint32_t peer);
    [[nodiscard]] bool release_requested(const QueuePair& q) const;
    std::size_t poll_qp(QueuePair& q, TimePoint now);
    void handle(QueuePair& q, const cm_bus_desc& d);
    void handle_data(QueuePair& q, const cm_bus_desc& d);
    void handle_buf_return(QueuePair& q, const cm_bus_desc& d);
    void handle_setopt(QueuePair& q, const cm_bus_desc& d);
    void handle_global(QueuePair& q, const cm_bus_desc& d);
    void handle_connect(QueuePair& q, const cm_bus_desc& d);
    void handle_close(QueuePair& q, Conn& c, std::uint32_t index, bool reset);
    /// A descriptor was bad: count, answer with ERROR, fault the queue pair after too many.
    void reject(QueuePair& q, const cm_bus_desc& d, std::uint64_t& counter, std::uint32_t status);
    void fault(QueuePair& q, std::uint32_t why);
    Conn* live_conn(QueuePair& q, std::uint32_t id);
    Conn* resolve(ConnRef ref);
    [[nodiscard]] const Conn* resolve(ConnRef ref) const;
    QueuePair* resolve_qp(ConnRef ref);
    std::optional<std::uint32_t> alloc_conn(QueuePair& q);
    void free_conn(QueuePair& q, std::uint32_t index);
    /// Gives the host back every h2c slot the connection holds (TX_DONE each, or the slot just comes back
    /// when the queue pair is going away).
    void drop_held(QueuePair& q, Conn& c, bool post_events);
    void deliver(QueuePair& q, std::uint32_t index);
    void do_work(QueuePair& q, std::uint32_t index);
    /// Runs the deferred work listed so far; returns how many connections it looked at.
    std::size_t run_work(QueuePair& q);
    void mark_work(QueuePair& q, std::uint32_t index);
    void wake_writers(QueuePair& q);
    /// Room for `n` more events (refreshing the host's consumer index; a bad one faults the queue pair).
    bool room(QueuePair& q, std::uint32_t n);
    /// `may_wait`: how long the host may go without a wake-up for it (if armed for work; TX_DONE: the
    /// lazy-completion delay).
    void post(QueuePair& q, const cm_bus_desc& d, Duration may_wait = Duration::zero());
    void post_ack(QueuePair& q, const cm_bus_desc& d, std::uint32_t status);
    cm_bus_desc conn_event(std::uint16_t opcode, std::uint32_t id, const Conn& c) const;
    void detach_qp(QueuePair& q);
    std::span<std::byte> slot_bytes(std::uint32_t slot);
    void update_gauges();
    /// Wakes the host of `q` if it sleeps (need_wakeup), unless coalescing holds the wake-up back for now.
    void notify_host(QueuePair& q);

    std::byte* _memory;
    Layout _layout;
    EngineConfig _config;
    std::vector<QueuePair> _qps;
    std::map<std::uint16_t, std::vector<std::uint32_t>> _listeners;  // port -> queue pairs
    std::map<std::uint16_t, std::size_t> _next_listener;              // round robin
    std::vector<BusService*> _services;
    std::function<void(std::uint32_t)> _notify;
    std::uint32_t _next_qp = 0;
    std::optional<TimePoint> _next_heartbeat;
    TimePoint _now{};  // of the last poll(): flush() runs in the same loop pass
    BusCounters _counters;
};

}  // namespace cm::bus

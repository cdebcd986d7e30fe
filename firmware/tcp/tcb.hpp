// The TCP control block (RFC 9293 3.3.2, the TCB) as the card keeps it: small, fixed-size, pre-allocated.
//
// A connection is two objects:
//   Tcb         always present while the connection exists (SYN_RECEIVED .. TIME_WAIT): identity, sequence
//               space, windows, RTT and congestion state, the one timer and its deadlines. No pointers to
//               heap memory, no buffers. Its size is printed by the tests and asserted below.
//   TcbBuffers  attached only while data is queued in either direction or SACK recovery needs a scoreboard:
//               the send queue, the in-order receive queue, the reassembly queue and the SACK scoreboard.
//               Released as soon as every queue is empty and nothing is in flight, so an idle connection
//               costs sizeof(Tcb) only (the "standby" connections of ARCHITECTURE.md).
// Both live in slabs allocated once when the layer is built (TcbSlab below); free entries are chained
// through `next_free` (which shares its place with `buffers`: a free block has none).
//
// One timer per connection: `timer` is a core::Timer armed at the earliest of up to four deadlines
// (TimerSlot): retransmission-class (retransmit, persist, SYN retransmit, FIN_WAIT_2, TIME_WAIT: never two
// at once, the state says which), delayed ACK, keep-alive, and the application's own timer. Deadlines are
// milliseconds since the layer's epoch (mod 2^32, compared wrap-safe). Moving a deadline later never touches
// the wheel: the timer fires early, finds nothing due, and re-arms itself for what is (lazy re-arming).
#pragma once

#include "core/timer_wheel.hpp"
#include "tcp/buffer_pool.hpp"
#include "tcp/congestion.hpp"
#include "tcp/four_tuple.hpp"
#include "tcp/rtt_estimator.hpp"
#include "tcp/sack_scoreboard.hpp"
#include "wire/tcp.hpp"

#include <cstdint>

namespace cm::tcp {

class TcpLayer;

enum class TcpState : std::uint8_t {
    closed,  // a free control block
    syn_sent,
    syn_received,
    established,
    fin_wait_1,
    fin_wait_2,
    close_wait,
    closing,
    last_ack,
    time_wait,
};

[[nodiscard]] const char* state_name(TcpState state) noexcept;

/// True once both SYNs are acknowledged (the "synchronized" states of RFC 9293 3.10.7.4).
[[nodiscard]] constexpr bool synchronized(TcpState s) noexcept
{
    return s >= TcpState::established;
}

/// States in which the peer may still send us data (synchronized, its FIN not yet received).
[[nodiscard]] constexpr bool receiving(TcpState s) noexcept
{
    return s == TcpState::established || s == TcpState::fin_wait_1 || s == TcpState::fin_wait_2;
}

enum class TimerSlot : std::uint8_t { retransmit = 0, delayed_ack = 1, keepalive = 2, user = 3 };
inline constexpr unsigned timer_slots = 4;

/// Per-connection flag bits (Tcb::flags).
namespace tcb_flag {
// negotiated at the handshake
inline constexpr std::uint32_t sack_ok = 1u << 0;       // both sides sent SACK-permitted
inline constexpr std::uint32_t ts_ok = 1u << 1;         // both sides use timestamps
inline constexpr std::uint32_t ws_ok = 1u << 2;         // both sides sent window scale
// application settings
inline constexpr std::uint32_t nodelay = 1u << 3;       // Nagle off
inline constexpr std::uint32_t keepalive = 1u << 4;     // keep-alive probes on
// output requests (served by TcpLayer::output at the next flush)
inline constexpr std::uint32_t ack_now = 1u << 5;       // send an ACK even without data
inline constexpr std::uint32_t send_syn = 1u << 6;      // (re)send our SYN or SYN-ACK
inline constexpr std::uint32_t rtx_head = 1u << 7;      // retransmit the segment at snd_una first
inline constexpr std::uint32_t send_probe = 1u << 8;    // zero-window probe
inline constexpr std::uint32_t send_keepalive = 1u << 9;
inline constexpr std::uint32_t pending = 1u << 10;      // on the layer's pending-output list
// stream state
inline constexpr std::uint32_t fin_queued = 1u << 11;   // the application shut down writing: FIN after the data
inline constexpr std::uint32_t fin_received = 1u << 12; // the peer's FIN has been consumed (rcv_nxt is past it)
inline constexpr std::uint32_t fin_ooo = 1u << 13;      // the peer's FIN arrived ahead of a hole (TcbBuffers::rcv_fin)
inline constexpr std::uint32_t in_recovery = 1u << 14;  // fast recovery (RFC 6582 / RFC 6675)
inline constexpr std::uint32_t rtt_timing = 1u << 15;   // rtt_seq/rtt_start time one segment (no timestamps)
inline constexpr std::uint32_t persist = 1u << 16;      // the retransmit slot is the persist timer
inline constexpr std::uint32_t syn_retransmitted = 1u << 17;  // Karn: no RTT sample from the handshake
inline constexpr std::uint32_t had_data_out = 1u << 18;       // something was ever sent (idle restart)
// application relationship
inline constexpr std::uint32_t app_owned = 1u << 19;    // the application holds the id (accepted / connected)
inline constexpr std::uint32_t orphan = 1u << 20;       // the application closed it: no more callbacks
inline constexpr std::uint32_t want_writable = 1u << 21;  // a send() was short: on_writable when space frees
inline constexpr std::uint32_t cookie = 1u << 22;       // established from a SYN cookie
inline constexpr std::uint32_t active_open = 1u << 23;  // we sent the first SYN
// events to deliver to the application (TcpLayer::notify)
inline constexpr std::uint32_t ev_established = 1u << 24;
inline constexpr std::uint32_t ev_readable = 1u << 25;
inline constexpr std::uint32_t ev_writable = 1u << 26;
inline constexpr std::uint32_t ev_timer = 1u << 27;
inline constexpr std::uint32_t counted_syn_rcvd = 1u << 28;  // counted in its listener's backlog
// memory
inline constexpr std::uint32_t sender = 1u << 29;     // counted in tcp.senders (bytes queued, or pool_wait)
inline constexpr std::uint32_t pool_wait = 1u << 30;  // on the layer's pool waiters (send found the pool empty)
}  // namespace tcb_flag

/// The buffers of a connection with data in flight or queued (see the top of the file).
struct TcbBuffers {
    ByteQueue send;          // [snd_una, snd_una + size): unacknowledged then unsent bytes (no SYN, no FIN)
    ByteQueue recv;          // in order, not yet read by the application
    ReassemblyQueue ooo;     // beyond rcv_nxt, waiting for a hole to fill
    SackScoreboard scoreboard;  // what the peer SACKed above snd_una
    wire::SeqNumber high_rxt;   // recovery: everything below was retransmitted (RFC 6675 HighRxt)
    wire::SeqNumber recover;    // NewReno's "recover" (RFC 6582): SND.MAX when recovery or a timeout began
    wire::SeqNumber rtt_seq;    // without timestamps: the segment being timed ends here (tcb_flag::rtt_timing)
    wire::SeqNumber rcv_fin;    // sequence number of the peer's out-of-order FIN (tcb_flag::fin_ooo)
    std::uint32_t next_free = 0;
};

struct Tcb {
    Tcb() noexcept;  // the timer's context is the block itself; `layer` is set by the layer
    Tcb(const Tcb&) = delete;
    Tcb& operator=(const Tcb&) = delete;

    core::Timer timer;  // at deadline[earliest armed slot]; context: this
    TcpLayer* layer = nullptr;  // the timer callback's way back
    FourTuple tuple;
    std::uint32_t generation = 0;  // ConnectionId check; bumped when the block is freed

    // Send sequence space (RFC 9293 3.3.1). snd_max: highest sequence sent; snd_nxt < snd_max after a timeout.
    wire::SeqNumber iss, snd_una, snd_nxt, snd_max, snd_wl1, snd_wl2;
    std::uint32_t snd_wnd = 0;      // the peer's window, scaled
    std::uint32_t max_snd_wnd = 0;  // largest window the peer offered (RFC 5961 5.2, SWS avoidance)
    // Receive sequence space. rcv_adv: right edge of the window we advertised (never moves left).
    wire::SeqNumber rcv_nxt, rcv_adv, last_ack_sent;
    std::uint32_t ts_recent = 0;  // RFC 7323 TS.Recent. Our TSval: SynCookies::timestamp_clock(now) plus
                                  // an offset of ISS (RFC 7323 5.4), or 0 for a cookie's connection
    std::uint32_t rtt_start = 0;  // ms tick our SYN / SYN-ACK or the timed segment (TcbBuffers::rtt_seq) left

    RttEstimator rtt;
    CongestionState cc;

    std::uint32_t deadline[timer_slots] = {};  // ms ticks, valid when the slot's bit is in `armed`
    std::uint32_t timer_at = 0;                // the tick `timer` is scheduled for, while it is armed
    union {
        std::uint32_t buffers = 0;  // in use: index + 1 into the buffer slab; 0: none attached
        std::uint32_t next_free;    // free: the free list's next block (index + 1; 0: end)
    };
    std::uint32_t flags = 0;                   // tcb_flag::*

    std::uint16_t snd_mss = 536;     // largest payload the peer accepts (its MSS option, capped by ours)
    std::uint16_t handler = 0;       // index into the layer's handler table
    union {
        std::uint16_t listener = 0;       // SYN_RECEIVED: the listener whose backlog counts it
        std::uint16_t keepalive_idle_s;   // once accepted: keep-alive idle time (set_keepalive)
    };
    std::uint16_t keepalive_interval_s = 0;
    TcpState state = TcpState::closed;
    std::uint8_t armed = 0;          // bit per TimerSlot
    std::uint8_t snd_wscale = 0;     // the peer's shift (applied to windows it sends)
    std::uint8_t rcv_wscale = 0;     // our shift (applied to windows we send)
    std::uint8_t dupacks = 0;
    std::uint8_t retries = 0;        // consecutive timeouts without progress (RTO, SYN, persist)
    std::uint8_t keepalive_probes = 0;     // sent since the peer was last heard
    std::uint8_t keepalive_count = 0;      // probes before giving up
};

}  // namespace cm::tcp

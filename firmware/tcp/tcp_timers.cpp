// TCP timers: one core::Timer per connection, multiplexed over four deadlines (tcb.hpp, TimerSlot).
//
//   retransmit  by state: SYN / SYN-ACK retransmission (SYN_SENT, SYN_RECEIVED); TIME_WAIT expiry;
//               FIN_WAIT_2 timeout of a closed connection; the persist timer (tcb_flag::persist: data waits
//               on a window too small to use and nothing is in flight); otherwise the RFC 6298 RTO.
//   delayed_ack RFC 1122 4.2.3.2 / RFC 5681 4.2 (TcpConfig::delayed_ack after the first unacked segment)
//   keepalive   RFC 1122 4.2.3.6: after `idle` without a segment from the peer, empty probes every
//               `interval`; `probes` unanswered ones reset the connection
//   user        the application's set_timer()
//
// Call order: TimerWheel::advance -> timer_callback -> on_timer: every due slot is disarmed and handled
// (which may free the connection: checked after each) -> reschedule at the earliest armed deadline ->
// notify (on_timer event) -> on_closed events. arm() only moves the wheel timer earlier; a later deadline
// leaves it where it is and the early firing re-arms it (so the per-ACK RTO restart costs no wheel work).
#include "tcp/tcp.hpp"

#include <algorithm>

namespace cm::tcp {

namespace {

constexpr std::uint8_t bit(TimerSlot slot)
{
    return static_cast<std::uint8_t>(1u << static_cast<unsigned>(slot));
}

/// `a` is earlier than `b` (wrap-safe ms ticks).
constexpr bool before(std::uint32_t a, std::uint32_t b)
{
    return static_cast<std::int32_t>(a - b) < 0;
}

std::uint32_t ceil_ms(Duration d)
{
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(std::max(d, Duration::zero())).count();
    return static_cast<std::uint32_t>(std::min<long long>(ms, 0x7fffffff));
}

}  // namespace

void TcpLayer::timer_callback(void* tcb)
{
    auto* t = static_cast<Tcb*>(tcb);
    t->layer->on_timer(*t);
}

void TcpLayer::arm(Tcb& t, TimerSlot slot, Duration delay)
{
    const std::uint32_t now = now_ms();
    const std::uint32_t at = now + ceil_ms(delay);
    t.deadline[static_cast<unsigned>(slot)] = at;
    t.armed |= bit(slot);
    if (!t.timer.armed() || before(at, t.timer_at)) {
        t.timer_at = at;
        _timers.schedule(t.timer, _clock.now() + std::chrono::milliseconds(static_cast<std::int32_t>(at - now)));
    }
}

void TcpLayer::disarm(Tcb& t, TimerSlot slot)
{
    t.armed &= static_cast<std::uint8_t>(~bit(slot));
    if (t.armed == 0) {
        t.timer.cancel();
    }
}

void TcpLayer::arm_retransmit(Tcb& t)
{
    arm(t, TimerSlot::retransmit, t.rtt.rto());
}

void TcpLayer::restart_keepalive(Tcb& t)
{
    if ((t.flags & tcb_flag::keepalive) == 0) {
        return;
    }
    t.keepalive_probes = 0;
    arm(t, TimerSlot::keepalive, std::chrono::seconds(t.keepalive_idle_s));
}

void TcpLayer::reschedule(Tcb& t)
{
    if (t.armed == 0) {
        t.timer.cancel();
        return;
    }
    bool have = false;
    std::uint32_t earliest = 0;
    for (unsigned slot = 0; slot < timer_slots; ++slot) {
        if ((t.armed & (1u << slot)) != 0 && (!have || before(t.deadline[slot], earliest))) {
            earliest = t.deadline[slot];
            have = true;
        }
    }
    const std::uint32_t now = now_ms();
    if (t.timer.armed() && !before(earliest, t.timer_at)) {
        return;
    }
    t.timer_at = earliest;
    const std::int32_t delta = std::max<std::int32_t>(0, static_cast<std::int32_t>(earliest - now));
    _timers.schedule(t.timer, _clock.now() + std::chrono::milliseconds(delta));
}

void TcpLayer::on_timer(Tcb& t)
{
    const std::uint32_t generation = t.generation;
    const std::uint32_t now = now_ms();
    const auto alive = [&] { return t.generation == generation && t.state != TcpState::closed; };
    for (unsigned slot = 0; slot < timer_slots && alive(); ++slot) {
        const auto s = static_cast<TimerSlot>(slot);
        if ((t.armed & bit(s)) == 0 || before(now, t.deadline[slot])) {
            continue;
        }
        t.armed &= static_cast<std::uint8_t>(~bit(s));
        switch (s) {
        case TimerSlot::retransmit:
            retransmit_timeout(t);
            break;
        case TimerSlot::delayed_ack:
            if (t.last_ack_sent != t.rcv_nxt) {
                ++_counters.tx_delayed_acks;
                request_output(t, tcb_flag::ack_now);
            }
            break;
        case TimerSlot::keepalive:
            keepalive_timeout(t);
            break;
        case TimerSlot::user:
            t.flags |= tcb_flag::ev_timer;
            break;
        }
    }
    if (alive()) {
        reschedule(t);
        notify(t);
    }
    deliver_closed_events();
}

void TcpLayer::retransmit_timeout(Tcb& t)
{
    switch (t.state) {
    case TcpState::time_wait:
        if ((t.flags & tcb_flag::app_owned) != 0 && (t.flags & tcb_flag::orphan) == 0 && recv_queued(t) > 0) {
            arm(t, TimerSlot::retransmit, _config.time_wait);  // the application has not read everything yet
            return;
        }
        ++_counters.time_wait_expired;
        destroy(t, CloseReason::normal);
        return;
    case TcpState::fin_wait_2:
        if ((t.flags & tcb_flag::orphan) != 0) {
            ++_counters.fin_wait2_timeouts;
            destroy(t, CloseReason::normal);
        }
        return;
    case TcpState::syn_sent:
    case TcpState::syn_received:
        if (++t.retries > _config.syn_retries) {
            if (t.state == TcpState::syn_received) {
                ++_counters.syn_ack_timeouts;
            }
            destroy(t, CloseReason::timed_out);
            return;
        }
        ++_counters.syn_retransmits;
        t.rtt.back_off();
        t.flags |= tcb_flag::syn_retransmitted;
        arm(t, TimerSlot::retransmit, t.rtt.rto());
        request_output(t, tcb_flag::send_syn);
        return;
    default:
        break;
    }
    if ((t.flags & tcb_flag::persist) != 0) {
        persist_timeout(t);
        return;
    }
    if (t.snd_una == t.snd_max) {
        return;  // everything was acknowledged meanwhile
    }
    if (++t.retries > _config.max_retries) {
        ++_counters.retransmit_timeouts;
        send_reset(t);
        destroy(t, CloseReason::timed_out);
        return;
    }
    // RFC 6298 5.4-5.7 and RFC 5681 3.1: back off, collapse cwnd, go back to SND.UNA. The SACK scoreboard is
    // cleared (RFC 2018 8: the receiver may have reneged), recovery ends.
    ++_counters.rto_timeouts;
    if (t.retries == 1) {
        cc_on_rto(t.cc, _config.congestion, smss(t), static_cast<std::uint32_t>(t.snd_max - t.snd_una), _clock.now());
    } else {
        // The same segment timing out again: ssthresh stays where the first timeout put it (RFC 5681 3.1,
        // equation 4 applies to the first retransmission only); cwnd stays at one segment.
        cc_on_rto_repeat(t.cc, smss(t));
    }
    t.rtt.back_off();
    t.flags &= ~(tcb_flag::in_recovery | tcb_flag::rtt_timing | tcb_flag::rtx_head);
    t.dupacks = 0;
    t.snd_nxt = t.snd_una;
    if (TcbBuffers* b = buffers(t)) {
        b->scoreboard.reset(t.snd_una);
        b->high_rxt = t.snd_una;
        b->recover = t.snd_max;
    }
    arm_retransmit(t);
    request_output(t);
}

void TcpLayer::persist_timeout(Tcb& t)
{
    const std::size_t queued = send_queued(t);
    const bool waiting = (t.snd_una + queued) > t.snd_nxt && t.snd_una == t.snd_max;
    if (!waiting) {
        t.flags &= ~tcb_flag::persist;
        if (t.snd_una != t.snd_max) {
            arm_retransmit(t);
        }
        return;
    }
    // RFC 9293 3.8.6.1: probe, back off, and keep probing as long as the peer answers. A connection the
    // application has closed is not kept forever by a peer that never opens its window (Linux bounds
    // orphans the same way): max_retries probes, then a reset.
    if ((t.flags & tcb_flag::orphan) != 0 && ++t.retries > _config.max_retries) {
        ++_counters.retransmit_timeouts;
        send_reset(t);
        destroy(t, CloseReason::timed_out);
        return;
    }
    t.rtt.back_off();
    arm(t, TimerSlot::retransmit, std::min(t.rtt.rto(), _config.persist_max));
    request_output(t, tcb_flag::send_probe);
}

void TcpLayer::keepalive_timeout(Tcb& t)
{
    if ((t.flags & tcb_flag::keepalive) == 0) {
        return;
    }
    switch (t.state) {
    case TcpState::established:
    case TcpState::close_wait:
    case TcpState::fin_wait_2:
        break;
    default:
        return;
    }
    if (t.snd_una != t.snd_max || send_queued(t) > 0) {
        // Data is outstanding or waiting: the retransmission or persist timer watches the peer.
        arm(t, TimerSlot::keepalive, std::chrono::seconds(t.keepalive_idle_s));
        return;
    }
    if (t.keepalive_probes >= t.keepalive_count) {
        ++_counters.keepalive_timeouts;
        send_reset(t);
        destroy(t, CloseReason::keepalive_timeout);
        return;
    }
    ++t.keepalive_probes;
    arm(t, TimerSlot::keepalive, std::chrono::seconds(t.keepalive_interval_s));
    request_output(t, tcb_flag::send_keepalive);
}

}  // namespace cm::tcp

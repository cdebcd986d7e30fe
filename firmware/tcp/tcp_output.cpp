// TCP output: what a connection sends, and how each segment is built.
//
// Call order:
//   flush (tcp_layer.cpp; the loop calls it after input and timers, before the link flushes)
//     -> output(t, budget) for each connection on the pending list, in the order they asked:
//          SYN / SYN-ACK (send_syn) -> zero-window probe / keep-alive (empty segment at SND.UNA - 1)
//          -> output_data: 1. the segment at SND.UNA (rtx_head: fast retransmit, NewReno partial ACK)
//                          2. SACK holes below the highest SACKed byte while pipe < cwnd (RFC 6675)
//                          3. new data from SND.NXT within min(cwnd, peer window), Nagle and sender SWS
//                             avoidance (RFC 9293 3.8.6.2.1), FIN on the last segment
//                          4. a bare FIN; the persist timer when data waits on a closed window
//          -> a pure ACK if nothing else carried one and one is due (ack_now, window update)
//        -> transmit(t, seq, len, flags): TcpRepr with window (advertise_window), timestamps, SACK blocks
//           from the reassembly queue, payload peeked from the send queue straight into the interface's
//           ipv4_payload() scratch -> emit_segment -> NetworkInterface::send_ipv4
// Direct sends that bypass the pending list: send_reset_for (no connection), send_reset (abort), the
// cookie SYN-ACK (tcp_input.cpp). Every segment that carries an ACK clears ack_now and the delayed ACK.
#include "tcp/segment.hpp"

#include "wire/ipv4.hpp"

#include <algorithm>

namespace cm::tcp {

using wire::SeqNumber;
using wire::TcpRepr;
namespace flag = wire::tcp_flags;

namespace {
constexpr std::size_t ts_option_len = 12;  // NOP, NOP, TS(10), as emit() lays it out
}

bool TcpLayer::emit_segment(const FourTuple& tuple, TcpRepr& repr)
{
    wire::MutableBytes out = _interface.ipv4_payload();
    const std::size_t len = repr.buffer_len();
    if (len > out.size()) {
        ++_counters.tx_failed;
        return false;
    }
    repr.emit(out.first(len), tuple.local_ip, tuple.remote_ip);
    wire::Ipv4Repr ip{};
    ip.destination = tuple.remote_ip;
    ip.protocol = wire::ip_protocol::tcp;
    ip.ttl = 64;
    ip.dont_fragment = true;
    ip.payload_len = static_cast<std::uint16_t>(len);
    ++_counters.tx_segments;
    if ((repr.flags & flag::rst) != 0) {
        ++_counters.tx_rst;
    }
    if (!_interface.send_ipv4(ip)) {
        ++_counters.tx_failed;
        return false;
    }
    return true;
}

void TcpLayer::send_reset_for(const Segment& seg)
{
    if (seg.rst) {
        return;  // never answer a RST with a RST
    }
    TcpRepr r{};
    r.source_port = seg.tuple.local_port;
    r.destination_port = seg.tuple.remote_port;
    if (seg.has_ack) {
        r.sequence = seg.ack;
        r.flags = flag::rst;
    } else {
        r.sequence = SeqNumber{0};
        r.acknowledgment = seg.seq + seg.seq_len;
        r.flags = flag::rst | flag::ack;
    }
    emit_segment(seg.tuple, r);
}

void TcpLayer::send_reset(Tcb& t)
{
    TcpRepr r{};
    r.source_port = t.tuple.local_port;
    r.destination_port = t.tuple.remote_port;
    r.sequence = t.snd_nxt;
    r.acknowledgment = t.rcv_nxt;
    r.flags = flag::rst | flag::ack;
    emit_segment(t.tuple, r);
}

std::uint32_t TcpLayer::receive_space(const Tcb& t) const
{
    const std::size_t used = recv_queued(t);
    std::size_t space = _config.recv_buffer > used ? _config.recv_buffer - used : 0;
    // The window follows the card's free memory too: never promise more than the pool could hold now.
    const std::size_t pool_bytes = _pool.available() * _pool.chunk_size();
    space = std::min(space, pool_bytes);
    return static_cast<std::uint32_t>(space);
}

std::uint16_t TcpLayer::advertise_window(Tcb& t, bool syn)
{
    const std::uint32_t space = receive_space(t);
    const std::uint32_t current = static_cast<std::uint32_t>(std::max(0, t.rcv_adv - t.rcv_nxt));
    // Receiver SWS avoidance (RFC 9293 3.8.6.2.2): move the right edge only by a worthwhile amount, and
    // never move it left (the window may shrink only as data arrives).
    const std::uint32_t step = std::min<std::uint32_t>(_config.recv_buffer / 2, t.snd_mss);
    std::uint32_t window = space >= current + step ? space : current;
    std::uint16_t field = 0;
    if (syn) {
        window = std::min<std::uint32_t>(window, 0xffff);
        field = static_cast<std::uint16_t>(window);
    } else {
        const std::uint32_t unit = 1u << t.rcv_wscale;
        const std::uint32_t scaled = (window + unit - 1) >> t.rcv_wscale;  // round up: never below `current`
        field = static_cast<std::uint16_t>(std::min<std::uint32_t>(scaled, 0xffff));
        window = static_cast<std::uint32_t>(field) << t.rcv_wscale;
    }
    if (t.rcv_nxt + window > t.rcv_adv) {
        t.rcv_adv = t.rcv_nxt + window;
    }
    return field;
}

bool TcpLayer::window_update_due(const Tcb& t) const
{
    if (!receiving(t.state)) {
        return false;  // the peer has sent its FIN (or we are not synchronized): its window use is over
    }
    const std::uint32_t space = receive_space(t);
    const std::uint32_t current = static_cast<std::uint32_t>(std::max(0, t.rcv_adv - t.rcv_nxt));
    const std::uint32_t step = std::min<std::uint32_t>(_config.recv_buffer / 2, t.snd_mss);
    // Worth an ACK of its own when the window at least doubles, or grows from (nearly) closed.
    return space >= current + step && (space >= 2 * current || current < 2u * t.snd_mss);
}

std::size_t TcpLayer::max_payload(const Tcb& t) const
{
    std::size_t options = (t.flags & tcb_flag::ts_ok) != 0 ? ts_option_len : 0;
    if ((t.flags & tcb_flag::sack_ok) != 0) {
        if (const TcbBuffers* b = buffers(t); b != nullptr && !b->ooo.empty()) {
            const std::size_t blocks = std::min<std::size_t>(b->ooo.range_count(), options != 0 ? 3 : 4);
            options += 4 + 8 * blocks;
        }
    }
    options = std::min<std::size_t>(options, TcpRepr::max_options_len);
    const std::size_t by_mss = t.snd_mss > options ? t.snd_mss - options : 1;
    const std::size_t by_mtu = stack::NetworkInterface::max_ipv4_payload - 20 - options;
    return std::min(by_mss, by_mtu);
}

long TcpLayer::transmit(Tcb& t, SeqNumber seq, std::size_t len, std::uint8_t flags)
{
    TcpRepr r{};
    r.source_port = t.tuple.local_port;
    r.destination_port = t.tuple.remote_port;
    r.sequence = seq;
    r.flags = flags;
    const bool syn = (flags & flag::syn) != 0;
    if ((flags & flag::ack) != 0) {
        r.acknowledgment = t.rcv_nxt;
    }
    r.window = advertise_window(t, syn);
    const bool offering = t.state == TcpState::syn_sent;  // our SYN offers; a SYN-ACK only answers
    if (syn) {
        r.mss = _config.mss;
        if (offering ? _config.window_scaling : (t.flags & tcb_flag::ws_ok) != 0) {
            r.window_scale = t.rcv_wscale;
        }
        r.sack_permitted = offering ? _config.sack : (t.flags & tcb_flag::sack_ok) != 0;
        if (offering ? _config.timestamps : (t.flags & tcb_flag::ts_ok) != 0) {
            r.timestamps = wire::TcpTimestamps{tsval(t), offering ? 0u : t.ts_recent};
        }
    } else if ((t.flags & tcb_flag::ts_ok) != 0) {
        r.timestamps = wire::TcpTimestamps{tsval(t), t.ts_recent};
    }
    TcbBuffers* b = buffers(t);
    if (!syn && (t.flags & tcb_flag::sack_ok) != 0 && b != nullptr && !b->ooo.empty()) {
        const std::size_t max_blocks = r.timestamps ? 3 : 4;
        r.sack_count = static_cast<std::uint8_t>(
            b->ooo.sack_blocks(std::span<wire::SackBlock>(r.sack_blocks.data(), max_blocks)));
    }
    const std::size_t header_len = r.header_len();
    wire::MutableBytes out = _interface.ipv4_payload();
    const std::size_t options = header_len - wire::TcpView::min_header_len;
    const std::size_t room = std::min<std::size_t>(out.size() - header_len, t.snd_mss > options ? t.snd_mss - options : 1);
    std::size_t carried = std::min(len, room);
    if (carried > 0) {
        carried = b == nullptr ? 0 : b->send.peek(static_cast<std::size_t>(seq - t.snd_una), out.subspan(header_len, carried));
        r.payload = out.subspan(header_len, carried);
    }
    if (carried < len) {
        r.flags &= static_cast<std::uint8_t>(~(flag::fin | flag::psh));  // FIN only behind the last byte
    }
    emit_segment(t.tuple, r);
    if (carried > 0) {
        ++_counters.tx_data_segments;
        _counters.tx_data_bytes += carried;
        t.flags |= tcb_flag::had_data_out;
    } else if ((r.flags & (flag::syn | flag::fin | flag::rst)) == 0) {
        ++_counters.tx_acks;
    }
    if ((r.flags & flag::ack) != 0) {
        t.last_ack_sent = t.rcv_nxt;
        t.flags &= ~tcb_flag::ack_now;
        disarm(t, TimerSlot::delayed_ack);
    }
    return static_cast<long>(carried);
}

std::uint32_t TcpLayer::pipe(const Tcb& t, const TcbBuffers& b) const
{
    // RFC 6675 4 (simplified): bytes in flight = outstanding - SACKed - holes not yet retransmitted
    // (the holes below the highest SACKed byte are taken as lost; those below HighRxt are in flight again).
    const std::uint32_t outstanding = static_cast<std::uint32_t>(t.snd_max - t.snd_una);
    std::uint32_t lost = 0;
    SeqNumber from = b.high_rxt < t.snd_una ? t.snd_una : b.high_rxt;
    for (int guard = 0; guard < 32; ++guard) {
        const auto hole = b.scoreboard.next_hole(from);
        if (!hole || hole->first >= t.snd_max) {
            break;
        }
        lost += static_cast<std::uint32_t>(hole->second - hole->first);
        from = hole->second;
    }
    const std::uint32_t gone = b.scoreboard.sacked_bytes() + lost;
    return outstanding > gone ? outstanding - gone : 0;
}

std::size_t TcpLayer::output(Tcb& t, std::size_t budget)
{
    std::size_t sent = 0;
    if ((t.flags & tcb_flag::send_syn) != 0) {
        t.flags &= ~tcb_flag::send_syn;
        if (t.state == TcpState::syn_sent || t.state == TcpState::syn_received) {
            const std::uint8_t flags = t.state == TcpState::syn_sent ? flag::syn : (flag::syn | flag::ack);
            transmit(t, t.iss, 0, flags);
            if (t.snd_nxt == t.iss) {
                t.snd_nxt = t.iss + 1;
            }
            if (t.snd_max < t.snd_nxt) {
                t.snd_max = t.snd_nxt;
            }
            if ((t.armed & (1u << static_cast<unsigned>(TimerSlot::retransmit))) == 0) {
                arm(t, TimerSlot::retransmit, t.rtt.rto());
            }
            return 1;
        }
    }
    switch (t.state) {
    case TcpState::syn_sent:
    case TcpState::syn_received:
        t.flags &= ~tcb_flag::ack_now;
        return 0;  // nothing but the SYN until synchronized
    default:
        break;
    }
    if ((t.flags & (tcb_flag::send_probe | tcb_flag::send_keepalive)) != 0 && sent < budget) {
        const bool probe = (t.flags & tcb_flag::send_probe) != 0;
        t.flags &= ~(tcb_flag::send_probe | tcb_flag::send_keepalive);
        if (probe && t.snd_wnd > 0) {
            // The persist timer fired on a window too small for sender SWS avoidance: send what fits.
            const std::size_t queued = send_queued(t);
            const std::int32_t unsent = (t.snd_una + queued) - t.snd_nxt;
            const std::int32_t room = (t.snd_una + t.snd_wnd) - t.snd_nxt;
            const std::size_t len = static_cast<std::size_t>(std::max(0, std::min({unsent, room})));
            if (len > 0) {
                const long n = transmit(t, t.snd_nxt, std::min(len, max_payload(t)), flag::ack | flag::psh);
                t.snd_nxt += static_cast<std::uint32_t>(n);
                if (t.snd_max < t.snd_nxt) {
                    t.snd_max = t.snd_nxt;
                }
                ++sent;
            }
        } else {
            // RFC 9293 3.8.6.1 / RFC 1122 4.2.2.17: an empty segment below the window makes the peer ACK
            // with its current window (Linux probes the same way, for zero windows and keep-alives).
            transmit(t, t.snd_una - 1, 0, flag::ack);
            if (probe) {
                ++_counters.zero_window_probes;
            } else {
                ++_counters.keepalive_probes;
            }
            ++sent;
        }
    }
    switch (t.state) {
    case TcpState::established:
    case TcpState::close_wait:
    case TcpState::fin_wait_1:
    case TcpState::closing:
    case TcpState::last_ack:
        if (sent < budget) {
            sent += output_data(t, budget - sent);
        }
        break;
    default:
        break;
    }
    if (sent == 0 && ((t.flags & tcb_flag::ack_now) != 0 || window_update_due(t))) {
        if ((t.flags & tcb_flag::ack_now) == 0) {
            ++_counters.tx_window_updates;
        }
        transmit(t, t.snd_nxt, 0, flag::ack);
        ++sent;
    }
    return sent;
}

std::size_t TcpLayer::output_data(Tcb& t, std::size_t budget)
{
    TcbBuffers* b = buffers(t);
    const std::size_t queued = send_queued(t);
    const SeqNumber data_end = t.snd_una + queued;  // the FIN, when queued, is at data_end
    const bool fin_queued = (t.flags & tcb_flag::fin_queued) != 0;
    const std::size_t mss = max_payload(t);
    const bool sack_recovery = (t.flags & (tcb_flag::in_recovery | tcb_flag::sack_ok)) ==
                                   (tcb_flag::in_recovery | tcb_flag::sack_ok) &&
                               b != nullptr;
    std::size_t sent = 0;
    const auto after_send = [&]() {
        if ((t.armed & (1u << static_cast<unsigned>(TimerSlot::retransmit))) == 0 ||
            (t.flags & tcb_flag::persist) != 0) {
            t.flags &= ~tcb_flag::persist;
            arm_retransmit(t);
        }
        ++sent;
    };

    // 1. The segment at SND.UNA: fast retransmit, or the next hole after a NewReno partial ACK.
    if ((t.flags & tcb_flag::rtx_head) != 0) {
        t.flags &= ~tcb_flag::rtx_head;
        if (t.snd_max > t.snd_una && sent < budget) {
            const std::size_t avail = static_cast<std::size_t>(std::max(0, data_end - t.snd_una));
            const std::size_t len = std::min(avail, mss);
            const bool fin = fin_queued && len == avail && t.snd_max > data_end;
            const long n = transmit(t, t.snd_una, len, flag::ack | (fin ? flag::fin : 0));
            ++_counters.retransmits;
            _counters.retransmitted_bytes += static_cast<std::uint64_t>(n);
            if (b != nullptr && b->high_rxt < t.snd_una + static_cast<std::uint32_t>(n)) {
                b->high_rxt = t.snd_una + static_cast<std::uint32_t>(n);
            }
            t.flags &= ~tcb_flag::rtt_timing;
            after_send();
        }
    }

    // 2. SACK recovery: resend the holes the scoreboard shows, while the pipe has room (RFC 6675 5).
    if (sack_recovery) {
        while (sent < budget && pipe(t, *b) + mss <= t.cc.cwnd) {
            const SeqNumber from = b->high_rxt < t.snd_una ? t.snd_una : b->high_rxt;
            const auto hole = b->scoreboard.next_hole(from);
            if (!hole || hole->first >= t.snd_max || hole->first >= data_end) {
                break;
            }
            const std::size_t len = std::min<std::size_t>(
                {static_cast<std::size_t>(hole->second - hole->first), mss,
                 static_cast<std::size_t>(data_end - hole->first)});
            const long n = transmit(t, hole->first, len, flag::ack);
            if (n <= 0) {
                break;
            }
            b->high_rxt = hole->first + static_cast<std::uint32_t>(n);
            ++_counters.retransmits;
            ++_counters.sack_retransmits;
            _counters.retransmitted_bytes += static_cast<std::uint64_t>(n);
            after_send();
        }
    }

    // 3. Data from SND.NXT (new, or again after a timeout pulled SND.NXT back). After more than an RTO with
    // nothing in flight, cwnd restarts from the initial window (RFC 5681 4.1): the ACK clock has stopped.
    // The quiet period began when the last ACK disarmed the retransmit slot and left "an RTO later" in it.
    constexpr unsigned rtx = static_cast<unsigned>(TimerSlot::retransmit);
    if (t.snd_una == t.snd_max && data_end > t.snd_nxt && (t.flags & tcb_flag::had_data_out) != 0 &&
        (t.armed & (1u << rtx)) == 0 && static_cast<std::int32_t>(now_ms() - t.deadline[rtx]) >= 0) {
        cc_on_idle_restart(t.cc, _config.congestion, smss(t));
    }
    while (sent < budget) {
        const std::int32_t unsent = data_end - t.snd_nxt;
        if (unsent <= 0) {
            break;
        }
        std::int64_t in_flight = t.snd_nxt - t.snd_una;
        if (sack_recovery) {
            in_flight = pipe(t, *b);
        }
        const std::int64_t cwnd_room = static_cast<std::int64_t>(t.cc.cwnd) - in_flight;
        const std::int64_t window_room = (t.snd_una + t.snd_wnd) - t.snd_nxt;
        const std::int64_t usable = std::min(cwnd_room, window_room);
        std::size_t len = static_cast<std::size_t>(std::max<std::int64_t>(0, std::min<std::int64_t>(
                                                       {static_cast<std::int64_t>(unsent), static_cast<std::int64_t>(mss), usable})));
        if (len == 0) {
            break;
        }
        if (len < mss && len < static_cast<std::size_t>(unsent)) {
            // A partial segment: when the peer's window limits it, sender SWS avoidance sends it only if it is
            // at least half the largest window the peer ever offered (RFC 9293 3.8.6.2.1; the persist timer
            // covers the rest); when cwnd limits it, the ACKs in flight will make room for a full one.
            if (cwnd_room < window_room || len < t.max_snd_wnd / 2) {
                break;  // cwnd-limited: ACKs in flight will open a full segment
            }
        }
        const bool retransmission = t.snd_nxt < t.snd_max;
        if (len == static_cast<std::size_t>(unsent) && len < mss && !retransmission) {
            // Nagle (RFC 896, RFC 9293 3.7.4): a small tail waits while data is unacknowledged, unless the
            // application turned it off or is closing.
            if ((t.flags & tcb_flag::nodelay) == 0 && t.snd_max > t.snd_una && !fin_queued) {
                break;
            }
        }
        const bool last = len == static_cast<std::size_t>(unsent);
        const bool fin = fin_queued && last;
        const long n = transmit(t, t.snd_nxt, len, flag::ack | (last ? flag::psh : 0) | (fin ? flag::fin : 0));
        if (n <= 0) {
            break;
        }
        if (retransmission) {
            ++_counters.retransmits;
            _counters.retransmitted_bytes += static_cast<std::uint64_t>(n);
        } else if ((t.flags & (tcb_flag::rtt_timing | tcb_flag::ts_ok)) == 0 && b != nullptr) {
            t.flags |= tcb_flag::rtt_timing;
            b->rtt_seq = t.snd_nxt + static_cast<std::uint32_t>(n);
            t.rtt_start = now_ms();
        }
        t.snd_nxt += static_cast<std::uint32_t>(n);
        if (fin && static_cast<std::size_t>(n) == len) {
            t.snd_nxt += 1u;
        }
        if (t.snd_max < t.snd_nxt) {
            t.snd_max = t.snd_nxt;
        }
        after_send();
    }

    // 4. A FIN on its own, once every byte before it has been sent (or again after a timeout).
    if (fin_queued && t.snd_nxt == data_end && sent < budget) {
        const bool retransmission = t.snd_max > data_end;
        transmit(t, t.snd_nxt, 0, flag::ack | flag::fin);
        if (retransmission) {
            ++_counters.retransmits;
        }
        t.snd_nxt += 1u;
        if (t.snd_max < t.snd_nxt) {
            t.snd_max = t.snd_nxt;
        }
        after_send();
    }

    // Data waits but nothing is in flight to bring an ACK: the persist timer probes the window.
    if (data_end > t.snd_nxt && t.snd_una == t.snd_max &&
        (t.armed & (1u << static_cast<unsigned>(TimerSlot::retransmit))) == 0) {
        t.flags |= tcb_flag::persist;
        arm(t, TimerSlot::retransmit, std::min(t.rtt.rto(), _config.persist_max));
    }
    return sent;
}

}  // namespace cm::tcp

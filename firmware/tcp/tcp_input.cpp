// TCP input: from an IPv4 payload to the connection's state, queues and events (RFC 9293 3.10.7).
//
// Call order:
//   on_ipv4_packet   check lengths, checksum and options (TcpView/TcpRepr), drop broadcasts and port 0
//     -> table lookup by 4-tuple
//        found, SYN_SENT     -> syn_sent_input (3.10.7.3)
//        found, otherwise    -> segment_arrives (3.10.7.4):
//                                 PAWS (RFC 7323 5.3) -> sequence acceptable? -> RST (RFC 5961 3) ->
//                                 SYN (RFC 5961 4) -> ACK (RFC 5961 5; process_ack: SND.UNA, RTT, cwnd,
//                                 dupacks, recovery, SACK scoreboard, window update, FIN acked) ->
//                                 data (process_data: trim, in order / reassembly, delayed ACK) ->
//                                 FIN (process_fin)
//        not found, listener -> listen_input: SYN -> backlog (syn_to_listener) or SYN cookie;
//                                 ACK -> cookie_ack_to_listener; anything else dropped or RST
//        not found           -> RST (send_reset_for), never in answer to a RST
//     -> notify (application callbacks: accept, readable, writable), then on_closed events
// Nothing here sends data: replies are requested with request_output() and leave at flush(); only
// answers to segments without a connection (RST, cookie SYN-ACK) are sent at once.
#include "tcp/segment.hpp"

#include "wire/ipv4.hpp"

#include <algorithm>

namespace cm::tcp {

using wire::SeqNumber;
using wire::TcpRepr;
using wire::TcpView;
namespace flag = wire::tcp_flags;

void TcpLayer::on_ipv4_packet(const stack::Ipv4PacketInfo& info, wire::Bytes payload)
{
    ++_counters.rx_segments;
    const auto view = TcpView::check(payload);
    if (!view) {
        if (view.error() == wire::WireError::bad_header_length) {
            ++_counters.rx_bad_header_length;
        } else {
            ++_counters.rx_truncated;
        }
        return;
    }
    if (info.to_broadcast) {
        ++_counters.rx_broadcast;
        return;
    }
    const auto parsed = TcpRepr::parse(*view, info.header.source, info.header.destination);
    if (!parsed) {
        if (parsed.error() == wire::WireError::bad_checksum) {
            ++_counters.rx_bad_checksum;
        } else {
            ++_counters.rx_malformed_options;
        }
        return;
    }
    Segment seg;
    seg.repr = *parsed;
    const TcpRepr& r = seg.repr;
    if (r.source_port == 0 || r.destination_port == 0) {
        ++_counters.rx_bad_ports;
        return;
    }
    seg.tuple = FourTuple{info.header.destination, info.header.source, r.destination_port, r.source_port};
    seg.seq = r.sequence;
    seg.ack = r.acknowledgment;
    seg.syn = (r.flags & flag::syn) != 0;
    seg.fin = (r.flags & flag::fin) != 0;
    seg.rst = (r.flags & flag::rst) != 0;
    seg.has_ack = (r.flags & flag::ack) != 0;
    seg.len = static_cast<std::uint32_t>(r.payload.size());
    seg.seq_len = static_cast<std::uint32_t>(r.sequence_len());
    if (seg.syn && (seg.fin || seg.rst)) {
        ++_counters.rx_bad_flags;
        return;
    }

    const std::uint32_t index = _table.find(seg.tuple);
    const std::uint16_t listener_slot = _listener_by_port[seg.tuple.local_port];
    if (index != ConnectionTable::none) {
        Tcb& t = _tcbs[index];
        // RFC 6191-style reuse: a new SYN for a tuple in TIME_WAIT, above the old incarnation's sequence
        // space (or with a newer timestamp), ends the TIME_WAIT and goes to the listener.
        if (t.state == TcpState::time_wait && seg.syn && !seg.has_ack && listener_slot != 0) {
            const bool newer_ts = (t.flags & tcb_flag::ts_ok) != 0 && r.timestamps &&
                                  static_cast<std::int32_t>(r.timestamps->value - t.ts_recent) > 0;
            if (seg.seq > t.rcv_nxt || newer_ts) {
                ++_counters.time_wait_reused;
                destroy(t, CloseReason::normal);
                listen_input(_listeners[listener_slot - 1], seg);
                deliver_closed_events();
                return;
            }
        }
        const std::uint32_t generation = t.generation;
        if (t.state == TcpState::syn_sent) {
            syn_sent_input(t, seg);
        } else {
            segment_arrives(t, seg);
        }
        if (t.generation == generation && t.state != TcpState::closed) {
            notify(t);
        }
        if (t.generation == generation && t.state != TcpState::closed) {
            maybe_release_buffers(t);
        }
    } else if (listener_slot != 0) {
        listen_input(_listeners[listener_slot - 1], seg);
    } else {
        ++_counters.rx_no_connection;
        send_reset_for(seg);
    }
    deliver_closed_events();
}

// ---- LISTEN ----------------------------------------------------------------------------------------------

void TcpLayer::listen_input(Listener& listener, const Segment& seg)
{
    if (seg.rst) {
        ++_counters.rx_listen_dropped;  // RFC 9293: a RST to a listener is ignored
        return;
    }
    if (seg.has_ack) {
        if (!seg.syn) {
            cookie_ack_to_listener(listener, seg);
            return;
        }
        ++_counters.rx_listen_dropped;
        send_reset_for(seg);  // SYN+ACK to a listener
        return;
    }
    if (!seg.syn) {
        ++_counters.rx_listen_dropped;
        return;
    }
    syn_to_listener(listener, seg);
}

void TcpLayer::negotiate_options(Tcb& t, const Segment& seg)
{
    const TcpRepr& r = seg.repr;
    std::uint16_t peer_mss = r.mss.value_or(536);
    if (peer_mss < 64) {
        peer_mss = 536;  // an absurd MSS: fall back to the RFC 9293 default
    }
    t.snd_mss = std::min(peer_mss, _config.mss);
    if (_config.window_scaling && r.window_scale) {
        t.flags |= tcb_flag::ws_ok;
        t.snd_wscale = std::min<std::uint8_t>(*r.window_scale, 14);
        t.rcv_wscale = _rcv_wscale;
    } else {
        t.snd_wscale = 0;
        t.rcv_wscale = 0;
    }
    if (_config.sack && r.sack_permitted) {
        t.flags |= tcb_flag::sack_ok;
    }
    if (_config.timestamps && r.timestamps) {
        t.flags |= tcb_flag::ts_ok;
        t.ts_recent = r.timestamps->value;
    }
}

void TcpLayer::syn_to_listener(Listener& listener, const Segment& seg)
{
    ++_counters.rx_syn;
    const TcpRepr& r = seg.repr;
    Tcb* t = nullptr;
    if (listener.syn_received >= listener.backlog) {
        ++_counters.syn_backlog_overflow;
    } else {
        t = allocate(seg.tuple);
        if (t == nullptr) {
            ++_counters.syn_backlog_overflow;
        }
    }
    if (t == nullptr) {
        if (!_config.syn_cookies) {
            ++_counters.syn_dropped;
            return;
        }
        // Stateless answer (RFC 4987 3.6): everything we must remember rides in our ISN and TSval.
        SynCookieOptions options;
        options.mss = r.mss.value_or(536);
        options.timestamps = _config.timestamps && r.timestamps.has_value();
        if (options.timestamps) {
            if (_config.window_scaling && r.window_scale) {
                options.window_scale = std::min<std::uint8_t>(*r.window_scale, 14);
            }
            options.sack_permitted = _config.sack && r.sack_permitted;
        }
        std::uint32_t cookie_tsval = 0;
        const SeqNumber isn = _cookies.encode(seg.tuple, seg.seq, options, _clock.now(), &cookie_tsval);
        TcpRepr answer{};
        answer.source_port = seg.tuple.local_port;
        answer.destination_port = seg.tuple.remote_port;
        answer.sequence = isn;
        answer.acknowledgment = seg.seq + 1;
        answer.flags = flag::syn | flag::ack;
        answer.window = static_cast<std::uint16_t>(std::min<std::uint32_t>(_config.recv_buffer, 0xffff));
        answer.mss = _config.mss;
        if (options.timestamps) {
            answer.timestamps = wire::TcpTimestamps{cookie_tsval, r.timestamps->value};
            if (options.window_scale) {
                answer.window_scale = _rcv_wscale;
            }
            answer.sack_permitted = options.sack_permitted;
        }
        if (emit_segment(seg.tuple, answer)) {
            ++_counters.syn_cookies_sent;
        }
        return;
    }
    t->handler = listener.handler;
    t->listener = static_cast<std::uint16_t>(&listener - _listeners.data());
    t->flags |= tcb_flag::counted_syn_rcvd;
    ++listener.syn_received;
    t->iss = _isn.generate(seg.tuple, _clock.now());
    t->snd_una = t->snd_nxt = t->snd_max = t->iss;
    t->rcv_nxt = seg.seq + 1;
    t->last_ack_sent = t->rcv_nxt;
    negotiate_options(*t, seg);
    t->snd_wnd = r.window;        // never scaled in a SYN
    t->max_snd_wnd = t->snd_wnd;
    t->snd_wl1 = seg.seq;
    t->snd_wl2 = t->iss;
    t->rcv_adv = t->rcv_nxt + std::min<std::uint32_t>(receive_space(*t), 0xffff);
    cc_init(t->cc, _config.congestion, smss(*t));
    t->rtt_start = now_ms();
    set_state(*t, TcpState::syn_received);
    arm(*t, TimerSlot::retransmit, t->rtt.rto());
    request_output(*t, tcb_flag::send_syn);
}

void TcpLayer::cookie_ack_to_listener(Listener& listener, const Segment& seg)
{
    if (!_config.syn_cookies) {
        ++_counters.rx_listen_dropped;
        send_reset_for(seg);
        return;
    }
    const TcpRepr& r = seg.repr;
    std::optional<std::uint32_t> tsecr;
    if (r.timestamps) {
        tsecr = r.timestamps->echo_reply;
    }
    const auto options = _cookies.decode(seg.tuple, seg.seq - 1, seg.ack - 1, tsecr, _clock.now());
    if (!options) {
        ++_counters.syn_cookies_failed;
        send_reset_for(seg);
        return;
    }
    Tcb* t = allocate(seg.tuple);
    if (t == nullptr) {
        return;  // counted (table_full); the client's next segment tries again
    }
    ++_counters.syn_cookies_validated;
    t->handler = listener.handler;
    t->flags |= tcb_flag::cookie;
    t->iss = seg.ack - 1;
    t->snd_una = t->snd_nxt = t->snd_max = seg.ack;
    t->rcv_nxt = seg.seq;
    t->last_ack_sent = seg.seq;
    t->snd_mss = std::min(options->mss, _config.mss);
    if (_config.window_scaling && options->window_scale) {
        t->flags |= tcb_flag::ws_ok;
        t->snd_wscale = std::min<std::uint8_t>(*options->window_scale, 14);
        t->rcv_wscale = _rcv_wscale;
    }
    if (options->sack_permitted && _config.sack) {
        t->flags |= tcb_flag::sack_ok;
    }
    if (options->timestamps && r.timestamps) {
        t->flags |= tcb_flag::ts_ok;
        t->ts_recent = r.timestamps->value;  // (tcb_flag::cookie: our TSvals continue the cookie's clock)
    }
    // The SYN-ACK advertised an unscaled window of at most 64 KiB.
    t->rcv_adv = t->rcv_nxt + std::min<std::uint32_t>(_config.recv_buffer, 0xffff);
    t->snd_wnd = static_cast<std::uint32_t>(r.window) << t->snd_wscale;
    t->max_snd_wnd = t->snd_wnd;
    t->snd_wl1 = seg.seq;
    t->snd_wl2 = seg.ack;
    cc_init(t->cc, _config.congestion, smss(*t));
    set_state(*t, TcpState::established);
    ++_counters.passive_opens;
    t->flags |= tcb_flag::ev_established;
    const std::uint32_t generation = t->generation;
    segment_arrives(*t, seg);  // its data and FIN, if any
    if (t->generation == generation && t->state != TcpState::closed) {
        notify(*t);
    }
    if (t->generation == generation && t->state != TcpState::closed) {
        maybe_release_buffers(*t);
    }
}

// ---- SYN_SENT ----------------------------------------------------------------------------------------------

void TcpLayer::syn_sent_input(Tcb& t, const Segment& seg)
{
    if (seg.has_ack && (seg.ack <= t.iss || seg.ack > t.snd_max)) {
        if (!seg.rst) {
            send_reset_for(seg);
        }
        return;
    }
    if (seg.rst) {
        if (seg.has_ack) {
            ++_counters.rx_rst;
            ++_counters.rx_rst_accepted;
            destroy(t, CloseReason::refused);
        }
        return;
    }
    if (!seg.syn) {
        return;
    }
    const TcpRepr& r = seg.repr;
    t.rcv_nxt = seg.seq + 1;
    t.last_ack_sent = t.rcv_nxt;
    negotiate_options(t, seg);
    t.snd_wnd = r.window;
    t.max_snd_wnd = t.snd_wnd;
    t.snd_wl1 = seg.seq;
    t.rcv_adv = t.rcv_nxt + std::min<std::uint32_t>(receive_space(t), 0xffff);
    cc_init(t.cc, _config.congestion, smss(t));
    if (!seg.has_ack) {
        // Simultaneous open (RFC 9293 figure 7): answer with SYN-ACK, wait for its ACK in SYN_RECEIVED.
        t.snd_wl2 = t.iss;
        set_state(t, TcpState::syn_received);
        t.snd_nxt = t.iss;
        request_output(t, tcb_flag::send_syn);
        return;
    }
    t.snd_una = seg.ack;
    t.snd_nxt = t.snd_max = seg.ack;
    t.snd_wl2 = seg.ack;
    syn_acknowledged(t, seg);
    set_state(t, TcpState::established);
    ++_counters.active_established;
    t.flags |= tcb_flag::ev_established;
    if ((t.flags & tcb_flag::fin_queued) != 0) {
        set_state(t, TcpState::fin_wait_1);
    }
    restart_keepalive(t);
    request_output(t, tcb_flag::ack_now);
}

// ---- synchronized states and SYN_RECEIVED ----------------------------------------------------------------

void TcpLayer::syn_acknowledged(Tcb& t, const Segment& seg)
{
    // The handshake's RTT: from the echoed timestamp, else from our SYN's departure unless it was resent
    // (Karn). The SYN timer stops.
    const TcpRepr& r = seg.repr;
    if ((t.flags & tcb_flag::ts_ok) != 0 && r.timestamps && r.timestamps->echo_reply != 0) {
        t.rtt.sample(std::chrono::milliseconds(static_cast<std::int32_t>(tsval(t) - r.timestamps->echo_reply)));
    } else if ((t.flags & tcb_flag::syn_retransmitted) == 0) {
        t.rtt.sample(std::chrono::milliseconds(now_ms() - t.rtt_start));
    }
    t.rtt.reset_backoff();
    t.retries = 0;
    disarm(t, TimerSlot::retransmit);
}

bool TcpLayer::sequence_acceptable(const Tcb& t, const Segment& seg) const
{
    const std::int32_t window = std::max(0, t.rcv_adv - t.rcv_nxt);
    const auto in_window = [&](SeqNumber s) { return t.rcv_nxt <= s && s - t.rcv_nxt < window; };
    if (seg.seq_len == 0) {
        return window == 0 ? seg.seq == t.rcv_nxt : (seg.seq == t.rcv_nxt || in_window(seg.seq));
    }
    if (window == 0) {
        return false;
    }
    return in_window(seg.seq) || in_window(seg.seq + (seg.seq_len - 1));
}

std::int32_t TcpLayer::paws_tolerance_ms(const Tcb& t) noexcept
{
    const auto srtt = t.rtt.srtt();
    const auto ms = srtt ? std::chrono::duration_cast<std::chrono::milliseconds>(*srtt).count() : 0;
    return static_cast<std::int32_t>(std::clamp<long long>(ms, 1, 1000));
}

void TcpLayer::update_ts_recent(Tcb& t, const Segment& seg)
{
    // RFC 7323 4.3 (as revised): remember the newest TSval of a segment that starts at or before the ACK we
    // last sent.
    if ((t.flags & tcb_flag::ts_ok) != 0 && seg.repr.timestamps && seg.seq <= t.last_ack_sent &&
        static_cast<std::int32_t>(seg.repr.timestamps->value - t.ts_recent) >= 0) {
        t.ts_recent = seg.repr.timestamps->value;
    }
}

void TcpLayer::challenge_ack(Tcb& t)
{
    // RFC 5961 7: a global budget of challenge ACKs per second.
    const std::uint32_t now = now_ms();
    if (now - _challenge_window_start >= 1000) {
        _challenge_window_start = now;
        _challenge_count = 0;
    }
    if (_challenge_count >= _config.challenge_ack_limit) {
        ++_counters.challenge_acks_limited;
        return;
    }
    ++_challenge_count;
    ++_counters.challenge_acks;
    request_output(t, tcb_flag::ack_now);
}

void TcpLayer::segment_arrives(Tcb& t, const Segment& seg)
{
    const TcpRepr& r = seg.repr;
    // PAWS (RFC 7323 5.3): a segment whose TSval is older than TS.Recent is a duplicate from the past. Linux
    // forgives one tick; we forgive one smoothed RTT (at least 1 ms, at most 1 s): a later pure ACK that
    // overtook a data segment on a reordering path has raised TS.Recent by about that much, while a
    // duplicate from a previous wrap of the sequence space is older by the time 2^31 bytes take to send.
    if ((t.flags & tcb_flag::ts_ok) != 0 && r.timestamps && !seg.rst &&
        static_cast<std::int32_t>(r.timestamps->value - t.ts_recent) < -paws_tolerance_ms(t)) {
        ++_counters.rx_paws_rejected;
        request_output(t, tcb_flag::ack_now);
        return;
    }
    bool drop_data = false;
    if (!sequence_acceptable(t, seg)) {
        if (seg.rst) {
            ++_counters.rx_rst;
            ++_counters.rx_rst_ignored;
            return;
        }
        if (t.state == TcpState::syn_received && seg.syn && !seg.has_ack && seg.seq + 1 == t.rcv_nxt) {
            request_output(t, tcb_flag::send_syn);  // the client did not get our SYN-ACK: send it again
            return;
        }
        // RFC 9293 3.10.7.4: with our window closed, a segment at RCV.NXT still carries a valid ACK.
        const bool zero_window_ack = seg.has_ack && seg.seq == t.rcv_nxt && t.rcv_adv == t.rcv_nxt;
        if (!zero_window_ack) {
            if (seg.len > 0 && seg.seq + seg.len <= t.rcv_nxt) {
                ++_counters.rx_duplicate_segments;
            } else {
                ++_counters.rx_out_of_window;
            }
            if (t.state == TcpState::time_wait && seg.fin) {
                arm(t, TimerSlot::retransmit, _config.time_wait);  // the peer resent its FIN: restart 2MSL
            }
            request_output(t, tcb_flag::ack_now);
            return;
        }
        ++_counters.rx_out_of_window;
        drop_data = true;
    }
    if (seg.rst) {
        // RFC 5961 3.2: only a RST exactly at RCV.NXT resets; one elsewhere in the window is challenged.
        ++_counters.rx_rst;
        if (seg.seq == t.rcv_nxt) {
            ++_counters.rx_rst_accepted;
            if (t.state == TcpState::syn_received && (t.flags & tcb_flag::active_open) == 0) {
                destroy(t, CloseReason::reset);  // back to LISTEN: the application never saw it
                return;
            }
            ++_counters.conn_reset_by_peer;
            destroy(t, CloseReason::reset);
        } else {
            ++_counters.rx_rst_challenged;
            challenge_ack(t);
        }
        return;
    }
    if (seg.syn) {
        // RFC 5961 4.2: a SYN on a synchronized connection (or an unexpected one in SYN_RECEIVED).
        ++_counters.rx_syn_in_sync;
        challenge_ack(t);
        return;
    }
    if (!seg.has_ack) {
        ++_counters.rx_bad_flags;
        return;
    }
    update_ts_recent(t, seg);
    const std::uint32_t generation = t.generation;
    if (!process_ack(t, seg) || t.generation != generation || t.state == TcpState::closed) {
        return;
    }
    if (drop_data) {
        request_output(t, tcb_flag::ack_now);
        return;
    }
    if (seg.len > 0) {
        process_data(t, seg);
        if (t.generation != generation || t.state == TcpState::closed) {
            return;
        }
    }
    if (seg.fin) {
        const SeqNumber fin_seq = seg.seq + seg.len;
        if ((t.flags & tcb_flag::fin_received) == 0) {
            if (fin_seq == t.rcv_nxt) {
                process_fin(t);
            } else if (fin_seq > t.rcv_nxt && fin_seq <= t.rcv_adv) {
                if (TcbBuffers* b = attach_buffers(t)) {
                    b->rcv_fin = fin_seq;
                    t.flags |= tcb_flag::fin_ooo;
                }
                request_output(t, tcb_flag::ack_now);
            }
        } else {
            request_output(t, tcb_flag::ack_now);
        }
    }
    if ((t.flags & tcb_flag::keepalive) != 0) {
        restart_keepalive(t);
    }
}

bool TcpLayer::process_ack(Tcb& t, const Segment& seg)
{
    const TcpRepr& r = seg.repr;
    const SeqNumber ack = seg.ack;
    const TimePoint now = _clock.now();
    if (t.state == TcpState::syn_received) {
        if (ack <= t.snd_una || ack > t.snd_max) {
            send_reset_for(seg);
            return false;
        }
        // The handshake completes (RFC 9293 3.10.7.4, SYN-RECEIVED).
        t.snd_una = ack;
        if (t.snd_nxt < ack) {
            t.snd_nxt = ack;
        }
        syn_acknowledged(t, seg);
        t.snd_wnd = static_cast<std::uint32_t>(r.window) << t.snd_wscale;
        t.max_snd_wnd = std::max(t.max_snd_wnd, t.snd_wnd);
        t.snd_wl1 = seg.seq;
        t.snd_wl2 = ack;
        if ((t.flags & tcb_flag::counted_syn_rcvd) != 0) {
            t.flags &= ~tcb_flag::counted_syn_rcvd;
            if (t.listener < _listeners.size() && _listeners[t.listener].syn_received > 0) {
                --_listeners[t.listener].syn_received;
            }
            if (t.listener >= _listeners.size() || !_listeners[t.listener].active) {
                send_reset(t);  // the listener went away while the handshake was under way
                destroy(t, CloseReason::reset);
                return false;
            }
        }
        set_state(t, TcpState::established);
        if ((t.flags & tcb_flag::active_open) != 0) {
            ++_counters.active_established;
        } else {
            ++_counters.passive_opens;
        }
        t.flags |= tcb_flag::ev_established;
        if ((t.flags & tcb_flag::fin_queued) != 0) {
            set_state(t, TcpState::fin_wait_1);
            request_output(t);
        }
        return true;
    }

    // RFC 5961 5.2: an ACK older than the largest window the peer could have been sent is suspicious.
    const std::uint32_t old_limit = std::max<std::uint32_t>(t.max_snd_wnd, 1);
    if (ack < t.snd_una - static_cast<std::int32_t>(std::min<std::uint32_t>(old_limit, 0x3fffffff))) {
        ++_counters.rx_old_ack;
        challenge_ack(t);
        return false;
    }
    if (ack > t.snd_max) {
        ++_counters.rx_ack_unsent;
        request_output(t, tcb_flag::ack_now);
        return false;
    }

    TcbBuffers* b = buffers(t);
    const std::uint32_t mss = smss(t);
    const bool sack = (t.flags & tcb_flag::sack_ok) != 0;
    std::span<const wire::SackBlock> blocks;
    if (sack && r.sack_count > 0) {
        blocks = std::span<const wire::SackBlock>(r.sack_blocks.data(), std::min<std::size_t>(r.sack_count, 4));
        _counters.rx_sack_blocks += blocks.size();
    }
    const std::uint32_t seg_window = static_cast<std::uint32_t>(r.window) << t.snd_wscale;

    if (ack > t.snd_una) {
        const std::uint32_t acked = static_cast<std::uint32_t>(ack - t.snd_una);
        const std::size_t queued = send_queued(t);
        const bool fin_acked = (t.flags & tcb_flag::fin_queued) != 0 && ack == t.snd_una + queued + 1;
        const std::uint32_t data_acked = static_cast<std::uint32_t>(std::min<std::size_t>(acked, queued));
        if (b != nullptr && data_acked > 0) {
            b->send.consume(_pool, data_acked);
            update_sender(t);
        }
        // RTT: from the echoed timestamp (unambiguous, RFC 7323 4), else the timed segment (Karn).
        std::optional<Duration> sample;
        if ((t.flags & tcb_flag::ts_ok) != 0 && r.timestamps && r.timestamps->echo_reply != 0) {
            const std::int32_t ms = static_cast<std::int32_t>(tsval(t) - r.timestamps->echo_reply);
            if (ms >= 0) {
                sample = std::chrono::milliseconds(ms);
            }
        } else if ((t.flags & tcb_flag::rtt_timing) != 0 && b != nullptr && ack >= b->rtt_seq) {
            sample = std::chrono::milliseconds(now_ms() - t.rtt_start);
            t.flags &= ~tcb_flag::rtt_timing;
        }
        if (sample) {
            t.rtt.sample(*sample);
        }
        t.rtt.reset_backoff();
        t.retries = 0;
        t.snd_una = ack;
        if (t.snd_nxt < ack) {
            t.snd_nxt = ack;
        }
        if (b != nullptr) {
            b->scoreboard.on_ack(t.snd_una, blocks, t.snd_max);
            if (b->high_rxt < t.snd_una) {
                b->high_rxt = t.snd_una;
            }
        }
        if ((t.flags & tcb_flag::in_recovery) != 0) {
            if (b == nullptr || ack >= b->recover) {
                t.flags &= ~tcb_flag::in_recovery;
                cc_on_recovery_exit(t.cc, _config.congestion, mss);
                t.dupacks = 0;
            } else if (!sack) {
                // NewReno partial ACK (RFC 6582 3.2 step 5): the next hole is at snd_una.
                cc_on_partial_ack(t.cc, mss, data_acked);
                t.flags |= tcb_flag::rtx_head;
            }
        } else {
            t.dupacks = 0;
            if (data_acked > 0) {
                cc_on_ack(t.cc, _config.congestion, mss, data_acked, sample, now);
            }
        }
        if (t.snd_una == t.snd_max) {
            if ((t.flags & tcb_flag::persist) == 0) {
                // Quiet from now on: the disarmed slot keeps "an RTO from now" for the idle restart
                // (tcp_output.cpp, RFC 5681 4.1).
                disarm(t, TimerSlot::retransmit);
                t.deadline[static_cast<unsigned>(TimerSlot::retransmit)] =
                    now_ms() + static_cast<std::uint32_t>(
                                   std::chrono::duration_cast<std::chrono::milliseconds>(t.rtt.rto()).count());
            }
        } else {
            arm_retransmit(t);  // RFC 6298 5.3
        }
        if ((t.flags & tcb_flag::want_writable) != 0) {
            const std::size_t now_queued = send_queued(t);
            if (now_queued <= send_cap(t) / 2) {
                t.flags &= ~tcb_flag::want_writable;
                t.flags |= tcb_flag::ev_writable;
            }
        }
        request_output(t);
        if (fin_acked) {
            switch (t.state) {
            case TcpState::fin_wait_1:
                set_state(t, TcpState::fin_wait_2);
                if ((t.flags & tcb_flag::orphan) != 0) {
                    arm(t, TimerSlot::retransmit, _config.fin_wait2_timeout);
                }
                break;
            case TcpState::closing:
                enter_time_wait(t);
                break;
            case TcpState::last_ack:
                destroy(t, CloseReason::normal);
                return false;
            default:
                break;
            }
        }
    } else if (ack == t.snd_una) {
        if (b != nullptr && !blocks.empty()) {
            b->scoreboard.on_ack(t.snd_una, blocks, t.snd_max);
        }
        // A duplicate ACK (RFC 5681 2): nothing new acknowledged, no data, no SYN/FIN, same window, and
        // something outstanding.
        const bool outstanding = t.snd_max != t.snd_una;
        const bool duplicate = outstanding && seg.len == 0 && !seg.fin && seg_window == t.snd_wnd;
        if (duplicate) {
            ++_counters.rx_dupacks;
            if (t.dupacks < 255) {
                ++t.dupacks;
            }
        }
        if ((t.flags & tcb_flag::in_recovery) != 0) {
            if (duplicate && !sack) {
                cc_on_recovery_dupack(t.cc, mss);
            }
            if (duplicate || !blocks.empty()) {
                request_output(t);
            }
        } else if (outstanding && b != nullptr && t.snd_una >= b->recover &&
                   ((duplicate && t.dupacks >= 3) ||
                    (!blocks.empty() && b != nullptr && b->scoreboard.is_lost(t.snd_una, mss)))) {
            // Fast retransmit, then recovery: NewReno (RFC 6582) or SACK-based (RFC 6675: the SACKed data
            // says the segment at snd_una is lost even when window updates kept the ACKs from counting).
            ++_counters.fast_retransmits;
            b->recover = t.snd_max;
            t.flags |= tcb_flag::in_recovery | tcb_flag::rtx_head;
            t.flags &= ~tcb_flag::rtt_timing;
            cc_on_fast_retransmit(t.cc, _config.congestion, mss, static_cast<std::uint32_t>(t.snd_max - t.snd_una),
                                  now);
            if (sack) {
                cc_on_recovery_exit(t.cc, _config.congestion, mss);  // RFC 6675 runs on pipe: cwnd = ssthresh
            }
            b->high_rxt = t.snd_una;
            arm_retransmit(t);
            request_output(t);
        }
    }

    // Window update (RFC 9293 3.10.7.4: only from a segment newer than the last one that set it).
    if (t.snd_wl1 < seg.seq || (t.snd_wl1 == seg.seq && t.snd_wl2 <= ack)) {
        if (seg_window != t.snd_wnd) {
            if (seg_window > t.snd_wnd) {
                ++_counters.rx_window_updates;
                request_output(t);
            } else if (seg_window == 0) {
                ++_counters.rx_zero_windows;
            }
        }
        t.snd_wnd = seg_window;
        t.max_snd_wnd = std::max(t.max_snd_wnd, seg_window);
        t.snd_wl1 = seg.seq;
        t.snd_wl2 = ack;
        if (t.snd_wnd > 0 && (t.flags & tcb_flag::persist) != 0) {
            t.flags &= ~tcb_flag::persist;
            t.rtt.reset_backoff();
            if (t.snd_una == t.snd_max) {
                disarm(t, TimerSlot::retransmit);
            }
            request_output(t);
        }
    }
    return true;
}

void TcpLayer::process_data(Tcb& t, const Segment& seg)
{
    if (!receiving(t.state)) {
        return;  // after the peer's FIN there is no more data (RFC 9293: ignore the segment text)
    }
    SeqNumber seq = seg.seq;
    wire::Bytes data = seg.repr.payload;
    if (seq < t.rcv_nxt) {
        const std::uint32_t dup = static_cast<std::uint32_t>(t.rcv_nxt - seq);
        if (dup >= data.size()) {
            ++_counters.rx_duplicate_segments;
            request_output(t, tcb_flag::ack_now);
            return;
        }
        ++_counters.rx_partial_duplicates;
        data = data.subspan(dup);
        seq = t.rcv_nxt;
    }
    if ((t.flags & tcb_flag::orphan) != 0) {
        // New data for an application that closed: it will never be read (RFC 9293 3.10.4; Linux does this).
        ++_counters.rx_data_after_close;
        send_reset(t);
        destroy(t, CloseReason::reset);
        return;
    }
    if (seq + data.size() > t.rcv_adv) {
        const std::int32_t keep = t.rcv_adv - seq;
        ++_counters.rx_beyond_window;
        data = data.first(keep > 0 ? static_cast<std::size_t>(keep) : 0);
    }
    if (data.empty()) {
        request_output(t, tcb_flag::ack_now);
        return;
    }
    TcbBuffers* b = attach_buffers(t);
    if (b == nullptr) {
        ++_counters.rx_buffer_exhausted;
        request_output(t, tcb_flag::ack_now);
        return;
    }
    if (seq == t.rcv_nxt) {
        const std::size_t taken = b->recv.push(_pool, data);
        if (taken < data.size()) {
            ++_counters.rx_buffer_exhausted;
        }
        t.rcv_nxt += taken;
        _counters.rx_data_bytes += taken;
        if (!b->ooo.empty()) {
            const std::size_t filled = b->ooo.drain_into(_pool, t.rcv_nxt, b->recv);
            t.rcv_nxt += filled;
            _counters.rx_data_bytes += filled;
            t.flags |= tcb_flag::ack_now;  // RFC 5681 4.2: ACK at once when a hole fills (or partly)
        }
        if ((t.flags & tcb_flag::fin_ooo) != 0 && t.rcv_nxt == b->rcv_fin) {
            t.flags &= ~tcb_flag::fin_ooo;
            process_fin(t);
        }
        if (taken > 0) {
            t.flags |= tcb_flag::ev_readable;
        }
        // Delayed ACK (RFC 1122 4.2.3.2, RFC 5681 4.2): at least every second full-sized segment, and
        // never later than delayed_ack.
        const std::uint32_t full = smss(t);
        if ((t.flags & tcb_flag::ack_now) != 0 || static_cast<std::uint32_t>(t.rcv_nxt - t.last_ack_sent) >= 2 * full) {
            request_output(t, tcb_flag::ack_now);
        } else if ((t.armed & (1u << static_cast<unsigned>(TimerSlot::delayed_ack))) == 0) {
            arm(t, TimerSlot::delayed_ack, _config.delayed_ack);
        }
        return;
    }
    // Out of order: hold it, and ACK at once so the sender sees the hole (a duplicate ACK with SACK).
    ++_counters.rx_out_of_order;
    const std::size_t limit = _config.recv_buffer > b->recv.size() ? _config.recv_buffer - b->recv.size() : 0;
    if (!b->ooo.insert(_pool, t.rcv_nxt, seq, data, limit)) {
        ++_counters.rx_ooo_dropped;
    }
    request_output(t, tcb_flag::ack_now);
}

void TcpLayer::process_fin(Tcb& t)
{
    t.rcv_nxt += 1;
    t.flags |= tcb_flag::fin_received | tcb_flag::ev_readable;
    request_output(t, tcb_flag::ack_now);
    switch (t.state) {
    case TcpState::syn_received:
    case TcpState::established:
        set_state(t, TcpState::close_wait);
        break;
    case TcpState::fin_wait_1:
        set_state(t, TcpState::closing);  // simultaneous close: our FIN is not acknowledged yet
        break;
    case TcpState::fin_wait_2:
        enter_time_wait(t);
        break;
    default:
        break;
    }
}

void TcpLayer::enter_time_wait(Tcb& t)
{
    set_state(t, TcpState::time_wait);
    t.flags &= ~(tcb_flag::persist | tcb_flag::in_recovery | tcb_flag::rtt_timing);
    disarm(t, TimerSlot::keepalive);
    arm(t, TimerSlot::retransmit, _config.time_wait);
}

}  // namespace cm::tcp

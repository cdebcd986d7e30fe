// The card's TCP (NetworkInterface + TcpLayer) on one end of an in-memory link and a scripted peer on the
// other, on a hand-driven clock: smoltcp's style. Segments are built from a template (Seg) with only the
// fields that differ changed, sent by the peer, and what the card sends is parsed back into Segs.
//
// Every test ends in ~TcpFixture, which aborts what is left and checks (lwIP style) that the buffer pool is
// back to zero chunks in use, the connection table is empty and no buffer set is attached.
#pragma once

#include "../stack/stack_fixture.hpp"
#include "tcp/tcp.hpp"
#include "tcp/test_services.hpp"
#include "wire/tcp.hpp"

#include <catch2/catch.hpp>

#include <exception>
#include <map>
#include <string>
#include <vector>

namespace cm::test {

using tcp::CloseReason;
using tcp::ConnectionId;
using tcp::TcpState;

inline constexpr std::uint16_t peer_port = 49152;
inline constexpr std::uint16_t card_port = 80;
/// The peer's ISN: close enough to 2^32 that every test's sequence numbers wrap.
inline constexpr std::uint32_t remote_isn = 0xFFFFFF00u - 1460u;

inline std::vector<std::byte> bytes_of(const std::string& s)
{
    std::vector<std::byte> v(s.size());
    std::memcpy(v.data(), s.data(), s.size());
    return v;
}

inline std::string string_of(wire::Bytes b)
{
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

/// A pattern that makes misplaced bytes visible.
inline std::vector<std::byte> pattern(std::size_t n, std::size_t start = 0)
{
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i) {
        v[i] = static_cast<std::byte>(((start + i) * 131 + (start + i) / 251) & 0xff);
    }
    return v;
}

/// A segment with owned payload: the template the peer sends from, and what the card sent, parsed.
struct Seg {
    wire::TcpRepr r{};
    std::vector<std::byte> data;

    Seg()
    {
        r.source_port = peer_port;
        r.destination_port = card_port;
        r.flags = wire::tcp_flags::ack;
        r.window = 64240;
    }
    Seg& seq(std::uint32_t s) { r.sequence = SeqNumber(s); return *this; }
    Seg& seq(SeqNumber s) { r.sequence = s; return *this; }
    Seg& ack(SeqNumber a) { r.acknowledgment = a; r.flags |= wire::tcp_flags::ack; return *this; }
    Seg& ack(std::uint32_t a) { return ack(SeqNumber(a)); }
    Seg& flags(std::uint8_t f) { r.flags = f; return *this; }
    Seg& win(std::uint16_t w) { r.window = w; return *this; }
    Seg& mss(std::uint16_t m) { r.mss = m; return *this; }
    Seg& ws(std::uint8_t s) { r.window_scale = s; return *this; }
    Seg& sack_perm() { r.sack_permitted = true; return *this; }
    Seg& ts(std::uint32_t val, std::uint32_t ecr) { r.timestamps = wire::TcpTimestamps{val, ecr}; return *this; }
    Seg& sack(std::initializer_list<std::pair<SeqNumber, SeqNumber>> blocks)
    {
        r.sack_count = 0;
        for (auto [l, rr] : blocks) {
            r.sack_blocks[r.sack_count++] = wire::SackBlock{l, rr};
        }
        return *this;
    }
    Seg& ports(std::uint16_t src, std::uint16_t dst) { r.source_port = src; r.destination_port = dst; return *this; }
    Seg& payload(std::vector<std::byte> d) { data = std::move(d); return *this; }
    Seg& payload(const std::string& s) { return payload(bytes_of(s)); }

    [[nodiscard]] std::uint8_t fl() const { return r.flags; }
    [[nodiscard]] bool has(std::uint8_t f) const { return (r.flags & f) == f; }
    [[nodiscard]] SeqNumber sq() const { return r.sequence; }
    [[nodiscard]] SeqNumber ak() const { return r.acknowledgment; }
    [[nodiscard]] std::string text() const { return string_of(data); }
    [[nodiscard]] std::size_t len() const { return data.size(); }
};

/// The application: records every callback; reads what arrives unless told not to.
struct App final : tcp::TcpHandler {
    tcp::TcpLayer* tcp = nullptr;
    bool accept = true;
    bool auto_read = true;
    std::vector<ConnectionId> accepted;
    std::vector<ConnectionId> connected;
    std::map<std::uint32_t, std::vector<std::byte>> received;  // by index
    std::vector<std::pair<ConnectionId, CloseReason>> closed;
    int readable_calls = 0;
    int writable_calls = 0;
    int timer_calls = 0;

    bool on_accept(ConnectionId id, const tcp::FourTuple&) override
    {
        if (accept) {
            accepted.push_back(id);
        }
        return accept;
    }
    void on_connected(ConnectionId id) override { connected.push_back(id); }
    void on_readable(ConnectionId id) override
    {
        ++readable_calls;
        if (!auto_read) {
            return;
        }
        std::array<std::byte, 4096> buf{};
        for (;;) {
            const std::size_t n = tcp->read(id, buf);
            if (n == 0) {
                break;
            }
            auto& v = received[id.index];
            v.insert(v.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
        }
    }
    void on_writable(ConnectionId) override { ++writable_calls; }
    void on_timer(ConnectionId) override { ++timer_calls; }
    void on_closed(ConnectionId id, CloseReason reason) override { closed.emplace_back(id, reason); }

    std::string text(ConnectionId id) { return string_of(received[id.index]); }
};

inline tcp::TcpConfig test_config()
{
    tcp::TcpConfig c;
    c.max_connections = 64;
    c.syn_backlog = 8;
    c.pool_chunks = 1024;
    c.pool_chunk_size = 2048;
    c.send_buffer = 64 * 1024;
    c.recv_buffer = 64 * 1024;
    for (std::size_t i = 0; i < c.secret.size(); ++i) {
        c.secret[i] = static_cast<std::uint8_t>(i * 17 + 3);
    }
    return c;
}

struct TcpFixture {
    ManualClock clock;
    core::TimerWheel timers{clock.now()};
    link::MemoryLinkPair wire_pair{clock};
    stack::NetworkInterface card{wire_pair.a(), timers, card_config()};
    tcp::TcpLayer tcp;
    App app;
    // The handshake's outcome (accept_connection / connect_connection).
    ConnectionId id;
    SeqNumber card_isn;
    SeqNumber local_seq;   // the card's next sequence number (what the peer acknowledges)
    SeqNumber remote_seq;  // the peer's next sequence number

    explicit TcpFixture(const tcp::TcpConfig& config = test_config()) : tcp(card, timers, clock, config)
    {
        app.tcp = &tcp;
        // Teach the card the peer's MAC, as the peer's own ARP request would.
        peer_frame(arp_frame(arp_op::request, MacAddress::broadcast(), peer_mac, peer_ip, MacAddress{}, card_ip));
        card_frames();
    }

    ~TcpFixture()
    {
        tcp.abort_all();
        step();
        if (std::uncaught_exceptions() == 0) {
            CHECK(tcp.pool().in_use() == 0);
            CHECK(tcp.connection_count() == 0);
            CHECK(tcp.buffer_sets_in_use() == 0);
            CHECK(tcp.counters().conn_active == 0);
            CHECK(tcp.counters().buffers_attached == 0);
        }
    }

    /// One loop iteration of the card at the current time (the loop's order: input, timers, tcp, link).
    void step()
    {
        tcp.poll(clock.now());
        card.poll(clock.now());
        timers.advance(clock.now());
        tcp.flush();
        card.flush();
    }
    /// Moves time forward in `tick` iterations, as the loop would.
    void run_for(Duration d, Duration tick = 1ms)
    {
        const TimePoint end = clock.now() + d;
        while (clock.now() < end) {
            clock.advance(std::min<Duration>(tick, end - clock.now()));
            step();
        }
    }
    void peer_frame(const Frame& frame)
    {
        REQUIRE(wire_pair.b().send(frame));
        wire_pair.b().flush();
        step();
    }
    /// Raw frames the card sent since the last call.
    std::vector<Frame> card_frames()
    {
        Collector c;
        while (wire_pair.b().receive(c, 64) > 0) {
        }
        return c.frames;
    }

    static Frame tcp_frame(const Seg& s, Ipv4Address src = peer_ip)
    {
        wire::TcpRepr r = s.r;
        r.payload = s.data;
        Frame segment(r.buffer_len());
        r.emit(segment, src, card_ip);
        return ethernet_frame(card_mac, peer_mac, ethertype::ipv4, ipv4_packet(src, card_ip, ip_protocol::tcp, segment));
    }
    /// The peer sends `s`; the card processes it (one loop iteration).
    void send(const Seg& s) { peer_frame(tcp_frame(s)); }

    /// TCP segments the card sent since the last call, parsed (checksums verified).
    std::vector<Seg> sent()
    {
        tcp.flush();  // what the layer has queued, then the link's batch
        card.flush();
        std::vector<Seg> out;
        for (const Frame& f : card_frames()) {
            const auto eth = EthernetView::check(f);
            REQUIRE(eth);
            if (eth->ethertype() != ethertype::ipv4) {
                continue;
            }
            const auto ipv = Ipv4View::check(eth->payload());
            REQUIRE(ipv);
            const auto ip = Ipv4Repr::parse(*ipv);
            REQUIRE(ip);
            REQUIRE(ip->protocol == ip_protocol::tcp);
            CHECK(ip->destination == peer_ip);
            const auto tv = TcpView::check(ipv->payload());
            REQUIRE(tv);
            const auto tr = TcpRepr::parse(*tv, ip->source, ip->destination);
            REQUIRE(tr);
            Seg s;
            s.r = *tr;
            s.data.assign(tr->payload.begin(), tr->payload.end());
            s.r.payload = {};
            out.push_back(std::move(s));
        }
        return out;
    }
    /// Exactly one segment was sent; returns it.
    Seg sent_one()
    {
        auto v = sent();
        REQUIRE(v.size() == 1);
        return v[0];
    }

    /// The peer's segment template: from the peer's port to the card's, seq = remote_seq, ack = local_seq.
    [[nodiscard]] Seg peer() const
    {
        Seg s;
        s.seq(remote_seq).ack(local_seq);
        return s;
    }

    /// Listens on card_port, runs the three-way handshake with `syn` (SYN flag set here) and returns after
    /// the application accepted. local_seq / remote_seq are ready for data.
    ConnectionId accept_connection(Seg syn = Seg().mss(1460).ws(7).sack_perm().ts(1000, 0))
    {
        if (!tcp.state(id)) {
            tcp.listen(card_port, app);  // no-op (false) when already listening
        }
        syn.seq(remote_isn).flags(wire::tcp_flags::syn);
        syn.r.acknowledgment = SeqNumber{};
        send(syn);
        const Seg synack = sent_one();
        REQUIRE(synack.has(wire::tcp_flags::syn | wire::tcp_flags::ack));
        REQUIRE(synack.ak() == SeqNumber(remote_isn + 1));
        card_isn = synack.sq();
        remote_seq = SeqNumber(remote_isn + 1);
        local_seq = card_isn + 1;
        const std::size_t before = app.accepted.size();
        Seg ack = peer().win(syn.r.window).ports(syn.r.source_port, syn.r.destination_port);
        if (syn.r.timestamps) {
            ack.ts(syn.r.timestamps->value + 1, synack.r.timestamps ? synack.r.timestamps->value : 0);
        }
        send(ack);
        REQUIRE(app.accepted.size() == before + 1);
        id = app.accepted.back();
        REQUIRE(tcp.state(id) == TcpState::established);
        return id;
    }
};

}  // namespace cm::test

// Two TcpLayers talking to each other over the in-memory link with seeded faults, on a manual clock: the
// card serves echo (TestServices), the other side connects, sends a megabyte and reads it back. Both
// directions carry data at once; loss, reordering, duplication, delay and a rate limit exercise recovery,
// reassembly, SACK on both sides, persist and close. Deterministic: the same seeds give the same run.
#include "tcp_fixture.hpp"

#include "tcp/test_services.hpp"

using namespace cm;
using namespace cm::test;

namespace {

struct Client final : tcp::TcpHandler {
    tcp::TcpLayer* tcp = nullptr;
    tcp::ConnectionId id;
    std::vector<std::byte> out;  // what to send
    std::size_t sent = 0;
    std::vector<std::byte> in;
    bool connected = false;
    bool eof = false;
    std::optional<tcp::CloseReason> closed;

    void pump()
    {
        while (sent < out.size()) {
            const std::size_t n = tcp->send(id, std::span(out).subspan(sent, std::min<std::size_t>(out.size() - sent, 8192)));
            sent += n;
            if (n == 0) {
                return;
            }
        }
        tcp->shutdown_write(id);
    }
    void on_connected(tcp::ConnectionId) override
    {
        connected = true;
        pump();
    }
    void on_writable(tcp::ConnectionId) override { pump(); }
    void on_readable(tcp::ConnectionId c) override
    {
        std::array<std::byte, 4096> buf{};
        for (;;) {
            const std::size_t n = tcp->read(c, buf);
            if (n == 0) {
                break;
            }
            in.insert(in.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
        }
        if (tcp->peer_closed(c) && !eof) {
            eof = true;
            tcp->close(c);
        }
    }
    void on_closed(tcp::ConnectionId, tcp::CloseReason reason) override { closed = reason; }
};

stack::InterfaceConfig side(const MacAddress& mac, const char* cidr)
{
    stack::InterfaceConfig c;
    c.mac = mac;
    c.address = *Ipv4Cidr::parse(cidr);
    return c;
}

struct Pair {
    ManualClock clock;
    core::TimerWheel timers{clock.now()};
    link::MemoryLinkPair wire;
    stack::NetworkInterface card;
    stack::NetworkInterface peer;
    tcp::TcpLayer card_tcp;
    tcp::TcpLayer peer_tcp;
    tcp::TestServices services{card_tcp};
    Client client;

    Pair(const link::FaultProfile& to_peer, const link::FaultProfile& to_card, tcp::TcpConfig card_config,
         tcp::TcpConfig peer_config)
        : wire(clock, to_peer, to_card),
          card(wire.a(), timers, side(card_mac, "198.18.0.2/24")),
          peer(wire.b(), timers, side(peer_mac, "198.18.0.1/24")),
          card_tcp(card, timers, clock, card_config),
          peer_tcp(peer, timers, clock, peer_config)
    {
        client.tcp = &peer_tcp;
        card.start();
        peer.start();
    }
    ~Pair()
    {
        card_tcp.abort_all();
        peer_tcp.abort_all();
        if (std::uncaught_exceptions() == 0) {
            CHECK(card_tcp.pool().in_use() == 0);
            CHECK(peer_tcp.pool().in_use() == 0);
        }
    }
    void step()
    {
        card_tcp.poll(clock.now());
        peer_tcp.poll(clock.now());
        card.poll(clock.now());
        peer.poll(clock.now());
        timers.advance(clock.now());
        card_tcp.flush();
        peer_tcp.flush();
        card.flush();
        peer.flush();
    }
    /// Runs until `done()` or `limit` of simulated time; returns the simulated time taken.
    template <class Done>
    Duration run(Done done, Duration limit)
    {
        const TimePoint start = clock.now();
        while (!done() && clock.now() - start < limit) {
            clock.advance(1ms);
            step();
        }
        return clock.now() - start;
    }
};

tcp::TcpConfig e2e_config(std::uint8_t seed)
{
    auto c = test_config();
    c.secret[0] = seed;
    c.send_buffer = 128 * 1024;
    c.recv_buffer = 128 * 1024;
    return c;
}

}  // namespace

TEST_CASE("end to end: echo of 1 MB over a link that loses, reorders and duplicates", "[tcp][e2e]")
{
    const auto [loss, reorder, duplicate, seed] = GENERATE(table<double, double, double, std::uint64_t>({
        {0.0, 0.0, 0.0, 1},
        {0.02, 0.0, 0.0, 2},
        {0.03, 0.25, 0.01, 3},
        {0.05, 0.10, 0.05, 4},
    }));
    link::FaultProfile profile;
    profile.delay = 10ms;
    profile.loss = loss;
    profile.reorder = reorder;
    profile.duplicate = duplicate;
    profile.seed = seed;
    link::FaultProfile back = profile;
    back.seed = seed + 100;
    Pair p(profile, back, e2e_config(1), e2e_config(2));
    p.client.out = pattern(1 << 20);
    const auto id = p.peer_tcp.connect(Ipv4Address::from_octets(198, 18, 0, 2), 7, p.client);
    REQUIRE(id);
    p.client.id = *id;
    const Duration took = p.run([&] { return p.client.eof; }, std::chrono::seconds(600));
    WARN("loss " << loss << " reorder " << reorder << " duplicate " << duplicate << ": "
                 << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms simulated, card "
                 << p.card_tcp.counters().retransmits << " retransmits, " << p.card_tcp.counters().rto_timeouts
                 << " timeouts");
    REQUIRE(p.client.eof);
    CHECK(p.client.in == p.client.out);
    CHECK(p.services.counters().echo_bytes == (1u << 20));
    // Both sides finish: the card's LAST_ACK and the client's TIME_WAIT end, nothing is left.
    p.run([&] { return p.card_tcp.connection_count() == 0 && p.peer_tcp.connection_count() == 0; }, 30s);
    CHECK(p.card_tcp.connection_count() == 0);
    CHECK(p.peer_tcp.connection_count() == 0);
    CHECK(p.card_tcp.buffer_sets_in_use() == 0);
    if (loss > 0) {
        CHECK(p.card_tcp.counters().retransmits > 0);
        CHECK(p.peer_tcp.counters().retransmits > 0);
    }
}

TEST_CASE("end to end: a slow, narrow link (rate limit and a short queue) delivers everything", "[tcp][e2e]")
{
    link::FaultProfile profile;
    profile.delay = 20ms;
    profile.rate = 2'000'000;
    profile.limit = 30;  // a shallow bottleneck queue: slow start overflows it
    Pair p(profile, profile, e2e_config(3), e2e_config(4));
    p.client.out = pattern(300000);
    const auto id = p.peer_tcp.connect(Ipv4Address::from_octets(198, 18, 0, 2), 7, p.client);
    REQUIRE(id);
    p.client.id = *id;
    p.run([&] { return p.client.eof; }, std::chrono::seconds(300));
    REQUIRE(p.client.eof);
    CHECK(p.client.in == p.client.out);
}

namespace {

/// Many chargen readers on the peer's side: reads everything, checks the pattern, counts per connection.
struct Readers final : tcp::TcpHandler {
    tcp::TcpLayer* tcp = nullptr;
    std::vector<std::uint64_t> received;  // by ConnectionId::index
    std::size_t connected = 0;
    std::size_t closed = 0;
    bool pattern_ok = true;

    void on_connected(tcp::ConnectionId) override { ++connected; }
    void on_readable(tcp::ConnectionId c) override
    {
        std::array<std::byte, 8192> buf{};
        if (received.size() <= c.index) {
            received.resize(c.index + 1);
        }
        for (;;) {
            const std::size_t n = tcp->read(c, buf);
            if (n == 0) {
                break;
            }
            for (std::size_t i = 0; i < n; i += 997) {  // a sample of the bytes: enough to see misplaced data
                pattern_ok = pattern_ok && buf[i] == tcp::TestServices::chargen_byte(received[c.index] + i);
            }
            received[c.index] += n;
        }
    }
    void on_closed(tcp::ConnectionId, tcp::CloseReason) override { ++closed; }
};

}  // namespace

TEST_CASE("end to end: many chargen readers share a small pool; each progresses, no timeout", "[tcp][e2e][pool]")
{
    // 200 connections that each could queue 64 KiB (12.5 MiB) against a 2 MiB pool: the send buffers shrink
    // to a share of the pool, so the first senders cannot take every chunk and starve the rest, and the
    // card is never so busy with waiters that ACKs wait past an RTO (measured with cm-tcpload: 1,000
    // connections on the 32 MiB default pool went from 3.7 MB/s with hundreds of timeouts to ~190 MB/s).
    constexpr std::size_t connections = 200;
    link::FaultProfile profile;
    profile.delay = 1ms;
    auto card_config = e2e_config(5);
    card_config.max_connections = 256;
    card_config.pool_chunks = 1024;
    card_config.send_buffer = 64 * 1024;
    card_config.recv_buffer = 64 * 1024;
    auto peer_config = e2e_config(6);
    peer_config.max_connections = 256;
    peer_config.pool_chunks = 16384;
    peer_config.recv_buffer = 64 * 1024;
    Pair p(profile, profile, card_config, peer_config);
    Readers readers;
    readers.tcp = &p.peer_tcp;
    for (std::size_t i = 0; i < connections; ++i) {
        REQUIRE(p.peer_tcp.connect(Ipv4Address::from_octets(198, 18, 0, 2), tcp::TestServices::chargen_port, readers));
    }
    // The handshakes (the first SYNs wait for ARP: some are retransmitted), then a second for the shares to
    // settle.
    p.run([&] { return readers.connected == connections; }, 10s);
    REQUIRE(readers.connected == connections);
    p.run([&] { return false; }, 1s);
    const std::vector<std::uint64_t> at_1s = readers.received;
    const std::uint64_t failures_at_1s = p.card_tcp.pool().counters().alloc_failures;
    p.run([&] { return false; }, 2s);

    REQUIRE(readers.received.size() >= connections);
    std::uint64_t total = 0;
    std::uint64_t least = UINT64_MAX;
    std::uint64_t most = 0;
    for (std::size_t i = 0; i < connections; ++i) {
        const std::uint64_t got = readers.received[i] - (i < at_1s.size() ? at_1s[i] : 0);
        total += got;
        least = std::min(least, got);
        most = std::max(most, got);
    }
    WARN(connections << " connections, 2 s: " << total / 2 / 1000 << " kB/s in all, per connection " << least
                     << ".." << most << " bytes; card: " << p.card_tcp.counters().rto_timeouts << " timeouts, "
                     << p.card_tcp.counters().retransmits << " retransmits, pool high water "
                     << p.card_tcp.pool().counters().chunks_high_water << "/" << p.card_tcp.pool().capacity()
                     << ", alloc failures " << p.card_tcp.pool().counters().alloc_failures);
    CHECK(readers.pattern_ok);
    CHECK(least > 0);                      // every connection makes progress ...
    CHECK(least * 4 >= total / connections);  // ... and a fair part of it (the shares converge)
    CHECK(p.card_tcp.counters().rto_timeouts == 0);  // a lossless link: no timeout, no retransmission
    CHECK(p.card_tcp.counters().retransmits == 0);
    CHECK(p.card_tcp.pool().counters().alloc_failures == failures_at_1s);  // settled: the pool never runs dry
    CHECK(p.card_tcp.counters().senders <= connections);
    p.peer_tcp.abort_all();
    p.run([&] { return p.card_tcp.connection_count() == 0; }, 5s);
    CHECK(p.card_tcp.connection_count() == 0);
    CHECK(p.card_tcp.counters().senders == 0);
    CHECK(p.card_tcp.counters().pool_waiters == 0);
    CHECK(p.card_tcp.pool().in_use() == 0);
}

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

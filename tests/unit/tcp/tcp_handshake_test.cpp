// Opening connections: passive (listener, backlog, SYN cookies), active (connect), options, the
// connection table and the control block's size.
#include "tcp_fixture.hpp"

#include "tcp/connection_table.hpp"

#include <random>
#include <unordered_map>

using namespace cm;
using namespace cm::test;
namespace flag = cm::wire::tcp_flags;

TEST_CASE("the control block is small and the buffers are separate", "[tcp][size]")
{
    WARN("sizeof(Tcb) = " << tcp::TcpLayer::tcb_size << " bytes (of which core::Timer " << sizeof(core::Timer)
                          << "), sizeof(TcbBuffers) = " << tcp::TcpLayer::buffers_size
                          << " bytes (attached only while data is queued)");
    STATIC_REQUIRE(tcp::TcpLayer::tcb_size <= 256);
    STATIC_REQUIRE(sizeof(core::Timer) == 56);
}

TEST_CASE("connection table: insert, find and backward-shift erase agree with a model", "[tcp][table]")
{
    tcp::SipKey key{};
    key[0] = 42;
    tcp::ConnectionTable table(5000, key);
    CHECK(table.capacity() == 16384);  // power of two, load factor <= 1/2
    std::unordered_map<std::uint64_t, std::uint32_t> model;
    std::mt19937_64 rng(7);
    const auto tuple_of = [](std::uint64_t k) {
        return tcp::FourTuple{Ipv4Address::from_octets(198, 18, 0, 2), Ipv4Address{static_cast<std::uint32_t>(k >> 16)},
                              80, static_cast<std::uint16_t>(k & 0xffff)};
    };
    std::vector<std::uint64_t> keys;
    for (int op = 0; op < 200000; ++op) {
        const auto r = rng() % 10;
        if (r < 5 && model.size() < 5000) {
            const std::uint64_t k = (rng() % 3000) << 16 | (rng() % 50);  // many collisions of ports
            const auto value = static_cast<std::uint32_t>(op);
            const bool fresh = model.find(k) == model.end();
            CHECK(table.insert(tuple_of(k), value) == fresh);
            if (fresh) {
                model[k] = value;
                keys.push_back(k);
            }
        } else if (r < 8 && !keys.empty()) {
            const std::size_t i = rng() % keys.size();
            const std::uint64_t k = keys[i];
            CHECK(table.erase(tuple_of(k)));
            model.erase(k);
            keys[i] = keys.back();
            keys.pop_back();
        } else {
            const std::uint64_t k = (rng() % 3000) << 16 | (rng() % 50);
            const auto it = model.find(k);
            CHECK(table.find(tuple_of(k)) == (it == model.end() ? tcp::ConnectionTable::none : it->second));
        }
    }
    CHECK(table.size() == model.size());
    for (const auto& [k, v] : model) {
        REQUIRE(table.find(tuple_of(k)) == v);
    }
    // Full: the table refuses more than max_entries.
    tcp::ConnectionTable small(4, key);
    for (std::uint16_t p = 1; p <= 4; ++p) {
        CHECK(small.insert(tuple_of(p), p));
    }
    CHECK_FALSE(small.insert(tuple_of(5), 5));
    WARN("longest probe over 200,000 operations at load <= 0.31: " << table.longest_probe() << " slots");
}

TEST_CASE("passive open: SYN, SYN-ACK with our options, ACK, accept", "[tcp][open]")
{
    TcpFixture f;
    REQUIRE(f.tcp.listen(card_port, f.app));
    CHECK_FALSE(f.tcp.listen(card_port, f.app));
    f.send(Seg().seq(remote_isn).flags(flag::syn).mss(1400).ws(7).sack_perm().ts(1000, 0));
    const Seg sa = f.sent_one();
    CHECK(sa.fl() == (flag::syn | flag::ack));
    CHECK(sa.ak() == SeqNumber(remote_isn + 1));
    CHECK(sa.r.mss == 1460);
    CHECK(sa.r.window_scale == 1);  // 64 KiB receive buffer: one shift covers it
    CHECK(sa.r.sack_permitted);
    REQUIRE(sa.r.timestamps);
    CHECK(sa.r.timestamps->echo_reply == 1000);
    CHECK(sa.r.window == 65535);
    CHECK(f.tcp.counters().conn_syn_received == 1);
    CHECK(f.app.accepted.empty());

    f.send(Seg().seq(remote_isn + 1).ack(sa.sq() + 1).ts(1001, sa.r.timestamps->value));
    REQUIRE(f.app.accepted.size() == 1);
    const ConnectionId id = f.app.accepted[0];
    CHECK(f.tcp.state(id) == TcpState::established);
    CHECK(f.tcp.counters().conn_syn_received == 0);
    CHECK(f.tcp.counters().conn_established == 1);
    CHECK(f.tcp.counters().passive_opens == 1);
    const auto info = f.tcp.info(id);
    REQUIRE(info);
    CHECK(info->snd_mss == 1400);
    CHECK(info->sack);
    CHECK(info->timestamps);
    CHECK(info->snd_wscale == 7);
    CHECK(info->rcv_wscale == 1);
    CHECK(info->cwnd == 10 * (1400 - 12));  // RFC 6928 IW10 of SMSS (MSS less the timestamp option)
    CHECK(f.sent().empty());         // nothing to say yet
}

TEST_CASE("a SYN without options: MSS 536, no window scaling, SACK or timestamps", "[tcp][open]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection(Seg());
    const auto info = f.tcp.info(id);
    REQUIRE(info);
    CHECK(info->snd_mss == 536);
    CHECK_FALSE(info->sack);
    CHECK_FALSE(info->timestamps);
    CHECK_FALSE(info->window_scaling);
    CHECK(info->rcv_wscale == 0);
    // Data segments then carry at most 536 bytes and no options.
    REQUIRE(f.tcp.send(id, pattern(2000)) == 2000);
    f.step();
    const auto segs = f.sent();
    REQUIRE(segs.size() == 3);  // the 392-byte tail waits for an ACK (Nagle)
    CHECK(segs[0].len() == 536);
    CHECK_FALSE(segs[0].r.timestamps);
    f.send(f.peer().ack(f.local_seq + 3u * 536u));
    CHECK(f.sent_one().len() == 2000 - 3 * 536);
}

TEST_CASE("the SYN-ACK is retransmitted with backoff and a retransmitted SYN is answered again", "[tcp][open][timers]")
{
    auto config = test_config();
    config.syn_retries = 2;
    TcpFixture f(config);
    f.tcp.listen(card_port, f.app);
    const Seg syn = Seg().seq(remote_isn).flags(flag::syn).mss(1460);
    f.send(syn);
    const Seg sa = f.sent_one();
    f.send(syn);  // the client did not hear us
    CHECK(f.sent_one().sq() == sa.sq());
    f.run_for(999ms);
    CHECK(f.sent().empty());
    f.run_for(2ms);  // initial RTO 1 s
    CHECK(f.sent_one().sq() == sa.sq());
    f.run_for(1998ms);
    CHECK(f.sent().empty());
    f.run_for(2ms);  // backed off to 2 s
    CHECK(f.sent_one().has(flag::syn | flag::ack));
    f.run_for(4001ms);  // third timeout: given up, nothing sent, no control block left
    CHECK(f.sent().empty());
    CHECK(f.tcp.connection_count() == 0);
    CHECK(f.tcp.counters().syn_ack_timeouts == 1);
    CHECK(f.tcp.counters().syn_retransmits == 2);
    CHECK(f.app.accepted.empty());
    CHECK(f.app.closed.empty());
}

TEST_CASE("segments for no connection are answered with RST, a RST never", "[tcp][rst]")
{
    TcpFixture f;
    f.send(Seg().ports(peer_port, 81).seq(5000).ack(9000).payload("hello"));
    Seg rst = f.sent_one();
    CHECK(rst.fl() == flag::rst);
    CHECK(rst.sq() == SeqNumber(9000));
    f.send(Seg().ports(peer_port, 81).seq(5000).flags(flag::syn));
    rst = f.sent_one();
    CHECK(rst.fl() == (flag::rst | flag::ack));
    CHECK(rst.ak() == SeqNumber(5001));
    f.send(Seg().ports(peer_port, 81).seq(5000).flags(flag::rst));
    CHECK(f.sent().empty());
    CHECK(f.tcp.counters().rx_no_connection == 3);
    CHECK(f.tcp.counters().tx_rst == 2);
}

TEST_CASE("bad checksums, bad flags and port 0 are dropped and counted", "[tcp][input]")
{
    TcpFixture f;
    f.tcp.listen(card_port, f.app);
    Frame frame = TcpFixture::tcp_frame(Seg().seq(1).flags(flag::syn));
    frame[14 + 20 + 16] ^= std::byte{0x55};  // the TCP checksum
    f.peer_frame(frame);
    f.send(Seg().seq(1).flags(flag::syn | flag::fin));
    f.send(Seg().ports(0, card_port).seq(1).flags(flag::syn));
    CHECK(f.sent().empty());
    CHECK(f.tcp.counters().rx_bad_checksum == 1);
    CHECK(f.tcp.counters().rx_bad_flags == 1);
    CHECK(f.tcp.counters().rx_bad_ports == 1);
    CHECK(f.tcp.connection_count() == 0);
}

TEST_CASE("the application can refuse a connection in on_accept: it is reset", "[tcp][open]")
{
    TcpFixture f;
    f.app.accept = false;
    f.tcp.listen(card_port, f.app);
    f.send(Seg().seq(remote_isn).flags(flag::syn).mss(1460));
    const Seg sa = f.sent_one();
    f.send(Seg().seq(remote_isn + 1).ack(sa.sq() + 1));
    const Seg rst = f.sent_one();
    CHECK(rst.has(flag::rst));
    CHECK(rst.sq() == sa.sq() + 1);
    CHECK(f.tcp.connection_count() == 0);
    CHECK(f.tcp.counters().accept_refused == 1);
}

TEST_CASE("SYN cookies answer SYNs beyond the backlog and restore the options", "[tcp][cookies]")
{
    auto config = test_config();
    config.syn_backlog = 1;
    TcpFixture f(config);
    f.tcp.listen(card_port, f.app);
    // The first SYN takes the backlog's only place.
    f.send(Seg().ports(1000, card_port).seq(77).flags(flag::syn).mss(1460));
    CHECK(f.sent_one().has(flag::syn | flag::ack));
    CHECK(f.tcp.connection_count() == 1);
    // The second is answered statelessly.
    f.send(Seg().seq(remote_isn).flags(flag::syn).mss(1460).ws(6).sack_perm().ts(5000, 0));
    const Seg sa = f.sent_one();
    CHECK(sa.fl() == (flag::syn | flag::ack));
    CHECK(sa.ak() == SeqNumber(remote_isn + 1));
    CHECK(sa.r.window_scale == 1);
    CHECK(sa.r.sack_permitted);
    REQUIRE(sa.r.timestamps);
    CHECK(f.tcp.connection_count() == 1);
    CHECK(f.tcp.counters().syn_backlog_overflow == 1);
    CHECK(f.tcp.counters().syn_cookies_sent == 1);
    // The ACK brings the cookie back: the connection exists from here on, with the SYN's options.
    f.send(Seg().seq(remote_isn + 1).ack(sa.sq() + 1).ts(5001, sa.r.timestamps->value).payload("GET /"));
    REQUIRE(f.app.accepted.size() == 1);
    const ConnectionId id = f.app.accepted[0];
    CHECK(f.tcp.counters().syn_cookies_validated == 1);
    CHECK(f.app.text(id) == "GET /");
    const auto info = f.tcp.info(id);
    REQUIRE(info);
    CHECK(info->snd_mss == 1460);
    CHECK(info->snd_wscale == 6);
    CHECK(info->sack);
    CHECK(info->timestamps);
    // Our TSvals keep rising from the cookie's (the peer's PAWS would drop them otherwise).
    f.run_for(50ms);
    const Seg ack = f.sent_one();
    REQUIRE(ack.r.timestamps);
    CHECK(static_cast<std::int32_t>(ack.r.timestamps->value - sa.r.timestamps->value) >= 0);
    CHECK(ack.r.timestamps->echo_reply == 5001);

    // A forged or stale ACK is answered with RST and creates nothing.
    f.send(Seg().ports(2000, card_port).seq(1234).ack(0xdeadbeef));
    CHECK(f.sent_one().fl() == flag::rst);
    CHECK(f.tcp.counters().syn_cookies_failed == 1);
    CHECK(f.tcp.connection_count() == 2);
}

TEST_CASE("a cookie without timestamps keeps only the MSS", "[tcp][cookies]")
{
    auto config = test_config();
    config.syn_backlog = 1;
    TcpFixture f(config);
    f.tcp.listen(card_port, f.app);
    f.send(Seg().ports(1000, card_port).seq(77).flags(flag::syn).mss(1460));
    f.sent();
    f.send(Seg().seq(remote_isn).flags(flag::syn).mss(1300).ws(6).sack_perm());
    const Seg sa = f.sent_one();
    CHECK_FALSE(sa.r.window_scale);
    CHECK_FALSE(sa.r.sack_permitted);
    CHECK_FALSE(sa.r.timestamps);
    f.send(Seg().seq(remote_isn + 1).ack(sa.sq() + 1));
    REQUIRE(f.app.accepted.size() == 1);
    const auto info = f.tcp.info(f.app.accepted[0]);
    REQUIRE(info);
    CHECK(info->snd_mss == 1300);
    CHECK_FALSE(info->window_scaling);
    CHECK_FALSE(info->sack);
}

TEST_CASE("with cookies off, SYNs beyond the backlog are dropped", "[tcp][cookies]")
{
    auto config = test_config();
    config.syn_backlog = 2;
    config.syn_cookies = false;
    TcpFixture f(config);
    f.tcp.listen(card_port, f.app);
    for (std::uint16_t port = 1000; port < 1005; ++port) {
        f.send(Seg().ports(port, card_port).seq(77).flags(flag::syn));
    }
    CHECK(f.sent().size() == 2);
    CHECK(f.tcp.connection_count() == 2);
    CHECK(f.tcp.counters().syn_dropped == 3);
}

TEST_CASE("the table bounds the connections: SYNs beyond it get cookies", "[tcp][cookies]")
{
    auto config = test_config();
    config.max_connections = 2;
    TcpFixture f(config);
    f.tcp.listen(card_port, f.app);
    for (std::uint16_t port = 1000; port < 1004; ++port) {
        f.send(Seg().ports(port, card_port).seq(77).flags(flag::syn));
    }
    CHECK(f.sent().size() == 4);
    CHECK(f.tcp.connection_count() == 2);
    CHECK(f.tcp.counters().syn_cookies_sent == 2);
    CHECK(f.tcp.counters().table_full == 2);
}

TEST_CASE("active open: SYN with our options, SYN-ACK, ACK, on_connected, data", "[tcp][open][active]")
{
    TcpFixture f;
    const auto id = f.tcp.connect(peer_ip, 8080, f.app);
    REQUIRE(id);
    f.step();
    const Seg syn = f.sent_one();
    CHECK(syn.fl() == flag::syn);
    CHECK(syn.r.destination_port == 8080);
    CHECK(syn.r.source_port >= 32768);
    CHECK(syn.r.mss == 1460);
    CHECK(syn.r.window_scale == 1);
    CHECK(syn.r.sack_permitted);
    REQUIRE(syn.r.timestamps);
    CHECK(f.tcp.state(*id) == TcpState::syn_sent);
    Seg synack;
    synack.ports(8080, syn.r.source_port).seq(remote_isn).ack(syn.sq() + 1).flags(flag::syn | flag::ack).mss(1400).ws(2);
    synack.sack_perm().ts(700, syn.r.timestamps->value);
    f.send(synack);
    const Seg ack = f.sent_one();
    CHECK(ack.fl() == flag::ack);
    CHECK(ack.ak() == SeqNumber(remote_isn + 1));
    CHECK(ack.sq() == syn.sq() + 1);
    REQUIRE(f.app.connected.size() == 1);
    CHECK(f.app.connected[0] == *id);
    CHECK(f.tcp.state(*id) == TcpState::established);
    CHECK(f.tcp.info(*id)->snd_wscale == 2);
    CHECK(f.tcp.info(*id)->snd_mss == 1400);
    CHECK(f.tcp.send(*id, bytes_of("ping")) == 4);
    f.step();
    const Seg data = f.sent_one();
    CHECK(data.text() == "ping");
    CHECK(data.sq() == syn.sq() + 1);
    f.send(Seg().ports(8080, syn.r.source_port).seq(remote_isn + 1).ack(data.sq() + 4).payload("pong"));
    CHECK(f.app.text(*id) == "pong");
}

TEST_CASE("active open refused by RST, and timed out after the SYN retries", "[tcp][open][active][timers]")
{
    auto config = test_config();
    config.syn_retries = 2;
    TcpFixture f(config);
    const auto refused = f.tcp.connect(peer_ip, 8080, f.app);
    REQUIRE(refused);
    f.step();
    const Seg syn = f.sent_one();
    f.send(Seg().ports(8080, syn.r.source_port).seq(0).ack(syn.sq() + 1).flags(flag::rst | flag::ack));
    REQUIRE(f.app.closed.size() == 1);
    CHECK(f.app.closed[0].first == *refused);
    CHECK(f.app.closed[0].second == CloseReason::refused);
    CHECK_FALSE(f.tcp.valid(*refused));

    const auto lost = f.tcp.connect(peer_ip, 8080, f.app);
    REQUIRE(lost);
    f.step();
    CHECK(f.sent_one().fl() == flag::syn);
    f.run_for(1001ms, 10ms);
    CHECK(f.sent_one().fl() == flag::syn);
    f.run_for(2001ms, 10ms);
    CHECK(f.sent_one().fl() == flag::syn);
    f.run_for(4001ms, 10ms);
    CHECK(f.sent().empty());
    REQUIRE(f.app.closed.size() == 2);
    CHECK(f.app.closed[1].second == CloseReason::timed_out);
}

TEST_CASE("simultaneous open", "[tcp][open][active]")
{
    TcpFixture f;
    const auto id = f.tcp.connect(peer_ip, 8080, f.app);
    REQUIRE(id);
    f.step();
    const Seg syn = f.sent_one();
    // The peer's own SYN crosses ours.
    f.send(Seg().ports(8080, syn.r.source_port).seq(remote_isn).flags(flag::syn).mss(1460));
    const Seg sa = f.sent_one();
    CHECK(sa.fl() == (flag::syn | flag::ack));
    CHECK(sa.sq() == syn.sq());
    CHECK(sa.ak() == SeqNumber(remote_isn + 1));
    CHECK(f.tcp.state(*id) == TcpState::syn_received);
    f.send(Seg().ports(8080, syn.r.source_port).seq(remote_isn + 1).ack(syn.sq() + 1));
    CHECK(f.tcp.state(*id) == TcpState::established);
    CHECK(f.app.connected.size() == 1);
}

// Data both ways: delivery, delayed ACKs, reassembly, duplicates, windows (ours and the peer's), Nagle,
// retransmission (RTO and backoff, fast retransmit, SACK), zero windows and the persist timer, PAWS.
#include "tcp_fixture.hpp"

using namespace cm;
using namespace cm::test;
namespace flag = cm::wire::tcp_flags;

namespace {

/// A connection without timestamps or SACK (MSS 1460, peer window 64240 unscaled): exact segment sizes.
Seg plain_syn()
{
    return Seg().mss(1460);
}

}  // namespace

TEST_CASE("data in order is delivered across the 2^32 wrap, with delayed ACKs", "[tcp][data]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection();
    f.send(f.peer().payload(pattern(100)));
    CHECK(f.app.received[id.index] == pattern(100));
    CHECK(f.sent().empty());  // one small segment: the ACK waits
    f.run_for(39ms);
    CHECK(f.sent().empty());
    f.run_for(2ms);
    Seg ack = f.sent_one();
    CHECK(ack.ak() == f.remote_seq + 100u);
    CHECK(f.tcp.counters().tx_delayed_acks == 1);
    f.remote_seq += 100u;
    // Two full-sized segments (1460 - 12 bytes of timestamps) are acknowledged at once.
    f.send(f.peer().payload(pattern(1448, 100)));
    CHECK(f.sent().empty());
    f.remote_seq += 1448u;
    f.send(f.peer().payload(pattern(1448, 1548)));
    f.remote_seq += 1448u;
    ack = f.sent_one();
    CHECK(ack.ak() == f.remote_seq);
    CHECK(f.remote_seq.raw() < remote_isn);  // wrapped
    CHECK(f.app.received[id.index] == pattern(2996));
    CHECK(f.tcp.counters().rx_data_bytes == 2996);
}

TEST_CASE("out-of-order data is held, SACKed, and delivered when the hole fills", "[tcp][data][sack]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection();
    const auto data = pattern(3000);
    f.send(f.peer().seq(f.remote_seq + 2000u).payload(std::vector<std::byte>{data.begin() + 2000, data.end()}));
    Seg ack = f.sent_one();  // at once: a duplicate ACK that shows the hole
    CHECK(ack.ak() == f.remote_seq);
    REQUIRE(ack.r.sack_count == 1);
    CHECK(ack.r.sack_blocks[0].left == f.remote_seq + 2000u);
    CHECK(ack.r.sack_blocks[0].right == f.remote_seq + 3000u);
    f.send(f.peer().seq(f.remote_seq + 1000u).payload(std::vector<std::byte>{data.begin() + 1000, data.begin() + 1500}));
    ack = f.sent_one();
    REQUIRE(ack.r.sack_count == 2);
    CHECK(ack.r.sack_blocks[0].left == f.remote_seq + 1000u);  // most recent first (RFC 2018 4)
    CHECK(f.app.received[id.index].empty());
    CHECK(f.tcp.info(id)->ooo_bytes == 1500);
    f.send(f.peer().payload(std::vector<std::byte>{data.begin(), data.begin() + 1000}));
    ack = f.sent_one();  // the hole partly filled: ACK at once
    CHECK(ack.ak() == f.remote_seq + 1500u);
    CHECK(ack.r.sack_count == 1);
    f.send(f.peer().seq(f.remote_seq + 1500u).payload(std::vector<std::byte>{data.begin() + 1500, data.begin() + 2000}));
    ack = f.sent_one();
    CHECK(ack.ak() == f.remote_seq + 3000u);
    CHECK(ack.r.sack_count == 0);
    CHECK(f.app.received[id.index] == data);
    CHECK(f.tcp.counters().rx_out_of_order == 2);
}

TEST_CASE("duplicate and overlapping segments keep the first copy", "[tcp][data]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection();
    f.send(f.peer().payload("0123456789"));
    f.send(f.peer().seq(f.remote_seq + 5u).payload("XXXXXabcde"));  // overlaps 5..9, adds 10..14
    CHECK(f.app.text(id) == "0123456789abcde");
    CHECK(f.tcp.counters().rx_partial_duplicates == 1);
    f.sent();
    f.send(f.peer().payload("0123456789"));  // wholly old: ACK at once
    CHECK(f.sent_one().ak() == f.remote_seq + 15u);
    CHECK(f.tcp.counters().rx_duplicate_segments == 1);
    // Overlapping out-of-order pieces, then the gap.
    f.remote_seq += 15u;
    f.send(f.peer().seq(f.remote_seq + 4u).payload("efgh"));
    f.send(f.peer().seq(f.remote_seq + 2u).payload("cdEF"));
    f.send(f.peer().seq(f.remote_seq + 6u).payload("GHij"));
    f.send(f.peer().payload("ab"));
    CHECK(f.app.text(id) == "0123456789abcdeabcdefghij");
}

TEST_CASE("the card sends within the initial congestion window, then slow start grows it", "[tcp][data][cc]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection(plain_syn());
    const auto data = pattern(60000);
    REQUIRE(f.tcp.send(id, data) == 60000);
    f.step();
    auto segs = f.sent();
    REQUIRE(segs.size() == 10);  // IW10: 10 x 1460
    for (std::size_t i = 0; i < segs.size(); ++i) {
        CHECK(segs[i].sq() == f.local_seq + static_cast<std::uint32_t>(i * 1460));
        CHECK(segs[i].len() == 1460);
        CHECK(std::equal(segs[i].data.begin(), segs[i].data.end(), data.begin() + static_cast<std::ptrdiff_t>(i * 1460)));
    }
    CHECK(segs.back().has(flag::psh) == false);
    f.send(f.peer().ack(f.local_seq + 14600u));  // one ACK for everything: slow start adds at most 2 SMSS
    segs = f.sent();                               // (RFC 3465 L = 2)
    CHECK(segs.size() == 12);
    CHECK(f.tcp.info(id)->cwnd == 17520);
}

TEST_CASE("the card respects the peer's window and avoids silly windows", "[tcp][data][flow]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection(plain_syn().win(3000));
    // The send buffer is twice what the peer's window lets fly (send_cap): 6000 of the 10000 go in.
    REQUIRE(f.tcp.send(id, pattern(10000)) == 6000);
    f.step();
    auto segs = f.sent();
    REQUIRE(segs.size() == 2);  // 1460 + 1460; the 80 left would be a silly segment
    CHECK(segs[1].len() == 1460);
    f.send(f.peer().ack(f.local_seq + 2920u).win(3000));
    segs = f.sent();
    REQUIRE(segs.size() == 2);
    CHECK(segs[0].sq() == f.local_seq + 2920u);
}

TEST_CASE("Nagle holds a small tail while data is unacknowledged, set_nodelay sends it", "[tcp][data]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection(plain_syn());
    f.tcp.send(id, bytes_of("first"));
    f.step();
    CHECK(f.sent_one().text() == "first");
    f.tcp.send(id, bytes_of("second"));
    f.step();
    CHECK(f.sent().empty());
    f.send(f.peer().ack(f.local_seq + 5u));
    CHECK(f.sent_one().text() == "second");
    f.tcp.set_nodelay(id, true);
    f.tcp.send(id, bytes_of("third"));
    f.step();
    CHECK(f.sent_one().text() == "third");
}

TEST_CASE("send() takes what fits and asks for on_writable, reads open the window", "[tcp][data][flow]")
{
    auto config = test_config();
    config.send_buffer = 10000;
    TcpFixture f(config);
    const ConnectionId id = f.accept_connection(plain_syn());
    CHECK(f.tcp.send(id, pattern(15000)) == 10000);
    CHECK(f.tcp.send_space(id) == 0);
    f.step();
    f.sent();
    f.send(f.peer().ack(f.local_seq + 8760u));
    CHECK(f.app.writable_calls == 1);
    CHECK(f.tcp.send_space(id) == 8760);
}

TEST_CASE("the advertised window follows unread data, closes, and reopens with a window update", "[tcp][data][flow]")
{
    TcpFixture f;  // 64 KiB receive buffer, window shift 1
    f.app.auto_read = false;
    const ConnectionId id = f.accept_connection(Seg().mss(1460).ws(7));
    // The peer sends what our window allows, as a real sender would, until it is closed.
    std::size_t sent_total = 0;
    std::size_t right = 65535;  // the SYN-ACK's window
    Seg last_ack;
    for (int i = 0; i < 200 && sent_total < right; ++i) {
        const std::size_t n = std::min<std::size_t>(1460, right - sent_total);
        f.send(f.peer().seq(f.remote_seq + static_cast<std::uint32_t>(sent_total)).payload(pattern(n, sent_total)));
        sent_total += n;
        f.run_for(50ms);
        for (const Seg& s : f.sent()) {
            last_ack = s;
            right = static_cast<std::size_t>(s.ak() - f.remote_seq) + (std::size_t{s.r.window} << 1);
        }
    }
    CHECK(last_ack.ak() == f.remote_seq + static_cast<std::uint32_t>(sent_total));
    CHECK(last_ack.r.window == 0);
    CHECK(sent_total >= 65535);
    CHECK(f.tcp.readable(id) == sent_total);
    // More data is outside the closed window: dropped, and answered with an ACK.
    f.send(f.peer().seq(f.remote_seq + static_cast<std::uint32_t>(sent_total)).payload("x"));
    CHECK(f.sent_one().r.window == 0);
    // Reading a little does not reopen it (receiver SWS avoidance) ...
    std::vector<std::byte> buf(1000);
    CHECK(f.tcp.read(id, buf) == 1000);
    f.step();
    CHECK(f.sent().empty());
    // ... reading it all does, at once.
    std::vector<std::byte> rest(70000);
    CHECK(f.tcp.read(id, rest) == sent_total - 1000);
    f.step();
    const Seg update = f.sent_one();
    CHECK(update.r.window == 32768);  // 65536 >> 1
    CHECK(f.tcp.counters().tx_window_updates == 1);
}

TEST_CASE("RTO: retransmission with exponential backoff, then the connection gives up", "[tcp][timers][rto]")
{
    auto config = test_config();
    config.max_retries = 3;
    TcpFixture f(config);
    const ConnectionId id = f.accept_connection();  // RTT ~0 from timestamps: RTO = 200 ms (the minimum)
    f.tcp.send(id, bytes_of("lost"));
    f.step();
    const Seg first = f.sent_one();
    const std::array<int, 3> waits{200, 400, 800};
    for (int wait : waits) {
        f.run_for(std::chrono::milliseconds(wait - 1));
        CHECK(f.sent().empty());
        f.run_for(1ms);
        const Seg again = f.sent_one();
        CHECK(again.sq() == first.sq());
        CHECK(again.text() == "lost");
    }
    CHECK(f.tcp.counters().rto_timeouts == 3);
    CHECK(f.tcp.info(id)->cwnd == 1448);  // one segment after a timeout
    f.run_for(1599ms);
    CHECK(f.sent().empty());
    f.run_for(1ms);
    const Seg rst = f.sent_one();
    CHECK(rst.has(flag::rst));
    REQUIRE(f.app.closed.size() == 1);
    CHECK(f.app.closed[0].second == CloseReason::timed_out);
    CHECK(f.tcp.counters().retransmit_timeouts == 1);
}

TEST_CASE("an ACK during backoff resets it (Karn: no sample from a retransmission)", "[tcp][timers][rto]")
{
    TcpFixture f(test_config());
    const ConnectionId id = f.accept_connection(plain_syn());  // no timestamps: RTT from timing one segment
    f.run_for(100ms);
    f.tcp.send(id, bytes_of("a"));
    f.step();
    f.sent();
    f.run_for(1000ms);  // the handshake took no time: SRTT 0, so the RTO is the 200 ms minimum: it fired
    CHECK(f.tcp.counters().rto_timeouts >= 1);
    f.sent();
    f.send(f.peer().ack(f.local_seq + 1u));
    const auto info = f.tcp.info(id);
    CHECK(info->rto == 200ms);  // backoff reset, and no sample taken from the retransmitted segment
    CHECK(info->bytes_in_flight == 0);
}

TEST_CASE("fast retransmit on three duplicate ACKs, NewReno partial ACKs", "[tcp][recovery]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection(plain_syn());
    REQUIRE(f.tcp.send(id, pattern(14600)) == 14600);
    f.step();
    REQUIRE(f.sent().size() == 10);
    const SeqNumber s1 = f.local_seq + 1460u;
    const SeqNumber s3 = f.local_seq + 3u * 1460u;
    f.send(f.peer().ack(s1));  // segment 0 arrived, 1 and 2 were lost
    f.sent();
    for (int i = 0; i < 2; ++i) {
        f.send(f.peer().ack(s1));
        CHECK(f.sent().empty());
    }
    f.send(f.peer().ack(s1));  // third duplicate
    Seg rtx = f.sent_one();
    CHECK(rtx.sq() == s1);
    CHECK(rtx.len() == 1460);
    CHECK(f.tcp.counters().fast_retransmits == 1);
    // The partial ACK (up to the second hole) retransmits the next segment at once.
    f.send(f.peer().ack(f.local_seq + 2u * 1460u));
    bool resent = false;
    for (const Seg& s : f.sent()) {
        resent = resent || s.sq() == f.local_seq + 2u * 1460u;
    }
    CHECK(resent);
    // The full ACK ends recovery.
    f.send(f.peer().ack(f.local_seq + 14600u));
    CHECK(f.tcp.info(id)->bytes_in_flight == 0);
    CHECK(f.tcp.counters().rto_timeouts == 0);
    (void)s3;
}

TEST_CASE("SACK: only the holes are retransmitted", "[tcp][recovery][sack]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection();  // SACK and timestamps: 1448-byte segments
    REQUIRE(f.tcp.send(id, pattern(10 * 1448)) == 10 * 1448);
    f.step();
    const auto segs = f.sent();
    REQUIRE(segs.size() == 10);
    // Segments 0 and 1 lost; 2..9 arrived.
    const SeqNumber lost0 = f.local_seq;
    const SeqNumber lost1 = f.local_seq + 1448u;
    const SeqNumber end = f.local_seq + 10u * 1448u;
    f.send(f.peer().ack(lost0).sack({{lost1 + 1448u, end}}));
    const auto rtx = f.sent();
    REQUIRE(rtx.size() == 2);
    CHECK(rtx[0].sq() == lost0);
    CHECK(rtx[1].sq() == lost1);
    CHECK(f.tcp.counters().fast_retransmits == 1);
    CHECK(f.tcp.counters().sack_retransmits == 1);
    // Further duplicate ACKs do not resend what the scoreboard shows as received.
    f.send(f.peer().ack(lost0).sack({{lost1 + 1448u, end}}));
    for (const Seg& s : f.sent()) {
        CHECK(s.sq() >= end);
    }
    f.send(f.peer().ack(end));
    CHECK(f.tcp.info(id)->bytes_in_flight == 0);
    CHECK(f.tcp.counters().rto_timeouts == 0);
}

TEST_CASE("zero window: the card stops, probes with backoff, resumes when the window opens", "[tcp][flow][persist]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection(plain_syn());
    f.send(f.peer().win(0));
    CHECK(f.tcp.info(id)->snd_wnd == 0);
    REQUIRE(f.tcp.send(id, pattern(1000)) == 1000);
    f.step();
    CHECK(f.sent().empty());
    f.run_for(199ms);
    CHECK(f.sent().empty());
    f.run_for(1ms);
    Seg probe = f.sent_one();
    CHECK(probe.sq() == f.local_seq - 1);
    CHECK(probe.len() == 0);
    CHECK(f.tcp.counters().zero_window_probes == 1);
    f.send(f.peer().win(0));  // the answer: still closed
    f.run_for(399ms);
    CHECK(f.sent().empty());
    f.run_for(1ms);
    probe = f.sent_one();  // backed off
    CHECK(probe.sq() == f.local_seq - 1);
    CHECK(f.tcp.counters().zero_window_probes == 2);
    f.send(f.peer().win(5000));  // the window opens
    const Seg data = f.sent_one();
    CHECK(data.sq() == f.local_seq);
    CHECK(data.len() == 1000);
    f.send(f.peer().ack(f.local_seq + 1000u).win(5000));
    f.run_for(2s);
    CHECK(f.sent().empty());  // the persist timer stopped with the window open
    CHECK(f.tcp.counters().rto_timeouts == 0);
}

TEST_CASE("PAWS drops a segment with an old timestamp and answers it with an ACK", "[tcp][paws]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection();
    f.send(f.peer().ts(2000, 0).payload("new"));
    CHECK(f.app.text(id) == "new");
    f.run_for(50ms);
    f.sent();
    f.send(f.peer().seq(f.remote_seq + 3u).ts(1500, 0).payload("old"));
    const Seg ack = f.sent_one();
    CHECK(ack.ak() == f.remote_seq + 3u);
    CHECK(f.app.text(id) == "new");
    CHECK(f.tcp.counters().rx_paws_rejected == 1);
    REQUIRE(ack.r.timestamps);
    CHECK(ack.r.timestamps->echo_reply == 2000);
}

TEST_CASE("an ACK for data never sent is answered with an ACK and ignored", "[tcp][input]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection(plain_syn());
    f.send(f.peer().ack(f.local_seq + 100u).payload("data"));
    const Seg ack = f.sent_one();
    CHECK(ack.ak() == f.remote_seq);
    CHECK(f.app.text(id).empty());
    CHECK(f.tcp.counters().rx_ack_unsent == 1);
}

TEST_CASE("the card's free memory bounds its window and its sending, everything comes back", "[tcp][flow][pool]")
{
    auto config = test_config();
    config.pool_chunks = 16;  // 32 KiB for everything
    TcpFixture f(config);
    f.tcp.listen(card_port, f.app);
    f.send(Seg().seq(remote_isn).flags(flag::syn).mss(1460));
    const Seg sa = f.sent_one();
    CHECK(sa.r.window == 16 * 2048);  // less than the 64 KiB receive buffer: the pool is the limit
    f.card_isn = sa.sq();
    f.local_seq = sa.sq() + 1;
    f.remote_seq = SeqNumber(remote_isn + 1);
    f.send(f.peer());
    REQUIRE(f.app.accepted.size() == 1);
    const ConnectionId id = f.app.accepted[0];
    // A send larger than the pool: short (a lone sender's buffer is three quarters of the pool when the pool
    // is smaller than send_buffer: the rest stays for receiving), and on_writable once ACKs free chunks.
    const std::size_t taken = f.tcp.send(id, pattern(60000));
    CHECK(taken == 12 * 2048);
    CHECK(f.tcp.pool().in_use() == 12);
    CHECK(f.tcp.send_space(id) == 0);
    f.step();
    std::size_t acked = 0;
    for (int round = 0; round < 20 && acked < taken; ++round) {
        for (const Seg& s : f.sent()) {
            acked = std::max<std::size_t>(acked, static_cast<std::size_t>((s.sq() + static_cast<std::uint32_t>(s.len())) - f.local_seq));
        }
        f.send(f.peer().ack(f.local_seq + static_cast<std::uint32_t>(acked)));
    }
    CHECK(acked == taken);
    CHECK(f.app.writable_calls >= 1);
    CHECK(f.tcp.pool().in_use() == 0);
    CHECK(f.tcp.buffer_sets_in_use() == 0);  // quiet again: the buffers went back
}

TEST_CASE("after more than an RTO of quiet, cwnd restarts from the initial window", "[tcp][data][cc]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection(plain_syn());
    REQUIRE(f.tcp.send(id, pattern(14600)) == 14600);
    f.step();
    CHECK(f.sent().size() == 10);
    f.send(f.peer().ack(f.local_seq + 14600u));
    CHECK(f.tcp.info(id)->cwnd == 17520);
    f.local_seq += 14600u;
    f.run_for(100ms);  // less than the RTO (200 ms): the window stays
    REQUIRE(f.tcp.send(id, pattern(12 * 1460)) == 12 * 1460);
    f.step();
    CHECK(f.sent().size() == 12);  // the grown window, all of it
    f.send(f.peer().ack(f.local_seq + 12u * 1460u));
    f.local_seq += 12u * 1460u;
    CHECK(f.tcp.info(id)->bytes_in_flight == 0);
    f.run_for(1s);  // quiet for longer than an RTO
    REQUIRE(f.tcp.send(id, pattern(30000)) == 30000);
    f.step();
    CHECK(f.sent().size() == 10);  // back to IW10
}

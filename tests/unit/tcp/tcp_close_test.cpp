// Closing: FIN both ways, half-close, simultaneous close, TIME_WAIT on the wheel, close/abort semantics,
// RST send and receive with RFC 5961, keep-alive, the application's timer.
#include "tcp_fixture.hpp"

using namespace cm;
using namespace cm::test;
namespace flag = cm::wire::tcp_flags;

TEST_CASE("active close: FIN_WAIT_1, FIN_WAIT_2, TIME_WAIT, expiry on the wheel", "[tcp][close][timers]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection(Seg().mss(1460));
    f.tcp.send(id, bytes_of("bye"));
    f.tcp.close(id);
    CHECK_FALSE(f.tcp.valid(id));  // the application gave the id up
    CHECK(f.tcp.state(id) == TcpState::fin_wait_1);
    f.step();
    const Seg fin = f.sent_one();  // the FIN rides on the last data
    CHECK(fin.has(flag::fin | flag::ack));
    CHECK(fin.text() == "bye");
    f.send(f.peer().ack(f.local_seq + 4u));
    CHECK(f.tcp.state(id) == TcpState::fin_wait_2);
    f.send(f.peer().ack(f.local_seq + 4u).flags(flag::fin | flag::ack));
    const Seg ack = f.sent_one();
    CHECK(ack.ak() == f.remote_seq + 1u);
    CHECK(f.tcp.state(id) == TcpState::time_wait);
    CHECK(f.tcp.counters().conn_time_wait == 1);
    // The peer did not hear our ACK and resends its FIN: ACK again, TIME_WAIT restarts.
    f.run_for(500ms);
    f.send(f.peer().ack(f.local_seq + 4u).flags(flag::fin | flag::ack));
    CHECK(f.sent_one().ak() == f.remote_seq + 1u);
    f.run_for(999ms);
    CHECK(f.tcp.state(id) == TcpState::time_wait);
    f.run_for(2ms);
    CHECK_FALSE(f.tcp.state(id));
    CHECK(f.tcp.counters().time_wait_expired == 1);
    CHECK(f.tcp.counters().conn_time_wait == 0);
    CHECK(f.app.closed.empty());  // the application closed it: no callback
}

TEST_CASE("passive close: CLOSE_WAIT, end of stream, LAST_ACK", "[tcp][close]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection(Seg().mss(1460));
    f.send(f.peer().payload("last words").flags(flag::fin | flag::ack));
    CHECK(f.sent_one().ak() == f.remote_seq + 11u);  // FIN acknowledged at once
    CHECK(f.app.text(id) == "last words");
    CHECK(f.tcp.peer_closed(id));
    CHECK(f.tcp.state(id) == TcpState::close_wait);
    f.tcp.send(id, bytes_of("ok"));  // CLOSE_WAIT may still send
    f.tcp.close(id);
    CHECK(f.tcp.state(id) == TcpState::last_ack);
    f.step();
    const Seg fin = f.sent_one();
    CHECK(fin.has(flag::fin));
    CHECK(fin.text() == "ok");
    f.remote_seq += 11u;
    f.send(f.peer().ack(f.local_seq + 3u));
    CHECK_FALSE(f.tcp.state(id));
    CHECK(f.app.closed.empty());
}

TEST_CASE("half-close: after shutdown_write the peer keeps sending, and on_closed ends it", "[tcp][close]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection(Seg().mss(1460));
    f.tcp.shutdown_write(id);
    CHECK(f.tcp.valid(id));
    f.step();
    const Seg fin = f.sent_one();
    CHECK(fin.fl() == (flag::fin | flag::ack));
    CHECK(fin.sq() == f.local_seq);
    CHECK(f.tcp.send(id, bytes_of("late")) == 0);  // writing is over
    f.send(f.peer().ack(f.local_seq + 1u).payload("still talking"));
    CHECK(f.app.text(id) == "still talking");
    CHECK(f.tcp.state(id) == TcpState::fin_wait_2);
    f.remote_seq += 13u;
    f.send(f.peer().ack(f.local_seq + 1u).flags(flag::fin | flag::ack));
    CHECK(f.tcp.state(id) == TcpState::time_wait);
    CHECK(f.tcp.peer_closed(id));
    f.run_for(1001ms, 10ms);
    REQUIRE(f.app.closed.size() == 1);
    CHECK(f.app.closed[0].second == CloseReason::normal);
    CHECK_FALSE(f.tcp.valid(id));
}

TEST_CASE("simultaneous close: FIN_WAIT_1, CLOSING, TIME_WAIT", "[tcp][close]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection(Seg().mss(1460));
    f.tcp.shutdown_write(id);
    f.step();
    CHECK(f.sent_one().has(flag::fin));
    // The peer's FIN crosses ours: it does not acknowledge our FIN yet.
    f.send(f.peer().flags(flag::fin | flag::ack));
    CHECK(f.tcp.state(id) == TcpState::closing);
    CHECK(f.sent_one().ak() == f.remote_seq + 1u);
    f.send(f.peer().seq(f.remote_seq + 1u).ack(f.local_seq + 1u));
    CHECK(f.tcp.state(id) == TcpState::time_wait);
    f.tcp.close(id);
    f.run_for(1001ms, 10ms);
    CHECK_FALSE(f.tcp.state(id));
}

TEST_CASE("an unacknowledged FIN is retransmitted", "[tcp][close][rto]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection();
    f.tcp.close(id);
    f.step();
    const Seg fin = f.sent_one();
    f.run_for(200ms);
    const Seg again = f.sent_one();
    CHECK(again.has(flag::fin));
    CHECK(again.sq() == fin.sq());
    CHECK(f.tcp.counters().retransmits == 1);
}

TEST_CASE("FIN_WAIT_2 of a closed connection is bounded", "[tcp][close][timers]")
{
    auto config = test_config();
    config.fin_wait2_timeout = std::chrono::seconds(5);
    TcpFixture f(config);
    const ConnectionId id = f.accept_connection(Seg().mss(1460));
    f.tcp.close(id);
    f.step();
    f.sent();
    f.send(f.peer().ack(f.local_seq + 1u));
    CHECK(f.tcp.state(id) == TcpState::fin_wait_2);
    f.run_for(5001ms, 10ms);
    CHECK_FALSE(f.tcp.state(id));
    CHECK(f.tcp.counters().fin_wait2_timeouts == 1);
}

TEST_CASE("close() with unread data resets, as does data arriving after close()", "[tcp][close][rst]")
{
    TcpFixture f;
    f.app.auto_read = false;
    ConnectionId id = f.accept_connection(Seg().mss(1460));
    f.send(f.peer().payload("unread"));
    f.tcp.close(id);
    Seg rst = f.sent_one();
    CHECK(rst.has(flag::rst));
    CHECK_FALSE(f.tcp.state(id));

    f.app.auto_read = true;
    f.tcp.unlisten(card_port);
    id = f.accept_connection(Seg().ports(peer_port + 1, card_port).mss(1460));
    f.tcp.close(id);
    f.step();
    CHECK(f.sent_one().has(flag::fin));
    Seg late = f.peer().ports(peer_port + 1, card_port).payload("too late");
    f.send(late);
    rst = f.sent_one();
    CHECK(rst.has(flag::rst));
    CHECK(f.tcp.counters().rx_data_after_close == 1);
    CHECK_FALSE(f.tcp.state(id));
}

TEST_CASE("abort sends RST, drops queued data and gives the id up without a callback", "[tcp][close][rst]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection(Seg().mss(1460).win(0));
    f.tcp.send(id, pattern(5000));
    f.tcp.abort(id);
    const Seg rst = f.sent_one();
    CHECK(rst.has(flag::rst | flag::ack));
    CHECK(rst.sq() == f.local_seq);
    CHECK_FALSE(f.tcp.valid(id));
    CHECK(f.app.closed.empty());
    CHECK(f.tcp.send(id, pattern(10)) == 0);  // a stale id is harmless
    CHECK(f.tcp.counters().api_stale_id == 1);
    CHECK(f.tcp.counters().conn_aborted == 1);
}

TEST_CASE("RST validation: exact, in window (challenge), outside (ignored), SYN challenged", "[tcp][rst][rfc5961]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection(Seg().mss(1460));
    // In the window but not at RCV.NXT: a challenge ACK, the connection lives.
    f.send(f.peer().seq(f.remote_seq + 100u).flags(flag::rst));
    Seg ack = f.sent_one();
    CHECK(ack.fl() == flag::ack);
    CHECK(ack.ak() == f.remote_seq);
    CHECK(f.tcp.state(id) == TcpState::established);
    CHECK(f.tcp.counters().rx_rst_challenged == 1);
    // Outside the window: silently dropped.
    f.send(f.peer().seq(f.remote_seq + 1000000u).flags(flag::rst));
    CHECK(f.sent().empty());
    CHECK(f.tcp.counters().rx_rst_ignored == 1);
    // A SYN on an established connection: challenge ACK (RFC 5961 4).
    f.send(f.peer().seq(f.remote_seq + 5u).flags(flag::syn));
    CHECK(f.sent_one().ak() == f.remote_seq);
    CHECK(f.tcp.counters().rx_syn_in_sync == 1);
    CHECK(f.tcp.state(id) == TcpState::established);
    // An ACK older than the window allows: challenge ACK, ignored (RFC 5961 5).
    f.send(f.peer().ack(f.local_seq - 70000).payload("x"));
    CHECK(f.sent_one().ak() == f.remote_seq);
    CHECK(f.tcp.counters().rx_old_ack == 1);
    CHECK(f.app.text(id).empty());
    // Exactly at RCV.NXT: the connection is reset.
    f.send(f.peer().flags(flag::rst));
    CHECK(f.sent().empty());
    REQUIRE(f.app.closed.size() == 1);
    CHECK(f.app.closed[0].second == CloseReason::reset);
    CHECK(f.tcp.counters().conn_reset_by_peer == 1);
    CHECK(f.tcp.counters().challenge_acks == 3);
}

TEST_CASE("challenge ACKs are rate-limited", "[tcp][rst][rfc5961]")
{
    auto config = test_config();
    config.challenge_ack_limit = 2;
    TcpFixture f(config);
    f.accept_connection(Seg().mss(1460));
    for (int i = 0; i < 5; ++i) {
        f.send(f.peer().seq(f.remote_seq + 100u + static_cast<std::uint32_t>(i)).flags(flag::rst));
    }
    CHECK(f.sent().size() == 2);
    CHECK(f.tcp.counters().challenge_acks_limited == 3);
    f.run_for(1001ms, 10ms);
    f.send(f.peer().seq(f.remote_seq + 100u).flags(flag::rst));
    CHECK(f.sent().size() == 1);  // a new second, a new budget
}

TEST_CASE("a RST in SYN_RECEIVED sends the half-open connection away quietly", "[tcp][rst][open]")
{
    TcpFixture f;
    f.tcp.listen(card_port, f.app);
    f.send(Seg().seq(remote_isn).flags(flag::syn));
    const Seg sa = f.sent_one();
    f.send(Seg().seq(remote_isn + 1).flags(flag::rst));
    CHECK(f.tcp.connection_count() == 0);
    CHECK(f.app.closed.empty());
    (void)sa;
}

TEST_CASE("keep-alive: probes after idle, answered ones reset the count, unanswered ones reset the connection",
          "[tcp][keepalive][timers]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection(Seg().mss(1460));
    tcp::KeepAliveSettings ka;
    ka.enabled = true;
    ka.idle = std::chrono::seconds(10);
    ka.interval = std::chrono::seconds(1);
    ka.probes = 3;
    f.tcp.set_keepalive(id, ka);
    f.run_for(9990ms, 10ms);
    CHECK(f.sent().empty());
    f.run_for(20ms);
    Seg probe = f.sent_one();
    CHECK(probe.sq() == f.local_seq - 1);
    CHECK(probe.len() == 0);
    f.send(f.peer());  // the peer answers: idle again
    f.run_for(9990ms, 10ms);
    CHECK(f.sent().empty());
    f.run_for(20ms);
    CHECK(f.sent_one().sq() == f.local_seq - 1);
    f.run_for(1000ms, 10ms);
    CHECK(f.sent().size() == 1);
    f.run_for(1000ms, 10ms);
    CHECK(f.sent().size() == 1);
    f.run_for(1000ms, 10ms);
    const Seg rst = f.sent_one();
    CHECK(rst.has(flag::rst));
    REQUIRE(f.app.closed.size() == 1);
    CHECK(f.app.closed[0].second == CloseReason::keepalive_timeout);
    CHECK(f.tcp.counters().keepalive_probes == 4);
    CHECK(f.tcp.counters().keepalive_timeouts == 1);
}

TEST_CASE("the application's timer fires once, can be replaced and cancelled", "[tcp][timers]")
{
    TcpFixture f;
    const ConnectionId id = f.accept_connection(Seg().mss(1460));
    f.tcp.set_timer(id, 100ms);
    f.tcp.set_timer(id, 300ms);  // replaces
    f.run_for(299ms, 10ms);
    CHECK(f.app.timer_calls == 0);
    f.run_for(10ms, 10ms);
    CHECK(f.app.timer_calls == 1);
    f.run_for(1s, 10ms);
    CHECK(f.app.timer_calls == 1);
    f.tcp.set_timer(id, 100ms);
    f.tcp.cancel_timer(id);
    f.run_for(1s, 10ms);
    CHECK(f.app.timer_calls == 1);
}

TEST_CASE("a new SYN for a tuple in TIME_WAIT replaces it", "[tcp][close][open]")
{
    TcpFixture f;
    ConnectionId id = f.accept_connection(Seg().mss(1460));
    f.tcp.close(id);
    f.step();
    f.sent();
    f.send(f.peer().ack(f.local_seq + 1u).flags(flag::fin | flag::ack));
    f.send(f.peer().seq(f.remote_seq + 1u).ack(f.local_seq + 1u));
    CHECK(f.tcp.state(id) == TcpState::time_wait);
    f.sent();
    f.send(Seg().seq(f.remote_seq + 100000u).flags(flag::syn).mss(1460));
    CHECK(f.sent_one().has(flag::syn | flag::ack));
    CHECK(f.tcp.counters().time_wait_reused == 1);
    CHECK(f.tcp.counters().conn_syn_received == 1);
}

TEST_CASE("a closed connection held on a zero window is reset after max_retries probes", "[tcp][close][persist]")
{
    auto config = test_config();
    config.max_retries = 3;
    TcpFixture f(config);
    const ConnectionId id = f.accept_connection(Seg().mss(1460).win(0));
    f.tcp.send(id, pattern(100));
    f.tcp.close(id);
    for (int i = 0; i < 3; ++i) {
        f.run_for(std::chrono::seconds(2 << i), 10ms);
        const auto probes = f.sent();
        REQUIRE_FALSE(probes.empty());
        f.send(f.peer().win(0));  // answered, but the window stays shut
    }
    f.run_for(60s, 10ms);
    CHECK_FALSE(f.tcp.state(id));
    CHECK(f.tcp.counters().zero_window_probes == 3);
    CHECK(f.tcp.counters().retransmit_timeouts == 1);
}

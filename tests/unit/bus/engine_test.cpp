// The card's bus engine against a hand-driven host (fake_host.hpp): the echo path, flow control in both
// directions, close semantics, every kind of bad descriptor, queue pair faults and reclaim.
#include "fake_host.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>

using namespace cm::bus;
using namespace cm::bus::test;

namespace {

std::size_t count(const std::vector<cm_bus_desc>& events, std::uint16_t opcode)
{
    return static_cast<std::size_t>(
        std::count_if(events.begin(), events.end(), [&](const cm_bus_desc& e) { return e.opcode == opcode; }));
}

const cm_bus_desc* find(const std::vector<cm_bus_desc>& events, std::uint16_t opcode)
{
    auto it = std::find_if(events.begin(), events.end(), [&](const cm_bus_desc& e) { return e.opcode == opcode; });
    return it == events.end() ? nullptr : &*it;
}

std::uint32_t hdr_need_wakeup(const Host& host)
{
    return host.hdr->host_need_wakeup;
}

void check_clean(Card& card)
{
    CHECK(card.engine->check_invariants().empty());
}

}  // namespace

TEST_CASE("engine: formats the memory the way a host checks it")
{
    Card card;
    std::string why;
    CHECK(check_ctrl(card.engine->ctrl(), card.layout.total_size, why));
    CHECK(card.engine->ctrl().fw_state == CM_BUS_FW_READY);
    CHECK(card.engine->qp_header(0).state == CM_BUS_QP_FREE);
    card.clock.advance(std::chrono::seconds(1));
    card.run();
    CHECK(card.engine->ctrl().heartbeat == 1);
}

TEST_CASE("engine: echo round trip, EOF both ways, graceful close")
{
    Card card;
    Host host(card, 1);
    const std::uint32_t conn = host.connect_echo();
    REQUIRE(conn != 0);
    host.submit(host.data(conn, host.h2c(0), "hello, card"));
    card.run();
    auto events = host.events();
    const cm_bus_desc* done = find(events, CM_BUS_EV_TX_DONE);
    REQUIRE(done != nullptr);
    CHECK(done->slot == host.h2c(0));
    const cm_bus_desc* echoed = find(events, CM_BUS_EV_DATA);
    REQUIRE(echoed != nullptr);
    CHECK(std::string(reinterpret_cast<const char*>(host.slot(echoed->slot)) + echoed->offset, echoed->len) == "hello, card");
    cm_bus_desc ret = host.op(CM_BUS_SQ_BUF_RETURN);
    ret.slot = echoed->slot;
    host.submit(ret);
    host.submit(host.op(CM_BUS_SQ_EOF, conn));
    card.run();
    events = host.events();
    CHECK(count(events, CM_BUS_EV_EOF) == 1);
    host.submit(host.op(CM_BUS_SQ_CLOSE, conn));
    card.run();
    events = host.events();
    CHECK(count(events, CM_BUS_EV_CLOSED) == 1);
    CHECK(card.engine->counters().conns_open == 0);
    CHECK(card.engine->counters().c2h_lent == 0);
    // The id is dead now: anything naming it is refused.
    host.submit(host.op(CM_BUS_SQ_EOF, conn));
    card.run();
    CHECK(count(host.events(), CM_BUS_EV_ERROR) == 1);
    CHECK(card.engine->counters().bad_conn == 1);
    check_clean(card);
}

TEST_CASE("engine: flow control: the c2h window, then h2c credit exhaustion resets")
{
    Card card;  // credit 4 each way
    Host host(card, 1);
    const std::uint32_t conn = host.connect_echo();
    REQUIRE(conn != 0);
    // The host reads nothing (returns no c2h slot): 4 come back, the next 4 are held, then credit is gone.
    for (std::uint32_t i = 0; i < 8; ++i) {
        REQUIRE(host.submit(host.data(conn, host.h2c(i), "x")));
        card.run();
    }
    auto events = host.events();
    CHECK(count(events, CM_BUS_EV_DATA) == 4);
    CHECK(count(events, CM_BUS_EV_TX_DONE) == 4);
    CHECK(card.engine->counters().h2c_held == 4);
    CHECK(card.engine->counters().c2h_lent == 4);
    check_clean(card);
    // Returning one c2h slot lets one held slot go back out.
    const cm_bus_desc* first = find(events, CM_BUS_EV_DATA);
    cm_bus_desc ret = host.op(CM_BUS_SQ_BUF_RETURN);
    ret.slot = first->slot;
    host.submit(ret);
    card.run();
    events = host.events();
    CHECK(count(events, CM_BUS_EV_DATA) == 1);
    CHECK(count(events, CM_BUS_EV_TX_DONE) == 1);
    // Beyond credit: 4 held, a fifth and a sixth are refused and the connection is reset.
    REQUIRE(host.submit(host.data(conn, host.h2c(8), "y")));
    card.run();
    REQUIRE(host.submit(host.data(conn, host.h2c(9), "z")));
    card.run();
    events = host.events();
    CHECK(card.engine->counters().no_credit == 1);
    const cm_bus_desc* reset = find(events, CM_BUS_EV_RESET);
    REQUIRE(reset != nullptr);
    CHECK(reset->conn == conn);
    // The reset gave every held slot back (TX_DONE), including the refused one.
    CHECK(card.engine->counters().h2c_held == 0);
    host.submit(host.op(CM_BUS_SQ_CLOSE, conn));
    card.run();
    CHECK(count(host.events(), CM_BUS_EV_CLOSED) == 1);
    check_clean(card);
}

TEST_CASE("engine: bad descriptors are counted and answered, the queue pair goes on")
{
    Card card;
    Host host(card, 1);
    Host other(card, 2);
    const std::uint32_t conn = host.connect_echo();
    const std::uint32_t other_conn = other.connect_echo();
    REQUIRE(conn != 0);
    REQUIRE(other_conn != 0);
    cm_bus_desc d = host.op(0x7f);
    host.submit(d);  // unknown opcode
    d = host.op(CM_BUS_SQ_BUF_RETURN);
    d.slot = host.card.layout.c2h_first(host.qp);  // never lent
    host.submit(d);
    d = host.op(CM_BUS_SQ_BUF_RETURN);
    d.slot = 0xfffffff0u;  // nowhere
    host.submit(d);
    host.submit(host.data(conn + 0x10000, host.h2c(0), "stale generation"));
    card.run();
    auto events = host.events();
    CHECK(count(events, CM_BUS_EV_ERROR) == 4);
    const BusCounters& c = card.engine->counters();
    CHECK(c.bad_opcode == 1);
    CHECK(c.bad_return == 2);
    CHECK(c.bad_conn == 1);
    // A slot of another queue pair, and a length past the slot: the connection is reset.
    host.submit(host.data(conn, other.h2c(0), "theirs"));
    card.run();
    CHECK(c.bad_slot == 1);
    CHECK(count(host.events(), CM_BUS_EV_RESET) == 1);
    const std::uint32_t conn2 = host.connect_echo();
    d = host.data(conn2, host.h2c(1), "x");
    d.offset = card.layout.slot_size - 1;
    d.len = 2;
    host.submit(d);
    card.run();
    CHECK(c.bad_length == 1);
    // The same slot submitted twice while the card holds it.
    host.submit(host.op(CM_BUS_SQ_SETOPT, conn2));
    card.run();
    CHECK(c.qp_faults == 0);
    CHECK(host.hdr->state == CM_BUS_QP_ATTACHED);
    // The other queue pair never noticed.
    other.submit(other.data(other_conn, other.h2c(0), "fine"));
    card.run();
    CHECK(find(other.events(), CM_BUS_EV_DATA) != nullptr);
    check_clean(card);
}

TEST_CASE("engine: an impossible index faults that queue pair only, detach reclaims it")
{
    Card card;
    Host host(card, 1);
    Host other(card, 2);
    const std::uint32_t conn = host.connect_echo();
    const std::uint32_t other_conn = other.connect_echo();
    host.submit(host.data(conn, host.h2c(0), "held"));
    host.hdr->sq_prod += 1000;
    card.run();
    CHECK(host.hdr->state == CM_BUS_QP_FAULT);
    CHECK(host.hdr->fault == CM_BUS_FAULT_SQ_INDEX);
    CHECK(card.engine->counters().qp_faults == 1);
    other.submit(other.data(other_conn, other.h2c(0), "still here"));
    card.run();
    CHECK(find(other.events(), CM_BUS_EV_DATA) != nullptr);
    CHECK(card.engine->detach_peer(1) == 1);
    CHECK(host.hdr->state == CM_BUS_QP_FREE);
    CHECK(card.engine->counters().conns_reclaimed == 1);
    CHECK(card.engine->counters().qp_in_use == 1);
    // The freed queue pair attaches again, clean.
    Host again(card, 3);
    CHECK(again.qp == host.qp);
    CHECK(again.connect_echo() != 0);
    check_clean(card);
}

TEST_CASE("engine: a host that does not read events stalls only itself")
{
    Card card;
    Host host(card, 1);
    const std::uint32_t conn = host.connect_echo();
    host.events();
    // NOPs answered with ACKs until the event ring is full; the card then leaves submissions in the ring.
    int submitted = 0;
    for (int round = 0; round < 10; ++round) {
        while (host.submit(host.op(CM_BUS_SQ_NOP))) {
            ++submitted;
        }
        card.run();
    }
    CHECK(host.eq.refresh());
    CHECK(host.eq.available() <= card.layout.ring_entries);
    CHECK(card.engine->counters().sq_descs < static_cast<std::uint64_t>(submitted) + 2);
    // Reading the events lets the card go on.
    const std::size_t first = host.events().size();
    card.run();
    CHECK(first > 0);
    CHECK(!host.events().empty());
    host.submit(host.op(CM_BUS_SQ_RESET, conn));
    for (int i = 0; i < 10; ++i) {
        card.run();
        host.events();
    }
    CHECK(card.engine->counters().conns_open == 0);
    check_clean(card);
}

TEST_CASE("engine: the echo service dials a listener (NEW_CONN with the client's address)")
{
    Card card;
    Host host(card, 1);
    cm_bus_desc listen = host.op(CM_BUS_SQ_LISTEN);
    listen.aux = 8080;
    host.submit(listen);
    cm_bus_desc dial = host.op(CM_BUS_SQ_SET_GLOBAL);
    dial.aux = CM_BUS_GOPT_ECHO_DIAL;
    dial.value = 8080 | (3ull << 16);
    host.submit(dial);
    card.run();
    const auto events = host.events();
    CHECK(count(events, CM_BUS_EV_NEW_CONN) == 3);
    const cm_bus_desc* n = find(events, CM_BUS_EV_NEW_CONN);
    REQUIRE(n != nullptr);
    CHECK(n->peer_addr == EchoService::test_client_addr);
    CHECK(n->local_port == 8080);
    CHECK(n->credit == card.layout.conn_credit);
    CHECK(events.back().opcode == CM_BUS_EV_ACK);  // the answer after the connections
    CHECK(events.back().status == 0);
    cm_bus_desc listen_again = host.op(CM_BUS_SQ_LISTEN);
    listen_again.aux = 8080;
    host.submit(listen_again);
    card.run();
    CHECK(host.events().back().status == CM_BUS_EADDRINUSE);
    check_clean(card);
}

namespace {

/// A card-side handler that only records how its connection ended.
struct Recorder final : BusConnHandler {
    std::vector<CloseReason> closed;
    std::size_t on_data(ConnRef, std::span<const std::byte> data) override { return data.size(); }
    void on_eof(ConnRef) override {}
    void on_closed(ConnRef, CloseReason reason) override { closed.push_back(reason); }
};

}  // namespace

TEST_CASE("engine: a memory-peer queue pair released by the driver is reset and lent again")
{
    Card card;
    const std::uint32_t lent = *card.engine->attach(CM_BUS_MEMORY_PEER);
    Host other(card, 1);  // an attach-socket peer beside it: never touched by the release
    const std::uint32_t other_conn = other.connect_echo();
    REQUIRE(other_conn != 0);
    CHECK_FALSE(card.engine->memory_peer_active());  // lent, but no process on it: no polling needed

    // A process in the VM attaches (the driver writes host_pid), listens, and gets a client's connection
    // that it leaves with data held by the card; plus an echo connection of its own.
    Host host(card, lent, nullptr);
    host.hdr->host_pid = 1234;
    CHECK(card.engine->memory_peer_active());
    const std::uint32_t gen = host.hdr->generation;
    {
        // Per queue pair (BusDevice stops polling a lending whose host rang): the memory peer's, with its
        // generation; the attach-socket peer's queue pair never is.
        std::uint32_t g = 0;
        CHECK(card.engine->memory_peer_active(lent, g));
        CHECK(g == gen);
        std::uint32_t g_other = 0;
        CHECK_FALSE(card.engine->memory_peer_active(other.qp, g_other));
        CHECK(g_other == 0);
        CHECK_FALSE(card.engine->memory_peer_active(1000, g_other));
    }
    cm_bus_desc listen = host.op(CM_BUS_SQ_LISTEN);
    listen.aux = 80;
    host.submit(listen);
    card.run();
    Recorder client;
    const auto ref = card.engine->open_connection(80, ConnInfo{}, client);
    REQUIRE(ref);
    const std::uint32_t echo_conn = host.connect_echo();
    REQUIRE(echo_conn != 0);
    host.submit(host.data(echo_conn, host.h2c(0), "in flight"));
    // No card run: the data is still in the ring when the process dies.

    SECTION("a stale or foreign release request is ignored")
    {
        host.hdr->release_req = gen + 1;
        other.hdr->release_req = other.hdr->generation;  // not the memory peer's
        card.run();
        CHECK(card.engine->counters().qp_released == 0);
        CHECK(host.hdr->generation == gen);
        CHECK(client.closed.empty());
        host.hdr->release_req = 0;
    }

    const auto release_and_check = [&] {
        // The driver: host_pid 0, then release_req = the generation it had.
        host.hdr->host_pid = 0;
        host.hdr->release_req = gen;
        CHECK(card.engine->memory_peer_active());  // a release pending: the card must look soon
        card.run();
        CHECK(card.engine->counters().qp_released == 1);
        REQUIRE(client.closed.size() == 1);
        CHECK(client.closed[0] == CloseReason::detached);  // the proxy's client gets a reset / 502
        CHECK(host.hdr->state == CM_BUS_QP_ATTACHED);
        CHECK(host.hdr->owner_peer == CM_BUS_MEMORY_PEER);
        CHECK(host.hdr->generation != gen);
        CHECK(host.hdr->release_req == 0);
        std::uint32_t g = 0;
        CHECK_FALSE(card.engine->memory_peer_active(lent, g));  // lent again, no process: not polled
        CHECK(g == host.hdr->generation);                        // a new lending: a doorbell of the old one no longer counts
        CHECK(host.hdr->sq_prod == 0);
        CHECK(host.hdr->eq_prod == 0);
        CHECK(host.hdr->fault == CM_BUS_FAULT_NONE);
        CHECK_FALSE(card.engine->listening(80));
        CHECK_FALSE(card.engine->can_send(*ref));
        CHECK_FALSE(card.engine->memory_peer_active());
        // A second request with the old generation does nothing.
        host.hdr->release_req = gen;
        card.run();
        CHECK(card.engine->counters().qp_released == 1);
        host.hdr->release_req = 0;
        // The other peer's connection still echoes.
        other.events();
        other.submit(other.data(other_conn, other.h2c(0), "still here"));
        card.run();
        CHECK(find(other.events(), CM_BUS_EV_DATA) != nullptr);
        // The next process takes the queue pair over, clean, and the old connection ids are stale.
        Host next(card, lent, nullptr);
        next.hdr->host_pid = 5678;
        next.submit(next.op(CM_BUS_SQ_EOF, echo_conn));
        card.run();
        CHECK(count(next.events(), CM_BUS_EV_ERROR) == 1);
        const std::uint32_t again = next.connect_echo();
        REQUIRE(again != 0);
        next.submit(next.data(again, next.h2c(0), "next server"));
        card.run();
        const auto events = next.events();
        const cm_bus_desc* echoed = find(events, CM_BUS_EV_DATA);
        REQUIRE(echoed != nullptr);
        CHECK(std::string(reinterpret_cast<const char*>(next.slot(echoed->slot)) + echoed->offset, echoed->len) ==
              "next server");
    };
    SECTION("released (the process died)")
    {
        release_and_check();
    }
    SECTION("released after the dying process scribbled and faulted the queue pair")
    {
        host.hdr->sq_prod += 1000;
        card.run();
        REQUIRE(host.hdr->state == CM_BUS_QP_FAULT);
        release_and_check();
    }
    check_clean(card);
}

TEST_CASE("engine: notification coalescing: one wake-up per period, none lost, none for an awake host")
{
    using namespace std::chrono_literals;
    EngineConfig config;
    config.notify_coalesce = 100us;
    Card card(small_layout(), config);
    std::vector<std::uint32_t> notified;
    card.engine->set_notify([&](std::uint32_t qp) { notified.push_back(qp); });
    Host host(card, 1);
    const std::uint32_t conn = host.connect_echo();
    REQUIRE(conn != 0);
    CHECK(notified.empty());  // the host never slept

    // A sleeping host is woken at once the first time.
    REQUIRE(host.eq.arm());
    host.submit(host.data(conn, host.h2c(0), "one"));
    card.run();
    REQUIRE(notified.size() == 1);
    CHECK(hdr_need_wakeup(host) == 0);
    host.eq.disarm();
    auto events = host.events();
    const cm_bus_desc* echoed = find(events, CM_BUS_EV_DATA);
    REQUIRE(echoed != nullptr);
    cm_bus_desc ret = host.op(CM_BUS_SQ_BUF_RETURN);
    ret.slot = echoed->slot;
    host.submit(ret);

    // Asleep again 10 us later: the events are visible at once, the wake-up waits for the period.
    card.clock.advance(10us);
    REQUIRE(host.eq.arm());
    host.submit(host.data(conn, host.h2c(1), "two"));
    card.run();
    CHECK(notified.size() == 1);
    CHECK(card.engine->counters().notifications_held == 1);
    REQUIRE(host.eq.refresh());
    CHECK(host.eq.available() >= 2);  // DATA and TX_DONE, already in the ring
    REQUIRE(card.engine->next_wakeup().has_value());
    CHECK(*card.engine->next_wakeup() == card.clock.now() + 90us);
    // More events in the same period join the same wake-up.
    card.clock.advance(50us);
    card.run();
    CHECK(notified.size() == 1);
    CHECK(card.engine->counters().notifications_held == 1);
    // The period is up: the host is woken, with no submission from it needed.
    card.clock.advance(40us);
    card.run();
    CHECK(notified.size() == 2);
    CHECK(card.engine->counters().notifications == 2);
    host.eq.disarm();
    events = host.events();
    CHECK(count(events, CM_BUS_EV_DATA) == 1);
    CHECK(count(events, CM_BUS_EV_TX_DONE) == 1);
    echoed = find(events, CM_BUS_EV_DATA);
    REQUIRE(echoed != nullptr);
    ret.slot = echoed->slot;
    host.submit(ret);
    card.run();

    // A host that stays awake within the period owes nothing: no wake-up later, no timer kept for it.
    card.clock.advance(10us);
    host.submit(host.data(conn, host.h2c(2), "three"));
    card.run();
    card.clock.advance(200us);
    card.run();
    CHECK(notified.size() == 2);
    CHECK(count(host.events(), CM_BUS_EV_DATA) == 1);
    CHECK(*card.engine->next_wakeup() > card.clock.now() + 1ms);  // the heartbeat only
    check_clean(card);
}

TEST_CASE("engine: without coalescing every pass that posts wakes a sleeping host")
{
    Card card;
    std::size_t notified = 0;
    card.engine->set_notify([&](std::uint32_t) { ++notified; });
    Host host(card, 1);
    const std::uint32_t conn = host.connect_echo();
    REQUIRE(conn != 0);
    for (std::uint32_t i = 0; i < 3; ++i) {
        REQUIRE(host.eq.arm());
        host.submit(host.data(conn, host.h2c(i), "x"));
        card.run();
        CHECK(notified == i + 1);
        host.eq.disarm();
        for (const cm_bus_desc& e : host.events()) {
            if (e.opcode == CM_BUS_EV_DATA) {
                cm_bus_desc ret = host.op(CM_BUS_SQ_BUF_RETURN);
                ret.slot = e.slot;
                host.submit(ret);
            }
        }
    }
    CHECK(card.engine->counters().notifications_held == 0);
}

TEST_CASE("engine: lazy completions: TX_DONE alone waits for a host asleep for work, never past the delay")
{
    using namespace std::chrono_literals;
    // A card-side handler that takes everything and answers nothing: the host's data gets TX_DONE alone.
    struct Sink final : BusConnHandler {
        std::size_t taken = 0;
        std::size_t on_data(ConnRef, std::span<const std::byte> data) override
        {
            taken += data.size();
            return data.size();
        }
        void on_eof(ConnRef) override {}
        void on_closed(ConnRef, CloseReason) override {}
    } sink;
    EngineConfig config;
    config.lazy_completions = 10ms;
    Card card(small_layout(), config);
    std::size_t notified = 0;
    card.engine->set_notify([&](std::uint32_t) { ++notified; });
    Host host(card, 1);
    cm_bus_desc listen = host.op(CM_BUS_SQ_LISTEN);
    listen.aux = 9000;
    host.submit(listen);
    card.run();
    (void)host.events();
    auto ref = card.engine->open_connection(9000, ConnInfo{}, sink);
    REQUIRE(ref.has_value());
    card.run();
    const auto opened = host.events();
    const cm_bus_desc* n = find(opened, CM_BUS_EV_NEW_CONN);
    REQUIRE(n != nullptr);
    const std::uint32_t conn = n->conn;
    const auto take_all = [&] {
        host.eq.disarm();
        const auto events = host.events();
        for (const cm_bus_desc& e : events) {
            if (e.opcode == CM_BUS_EV_DATA) {
                cm_bus_desc ret = host.op(CM_BUS_SQ_BUF_RETURN);
                ret.slot = e.slot;
                host.submit(ret);
            }
        }
        return events;
    };

    // Asleep for work: the TX_DONE of its data is in the ring at once, but wakes nobody yet.
    REQUIRE(host.eq.arm(CM_BUS_WAKE_WORK));
    host.submit(host.data(conn, host.h2c(0), "request"));
    card.run();
    CHECK(sink.taken == 7);
    CHECK(notified == 0);
    CHECK(card.engine->counters().notifications_lazy == 1);
    REQUIRE(host.eq.refresh());
    CHECK(host.eq.available() == 1);
    REQUIRE(card.engine->next_wakeup().has_value());
    CHECK(*card.engine->next_wakeup() == card.clock.now() + 10ms);
    // Work for the host (the answer): it is woken at once, and the TX_DONE rides along.
    card.clock.advance(1ms);
    const char answer[] = "answer";
    CHECK(card.engine->send(*ref, std::as_bytes(std::span(answer, 6))) == 6);
    card.run();
    CHECK(notified == 1);
    auto events = take_all();
    CHECK(count(events, CM_BUS_EV_TX_DONE) == 1);
    CHECK(count(events, CM_BUS_EV_DATA) == 1);

    // TX_DONE alone and a host that never wakes on its own: woken when the delay is up, not before.
    REQUIRE(host.eq.arm(CM_BUS_WAKE_WORK));
    host.submit(host.data(conn, host.h2c(1), "more"));
    card.run();
    card.clock.advance(9ms);
    card.run();
    CHECK(notified == 1);
    card.clock.advance(1ms);
    card.run();
    CHECK(notified == 2);
    CHECK(count(take_all(), CM_BUS_EV_TX_DONE) == 1);

    // A host that comes to need its slots while asleep (CM_BUS_WAKE_WORK -> ANY) is woken at the next look.
    REQUIRE(host.eq.arm(CM_BUS_WAKE_WORK));
    host.submit(host.data(conn, host.h2c(2), "again"));
    card.run();
    CHECK(notified == 2);
    CHECK(host.eq.rearm(CM_BUS_WAKE_WORK, CM_BUS_WAKE_ANY));
    card.run();
    CHECK(notified == 3);
    CHECK(count(take_all(), CM_BUS_EV_TX_DONE) == 1);

    // Asleep for anything: TX_DONE wakes it at once.
    REQUIRE(host.eq.arm(CM_BUS_WAKE_ANY));
    host.submit(host.data(conn, host.h2c(3), "last"));
    card.run();
    CHECK(notified == 4);
    (void)take_all();

    // A host that took the TX_DONE in on its own (woken by something else) is not woken for it later.
    REQUIRE(host.eq.arm(CM_BUS_WAKE_WORK));
    host.submit(host.data(conn, host.h2c(0), "quiet"));
    card.run();
    CHECK(notified == 4);
    CHECK(count(take_all(), CM_BUS_EV_TX_DONE) == 1);
    REQUIRE(host.eq.arm(CM_BUS_WAKE_WORK));
    card.clock.advance(20ms);
    card.run();
    CHECK(notified == 4);
    CHECK(sink.taken == 7 + 4 + 5 + 4 + 5);
    check_clean(card);
}

TEST_CASE("engine: a host armed for anything is notified even when it took the events in first")
{
    // libcm may take events in (cm_read, cm_write) after arming and handle them only after the notification:
    // a card that skipped a held notification because the ring was empty by then would leave that host
    // asleep. Armed for work only, libcm wakes itself for what it took in, so nothing is sent.
    using namespace std::chrono_literals;
    EngineConfig config;
    config.notify_coalesce = 100us;
    Card card(small_layout(), config);
    std::size_t notified = 0;
    card.engine->set_notify([&](std::uint32_t) { ++notified; });
    Host host(card, 1);
    const std::uint32_t conn = host.connect_echo();
    REQUIRE(conn != 0);
    const auto round = [&](std::uint32_t level, std::uint32_t slot) {
        REQUIRE(host.eq.arm(level));
        host.submit(host.data(conn, host.h2c(slot), "x"));
        card.run();  // held: the last notification was less than 100 us ago
        // Taken in without disarming (as libcm's cm_read does after cm_qp_poll armed).
        for (const cm_bus_desc& e : host.events()) {
            if (e.opcode == CM_BUS_EV_DATA) {
                cm_bus_desc ret = host.op(CM_BUS_SQ_BUF_RETURN);
                ret.slot = e.slot;
                host.submit(ret);
            }
        }
        card.clock.advance(100us);
        card.run();
    };
    REQUIRE(host.eq.arm(CM_BUS_WAKE_ANY));
    host.submit(host.data(conn, host.h2c(0), "first"));
    card.run();
    REQUIRE(notified == 1);  // the first one goes at once
    (void)host.events();
    round(CM_BUS_WAKE_ANY, 1);
    CHECK(notified == 2);
    host.eq.disarm();
    card.clock.advance(10us);
    round(CM_BUS_WAKE_WORK, 2);
    CHECK(notified == 2);
    check_clean(card);
}

#include "link/impaired_link.hpp"

#include "link/memory_link.hpp"
#include "test_frames.hpp"
#include "test_stats.hpp"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace cm;
using namespace cm::link;
using namespace cm::link::test;
using Dir = MemoryLinkPair::Direction;

namespace {

/// The card's port over an in-memory wire: pair.a() is the client's end, pair.b() the port that `card`
/// impairs. Frames from the client are "to card" (the rx profile), frames from the card "to client" (tx).
struct Wire {
    explicit Wire(FaultProfile to_card, FaultProfile to_client = {})
        : pair(clock), card(pair.b(), clock, to_card, to_client)
    {
    }
    /// The client puts `count` frames of `size` bytes numbered from `first` on the wire at once.
    void client_sends(std::uint32_t first, std::uint32_t count, std::size_t size = 60)
    {
        for (std::uint32_t i = 0; i < count; ++i) {
            REQUIRE(pair.a().send(make_frame(first + i, size)));
        }
        pair.a().flush();
    }
    ManualClock clock;
    MemoryLinkPair pair;
    ImpairedLink card;
};

}  // namespace

TEST_CASE("impaired link: no profile, frames pass straight through both ways", "[link][impaired]")
{
    Wire wire({});
    wire.client_sends(0, 5);
    Collector at_card;
    CHECK(wire.card.receive(at_card, 64) == 5);
    CHECK(at_card.seqs() == std::vector<std::uint32_t>{0, 1, 2, 3, 4});
    for (std::uint32_t i = 0; i < 5; ++i) {
        REQUIRE(wire.card.send(make_frame(100 + i, 60, mac_a, mac_b)));
    }
    CHECK(wire.pair.pending(Dir::b_to_a) == 0);  // nothing leaves before flush()
    CHECK(wire.card.flush() == 5);
    Collector at_client;
    CHECK(wire.pair.a().receive(at_client, 64) == 5);
    CHECK(at_client.frames[0] == make_frame(100, 60, mac_a, mac_b));
    CHECK(!wire.card.next_wakeup());
    CHECK(wire.card.rx_faults().frames_in == 5);
    CHECK(wire.card.tx_faults().frames_in == 5);
    // link.* are the inner link's: what crossed the real port.
    CHECK(&wire.card.counters() == &wire.pair.b().counters());
    CHECK(wire.card.wait_fd() == wire.pair.b().wait_fd());
    CHECK(wire.card.max_frame() == wire.pair.b().max_frame());
}

TEST_CASE("impaired link: each direction is delayed by its own profile, and says when to wake", "[link][impaired]")
{
    Wire wire({.delay = 10ms}, {.delay = 5ms});
    const TimePoint t0 = wire.clock.now();
    wire.client_sends(1, 1);
    Collector at_card;
    CHECK(wire.card.receive(at_card, 64) == 0);  // pulled off the wire, held back
    CHECK(wire.card.rx_pending() == 1);
    REQUIRE(wire.card.next_wakeup() == t0 + 10ms);
    wire.clock.set(t0 + 10ms - 1ns);
    CHECK(wire.card.receive(at_card, 64) == 0);
    wire.clock.set(t0 + 10ms);
    CHECK(wire.card.receive(at_card, 64) == 1);
    CHECK(!wire.card.next_wakeup());

    // The reply waits 5 ms in the card, and flush() sends only what is due.
    const TimePoint t1 = wire.clock.now();
    REQUIRE(wire.card.send(make_frame(2, 60, mac_a, mac_b)));
    CHECK(wire.card.flush() == 0);
    CHECK(wire.card.tx_pending() == 1);
    REQUIRE(wire.card.next_wakeup() == t1 + 5ms);
    wire.clock.set(t1 + 5ms - 1ns);
    CHECK(wire.card.flush() == 0);
    CHECK(wire.pair.pending(Dir::b_to_a) == 0);
    wire.clock.set(t1 + 5ms);
    CHECK(wire.card.flush() == 1);
    Collector at_client;
    CHECK(wire.pair.a().receive(at_client, 64) == 1);
    CHECK(at_client.seqs() == std::vector<std::uint32_t>{2});
    CHECK(wire.card.rx_faults().delayed == 1);
    CHECK(wire.card.tx_faults().delayed == 1);
}

TEST_CASE("impaired link: the inner link's own wake-up counts too", "[link][impaired]")
{
    ManualClock clock;
    MemoryLinkPair pair(clock, FaultProfile{.delay = 3ms});  // the wire itself is slow towards b
    ImpairedLink card(pair.b(), clock, FaultProfile{.delay = 10ms}, FaultProfile{});
    const TimePoint t0 = clock.now();
    REQUIRE(pair.a().send(make_frame(1)));
    pair.a().flush();
    CHECK(card.next_wakeup() == t0 + 3ms);  // the frame is still on the wire
    clock.set(t0 + 3ms);
    Collector got;
    CHECK(card.receive(got, 64) == 0);
    CHECK(card.next_wakeup() == t0 + 13ms);  // now in the card's to-card channel
    clock.set(t0 + 13ms);
    CHECK(card.receive(got, 64) == 1);
}

TEST_CASE("impaired link: loss rate in each direction within tolerance, counters exact", "[link][impaired]")
{
    // The same profile both ways: the directions still lose different frames (the tx seed is mixed).
    const FaultProfile lossy{.loss = 0.3, .seed = 7};
    Wire wire(lossy, lossy);
    constexpr std::uint32_t total = 20000;
    Collector at_card;
    for (std::uint32_t seq = 0; seq < total; seq += 200) {
        wire.client_sends(seq, 200);
        while (wire.card.receive(at_card, 64) > 0) {
        }
    }
    const FaultCounters& in = wire.card.rx_faults();
    CHECK(in.frames_in == total);
    CHECK(within_5_sigma(in.lost, total, 0.3));
    const auto card_seqs = at_card.seqs();
    CHECK(card_seqs.size() == total - in.lost);
    CHECK(std::is_sorted(card_seqs.begin(), card_seqs.end()));

    Collector at_client;
    for (std::uint32_t seq = 0; seq < total; ++seq) {
        REQUIRE(wire.card.send(make_frame(seq, 60, mac_a, mac_b)));
        if (seq % 100 == 99) {
            wire.card.flush();
            wire.pair.a().receive(at_client, SIZE_MAX);
        }
    }
    const FaultCounters& out = wire.card.tx_faults();
    CHECK(out.frames_in == total);
    CHECK(within_5_sigma(out.lost, total, 0.3));
    const auto client_seqs = at_client.seqs();
    CHECK(client_seqs.size() == total - out.lost);
    CHECK(wire.pair.b().counters().tx_frames == total - out.lost);  // only survivors reach the port
    CHECK(card_seqs != client_seqs);
}

TEST_CASE("impaired link: a rate spaces frames by their serialisation time", "[link][impaired]")
{
    // 1 mbit/s: a 125-byte frame is 1000 bits, 1 ms on the wire.
    Wire wire({.rate = 2'000'000}, {.rate = 1'000'000});
    const TimePoint t0 = wire.clock.now();
    for (std::uint32_t i = 0; i < 10; ++i) {
        REQUIRE(wire.card.send(make_frame(i, 125, mac_a, mac_b)));
    }
    CHECK(wire.card.flush() == 0);  // even the first frame takes 1 ms to serialise
    REQUIRE(wire.card.next_wakeup() == t0 + 1ms);
    Collector at_client;
    std::vector<TimePoint> arrived;
    for (int step = 0; step < 200; ++step) {  // 100 us steps for 20 ms
        wire.clock.advance(100us);
        wire.card.flush();
        wire.pair.a().receive(at_client, SIZE_MAX);
        arrived.resize(at_client.frames.size(), wire.clock.now());
    }
    REQUIRE(arrived.size() == 10);
    for (std::size_t i = 0; i < arrived.size(); ++i) {
        CHECK(arrived[i] == t0 + 1ms * static_cast<int>(i + 1));  // exactly on the 100 us grid
    }
    CHECK(at_client.seqs() == std::vector<std::uint32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});

    // To the card at 2 mbit/s: 125-byte frames 500 us apart; a frame arriving after the line went idle
    // waits only for its own serialisation.
    wire.client_sends(0, 4, 125);
    const TimePoint t1 = wire.clock.now();
    Collector at_card;
    CHECK(wire.card.receive(at_card, 64) == 0);
    CHECK(wire.card.next_wakeup() == t1 + 500us);
    wire.clock.set(t1 + 1500us);
    CHECK(wire.card.receive(at_card, 64) == 3);
    wire.clock.set(t1 + 2ms);
    CHECK(wire.card.receive(at_card, 64) == 1);
    wire.clock.advance(10ms);
    const TimePoint t2 = wire.clock.now();
    wire.client_sends(4, 1, 125);
    CHECK(wire.card.next_wakeup() == t2);  // on the wire, ready to be pulled
    CHECK(wire.card.receive(at_card, 64) == 0);
    CHECK(wire.card.next_wakeup() == t2 + 500us);
    wire.clock.set(t2 + 500us);
    CHECK(wire.card.receive(at_card, 64) == 1);
}

TEST_CASE("impaired link: a rate limits throughput over a long run", "[link][impaired]")
{
    // 10 mbit/s, 1514-byte frames offered at twice the rate for a second: about 10 Mbit get through in
    // that second and the rest queue up to the limit, beyond which they are dropped and counted.
    Wire wire({}, {.rate = 10'000'000, .limit = 100});
    const TimePoint t0 = wire.clock.now();
    Collector at_client;
    std::uint32_t seq = 0;
    for (int ms = 0; ms < 1000; ++ms) {
        for (int i = 0; i < 2 - (ms % 5 == 0 ? 1 : 0); ++i) {  // ~1.8 frames per ms: 21.8 Mbit/s offered
            wire.card.send(make_frame(seq++, 1514, mac_a, mac_b));
        }
        wire.clock.advance(1ms);
        wire.card.flush();
        wire.pair.a().receive(at_client, SIZE_MAX);
    }
    const double bits = static_cast<double>(at_client.frames.size()) * 1514 * 8;
    const double seconds = std::chrono::duration<double>(wire.clock.now() - t0).count();
    CHECK(bits / seconds == Approx(10e6).epsilon(0.01));
    const FaultCounters& out = wire.card.tx_faults();
    CHECK(out.dropped_in_flight_full > 0);
    CHECK(out.frames_in == seq);
    CHECK(at_client.frames.size() + out.dropped_in_flight_full + wire.card.tx_pending() == seq);
    CHECK(wire.card.tx_pending() <= 100);
}

TEST_CASE("impaired link: reorder: some frames overtaken, counted exactly, none lost or doubled",
          "[link][impaired]")
{
    Wire wire({.reorder = 0.1, .seed = 11});
    Collector at_card;
    for (std::uint32_t seq = 0; seq < 10000; seq += 50) {
        wire.client_sends(seq, 50);
        while (wire.card.receive(at_card, 64) > 0) {
        }
    }
    const auto seqs = at_card.seqs();
    REQUIRE(seqs.size() == 10000);
    const std::uint64_t late = count_overtaken(seqs);
    CHECK(late == wire.card.rx_faults().reordered);
    CHECK(late > 0);
    auto sorted = seqs;
    std::sort(sorted.begin(), sorted.end());
    CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
}

TEST_CASE("impaired link: reorder with a delay: a held frame is overtaken by one that arrives later",
          "[link][impaired]")
{
    // One frame per ms, 5 ms delay: a held frame waits for the next frame to arrive and follows it.
    Wire wire({.reorder = 0.2, .delay = 5ms, .seed = 3});
    Collector at_card;
    for (std::uint32_t seq = 0; seq < 2000; ++seq) {
        wire.client_sends(seq, 1);
        wire.card.receive(at_card, 64);
        wire.clock.advance(1ms);
    }
    while (auto next = wire.card.next_wakeup()) {
        wire.clock.set(std::max(*next, wire.clock.now()));
        wire.card.receive(at_card, 64);
    }
    const auto seqs = at_card.seqs();
    REQUIRE(seqs.size() == 2000);
    std::uint64_t late = 0;
    for (std::size_t i = 1; i < seqs.size(); ++i) {
        if (seqs[i] < seqs[i - 1]) {
            late++;
            CHECK(seqs[i - 1] - seqs[i] < 64);  // overtaken by the frames right behind it
        }
    }
    CHECK(late > 0);
    CHECK(late <= wire.card.rx_faults().reordered);
    CHECK(within_5_sigma(wire.card.rx_faults().reordered, 2000, 0.2 * 0.8));
}

TEST_CASE("impaired link: the limit bounds frames held back; overflow dropped and counted", "[link][impaired]")
{
    Wire wire({.delay = 10ms, .limit = 5});
    wire.client_sends(0, 8);
    Collector at_card;
    CHECK(wire.card.receive(at_card, 64) == 0);
    CHECK(wire.card.rx_pending() == 5);
    CHECK(wire.card.rx_faults().dropped_in_flight_full == 3);
    wire.clock.advance(10ms);
    CHECK(wire.card.receive(at_card, 64) == 5);
    CHECK(at_card.seqs() == std::vector<std::uint32_t>{0, 1, 2, 3, 4});
}

TEST_CASE("impaired link: receive() keeps to its budget and leaves the rest due", "[link][impaired]")
{
    Wire wire({.delay = 1ms});
    wire.client_sends(0, 10);
    Collector at_card;
    CHECK(wire.card.receive(at_card, 4) == 0);  // pulls 4 off the wire, none due
    wire.clock.advance(1ms);
    CHECK(wire.card.receive(at_card, 4) == 4);  // delivers 4 due, pulls 4 more
    CHECK(wire.card.receive(at_card, 4) == 0);  // the last 2 pulled now, due in 1 ms
    wire.clock.advance(1ms);
    CHECK(wire.card.receive(at_card, 100) == 6);
    CHECK(at_card.seqs() == std::vector<std::uint32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
}

TEST_CASE("impaired link: an oversized frame is refused and counted by the inner link", "[link][impaired]")
{
    Wire wire({});
    CHECK_FALSE(wire.card.send(make_frame(0, Link::default_max_frame + 1)));
    CHECK(wire.pair.b().counters().tx_dropped_too_large == 1);
    CHECK(wire.card.tx_faults().frames_in == 0);
}

TEST_CASE("impaired link: flush() sends more than the inner link's batch when that much is due",
          "[link][impaired]")
{
    ManualClock clock;
    MemoryLinkPair pair(clock, {}, {}, MemoryLinkLimits{.tx_batch = 8});
    ImpairedLink card(pair.b(), clock, FaultProfile{}, FaultProfile{.delay = 1ms}, 8);
    for (std::uint32_t i = 0; i < 50; ++i) {
        REQUIRE(card.send(make_frame(i, 60, mac_a, mac_b)));
    }
    clock.advance(1ms);
    CHECK(card.flush() == 50);
    CHECK(pair.b().counters().tx_dropped_queue_full == 0);
    Collector got;
    CHECK(pair.a().receive(got, SIZE_MAX) == 50);
}

TEST_CASE("impaired link: a handler may send and flush from inside on_frame", "[link][impaired]")
{
    Wire wire({.delay = 1ms}, {.delay = 1ms});
    struct Echo final : FrameHandler {
        Link* link = nullptr;
        void on_frame(std::span<const std::byte> frame) override
        {
            Bytes reply(frame.begin(), frame.end());
            std::swap_ranges(reply.begin(), reply.begin() + 6, reply.begin() + 6);
            link->send(reply);
            link->flush();
        }
    } echo;
    echo.link = &wire.card;
    wire.client_sends(0, 3);
    CHECK(wire.card.receive(echo, 64) == 0);
    wire.clock.advance(1ms);
    CHECK(wire.card.receive(echo, 64) == 3);
    CHECK(wire.card.tx_pending() == 3);
    wire.clock.advance(1ms);
    wire.card.flush();
    Collector back;
    CHECK(wire.pair.a().receive(back, SIZE_MAX) == 3);
    CHECK(back.seqs() == std::vector<std::uint32_t>{0, 1, 2});
}

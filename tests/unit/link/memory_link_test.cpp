#include "link/memory_link.hpp"

#include "test_frames.hpp"
#include "test_stats.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>

using namespace cm;
using namespace cm::link;
using namespace cm::link::test;
using Dir = MemoryLinkPair::Direction;

namespace {

/// Sends `count` frames a -> b in batches of the link's batch size, flushing and receiving between batches
/// (the clock does not move). Returns what b received, in order.
std::vector<std::uint32_t> stream(MemoryLinkPair& pair, std::uint32_t count)
{
    Collector got;
    std::uint32_t seq = 0;
    while (seq < count) {
        for (std::size_t i = 0; i < Link::default_tx_batch && seq < count; ++i) {
            REQUIRE(pair.a().send(make_frame(seq++)));
        }
        pair.a().flush();
        pair.b().receive(got, SIZE_MAX);
    }
    pair.b().receive(got, SIZE_MAX);
    return got.seqs();
}

}  // namespace

TEST_CASE("memory link: frames flushed on one end arrive at the other, in order, both ways", "[link][memory]")
{
    ManualClock clock;
    MemoryLinkPair pair(clock);
    for (std::uint32_t i = 0; i < 10; ++i) {
        REQUIRE(pair.a().send(make_frame(i, 60 + i)));
        REQUIRE(pair.b().send(make_frame(100 + i, 60 + i, mac_a, mac_b)));
    }
    REQUIRE(pair.a().flush() == 10);
    REQUIRE(pair.b().flush() == 10);
    REQUIRE(pair.pending(Dir::a_to_b) == 10);
    REQUIRE(pair.pending(Dir::b_to_a) == 10);

    Collector at_b;
    Collector at_a;
    REQUIRE(pair.b().receive(at_b, 100) == 10);
    REQUIRE(pair.a().receive(at_a, 100) == 10);
    for (std::uint32_t i = 0; i < 10; ++i) {
        CHECK(at_b.frames[i] == make_frame(i, 60 + i));
        CHECK(at_a.frames[i] == make_frame(100 + i, 60 + i, mac_a, mac_b));
    }
    CHECK(pair.pending(Dir::a_to_b) == 0);
    CHECK(!pair.next_delivery());

    const LinkCounters& ca = pair.a().counters();
    const LinkCounters& cb = pair.b().counters();
    std::uint64_t bytes = 0;
    for (std::uint32_t i = 0; i < 10; ++i) {
        bytes += 60 + i;
    }
    CHECK(ca.tx_frames == 10);
    CHECK(ca.tx_bytes == bytes);
    CHECK(cb.rx_frames == 10);
    CHECK(cb.rx_bytes == bytes);
    CHECK(cb.tx_frames == 10);
    CHECK(ca.rx_frames == 10);
    CHECK(pair.faults(Dir::a_to_b).frames_in == 10);
    CHECK(pair.faults(Dir::a_to_b).lost == 0);
    CHECK(pair.faults(Dir::a_to_b).delayed == 0);
    CHECK(pair.a().wait_fd() == -1);
    CHECK(pair.a().max_frame() == Link::default_max_frame);
}

TEST_CASE("memory link: nothing leaves before flush(), and the sender's copy is its own", "[link][memory]")
{
    ManualClock clock;
    MemoryLinkPair pair(clock);
    Bytes frame = make_frame(7);
    REQUIRE(pair.a().send(frame));
    frame[20] = std::byte{0xee};  // the caller keeps ownership; the link took a copy

    Collector got;
    CHECK(pair.b().receive(got, 10) == 0);
    CHECK(pair.pending(Dir::a_to_b) == 0);
    CHECK(pair.a().flush() == 1);
    CHECK(pair.a().flush() == 0);
    REQUIRE(pair.b().receive(got, 10) == 1);
    CHECK(got.frames[0] == make_frame(7));
}

TEST_CASE("memory link: receive() delivers at most `budget` frames per call", "[link][memory]")
{
    ManualClock clock;
    MemoryLinkPair pair(clock);
    for (std::uint32_t i = 0; i < 10; ++i) {
        REQUIRE(pair.a().send(make_frame(i)));
    }
    pair.a().flush();
    Collector got;
    CHECK(pair.b().receive(got, 0) == 0);
    CHECK(pair.b().receive(got, 3) == 3);
    CHECK(pair.ready(Dir::a_to_b) == 7);
    CHECK(pair.b().receive(got, 3) == 3);
    CHECK(pair.b().receive(got, 3) == 3);
    CHECK(pair.b().receive(got, 3) == 1);
    CHECK(pair.b().receive(got, 3) == 0);
    CHECK(got.seqs() == std::vector<std::uint32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
}

TEST_CASE("memory link: send() refuses, and counts, a full batch and a frame too large", "[link][memory]")
{
    ManualClock clock;
    MemoryLinkPair pair(clock);
    Link& a = pair.a();

    CHECK_FALSE(a.send(make_frame(0, Link::default_max_frame + 1)));
    CHECK(a.counters().tx_dropped_too_large == 1);
    CHECK(a.send(make_frame(0, Link::default_max_frame)));

    for (std::size_t i = 1; i < Link::default_tx_batch; ++i) {
        REQUIRE(a.send(make_frame(static_cast<std::uint32_t>(i))));
    }
    CHECK_FALSE(a.send(make_frame(999)));
    CHECK_FALSE(a.send(make_frame(999)));
    CHECK(a.counters().tx_dropped_queue_full == 2);
    CHECK(a.flush() == Link::default_tx_batch);
    CHECK(a.send(make_frame(1000)));  // room again after flush
    CHECK(a.counters().tx_dropped_too_large == 1);
    CHECK(a.counters().tx_frames == Link::default_tx_batch);

    Collector got;
    CHECK(pair.b().receive(got, SIZE_MAX) == Link::default_tx_batch);
    CHECK(got.frames[0].size() == Link::default_max_frame);
}

TEST_CASE("memory link: limits are configurable", "[link][memory]")
{
    ManualClock clock;
    MemoryLinkPair pair(clock, {}, {}, MemoryLinkLimits{.max_frame = 9014, .tx_batch = 4, .max_in_flight = 6});
    CHECK(pair.a().max_frame() == 9014);
    CHECK(pair.a().send(make_frame(0, 9014)));
    CHECK_FALSE(pair.a().send(make_frame(0, 9015)));
    for (std::uint32_t i = 1; i < 4; ++i) {
        CHECK(pair.a().send(make_frame(i)));
    }
    CHECK_FALSE(pair.a().send(make_frame(4)));
    CHECK(pair.a().flush() == 4);
    for (std::uint32_t i = 4; i < 8; ++i) {
        CHECK(pair.a().send(make_frame(i)));
    }
    CHECK(pair.a().flush() == 4);  // they left the sender...
    CHECK(pair.pending(Dir::a_to_b) == 6);  // ...but only 6 fit in flight
    CHECK(pair.faults(Dir::a_to_b).dropped_in_flight_full == 2);
    Collector got;
    CHECK(pair.b().receive(got, SIZE_MAX) == 6);
    CHECK(got.seqs() == std::vector<std::uint32_t>{0, 1, 2, 3, 4, 5});
}

TEST_CASE("memory link: delay is respected on a manual clock", "[link][memory]")
{
    ManualClock clock;
    MemoryLinkPair pair(clock, FaultProfile{.delay = 10ms});
    const TimePoint t0 = clock.now();
    REQUIRE(pair.a().send(make_frame(1)));
    pair.a().flush();
    clock.advance(1ms);
    REQUIRE(pair.a().send(make_frame(2)));
    pair.a().flush();

    Collector got;
    CHECK(pair.b().receive(got, 10) == 0);
    CHECK(pair.pending(Dir::a_to_b) == 2);
    CHECK(pair.ready(Dir::a_to_b) == 0);
    REQUIRE(pair.next_delivery() == t0 + 10ms);

    clock.set(t0 + 10ms - 1ns);
    CHECK(pair.b().receive(got, 10) == 0);
    clock.set(t0 + 10ms);
    CHECK(pair.b().receive(got, 10) == 1);
    REQUIRE(pair.next_delivery() == t0 + 11ms);
    clock.set(t0 + 11ms);
    CHECK(pair.b().receive(got, 10) == 1);
    CHECK(got.seqs() == std::vector<std::uint32_t>{1, 2});
    CHECK(!pair.next_delivery());
    CHECK(pair.faults(Dir::a_to_b).delayed == 2);
    // The other direction has no delay.
    REQUIRE(pair.b().send(make_frame(3, 60, mac_a, mac_b)));
    pair.b().flush();
    CHECK(pair.a().receive(got, 10) == 1);
}

TEST_CASE("memory link: jitter stays between delay and delay + jitter and never reorders", "[link][memory]")
{
    ManualClock clock;
    MemoryLinkPair pair(clock, FaultProfile{.delay = 1ms, .jitter = 1ms, .seed = 42});
    std::map<std::uint32_t, TimePoint> sent_at;
    Collector got;
    std::vector<TimePoint> got_at;
    std::uint32_t seq = 0;
    // Send a frame every 10 us for 20 ms and receive at every step.
    for (int step = 0; step < 2000; ++step) {
        sent_at[seq] = clock.now();
        REQUIRE(pair.a().send(make_frame(seq++)));
        pair.a().flush();
        clock.advance(10us);
        pair.b().receive(got, SIZE_MAX);
        got_at.resize(got.frames.size(), clock.now());
    }
    while (auto next = pair.next_delivery()) {
        clock.set(std::max(*next, clock.now()));
        pair.b().receive(got, SIZE_MAX);
        got_at.resize(got.frames.size(), clock.now());
    }
    const auto seqs = got.seqs();
    REQUIRE(seqs.size() == 2000);
    CHECK(std::is_sorted(seqs.begin(), seqs.end()));
    Duration min_latency = Duration::max();
    Duration max_latency = Duration::min();
    for (std::size_t i = 0; i < seqs.size(); ++i) {
        const Duration latency = got_at[i] - sent_at[seqs[i]];
        min_latency = std::min(min_latency, latency);
        max_latency = std::max(max_latency, latency);
    }
    // Received at the first 10 us step at or after the due time.
    CHECK(min_latency >= 1ms);
    CHECK(max_latency < 2ms + 10us);
    CHECK(max_latency > 1ms + 500us);  // the jitter is really there
}

TEST_CASE("memory link: loss rate within tolerance over 100k frames, counters exact", "[link][memory]")
{
    ManualClock clock;
    MemoryLinkPair pair(clock, FaultProfile{.loss = 0.1, .seed = 7});
    const auto seqs = stream(pair, 100000);
    const FaultCounters& f = pair.faults(Dir::a_to_b);
    CHECK(f.frames_in == 100000);
    CHECK(within_5_sigma(f.lost, 100000, 0.1));
    CHECK(seqs.size() == 100000 - f.lost);
    CHECK(std::is_sorted(seqs.begin(), seqs.end()));
    CHECK(std::adjacent_find(seqs.begin(), seqs.end()) == seqs.end());
    CHECK(f.duplicated == 0);
    CHECK(f.reordered == 0);
    CHECK(pair.a().counters().tx_frames == 100000);
    CHECK(pair.b().counters().rx_frames == seqs.size());
    CHECK(pair.faults(Dir::b_to_a).frames_in == 0);
}

TEST_CASE("memory link: duplicate rate within tolerance over 100k frames, counters exact", "[link][memory]")
{
    ManualClock clock;
    MemoryLinkPair pair(clock, FaultProfile{.duplicate = 0.02, .seed = 8});
    const auto seqs = stream(pair, 100000);
    const FaultCounters& f = pair.faults(Dir::a_to_b);
    CHECK(within_5_sigma(f.duplicated, 100000, 0.02));
    CHECK(seqs.size() == 100000 + f.duplicated);
    std::map<std::uint32_t, int> copies;
    for (auto s : seqs) {
        copies[s]++;
    }
    std::uint64_t twice = 0;
    for (auto& [s, n] : copies) {
        REQUIRE(n <= 2);
        twice += n == 2 ? 1 : 0;
    }
    CHECK(copies.size() == 100000);
    CHECK(twice == f.duplicated);
    CHECK(std::is_sorted(seqs.begin(), seqs.end()));  // the copy follows the original
    CHECK(f.lost == 0);
}

TEST_CASE("memory link: reorder rate within tolerance over 100k frames, counters exact", "[link][memory]")
{
    ManualClock clock;
    MemoryLinkPair pair(clock, FaultProfile{.reorder = 0.05, .seed = 9});
    const auto seqs = stream(pair, 100000);
    const FaultCounters& f = pair.faults(Dir::a_to_b);
    REQUIRE(seqs.size() == 100000);
    // A frame is reordered when it arrives after a frame sent later than it.
    std::uint64_t late = 0;
    std::uint32_t highest = 0;
    for (std::size_t i = 0; i < seqs.size(); ++i) {
        if (i > 0 && seqs[i] < highest) {
            late++;
        }
        highest = std::max(highest, seqs[i]);
    }
    CHECK(late == f.reordered);
    CHECK(within_5_sigma(f.reordered, 100000, 0.05));
    auto sorted = seqs;
    std::sort(sorted.begin(), sorted.end());
    CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
    CHECK(sorted.back() == 99999);
}

TEST_CASE("memory link: a held frame is overtaken by the next one, or delivered when nothing follows",
          "[link][memory]")
{
    ManualClock clock;
    MemoryLinkPair pair(clock, FaultProfile{.reorder = 1.0});
    Collector got;

    SECTION("overtaken by the next frame sent")
    {
        REQUIRE(pair.a().send(make_frame(1)));
        pair.a().flush();
        pair.set_profile(Dir::a_to_b, FaultProfile{});
        REQUIRE(pair.a().send(make_frame(2)));
        pair.a().flush();
        CHECK(pair.b().receive(got, 10) == 2);
        CHECK(got.seqs() == std::vector<std::uint32_t>{2, 1});
        CHECK(pair.faults(Dir::a_to_b).reordered == 1);
    }
    SECTION("nothing follows: delivered once due, in order, not counted")
    {
        REQUIRE(pair.a().send(make_frame(1)));
        REQUIRE(pair.a().send(make_frame(2)));
        pair.a().flush();
        CHECK(pair.pending(Dir::a_to_b) == 2);
        REQUIRE(pair.next_delivery() == clock.now());
        CHECK(pair.b().receive(got, 10) == 2);
        CHECK(got.seqs() == std::vector<std::uint32_t>{1, 2});
        CHECK(pair.faults(Dir::a_to_b).reordered == 0);
    }
}

TEST_CASE("memory link: the same seed gives the same frames, a different seed does not", "[link][memory]")
{
    const FaultProfile base{.loss = 0.05, .duplicate = 0.03, .reorder = 0.04, .delay = 2ms, .jitter = 3ms};
    auto run = [&](std::uint64_t seed) {
        ManualClock clock;
        FaultProfile p = base;
        p.seed = seed;
        FaultProfile back = base;
        back.seed = seed + 1000;
        MemoryLinkPair pair(clock, p, back);
        std::vector<std::uint32_t> order;
        Collector at_b;
        Collector at_a;
        std::uint32_t seq = 0;
        for (int step = 0; step < 5000; ++step) {
            for (int i = 0; i < 1 + step % 5; ++i) {
                pair.a().send(make_frame(seq));
                pair.b().send(make_frame(seq, 60, mac_a, mac_b));
                seq++;
            }
            pair.a().flush();
            pair.b().flush();
            clock.advance(100us);
            pair.b().receive(at_b, 7);
            pair.a().receive(at_a, 7);
        }
        while (auto next = pair.next_delivery()) {
            clock.set(std::max(*next, clock.now()));
            pair.b().receive(at_b, SIZE_MAX);
            pair.a().receive(at_a, SIZE_MAX);
        }
        const FaultCounters& f = pair.faults(Dir::a_to_b);
        REQUIRE(f.lost > 0);
        REQUIRE(f.duplicated > 0);
        REQUIRE(f.reordered > 0);
        REQUIRE(f.delayed > 0);
        auto out = at_b.seqs();
        out.push_back(0xffffffff);  // separator
        auto back_seqs = at_a.seqs();
        out.insert(out.end(), back_seqs.begin(), back_seqs.end());
        out.push_back(static_cast<std::uint32_t>(f.lost));
        out.push_back(static_cast<std::uint32_t>(f.duplicated));
        out.push_back(static_cast<std::uint32_t>(f.reordered));
        return out;
    };
    const auto first = run(1234);
    const auto again = run(1234);
    const auto other = run(1235);
    CHECK(first == again);
    CHECK(first != other);
}

TEST_CASE("memory link: one fault's choices do not depend on the other faults being on", "[link][memory]")
{
    // Frames lost with loss alone are exactly those lost when duplication is also on (same seed).
    auto lost_set = [](FaultProfile p) {
        ManualClock clock;
        MemoryLinkPair pair(clock, p);
        auto seqs = stream(pair, 20000);
        std::vector<bool> seen(20000);
        for (auto s : seqs) {
            seen[s] = true;
        }
        return seen;
    };
    CHECK(lost_set({.loss = 0.1, .seed = 3}) == lost_set({.loss = 0.1, .duplicate = 0.2, .seed = 3}));
}

TEST_CASE("memory link: a handler may send and flush from inside on_frame", "[link][memory]")
{
    ManualClock clock;
    MemoryLinkPair pair(clock);
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
    echo.link = &pair.b();
    for (std::uint32_t i = 0; i < 5; ++i) {
        pair.a().send(make_frame(i));
    }
    pair.a().flush();
    CHECK(pair.b().receive(echo, SIZE_MAX) == 5);
    Collector back;
    CHECK(pair.a().receive(back, SIZE_MAX) == 5);
    CHECK(back.seqs() == std::vector<std::uint32_t>{0, 1, 2, 3, 4});
    CHECK(frame_dst(back.frames[0]) == mac_a);
}

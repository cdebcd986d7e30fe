#include "link/fault_channel.hpp"

#include "test_frames.hpp"

#include <catch2/catch.hpp>

using namespace cm;
using namespace cm::link;
using namespace cm::link::test;

namespace {

FramePool::Frame frame_of(FramePool& pool, std::uint32_t seq, std::size_t size)
{
    const Bytes bytes = make_frame(seq, size);
    FramePool::Frame f = pool.take();
    f.assign(bytes.begin(), bytes.end());
    return f;
}

}  // namespace

TEST_CASE("fault channel: without a rate or a delay, frames are due at once", "[link][channel]")
{
    FramePool pool;
    FaultChannel channel(FaultProfile{}, pool);
    const TimePoint t0 = TimePoint{} + 1s;
    channel.push(frame_of(pool, 1, 100), t0);
    CHECK(channel.next_due() == t0);
    CHECK(channel.ready(t0) == 1);
    const auto out = channel.pop_ready(t0);
    REQUIRE(out);
    CHECK(frame_seq(*out) == 1);
    CHECK(channel.counters().delayed == 0);
    CHECK(!channel.next_due());
}

TEST_CASE("fault channel: rate adds serialisation behind the frame ahead, after the delay", "[link][channel]")
{
    FramePool pool;
    // 8 kbit/s: a 100-byte frame takes 100 ms.
    FaultChannel channel(FaultProfile{.delay = 50ms, .rate = 8000}, pool);
    const TimePoint t0 = TimePoint{} + 1s;
    channel.push(frame_of(pool, 1, 100), t0);
    channel.push(frame_of(pool, 2, 50), t0);  // queued behind frame 1: +50 ms of its own
    CHECK(channel.next_due() == t0 + 150ms);
    CHECK(channel.ready(t0 + 200ms - 1ns) == 1);
    CHECK(channel.ready(t0 + 200ms) == 2);
    CHECK(channel.pop_ready(t0 + 200ms));
    CHECK(channel.pop_ready(t0 + 200ms));
    // The line is idle again: a later frame waits only for its delay and its own serialisation.
    const TimePoint t1 = t0 + 10s;
    channel.push(frame_of(pool, 3, 100), t1);
    CHECK(channel.next_due() == t1 + 150ms);
    CHECK(channel.counters().delayed == 3);
}

TEST_CASE("fault channel: a duplicate is serialised again, right behind its original", "[link][channel]")
{
    FramePool pool;
    FaultChannel channel(FaultProfile{.duplicate = 1.0, .rate = 8000}, pool);
    const TimePoint t0 = TimePoint{} + 1s;
    channel.push(frame_of(pool, 1, 100), t0);
    REQUIRE(channel.pending() == 2);
    CHECK(channel.ready(t0 + 100ms) == 1);
    CHECK(channel.ready(t0 + 200ms) == 2);
    CHECK(channel.counters().duplicated == 1);
}

TEST_CASE("fault channel: the limit is the smaller of the profile's and the owner's", "[link][channel]")
{
    FramePool pool;
    const TimePoint t0 = TimePoint{} + 1s;
    FaultChannel by_profile(FaultProfile{.delay = 1ms, .limit = 3}, pool, 10);
    FaultChannel by_owner(FaultProfile{.delay = 1ms, .limit = 30}, pool, 4);
    for (std::uint32_t i = 0; i < 6; ++i) {
        by_profile.push(frame_of(pool, i, 60), t0);
        by_owner.push(frame_of(pool, i, 60), t0);
    }
    CHECK(by_profile.pending() == 3);
    CHECK(by_profile.counters().dropped_in_flight_full == 3);
    CHECK(by_owner.pending() == 4);
    CHECK(by_owner.counters().dropped_in_flight_full == 2);
    CHECK(by_owner.counters().frames_in == 6);
}

TEST_CASE("fault channel: a rate draws nothing: the same seed loses the same frames with or without it",
          "[link][channel]")
{
    auto lost = [](FaultProfile profile) {
        FramePool pool;
        FaultChannel channel(profile, pool);
        TimePoint now = TimePoint{} + 1s;
        std::vector<std::uint32_t> got;
        for (std::uint32_t i = 0; i < 5000; ++i) {
            channel.push(frame_of(pool, i, 60), now);
            now += 1ms;
            while (auto f = channel.pop_ready(now)) {
                got.push_back(frame_seq(*f));
                pool.give(std::move(*f));
            }
        }
        return got;
    };
    CHECK(lost({.loss = 0.2, .seed = 5}) == lost({.loss = 0.2, .rate = 1'000'000, .seed = 5}));
}

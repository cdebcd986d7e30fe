#include "core/timer_wheel.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <vector>

using namespace cm;
using cm::core::Timer;
using cm::core::TimerWheel;

namespace {

/// A timer that records when it fired, by the wheel's clock.
struct Probe {
    TimerWheel* wheel = nullptr;
    std::vector<TimePoint>* log = nullptr;
    int id = 0;
    std::vector<int>* order = nullptr;
    Timer timer{&Probe::fire, this};
    static void fire(void* self)
    {
        auto* p = static_cast<Probe*>(self);
        if (p->log) {
            p->log->push_back(p->wheel->current_time());
        }
        if (p->order) {
            p->order->push_back(p->id);
        }
    }
};

const TimePoint t0 = TimePoint{} + 1s;

}  // namespace

TEST_CASE("a timer fires at its deadline, never before", "[timer]")
{
    TimerWheel wheel(t0);
    std::vector<TimePoint> fired;
    Probe p{&wheel, &fired};
    wheel.schedule(p.timer, t0 + 10ms);
    CHECK(p.timer.armed());
    CHECK(wheel.advance(t0 + 9ms) == 0);
    CHECK(wheel.advance(t0 + 9ms + 999us) == 0);
    CHECK(wheel.advance(t0 + 10ms) == 1);
    REQUIRE(fired.size() == 1);
    CHECK(fired[0] == t0 + 10ms);
    CHECK_FALSE(p.timer.armed());
    CHECK(wheel.size() == 0);
}

TEST_CASE("a deadline between ticks rounds up", "[timer]")
{
    TimerWheel wheel(t0);
    Probe p{&wheel};
    wheel.schedule(p.timer, t0 + 5ms + 1ns);
    CHECK(wheel.advance(t0 + 5ms) == 0);
    CHECK(wheel.advance(t0 + 6ms) == 1);
}

TEST_CASE("a deadline in the past fires on the next advance", "[timer]")
{
    TimerWheel wheel(t0);
    wheel.advance(t0 + 100ms);
    Probe p{&wheel};
    wheel.schedule(p.timer, t0 + 1ms);
    CHECK(wheel.advance(t0 + 100ms) == 0);  // the current tick already ran
    CHECK(wheel.advance(t0 + 101ms) == 1);
}

TEST_CASE("timers due on the same tick fire in the order they were armed", "[timer]")
{
    TimerWheel wheel(t0);
    std::vector<int> order;
    std::vector<std::unique_ptr<Probe>> probes;
    for (int i = 0; i < 5; ++i) {
        probes.push_back(std::unique_ptr<Probe>(new Probe{&wheel, nullptr, i, &order}));
    }
    for (int i : {3, 1, 4, 0, 2}) {
        wheel.schedule(probes[static_cast<std::size_t>(i)]->timer, t0 + 300ms);  // level 1, then cascaded
    }
    wheel.advance(t0 + 1s);
    CHECK(order == std::vector<int>{3, 1, 4, 0, 2});
}

TEST_CASE("cancel and re-arm", "[timer]")
{
    TimerWheel wheel(t0);
    Probe a{&wheel};
    Probe b{&wheel};
    wheel.schedule(a.timer, t0 + 5ms);
    wheel.schedule(b.timer, t0 + 5s);
    a.timer.cancel();
    a.timer.cancel();  // idempotent
    CHECK(wheel.size() == 1);
    wheel.schedule(b.timer, t0 + 7ms);  // re-arm moves it
    CHECK(wheel.size() == 1);
    CHECK(wheel.advance(t0 + 6ms) == 0);
    CHECK(wheel.advance(t0 + 7ms) == 1);
    CHECK(wheel.advance(t0 + 10s) == 0);
    CHECK(wheel.counters().fired == 1);
}

TEST_CASE("destroying an armed timer cancels it", "[timer]")
{
    TimerWheel wheel(t0);
    {
        Probe p{&wheel};
        wheel.schedule(p.timer, t0 + 1s);
        CHECK(wheel.size() == 1);
    }
    CHECK(wheel.size() == 0);
    CHECK(wheel.advance(t0 + 2s) == 0);
}

namespace {
struct Periodic {
    TimerWheel* wheel;
    std::vector<TimePoint> fired;
    Timer timer{&Periodic::fire, this};
    static void fire(void* self)
    {
        auto* p = static_cast<Periodic*>(self);
        p->fired.push_back(p->wheel->current_time());
        if (p->fired.size() < 10) {
            p->wheel->schedule_after(p->timer, 100ms);
        }
    }
};
}  // namespace

TEST_CASE("a callback may re-arm its own timer (periodic)", "[timer]")
{
    TimerWheel wheel(t0);
    Periodic periodic{&wheel, {}};
    wheel.schedule(periodic.timer, t0 + 100ms);
    // One big jump: each re-arm lands after the tick being run, so it still fires at the right time.
    for (TimePoint now = t0; now <= t0 + 2s; now += 1ms) {
        wheel.advance(now);
    }
    REQUIRE(periodic.fired.size() == 10);
    for (std::size_t i = 0; i < periodic.fired.size(); ++i) {
        CHECK(periodic.fired[i] == t0 + 100ms * static_cast<int>(i + 1));
    }
}

TEST_CASE("timers days and months ahead (beyond the 49.7-day horizon) fire on time", "[timer]")
{
    TimerWheel wheel(t0);
    std::vector<TimePoint> fired;
    Probe day{&wheel, &fired};
    Probe far{&wheel, &fired};
    wheel.schedule(day.timer, t0 + std::chrono::hours(24) + 17ms);
    wheel.schedule(far.timer, t0 + std::chrono::hours(24 * 120) + 3ms);  // 120 days
    // Advance in uneven steps, as an idle loop would.
    TimePoint now = t0;
    while (now < t0 + std::chrono::hours(24 * 121)) {
        now += std::chrono::minutes(7) + 13ms;
        wheel.advance(now);
    }
    REQUIRE(fired.size() == 2);
    // The wheel reports the tick it ran; with coarse advances that is the deadline's tick, not later.
    CHECK(fired[0] == t0 + std::chrono::hours(24) + 17ms);
    CHECK(fired[1] == t0 + std::chrono::hours(24 * 120) + 3ms);
}

TEST_CASE("next_deadline is a lower bound on the next expiry", "[timer]")
{
    TimerWheel wheel(t0);
    CHECK_FALSE(wheel.next_deadline().has_value());
    Probe near{&wheel};
    Probe far{&wheel};
    wheel.schedule(near.timer, t0 + 40ms);
    CHECK(wheel.next_deadline() == t0 + 40ms);
    wheel.schedule(far.timer, t0 + 10s);
    CHECK(wheel.next_deadline() == t0 + 40ms);
    near.timer.cancel();
    const auto next = wheel.next_deadline();
    REQUIRE(next.has_value());
    CHECK(*next <= t0 + 10s);
    CHECK(*next > t0);
}

TEST_CASE("randomised against a reference model: every timer fires exactly once, on its tick", "[timer]")
{
    // The model is a multimap of deadline -> id; the wheel must agree with it after every advance.
    std::mt19937_64 rng(12345);
    TimerWheel wheel(t0);
    constexpr int count = 20000;
    struct Rec {
        TimerWheel* wheel;
        int id;
        std::vector<std::pair<int, TimePoint>>* out;
        Timer timer{&Rec::fire, this};
        static void fire(void* self)
        {
            auto* r = static_cast<Rec*>(self);
            r->out->emplace_back(r->id, r->wheel->current_time());
        }
    };
    std::vector<std::pair<int, TimePoint>> fired;
    std::vector<std::unique_ptr<Rec>> recs;
    std::map<int, TimePoint> expected;  // id -> the tick that must run it, for armed timers
    TimePoint now = t0;
    const std::uint64_t spans[] = {5, 300, 20000, 3'000'000, 100'000'000};  // ms: every level
    for (int i = 0; i < count; ++i) {
        recs.push_back(std::unique_ptr<Rec>(new Rec{&wheel, i, &fired}));
        const auto span = spans[rng() % 5];
        const TimePoint deadline = now + std::chrono::milliseconds(rng() % span);
        wheel.schedule(recs.back()->timer, deadline);
        // The tick that runs it: the deadline rounded up to a whole millisecond, but never a tick that
        // has already run (a deadline of "now" fires on the next tick).
        expected[i] = std::max<TimePoint>(std::chrono::ceil<std::chrono::milliseconds>(deadline), wheel.current_time() + 1ms);
        if (rng() % 4 == 0) {  // cancel some existing one
            const int victim = static_cast<int>(rng() % static_cast<std::uint64_t>(i + 1));
            // Cancelling a timer that already fired is a no-op: only an armed one leaves the model.
            if (recs[static_cast<std::size_t>(victim)]->timer.armed()) {
                recs[static_cast<std::size_t>(victim)]->timer.cancel();
                expected.erase(victim);
            }
        }
        if (rng() % 8 == 0) {
            now += std::chrono::milliseconds(rng() % 2000);
            wheel.advance(now);
        }
    }
    while (wheel.size() > 0) {
        now += std::chrono::seconds(rng() % 600 + 1);
        wheel.advance(now);
    }
    std::map<int, int> times_fired;
    for (const auto& [id, when] : fired) {
        ++times_fired[id];
        REQUIRE(expected.count(id) == 1);
        CHECK(when == expected[id]);
    }
    CHECK(times_fired.size() == expected.size());
    for (const auto& [id, n] : times_fired) {
        CHECK(n == 1);
    }
}

TEST_CASE("a million armed timers", "[timer]")
{
    TimerWheel wheel(t0);
    constexpr std::size_t n = 1'000'000;
    std::vector<Probe> probes(n);
    for (std::size_t i = 0; i < n; ++i) {
        probes[i].wheel = &wheel;
        wheel.schedule(probes[i].timer, t0 + std::chrono::milliseconds(1 + (i * 7919) % 3'600'000));
    }
    CHECK(wheel.size() == n);
    for (std::size_t i = 0; i < n; i += 2) {
        probes[i].timer.cancel();
    }
    CHECK(wheel.size() == n / 2);
    CHECK(wheel.advance(t0 + std::chrono::hours(2)) == n / 2);
    CHECK(wheel.size() == 0);
}

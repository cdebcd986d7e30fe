#include "core/event_loop.hpp"

#include <catch2/catch.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

using namespace cm;
using cm::core::EventLoop;
using cm::core::EventSource;
using cm::core::Timer;

namespace {

/// A source with a queue of pretend work items and an eventfd that signals when items arrive.
struct CountingSource final : EventSource {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    std::size_t pending = 0;
    std::size_t done = 0;
    std::size_t flushes = 0;
    std::size_t batch = 4;
    ~CountingSource() override { ::close(fd); }
    std::size_t poll(TimePoint) override
    {
        std::uint64_t v;
        if (::read(fd, &v, sizeof v) == sizeof v) {
            pending += v;
        }
        const std::size_t n = std::min(pending, batch);
        pending -= n;
        done += n;
        return n;
    }
    void flush() override { ++flushes; }
    int wait_fd() const override { return fd; }
};

}  // namespace

TEST_CASE("the loop polls sources in bounded batches and flushes every iteration", "[loop]")
{
    ManualClock clock;
    EventLoop loop(clock);
    CountingSource source;
    loop.add_source(source);
    std::uint64_t ten = 10;
    REQUIRE(::write(source.fd, &ten, sizeof ten) == sizeof ten);
    CHECK(loop.run_once(0ms) == 4);
    CHECK(loop.run_once(0ms) == 4);
    CHECK(loop.run_once(0ms) == 2);
    CHECK(loop.run_once(0ms) == 0);
    CHECK(source.done == 10);
    CHECK(source.flushes == 4);
}

TEST_CASE("the loop runs due timers and stop() ends run()", "[loop]")
{
    SteadyClock clock;
    EventLoop loop(clock);
    struct Stopper {
        EventLoop* loop;
        int fired = 0;
        Timer timer{&Stopper::fire, this};
        static void fire(void* self)
        {
            auto* s = static_cast<Stopper*>(self);
            ++s->fired;
            s->loop->stop();
        }
    } stopper{&loop};
    const auto start = clock.now();
    loop.timers().schedule(stopper.timer, start + 30ms);
    loop.run();
    CHECK(stopper.fired == 1);
    CHECK(clock.now() - start >= 30ms);
    CHECK(loop.counters().sleeps >= 1);  // it slept instead of spinning
}

TEST_CASE("a watched fd wakes the loop and runs its callback", "[loop]")
{
    SteadyClock clock;
    EventLoop loop(clock);
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    int calls = 0;
    loop.watch_fd(fds[0], [&] {
        char c;
        REQUIRE(::read(fds[0], &c, 1) == 1);
        ++calls;
    });
    REQUIRE(::write(fds[1], "x", 1) == 1);
    loop.run_once(1s);
    CHECK(calls == 1);
    CHECK(loop.counters().wakeups_by_fd == 1);
    ::close(fds[0]);
    ::close(fds[1]);
}

namespace {

/// A source with no fd whose work falls due at a set time, as a delayed link's frames do.
struct DelayedSource final : EventSource {
    std::optional<TimePoint> due;
    std::size_t done = 0;
    std::size_t poll(TimePoint now) override
    {
        if (due && *due <= now) {
            due.reset();
            ++done;
            return 1;
        }
        return 0;
    }
    void flush() override {}
    int wait_fd() const override { return -1; }
    std::optional<TimePoint> next_wakeup() const override { return due; }
};

}  // namespace

TEST_CASE("the loop sleeps no longer than a source's next wake-up", "[loop]")
{
    SteadyClock clock;
    EventLoop loop(clock);
    DelayedSource source;
    loop.add_source(source);
    const auto start = clock.now();
    source.due = start + 20ms;
    CHECK(loop.run_once(5s) == 0);  // not due yet: sleeps, but only until the wake-up
    const auto slept = clock.now() - start;
    CHECK(slept >= 20ms);
    CHECK(slept < 1s);
    CHECK(loop.counters().sleeps == 1);
    CHECK(loop.counters().wakeups_by_timer == 1);
    CHECK(loop.run_once(5s) == 1);  // due now: polled, no sleep
    CHECK(source.done == 1);
    CHECK(loop.counters().sleeps == 1);
}

TEST_CASE("a source's wake-up already past makes the loop look again at once", "[loop]")
{
    ManualClock clock;
    EventLoop loop(clock);
    struct Stale final : EventSource {
        TimePoint at;
        std::size_t poll(TimePoint) override { return 0; }
        void flush() override {}
        int wait_fd() const override { return -1; }
        std::optional<TimePoint> next_wakeup() const override { return at; }
    } source;
    source.at = clock.now() - 1ms;
    loop.add_source(source);
    SteadyClock wall;
    const auto start = wall.now();
    loop.run_once(10s);
    CHECK(wall.now() - start < 1s);
    CHECK(loop.counters().wakeups_by_timer == 1);
}

TEST_CASE("the earliest of timers and source wake-ups ends the sleep", "[loop]")
{
    SteadyClock clock;
    EventLoop loop(clock);
    DelayedSource late;
    DelayedSource early;
    loop.add_source(late);
    loop.add_source(early);
    const auto start = clock.now();
    late.due = start + 10s;
    early.due = start + 15ms;
    int fired = 0;
    Timer timer{[](void* self) { ++*static_cast<int*>(self); }, &fired};
    loop.timers().schedule(timer, start + 5s);
    loop.run_once(20s);
    CHECK(clock.now() - start >= 15ms);
    CHECK(clock.now() - start < 1s);
    CHECK(loop.run_once(0ms) == 1);
    CHECK(early.done == 1);
    CHECK(late.done == 0);
    CHECK(fired == 0);
    timer.cancel();
}

TEST_CASE("a loop that always has work still services its watched fds (SIGTERM under load)", "[loop]")
{
    struct AlwaysBusy final : EventSource {
        std::size_t poll(TimePoint) override { return 1; }
        void flush() override {}
        int wait_fd() const override { return -1; }
    } busy;
    SteadyClock clock;
    EventLoop loop(clock);
    loop.add_source(busy);
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    bool seen = false;
    loop.watch_fd(fds[0], [&] {
        char c;
        REQUIRE(::read(fds[0], &c, 1) == 1);
        seen = true;
        loop.stop();
    });
    REQUIRE(::write(fds[1], "x", 1) == 1);
    const auto start = clock.now();
    while (!loop.stopping() && clock.now() - start < 2s) {
        loop.run_once(1s);
    }
    CHECK(seen);
    CHECK(clock.now() - start < 100ms);  // within a few event-check intervals, not "whenever load stops"
    CHECK(loop.counters().sleeps == 0);
    ::close(fds[0]);
    ::close(fds[1]);
}

TEST_CASE("busy polling spins for the configured window after the last work, then sleeps", "[loop]")
{
    ManualClock clock;
    EventLoop loop(clock);
    CountingSource source;
    loop.add_source(source);
    loop.set_busy_poll(50ms);
    std::uint64_t one = 1;
    REQUIRE(::write(source.fd, &one, sizeof one) == sizeof one);
    CHECK(loop.run_once(0ms) == 1);
    CHECK(loop.run_once(0ms) == 0);
    clock.advance(49ms);
    CHECK(loop.run_once(0ms) == 0);
    CHECK(loop.counters().busy_polls == 2);
    CHECK(loop.counters().sleeps == 0);
    clock.advance(1ms);
    CHECK(loop.run_once(0ms) == 0);
    CHECK(loop.counters().sleeps == 1);  // the window has passed
}

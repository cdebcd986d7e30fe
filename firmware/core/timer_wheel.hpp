// Hierarchical timer wheel: O(1) schedule and cancel, amortised O(1) expiry, no allocation.
//
// The wheel holds millions of timers (retransmission, keep-alive, TIME_WAIT, ARP, request deadlines), so a
// timer is an intrusive node embedded in its owner (56 bytes) and the wheel only links it.
//
// Layout (the classic Linux design, "cascading" wheels; Varghese & Lauck, scheme 7):
//   level 0: 256 slots of one tick each                   -> the next 256 ticks
//   level 1..4: 64 slots each, every slot 64x the level below -> up to 2^32 ticks ahead
// With the default 1 ms tick the horizon is 49.7 days; a timer further out waits in level 4's last slot
// and is re-placed on each cascade until it comes within range. Timers never fire early: a deadline is
// rounded up to the next tick, and a tick fires only once the clock has passed it.
//
// Ownership: the owner of a Timer keeps it alive while it is armed; destroying an armed Timer cancels it.
// Callbacks run from advance(), on the loop's thread, with the timer already disarmed, so a callback may
// re-arm its own timer, and arm, cancel or destroy any other timer.
#pragma once

#include "base/clock.hpp"
#include "base/counters.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace cm::core {

class TimerWheel;

/// Intrusive doubly linked list node; slot heads are sentinels of this type.
struct TimerLink {
    TimerLink* next = this;
    TimerLink* prev = this;
    [[nodiscard]] bool linked() const noexcept { return next != this; }
    void unlink() noexcept
    {
        prev->next = next;
        next->prev = prev;
        next = prev = this;
    }
};

class Timer : private TimerLink {
public:
    using Callback = void (*)(void* context);

    Timer(Callback callback, void* context) noexcept : _callback(callback), _context(context) {}
    ~Timer() { cancel(); }
    Timer(const Timer&) = delete;
    Timer& operator=(const Timer&) = delete;

    [[nodiscard]] bool armed() const noexcept { return _wheel != nullptr; }
    /// Disarms the timer; a no-op when it is not armed. O(1).
    void cancel() noexcept;

private:
    friend class TimerWheel;
    TimerWheel* _wheel = nullptr;  // set while armed
    std::uint64_t _expires = 0;    // absolute tick
    Callback _callback;
    void* _context;
    std::uint16_t _slot = 0;  // wheel-wide slot index while armed: [0, 256) level 0, then levels 1..4
};

#define CM_TIMER_COUNTERS(X)                                                  \
    X(armed, "timers armed now")                                              \
    X(fired, "timers that expired and ran their callback")                    \
    X(cascaded, "timers moved down a level (work the wheel did to stay O(1))")
CM_DECLARE_COUNTERS(TimerCounters, CM_TIMER_COUNTERS)

class TimerWheel {
public:
    /// `origin` is tick 0; `tick` is the resolution (every deadline is rounded up to a whole tick).
    explicit TimerWheel(TimePoint origin, Duration tick = std::chrono::milliseconds(1));
    ~TimerWheel();
    TimerWheel(const TimerWheel&) = delete;
    TimerWheel& operator=(const TimerWheel&) = delete;

    /// Arms `timer` to fire at the first tick at or after `deadline` (re-arms it if armed). A deadline in
    /// the past fires on the next advance().
    void schedule(Timer& timer, TimePoint deadline) noexcept;
    /// Arms `timer` to fire `delay` after the wheel's current time (the last advance()).
    void schedule_after(Timer& timer, Duration delay) noexcept;

    /// Runs every timer whose tick is due at `now`; returns how many fired.
    std::size_t advance(TimePoint now);

    /// Earliest time at which advance() may have something to do; nullopt when no timer is armed. This is
    /// a lower bound (a cascade boundary may come first), which is what a poll timeout needs.
    [[nodiscard]] std::optional<TimePoint> next_deadline() const noexcept;

    /// The time of the last tick processed: "now" as the wheel knows it.
    [[nodiscard]] TimePoint current_time() const noexcept { return tick_to_time(_next_tick == 0 ? 0 : _next_tick - 1); }
    [[nodiscard]] Duration resolution() const noexcept { return _tick; }
    [[nodiscard]] std::size_t size() const noexcept { return _counters.armed; }
    [[nodiscard]] const TimerCounters& counters() const noexcept { return _counters; }

private:
    friend class Timer;

    static constexpr unsigned level0_bits = 8;
    static constexpr unsigned level_bits = 6;
    static constexpr unsigned upper_levels = 4;
    static constexpr std::size_t level0_slots = std::size_t{1} << level0_bits;
    static constexpr std::size_t level_slots = std::size_t{1} << level_bits;

    void insert(Timer& timer) noexcept;
    void remove(Timer& timer) noexcept;
    void cascade(unsigned level, std::size_t slot) noexcept;
    TimerLink& slot_head(std::uint16_t slot) noexcept;
    [[nodiscard]] std::uint64_t time_to_tick_ceil(TimePoint t) const noexcept;
    [[nodiscard]] TimePoint tick_to_time(std::uint64_t tick) const noexcept { return _origin + _tick * static_cast<std::int64_t>(tick); }
    /// First occupied level-0 slot at or after `from` (no wrap), or level0_slots when none.
    [[nodiscard]] std::size_t next_level0_slot(std::size_t from) const noexcept;

    TimePoint _origin;
    Duration _tick;
    std::uint64_t _next_tick = 0;  // every tick before this one has fired
    std::array<TimerLink, level0_slots> _level0;
    std::array<std::array<TimerLink, level_slots>, upper_levels> _upper;
    std::array<std::uint64_t, level0_slots / 64> _level0_occupied{};  // bit per non-empty level-0 slot
    std::size_t _upper_count = 0;  // timers in levels 1..4
    TimerCounters _counters;
};

}  // namespace cm::core

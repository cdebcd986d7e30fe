// Time as the firmware sees it. Everything that needs "now" takes a Clock&, so tests drive time by hand.
#pragma once

#include <chrono>
#include <cstdint>

namespace cm {

using Duration = std::chrono::nanoseconds;
using TimePoint = std::chrono::time_point<std::chrono::steady_clock, Duration>;

using namespace std::chrono_literals;

class Clock {
public:
    virtual ~Clock() = default;
    [[nodiscard]] virtual TimePoint now() const = 0;
};

/// CLOCK_MONOTONIC: what the firmware runs on.
class SteadyClock final : public Clock {
public:
    [[nodiscard]] TimePoint now() const override
    {
        return std::chrono::time_point_cast<Duration>(std::chrono::steady_clock::now());
    }
};

/// A clock that only moves when told to: deterministic tests of timers, retransmission, ARP expiry.
class ManualClock final : public Clock {
public:
    explicit ManualClock(TimePoint start = TimePoint{} + 1s) : _now(start) {}
    [[nodiscard]] TimePoint now() const override { return _now; }
    void advance(Duration d) { _now += d; }
    void set(TimePoint t) { _now = t; }

private:
    TimePoint _now;
};

}  // namespace cm

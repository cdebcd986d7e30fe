// MemoryLinkPair: two Link endpoints joined in memory, with seeded, deterministic fault injection.
//
//   a().send() ... a().flush()  -> [a_to_b FaultChannel: loss, duplicate, reorder, delay, rate] -> b().receive()
//   b().send() ... b().flush()  -> [b_to_a FaultChannel]                                         -> a().receive()
//
// Time is the Clock given to the constructor (a ManualClock in tests). Each direction is a FaultChannel
// (fault_channel.hpp), which says how loss, duplicate, reorder, delay, jitter, rate and limit are decided:
// a frame enters its direction at flush(), at the clock's time then, and becomes receivable when it is
// due. Given the same seeds, the same sequence of calls and the same clock readings, exactly the same
// frames are lost, duplicated and reordered. Besides the profile's limit, a direction holds at most
// MemoryLinkLimits::max_in_flight frames.
//
// Ownership: send() copies the frame; the pair owns every frame in flight (buffers are recycled, so a
// steady flow does not allocate). The `frame` passed to on_frame() lives until on_frame() returns.
// Re-entrancy: a handler may call send() and flush() on either endpoint from inside on_frame().
// Thread rule: single-threaded; the Clock must not go backwards.
#pragma once

#include "base/clock.hpp"
#include "base/counters.hpp"
#include "link/fault_channel.hpp"
#include "link/link.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace cm::link {

struct MemoryLinkLimits {
    std::size_t max_frame = Link::default_max_frame;
    std::size_t tx_batch = Link::default_tx_batch;
    /// Frames in flight per direction (flushed, not yet received) before further frames are dropped.
    std::size_t max_in_flight = 65536;
};

class MemoryLinkPair {
public:
    enum class Direction { a_to_b = 0, b_to_a = 1 };

    explicit MemoryLinkPair(Clock& clock, FaultProfile a_to_b = {}, FaultProfile b_to_a = {},
                            MemoryLinkLimits limits = {});
    MemoryLinkPair(const MemoryLinkPair&) = delete;
    MemoryLinkPair& operator=(const MemoryLinkPair&) = delete;

    Link& a() { return _a; }
    Link& b() { return _b; }

    /// Frames flushed in `direction` and not yet received (due or not).
    [[nodiscard]] std::size_t pending(Direction direction) const;
    /// Frames in `direction` that receive() would deliver now.
    [[nodiscard]] std::size_t ready(Direction direction) const;
    /// The earliest time at which a frame in flight, in either direction, becomes receivable (possibly
    /// already past); nullopt when nothing is in flight. A harness advances its ManualClock to it.
    [[nodiscard]] std::optional<TimePoint> next_delivery() const;

    [[nodiscard]] const FaultCounters& faults(Direction direction) const;
    [[nodiscard]] const FaultProfile& profile(Direction direction) const;
    /// Replaces a direction's profile and restarts its PRNG from the new seed. Frames already in flight
    /// keep the delivery times they were given.
    void set_profile(Direction direction, const FaultProfile& profile);

private:
    using Frame = FramePool::Frame;

    class Endpoint final : public Link {
    public:
        Endpoint(MemoryLinkPair& pair, FaultChannel& out, FaultChannel& in) : _pair(pair), _out(out), _in(in) {}
        std::size_t receive(FrameHandler& handler, std::size_t budget) override;
        bool send(std::span<const std::byte> frame) override;
        std::size_t flush() override;
        [[nodiscard]] int wait_fd() const override { return -1; }
        /// When the next frame towards this endpoint is due.
        [[nodiscard]] std::optional<TimePoint> next_wakeup() const override { return _in.next_due(); }
        [[nodiscard]] std::size_t max_frame() const override { return _pair._limits.max_frame; }
        [[nodiscard]] const LinkCounters& counters() const override { return _counters; }

    private:
        MemoryLinkPair& _pair;
        FaultChannel& _out;
        FaultChannel& _in;
        std::vector<Frame> _tx;  // queued by send(), handed to _out by flush()
        LinkCounters _counters;
    };

    FaultChannel& channel(Direction direction) { return direction == Direction::a_to_b ? _ab : _ba; }
    [[nodiscard]] const FaultChannel& channel(Direction direction) const
    {
        return direction == Direction::a_to_b ? _ab : _ba;
    }

    Clock& _clock;
    MemoryLinkLimits _limits;
    FramePool _pool;  // shared by both directions and both endpoints; declared before its users
    FaultChannel _ab;
    FaultChannel _ba;
    Endpoint _a;
    Endpoint _b;
};

}  // namespace cm::link

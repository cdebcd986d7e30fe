// FaultChannel: one direction of an impaired link. Frames go in with push(), are decided on there (lost,
// duplicated, held back for reordering, delayed), and come out of pop_ready() once due. The in-memory pair
// (memory_link.hpp) runs one channel per direction; ImpairedLink (impaired_link.hpp) runs one for the frames
// it receives and one for the frames it sends.
//
//   push(frame, now) -> [loss] -> due = max(now + delay + u*jitter, previous due) + serialisation at `rate`
//                    -> [limit] -> [reorder: hold back] -> [duplicate: a copy right behind] -> pop_ready(now)
//
// Time: every call is given `now` (the owner reads its Clock); `now` must not go backwards. A frame pushed
// at t with delay d and jitter j is due at t + d + u*j, u uniform in [0, 1). Jitter never reorders by
// itself: a frame is never due before the frame pushed ahead of it.
//
// Rate (like netem's rate): with `rate` bits per second, a frame also waits for its own serialisation,
// size * 8 / rate seconds (the Ethernet frame as given: header and payload, no FCS or preamble), behind
// the frame ahead of it: due = max(now + delay + jitter, previous due) + size * 8 / rate. A duplicate is
// serialised again, behind its original.
//
// Limit (like netem's limit): the channel holds at most min(profile.limit, capacity) frames (queued,
// delayed or held back); a frame or duplicate that finds it full is dropped and counted, and takes no
// time on the line (the next frame is due as if it had never come). `capacity` is the
// owner's own hard bound (MemoryLinkLimits::max_in_flight for the pair; none for ImpairedLink).
//
// Faults, decided per frame at push() from the channel's own PRNG (xoshiro256** seeded by splitmix64 from
// FaultProfile::seed). Every frame draws the same four numbers whatever the profile, so given the same seed,
// the same sequence of pushes and the same `now` values, exactly the same frames are lost, duplicated and
// reordered; and turning one fault on does not change which frames another fault picks. Rate and limit
// draw nothing.
//   loss      - the frame vanishes.
//   duplicate - a second copy follows right behind the original.
//   reorder   - the frame is held back and the next frame pushed overtakes it (a run of held frames keeps
//               its own order and is overtaken as a whole). If no later frame comes before the held frame
//               is due and everything ahead of it has been popped, it comes out in order after all, and is
//               not counted as reordered.
//
// Ownership: push() takes the frame's buffer; pop_ready() hands one back, and the caller returns it to the
// FramePool when done with it. Buffers come from and go back to the FramePool given to the constructor, so
// a steady flow does not allocate. Thread rule: single-threaded.
#pragma once

#include "base/clock.hpp"
#include "base/counters.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <vector>

namespace cm::link {

struct FaultProfile {
    /// netem's default limit.
    static constexpr std::size_t default_limit = 1000;

    double loss = 0;       ///< probability a frame is lost
    double duplicate = 0;  ///< probability a frame is delivered twice
    double reorder = 0;    ///< probability a frame is overtaken by the next one
    Duration delay{0};     ///< fixed one-way delay
    Duration jitter{0};    ///< extra delay, uniform in [0, jitter)
    std::uint64_t rate = 0;             ///< bits per second the channel serialises frames at; 0: no limit
    std::size_t limit = default_limit;  ///< frames the channel holds before it drops
    std::uint64_t seed = 1;
};

#define CM_FAULT_COUNTERS(X)                                                                  \
    X(frames_in, "frames pushed into this direction")                                         \
    X(lost, "dropped: lost by fault injection")                                               \
    X(duplicated, "extra copies made by fault injection")                                     \
    X(reordered, "frames delivered after a frame sent later than them")                       \
    X(delayed, "frames due later than the moment they were pushed (delay, jitter or rate)")   \
    X(dropped_in_flight_full, "dropped: the direction already held its limit of frames")
CM_DECLARE_COUNTERS(FaultCounters, CM_FAULT_COUNTERS)

/// Frame buffers for reuse. Not thread-safe; shared by the channels and endpoints of one owner.
class FramePool {
public:
    using Frame = std::vector<std::byte>;
    /// Spare buffers kept; beyond this, returned buffers are freed.
    static constexpr std::size_t max_spare = 4096;

    /// An empty buffer, with the capacity of a recycled one when there is one.
    Frame take();
    /// Returns a buffer for reuse.
    void give(Frame frame);

private:
    std::vector<Frame> _spare;
};

class FaultChannel {
public:
    using Frame = FramePool::Frame;
    static constexpr std::size_t no_capacity_bound = std::numeric_limits<std::size_t>::max();

    FaultChannel(const FaultProfile& profile, FramePool& pool, std::size_t capacity = no_capacity_bound);
    FaultChannel(const FaultChannel&) = delete;
    FaultChannel& operator=(const FaultChannel&) = delete;

    /// Takes `frame` in at `now` and decides its fate (see the header comment). A frame dropped here goes
    /// back to the pool.
    void push(Frame frame, TimePoint now);
    /// The next frame in delivery order if it is due at `now`; the caller gives its buffer back to the pool.
    std::optional<Frame> pop_ready(TimePoint now);

    /// Frames pushed and not yet popped (due or not).
    [[nodiscard]] std::size_t pending() const { return _queue.size() + _held.size(); }
    /// Frames pop_ready() would hand out at `now`.
    [[nodiscard]] std::size_t ready(TimePoint now) const;
    /// When the next frame in delivery order is due (possibly already past); nullopt when none is pending.
    [[nodiscard]] std::optional<TimePoint> next_due() const;

    [[nodiscard]] const FaultCounters& counters() const { return _counters; }
    [[nodiscard]] const FaultProfile& profile() const { return _profile; }
    /// Replaces the profile and restarts the PRNG from its seed. Frames already pending keep their due times.
    void set_profile(const FaultProfile& profile);

private:
    struct InFlight {
        Frame bytes;
        TimePoint due;
    };

    /// xoshiro256**, seeded through splitmix64: small, fast, and the same on every standard library.
    class Prng {
    public:
        explicit Prng(std::uint64_t seed);
        std::uint64_t next();
        /// Uniform in [0, 1), from the top 53 bits.
        double unit();

    private:
        std::array<std::uint64_t, 4> _s{};
    };

    /// Queues (or holds back) a frame; false when the limit dropped it.
    bool enqueue(Frame frame, TimePoint due, bool hold);
    [[nodiscard]] bool next_ready(TimePoint now) const;
    /// How long `bytes` take to serialise at the profile's rate (zero without a rate).
    [[nodiscard]] Duration serialisation(std::size_t bytes) const;

    FaultProfile _profile;
    Prng _prng;
    FramePool& _pool;
    std::size_t _capacity;
    FaultCounters _counters;
    std::deque<InFlight> _queue;  // in delivery order; due times never decrease
    std::deque<InFlight> _held;   // frames picked for reordering, waiting for a frame to overtake them
    TimePoint _last_due{};
};

}  // namespace cm::link

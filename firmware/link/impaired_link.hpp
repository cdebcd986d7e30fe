// ImpairedLink: wraps any Link and impairs the traffic through it in user space, with the fault model of
// the in-memory pair (fault_channel.hpp): loss, duplicate, reorder, delay + jitter, rate, limit. It stands
// in for `tc netem` where the kernel has no netem qdisc. Each direction has its own profile and channel:
//
//   receive -> inner.receive (up to `budget` frames, copied) -> [rx channel] -> handler, once due
//   send    -> copy -> [tx channel]
//   flush   -> inner.send every frame of the tx channel that is due, inner.flush; the rest wait
//   next_wakeup -> the earliest of: the rx channel's next due frame, the tx channel's, the inner link's
//   wait_fd, max_frame, counters -> the inner link's (link.* counts what crossed the real port; each
//   channel's FaultCounters count what the impairment did)
//
// Time: frames enter a channel at the clock's time when they are received from the inner link (rx) or
// passed to send() (tx). The loop must call receive() and flush() again when next_wakeup() is due; a
// frame due at t is delivered or sent at the first receive()/flush() at or after t.
//
// Seeds: the rx channel's PRNG is seeded with rx_profile.seed; the tx channel's with tx_profile.seed mixed
// with a constant, so the same profile given to both directions does not lose the same frame numbers in
// both.
//
// send(): a frame larger than the inner link's max_frame() goes straight to the inner link's send(), which
// refuses and counts it (Link contract); every other frame is accepted (true), and a frame the tx channel
// then loses or has no room for is counted in its FaultCounters, as on a real lossy wire.
//
// Ownership: frames are copied on the way in, both ways; the link owns every frame it holds back, and
// frames still held back when it is destroyed are dropped. Re-entrancy: a handler may call send() and
// flush() from inside on_frame() (the inner link's receive() has returned by then).
// Thread rule: single-threaded, like the link it wraps; `inner` and `clock` must outlive it.
#pragma once

#include "base/clock.hpp"
#include "link/fault_channel.hpp"
#include "link/link.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>

namespace cm::link {

class ImpairedLink final : public Link {
public:
    /// XORed into the tx profile's seed (see the header comment).
    static constexpr std::uint64_t tx_seed_mix = 0x6a09e667f3bcc908ULL;

    /// `rx_profile` impairs the frames received from `inner`, `tx_profile` the frames sent on it.
    /// `inner_tx_batch`: how many frames the inner link's send() queues before it needs a flush().
    ImpairedLink(Link& inner, Clock& clock, const FaultProfile& rx_profile, const FaultProfile& tx_profile,
                 std::size_t inner_tx_batch = Link::default_tx_batch);
    ImpairedLink(const ImpairedLink&) = delete;
    ImpairedLink& operator=(const ImpairedLink&) = delete;

    std::size_t receive(FrameHandler& handler, std::size_t budget) override;
    bool send(std::span<const std::byte> frame) override;
    std::size_t flush() override;
    [[nodiscard]] int wait_fd() const override { return _inner.wait_fd(); }
    [[nodiscard]] std::optional<TimePoint> next_wakeup() const override;
    [[nodiscard]] std::size_t max_frame() const override { return _inner.max_frame(); }
    [[nodiscard]] const LinkCounters& counters() const override { return _inner.counters(); }

    [[nodiscard]] const FaultCounters& rx_faults() const { return _rx.counters(); }
    [[nodiscard]] const FaultCounters& tx_faults() const { return _tx.counters(); }
    [[nodiscard]] const FaultProfile& rx_profile() const { return _rx.profile(); }
    /// The tx profile as given, but for its seed, which is mixed (see the header comment).
    [[nodiscard]] const FaultProfile& tx_profile() const { return _tx.profile(); }
    /// Frames held back in each direction (not yet delivered to the handler / sent on the inner link).
    [[nodiscard]] std::size_t rx_pending() const { return _rx.pending(); }
    [[nodiscard]] std::size_t tx_pending() const { return _tx.pending(); }

private:
    class Intake;  // the FrameHandler that copies the inner link's frames into the rx channel

    Link& _inner;
    Clock& _clock;
    std::size_t _inner_tx_batch;
    FramePool _pool;  // declared before the channels that use it
    FaultChannel _rx;
    FaultChannel _tx;
};

}  // namespace cm::link

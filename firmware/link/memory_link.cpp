#include "link/memory_link.hpp"

#include <algorithm>

namespace cm::link {

MemoryLinkPair::MemoryLinkPair(Clock& clock, FaultProfile a_to_b, FaultProfile b_to_a, MemoryLinkLimits limits)
    : _clock(clock),
      _limits(limits),
      _ab(a_to_b, _pool, limits.max_in_flight),
      _ba(b_to_a, _pool, limits.max_in_flight),
      _a(*this, _ab, _ba),
      _b(*this, _ba, _ab)
{
}

std::size_t MemoryLinkPair::pending(Direction direction) const
{
    return channel(direction).pending();
}

std::size_t MemoryLinkPair::ready(Direction direction) const
{
    return channel(direction).ready(_clock.now());
}

std::optional<TimePoint> MemoryLinkPair::next_delivery() const
{
    const std::optional<TimePoint> ab = _ab.next_due();
    const std::optional<TimePoint> ba = _ba.next_due();
    if (ab && ba) {
        return std::min(*ab, *ba);
    }
    return ab ? ab : ba;
}

const FaultCounters& MemoryLinkPair::faults(Direction direction) const
{
    return channel(direction).counters();
}

const FaultProfile& MemoryLinkPair::profile(Direction direction) const
{
    return channel(direction).profile();
}

void MemoryLinkPair::set_profile(Direction direction, const FaultProfile& profile)
{
    channel(direction).set_profile(profile);
}

// ---- endpoints -----------------------------------------------------------------------------------------

std::size_t MemoryLinkPair::Endpoint::receive(FrameHandler& handler, std::size_t budget)
{
    std::size_t delivered = 0;
    while (delivered < budget) {
        std::optional<Frame> frame = _in.pop_ready(_pair._clock.now());
        if (!frame) {
            break;
        }
        _counters.rx_frames++;
        _counters.rx_bytes += frame->size();
        delivered++;
        // The frame is out of the queue before the handler runs, so the handler may send and flush freely.
        handler.on_frame(*frame);
        _pair._pool.give(std::move(*frame));
    }
    return delivered;
}

bool MemoryLinkPair::Endpoint::send(std::span<const std::byte> frame)
{
    if (frame.size() > _pair._limits.max_frame) {
        _counters.tx_dropped_too_large++;
        return false;
    }
    if (_tx.size() >= _pair._limits.tx_batch) {
        _counters.tx_dropped_queue_full++;
        return false;
    }
    Frame copy = _pair._pool.take();
    copy.assign(frame.begin(), frame.end());
    _tx.push_back(std::move(copy));
    return true;
}

std::size_t MemoryLinkPair::Endpoint::flush()
{
    // Swap the batch out first: a fault-free push never calls back, but keep flush() safe to re-enter.
    std::vector<Frame> batch;
    batch.swap(_tx);
    for (Frame& frame : batch) {
        _counters.tx_frames++;
        _counters.tx_bytes += frame.size();
        _out.push(std::move(frame), _pair._clock.now());
    }
    const std::size_t sent = batch.size();
    batch.clear();
    if (_tx.empty()) {
        _tx.swap(batch);  // keep the batch's capacity for the next round
    }
    return sent;
}

}  // namespace cm::link

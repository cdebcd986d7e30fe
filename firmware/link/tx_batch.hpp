// The transmit batch of a port link (PcapLink, PacketSocketLink): send() copies each frame into one of
// `capacity` pre-allocated slots of `max_frame` bytes (no allocation per frame); flush() drains them in
// order through the link's own transmit call. Drops and results are counted in the link's counters.
#pragma once

#include "link/link.hpp"

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace cm::link {

class TxBatch {
public:
    TxBatch(std::size_t capacity, std::size_t max_frame)
        : _capacity(capacity), _max_frame(max_frame), _buffer(capacity * max_frame)
    {
        _lengths.reserve(capacity);
    }

    [[nodiscard]] std::size_t max_frame() const { return _max_frame; }

    /// Queues a copy of `frame`; false (counted) when it is too large or the batch is full.
    bool push(std::span<const std::byte> frame, LinkCounters& counters)
    {
        if (frame.size() > _max_frame) {
            counters.tx_dropped_too_large++;
            return false;
        }
        if (_lengths.size() >= _capacity) {
            counters.tx_dropped_queue_full++;
            return false;
        }
        std::memcpy(_buffer.data() + _lengths.size() * _max_frame, frame.data(), frame.size());
        _lengths.push_back(static_cast<std::uint32_t>(frame.size()));
        return true;
    }

    /// Hands every queued frame, in order, to `transmit(frame) -> bool` (false: that frame failed, counted
    /// as tx_errors), empties the batch and returns how many frames left.
    template <class Transmit>
    std::size_t drain(LinkCounters& counters, Transmit&& transmit)
    {
        std::size_t sent = 0;
        for (std::size_t i = 0; i < _lengths.size(); ++i) {
            const std::span<const std::byte> frame(_buffer.data() + i * _max_frame, _lengths[i]);
            if (!transmit(frame)) {
                counters.tx_errors++;
                continue;
            }
            counters.tx_frames++;
            counters.tx_bytes += frame.size();
            sent++;
        }
        _lengths.clear();
        return sent;
    }

private:
    std::size_t _capacity;
    std::size_t _max_frame;
    std::vector<std::byte> _buffer;
    std::vector<std::uint32_t> _lengths;  // one per queued frame; size() == frames queued
};

}  // namespace cm::link

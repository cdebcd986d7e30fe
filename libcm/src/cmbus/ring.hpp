// The bus's single-producer single-consumer rings and slot ownership, shared by the card (firmware/bus) and
// the host (libcm). The protocol is described in words in cm/bus_abi.h; this is it in code.
//
// Every index word lives in shared memory that the other side can scribble on, so each side keeps its own
// index privately, only reads the other side's index, and checks it before believing it: an impossible
// index makes refresh() return false and the caller faults the queue pair. Descriptors are copied out of
// the ring before they are looked at (the other side cannot change them under our feet after the check).
#pragma once

#include "cm/bus_abi.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

namespace cm::bus {

// ---- shared-memory words: C++20 atomic_ref on the plain cm_bus_u32 fields of the ABI structs ----------
inline std::uint32_t load_acquire(std::uint32_t& word) noexcept
{
    return std::atomic_ref<std::uint32_t>(word).load(std::memory_order_acquire);
}
inline std::uint32_t load_relaxed(std::uint32_t& word) noexcept
{
    return std::atomic_ref<std::uint32_t>(word).load(std::memory_order_relaxed);
}
inline void store_release(std::uint32_t& word, std::uint32_t value) noexcept
{
    std::atomic_ref<std::uint32_t>(word).store(value, std::memory_order_release);
}
inline void store_relaxed(std::uint32_t& word, std::uint32_t value) noexcept
{
    std::atomic_ref<std::uint32_t>(word).store(value, std::memory_order_relaxed);
}
inline std::uint32_t exchange(std::uint32_t& word, std::uint32_t value) noexcept
{
    return std::atomic_ref<std::uint32_t>(word).exchange(value, std::memory_order_acq_rel);
}
inline void full_fence() noexcept { std::atomic_thread_fence(std::memory_order_seq_cst); }

/// Where one ring lives: its descriptors, both indices, and the consumer's need_wakeup word.
struct RingView {
    cm_bus_desc* descs = nullptr;
    std::uint32_t entries = 0;  // a power of two
    std::uint32_t* prod = nullptr;
    std::uint32_t* cons = nullptr;
    std::uint32_t* need_wakeup = nullptr;
};

/// The producing side of a ring. Not thread-safe: one producer.
class RingProducer {
public:
    RingProducer() = default;
    /// Starts at the index the ring holds now (both indices are equal after attach).
    RingProducer(RingView view, std::uint32_t start) : _v(view), _prod(start), _cons(start), _published(start) {}

    /// Reads the consumer's index. False (and nothing changes) when it is impossible: behind the last value
    /// seen or ahead of what we produced.
    [[nodiscard]] bool refresh() noexcept
    {
        const std::uint32_t cons = load_acquire(*_v.cons);
        if (cons - _cons > _prod - _cons) {
            return false;
        }
        _cons = cons;
        return true;
    }
    /// Free entries, as of the last refresh().
    [[nodiscard]] std::uint32_t space() const noexcept { return _v.entries - (_prod - _cons); }
    /// Entries the consumer has not taken yet, as of the last refresh().
    [[nodiscard]] std::uint32_t in_flight() const noexcept { return _prod - _cons; }
    /// Writes one descriptor (the caller checked space() > 0); visible to the consumer after publish().
    void push(const cm_bus_desc& desc) noexcept
    {
        std::memcpy(&_v.descs[_prod & (_v.entries - 1)], &desc, sizeof desc);
        ++_prod;
    }
    /// Makes everything pushed visible. Returns true when the consumer asked to be woken (its
    /// need_wakeup word was set; it is now cleared): the caller rings the consumer's doorbell.
    [[nodiscard]] bool publish() noexcept
    {
        publish_entries();
        return take_wakeup();
    }
    /// The first half of publish(): the entries become visible, the consumer's need_wakeup is not looked at.
    /// A producer that holds its doorbell back (notification coalescing) calls take_wakeup() later.
    void publish_entries() noexcept
    {
        if (_prod != _published) {
            store_release(*_v.prod, _prod);
            _published = _prod;
        }
        full_fence();
    }
    /// The second half: true when the consumer asked to be woken (its need_wakeup word was set; it is now
    /// cleared). A consumer arms only after finding the ring empty, so entries published before this call are
    /// either seen by the consumer on its own or covered by the doorbell this asks for.
    [[nodiscard]] bool take_wakeup() noexcept
    {
        return load_relaxed(*_v.need_wakeup) != 0 && exchange(*_v.need_wakeup, 0) != 0;
    }
    /// What the consumer stored in its need_wakeup word (0: it is not asleep, or about to look again).
    [[nodiscard]] std::uint32_t wakeup_level() const noexcept { return load_relaxed(*_v.need_wakeup); }
    [[nodiscard]] bool unpublished() const noexcept { return _prod != _published; }
    [[nodiscard]] std::uint32_t index() const noexcept { return _prod; }

private:
    RingView _v;
    std::uint32_t _prod = 0;
    std::uint32_t _cons = 0;
    std::uint32_t _published = 0;
};

/// The consuming side of a ring. Not thread-safe: one consumer.
class RingConsumer {
public:
    RingConsumer() = default;
    RingConsumer(RingView view, std::uint32_t start) : _v(view), _cons(start), _prod(start) {}

    /// Reads the producer's index. False when it is impossible (more than `entries` ahead, or behind us).
    [[nodiscard]] bool refresh() noexcept
    {
        const std::uint32_t prod = load_acquire(*_v.prod);
        if (prod - _cons > _v.entries) {
            return false;
        }
        _prod = prod;
        return true;
    }
    [[nodiscard]] std::uint32_t available() const noexcept { return _prod - _cons; }
    /// Copies the next descriptor out (the caller checked available() > 0).
    [[nodiscard]] cm_bus_desc pop() noexcept
    {
        cm_bus_desc desc;
        std::memcpy(&desc, &_v.descs[_cons & (_v.entries - 1)], sizeof desc);
        ++_cons;
        return desc;
    }
    /// Gives the entries popped so far back to the producer.
    void release() noexcept { store_release(*_v.cons, _cons); }
    /// Before sleeping: asks the producer for a doorbell. Returns false (do not sleep) when work arrived in
    /// the meantime or the producer's index is impossible; the caller then polls again.
    /// `level`: the value stored (1, or CM_BUS_WAKE_WORK for the host's event ring).
    [[nodiscard]] bool arm(std::uint32_t level = 1) noexcept
    {
        store_relaxed(*_v.need_wakeup, level);
        full_fence();
        if (!refresh() || available() > 0) {
            store_relaxed(*_v.need_wakeup, 0);
            return false;
        }
        return true;
    }
    void disarm() noexcept { store_relaxed(*_v.need_wakeup, 0); }
    /// What our need_wakeup word holds now (0 once the producer took it to ring us).
    [[nodiscard]] std::uint32_t armed_level() const noexcept { return load_relaxed(*_v.need_wakeup); }
    /// Changes an armed need_wakeup from `from` to `to` (compare-and-exchange: the producer may be clearing
    /// it at the same moment). True when it changed.
    bool rearm(std::uint32_t from, std::uint32_t to) noexcept
    {
        return std::atomic_ref<std::uint32_t>(*_v.need_wakeup).compare_exchange_strong(from, to, std::memory_order_acq_rel);
    }
    [[nodiscard]] std::uint32_t index() const noexcept { return _cons; }

private:
    RingView _v;
    std::uint32_t _cons = 0;
    std::uint32_t _prod = 0;
};

/// Slots [first, first + count) that this side hands out (the card's c2h slots, the host's h2c slots): a
/// free stack and a flag per slot, so a slot is released at most once and only after it was handed out.
class SlotPool {
public:
    SlotPool() = default;
    SlotPool(std::uint32_t first, std::uint32_t count) : _first(first), _out(count, 0)
    {
        reset();
    }
    void reset()
    {
        _free.clear();
        for (std::uint32_t i = static_cast<std::uint32_t>(_out.size()); i > 0; --i) {
            _free.push_back(_first + i - 1);  // lowest slot on top
        }
        std::fill(_out.begin(), _out.end(), 0);
    }
    [[nodiscard]] std::optional<std::uint32_t> acquire()
    {
        if (_free.empty()) {
            return std::nullopt;
        }
        const std::uint32_t slot = _free.back();
        _free.pop_back();
        _out[slot - _first] = 1;
        return slot;
    }
    /// False when the slot is not ours or not handed out (a double or foreign return).
    [[nodiscard]] bool release(std::uint32_t slot)
    {
        if (!is_out(slot)) {
            return false;
        }
        _out[slot - _first] = 0;
        _free.push_back(slot);
        return true;
    }
    [[nodiscard]] bool contains(std::uint32_t slot) const noexcept { return slot - _first < _out.size(); }
    [[nodiscard]] bool is_out(std::uint32_t slot) const noexcept { return contains(slot) && _out[slot - _first] != 0; }
    [[nodiscard]] std::uint32_t capacity() const noexcept { return static_cast<std::uint32_t>(_out.size()); }
    [[nodiscard]] std::uint32_t available() const noexcept { return static_cast<std::uint32_t>(_free.size()); }
    [[nodiscard]] std::uint32_t in_use() const noexcept { return capacity() - available(); }
    [[nodiscard]] std::uint32_t first() const noexcept { return _first; }

private:
    std::uint32_t _first = 0;
    std::vector<std::uint8_t> _out;
    std::vector<std::uint32_t> _free;
};

/// Slots [first, first + count) that the other side hands out to us: which ones we hold right now.
class SlotHolding {
public:
    SlotHolding() = default;
    SlotHolding(std::uint32_t first, std::uint32_t count) : _first(first), _held(count, 0) {}
    void reset()
    {
        std::fill(_held.begin(), _held.end(), 0);
        _count = 0;
    }
    /// False when the slot is outside the range or already held (the other side handed it out twice).
    [[nodiscard]] bool take(std::uint32_t slot)
    {
        if (!contains(slot) || _held[slot - _first] != 0) {
            return false;
        }
        _held[slot - _first] = 1;
        ++_count;
        return true;
    }
    /// False when we do not hold it.
    [[nodiscard]] bool give(std::uint32_t slot)
    {
        if (!holds(slot)) {
            return false;
        }
        _held[slot - _first] = 0;
        --_count;
        return true;
    }
    [[nodiscard]] bool contains(std::uint32_t slot) const noexcept { return slot - _first < _held.size(); }
    [[nodiscard]] bool holds(std::uint32_t slot) const noexcept { return contains(slot) && _held[slot - _first] != 0; }
    [[nodiscard]] std::uint32_t held() const noexcept { return _count; }

private:
    std::uint32_t _first = 0;
    std::vector<std::uint8_t> _held;
    std::uint32_t _count = 0;
};

/// Slots in flight on one connection in one direction, against a limit.
struct Credit {
    std::uint32_t limit = 0;
    std::uint32_t used = 0;
    [[nodiscard]] bool take() noexcept
    {
        if (used >= limit) {
            return false;
        }
        ++used;
        return true;
    }
    /// False when nothing was in flight (a return without a matching send).
    [[nodiscard]] bool give() noexcept
    {
        if (used == 0) {
            return false;
        }
        --used;
        return true;
    }
    [[nodiscard]] std::uint32_t available() const noexcept { return used >= limit ? 0 : limit - used; }
};

// ---- connection ids: index in the queue pair's table (low 16 bits) and generation (high 16 bits) ------
constexpr std::uint32_t conn_id(std::uint32_t index, std::uint32_t generation) noexcept
{
    return (index & 0xffffU) | (generation << 16);
}
constexpr std::uint32_t conn_index(std::uint32_t id) noexcept { return id & 0xffffU; }
constexpr std::uint32_t conn_generation(std::uint32_t id) noexcept { return id >> 16; }

}  // namespace cm::bus

#include "core/timer_wheel.hpp"

#include <bit>
#include <cassert>

namespace cm::core {

void Timer::cancel() noexcept
{
    if (_wheel != nullptr) {
        _wheel->remove(*this);
    }
}

TimerWheel::TimerWheel(TimePoint origin, Duration tick) : _origin(origin), _tick(tick)
{
    assert(tick > Duration::zero());
}

TimerWheel::~TimerWheel()
{
    // Disarm whatever is left so the owners' destructors do not touch a dead wheel.
    for (std::uint16_t slot = 0; slot < level0_slots + upper_levels * level_slots; ++slot) {
        TimerLink& head = slot_head(slot);
        while (head.linked()) {
            auto* timer = static_cast<Timer*>(head.next);
            timer->unlink();
            timer->_wheel = nullptr;
        }
    }
}

TimerLink& TimerWheel::slot_head(std::uint16_t slot) noexcept
{
    if (slot < level0_slots) {
        return _level0[slot];
    }
    const std::size_t upper = slot - level0_slots;
    return _upper[upper / level_slots][upper % level_slots];
}

std::uint64_t TimerWheel::time_to_tick_ceil(TimePoint t) const noexcept
{
    if (t <= _origin) {
        return 0;
    }
    const auto elapsed = (t - _origin).count();
    const auto tick = _tick.count();
    return static_cast<std::uint64_t>((elapsed + tick - 1) / tick);
}

void TimerWheel::schedule(Timer& timer, TimePoint deadline) noexcept
{
    timer.cancel();
    timer._expires = time_to_tick_ceil(deadline);
    timer._wheel = this;
    ++_counters.armed;
    insert(timer);
}

void TimerWheel::schedule_after(Timer& timer, Duration delay) noexcept
{
    schedule(timer, current_time() + delay);
}

// Places a timer by how far its expiry is from the next tick to run (the classic add_timer placement).
void TimerWheel::insert(Timer& timer) noexcept
{
    std::uint64_t expires = timer._expires < _next_tick ? _next_tick : timer._expires;
    const std::uint64_t delta = expires - _next_tick;
    std::uint16_t slot = 0;
    if (delta < level0_slots) {
        slot = static_cast<std::uint16_t>(expires & (level0_slots - 1));
        _level0_occupied[slot / 64] |= std::uint64_t{1} << (slot % 64);
    } else {
        unsigned level = 0;  // 0-based among the upper levels
        unsigned shift = level0_bits;
        std::uint64_t horizon = std::uint64_t{1} << (level0_bits + level_bits);
        while (level + 1 < upper_levels && delta >= horizon) {
            ++level;
            shift += level_bits;
            horizon <<= level_bits;
        }
        if (delta >= horizon) {
            // Beyond the wheel's horizon: park it in the farthest slot; each cascade re-places it.
            expires = _next_tick + horizon - 1;
        }
        const auto index = static_cast<std::uint16_t>((expires >> shift) & (level_slots - 1));
        slot = static_cast<std::uint16_t>(level0_slots + level * level_slots + index);
        ++_upper_count;
    }
    timer._slot = slot;
    // Append at the tail: timers due on the same tick fire in the order they were armed.
    TimerLink& head = slot_head(slot);
    timer.prev = head.prev;
    timer.next = &head;
    head.prev->next = &timer;
    head.prev = &timer;
}

void TimerWheel::remove(Timer& timer) noexcept
{
    const std::uint16_t slot = timer._slot;
    timer.unlink();
    timer._wheel = nullptr;
    --_counters.armed;
    if (slot < level0_slots) {
        if (!_level0[slot].linked()) {
            _level0_occupied[slot / 64] &= ~(std::uint64_t{1} << (slot % 64));
        }
    } else {
        --_upper_count;
    }
}

void TimerWheel::cascade(unsigned level, std::size_t index) noexcept
{
    TimerLink& head = _upper[level][index];
    // Detach the whole slot first: re-insertion may land a far-future timer back in this very slot.
    TimerLink pending;
    if (head.linked()) {
        pending.next = head.next;
        pending.prev = head.prev;
        pending.next->prev = &pending;
        pending.prev->next = &pending;
        head.next = head.prev = &head;
    }
    while (pending.linked()) {
        auto* timer = static_cast<Timer*>(pending.next);
        timer->unlink();
        --_upper_count;
        ++_counters.cascaded;
        insert(*timer);
    }
}

std::size_t TimerWheel::next_level0_slot(std::size_t from) const noexcept
{
    for (std::size_t word = from / 64; word < _level0_occupied.size(); ++word) {
        std::uint64_t bits = _level0_occupied[word];
        if (word == from / 64) {
            bits &= ~std::uint64_t{0} << (from % 64);
        }
        if (bits != 0) {
            return word * 64 + static_cast<std::size_t>(std::countr_zero(bits));
        }
    }
    return level0_slots;
}

std::size_t TimerWheel::advance(TimePoint now)
{
    if (now < _origin) {
        return 0;
    }
    const auto target = static_cast<std::uint64_t>((now - _origin).count() / _tick.count());
    std::size_t fired = 0;
    while (_next_tick <= target) {
        if (_counters.armed == 0) {
            _next_tick = target + 1;  // nothing to run: jump straight to now
            break;
        }
        const std::size_t index = _next_tick & (level0_slots - 1);
        if (index == 0) {
            // Entering a new level-0 rotation: pull down the upper slots that now fall within reach.
            std::uint64_t tick = _next_tick >> level0_bits;
            for (unsigned level = 0; level < upper_levels; ++level) {
                const std::size_t slot = tick & (level_slots - 1);
                cascade(level, slot);
                if (slot != 0) {
                    break;
                }
                tick >>= level_bits;
            }
        }
        const std::size_t occupied = next_level0_slot(index);
        if (occupied != index) {
            // Skip empty ticks: up to the next occupied slot or the next rotation, whichever is first.
            const std::uint64_t skip = (occupied == level0_slots ? level0_slots : occupied) - index;
            _next_tick = std::min(_next_tick + skip, target + 1);
            continue;
        }
        // Run this tick's slot. Detach it first so callbacks that re-arm for "now" land on the next tick.
        TimerLink& head = _level0[index];
        TimerLink due;
        due.next = head.next;
        due.prev = head.prev;
        due.next->prev = &due;
        due.prev->next = &due;
        head.next = head.prev = &head;
        _level0_occupied[index / 64] &= ~(std::uint64_t{1} << (index % 64));
        ++_next_tick;
        while (due.linked()) {
            auto* timer = static_cast<Timer*>(due.next);
            timer->unlink();
            timer->_wheel = nullptr;
            --_counters.armed;
            ++_counters.fired;
            ++fired;
            timer->_callback(timer->_context);
        }
    }
    return fired;
}

std::optional<TimePoint> TimerWheel::next_deadline() const noexcept
{
    if (_counters.armed == 0) {
        return std::nullopt;
    }
    const std::size_t index = _next_tick & (level0_slots - 1);
    const std::uint64_t rotation_end = _next_tick - index + level0_slots;  // next cascade tick
    const std::size_t occupied = next_level0_slot(index);
    if (occupied != level0_slots) {
        return tick_to_time(_next_tick + (occupied - index));
    }
    return tick_to_time(rotation_end);
}

}  // namespace cm::core

#include "tcp/connection_table.hpp"

#include <bit>

namespace cm::tcp {

ConnectionTable::ConnectionTable(std::size_t max_entries, const SipKey& key) : _max_entries(max_entries), _key(key)
{
    const std::size_t capacity = std::bit_ceil(std::max<std::size_t>(2 * max_entries, 16));
    _entries = std::make_unique<Entry[]>(capacity);
    _mask = capacity - 1;
}

std::size_t ConnectionTable::home(const FourTuple& tuple) const noexcept
{
    return static_cast<std::size_t>(hash(tuple, _key)) & _mask;
}

std::uint32_t ConnectionTable::find(const FourTuple& tuple) const noexcept
{
    std::size_t probes = 1;
    for (std::size_t i = home(tuple);; i = (i + 1) & _mask, ++probes) {
        const Entry& e = _entries[i];
        if (e.value == none) {
            break;
        }
        if (e.tuple == tuple) {
            if (probes > _longest_probe) {
                _longest_probe = probes;
            }
            return e.value;
        }
    }
    if (probes > _longest_probe) {
        _longest_probe = probes;
    }
    return none;
}

bool ConnectionTable::insert(const FourTuple& tuple, std::uint32_t value) noexcept
{
    if (_size >= _max_entries || value == none) {
        return false;
    }
    for (std::size_t i = home(tuple);; i = (i + 1) & _mask) {
        Entry& e = _entries[i];
        if (e.value == none) {
            e.tuple = tuple;
            e.value = value;
            ++_size;
            return true;
        }
        if (e.tuple == tuple) {
            return false;
        }
    }
}

bool ConnectionTable::erase(const FourTuple& tuple) noexcept
{
    std::size_t i = home(tuple);
    for (;; i = (i + 1) & _mask) {
        if (_entries[i].value == none) {
            return false;
        }
        if (_entries[i].tuple == tuple) {
            break;
        }
    }
    // Backward shift: walk the cluster after the hole; an entry whose home is not cyclically in (hole, j]
    // would be unreachable across the hole, so it moves into it and leaves a new hole behind.
    std::size_t hole = i;
    for (std::size_t j = (hole + 1) & _mask; _entries[j].value != none; j = (j + 1) & _mask) {
        const std::size_t h = home(_entries[j].tuple);
        const bool reachable = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
        if (!reachable) {
            _entries[hole] = _entries[j];
            hole = j;
        }
    }
    _entries[hole] = Entry{};
    --_size;
    return true;
}

}  // namespace cm::tcp

// The connection table: FourTuple -> control block index, by open addressing (the controlled-loading
// design's "polling adjacent slots"), for millions of entries.
//
//   - Capacity is a power of two fixed at construction, at least twice the number of entries it must hold
//     (load factor <= 1/2), so probe sequences stay short and the table never grows or rehashes: no
//     allocation after start-up, no latency spike.
//   - Slot = SipHash-2-4(tuple, key) & mask, keyed with a secret so a client cannot pick tuples that
//     collide (hash flooding, the reason the key exists); linear probing from there.
//   - An entry holds the whole tuple beside the index (16 bytes), so a lookup compares in the table's own
//     cache lines and touches the control block only on a hit.
//   - Deletion by backward shift (Knuth 6.4 algorithm R): the entries after the removed one that would be
//     reachable from an earlier slot move back; no tombstones, so lookups never slow down with churn.
// All operations are O(1) expected. Single-threaded (the loop's thread).
#pragma once

#include "tcp/four_tuple.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

namespace cm::tcp {

class ConnectionTable {
public:
    static constexpr std::uint32_t none = UINT32_MAX;

    /// Room for `max_entries` entries at a load factor of at most 1/2.
    ConnectionTable(std::size_t max_entries, const SipKey& key);

    /// The value stored for `tuple`, or `none`.
    [[nodiscard]] std::uint32_t find(const FourTuple& tuple) const noexcept;
    /// Stores tuple -> value. False (nothing changed) if the tuple is present or the table holds
    /// max_entries already.
    bool insert(const FourTuple& tuple, std::uint32_t value) noexcept;
    /// Removes `tuple`; false if it was not there.
    bool erase(const FourTuple& tuple) noexcept;

    [[nodiscard]] std::size_t size() const noexcept { return _size; }
    [[nodiscard]] std::size_t capacity() const noexcept { return _mask + 1; }
    [[nodiscard]] std::size_t max_entries() const noexcept { return _max_entries; }
    /// Longest probe sequence a lookup has walked (slots), for tests and tuning.
    [[nodiscard]] std::size_t longest_probe() const noexcept { return _longest_probe; }

private:
    struct Entry {
        FourTuple tuple;
        std::uint32_t value = none;  // none: the slot is empty
    };
    static_assert(sizeof(Entry) == 16);

    [[nodiscard]] std::size_t home(const FourTuple& tuple) const noexcept;

    std::unique_ptr<Entry[]> _entries;
    std::size_t _mask = 0;
    std::size_t _size = 0;
    std::size_t _max_entries = 0;
    mutable std::size_t _longest_probe = 0;
    SipKey _key;
};

}  // namespace cm::tcp

#include "tcp/sack_scoreboard.hpp"

#include <algorithm>

namespace cm::tcp {

using wire::SackBlock;
using wire::SeqNumber;

namespace {

/// How far above snd_una a block may reach when snd_max is not given.
constexpr std::uint32_t implicit_span = std::uint32_t{1} << 30;

}  // namespace

void SackScoreboard::reset(SeqNumber snd_una) noexcept
{
    _snd_una = snd_una;
    _count = 0;
}

void SackScoreboard::advance(SeqNumber snd_una) noexcept
{
    if (snd_una <= _snd_una) {
        return;  // an old ACK never moves snd_una back
    }
    _snd_una = snd_una;
    std::size_t kept = 0;
    for (std::size_t i = 0; i < _count; ++i) {
        SackBlock r = _ranges[i];
        if (r.right <= snd_una) {
            continue;
        }
        if (r.left < snd_una) {
            r.left = snd_una;
        }
        _ranges[kept++] = r;
    }
    _count = static_cast<std::uint8_t>(kept);
}

void SackScoreboard::add(SeqNumber left, SeqNumber right) noexcept
{
    // Merge with every range that overlaps or touches [left, right), keep the order, then insert.
    std::array<SackBlock, capacity + 1> merged{};
    std::size_t n = 0;
    SackBlock fresh{left, right};
    bool placed = false;
    for (std::size_t i = 0; i < _count; ++i) {
        const SackBlock r = _ranges[i];
        if (r.right < fresh.left) {
            merged[n++] = r;
        } else if (fresh.right < r.left) {
            if (!placed) {
                merged[n++] = fresh;
                placed = true;
            }
            merged[n++] = r;
        } else {
            fresh.left = std::min(fresh.left, r.left);
            fresh.right = std::max(fresh.right, r.right);
        }
    }
    if (!placed) {
        merged[n++] = fresh;
    }
    // Full: forget the lowest range (see the top of the header).
    const std::size_t drop = n > capacity ? n - capacity : 0;
    std::copy(merged.begin() + static_cast<std::ptrdiff_t>(drop), merged.begin() + static_cast<std::ptrdiff_t>(n),
              _ranges.begin());
    _count = static_cast<std::uint8_t>(n - drop);
}

void SackScoreboard::on_ack(SeqNumber snd_una, std::span<const SackBlock> blocks) noexcept
{
    on_ack(snd_una, blocks, snd_una + implicit_span);
}

void SackScoreboard::on_ack(SeqNumber snd_una, std::span<const SackBlock> blocks, SeqNumber snd_max) noexcept
{
    advance(snd_una);
    for (const SackBlock& b : blocks) {
        if (!(b.left < b.right) || b.right <= _snd_una || snd_max < b.right) {
            continue;  // empty or inverted, D-SACK or stale, or beyond what was sent
        }
        add(std::max(b.left, _snd_una), b.right);
    }
}

bool SackScoreboard::is_sacked(SeqNumber begin, SeqNumber end) const noexcept
{
    begin = std::max(begin, _snd_una);
    if (end <= begin) {
        return true;
    }
    return std::any_of(_ranges.begin(), _ranges.begin() + _count,
                       [&](const SackBlock& r) { return r.left <= begin && end <= r.right; });
}

std::uint32_t SackScoreboard::sacked_bytes() const noexcept
{
    std::uint32_t bytes = 0;
    for (std::size_t i = 0; i < _count; ++i) {
        bytes += static_cast<std::uint32_t>(_ranges[i].right - _ranges[i].left);
    }
    return bytes;
}

bool SackScoreboard::is_lost(SeqNumber seq, std::uint32_t mss) const noexcept
{
    std::uint32_t ranges_above = 0;
    std::uint64_t bytes_above = 0;
    for (std::size_t i = 0; i < _count; ++i) {
        const SackBlock& r = _ranges[i];
        if (r.right <= seq + 1u) {
            continue;
        }
        if (seq < r.left) {
            ++ranges_above;
            bytes_above += static_cast<std::uint32_t>(r.right - r.left);
        } else {
            bytes_above += static_cast<std::uint32_t>(r.right - (seq + 1u));
        }
    }
    return ranges_above >= dup_thresh || bytes_above > std::uint64_t{dup_thresh - 1} * mss;
}

std::optional<std::pair<SeqNumber, SeqNumber>> SackScoreboard::next_hole(SeqNumber from) const noexcept
{
    SeqNumber start = std::max(from, _snd_una);
    for (std::size_t i = 0; i < _count; ++i) {
        const SackBlock& r = _ranges[i];
        if (r.right <= start) {
            continue;
        }
        if (r.left <= start) {
            start = r.right;
            continue;
        }
        return std::pair{start, r.left};
    }
    return std::nullopt;
}

SeqNumber SackScoreboard::highest_sacked() const noexcept
{
    return _count == 0 ? _snd_una : _ranges[_count - 1].right;
}

}  // namespace cm::tcp

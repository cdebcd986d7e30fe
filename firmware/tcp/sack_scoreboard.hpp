// The sender's SACK scoreboard: what the peer has told us it holds above snd_una (RFC 2018), and the
// questions loss recovery asks of it (RFC 6675: IsLost, NextSeg's holes).
//
// Ranges are kept sorted, merged and strictly above snd_una in a fixed array (no allocation). Blocks that are
// empty, inverted, at or below snd_una (D-SACK, RFC 2883, or stale), or beyond snd_max are ignored; a block
// that straddles snd_una is trimmed. When a new range does not fit, the lowest range is forgotten: forgetting
// a SACK is always safe (that data may be resent needlessly), while pretending unSACKed data was SACKed
// never happens. The receiver may renege (RFC 2018 section 8): the scoreboard is advice, snd_una is truth.
#pragma once

#include "wire/tcp.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>

namespace cm::tcp {

class SackScoreboard {
public:
    static constexpr std::size_t capacity = 8;      ///< distinct SACKed ranges kept
    static constexpr std::uint32_t dup_thresh = 3;  ///< RFC 6675 DupThresh

    /// Empty scoreboard with snd_una = snd_max = `snd_una`.
    void reset(wire::SeqNumber snd_una) noexcept;

    /// Advances snd_una (dropping what it covers) and records `blocks`. This overload knows no snd_max: it
    /// accepts blocks whose right edge is less than 2^30 above snd_una (and ignores blocks outside
    /// (snd_una, snd_una + 2^30]). Prefer the overload with snd_max.
    void on_ack(wire::SeqNumber snd_una, std::span<const wire::SackBlock> blocks) noexcept;
    /// Same, ignoring blocks outside (snd_una, snd_max] (RFC 2018 does not allow SACKing unsent data).
    void on_ack(wire::SeqNumber snd_una, std::span<const wire::SackBlock> blocks, wire::SeqNumber snd_max) noexcept;

    /// True if every byte of [begin, end) is SACKed (or below snd_una). An empty range is SACKed.
    [[nodiscard]] bool is_sacked(wire::SeqNumber begin, wire::SeqNumber end) const noexcept;
    /// Bytes SACKed above snd_una.
    [[nodiscard]] std::uint32_t sacked_bytes() const noexcept;
    /// RFC 6675 IsLost(): more than DupThresh (3) discontiguous SACKed segments or (DupThresh-1)*MSS bytes above seq.
    /// Precisely: at least DupThresh SACKed ranges lie entirely above `seq`, or more than (DupThresh - 1) * mss
    /// SACKed bytes lie above `seq` (each range is at least one segment; segment boundaries are not kept).
    [[nodiscard]] bool is_lost(wire::SeqNumber seq, std::uint32_t mss) const noexcept;
    /// First un-SACKed range at or after `from` and below the highest SACKed sequence (the next hole to resend).
    /// `from` below snd_una is taken as snd_una.
    [[nodiscard]] std::optional<std::pair<wire::SeqNumber, wire::SeqNumber>> next_hole(wire::SeqNumber from) const noexcept;
    [[nodiscard]] bool empty() const noexcept { return _count == 0; }

    /// One past the highest SACKed byte (RFC 6675 HighACK's counterpart), or snd_una when empty.
    [[nodiscard]] wire::SeqNumber highest_sacked() const noexcept;
    [[nodiscard]] wire::SeqNumber snd_una() const noexcept { return _snd_una; }
    /// The ranges, lowest first (for tests and tracing).
    [[nodiscard]] std::span<const wire::SackBlock> ranges() const noexcept { return {_ranges.data(), _count}; }

private:
    void advance(wire::SeqNumber snd_una) noexcept;
    void add(wire::SeqNumber left, wire::SeqNumber right) noexcept;

    std::array<wire::SackBlock, capacity> _ranges{};
    wire::SeqNumber _snd_una{};
    std::uint8_t _count = 0;
};

}  // namespace cm::tcp

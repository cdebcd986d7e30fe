#include "wire/tcp.hpp"

#include "wire/checksum.hpp"
#include "wire/ipv4.hpp"

#include <algorithm>
#include <cstring>

namespace cm::wire {

namespace {

struct OptionLayout {
    std::size_t sack_blocks = 0;  ///< SACK blocks that fit
    bool packed = false;          ///< no NOP alignment, EOL padding at the end
    std::size_t len = 0;          ///< option bytes, a multiple of 4, <= 40
};

std::size_t round_up4(std::size_t n) noexcept
{
    return (n + 3) & ~std::size_t{3};
}

OptionLayout plan_options(const TcpRepr& repr) noexcept
{
    const std::size_t requested = std::min<std::size_t>(repr.sack_count, TcpRepr::max_sack_blocks);
    for (std::size_t n = requested + 1; n-- > 0;) {
        // Linux's layout: every option group starts 4-byte aligned.
        std::size_t aligned = 0;
        aligned += repr.mss ? 4 : 0;
        aligned += repr.timestamps ? 12 : (repr.sack_permitted ? 4 : 0);
        aligned += repr.window_scale ? 4 : 0;
        aligned += n != 0 ? 4 + 8 * n : 0;
        if (aligned <= TcpRepr::max_options_len) {
            return {n, false, aligned};
        }
        // The densest layout: no NOPs, EOL padding at the end.
        std::size_t packed = 0;
        packed += repr.mss ? 4 : 0;
        packed += repr.sack_permitted ? 2 : 0;
        packed += repr.timestamps ? 10 : 0;
        packed += repr.window_scale ? 3 : 0;
        packed += n != 0 ? 2 + 8 * n : 0;
        packed = round_up4(packed);
        if (packed <= TcpRepr::max_options_len) {
            return {n, true, packed};
        }
    }
    // Unreachable: without SACK blocks the aligned layout takes at most 4 + 12 + 4 = 20 bytes.
    assert(false);
    return {};
}

/// Writes options into `out` (exactly layout.len bytes).
void write_options(const TcpRepr& repr, const OptionLayout& layout, MutableBytes out) noexcept
{
    std::size_t at = 0;
    auto put8 = [&](std::uint8_t v) { store_u8(out, at, v); at += 1; };
    auto put16 = [&](std::uint16_t v) { store_be16(out, at, v); at += 2; };
    auto put32 = [&](std::uint32_t v) { store_be32(out, at, v); at += 4; };
    auto mss = [&] { put8(tcp_option::mss); put8(4); put16(*repr.mss); };
    auto sack_permitted = [&] { put8(tcp_option::sack_permitted); put8(2); };
    auto timestamps = [&] {
        put8(tcp_option::timestamps);
        put8(10);
        put32(repr.timestamps->value);
        put32(repr.timestamps->echo_reply);
    };
    auto window_scale = [&] { put8(tcp_option::window_scale); put8(3); put8(*repr.window_scale); };
    auto sack = [&] {
        put8(tcp_option::sack);
        put8(static_cast<std::uint8_t>(2 + 8 * layout.sack_blocks));
        for (std::size_t i = 0; i < layout.sack_blocks; ++i) {
            put32(repr.sack_blocks[i].left.raw());
            put32(repr.sack_blocks[i].right.raw());
        }
    };

    if (!layout.packed) {
        if (repr.mss) {
            mss();
        }
        if (repr.timestamps) {
            if (repr.sack_permitted) {
                sack_permitted();
            } else {
                put8(tcp_option::nop);
                put8(tcp_option::nop);
            }
            timestamps();
        } else if (repr.sack_permitted) {
            put8(tcp_option::nop);
            put8(tcp_option::nop);
            sack_permitted();
        }
        if (repr.window_scale) {
            put8(tcp_option::nop);
            window_scale();
        }
        if (layout.sack_blocks != 0) {
            put8(tcp_option::nop);
            put8(tcp_option::nop);
            sack();
        }
    } else {
        if (repr.mss) {
            mss();
        }
        if (repr.sack_permitted) {
            sack_permitted();
        }
        if (repr.timestamps) {
            timestamps();
        }
        if (repr.window_scale) {
            window_scale();
        }
        if (layout.sack_blocks != 0) {
            sack();
        }
        while (at < layout.len) {
            put8(tcp_option::eol);
        }
    }
    assert(at == layout.len);
}

/// Parses the option area into `repr`; false if it is malformed.
bool parse_options(Bytes options, TcpRepr& repr) noexcept
{
    std::size_t at = 0;
    while (at < options.size()) {
        const std::uint8_t kind = load_u8(options, at);
        if (kind == tcp_option::eol) {
            break;
        }
        if (kind == tcp_option::nop) {
            at += 1;
            continue;
        }
        if (options.size() - at < 2) {
            return false;  // the length byte itself is missing
        }
        const std::size_t len = load_u8(options, at + 1);
        if (len < 2 || len > options.size() - at) {
            return false;
        }
        const Bytes option = options.subspan(at, len);
        switch (kind) {
        case tcp_option::mss:
            if (len != 4) {
                return false;
            }
            repr.mss = load_be16(option, 2);
            break;
        case tcp_option::window_scale:
            if (len != 3) {
                return false;
            }
            repr.window_scale = load_u8(option, 2);
            break;
        case tcp_option::sack_permitted:
            if (len != 2) {
                return false;
            }
            repr.sack_permitted = true;
            break;
        case tcp_option::sack: {
            const std::size_t blocks = (len - 2) / 8;
            if ((len - 2) % 8 != 0 || blocks == 0 || blocks > TcpRepr::max_sack_blocks) {
                return false;
            }
            repr.sack_blocks = {};
            for (std::size_t i = 0; i < blocks; ++i) {
                repr.sack_blocks[i] = SackBlock{SeqNumber(load_be32(option, 2 + 8 * i)),
                                                SeqNumber(load_be32(option, 6 + 8 * i))};
            }
            repr.sack_count = static_cast<std::uint8_t>(blocks);
            break;
        }
        case tcp_option::timestamps:
            if (len != 10) {
                return false;
            }
            repr.timestamps = TcpTimestamps{load_be32(option, 2), load_be32(option, 6)};
            break;
        default:
            break;  // unknown option with a valid length: skipped
        }
        at += len;
    }
    return true;
}

}  // namespace

WireResult<TcpView> TcpView::check(Bytes segment) noexcept
{
    if (segment.size() < min_header_len) {
        return Unexpected{WireError::truncated};
    }
    const TcpView view(segment);
    const std::size_t hlen = view.header_len();
    if (hlen < min_header_len) {
        return Unexpected{WireError::bad_header_length};
    }
    if (segment.size() < hlen) {
        return Unexpected{WireError::truncated};
    }
    return view;
}

bool TcpView::verify_checksum(Ipv4Address source, Ipv4Address destination) const noexcept
{
    if (_bytes.size() > 0xffff) {
        return false;
    }
    ChecksumAccumulator acc;
    add_ipv4_pseudo_header(acc, source, destination, ip_protocol::tcp, static_cast<std::uint16_t>(_bytes.size()));
    acc.add(_bytes);
    return acc.finish() == 0;
}

WireResult<TcpRepr> TcpRepr::parse(const TcpView& view, Ipv4Address source, Ipv4Address destination) noexcept
{
    if (!view.verify_checksum(source, destination)) {
        return Unexpected{WireError::bad_checksum};
    }
    TcpRepr repr;
    if (!parse_options(view.options(), repr)) {
        return Unexpected{WireError::malformed};
    }
    repr.source_port = view.source_port();
    repr.destination_port = view.destination_port();
    repr.sequence = view.sequence();
    repr.acknowledgment = view.acknowledgment();
    repr.flags = view.flags();
    repr.window = view.window();
    repr.payload = view.payload();
    return repr;
}

std::size_t TcpRepr::header_len() const noexcept
{
    return TcpView::min_header_len + plan_options(*this).len;
}

std::size_t TcpRepr::emitted_sack_count() const noexcept
{
    return plan_options(*this).sack_blocks;
}

void TcpRepr::emit(MutableBytes out, Ipv4Address source, Ipv4Address destination) const noexcept
{
    const OptionLayout layout = plan_options(*this);
    const std::size_t hlen = TcpView::min_header_len + layout.len;
    const std::size_t total = hlen + payload.size();
    assert(out.size() >= total);
    assert(total <= 0xffff);
    using field = TcpView::field;
    store_be16(out, field::source_port, source_port);
    store_be16(out, field::destination_port, destination_port);
    store_be32(out, field::sequence, sequence.raw());
    store_be32(out, field::acknowledgment, acknowledgment.raw());
    store_u8(out, field::data_offset, static_cast<std::uint8_t>((hlen / 4) << 4));
    store_u8(out, field::flags, flags);
    store_be16(out, field::window, window);
    store_be16(out, field::checksum, 0);
    store_be16(out, field::urgent_pointer, 0);
    write_options(*this, layout, out.subspan(TcpView::min_header_len, layout.len));
    if (!payload.empty()) {
        std::memmove(out.data() + hlen, payload.data(), payload.size());
    }
    ChecksumAccumulator acc;
    add_ipv4_pseudo_header(acc, source, destination, ip_protocol::tcp, static_cast<std::uint16_t>(total));
    acc.add(out.first(total));
    store_be16(out, field::checksum, acc.finish());
}

bool TcpRepr::operator==(const TcpRepr& other) const noexcept
{
    if (sack_count != other.sack_count) {
        return false;
    }
    const std::size_t n = std::min<std::size_t>(sack_count, max_sack_blocks);
    return source_port == other.source_port && destination_port == other.destination_port &&
           sequence == other.sequence && acknowledgment == other.acknowledgment && flags == other.flags &&
           window == other.window && mss == other.mss && window_scale == other.window_scale &&
           sack_permitted == other.sack_permitted && timestamps == other.timestamps &&
           std::equal(sack_blocks.begin(), sack_blocks.begin() + static_cast<std::ptrdiff_t>(n),
                      other.sack_blocks.begin()) &&
           equal_bytes(payload, other.payload);
}

}  // namespace cm::wire

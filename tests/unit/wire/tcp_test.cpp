#include "wire/tcp.hpp"

#include "golden.hpp"
#include "wire_test_util.hpp"

#include <random>

using namespace cm::wire;
using cm::wire::test::Buffer;
using cm::wire::test::fix_tcp_checksum;
using cm::wire::test::mut;
using cm::wire::test::view;

namespace {

constexpr std::size_t tcp_offset = golden::eth_len + golden::ip_len;
const Ipv4Address host_a = Ipv4Address::from_octets(198, 18, 0, 1);
const Ipv4Address host_b = Ipv4Address::from_octets(198, 18, 0, 2);

template <std::size_t N>
Bytes segment_of(const std::array<std::uint8_t, N>& frame)
{
    return as_bytes(frame).subspan(tcp_offset);
}

TcpRepr syn_repr()
{
    TcpRepr repr;
    repr.source_port = 46266;
    repr.destination_port = 8080;
    repr.sequence = SeqNumber(2715963126u);
    repr.acknowledgment = SeqNumber(0);
    repr.flags = tcp_flags::syn;
    repr.window = 64240;
    repr.mss = 1460;
    repr.window_scale = 10;
    repr.sack_permitted = true;
    repr.timestamps = TcpTimestamps{1983296059u, 0};
    return repr;
}

TcpRepr syn_ack_repr()
{
    TcpRepr repr;
    repr.source_port = 8080;
    repr.destination_port = 46266;
    repr.sequence = SeqNumber(146376410u);
    repr.acknowledgment = SeqNumber(2715963127u);
    repr.flags = tcp_flags::syn | tcp_flags::ack;
    repr.window = 65160;
    repr.mss = 1460;
    repr.window_scale = 10;
    repr.sack_permitted = true;
    repr.timestamps = TcpTimestamps{4271648223u, 1983296059u};
    return repr;
}

TcpRepr psh_ack_repr()
{
    TcpRepr repr;
    repr.source_port = 46266;
    repr.destination_port = 8080;
    repr.sequence = SeqNumber(2715963127u);
    repr.acknowledgment = SeqNumber(146376411u);
    repr.flags = tcp_flags::psh | tcp_flags::ack;
    repr.window = 63;
    repr.timestamps = TcpTimestamps{1983296059u, 4271648223u};
    repr.payload = as_bytes("hello");
    return repr;
}

/// A segment from host_a to host_b with the given option bytes (padded by the caller to a multiple of
/// 4), an optional payload, and a correct checksum.
Buffer segment_with_options(const Buffer& options, std::string_view payload = {})
{
    // Sized up front: GCC 12 warns falsely (-Warray-bounds) about vector::insert of an empty range here.
    Buffer seg(20 + options.size() + payload.size(), 0);
    std::copy(options.begin(), options.end(), seg.begin() + 20);
    std::copy(payload.begin(), payload.end(), seg.begin() + 20 + static_cast<std::ptrdiff_t>(options.size()));
    store_be16(mut(seg), 0, 1234);
    store_be16(mut(seg), 2, 80);
    store_be32(mut(seg), 4, 1000);
    seg[12] = static_cast<std::uint8_t>(((20 + options.size()) / 4) << 4);
    seg[13] = tcp_flags::syn;
    store_be16(mut(seg), 14, 1024);
    fix_tcp_checksum(seg, host_a, host_b);
    return seg;
}

WireResult<TcpRepr> parse_segment(const Buffer& seg)
{
    auto tcp = TcpView::check(view(seg));
    REQUIRE(tcp.has_value());
    return TcpRepr::parse(*tcp, host_a, host_b);
}

TcpRepr round_trip(const TcpRepr& repr, Buffer& storage)
{
    storage.assign(repr.buffer_len(), 0xcc);
    repr.emit(mut(storage), host_a, host_b);
    auto tcp = TcpView::check(view(storage));
    REQUIRE(tcp.has_value());
    CHECK(tcp->header_len() == repr.header_len());
    auto parsed = TcpRepr::parse(*tcp, host_a, host_b);
    REQUIRE(parsed.has_value());
    return *parsed;
}

}  // namespace

// ---- SeqNumber ----------------------------------------------------------------------------------------

TEST_CASE("SeqNumber: arithmetic and comparison across the wrap", "[wire][tcp][seq]")
{
    const SeqNumber a(0xffffff00u);
    const SeqNumber b = a + 0x200;
    CHECK(b.raw() == 0x100u);
    CHECK(a < b);
    CHECK(a <= b);
    CHECK(b > a);
    CHECK(b >= a);
    CHECK_FALSE(b < a);
    CHECK(b - a == 0x200);
    CHECK(a - b == -0x200);
    CHECK(b - 0x200 == a);
    CHECK((SeqNumber(0) - 1).raw() == 0xffffffffu);
    CHECK(SeqNumber(0xffffffffu) + 1 == SeqNumber(0));
    CHECK(SeqNumber(0xffffffffu) < SeqNumber(0));
    CHECK(SeqNumber(0xffffffffu) + std::uint32_t{2} == SeqNumber(1));
    CHECK(SeqNumber(0xfffffffeu) + std::size_t{3} == SeqNumber(1));
    CHECK(SeqNumber(5) + (-10) == SeqNumber(0xfffffffbu));

    SeqNumber c(0xfffffff0u);
    c += 0x20;
    CHECK(c.raw() == 0x10u);
    c += std::uint32_t{0xfffffff0u};
    CHECK(c.raw() == 0u);
    c -= 1;
    CHECK(c.raw() == 0xffffffffu);
    c += std::size_t{1};
    CHECK(c == SeqNumber(0));

    CHECK(a <= a);
    CHECK(a >= a);
    CHECK_FALSE(a < a);
}

TEST_CASE("SeqNumber: lwIP-style sequence numbers just below the wrap", "[wire][tcp][seq]")
{
    constexpr std::uint32_t mss = 1460;
    SeqNumber snd_una(0xffffff00u - mss);
    SeqNumber snd_nxt = snd_una;
    for (int i = 0; i < 4; ++i) {
        const SeqNumber before = snd_nxt;
        snd_nxt += mss;
        CHECK(snd_nxt > before);
        CHECK(snd_nxt - before == static_cast<std::int32_t>(mss));
        CHECK(snd_nxt > snd_una);
    }
    CHECK(snd_nxt.raw() < snd_una.raw());  // raw values wrapped ...
    CHECK(snd_nxt - snd_una == 4 * static_cast<std::int32_t>(mss));  // ... the distance did not
    const SeqNumber ack = snd_una + 2 * mss;
    CHECK(ack > snd_una);
    CHECK(ack <= snd_nxt);
}

TEST_CASE("SeqNumber: the comparison horizon is 2^31", "[wire][tcp][seq]")
{
    const SeqNumber a(0x80000000u);
    CHECK(a + 0x7fffffffu > a);
    CHECK(a - (a + 0x7fffffffu) == -0x7fffffff);
    // Exactly 2^31 apart: the distance is INT32_MIN either way, so each looks "before" the other.
    const SeqNumber far = a + 0x80000000u;
    CHECK(far - a == INT32_MIN);
    CHECK(far < a);
    CHECK(a < far);
}

// ---- TcpView / TcpRepr: the four golden tests ---------------------------------------------------------

TEST_CASE("tcp: deconstruct", "[wire][tcp]")
{
    auto tcp = TcpView::check(segment_of(golden::tcp_syn_frame));
    REQUIRE(tcp.has_value());
    CHECK(tcp->source_port() == 46266);
    CHECK(tcp->destination_port() == 8080);
    CHECK(tcp->sequence() == SeqNumber(2715963126u));
    CHECK(tcp->acknowledgment() == SeqNumber(0));
    CHECK(tcp->header_len() == 40);
    CHECK(tcp->flags() == tcp_flags::syn);
    CHECK(tcp->window() == 64240);
    CHECK(tcp->checksum() == 0xd34e);
    CHECK(tcp->urgent_pointer() == 0);
    CHECK(tcp->options().size() == 20);
    CHECK(tcp->payload().empty());
    CHECK(tcp->verify_checksum(host_a, host_b));

    auto psh = TcpView::check(segment_of(golden::tcp_psh_ack_frame));
    REQUIRE(psh.has_value());
    CHECK(psh->flags() == (tcp_flags::psh | tcp_flags::ack));
    CHECK(psh->header_len() == 32);
    CHECK(cm::wire::test::to_buffer(psh->payload()) == cm::wire::test::to_buffer(as_bytes("hello")));
    CHECK(psh->verify_checksum(host_a, host_b));
    CHECK_FALSE(psh->verify_checksum(host_a, Ipv4Address::from_octets(198, 18, 0, 3)));
}

TEST_CASE("tcp: construct", "[wire][tcp]")
{
    struct Case {
        const char* what;
        TcpRepr repr;
        Bytes golden;
        Ipv4Address src;
        Ipv4Address dst;
    };
    TcpRepr fin = psh_ack_repr();
    fin.flags = tcp_flags::fin | tcp_flags::ack;
    fin.sequence = SeqNumber(2715963132u);
    fin.timestamps = TcpTimestamps{1983296359u, 4271648223u};
    fin.payload = {};
    for (const Case& c : {Case{"SYN", syn_repr(), segment_of(golden::tcp_syn_frame), host_a, host_b},
                          Case{"SYN-ACK", syn_ack_repr(), segment_of(golden::tcp_syn_ack_frame), host_b, host_a},
                          Case{"PSH-ACK", psh_ack_repr(), segment_of(golden::tcp_psh_ack_frame), host_a, host_b},
                          Case{"FIN-ACK", fin, segment_of(golden::tcp_fin_ack_frame), host_a, host_b}}) {
        INFO(c.what);
        CHECK(c.repr.header_len() == TcpView::check(c.golden)->header_len());
        Buffer out(c.repr.buffer_len(), 0xaa);
        c.repr.emit(mut(out), c.src, c.dst);
        CHECK(out == cm::wire::test::to_buffer(c.golden));
    }
}

TEST_CASE("tcp: parse", "[wire][tcp]")
{
    auto syn = TcpRepr::parse(*TcpView::check(segment_of(golden::tcp_syn_frame)), host_a, host_b);
    REQUIRE(syn.has_value());
    CHECK(*syn == syn_repr());
    CHECK(syn->sack_count == 0);

    auto syn_ack = TcpRepr::parse(*TcpView::check(segment_of(golden::tcp_syn_ack_frame)), host_b, host_a);
    REQUIRE(syn_ack.has_value());
    CHECK(*syn_ack == syn_ack_repr());

    auto psh = TcpRepr::parse(*TcpView::check(segment_of(golden::tcp_psh_ack_frame)), host_a, host_b);
    REQUIRE(psh.has_value());
    CHECK(*psh == psh_ack_repr());
    CHECK_FALSE(psh->mss.has_value());
    CHECK(psh->sequence_len() == 5);
    CHECK(syn->sequence_len() == 1);
}

TEST_CASE("tcp: emit round trip", "[wire][tcp]")
{
    Buffer storage;
    SECTION("bare segment, no options")
    {
        TcpRepr repr;
        repr.source_port = 1;
        repr.destination_port = 65535;
        repr.sequence = SeqNumber(0xffffffffu);
        repr.acknowledgment = SeqNumber(0x12345678u);
        repr.flags = tcp_flags::rst | tcp_flags::ack | tcp_flags::ece | tcp_flags::cwr;
        repr.window = 0;
        CHECK(repr.header_len() == 20);
        CHECK(round_trip(repr, storage) == repr);
    }
    SECTION("golden reprs")
    {
        CHECK(round_trip(syn_repr(), storage) == syn_repr());
        CHECK(round_trip(syn_ack_repr(), storage) == syn_ack_repr());
        CHECK(round_trip(psh_ack_repr(), storage) == psh_ack_repr());
    }
    SECTION("every combination of options, with 0..4 SACK blocks")
    {
        for (int mask = 0; mask < 16; ++mask) {
            for (std::uint8_t blocks = 0; blocks <= 4; ++blocks) {
                TcpRepr repr = psh_ack_repr();
                repr.mss.reset();
                repr.timestamps.reset();
                if ((mask & 1) != 0) {
                    repr.mss = 536;
                }
                if ((mask & 2) != 0) {
                    repr.window_scale = 14;
                }
                repr.sack_permitted = (mask & 4) != 0;
                if ((mask & 8) != 0) {
                    repr.timestamps = TcpTimestamps{0xdeadbeef, 0x01020304};
                }
                for (std::uint8_t i = 0; i < blocks; ++i) {
                    repr.sack_blocks[i] = SackBlock{SeqNumber(0xfffffff0u) + 100u * i, SeqNumber(0xfffffff0u) + 100u * i + 50u};
                }
                repr.sack_count = blocks;
                INFO("mask " << mask << " blocks " << int(blocks));
                CHECK(repr.header_len() % 4 == 0);
                CHECK(repr.header_len() <= TcpView::max_header_len);
                const TcpRepr parsed = round_trip(repr, storage);
                CHECK(parsed.sack_count == repr.emitted_sack_count());
                TcpRepr expected = repr;
                expected.sack_count = static_cast<std::uint8_t>(repr.emitted_sack_count());
                CHECK(parsed == expected);
            }
        }
    }
}

// ---- truncation, header length, checksum --------------------------------------------------------------

TEST_CASE("tcp: truncated at every length", "[wire][tcp]")
{
    const Bytes segment = segment_of(golden::tcp_psh_ack_frame);  // 32-byte header + 5 bytes of payload
    for (std::size_t len = 0; len < segment.size(); ++len) {
        auto tcp = TcpView::check(segment.first(len));
        INFO("len " << len);
        if (len < 32) {
            REQUIRE_FALSE(tcp.has_value());
            CHECK(tcp.error() == WireError::truncated);
        } else {
            // The header is complete, payload bytes are missing: only the checksum can tell.
            REQUIRE(tcp.has_value());
            auto repr = TcpRepr::parse(*tcp, host_a, host_b);
            REQUIRE_FALSE(repr.has_value());
            CHECK(repr.error() == WireError::bad_checksum);
        }
    }
}

TEST_CASE("tcp: data offset below 5 is a bad header length", "[wire][tcp]")
{
    for (std::uint8_t offset = 0; offset < 5; ++offset) {
        Buffer seg = cm::wire::test::to_buffer(segment_of(golden::tcp_syn_frame));
        seg[12] = static_cast<std::uint8_t>(offset << 4);
        auto tcp = TcpView::check(view(seg));
        INFO("offset " << int(offset));
        REQUIRE_FALSE(tcp.has_value());
        CHECK(tcp.error() == WireError::bad_header_length);
    }
    Buffer seg = cm::wire::test::to_buffer(segment_of(golden::tcp_syn_frame));
    seg[12] = 0xf0;  // 60 bytes of header in a 40-byte segment
    auto tcp = TcpView::check(view(seg));
    REQUIRE_FALSE(tcp.has_value());
    CHECK(tcp.error() == WireError::truncated);
}

TEST_CASE("tcp: corrupt checksum", "[wire][tcp]")
{
    const Bytes golden_segment = segment_of(golden::tcp_psh_ack_frame);
    for (std::size_t i = 0; i < golden_segment.size(); ++i) {
        if (i == 12) {
            continue;  // the data offset: a length error, tested above
        }
        Buffer seg = cm::wire::test::to_buffer(golden_segment);
        seg[i] ^= 0x04;
        auto tcp = TcpView::check(view(seg));
        REQUIRE(tcp.has_value());
        auto repr = TcpRepr::parse(*tcp, host_a, host_b);
        INFO("flipped byte " << i);
        REQUIRE_FALSE(repr.has_value());
        CHECK(repr.error() == WireError::bad_checksum);
    }
    // Right bytes, wrong pseudo header. (Swapping source and destination would not show: the sum commutes.)
    auto tcp = TcpView::check(golden_segment);
    auto repr = TcpRepr::parse(*tcp, host_a, Ipv4Address::from_octets(198, 18, 0, 9));
    REQUIRE_FALSE(repr.has_value());
    CHECK(repr.error() == WireError::bad_checksum);
}

TEST_CASE("tcp: checksum is checked before options", "[wire][tcp]")
{
    Buffer seg = segment_with_options({0x02, 0x00, 0x00, 0x00});  // malformed MSS
    REQUIRE(parse_segment(seg).error() == WireError::malformed);
    seg[16] ^= 0xff;
    CHECK(parse_segment(seg).error() == WireError::bad_checksum);
}

// ---- options ------------------------------------------------------------------------------------------

TEST_CASE("tcp options: malformed lengths", "[wire][tcp][options]")
{
    struct Case {
        const char* what;
        Buffer options;
    };
    const Case cases[] = {
        {"zero-length unknown option", {0x22, 0x00, 0x00, 0x00}},
        {"zero-length option after NOPs", {0x01, 0x01, 0xfe, 0x00}},
        {"length 1", {0x22, 0x01, 0x00, 0x00}},
        {"MSS running past the end", {0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x02, 0x04}},
        {"unknown option running past the end", {0x22, 0x08, 0x00, 0x00}},
        {"kind with no room for its length byte", {0x01, 0x01, 0x01, 0x22}},
        {"MSS kind as the last byte", {0x01, 0x01, 0x01, 0x02}},
        {"MSS length 3", {0x02, 0x03, 0x05, 0x01}},
        {"MSS length 6", {0x02, 0x06, 0x05, 0xb4, 0x00, 0x00, 0x01, 0x01}},
        {"window scale length 2", {0x03, 0x02, 0x01, 0x01}},
        {"window scale length 4", {0x03, 0x04, 0x07, 0x00}},
        {"SACK-permitted length 3", {0x04, 0x03, 0x00, 0x01}},
        {"SACK-permitted length 4", {0x04, 0x04, 0x00, 0x00}},
        {"timestamps length 8", {0x08, 0x08, 0, 0, 0, 1, 0, 0}},
        {"timestamps length 12", {0x08, 0x0c, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0}},
        {"SACK with no blocks", {0x05, 0x02, 0x01, 0x01}},
        {"SACK length 2+8+1", {0x05, 0x0b, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0}},
        {"SACK length 2+4", {0x05, 0x06, 0, 0, 0, 1, 0, 0}},
    };
    for (const Case& c : cases) {
        INFO(c.what);
        auto repr = parse_segment(segment_with_options(c.options));
        REQUIRE_FALSE(repr.has_value());
        CHECK(repr.error() == WireError::malformed);
    }
}

TEST_CASE("tcp options: unknown options are skipped", "[wire][tcp][options]")
{
    // Experimental option (kind 254, length 6), MD5-like kind 19 (length 18), then MSS.
    Buffer options{0xfe, 0x06, 0xf9, 0x89, 0x00, 0x00, 0x13, 0x12};
    options.insert(options.end(), 16, 0xab);
    options.insert(options.end(), {0x02, 0x04, 0x02, 0x18, 0x01, 0x01, 0x01, 0x01});
    auto repr = parse_segment(segment_with_options(options));
    REQUIRE(repr.has_value());
    CHECK(repr->mss == std::optional<std::uint16_t>(536));
    CHECK_FALSE(repr->window_scale.has_value());
    CHECK_FALSE(repr->timestamps.has_value());
}

TEST_CASE("tcp options: EOL ends the list, whatever follows", "[wire][tcp][options]")
{
    // MSS, EOL, then bytes that would be malformed if parsed (a zero-length option) and an MSS.
    auto repr = parse_segment(segment_with_options({0x02, 0x04, 0x05, 0xb4, 0x00, 0x22, 0x00, 0x00,
                                                    0x02, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00}));
    REQUIRE(repr.has_value());
    CHECK(repr->mss == std::optional<std::uint16_t>(1460));

    auto only_eol = parse_segment(segment_with_options({0x00, 0x00, 0x00, 0x00}));
    REQUIRE(only_eol.has_value());
    CHECK_FALSE(only_eol->mss.has_value());

    auto only_nops = parse_segment(segment_with_options({0x01, 0x01, 0x01, 0x01}));
    REQUIRE(only_nops.has_value());
}

TEST_CASE("tcp options: an option may end exactly at the end of the option area", "[wire][tcp][options]")
{
    auto repr = parse_segment(segment_with_options({0x01, 0x03, 0x03, 0x07}));
    REQUIRE(repr.has_value());
    CHECK(repr->window_scale == std::optional<std::uint8_t>(7));
}

TEST_CASE("tcp options: SACK blocks", "[wire][tcp][options]")
{
    for (std::size_t n = 1; n <= 4; ++n) {
        Buffer options{0x01, 0x01, 0x05, static_cast<std::uint8_t>(2 + 8 * n)};
        for (std::size_t i = 0; i < n; ++i) {
            const std::uint32_t left = 0xfffffff0u + static_cast<std::uint32_t>(i) * 0x100;
            const std::uint32_t right = left + 0x80;
            for (int shift = 24; shift >= 0; shift -= 8) {
                options.push_back(static_cast<std::uint8_t>(left >> shift));
            }
            for (int shift = 24; shift >= 0; shift -= 8) {
                options.push_back(static_cast<std::uint8_t>(right >> shift));
            }
        }
        INFO("blocks " << n);
        auto repr = parse_segment(segment_with_options(options));
        REQUIRE(repr.has_value());
        REQUIRE(repr->sack_count == n);
        CHECK(repr->sack_blocks[0].left == SeqNumber(0xfffffff0u));
        CHECK(repr->sack_blocks[0].right == SeqNumber(0x70u));
        CHECK(repr->sack_blocks[n - 1].left == SeqNumber(0xfffffff0u) + static_cast<std::uint32_t>((n - 1) * 0x100));
    }
}

TEST_CASE("tcp options: a repeated option overwrites the earlier one", "[wire][tcp][options]")
{
    auto repr = parse_segment(segment_with_options({0x02, 0x04, 0x05, 0xb4, 0x02, 0x04, 0x02, 0x18}));
    REQUIRE(repr.has_value());
    CHECK(repr->mss == std::optional<std::uint16_t>(536));
}

TEST_CASE("tcp options: emit drops SACK blocks that do not fit", "[wire][tcp][options]")
{
    TcpRepr repr = syn_ack_repr();  // MSS + SACK-permitted + timestamps + window scale
    for (std::uint8_t i = 0; i < 4; ++i) {
        repr.sack_blocks[i] = SackBlock{SeqNumber(1000u * i), SeqNumber(1000u * i + 500u)};
    }
    repr.sack_count = 4;
    CHECK(repr.emitted_sack_count() == 2);
    CHECK(repr.header_len() == 60);
    Buffer storage;
    const TcpRepr parsed = round_trip(repr, storage);
    CHECK(parsed.sack_count == 2);
    CHECK(parsed.sack_blocks[0] == repr.sack_blocks[0]);
    CHECK(parsed.sack_blocks[1] == repr.sack_blocks[1]);
    CHECK(parsed.mss == repr.mss);
    CHECK(parsed.timestamps == repr.timestamps);
}

TEST_CASE("tcp options: emit packs options when the aligned layout does not fit", "[wire][tcp][options]")
{
    // Timestamps + window scale + 3 SACK blocks: 12 + 4 + 28 = 44 bytes aligned, 10 + 3 + 26 = 39 packed.
    TcpRepr repr = psh_ack_repr();
    repr.window_scale = 7;
    for (std::uint8_t i = 0; i < 3; ++i) {
        repr.sack_blocks[i] = SackBlock{SeqNumber(5000u + 100u * i), SeqNumber(5050u + 100u * i)};
    }
    repr.sack_count = 3;
    CHECK(repr.emitted_sack_count() == 3);
    CHECK(repr.header_len() == 60);
    Buffer storage;
    CHECK(round_trip(repr, storage) == repr);
    CHECK(storage[20 + 39] == tcp_option::eol);
}

TEST_CASE("tcp: a segment longer than 65535 bytes never verifies", "[wire][tcp]")
{
    Buffer seg = segment_with_options({});
    seg.resize(0x10000 + 20, 0);
    auto tcp = TcpView::check(view(seg));
    REQUIRE(tcp.has_value());
    CHECK_FALSE(tcp->verify_checksum(host_a, host_b));
}

TEST_CASE("tcp: random option bytes never read out of bounds and round-trip when they parse", "[wire][tcp][options]")
{
    std::mt19937 rng(793);
    std::uniform_int_distribution<int> byte(0, 255);
    const std::uint8_t kinds[] = {0, 1, 2, 3, 4, 5, 8, 0x22};
    int parsed_count = 0;
    for (int round = 0; round < 5000; ++round) {
        Buffer options(4 * std::uniform_int_distribution<std::size_t>(0, 10)(rng));
        for (std::size_t i = 0; i < options.size(); ++i) {
            // Bias towards plausible kinds and lengths so that some inputs parse.
            options[i] = byte(rng) < 128 ? kinds[byte(rng) % 8] : static_cast<std::uint8_t>(byte(rng) % 12);
        }
        auto repr = parse_segment(segment_with_options(options));
        if (!repr.has_value()) {
            REQUIRE(repr.error() == WireError::malformed);
            continue;
        }
        ++parsed_count;
        Buffer storage;
        REQUIRE(round_trip(*repr, storage) == *repr);
    }
    CHECK(parsed_count > 100);
}

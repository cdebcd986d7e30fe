#include "wire/ipv4.hpp"

#include "golden.hpp"
#include "wire_test_util.hpp"

using namespace cm::wire;
using cm::wire::test::Buffer;
using cm::wire::test::fix_ipv4_checksum;
using cm::wire::test::mut;
using cm::wire::test::view;

namespace {

Bytes request_packet()
{
    return as_bytes(golden::echo_request_frame).subspan(golden::eth_len);
}

Buffer request_buffer()
{
    return cm::wire::test::to_buffer(request_packet());
}

Ipv4Repr request_repr()
{
    Ipv4Repr repr;
    repr.source = Ipv4Address::from_octets(198, 18, 0, 1);
    repr.destination = Ipv4Address::from_octets(198, 18, 0, 2);
    repr.protocol = ip_protocol::icmp;
    repr.ttl = 64;
    repr.dscp_ecn = 0;
    repr.identification = 9276;
    repr.dont_fragment = true;
    repr.payload_len = 32;
    return repr;
}

Ipv4Repr reply_repr()
{
    Ipv4Repr repr = request_repr();
    std::swap(repr.source, repr.destination);
    repr.identification = 14717;
    repr.dont_fragment = false;
    return repr;
}

WireError parse_error(const Buffer& packet)
{
    auto ip = Ipv4View::check(view(packet));
    REQUIRE(ip.has_value());
    auto repr = Ipv4Repr::parse(*ip);
    REQUIRE_FALSE(repr.has_value());
    return repr.error();
}

WireError check_error(const Buffer& packet)
{
    auto ip = Ipv4View::check(view(packet));
    REQUIRE_FALSE(ip.has_value());
    return ip.error();
}

}  // namespace

TEST_CASE("ipv4: deconstruct", "[wire][ipv4]")
{
    auto ip = Ipv4View::check(request_packet());
    REQUIRE(ip.has_value());
    CHECK(ip->version() == 4);
    CHECK(ip->header_len() == 20);
    CHECK(ip->dscp_ecn() == 0);
    CHECK(ip->total_length() == 52);
    CHECK(ip->identification() == 9276);
    CHECK(ip->dont_fragment());
    CHECK_FALSE(ip->more_fragments());
    CHECK(ip->fragment_offset() == 0);
    CHECK(ip->ttl() == 64);
    CHECK(ip->protocol() == ip_protocol::icmp);
    CHECK(ip->checksum() == 0x8a65);
    CHECK(ip->source() == Ipv4Address::from_octets(198, 18, 0, 1));
    CHECK(ip->destination() == Ipv4Address::from_octets(198, 18, 0, 2));
    CHECK(ip->options().empty());
    CHECK(ip->payload().size() == 32);
    CHECK(ip->payload().data() == request_packet().data() + 20);
    CHECK(ip->verify_checksum());
}

TEST_CASE("ipv4: construct", "[wire][ipv4]")
{
    Buffer out(20, 0xaa);
    request_repr().emit(mut(out));
    CHECK(out == Buffer(golden::echo_request_frame.begin() + 14, golden::echo_request_frame.begin() + 34));

    reply_repr().emit(mut(out));
    CHECK(out == Buffer(golden::echo_reply_frame.begin() + 14, golden::echo_reply_frame.begin() + 34));
}

TEST_CASE("ipv4: parse", "[wire][ipv4]")
{
    auto ip = Ipv4View::check(request_packet());
    REQUIRE(ip.has_value());
    auto repr = Ipv4Repr::parse(*ip);
    REQUIRE(repr.has_value());
    CHECK(*repr == request_repr());

    auto reply = Ipv4View::check(as_bytes(golden::echo_reply_frame).subspan(golden::eth_len));
    REQUIRE(reply.has_value());
    repr = Ipv4Repr::parse(*reply);
    REQUIRE(repr.has_value());
    CHECK(*repr == reply_repr());

    auto syn = Ipv4View::check(as_bytes(golden::tcp_syn_frame).subspan(golden::eth_len));
    REQUIRE(syn.has_value());
    repr = Ipv4Repr::parse(*syn);
    REQUIRE(repr.has_value());
    CHECK(repr->protocol == ip_protocol::tcp);
    CHECK(repr->payload_len == 40);
}

TEST_CASE("ipv4: emit round trip", "[wire][ipv4]")
{
    Ipv4Repr repr;
    repr.source = Ipv4Address::from_octets(10, 0, 0, 1);
    repr.destination = Ipv4Address::from_octets(10, 0, 0, 2);
    repr.protocol = ip_protocol::tcp;
    repr.ttl = 1;
    repr.dscp_ecn = 0xb8;
    repr.identification = 0xffff;
    repr.dont_fragment = false;
    repr.payload_len = 7;
    Buffer out(repr.buffer_len(), 0x5a);
    repr.emit(mut(out));
    auto ip = Ipv4View::check(view(out));
    REQUIRE(ip.has_value());
    CHECK(ip->verify_checksum());
    CHECK(ip->payload().size() == 7);
    auto parsed = Ipv4Repr::parse(*ip);
    REQUIRE(parsed.has_value());
    CHECK(*parsed == repr);
    CHECK(repr.buffer_len() == 27);
}

TEST_CASE("ipv4: truncated at every length below the total length", "[wire][ipv4]")
{
    const Bytes packet = request_packet();
    for (std::size_t len = 0; len < packet.size(); ++len) {
        auto ip = Ipv4View::check(packet.first(len));
        INFO("len " << len);
        REQUIRE_FALSE(ip.has_value());
        CHECK(ip.error() == WireError::truncated);
    }
    CHECK(Ipv4View::check(packet).has_value());
}

TEST_CASE("ipv4: Ethernet padding after the total length is not payload", "[wire][ipv4]")
{
    Buffer padded = request_buffer();
    padded.resize(padded.size() + 10, 0);
    auto ip = Ipv4View::check(view(padded));
    REQUIRE(ip.has_value());
    CHECK(ip->payload().size() == 32);
    CHECK(ip->bytes().size() == 52);
    auto repr = Ipv4Repr::parse(*ip);
    REQUIRE(repr.has_value());
    CHECK(repr->payload_len == 32);
}

TEST_CASE("ipv4: header length and total length checks", "[wire][ipv4]")
{
    for (std::uint8_t ihl = 0; ihl < 5; ++ihl) {
        Buffer packet = request_buffer();
        packet[0] = static_cast<std::uint8_t>(0x40 | ihl);
        INFO("ihl " << int(ihl));
        CHECK(check_error(packet) == WireError::bad_header_length);
    }
    {
        Buffer packet = request_buffer();  // IHL 15 = 60 bytes, but total length 52 and a 52-byte buffer
        packet[0] = 0x4f;
        CHECK(check_error(packet) == WireError::truncated);
        packet.resize(60, 0);
        CHECK(check_error(packet) == WireError::bad_total_length);  // 52 < 60
    }
    for (std::uint16_t total : {0, 1, 19}) {
        Buffer packet = request_buffer();
        store_be16(mut(packet), 2, total);
        INFO("total " << total);
        CHECK(check_error(packet) == WireError::bad_total_length);
    }
    {
        Buffer packet = request_buffer();
        store_be16(mut(packet), 2, 53);  // one byte more than the buffer
        CHECK(check_error(packet) == WireError::truncated);
        store_be16(mut(packet), 2, 0xffff);
        CHECK(check_error(packet) == WireError::truncated);
    }
    {
        Buffer packet = request_buffer();  // total length 20: a header with no payload is fine
        store_be16(mut(packet), 2, 20);
        fix_ipv4_checksum(packet);
        auto ip = Ipv4View::check(view(packet));
        REQUIRE(ip.has_value());
        CHECK(ip->payload().empty());
        auto repr = Ipv4Repr::parse(*ip);
        REQUIRE(repr.has_value());
        CHECK(repr->payload_len == 0);
    }
}

TEST_CASE("ipv4: bad version", "[wire][ipv4]")
{
    for (std::uint8_t version : {0, 5, 6, 15}) {
        Buffer packet = request_buffer();
        packet[0] = static_cast<std::uint8_t>((version << 4) | 5);
        fix_ipv4_checksum(packet);
        INFO("version " << int(version));
        CHECK(parse_error(packet) == WireError::bad_version);
    }
}

TEST_CASE("ipv4: corrupt checksum", "[wire][ipv4]")
{
    for (std::size_t i = 0; i < 20; ++i) {
        if (i == 0) {
            continue;  // changing the version byte gives bad_version / a length error instead
        }
        Buffer packet = request_buffer();
        packet[i] ^= 0x01;
        if (i == 2 || i == 3) {
            // the total length no longer matches the buffer; keep it valid by growing the buffer
            packet.resize(std::max<std::size_t>(packet.size(), load_be16(view(packet), 2)), 0);
            if (load_be16(view(packet), 2) < 20) {
                continue;
            }
        }
        INFO("flipped byte " << i);
        CHECK(parse_error(packet) == WireError::bad_checksum);
    }
    Buffer packet = request_buffer();
    packet[10] = 0;
    packet[11] = 0;
    CHECK(parse_error(packet) == WireError::bad_checksum);
}

TEST_CASE("ipv4: fragments are rejected", "[wire][ipv4]")
{
    struct Case {
        const char* what;
        std::uint16_t flags_frag;
    };
    for (const Case& c : {Case{"MF, offset 0 (first fragment)", 0x2000}, Case{"offset 1 (last fragment)", 0x0001},
                          Case{"MF and offset 185", 0x20b9}, Case{"DF and offset 8191", 0x5fff}}) {
        Buffer packet = request_buffer();
        store_be16(mut(packet), 6, c.flags_frag);
        fix_ipv4_checksum(packet);
        auto ip = Ipv4View::check(view(packet));
        REQUIRE(ip.has_value());
        INFO(c.what);
        CHECK(ip->more_fragments() == ((c.flags_frag & 0x2000) != 0));
        CHECK(ip->fragment_offset() == (c.flags_frag & 0x1fff));
        CHECK(parse_error(packet) == WireError::fragmented);
    }
}

TEST_CASE("ipv4: options are rejected, after the fragment check", "[wire][ipv4]")
{
    // Insert a Router Alert option (94 04 00 00): IHL 6, total length 56.
    Buffer packet = request_buffer();
    packet.insert(packet.begin() + 20, {0x94, 0x04, 0x00, 0x00});
    packet[0] = 0x46;
    store_be16(mut(packet), 2, 56);
    fix_ipv4_checksum(packet);
    auto ip = Ipv4View::check(view(packet));
    REQUIRE(ip.has_value());
    CHECK(ip->header_len() == 24);
    CHECK(cm::wire::test::to_buffer(ip->options()) == Buffer{0x94, 0x04, 0x00, 0x00});
    CHECK(ip->payload().size() == 32);
    CHECK(ip->verify_checksum());
    CHECK(parse_error(packet) == WireError::has_options);

    store_be16(mut(packet), 6, 0x2000);
    fix_ipv4_checksum(packet);
    CHECK(parse_error(packet) == WireError::fragmented);
}

TEST_CASE("ipv4: the documented order of parse errors", "[wire][ipv4]")
{
    // A packet with every problem at once reports them one by one as each is fixed.
    Buffer packet = request_buffer();
    packet.insert(packet.begin() + 20, {0x01, 0x01, 0x01, 0x00});
    packet[0] = 0x66;                    // version 6, IHL 6
    store_be16(mut(packet), 2, 56);
    store_be16(mut(packet), 6, 0x2001);  // MF + offset
    packet[10] ^= 0xff;                  // bad checksum
    CHECK(parse_error(packet) == WireError::bad_version);
    packet[0] = 0x46;
    CHECK(parse_error(packet) == WireError::bad_checksum);
    fix_ipv4_checksum(packet);
    CHECK(parse_error(packet) == WireError::fragmented);
    store_be16(mut(packet), 6, 0x4000);
    fix_ipv4_checksum(packet);
    CHECK(parse_error(packet) == WireError::has_options);
}

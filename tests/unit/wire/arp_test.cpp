#include "wire/arp.hpp"

#include "golden.hpp"
#include "wire_test_util.hpp"

using namespace cm::wire;
using cm::wire::test::Buffer;
using cm::wire::test::mut;
using cm::wire::test::view;

namespace {

Bytes request_bytes()
{
    return as_bytes(golden::arp_request_frame).subspan(golden::eth_len);
}

Bytes reply_bytes()
{
    return as_bytes(golden::arp_reply_frame).subspan(golden::eth_len);
}

ArpRepr request_repr()
{
    return ArpRepr{arp_op::request, *MacAddress::parse("02:00:00:00:00:01"), Ipv4Address::from_octets(198, 18, 0, 1),
                   MacAddress{}, Ipv4Address::from_octets(198, 18, 0, 2)};
}

ArpRepr reply_repr()
{
    return ArpRepr{arp_op::reply, *MacAddress::parse("02:00:00:00:00:02"), Ipv4Address::from_octets(198, 18, 0, 2),
                   *MacAddress::parse("02:00:00:00:00:01"), Ipv4Address::from_octets(198, 18, 0, 1)};
}

Buffer request_buffer()
{
    return cm::wire::test::to_buffer(request_bytes());
}

}  // namespace

TEST_CASE("arp: deconstruct", "[wire][arp]")
{
    auto arp = ArpView::check(request_bytes());
    REQUIRE(arp.has_value());
    CHECK(arp->hardware_type() == 1);
    CHECK(arp->protocol_type() == 0x0800);
    CHECK(arp->hardware_len() == 6);
    CHECK(arp->protocol_len() == 4);
    CHECK(arp->operation() == arp_op::request);
    CHECK(arp->sender_hardware_addr() == *MacAddress::parse("02:00:00:00:00:01"));
    CHECK(arp->sender_protocol_addr() == Ipv4Address::from_octets(198, 18, 0, 1));
    CHECK(arp->target_hardware_addr() == MacAddress{});
    CHECK(arp->target_protocol_addr() == Ipv4Address::from_octets(198, 18, 0, 2));
    CHECK(arp->sender_mac() == arp->sender_hardware_addr());
    CHECK(arp->sender_ip() == arp->sender_protocol_addr());
    CHECK(arp->target_mac() == arp->target_hardware_addr());
    CHECK(arp->target_ip() == arp->target_protocol_addr());
}

TEST_CASE("arp: construct", "[wire][arp]")
{
    Buffer out(ArpRepr::buffer_len(), 0xaa);
    reply_repr().emit(mut(out));
    CHECK(out == cm::wire::test::to_buffer(reply_bytes()));
    request_repr().emit(mut(out));
    CHECK(out == request_buffer());
}

TEST_CASE("arp: parse", "[wire][arp]")
{
    auto request = ArpView::check(request_bytes());
    REQUIRE(request.has_value());
    auto parsed = ArpRepr::parse(*request);
    REQUIRE(parsed.has_value());
    CHECK(*parsed == request_repr());

    auto reply = ArpView::check(reply_bytes());
    REQUIRE(reply.has_value());
    parsed = ArpRepr::parse(*reply);
    REQUIRE(parsed.has_value());
    CHECK(*parsed == reply_repr());
}

TEST_CASE("arp: emit round trip", "[wire][arp]")
{
    const ArpRepr repr{arp_op::reply, *MacAddress::parse("02:12:34:56:78:9a"), Ipv4Address::from_octets(10, 0, 0, 1),
                       *MacAddress::parse("02:ab:cd:ef:01:23"), Ipv4Address::from_octets(10, 0, 0, 2)};
    Buffer out(ArpRepr::buffer_len());
    repr.emit(mut(out));
    auto arp = ArpView::check(view(out));
    REQUIRE(arp.has_value());
    auto parsed = ArpRepr::parse(*arp);
    REQUIRE(parsed.has_value());
    CHECK(*parsed == repr);
}

TEST_CASE("arp: truncated at every length below 28", "[wire][arp]")
{
    const Bytes packet = request_bytes();
    for (std::size_t len = 0; len < packet.size(); ++len) {
        auto arp = ArpView::check(packet.first(len));
        INFO("len " << len);
        REQUIRE_FALSE(arp.has_value());
        CHECK(arp.error() == WireError::truncated);
    }
    CHECK(ArpView::check(packet).has_value());
}

TEST_CASE("arp: Ethernet padding after the packet is ignored", "[wire][arp]")
{
    Buffer padded = request_buffer();
    padded.resize(46, 0);  // 60-byte minimum frame - 14-byte header
    auto arp = ArpView::check(view(padded));
    REQUIRE(arp.has_value());
    CHECK(arp->bytes().size() == 28);
    auto parsed = ArpRepr::parse(*arp);
    REQUIRE(parsed.has_value());
    CHECK(*parsed == request_repr());
}

TEST_CASE("arp: other hardware or protocol types are unsupported", "[wire][arp]")
{
    struct Case {
        const char* what;
        std::size_t offset;
        std::uint8_t value;
    };
    for (const Case& c : {Case{"htype 6 (IEEE 802)", 1, 6}, Case{"ptype 0x86dd", 2, 0x86}, Case{"hlen 8", 4, 8},
                          Case{"plen 16", 5, 16}, Case{"hlen 0", 4, 0}}) {
        Buffer packet = request_buffer();
        packet[c.offset] = c.value;
        auto arp = ArpView::check(view(packet));
        REQUIRE(arp.has_value());
        auto parsed = ArpRepr::parse(*arp);
        INFO(c.what);
        REQUIRE_FALSE(parsed.has_value());
        CHECK(parsed.error() == WireError::unsupported);
    }
}

TEST_CASE("arp: operations other than request and reply are malformed, after the type checks", "[wire][arp]")
{
    for (std::uint16_t op : {0, 3, 4, 8, 9, 0xffff}) {
        Buffer packet = request_buffer();
        store_be16(mut(packet), 6, op);
        auto parsed = ArpRepr::parse(*ArpView::check(view(packet)));
        INFO("op " << op);
        REQUIRE_FALSE(parsed.has_value());
        CHECK(parsed.error() == WireError::malformed);

        packet[1] = 6;  // and a non-Ethernet htype: unsupported wins
        parsed = ArpRepr::parse(*ArpView::check(view(packet)));
        REQUIRE_FALSE(parsed.has_value());
        CHECK(parsed.error() == WireError::unsupported);
    }
}

#include "wire/ethernet.hpp"

#include "golden.hpp"
#include "wire_test_util.hpp"

using namespace cm::wire;
using cm::wire::test::Buffer;
using cm::wire::test::mut;
using cm::wire::test::to_buffer;
using cm::wire::test::view;

namespace {

EthernetRepr arp_request_repr()
{
    return EthernetRepr{MacAddress::broadcast(), *MacAddress::parse("02:00:00:00:00:01"), ethertype::arp};
}

}  // namespace

TEST_CASE("ethernet: deconstruct", "[wire][ethernet]")
{
    auto eth = EthernetView::check(as_bytes(golden::arp_request_frame));
    REQUIRE(eth.has_value());
    CHECK(eth->destination() == MacAddress::broadcast());
    CHECK(eth->source() == *MacAddress::parse("02:00:00:00:00:01"));
    CHECK(eth->ethertype() == ethertype::arp);
    CHECK(eth->payload().size() == 28);
    CHECK(eth->payload().data() == as_bytes(golden::arp_request_frame).data() + 14);
    CHECK(eth->bytes().size() == 42);
}

TEST_CASE("ethernet: construct", "[wire][ethernet]")
{
    Buffer out(EthernetRepr::buffer_len(), 0xaa);
    arp_request_repr().emit(mut(out));
    CHECK(out == Buffer(golden::arp_request_frame.begin(), golden::arp_request_frame.begin() + 14));
}

TEST_CASE("ethernet: parse", "[wire][ethernet]")
{
    auto eth = EthernetView::check(as_bytes(golden::arp_request_frame));
    REQUIRE(eth.has_value());
    CHECK(EthernetRepr::parse(*eth) == arp_request_repr());

    auto ip = EthernetView::check(as_bytes(golden::echo_request_frame));
    REQUIRE(ip.has_value());
    CHECK(EthernetRepr::parse(*ip) == EthernetRepr{*MacAddress::parse("02:00:00:00:00:02"),
                                                   *MacAddress::parse("02:00:00:00:00:01"), ethertype::ipv4});
}

TEST_CASE("ethernet: emit round trip", "[wire][ethernet]")
{
    const EthernetRepr repr{*MacAddress::parse("33:33:00:00:00:16"), *MacAddress::parse("02:aa:bb:cc:dd:ee"),
                            ethertype::ipv6};
    Buffer out(EthernetRepr::buffer_len() + 4, 0);
    repr.emit(mut(out));
    auto eth = EthernetView::check(view(out));
    REQUIRE(eth.has_value());
    CHECK(EthernetRepr::parse(*eth) == repr);
    CHECK(eth->payload().size() == 4);
}

TEST_CASE("ethernet: truncated at every length below the header", "[wire][ethernet]")
{
    const Bytes frame = as_bytes(golden::arp_request_frame);
    for (std::size_t len = 0; len <= frame.size(); ++len) {
        auto eth = EthernetView::check(frame.first(len));
        INFO("len " << len);
        if (len < EthernetView::header_len) {
            REQUIRE_FALSE(eth.has_value());
            CHECK(eth.error() == WireError::truncated);
        } else {
            REQUIRE(eth.has_value());
            CHECK(eth->payload().size() == len - 14);
        }
    }
}

TEST_CASE("ethernet: VLAN-tagged and 802.3 frames are passed up as they are", "[wire][ethernet]")
{
    Buffer frame = to_buffer(golden::echo_request_frame);
    frame[12] = 0x81;
    frame[13] = 0x00;
    auto tagged = EthernetView::check(view(frame));
    REQUIRE(tagged.has_value());
    CHECK(tagged->ethertype() == ethertype::vlan);

    frame[12] = 0x00;
    frame[13] = 0x2e;  // an 802.3 length field
    auto llc = EthernetView::check(view(frame));
    REQUIRE(llc.has_value());
    CHECK(llc->ethertype() == 0x002e);
}

#include "wire/address.hpp"

#include "wire_test_util.hpp"

#include <fmt/format.h>

#include <unordered_set>

using namespace cm::wire;

TEST_CASE("MacAddress parses the canonical form and prints it back", "[wire][address]")
{
    auto mac = MacAddress::parse("02:00:00:aa:bb:cc");
    REQUIRE(mac.has_value());
    CHECK(mac->octets == std::array<std::uint8_t, 6>{0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc});
    CHECK(mac->to_string() == "02:00:00:aa:bb:cc");
    CHECK(MacAddress::parse("02:00:00:AA:BB:CC") == mac);
    CHECK(fmt::format("{}", *mac) == "02:00:00:aa:bb:cc");
    CHECK(fmt::format("[{:>19}]", *mac) == "[  02:00:00:aa:bb:cc]");
    CHECK(MacAddress::parse("ff:ff:ff:ff:ff:ff") == MacAddress::broadcast());
}

TEST_CASE("MacAddress rejects malformed text", "[wire][address]")
{
    for (const char* bad : {"", "02:00:00:aa:bb", "02:00:00:aa:bb:cc:", "02:00:00:aa:bb:c", "02-00-00-aa-bb-cc",
                            "02:00:00:aa:bb:cg", "2:00:00:aa:bb:cc0", " 02:00:00:aa:bb:cc", "02:00:00:aa:bb:cc ",
                            "0200.00aa.bbcc", "02:00:00:aa:bb::c"}) {
        INFO(bad);
        CHECK_FALSE(MacAddress::parse(bad).has_value());
    }
}

TEST_CASE("MacAddress classification", "[wire][address]")
{
    CHECK(MacAddress::broadcast().is_broadcast());
    CHECK(MacAddress::broadcast().is_multicast());
    CHECK_FALSE(MacAddress::broadcast().is_unicast());
    CHECK(MacAddress::parse("01:00:5e:00:00:01")->is_multicast());
    CHECK_FALSE(MacAddress::parse("01:00:5e:00:00:01")->is_broadcast());
    CHECK(MacAddress::parse("02:00:00:00:00:01")->is_unicast());
    CHECK(MacAddress{}.is_zero());
    CHECK_FALSE(MacAddress::parse("00:00:00:00:00:01")->is_zero());
    CHECK(*MacAddress::parse("02:00:00:00:00:01") < *MacAddress::parse("02:00:00:00:00:02"));
}

TEST_CASE("MacAddress read and write at an offset", "[wire][address]")
{
    cm::wire::test::Buffer buf(10, 0xee);
    const auto mac = *MacAddress::parse("02:00:00:aa:bb:cc");
    mac.write(cm::wire::test::mut(buf), 2);
    CHECK(buf == cm::wire::test::Buffer{0xee, 0xee, 0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc, 0xee, 0xee});
    CHECK(MacAddress::read(cm::wire::test::view(buf), 2) == mac);
}

TEST_CASE("Ipv4Address parses dotted quads and prints them back", "[wire][address]")
{
    CHECK(Ipv4Address::parse("198.18.0.2") == Ipv4Address::from_octets(198, 18, 0, 2));
    CHECK(Ipv4Address::parse("198.18.0.2")->value == 0xc6120002u);
    CHECK(Ipv4Address::parse("0.0.0.0") == Ipv4Address{});
    CHECK(Ipv4Address::parse("255.255.255.255")->is_broadcast());
    CHECK(Ipv4Address::from_octets(10, 0, 0, 1).to_string() == "10.0.0.1");
    CHECK(Ipv4Address::from_octets(255, 255, 255, 255).to_string() == "255.255.255.255");
    CHECK(fmt::format("{}", Ipv4Address::from_octets(198, 18, 0, 2)) == "198.18.0.2");
}

TEST_CASE("Ipv4Address rejects malformed text", "[wire][address]")
{
    for (const char* bad : {"", "1", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.256", "1.2.3.-4", "01.2.3.4",
                            "1.2.3.04", "1..2.3", "1.2.3.4.", ".1.2.3.4", " 1.2.3.4", "1.2.3.4 ", "a.b.c.d",
                            "1.2.3.4/24", "1000.2.3.4", "0x1.2.3.4", "1.2.3.4444"}) {
        INFO(bad);
        CHECK_FALSE(Ipv4Address::parse(bad).has_value());
    }
}

TEST_CASE("Ipv4Address classification and ordering", "[wire][address]")
{
    CHECK(Ipv4Address{}.is_unspecified());
    CHECK(Ipv4Address::from_octets(224, 0, 0, 1).is_multicast());
    CHECK(Ipv4Address::from_octets(239, 255, 255, 255).is_multicast());
    CHECK_FALSE(Ipv4Address::from_octets(240, 0, 0, 1).is_multicast());
    CHECK(Ipv4Address::from_octets(127, 0, 0, 1).is_loopback());
    CHECK_FALSE(Ipv4Address::from_octets(128, 0, 0, 1).is_loopback());
    CHECK(Ipv4Address::from_octets(9, 255, 255, 255) < Ipv4Address::from_octets(10, 0, 0, 0));
}

TEST_CASE("Ipv4Address read and write are network order", "[wire][address]")
{
    cm::wire::test::Buffer buf(6, 0);
    Ipv4Address::from_octets(198, 18, 0, 2).write(cm::wire::test::mut(buf), 1);
    CHECK(buf == cm::wire::test::Buffer{0, 198, 18, 0, 2, 0});
    CHECK(Ipv4Address::read(cm::wire::test::view(buf), 1) == Ipv4Address::from_octets(198, 18, 0, 2));
}

TEST_CASE("Ipv4Cidr parsing and subnet arithmetic", "[wire][address]")
{
    auto cidr = Ipv4Cidr::parse("198.18.0.2/24");
    REQUIRE(cidr.has_value());
    CHECK(cidr->address == Ipv4Address::from_octets(198, 18, 0, 2));
    CHECK(cidr->prefix_len == 24);
    CHECK(cidr->netmask() == Ipv4Address::from_octets(255, 255, 255, 0));
    CHECK(cidr->network() == Ipv4Address::from_octets(198, 18, 0, 0));
    CHECK(cidr->broadcast() == Ipv4Address::from_octets(198, 18, 0, 255));
    CHECK(cidr->contains(Ipv4Address::from_octets(198, 18, 0, 1)));
    CHECK(cidr->contains(Ipv4Address::from_octets(198, 18, 0, 255)));
    CHECK_FALSE(cidr->contains(Ipv4Address::from_octets(198, 18, 1, 1)));
    CHECK(cidr->to_string() == "198.18.0.2/24");
    CHECK(fmt::format("{}", *cidr) == "198.18.0.2/24");

    auto all = Ipv4Cidr::parse("0.0.0.0/0");
    REQUIRE(all.has_value());
    CHECK(all->netmask() == Ipv4Address{});
    CHECK(all->contains(Ipv4Address::from_octets(8, 8, 8, 8)));
    CHECK(all->broadcast().is_broadcast());

    auto host = Ipv4Cidr::parse("10.1.2.3/32");
    REQUIRE(host.has_value());
    CHECK(host->netmask().is_broadcast());
    CHECK(host->contains(Ipv4Address::from_octets(10, 1, 2, 3)));
    CHECK_FALSE(host->contains(Ipv4Address::from_octets(10, 1, 2, 4)));
    CHECK(host->broadcast() == Ipv4Address::from_octets(10, 1, 2, 3));

    auto slash31 = Ipv4Cidr::parse("192.0.2.1/31");
    REQUIRE(slash31.has_value());
    CHECK(slash31->netmask() == Ipv4Address::from_octets(255, 255, 255, 254));
    CHECK(slash31->network() == Ipv4Address::from_octets(192, 0, 2, 0));
}

TEST_CASE("Ipv4Cidr rejects malformed text", "[wire][address]")
{
    for (const char* bad : {"", "198.18.0.2", "198.18.0.2/", "198.18.0.2/33", "198.18.0.2/024", "198.18.0.2/-1",
                            "198.18.0.2/2 4", "198.18.0/24", "/24", "198.18.0.2/24/", "198.18.0.2//24",
                            "198.18.0.2/100", "198.18.0.2/x"}) {
        INFO(bad);
        CHECK_FALSE(Ipv4Cidr::parse(bad).has_value());
    }
    CHECK(Ipv4Cidr::parse("198.18.0.2/0").has_value());
    CHECK(Ipv4Cidr::parse("198.18.0.2/32").has_value());
}

TEST_CASE("addresses hash", "[wire][address]")
{
    std::unordered_set<MacAddress> macs{*MacAddress::parse("02:00:00:00:00:01"), *MacAddress::parse("02:00:00:00:00:02"),
                                        *MacAddress::parse("02:00:00:00:00:01")};
    CHECK(macs.size() == 2);
    std::unordered_set<Ipv4Address> ips{Ipv4Address::from_octets(1, 2, 3, 4), Ipv4Address::from_octets(1, 2, 3, 4)};
    CHECK(ips.size() == 1);
}

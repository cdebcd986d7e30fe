#include "stack_fixture.hpp"

#include "wire/checksum.hpp"

#include <set>

using namespace cm;
using namespace cm::test;

namespace {

/// Makes the card know the peer, so replies go out at once (as after the peer's own ARP request).
void introduce_peer(StackFixture& f)
{
    f.peer_sends(arp_frame(arp_op::request, MacAddress::broadcast(), peer_mac, peer_ip, MacAddress{}, card_ip));
    f.card_sent();
}

struct Parsed {
    EthernetRepr eth;
    Ipv4Repr ip;
    IcmpRepr icmp;
    Frame icmp_bytes;
};

Parsed parse_reply(const Frame& frame)
{
    Parsed p{};
    const auto eth = EthernetView::check(frame);
    REQUIRE(eth);
    p.eth = EthernetRepr::parse(*eth);
    const auto ipv = Ipv4View::check(eth->payload());
    REQUIRE(ipv);
    const auto ip = Ipv4Repr::parse(*ipv);
    REQUIRE(ip);
    p.ip = *ip;
    p.icmp_bytes.assign(ipv->payload().begin(), ipv->payload().end());
    const auto iv = IcmpView::check(p.icmp_bytes);
    REQUIRE(iv);
    const auto icmp = IcmpRepr::parse(*iv);
    REQUIRE(icmp);
    p.icmp = *icmp;
    return p;
}

}  // namespace

TEST_CASE("an echo request is answered with the same identifier, sequence and data", "[icmp]")
{
    StackFixture f;
    introduce_peer(f);
    for (std::size_t size : {0u, 1u, 56u, 1000u, 1472u}) {
        const Frame request = ping_frame(0x1234, static_cast<std::uint16_t>(size), size);
        f.peer_sends(request);
        const auto sent = f.card_sent();
        REQUIRE(sent.size() == 1);
        const Parsed reply = parse_reply(sent[0]);
        CHECK(reply.eth.destination == peer_mac);
        CHECK(reply.eth.source == card_mac);
        CHECK(reply.ip.source == card_ip);
        CHECK(reply.ip.destination == peer_ip);
        CHECK(reply.ip.protocol == ip_protocol::icmp);
        CHECK(reply.icmp.type == icmp_type::echo_reply);
        CHECK(reply.icmp.identifier == 0x1234);
        CHECK(reply.icmp.sequence == size);
        // Data byte-exact: compare with the request's ICMP data.
        const Frame req_icmp = echo_request(0x1234, static_cast<std::uint16_t>(size), size);
        CHECK(Frame(reply.icmp_bytes.begin() + 8, reply.icmp_bytes.end()) == Frame(req_icmp.begin() + 8, req_icmp.end()));
    }
    CHECK(f.icmp.counters().tx_echo_reply == 5);
}

TEST_CASE("an echo request to the broadcast address is ignored", "[icmp]")
{
    StackFixture f;
    introduce_peer(f);
    f.peer_sends(ping_frame(1, 1, 56, Ipv4Address::from_octets(198, 18, 0, 255), MacAddress::broadcast()));
    f.peer_sends(ping_frame(1, 2, 56, Ipv4Address::from_octets(255, 255, 255, 255), MacAddress::broadcast()));
    CHECK(f.card_sent().empty());
    CHECK(f.icmp.counters().rx_echo_to_broadcast == 2);
}

TEST_CASE("a reply to an unknown asker waits for ARP, then goes out", "[icmp]")
{
    StackFixture f;
    f.peer_sends(ping_frame(5, 5));
    auto sent = f.card_sent();
    REQUIRE(sent.size() == 1);
    CHECK(EthernetView::check(sent[0])->ethertype() == ethertype::arp);
    f.peer_sends(arp_frame(arp_op::reply, card_mac, peer_mac, peer_ip, card_mac, card_ip));
    sent = f.card_sent();
    REQUIRE(sent.size() == 1);
    CHECK(parse_reply(sent[0]).icmp.sequence == 5);
}

TEST_CASE("bad ICMP messages are dropped and counted", "[icmp]")
{
    StackFixture f;
    introduce_peer(f);
    Frame bad = ping_frame(1, 1);
    bad[14 + 20 + 2] ^= std::byte{0x55};  // ICMP checksum
    f.peer_sends(bad);
    CHECK(f.icmp.counters().rx_bad_checksum == 1);
    Frame tiny = ethernet_frame(card_mac, peer_mac, ethertype::ipv4,
                                ipv4_packet(peer_ip, card_ip, ip_protocol::icmp, Frame(4)));
    f.peer_sends(tiny);
    CHECK(f.icmp.counters().rx_truncated == 1);
    CHECK(f.card_sent().empty());
}

TEST_CASE("every malformed IPv4 packet is dropped under its own counter", "[ipv4]")
{
    StackFixture f;
    introduce_peer(f);
    const Frame good = ping_frame(1, 1);
    const auto& c = f.card.ipv4_counters();
    auto with = [&](auto mutate) {
        Frame frame = good;
        mutate(frame);
        f.peer_sends(frame);
    };
    // Recompute the header checksum after changing a field, so only the intended fault is present.
    auto fix_checksum = [](Frame& frame) {
        frame[14 + 10] = frame[14 + 11] = std::byte{0};
        const std::size_t ihl = (static_cast<std::size_t>(frame[14]) & 0x0f) * 4;
        const auto sum = internet_checksum(Bytes(frame).subspan(14, ihl));
        frame[14 + 10] = static_cast<std::byte>(sum >> 8);
        frame[14 + 11] = static_cast<std::byte>(sum & 0xff);
    };
    with([](Frame& fr) { fr.resize(14 + 10); });
    CHECK(c.rx_truncated == 1);
    with([&](Frame& fr) { fr[14] = std::byte{0x65}; fix_checksum(fr); });
    CHECK(c.rx_bad_version == 1);
    with([&](Frame& fr) { fr[14] = std::byte{0x44}; });
    CHECK(c.rx_bad_header_length == 1);
    with([&](Frame& fr) { fr[14 + 2] = std::byte{0}; fr[14 + 3] = std::byte{10}; fix_checksum(fr); });
    CHECK(c.rx_bad_total_length == 1);
    with([](Frame& fr) { fr[14 + 10] ^= std::byte{0xff}; });
    CHECK(c.rx_bad_checksum == 1);
    with([&](Frame& fr) { fr[14 + 6] = std::byte{0x20}; fix_checksum(fr); });  // more fragments
    CHECK(c.rx_fragments == 1);
    with([&](Frame& fr) { fr[14 + 7] = std::byte{0x10}; fix_checksum(fr); });  // fragment offset
    CHECK(c.rx_fragments == 2);
    with([&](Frame& fr) {
        // IHL 6 with a 4-byte NOP option inserted after the header.
        fr.insert(fr.begin() + 14 + 20, {std::byte{1}, std::byte{1}, std::byte{1}, std::byte{0}});
        fr[14] = std::byte{0x46};
        const std::size_t total = fr.size() - 14;
        fr[14 + 2] = static_cast<std::byte>(total >> 8);
        fr[14 + 3] = static_cast<std::byte>(total & 0xff);
        fix_checksum(fr);
    });
    CHECK(c.rx_options == 1);
    with([&](Frame& fr) { fr[14 + 12] = std::byte{224}; fix_checksum(fr); });  // multicast source
    CHECK(c.rx_bad_source == 1);
    with([&](Frame& fr) { fr[14 + 19] = std::byte{3}; fix_checksum(fr); });  // 198.18.0.3: not ours
    CHECK(c.rx_not_for_us == 1);
    with([&](Frame& fr) { fr[14 + 9] = std::byte{17}; fix_checksum(fr); });  // UDP: no handler
    CHECK(c.rx_unknown_protocol == 1);
    CHECK(f.card_sent().empty());
    // ... and a good one still works afterwards.
    f.peer_sends(good);
    CHECK(f.card_sent().size() == 1);
}

TEST_CASE("Ethernet padding after the IPv4 total length is ignored", "[ipv4]")
{
    StackFixture f;
    introduce_peer(f);
    Frame padded = ping_frame(9, 9, 0);  // 14 + 20 + 8 = 42 bytes: a real NIC pads it to 60
    padded.resize(60, std::byte{0xee});
    f.peer_sends(padded);
    const auto sent = f.card_sent();
    REQUIRE(sent.size() == 1);
    CHECK(parse_reply(sent[0]).icmp_bytes.size() == 8);
}

TEST_CASE("frames not for the card, VLAN, IPv6 and runts are dropped and counted", "[eth]")
{
    StackFixture f;
    const auto& c = f.card.ethernet_counters();
    const Frame ping = ping_frame(1, 1);
    f.peer_sends(ping_frame(1, 1, 56, card_ip, *MacAddress::parse("02:00:00:00:00:99")));
    CHECK(c.rx_not_for_us == 1);
    f.peer_sends(Frame(ping.begin(), ping.begin() + 10));
    CHECK(c.rx_truncated == 1);
    f.peer_sends(ethernet_frame(card_mac, peer_mac, ethertype::vlan, Frame(46)));
    CHECK(c.rx_vlan == 1);
    f.peer_sends(ethernet_frame(card_mac, peer_mac, ethertype::ipv6, Frame(46)));
    CHECK(c.rx_ipv6 == 1);
    f.peer_sends(ethernet_frame(card_mac, peer_mac, 0x88cc, Frame(46)));  // LLDP
    CHECK(c.rx_unknown_ethertype == 1);
    f.peer_sends(ethernet_frame(card_mac, card_mac, ethertype::ipv4, Frame(46)));  // our own source
    CHECK(c.rx_bad_source == 1);
    CHECK(f.card_sent().empty());
    CHECK(c.rx_frames == 6);
}

TEST_CASE("a sustained ping exchange over a lossy, reordering link: every reply matches a request", "[icmp]")
{
    ManualClock clock;
    core::TimerWheel timers{clock.now()};
    link::FaultProfile lossy;
    lossy.loss = 0.05;
    lossy.reorder = 0.05;
    lossy.duplicate = 0.02;
    lossy.delay = 2ms;
    lossy.seed = 42;
    link::MemoryLinkPair pair{clock, lossy, lossy};
    stack::NetworkInterface card{pair.a(), timers, card_config()};
    stack::IcmpLayer icmp{card};
    // The peer is known, so every surviving request is answered at once.
    REQUIRE(pair.b().send(arp_frame(arp_op::request, MacAddress::broadcast(), peer_mac, peer_ip, MacAddress{}, card_ip)));
    pair.b().flush();
    std::set<std::uint16_t> answered;
    Collector out;
    for (std::uint16_t seq = 0; seq < 2000; ++seq) {
        REQUIRE(pair.b().send(ping_frame(77, seq)));
        pair.b().flush();
        clock.advance(1ms);
        card.poll(clock.now());
        timers.advance(clock.now());
        card.flush();
        pair.b().receive(out, 64);
    }
    clock.advance(1s);
    card.poll(clock.now());
    card.flush();
    clock.advance(1s);
    while (pair.b().receive(out, 64) > 0) {
    }
    std::size_t replies = 0;
    for (const Frame& frame : out.frames) {
        const auto eth = EthernetView::check(frame);
        REQUIRE(eth);
        if (eth->ethertype() != ethertype::ipv4) {
            continue;
        }
        const Parsed reply = parse_reply(frame);
        CHECK(reply.icmp.identifier == 77);
        answered.insert(reply.icmp.sequence);
        ++replies;
    }
    // Requests and replies each cross a 5%-loss link: about 90% come back; duplicates may add a few.
    CHECK(answered.size() > 1700);
    CHECK(answered.size() < 1950);
    CHECK(icmp.counters().rx_echo_request >= answered.size());
    CHECK(replies >= answered.size());
}

#include "stack_fixture.hpp"

using namespace cm;
using namespace cm::test;
using State = stack::ArpCache::State;

namespace {

ArpRepr parse_arp(const Frame& frame, EthernetRepr* eth_out = nullptr)
{
    const auto eth = EthernetView::check(frame);
    REQUIRE(eth);
    REQUIRE(eth->ethertype() == ethertype::arp);
    if (eth_out) {
        *eth_out = EthernetRepr::parse(*eth);
    }
    const auto view = ArpView::check(eth->payload());
    REQUIRE(view);
    const auto arp = ArpRepr::parse(*view);
    REQUIRE(arp);
    return *arp;
}

}  // namespace

TEST_CASE("start-up announces the card's address with a gratuitous ARP", "[arp]")
{
    StackFixture f;
    f.card.start();
    f.card.flush();
    const auto sent = f.card_sent();
    REQUIRE(sent.size() == 1);
    EthernetRepr eth{};
    const ArpRepr arp = parse_arp(sent[0], &eth);
    CHECK(eth.destination == MacAddress::broadcast());
    CHECK(eth.source == card_mac);
    CHECK(arp.operation == arp_op::request);
    CHECK(arp.sender_ip == card_ip);
    CHECK(arp.target_ip == card_ip);
    CHECK(arp.sender_mac == card_mac);
    CHECK(sent[0].size() == 60);  // padded to the Ethernet minimum
}

TEST_CASE("a request for the card's address is answered, and the asker is learned", "[arp]")
{
    StackFixture f;
    f.peer_sends(arp_frame(arp_op::request, MacAddress::broadcast(), peer_mac, peer_ip, MacAddress{}, card_ip));
    const auto sent = f.card_sent();
    REQUIRE(sent.size() == 1);
    EthernetRepr eth{};
    const ArpRepr reply = parse_arp(sent[0], &eth);
    CHECK(eth.destination == peer_mac);
    CHECK(reply == ArpRepr{arp_op::reply, card_mac, card_ip, peer_mac, peer_ip});
    const auto entry = f.card.arp().lookup(peer_ip);
    REQUIRE(entry);
    CHECK(entry->mac == peer_mac);
    CHECK(entry->state == State::reachable);
    CHECK(f.card.arp().counters().tx_reply == 1);
}

TEST_CASE("requests for other addresses get no answer and teach nothing", "[arp]")
{
    StackFixture f;
    const auto other = Ipv4Address::from_octets(198, 18, 0, 77);
    f.peer_sends(arp_frame(arp_op::request, MacAddress::broadcast(), peer_mac, peer_ip, MacAddress{}, other));
    CHECK(f.card_sent().empty());
    CHECK_FALSE(f.card.arp().lookup(peer_ip));
    CHECK(f.card.arp().counters().rx_not_for_us == 1);
}

TEST_CASE("ARP with a broadcast or multicast sender is dropped and counted", "[arp]")
{
    StackFixture f;
    auto frame = arp_frame(arp_op::request, MacAddress::broadcast(), peer_mac, peer_ip, MacAddress{}, card_ip);
    // Sender hardware address (ARP bytes 8..14) set to broadcast; the Ethernet source stays valid.
    std::fill(frame.begin() + 14 + 8, frame.begin() + 14 + 14, std::byte{0xff});
    f.peer_sends(frame);
    CHECK(f.card_sent().empty());
    CHECK(f.card.arp().counters().rx_bad_sender == 1);
}

TEST_CASE("truncated and unsupported ARP packets are dropped and counted", "[arp]")
{
    StackFixture f;
    auto frame = arp_frame(arp_op::request, MacAddress::broadcast(), peer_mac, peer_ip, MacAddress{}, card_ip);
    f.peer_sends(Frame(frame.begin(), frame.begin() + 14 + 20));
    CHECK(f.card.arp().counters().rx_truncated == 1);
    frame[14 + 0] = std::byte{0x01};  // hardware type 0x0101
    f.peer_sends(frame);
    CHECK(f.card.arp().counters().rx_unsupported == 1);
    auto bad_op = arp_frame(arp_op::request, MacAddress::broadcast(), peer_mac, peer_ip, MacAddress{}, card_ip);
    bad_op[14 + 7] = std::byte{9};
    f.peer_sends(bad_op);
    CHECK(f.card.arp().counters().rx_malformed == 1);
    CHECK(f.card_sent().empty());
}

TEST_CASE("a host claiming the card's address is counted and the address defended once per interval", "[arp]")
{
    StackFixture f;
    const auto intruder = *MacAddress::parse("02:00:00:00:00:66");
    const auto claim = arp_frame(arp_op::request, MacAddress::broadcast(), intruder, card_ip, MacAddress{}, card_ip);
    f.peer_sends(claim);
    f.peer_sends(claim);
    CHECK(f.card.arp().counters().rx_conflict == 2);
    auto sent = f.card_sent();
    REQUIRE(sent.size() == 1);  // one defence, not two
    CHECK(parse_arp(sent[0]).sender_mac == card_mac);
    f.run_for(11s);
    f.peer_sends(claim);
    CHECK(f.card_sent().size() == 1);  // the interval has passed: defend again
}

TEST_CASE("sending to an unknown neighbour queues the packet, resolves, then sends it", "[arp]")
{
    StackFixture f;
    const Frame payload = echo_request(1, 1, 8);
    std::copy(payload.begin(), payload.end(), f.card.ipv4_payload().begin());
    Ipv4Repr header{};
    header.destination = peer_ip;
    header.protocol = ip_protocol::icmp;
    header.payload_len = static_cast<std::uint16_t>(payload.size());
    REQUIRE(f.card.send_ipv4(header));
    f.card.flush();
    auto sent = f.card_sent();
    REQUIRE(sent.size() == 1);
    const ArpRepr request = parse_arp(sent[0]);
    CHECK(request.operation == arp_op::request);
    CHECK(request.target_ip == peer_ip);
    CHECK(f.card.arp().lookup(peer_ip)->pending == 1);

    f.peer_sends(arp_frame(arp_op::reply, card_mac, peer_mac, peer_ip, card_mac, card_ip));
    sent = f.card_sent();
    REQUIRE(sent.size() == 1);
    const auto eth = EthernetView::check(sent[0]);
    REQUIRE(eth);
    CHECK(eth->destination() == peer_mac);
    CHECK(eth->ethertype() == ethertype::ipv4);
    const auto ip = Ipv4Repr::parse(*Ipv4View::check(eth->payload()));
    REQUIRE(ip);
    CHECK(ip->source == card_ip);
    CHECK(ip->destination == peer_ip);
    CHECK(f.card.arp().counters().pending_sent == 1);
    CHECK(f.card.arp().counters().resolved == 1);
}

TEST_CASE("a neighbour that never answers is retried, then given up and its packets dropped", "[arp]")
{
    StackFixture f;
    const auto silent = Ipv4Address::from_octets(198, 18, 0, 99);
    for (int i = 0; i < 3; ++i) {
        Ipv4Repr header{};
        header.destination = silent;
        header.protocol = ip_protocol::icmp;
        header.payload_len = 8;
        REQUIRE(f.card.send_ipv4(header));
    }
    f.card.flush();
    CHECK(f.card_sent().size() == 1);  // one request for three packets
    f.run_for(990ms);
    CHECK(f.card_sent().empty());
    f.run_for(10ms);
    CHECK(f.card_sent().size() == 1);  // retry after 1 s
    f.run_for(1s);
    CHECK(f.card_sent().size() == 1);  // third request
    f.run_for(1s);
    CHECK(f.card_sent().empty());  // given up
    CHECK_FALSE(f.card.arp().lookup(silent));
    CHECK(f.card.arp().counters().tx_request == 3);
    CHECK(f.card.arp().counters().resolve_failed == 1);
    CHECK(f.card.arp().counters().pending_dropped == 3);
    CHECK(f.timers.size() == 0);  // nothing left armed for the forgotten entry
}

TEST_CASE("entries age: reachable, then stale; a stale entry is probed by unicast when used", "[arp]")
{
    StackFixture f;
    f.peer_sends(arp_frame(arp_op::request, MacAddress::broadcast(), peer_mac, peer_ip, MacAddress{}, card_ip));
    f.card_sent();
    f.run_for(61s);
    CHECK(f.card.arp().lookup(peer_ip)->state == State::stale);
    // Use it: the packet goes out at once to the known MAC, and a unicast probe confirms the entry.
    f.peer_sends(ping_frame(7, 1));
    const auto sent = f.card_sent();
    REQUIRE(sent.size() == 2);
    EthernetRepr eth{};
    const ArpRepr probe = parse_arp(sent[0], &eth);
    CHECK(eth.destination == peer_mac);
    CHECK(probe.target_ip == peer_ip);
    CHECK(EthernetView::check(sent[1])->ethertype() == ethertype::ipv4);
    CHECK(f.card.arp().lookup(peer_ip)->state == State::probe);
    f.peer_sends(arp_frame(arp_op::reply, card_mac, peer_mac, peer_ip, card_mac, card_ip));
    CHECK(f.card.arp().lookup(peer_ip)->state == State::reachable);
}

TEST_CASE("an unused stale entry is forgotten", "[arp]")
{
    StackFixture f;
    f.peer_sends(arp_frame(arp_op::request, MacAddress::broadcast(), peer_mac, peer_ip, MacAddress{}, card_ip));
    f.run_for(61s + 10min);
    CHECK_FALSE(f.card.arp().lookup(peer_ip));
    CHECK(f.card.arp().counters().expired == 1);
    CHECK(f.timers.size() == 0);
}

TEST_CASE("the table is bounded: a flood of new neighbours cannot grow it past max_entries", "[arp]")
{
    ManualClock clock;
    core::TimerWheel timers{clock.now()};
    link::MemoryLinkPair pair{clock};
    auto config = card_config();
    config.arp.max_entries = 100;
    stack::NetworkInterface card{pair.a(), timers, config};
    for (int i = 0; i < 1000; ++i) {
        const auto ip = Ipv4Address{Ipv4Address::from_octets(198, 18, 0, 0).value + 3 + static_cast<std::uint32_t>(i)};
        auto mac = peer_mac;
        mac.octets[3] = 0x10;  // never equal to the card's MAC
        mac.octets[4] = static_cast<std::uint8_t>(i >> 8);
        mac.octets[5] = static_cast<std::uint8_t>(i);
        REQUIRE(pair.b().send(arp_frame(arp_op::request, MacAddress::broadcast(), mac, ip, MacAddress{}, card_ip)));
        pair.b().flush();
        card.poll(clock.now());
        card.flush();
    }
    CHECK(card.arp().size() == 100);
    CHECK(card.arp().counters().table_full == 900);
    CHECK(card.arp().counters().tx_reply == 1000);  // still answered: answering needs no entry
}

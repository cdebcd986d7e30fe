// Fuzzes the whole receive path: frames from the network into the card's interface (Ethernet, ARP,
// IPv4, ICMP), with timers running between them. The input is a sequence of frames, each prefixed by a
// 2-byte big-endian length and a 1-byte count of 100 ms steps to let pass before it, so the fuzzer can build
// state (teach the card a neighbour, then ping it; claim its address; leave ARP entries to age).
//
// Oracle: whatever the card sends must be a well-formed frame from the card: our source MAC, at least 60
// bytes, and an ARP packet that parses, or an IPv4 packet whose header and ICMP checksums verify.
#include "core/timer_wheel.hpp"
#include "link/memory_link.hpp"
#include "stack/icmp.hpp"
#include "stack/interface.hpp"
#include "wire/arp.hpp"
#include "wire/ethernet.hpp"
#include "wire/icmp.hpp"
#include "wire/ipv4.hpp"

#include <algorithm>
#include <cstdlib>
#include <vector>

using namespace cm;
using namespace cm::wire;

namespace {

struct Checker final : link::FrameHandler {
    MacAddress card_mac;
    void on_frame(std::span<const std::byte> frame) override
    {
        const auto eth = EthernetView::check(frame);
        if (!eth || frame.size() < 60 || eth->source() != card_mac) {
            std::abort();
        }
        if (eth->ethertype() == ethertype::arp) {
            const auto arp = ArpView::check(eth->payload());
            if (!arp || !ArpRepr::parse(*arp)) {
                std::abort();
            }
            return;
        }
        if (eth->ethertype() != ethertype::ipv4) {
            std::abort();
        }
        const auto ipv = Ipv4View::check(eth->payload());
        if (!ipv) {
            std::abort();
        }
        const auto ip = Ipv4Repr::parse(*ipv);
        if (!ip || ip->protocol != ip_protocol::icmp) {
            std::abort();
        }
        const auto icmp = IcmpView::check(ipv->payload());
        if (!icmp || !icmp->verify_checksum() || icmp->type() != icmp_type::echo_reply) {
            std::abort();
        }
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    ManualClock clock;
    core::TimerWheel timers{clock.now()};
    link::MemoryLinkPair pair{clock};
    stack::InterfaceConfig config;
    config.mac = *MacAddress::parse("02:00:00:00:00:02");
    config.address = *Ipv4Cidr::parse("198.18.0.2/24");
    config.arp.max_entries = 64;
    stack::NetworkInterface card{pair.a(), timers, config};
    stack::IcmpLayer icmp{card};
    Checker checker;
    checker.card_mac = config.mac;

    card.start();
    std::size_t at = 0;
    while (at + 3 <= size) {
        const std::size_t len = (std::size_t{data[at]} << 8 | data[at + 1]) % 1600;
        const unsigned steps = data[at + 2];
        at += 3;
        const std::size_t take = std::min(len, size - at);
        std::vector<std::byte> frame(reinterpret_cast<const std::byte*>(data) + at,
                                     reinterpret_cast<const std::byte*>(data) + at + take);
        at += take;
        for (unsigned i = 0; i < steps; ++i) {
            clock.advance(100ms);
            timers.advance(clock.now());
        }
        if (pair.b().send(frame)) {
            pair.b().flush();
        }
        card.poll(clock.now());
        timers.advance(clock.now());
        card.flush();
        while (pair.b().receive(checker, 64) > 0) {
        }
    }
    return 0;
}

// ARP for Ethernet/IPv4 (RFC 826), with the conflict handling of RFC 5227.
//
// The cache is a small state machine per neighbour, driven by the timer wheel:
//
//   (none) --resolve()--> INCOMPLETE --reply--> REACHABLE --reachable_time--> STALE --stale_time--> (gone)
//                           |  retry_interval x max_retries: drop queued packets, forget       |
//                           v                                        use of a STALE entry: PROBE (still used;
//                         (gone)                                     unicast request; no reply -> gone)
//
// While an entry is INCOMPLETE, outgoing packets for it wait in a short per-entry queue and leave as soon
// as the reply comes. Nothing here sends frames itself: it hands ARP packets and resolved IPv4 packets to
// an ArpTransmitter (the interface), so the cache can be tested on its own with a fake transmitter.
#pragma once

#include "base/clock.hpp"
#include "base/counters.hpp"
#include "core/timer_wheel.hpp"
#include "wire/address.hpp"
#include "wire/arp.hpp"
#include "wire/bytes.hpp"

#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

namespace cm::stack {

struct ArpConfig {
    Duration reachable_time = std::chrono::seconds(60);  // a confirmed entry is trusted this long
    Duration stale_time = std::chrono::minutes(10);      // an unused stale entry is forgotten after this
    Duration retry_interval = std::chrono::seconds(1);   // between requests while resolving or probing
    unsigned max_retries = 3;                            // requests before giving up on a neighbour
    std::size_t max_entries = 65536;                     // bound on the table (ARP floods cannot grow it)
    std::size_t max_pending = 16;                        // packets queued per neighbour while resolving
    Duration defend_interval = std::chrono::seconds(10); // RFC 5227 DEFEND_INTERVAL
};

#define CM_ARP_COUNTERS(X)                                                                 \
    X(rx_packets, "ARP packets received")                                                  \
    X(rx_request, "ARP requests received")                                                 \
    X(rx_reply, "ARP replies received")                                                    \
    X(rx_truncated, "dropped: shorter than an Ethernet/IPv4 ARP packet")                   \
    X(rx_unsupported, "dropped: hardware or protocol type other than Ethernet/IPv4")        \
    X(rx_malformed, "dropped: unknown ARP operation")                                      \
    X(rx_bad_sender, "dropped: sender MAC broadcast, multicast or zero, or sender IP invalid") \
    X(rx_not_for_us, "ARP packets for another target (sender still refreshed if known)")   \
    X(rx_conflict, "dropped: another host claims our IP address")                          \
    X(tx_request, "ARP requests sent (resolution and probes)")                             \
    X(tx_reply, "ARP replies sent")                                                        \
    X(tx_announce, "gratuitous ARP announcements sent (start-up and defence)")             \
    X(learned, "neighbour entries created")                                                \
    X(updated, "neighbour entries refreshed or changed")                                   \
    X(resolved, "neighbours resolved after a request")                                     \
    X(resolve_failed, "neighbours that never answered: entry dropped")                     \
    X(expired, "stale entries forgotten")                                                  \
    X(table_full, "dropped: a new neighbour while the table was at max_entries")           \
    X(pending_queued, "packets queued while their next hop was being resolved")           \
    X(pending_sent, "queued packets sent once their next hop was resolved")              \
    X(pending_dropped, "dropped: queued packets whose next hop never resolved, or queue full")
CM_DECLARE_COUNTERS(ArpCounters, CM_ARP_COUNTERS)

/// What the cache needs from the interface below it.
class ArpTransmitter {
public:
    virtual ~ArpTransmitter() = default;
    /// Sends an ARP packet in an Ethernet frame to `destination`.
    virtual void transmit_arp(const wire::ArpRepr& arp, const wire::MacAddress& destination) = 0;
    /// Sends an IPv4 packet (header included, no Ethernet header) that waited for resolution.
    virtual void transmit_resolved(const wire::MacAddress& destination, wire::Bytes ipv4_packet) = 0;
};

class ArpCache {
public:
    enum class State : std::uint8_t { incomplete, reachable, stale, probe };

    ArpCache(core::TimerWheel& timers, ArpTransmitter& transmitter, wire::MacAddress own_mac,
             wire::Ipv4Address own_ip, ArpConfig config = {});
    ~ArpCache();
    ArpCache(const ArpCache&) = delete;
    ArpCache& operator=(const ArpCache&) = delete;

    /// The MAC for `next_hop` if known. Otherwise a copy of `packet` waits for the answer (if it is not
    /// empty), a request goes out if none is outstanding, and the result is nullopt.
    std::optional<wire::MacAddress> resolve(wire::Ipv4Address next_hop, wire::Bytes packet);

    /// Handles a received ARP packet whose Ethernet source was `frame_source`.
    void input(wire::Bytes arp_packet, const wire::MacAddress& frame_source);

    /// Sends a gratuitous ARP announcing our address (RFC 5227 announcement).
    void announce();

    struct EntryInfo {
        wire::MacAddress mac;
        State state;
        std::size_t pending;
    };
    [[nodiscard]] std::optional<EntryInfo> lookup(wire::Ipv4Address ip) const;
    [[nodiscard]] std::size_t size() const noexcept { return _entries.size(); }
    [[nodiscard]] const ArpCounters& counters() const noexcept { return _counters; }

private:
    struct Entry;
    static void on_timer(void* entry);
    void expire(Entry& entry);
    Entry* create(wire::Ipv4Address ip);
    void confirm(Entry& entry, const wire::MacAddress& mac);
    void send_request(Entry& entry);
    void erase(Entry& entry);

    core::TimerWheel& _timers;
    ArpTransmitter& _transmitter;
    wire::MacAddress _own_mac;
    wire::Ipv4Address _own_ip;
    ArpConfig _config;
    std::unordered_map<wire::Ipv4Address, std::unique_ptr<Entry>> _entries;
    std::optional<TimePoint> _last_defence;
    ArpCounters _counters;
};

}  // namespace cm::stack

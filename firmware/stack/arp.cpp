#include "stack/arp.hpp"

#include "base/log.hpp"

namespace cm::stack {

using wire::ArpRepr;
using wire::ArpView;
using wire::Ipv4Address;
using wire::MacAddress;

struct ArpCache::Entry {
    Entry(ArpCache* owner, Ipv4Address address) : cache(owner), ip(address) {}
    ArpCache* cache;
    Ipv4Address ip;
    MacAddress mac{};
    State state = State::incomplete;
    unsigned requests_sent = 0;
    std::deque<std::vector<std::byte>> pending;  // IPv4 packets waiting for `mac`
    core::Timer timer{&ArpCache::on_timer, this};
};

ArpCache::ArpCache(core::TimerWheel& timers, ArpTransmitter& transmitter, MacAddress own_mac, Ipv4Address own_ip,
                   ArpConfig config)
    : _timers(timers), _transmitter(transmitter), _own_mac(own_mac), _own_ip(own_ip), _config(config)
{
}

ArpCache::~ArpCache() = default;

std::optional<MacAddress> ArpCache::resolve(Ipv4Address next_hop, wire::Bytes packet)
{
    auto it = _entries.find(next_hop);
    Entry* entry = it == _entries.end() ? nullptr : it->second.get();
    if (entry != nullptr && entry->state != State::incomplete) {
        if (entry->state == State::stale) {
            // Still usable, but confirm it: a unicast request to the MAC we have (RFC 1122 2.3.2.1).
            entry->state = State::probe;
            entry->requests_sent = 0;
            send_request(*entry);
        }
        return entry->mac;
    }
    if (entry == nullptr) {
        entry = create(next_hop);
        if (entry == nullptr) {
            if (!packet.empty()) {
                ++_counters.pending_dropped;
            }
            return std::nullopt;
        }
        send_request(*entry);
    }
    if (!packet.empty()) {
        if (entry->pending.size() >= _config.max_pending) {
            // Keep the newest: the oldest is the most likely to have been retransmitted already.
            entry->pending.pop_front();
            ++_counters.pending_dropped;
        }
        entry->pending.emplace_back(packet.begin(), packet.end());
        ++_counters.pending_queued;
    }
    return std::nullopt;
}

ArpCache::Entry* ArpCache::create(Ipv4Address ip)
{
    if (_entries.size() >= _config.max_entries) {
        ++_counters.table_full;
        return nullptr;
    }
    auto entry = std::unique_ptr<Entry>(new Entry(this, ip));
    Entry* raw = entry.get();
    _entries.emplace(ip, std::move(entry));
    ++_counters.learned;
    return raw;
}

void ArpCache::send_request(Entry& entry)
{
    ArpRepr request{};
    request.operation = wire::arp_op::request;
    request.sender_mac = _own_mac;
    request.sender_ip = _own_ip;
    request.target_mac = MacAddress{};
    request.target_ip = entry.ip;
    // A probe of a known neighbour goes to its MAC; a first resolution is broadcast.
    const MacAddress destination = entry.state == State::probe ? entry.mac : MacAddress::broadcast();
    _transmitter.transmit_arp(request, destination);
    ++_counters.tx_request;
    ++entry.requests_sent;
    _timers.schedule_after(entry.timer, _config.retry_interval);
}

void ArpCache::confirm(Entry& entry, const MacAddress& mac)
{
    if (entry.state == State::incomplete) {
        ++_counters.resolved;
    } else {
        ++_counters.updated;
    }
    entry.mac = mac;
    entry.state = State::reachable;
    entry.requests_sent = 0;
    _timers.schedule_after(entry.timer, _config.reachable_time);
    while (!entry.pending.empty()) {
        _transmitter.transmit_resolved(mac, entry.pending.front());
        entry.pending.pop_front();
        ++_counters.pending_sent;
    }
}

void ArpCache::on_timer(void* self)
{
    auto* entry = static_cast<Entry*>(self);
    entry->cache->expire(*entry);
}

void ArpCache::expire(Entry& entry)
{
    switch (entry.state) {
    case State::reachable:
        entry.state = State::stale;
        _timers.schedule_after(entry.timer, _config.stale_time);
        return;
    case State::stale:
        ++_counters.expired;
        erase(entry);
        return;
    case State::incomplete:
    case State::probe:
        if (entry.requests_sent < _config.max_retries) {
            send_request(entry);
            return;
        }
        ++_counters.resolve_failed;
        _counters.pending_dropped += entry.pending.size();
        erase(entry);
        return;
    }
}

void ArpCache::erase(Entry& entry)
{
    // The entry may be erased from inside its own timer callback: the wheel no longer touches the timer
    // once the callback has started, and the callback returns right after this.
    _entries.erase(entry.ip);
}

void ArpCache::announce()
{
    ArpRepr announcement{};
    announcement.operation = wire::arp_op::request;
    announcement.sender_mac = _own_mac;
    announcement.sender_ip = _own_ip;
    announcement.target_mac = MacAddress{};
    announcement.target_ip = _own_ip;
    _transmitter.transmit_arp(announcement, MacAddress::broadcast());
    ++_counters.tx_announce;
}

void ArpCache::input(wire::Bytes packet, const MacAddress& frame_source)
{
    ++_counters.rx_packets;
    const auto view = ArpView::check(packet);
    if (!view) {
        ++_counters.rx_truncated;
        return;
    }
    const auto parsed = ArpRepr::parse(*view);
    if (!parsed) {
        if (parsed.error() == wire::WireError::unsupported) {
            ++_counters.rx_unsupported;
        } else {
            ++_counters.rx_malformed;
        }
        return;
    }
    const ArpRepr& arp = *parsed;
    if (arp.operation == wire::arp_op::request) {
        ++_counters.rx_request;
    } else {
        ++_counters.rx_reply;
    }
    if (!arp.sender_mac.is_unicast() || arp.sender_mac.is_zero() || arp.sender_ip.is_broadcast() ||
        arp.sender_ip.is_multicast() || arp.sender_ip.is_loopback()) {
        ++_counters.rx_bad_sender;
        return;
    }
    if (arp.sender_ip == _own_ip) {
        // Someone else uses our address (RFC 5227 2.4): count, and defend it at most once per interval.
        if (arp.sender_mac != _own_mac) {
            ++_counters.rx_conflict;
            const TimePoint now = _timers.current_time();
            if (!_last_defence || now - *_last_defence >= _config.defend_interval) {
                _last_defence = now;
                log::warn("arp: address conflict: {} claims {} (frame from {}); defending", arp.sender_mac,
                          _own_ip, frame_source);
                announce();
            }
        }
        return;
    }
    const bool for_us = arp.target_ip == _own_ip;
    // RFC 826 merge: refresh the sender if we know it; add it only if the packet is for us. An ARP probe
    // (sender IP 0.0.0.0, RFC 5227) teaches nothing.
    if (!arp.sender_ip.is_unspecified()) {
        auto it = _entries.find(arp.sender_ip);
        Entry* entry = it == _entries.end() ? nullptr : it->second.get();
        if (entry == nullptr && for_us) {
            entry = create(arp.sender_ip);
        }
        if (entry != nullptr) {
            confirm(*entry, arp.sender_mac);
        }
    }
    if (!for_us) {
        ++_counters.rx_not_for_us;
        return;
    }
    if (arp.operation == wire::arp_op::request) {
        ArpRepr reply{};
        reply.operation = wire::arp_op::reply;
        reply.sender_mac = _own_mac;
        reply.sender_ip = _own_ip;
        reply.target_mac = arp.sender_mac;
        reply.target_ip = arp.sender_ip;
        _transmitter.transmit_arp(reply, arp.sender_mac);
        ++_counters.tx_reply;
    }
}

std::optional<ArpCache::EntryInfo> ArpCache::lookup(Ipv4Address ip) const
{
    const auto it = _entries.find(ip);
    if (it == _entries.end()) {
        return std::nullopt;
    }
    return EntryInfo{it->second->mac, it->second->state, it->second->pending.size()};
}

}  // namespace cm::stack

// PcapLink: the card's network port, a libpcap handle on one interface (in development, a veth in a
// network namespace).
//
//   receive -> pcap_dispatch (non-blocking, up to `budget` frames) -> FrameHandler::on_frame
//   send    -> copy into a pre-allocated batch (no allocation per frame)
//   flush   -> pcap_inject each queued frame, in order
//
// What the capture passes: only frames for the card, `ether dst <card mac> or ether broadcast` (plus
// `ether multicast` when PcapLinkConfig::accept_multicast), optionally ANDed with an extra BPF filter. The
// filter runs in the kernel. Direction is PCAP_D_IN, so the card never sees the frames it injects itself.
// ARP needs only broadcast (requests) and unicast (replies), so multicast is off by default.
//
// Promiscuous mode is on: the card owns a MAC of its own, different from the kernel's MAC for the veth,
// and without promiscuous mode the interface would discard unicast frames addressed to the card.
//
// Thread rule: single-threaded, like every Link; all calls from the loop's thread.
// This header must not include <pcap.h>: nothing above link/ may see libpcap.
#pragma once

#include "base/expected.hpp"
#include "link/distinct_errors.hpp"
#include "link/link.hpp"
#include "link/tx_batch.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct pcap;  // libpcap's pcap_t, kept opaque

namespace cm::link {

struct PcapLinkConfig {
    /// Interface to open, e.g. "cm0" (the card's end of the veth).
    std::string interface;
    /// The card's own MAC address, as it appears on the wire.
    std::array<std::uint8_t, 6> card_mac{};
    /// Bytes captured per frame. Larger than 1514 on purpose: with segmentation offloads on the peer,
    /// frames longer than the MTU arrive; a frame captured shorter than it was is dropped and counted
    /// (rx_truncated), never handed to the stack cut short.
    int snaplen = 2048;
    /// Kernel capture buffer (the TPACKET_V3 ring), bytes.
    int buffer_bytes = 8 * 1024 * 1024;
    /// Optional extra BPF filter expression (pcap-filter(7) syntax), ANDed with the card filter.
    std::string extra_filter;
    /// Also pass multicast frames (IPv6 neighbour discovery, mDNS...). Not needed for IPv4 + ARP.
    bool accept_multicast = false;
    /// Largest frame send() accepts, and the size of each slot of the transmit batch.
    std::size_t max_frame = Link::default_max_frame;
    /// Frames send() queues before flush() must run.
    std::size_t tx_batch = Link::default_tx_batch;
};

/// The BPF expression (pcap-filter(7)) that passes only frames for the card.
[[nodiscard]] std::string card_filter_expression(const PcapLinkConfig& config);

class PcapLink final : public Link {
public:
    /// receive() calls refresh_stats() itself once every this many calls; see refresh_stats().
    static constexpr std::uint32_t stats_every_n_receives = 1024;

    /// Opens and activates the capture. Errors (no such device, permission denied, a bad filter...) come
    /// back as one line of text that names the interface.
    static cm::Expected<std::unique_ptr<PcapLink>, std::string> open(const PcapLinkConfig& config);

    ~PcapLink() override;
    PcapLink(const PcapLink&) = delete;
    PcapLink& operator=(const PcapLink&) = delete;

    std::size_t receive(FrameHandler& handler, std::size_t budget) override;
    bool send(std::span<const std::byte> frame) override;
    std::size_t flush() override;
    [[nodiscard]] int wait_fd() const override { return _fd; }
    [[nodiscard]] std::size_t max_frame() const override { return _tx.max_frame(); }
    [[nodiscard]] const LinkCounters& counters() const override { return _counters; }

    /// Reads pcap_stats() and brings rx_kernel_dropped up to date (frames the kernel ring dropped because
    /// we did not read fast enough). One getsockopt(); the loop should call it about once a second.
    /// receive() also calls it every stats_every_n_receives calls, so the counter never goes stale for long
    /// on a busy link.
    void refresh_stats() override;

    [[nodiscard]] const PcapLinkConfig& config() const { return _config; }

private:
    struct DispatchState;  // defined in pcap_link.cpp, with the pcap_dispatch callback
    PcapLink(PcapLinkConfig config, ::pcap* handle, int fd);
    void log_error_once(const char* what, const char* pcap_error);

    PcapLinkConfig _config;
    ::pcap* _pcap;
    int _fd;
    LinkCounters _counters;
    TxBatch _tx;

    std::uint32_t _receives_since_stats = 0;
    std::uint32_t _last_ps_drop = 0;
    DistinctErrors _errors;
};

}  // namespace cm::link

// PacketSocketLink: the card's network port on a plain AF_PACKET socket, for where libpcap cannot capture.
//
// libpcap 1.10 on Linux only captures through a memory-mapped packet ring (TPACKET_V2/V3, set up with
// SOL_PACKET socket options and SIOCETHTOOL). qemu-user 7.2 (Debian 12), which runs the aarch64 firmware
// image on the emulated card, implements none of those, so pcap_activate fails there. This link needs only
// what qemu-user translates: socket, bind (sockaddr_ll), SO_ATTACH_FILTER, recvfrom, send and interface
// ioctls. It is slower than the ring (one recvfrom per frame), which does not matter under emulation.
//
//   receive -> recvfrom(MSG_DONTWAIT | MSG_TRUNC) up to `budget` frames -> FrameHandler::on_frame
//   send    -> the transmit batch; flush -> one send() per frame on the bound socket
//
// The same frames pass as with PcapLink: the card filter (card_filter_expression, compiled by libpcap
// without a capture handle) runs in the kernel; the socket is bound with protocol 0 until the filter is
// attached, so nothing unfiltered is ever queued. Frames the card sent itself (PACKET_OUTGOING, or its own
// source MAC) are skipped. The interface is put in promiscuous mode (PACKET_ADD_MEMBERSHIP, or SIOCSIFFLAGS
// where that is missing, undone on close).
#pragma once

#include "base/expected.hpp"
#include "link/distinct_errors.hpp"
#include "link/link.hpp"
#include "link/pcap_link.hpp"
#include "link/tx_batch.hpp"

#include <memory>
#include <string>
#include <vector>

namespace cm::link {

class PacketSocketLink final : public Link {
public:
    /// Opens the socket on `config.interface`. `config.buffer_bytes` sizes the socket's receive buffer.
    static cm::Expected<std::unique_ptr<PacketSocketLink>, std::string> open(const PcapLinkConfig& config);

    ~PacketSocketLink() override;
    PacketSocketLink(const PacketSocketLink&) = delete;
    PacketSocketLink& operator=(const PacketSocketLink&) = delete;

    std::size_t receive(FrameHandler& handler, std::size_t budget) override;
    bool send(std::span<const std::byte> frame) override;
    std::size_t flush() override;
    [[nodiscard]] int wait_fd() const override { return _fd; }
    [[nodiscard]] std::size_t max_frame() const override { return _tx.max_frame(); }
    [[nodiscard]] const LinkCounters& counters() const override { return _counters; }
    /// PACKET_STATISTICS (drops since the last read) into rx_kernel_dropped; nothing where it is missing.
    void refresh_stats() override;

private:
    PacketSocketLink(PcapLinkConfig config, int fd, bool restore_promisc);
    void log_error_once(const char* what, int error);

    PcapLinkConfig _config;
    int _fd;
    bool _restore_promisc;  // we set IFF_PROMISC by ioctl and clear it on close
    bool _stats_available = true;
    LinkCounters _counters;
    std::vector<std::byte> _rx_buffer;  // one frame of snaplen bytes
    TxBatch _tx;
    DistinctErrors _errors;
};

}  // namespace cm::link

// Packet I/O: the boundary between the firmware and whatever carries its Ethernet frames.
//
// Implementations:
//   PcapLink       - the card's network port: libpcap capture, pcap_inject transmit (pcap_link.hpp)
//   PacketSocketLink - the same port on a plain AF_PACKET socket, where libpcap cannot capture (qemu-user)
//   MemoryLinkPair - two endpoints joined in memory, with seeded fault injection (memory_link.hpp)
//   PcapFileTap    - wraps any link and writes every frame it receives and sends to a .pcap file
//   ImpairedLink   - wraps any link and impairs both directions (loss, delay, rate ...) in user space
//
// Waking up: a link that holds frames back until a later time (the in-memory pair's delay, ImpairedLink)
// says when through next_wakeup(); the loop sleeps no longer than that, so held frames are received and
// sent when due even though no fd becomes readable.
//
// Batching: receive() hands the loop up to `budget` frames in one call; send() only queues, and nothing
// leaves until flush(), which the loop calls once per iteration. Links are single-threaded: every call
// comes from the loop's thread.
#pragma once

#include "base/clock.hpp"
#include "base/counters.hpp"

#include <cstddef>
#include <optional>
#include <span>

namespace cm::link {

#define CM_LINK_COUNTERS(X)                                                           \
    X(rx_frames, "frames received and delivered to the stack")                        \
    X(rx_bytes, "bytes in frames received")                                           \
    X(rx_truncated, "dropped: frame captured shorter than it was on the wire")        \
    X(rx_kernel_dropped, "frames the capture lost before we read them (pcap_stats)")  \
    X(rx_errors, "receive calls that failed")                                         \
    X(tx_frames, "frames transmitted")                                                \
    X(tx_bytes, "bytes in frames transmitted")                                        \
    X(tx_dropped_queue_full, "dropped: send() while the transmit batch was full")     \
    X(tx_dropped_too_large, "dropped: send() of a frame larger than the link's limit") \
    X(tx_errors, "dropped: the transmit call failed")
CM_DECLARE_COUNTERS(LinkCounters, CM_LINK_COUNTERS)

/// Receives frames from a link. `frame` is valid only for the duration of the call; copy what you keep.
class FrameHandler {
public:
    virtual ~FrameHandler() = default;
    virtual void on_frame(std::span<const std::byte> frame) = 0;
};

class Link {
public:
    /// Largest frame send() accepts: Ethernet header + 1500-byte MTU (no FCS), unless a link says otherwise.
    static constexpr std::size_t default_max_frame = 1514;
    /// How many frames send() queues before flush() must run.
    static constexpr std::size_t default_tx_batch = 256;

    virtual ~Link() = default;

    /// Delivers up to `budget` received frames to `handler`, in arrival order, and returns how many it
    /// delivered. Never blocks; 0 means nothing is ready now.
    virtual std::size_t receive(FrameHandler& handler, std::size_t budget) = 0;

    /// Queues a copy of `frame` for transmission. Returns false, and counts the drop, when the frame is
    /// larger than max_frame() or the batch is full. The caller keeps ownership of `frame`.
    virtual bool send(std::span<const std::byte> frame) = 0;

    /// Transmits every queued frame, in order; returns how many left. Failures are counted (tx_errors).
    virtual std::size_t flush() = 0;

    /// A file descriptor that polls readable when receive() has frames, or -1 when the link has none
    /// (the in-memory link: its users step it by hand).
    [[nodiscard]] virtual int wait_fd() const = 0;

    /// The earliest time at which a frame the link holds back becomes due (to receive() or to leave at
    /// flush()), possibly already past; nullopt when the link holds nothing back. A link that only waits
    /// on its fd keeps this default.
    [[nodiscard]] virtual std::optional<TimePoint> next_wakeup() const { return std::nullopt; }

    [[nodiscard]] virtual std::size_t max_frame() const { return default_max_frame; }
    /// A port with a kernel receive queue brings rx_kernel_dropped up to date (one system call; the loop
    /// calls it about once a second). Links without one do nothing.
    virtual void refresh_stats() {}

    [[nodiscard]] virtual const LinkCounters& counters() const = 0;
};

}  // namespace cm::link

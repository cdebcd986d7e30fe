// PcapFileTap: wraps any Link and writes every frame it receives and sends to a classic .pcap file, which
// tcpdump, tshark and Wireshark read.
//
//   receive -> inner.receive -> (write to file) -> handler
//   send    -> inner.send    -> (write to file, only if the inner link accepted the frame)
//   flush   -> inner.flush, then sync() the file buffer
//   wait_fd, next_wakeup, max_frame, counters -> the inner link's
//
// File format: the classic pcap format (not pcapng), written here without libpcap: global header with the
// nanosecond magic 0xa1b23c4d, version 2.4, snaplen 65535, link type 1 (Ethernet); one record per frame,
// timestamped from CLOCK_REALTIME when the tap saw it (a sent frame: when send() queued it, not when flush()
// put it on the wire). Frames longer than 65535 bytes are stored cut to 65535 with their real length.
//
// Writes go to a 64 KiB buffer, written out when it fills, on every flush() and sync(), and in the
// destructor, which also closes the file: a process that runs its destructors on SIGTERM leaves a complete
// file. A write error never reaches the datapath: it is counted, logged once, the file is cut back to the
// last whole record, and the tap stops writing (frames still pass through).
//
// Thread rule: single-threaded, like the link it wraps; `inner` must outlive the tap.
#pragma once

#include "base/counters.hpp"
#include "base/expected.hpp"
#include "link/link.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cm::link {

#define CM_TAP_COUNTERS(X)                                                              \
    X(frames_written, "frames written to the capture file")                             \
    X(bytes_written, "bytes written to the capture file, headers included")             \
    X(frames_cut, "frames longer than the file's snaplen, stored cut short")            \
    X(write_errors, "writes to the capture file that failed (the tap then stops)")      \
    X(frames_not_written, "dropped from the capture: lost in a failed write, or after it")
CM_DECLARE_COUNTERS(TapCounters, CM_TAP_COUNTERS)

class PcapFileTap final : public Link {
public:
    static constexpr std::uint32_t magic_nanoseconds = 0xa1b23c4d;
    static constexpr std::uint32_t snaplen = 65535;
    static constexpr std::uint32_t linktype_ethernet = 1;
    static constexpr std::size_t buffer_bytes = 64 * 1024;

    /// Creates (or truncates) `path` and writes the global header. Errors name the path and the reason.
    static cm::Expected<std::unique_ptr<PcapFileTap>, std::string> open(Link& inner, const std::string& path);

    /// Writes out what is buffered and closes the file.
    ~PcapFileTap() override;
    PcapFileTap(const PcapFileTap&) = delete;
    PcapFileTap& operator=(const PcapFileTap&) = delete;

    std::size_t receive(FrameHandler& handler, std::size_t budget) override;
    bool send(std::span<const std::byte> frame) override;
    std::size_t flush() override;
    [[nodiscard]] int wait_fd() const override { return _inner.wait_fd(); }
    [[nodiscard]] std::optional<TimePoint> next_wakeup() const override { return _inner.next_wakeup(); }
    [[nodiscard]] std::size_t max_frame() const override { return _inner.max_frame(); }
    [[nodiscard]] const LinkCounters& counters() const override { return _inner.counters(); }

    /// Writes the buffered records to the file (one write(2); no fsync).
    void sync();

    [[nodiscard]] const TapCounters& tap_counters() const { return _counters; }
    [[nodiscard]] const std::string& path() const { return _path; }

private:
    class Tee;  // the FrameHandler that writes, then forwards
    PcapFileTap(Link& inner, std::string path, int fd);
    void record(std::span<const std::byte> frame);
    void fail(int error);

    Link& _inner;
    std::string _path;
    int _fd;
    bool _failed = false;
    std::uint64_t _committed = 0;  // file offset just past the last whole record written
    std::vector<std::byte> _buffer;
    std::size_t _buffered_frames = 0;
    TapCounters _counters;
};

}  // namespace cm::link

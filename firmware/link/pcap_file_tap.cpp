#include "link/pcap_file_tap.hpp"

#include "base/log.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <unistd.h>

namespace cm::link {

namespace {

// pcap's headers, in the byte order of the machine that writes them (readers tell from the magic).
struct GlobalHeader {
    std::uint32_t magic;
    std::uint16_t version_major;
    std::uint16_t version_minor;
    std::int32_t thiszone;
    std::uint32_t sigfigs;
    std::uint32_t snaplen;
    std::uint32_t linktype;
};
static_assert(sizeof(GlobalHeader) == 24);

struct RecordHeader {
    std::uint32_t ts_sec;
    std::uint32_t ts_nsec;
    std::uint32_t incl_len;
    std::uint32_t orig_len;
};
static_assert(sizeof(RecordHeader) == 16);

/// Writes all of `data`, retrying short writes and EINTR. Returns 0 or an errno value.
int write_all(int fd, const std::byte* data, std::size_t size)
{
    while (size > 0) {
        const ssize_t n = ::write(fd, data, size);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno;
        }
        if (n == 0) {
            return EIO;
        }
        data += n;
        size -= static_cast<std::size_t>(n);
    }
    return 0;
}

}  // namespace

class PcapFileTap::Tee final : public FrameHandler {
public:
    Tee(PcapFileTap& tap, FrameHandler& next) : _tap(tap), _next(next) {}
    void on_frame(std::span<const std::byte> frame) override
    {
        _tap.record(frame);  // before the handler runs: a frame that crashes the stack is in the file
        _next.on_frame(frame);
    }

private:
    PcapFileTap& _tap;
    FrameHandler& _next;
};

cm::Expected<std::unique_ptr<PcapFileTap>, std::string> PcapFileTap::open(Link& inner, const std::string& path)
{
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return cm::Unexpected{fmt::format("pcap file '{}': cannot open: {}", path, std::strerror(errno))};
    }
    const GlobalHeader header{magic_nanoseconds, 2, 4, 0, 0, snaplen, linktype_ethernet};
    // Written at once, not buffered, so that a path we cannot write to fails here rather than later.
    const int error = write_all(fd, reinterpret_cast<const std::byte*>(&header), sizeof header);
    if (error != 0) {
        ::close(fd);
        return cm::Unexpected{fmt::format("pcap file '{}': cannot write header: {}", path, std::strerror(error))};
    }
    return std::unique_ptr<PcapFileTap>(new PcapFileTap(inner, path, fd));
}

PcapFileTap::PcapFileTap(Link& inner, std::string path, int fd)
    : _inner(inner), _path(std::move(path)), _fd(fd), _committed(sizeof(GlobalHeader))
{
    _buffer.reserve(buffer_bytes);
}

PcapFileTap::~PcapFileTap()
{
    sync();
    if (::close(_fd) != 0 && !_failed) {
        log::error("pcap file '{}': close failed: {}", _path, std::strerror(errno));
    }
}

std::size_t PcapFileTap::receive(FrameHandler& handler, std::size_t budget)
{
    Tee tee(*this, handler);
    return _inner.receive(tee, budget);
}

bool PcapFileTap::send(std::span<const std::byte> frame)
{
    if (!_inner.send(frame)) {
        return false;  // refused (and counted) by the inner link: it never leaves, so it is not recorded
    }
    record(frame);
    return true;
}

std::size_t PcapFileTap::flush()
{
    const std::size_t sent = _inner.flush();
    sync();
    return sent;
}

void PcapFileTap::record(std::span<const std::byte> frame)
{
    if (_failed) {
        _counters.frames_not_written++;
        return;
    }
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    const auto incl = static_cast<std::uint32_t>(std::min<std::size_t>(frame.size(), snaplen));
    if (incl < frame.size()) {
        _counters.frames_cut++;
    }
    const RecordHeader header{static_cast<std::uint32_t>(ts.tv_sec), static_cast<std::uint32_t>(ts.tv_nsec),
                              incl, static_cast<std::uint32_t>(frame.size())};
    if (_buffer.size() + sizeof header + incl > buffer_bytes) {
        sync();
        if (_failed) {
            _counters.frames_not_written++;
            return;
        }
    }
    const auto* h = reinterpret_cast<const std::byte*>(&header);
    _buffer.insert(_buffer.end(), h, h + sizeof header);
    _buffer.insert(_buffer.end(), frame.begin(), frame.begin() + incl);
    _buffered_frames++;
}

void PcapFileTap::sync()
{
    if (_failed || _buffer.empty()) {
        return;
    }
    const int error = write_all(_fd, _buffer.data(), _buffer.size());
    if (error != 0) {
        fail(error);
        return;
    }
    _committed += _buffer.size();
    _counters.frames_written += _buffered_frames;
    _counters.bytes_written += _buffer.size();
    _buffer.clear();
    _buffered_frames = 0;
}

void PcapFileTap::fail(int error)
{
    _failed = true;
    _counters.write_errors++;
    _counters.frames_not_written += _buffered_frames;
    _buffer.clear();
    _buffered_frames = 0;
    // A short write may have left half a record: cut the file back to the last whole one, so that readers
    // see a valid (shorter) capture. Best effort: a pipe or a full device cannot be truncated.
    const bool cut = ::ftruncate(_fd, static_cast<off_t>(_committed)) == 0;
    log::error("pcap file '{}': write failed: {}; {}; capture stopped, frames still pass through", _path,
               std::strerror(error), cut ? "file cut back to its last whole record" : "file may end mid-record");
}

}  // namespace cm::link

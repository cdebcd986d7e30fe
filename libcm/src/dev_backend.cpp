// The host driver's character device, /dev/cmN (hostdriver/, uapi in hostdriver/include/uapi/linux/cm.h):
// mmap of the card's bus memory, CM_IOC_ATTACH/DETACH, poll() for events.
//
// One file per queue pair. The driver's poll() says EPOLLIN while any queue pair *of that file* has events
// (eq_prod != the host's eq_cons: level-triggered on the ring itself) and EPOLLERR when one faulted or the
// card stopped; with one file per queue pair, each queue pair's fd wakes only its own thread. The file
// opened first holds the mapping (a mapping outlives the fd it came from, and the driver keeps the device
// alive while any file is open).
//
// libcm's notification contract (backend.hpp) wants an fd it can also make readable itself (cm_qp_poll and
// blocking calls re-arm the notification, and when entries are already ready they write the notification
// fd so the application's epoll wakes). The driver's fd cannot be written, so each queue pair gets an
// eventfd of libcm's own as notify_fd(), and the driver's file is event_fd(): libcm puts both in its epoll
// set and polls both when it sleeps. drain() clears only the eventfd: the driver's fd goes quiet by itself
// once libcm consumed the events.
//
// Doorbells: behind QEMU's ivshmem-doorbell the driver reports CM_INFO_F_DOORBELL and doorbell() is
// CM_IOC_DOORBELL on the queue pair's file (the card then need not poll it). An ivshmem-plain VM has none;
// the card polls the memory peer's queue pairs while a process has one (docs/bus.md, "The memory peer"),
// and doorbell() is a no-op.
#include "backend.hpp"
#include "cm/bus_abi.h"
#include "cmbus/layout.hpp"

#include <linux/cm.h>  // hostdriver/include/uapi (a private include directory of libcm)

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>


namespace cm::lib {
namespace {

class DevBackend final : public Backend {
public:
    ~DevBackend() override
    {
        for (std::uint32_t q = 0; q < _files.size(); ++q) {
            close_qp(q);
        }
        if (_base != nullptr) {
            ::munmap(_base, _size);
        }
        if (_fd >= 0) {
            ::close(_fd);
        }
    }

    int open(const std::string& path)
    {
        _path = path;
        _fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
        if (_fd < 0) {
            return errno == ENOENT || errno == ENXIO ? -ENODEV : -errno;
        }
        cm_info info{};
        if (::ioctl(_fd, CM_IOC_INFO, &info) != 0) {
            return errno == EIO ? -ENODEV : -errno;
        }
        if (info.map_size < CM_BUS_CTRL_SIZE || info.qp_count == 0 || info.qp_count > CM_BUS_MAX_QPS) {
            return -EPROTO;
        }
        _size = info.map_size;
        _has_doorbell = (info.flags & CM_INFO_F_DOORBELL) != 0;
        void* base = ::mmap(nullptr, _size, PROT_READ | PROT_WRITE, MAP_SHARED, _fd, 0);
        if (base == MAP_FAILED) {
            return -errno;
        }
        _base = static_cast<std::byte*>(base);
        cm_bus_ctrl ctrl;
        std::memcpy(&ctrl, _base, sizeof ctrl);
        std::string why;
        if (!bus::check_ctrl(ctrl, _size, why) || ctrl.qp_count != info.qp_count) {
            return -EPROTO;
        }
        _files.assign(ctrl.qp_count, -1);
        _events.assign(ctrl.qp_count, -1);
        return 0;
    }

    [[nodiscard]] std::byte* base() const override { return _base; }
    [[nodiscard]] std::uint64_t size() const override { return _size; }
    [[nodiscard]] std::uint32_t peer_id() const override { return CM_BUS_MEMORY_PEER; }
    [[nodiscard]] const std::string& path() const override { return _path; }

    int attach(std::uint32_t count, std::vector<std::uint32_t>& qps) override
    {
        const std::lock_guard lock(_mutex);
        for (std::uint32_t i = 0; i < count; ++i) {
            const int fd = ::open(_path.c_str(), O_RDWR | O_CLOEXEC);
            if (fd < 0) {
                return i > 0 ? 0 : -errno;
            }
            cm_attach a{};
            a.count = 1;
            if (::ioctl(fd, CM_IOC_ATTACH, &a) != 0 || a.attached != 1 || a.qps[0] >= _files.size() ||
                _files[a.qps[0]] >= 0) {
                const int rc = a.attached == 1 ? -EPROTO : (errno == EIO ? -ENODEV : -errno);
                ::close(fd);
                return i > 0 ? 0 : rc;
            }
            const int ev = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
            if (ev < 0) {
                const int rc = -errno;
                ::close(fd);
                return i > 0 ? 0 : rc;
            }
            _files[a.qps[0]] = fd;
            _events[a.qps[0]] = ev;
            qps.push_back(a.qps[0]);
        }
        return 0;
    }

    int detach(std::uint32_t qp) override
    {
        const std::lock_guard lock(_mutex);
        if (qp >= _files.size() || _files[qp] < 0) {
            return -EINVAL;
        }
        cm_detach d{qp, 0};
        const int rc = ::ioctl(_files[qp], CM_IOC_DETACH, &d) == 0 ? 0 : -errno;
        close_qp(qp);  // closing the file releases it anyway
        return rc;
    }

    [[nodiscard]] int notify_fd(std::uint32_t qp) const override { return qp < _events.size() ? _events[qp] : -1; }
    [[nodiscard]] int event_fd(std::uint32_t qp) const override { return qp < _files.size() ? _files[qp] : -1; }

    bool drain(std::uint32_t qp) override
    {
        std::uint64_t count = 0;
        return qp < _events.size() && _events[qp] >= 0 &&
               ::read(_events[qp], &count, sizeof count) == static_cast<ssize_t>(sizeof count);
    }

    void doorbell(std::uint32_t qp) override
    {
        if (_has_doorbell && qp < _files.size() && _files[qp] >= 0) {
            cm_doorbell d{qp, 0};
            (void)::ioctl(_files[qp], CM_IOC_DOORBELL, &d);  // EIO: the card stopped; poll() reports it
        }
    }

private:
    void close_qp(std::uint32_t q)
    {
        if (_files[q] >= 0) {
            ::close(_files[q]);
            _files[q] = -1;
        }
        if (_events[q] >= 0) {
            ::close(_events[q]);
            _events[q] = -1;
        }
    }

    std::mutex _mutex;
    std::string _path;
    int _fd = -1;
    std::byte* _base = nullptr;
    std::uint64_t _size = 0;
    bool _has_doorbell = false;  // CM_INFO_F_DOORBELL
    std::vector<int> _files;   // per queue pair: the driver's file it is attached through, or -1
    std::vector<int> _events;  // per queue pair: libcm's own eventfd (notify_fd)
};

}  // namespace

bool is_char_device(const std::string& path)
{
    struct stat st{};
    return ::stat(path.c_str(), &st) == 0 && S_ISCHR(st.st_mode);
}

int open_dev_backend(const std::string& path, std::unique_ptr<Backend>& out)
{
    auto backend = std::make_unique<DevBackend>();
    if (int rc = backend->open(path); rc != 0) {
        return rc;
    }
    out = std::move(backend);
    return 0;
}

}  // namespace cm::lib

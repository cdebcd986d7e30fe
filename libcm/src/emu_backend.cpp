// The emulated card's attach socket: QEMU's ivshmem-doorbell greeting, then ATTACH/DETACH requests.
#include "backend.hpp"
#include "cm/bus_abi.h"
#include "cmbus/layout.hpp"

#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace cm::lib {
namespace {

class EmuBackend final : public Backend {
public:
    ~EmuBackend() override
    {
        if (_base != nullptr) {
            ::munmap(_base, _size);
        }
        for (int fd : _card) {
            ::close(fd);
        }
        for (int fd : _own) {
            ::close(fd);
        }
        if (_sock >= 0) {
            ::close(_sock);
        }
    }

    int open(const std::string& path)
    {
        _path = path;
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        if (path.size() >= sizeof addr.sun_path) {
            return -ENAMETOOLONG;
        }
        std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
        _sock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (_sock < 0) {
            return -errno;
        }
        if (::connect(_sock, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
            return errno == ENOENT || errno == ECONNREFUSED ? -ENODEV : -errno;
        }
        std::int64_t value = 0;
        int fd = -1;
        if (int rc = receive(value, fd); rc != 0 || value != CM_BUS_IVSHMEM_PROTOCOL || fd >= 0) {
            return close_and(fd, rc != 0 ? rc : -EPROTO);
        }
        if (int rc = receive(value, fd); rc != 0 || value <= 0 || value > 0xffffffffLL || fd >= 0) {
            return close_and(fd, rc != 0 ? rc : -EPROTO);
        }
        _peer = static_cast<std::uint32_t>(value);
        if (int rc = receive(value, fd); rc != 0 || value != -1 || fd < 0) {
            return close_and(fd, rc != 0 ? rc : -EPROTO);
        }
        const int mem = fd;
        struct stat st{};
        if (fstat(mem, &st) != 0 || st.st_size < static_cast<off_t>(CM_BUS_CTRL_SIZE)) {
            return close_and(mem, -EPROTO);
        }
        _size = static_cast<std::uint64_t>(st.st_size);
        void* base = ::mmap(nullptr, _size, PROT_READ | PROT_WRITE, MAP_SHARED, mem, 0);
        ::close(mem);
        if (base == MAP_FAILED) {
            return -errno;
        }
        _base = static_cast<std::byte*>(base);
        cm_bus_ctrl ctrl;
        std::memcpy(&ctrl, _base, sizeof ctrl);
        std::string why;
        if (!bus::check_ctrl(ctrl, _size, why)) {
            return -EPROTO;
        }
        // The card's vectors (doorbells), then ours (notifications): one per queue pair each.
        for (std::uint32_t v = 0; v < 2 * ctrl.qp_count; ++v) {
            if (int rc = receive(value, fd); rc != 0 || fd < 0) {
                return close_and(fd, rc != 0 ? rc : -EPROTO);
            }
            const bool card = v < ctrl.qp_count;
            if (value != (card ? CM_BUS_CARD_PEER_ID : static_cast<std::int64_t>(_peer))) {
                return close_and(fd, -EPROTO);
            }
            (card ? _card : _own).push_back(fd);
        }
        for (int own : _own) {
            ::fcntl(own, F_SETFL, O_NONBLOCK);
        }
        return 0;
    }

    [[nodiscard]] std::byte* base() const override { return _base; }
    [[nodiscard]] std::uint64_t size() const override { return _size; }
    [[nodiscard]] std::uint32_t peer_id() const override { return _peer; }
    [[nodiscard]] const std::string& path() const override { return _path; }

    int attach(std::uint32_t count, std::vector<std::uint32_t>& qps) override
    {
        cm_bus_attach_msg reply{};
        if (int rc = request(CM_BUS_MSG_ATTACH, count, 0, reply); rc != 0) {
            return rc;
        }
        if (reply.status != 0) {
            return -static_cast<int>(reply.status);
        }
        if (reply.count == 0 || reply.count > count) {
            return -EPROTO;
        }
        for (std::uint32_t i = 0; i < reply.count; ++i) {
            if (reply.qps[i] >= _own.size()) {
                return -EPROTO;
            }
            qps.push_back(reply.qps[i]);
        }
        return 0;
    }

    int detach(std::uint32_t qp) override
    {
        cm_bus_attach_msg reply{};
        if (int rc = request(CM_BUS_MSG_DETACH, 1, qp, reply); rc != 0) {
            return rc;
        }
        return -static_cast<int>(reply.status);
    }

    [[nodiscard]] int notify_fd(std::uint32_t qp) const override { return qp < _own.size() ? _own[qp] : -1; }

    bool drain(std::uint32_t qp) override
    {
        std::uint64_t count = 0;
        return qp < _own.size() && ::read(_own[qp], &count, sizeof count) == static_cast<ssize_t>(sizeof count);
    }

    // cmfw closes the attach socket when it exits or dies: the hang-up is how a host notices at once.
    [[nodiscard]] int liveness_fd() const override { return _sock; }

    void doorbell(std::uint32_t qp) override
    {
        const std::uint64_t one = 1;
        if (qp < _card.size()) {
            (void)!::write(_card[qp], &one, sizeof one);
        }
    }

private:
    static int close_and(int fd, int rc)
    {
        if (fd >= 0) {
            ::close(fd);
        }
        return rc;
    }

    /// One greeting message: an int64 and at most one fd (-1 when none).
    int receive(std::int64_t& value, int& fd)
    {
        fd = -1;
        msghdr msg{};
        iovec iov{&value, sizeof value};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        const ssize_t n = ::recvmsg(_sock, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL);
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int))) {
                std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
            }
        }
        if (n != static_cast<ssize_t>(sizeof value) || (msg.msg_flags & MSG_CTRUNC) != 0) {
            return close_and(fd, n < 0 ? -errno : -EPROTO);
        }
        return 0;
    }

    int request(std::uint16_t type, std::uint32_t count, std::uint32_t qp, cm_bus_attach_msg& reply)
    {
        const std::lock_guard lock(_mutex);
        cm_bus_attach_msg msg{};
        msg.magic = CM_BUS_ATTACH_MAGIC;
        msg.type = type;
        msg.count = static_cast<std::uint16_t>(count);
        msg.host_pid = static_cast<std::uint32_t>(::getpid());
        msg.qps[0] = qp;
        if (::send(_sock, &msg, sizeof msg, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof msg)) {
            return -ENODEV;
        }
        if (::recv(_sock, &reply, sizeof reply, MSG_WAITALL) != static_cast<ssize_t>(sizeof reply)) {
            return -ENODEV;
        }
        if (reply.magic != CM_BUS_ATTACH_MAGIC || reply.type != (CM_BUS_MSG_REPLY | type) ||
            reply.count > CM_BUS_ATTACH_MAX) {
            return -EPROTO;
        }
        return 0;
    }

    std::mutex _mutex;  // one request at a time on the socket
    std::string _path;
    int _sock = -1;
    std::uint32_t _peer = 0;
    std::byte* _base = nullptr;
    std::uint64_t _size = 0;
    std::vector<int> _card;  // the card's eventfds: doorbell of queue pair v
    std::vector<int> _own;   // ours: notification of queue pair v
};

}  // namespace

int open_emu_backend(const std::string& socket_path, std::unique_ptr<Backend>& out)
{
    auto backend = std::make_unique<EmuBackend>();
    if (int rc = backend->open(socket_path); rc != 0) {
        return rc;
    }
    out = std::move(backend);
    return 0;
}

int default_device_path(std::string& out)
{
    if (const char* env = std::getenv("CM_DEVICE"); env != nullptr && *env != '\0') {
        out = env;
        return 0;
    }
    const char* run = std::getenv("CM_RUN_DIR");
    const std::string pattern = std::string(run != nullptr && *run != '\0' ? run : "/run/cm") + "/emu/*/bus.sock";
    glob_t g{};
    const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
    const std::size_t n = rc == 0 ? g.gl_pathc : 0;
    if (n == 1) {
        out = g.gl_pathv[0];
    }
    ::globfree(&g);
    if (n == 0 && is_char_device("/dev/cm0")) {
        out = "/dev/cm0";  // no emulated card here, but the host driver's first card (e.g. inside a VM)
        return 0;
    }
    return n == 1 ? 0 : (n == 0 ? -ENODEV : -EEXIST);
}

}  // namespace cm::lib

// How libcm reaches a card: "map the bus memory and get the notification fds". Everything after the mapping
// (rings, slots, connections: qp.cpp) is the same for every backend.
//   EmuBackend  the emulated card's attach socket (ivshmem-doorbell preamble, then ATTACH/DETACH requests)
//   DevBackend  /dev/cmN (hostdriver/): mmap of the BAR, ioctls to attach, poll() on the driver's file
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cm::lib {

class Backend {
public:
    virtual ~Backend() = default;
    [[nodiscard]] virtual std::byte* base() const = 0;
    [[nodiscard]] virtual std::uint64_t size() const = 0;
    [[nodiscard]] virtual std::uint32_t peer_id() const = 0;
    [[nodiscard]] virtual const std::string& path() const = 0;
    /// Attaches up to `count` queue pairs; their indices, or a negative errno. Thread-safe.
    virtual int attach(std::uint32_t count, std::vector<std::uint32_t>& qps) = 0;
    /// Thread-safe.
    virtual int detach(std::uint32_t qp) = 0;
    /// Readable when the card notified queue pair `qp`.
    [[nodiscard]] virtual int notify_fd(std::uint32_t qp) const = 0;
    /// A second fd to wait on beside notify_fd, or -1: the driver's file, readable while the queue pair has
    /// events (level-triggered on the ring) and EPOLLERR when it faulted or the card stopped. notify_fd is
    /// then libcm's own eventfd (libcm writes it to make cm_qp_fd readable).
    [[nodiscard]] virtual int event_fd(std::uint32_t /*qp*/) const { return -1; }
    /// Clears the notification of `qp` (after the fd polled readable); true if there was one.
    virtual bool drain(std::uint32_t qp) = 0;
    /// An fd that reports POLLRDHUP/POLLHUP when the card is gone (the emulated card's attach socket), or -1
    /// when the backend has none (then only the stopped heartbeat tells).
    [[nodiscard]] virtual int liveness_fd() const { return -1; }
    /// Rings the card's doorbell of queue pair `qp`.
    virtual void doorbell(std::uint32_t qp) = 0;
};

/// Connects to an emulated card's attach socket. A negative errno on failure.
int open_emu_backend(const std::string& socket_path, std::unique_ptr<Backend>& out);

/// Opens /dev/cmN (the host driver). A negative errno on failure.
int open_dev_backend(const std::string& path, std::unique_ptr<Backend>& out);
/// True for a character device (cm_device_open then uses open_dev_backend).
bool is_char_device(const std::string& path);

/// The device path cm_device_open(NULL) means: $CM_DEVICE, else the single <run dir>/emu/*/bus.sock
/// ($CM_RUN_DIR, default /run/cm). A negative errno (-ENODEV none, -EEXIST several) on failure.
int default_device_path(std::string& out);

}  // namespace cm::lib

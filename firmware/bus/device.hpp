// The emulated card's bus device: the bus memory (a shared-memory file, formatted at start), the attach
// socket host processes connect to, and the doorbells, as one EventSource of cmfw's loop (no threads).
//
//   host process --connect--> attach socket (UNIX stream, path-based: works across network namespaces)
//                <-- ivshmem-doorbell preamble: version, peer id, memory fd, card eventfds, own eventfds
//                --> ATTACH n  <-- queue pair indices          (cm_bus_attach_msg, see cm/bus_abi.h)
//   host writes card eventfd[q]  -> doorbell of queue pair q -> the loop wakes, poll() reads the ring
//   card writes peer eventfd[q]  -> the host's notification of queue pair q
//   socket EOF/HUP (exit or death) -> every queue pair of the peer is detached and reclaimed
//
// All fds (listening socket, peers' sockets, the card's doorbell eventfds) sit in one epoll set whose fd is
// this source's wait_fd(): the loop sleeps on it like on any other source.
#pragma once

#include "base/counters.hpp"
#include "base/expected.hpp"
#include "bus/echo.hpp"
#include "bus/engine.hpp"
#include "bus/fwload.hpp"
#include "core/event_loop.hpp"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace cm::bus {

struct BusDeviceConfig {
    std::string memory_path;      // the shared-memory file; "" = no bus
    std::string socket_path;      // the attach socket (replaced if it exists)
    std::uint64_t size = 0;       // bytes; 0: the file's size as created by cmemu
    LayoutParams layout;          // total_size is taken from the file / size
    bool echo = false;            // run the echo test service
    std::uint32_t memory_peer_qps = 0;  // queue pairs lent up front to CM_BUS_MEMORY_PEER (a VM's driver)
    // Behind ivshmem-plain those have no doorbells: while a process has one (or a release is pending) the
    // card looks at their rings at least this often (docs/bus.md, "The memory peer"). 0: only when something
    // else wakes the loop. A queue pair whose host rang its doorbell in its current lending (a VM behind
    // ivshmem-doorbell: libcm rings through the driver when the card asks) is not polled.
    Duration memory_peer_poll = std::chrono::microseconds(100);
    EngineConfig engine;
    // Firmware load over the bus (docs/bus.md): with a flash (cmfw --boot-flash, set by the boot ROM) the
    // memory gets a firmware-load window and images the host sends are written into the inactive slot.
    FwLoadConfig fwload;
};

class BusDevice final : public core::EventSource {
public:
    static Expected<std::unique_ptr<BusDevice>, std::string> create(const BusDeviceConfig& config, TimePoint now);
    ~BusDevice() override;
    BusDevice(const BusDevice&) = delete;
    BusDevice& operator=(const BusDevice&) = delete;

    std::size_t poll(TimePoint now) override;
    void flush() override { _engine->flush(); }
    [[nodiscard]] int wait_fd() const override { return _epoll_fd; }
    [[nodiscard]] std::optional<TimePoint> next_wakeup() const override;

    [[nodiscard]] BusEngine& engine() noexcept { return *_engine; }
    /// The firmware-load mailbox; nullptr when the card takes no firmware over the bus.
    [[nodiscard]] const FwLoadMailbox* fwload() const noexcept { return _fwload.get(); }
    void register_counters(CounterRegistry& registry) const
    {
        registry.add("bus", _engine->counters());
        registry.add("bus.fwload", _fwload ? _fwload->counters() : _no_fwload_counters);
    }
    /// Marks the memory stopped and closes every peer (cmfw is exiting).
    void stop();

private:
    struct Peer {
        int fd = -1;
        std::uint32_t id = 0;
        std::vector<int> vectors;      // eventfds: the card writes vector q to notify queue pair q
        std::vector<std::uint8_t> in;  // partial request bytes
    };

    BusDevice() = default;
    void accept_peers();
    void serve_peer(std::uint32_t id);
    void drop_peer(std::uint32_t id);
    bool handle_request(Peer& peer, const cm_bus_attach_msg& request);
    void notify(std::uint32_t qp);

    BusDeviceConfig _config;
    int _mem_fd = -1;
    void* _map = nullptr;
    std::size_t _size = 0;
    int _listen_fd = -1;
    int _epoll_fd = -1;
    std::vector<int> _doorbells;           // the card's eventfds, one per queue pair
    std::vector<int> _notify_fd;           // per queue pair: its owner's eventfd, or -1
    std::map<std::uint32_t, Peer> _peers;  // by peer id
    std::uint32_t _next_peer = 1;
    std::unique_ptr<BusEngine> _engine;
    std::unique_ptr<EchoService> _echo;
    std::unique_ptr<FwLoadMailbox> _fwload;
    TimePoint _last_poll{};
    bool _memory_peer_active = false;   // poll the memory peer's queue pairs on a timer
    // per queue pair: the generation (lending) of the memory peer's queue pair in which its host rang the
    // doorbell (0: never; generations start at 1). That host rings: no polling for that lending.
    std::vector<std::uint32_t> _rang_generation;
    [[nodiscard]] bool memory_peer_needs_poll() const;
    FwLoadCounters _no_fwload_counters;  // all zero: the names exist with or without a window
};

}  // namespace cm::bus

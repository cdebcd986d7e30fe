#include "bus/device.hpp"

#include "base/log.hpp"

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace cm::bus {
namespace {

// epoll tags: what kind of fd (high 32 bits) and which one (low 32 bits).
constexpr std::uint64_t tag_listen = 1;
constexpr std::uint64_t tag_peer = 2;
constexpr std::uint64_t tag_doorbell = 3;
constexpr std::uint64_t tag(std::uint64_t kind, std::uint32_t value) { return kind << 32 | value; }

std::string errno_text(const std::string& what)
{
    return what + ": " + std::strerror(errno);
}

/// One ivshmem-server message: a little-endian int64, with `fd` attached when >= 0.
bool send_message(int sock, std::int64_t value, int fd)
{
    msghdr msg{};
    iovec iov{&value, sizeof value};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
    if (fd >= 0) {
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
    }
    return ::sendmsg(sock, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof value);
}

bool epoll_add(int epoll_fd, int fd, std::uint64_t data, std::uint32_t events = EPOLLIN)
{
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) == 0;
}

void close_fd(int& fd)
{
    if (fd >= 0) {
        ::close(fd);
        fd = -1;
    }
}

}  // namespace

Expected<std::unique_ptr<BusDevice>, std::string> BusDevice::create(const BusDeviceConfig& config, TimePoint now)
{
    std::unique_ptr<BusDevice> d(new BusDevice());
    d->_config = config;
    d->_mem_fd = ::open(config.memory_path.c_str(), O_RDWR | O_CLOEXEC);
    if (d->_mem_fd < 0) {
        return Unexpected{errno_text("bus memory " + config.memory_path)};
    }
    struct stat st{};
    if (fstat(d->_mem_fd, &st) != 0) {
        return Unexpected{errno_text("fstat " + config.memory_path)};
    }
    std::uint64_t size = config.size != 0 ? config.size : static_cast<std::uint64_t>(st.st_size);
    if (config.size != 0 && ftruncate(d->_mem_fd, static_cast<off_t>(size)) != 0) {
        return Unexpected{errno_text("ftruncate " + config.memory_path)};
    }
    LayoutParams params = config.layout;
    params.total_size = size;
    params.fwload_size = config.fwload.flash_path.empty() ? 0 : kFwLoadWindowSize;
    std::string why;
    auto layout = compute_layout(params, why);
    if (!layout && params.fwload_size != 0) {
        // Too small a bus for the window: the bus still works, firmware is loaded some other way.
        log::warn("bus: no firmware-load window ({}): the host cannot load firmware over the bus", why);
        params.fwload_size = 0;
        layout = compute_layout(params, why);
    }
    if (!layout) {
        return Unexpected{"bus memory " + config.memory_path + " (" + std::to_string(size) + " bytes): " + why};
    }
    d->_size = size;
    d->_map = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, d->_mem_fd, 0);
    if (d->_map == MAP_FAILED) {
        d->_map = nullptr;
        return Unexpected{errno_text("mmap " + config.memory_path)};
    }
    d->_epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (d->_epoll_fd < 0) {
        return Unexpected{errno_text("epoll_create1")};
    }
    for (std::uint32_t q = 0; q < layout->qp_count; ++q) {
        const int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fd < 0) {
            return Unexpected{errno_text("eventfd")};
        }
        d->_doorbells.push_back(fd);
        if (!epoll_add(d->_epoll_fd, fd, tag(tag_doorbell, q))) {
            return Unexpected{errno_text("epoll_ctl")};
        }
    }
    d->_notify_fd.assign(layout->qp_count, -1);
    d->_rang_generation.assign(layout->qp_count, 0);

    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (config.socket_path.empty() || config.socket_path.size() >= sizeof addr.sun_path) {
        return Unexpected{"bus socket path '" + config.socket_path + "' is empty or too long"};
    }
    std::memcpy(addr.sun_path, config.socket_path.c_str(), config.socket_path.size() + 1);
    d->_listen_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (d->_listen_fd < 0) {
        return Unexpected{errno_text("socket")};
    }
    ::unlink(config.socket_path.c_str());
    if (::bind(d->_listen_fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(d->_listen_fd, 64) != 0) {
        return Unexpected{errno_text("bus socket " + config.socket_path)};
    }
    if (!epoll_add(d->_epoll_fd, d->_listen_fd, tag(tag_listen, 0))) {
        return Unexpected{errno_text("epoll_ctl")};
    }

    d->_engine = std::make_unique<BusEngine>(static_cast<std::byte*>(d->_map), *layout, config.engine, now);
    d->_engine->set_notify([dev = d.get()](std::uint32_t qp) { dev->notify(qp); });
    if (config.echo) {
        d->_echo = std::make_unique<EchoService>(*d->_engine);
    }
    if (layout->fwload_size != 0) {
        // The engine formatted (zeroed) the window with the rest; the mailbox only reads it from now on.
        d->_fwload = std::make_unique<FwLoadMailbox>(static_cast<std::byte*>(d->_map) + layout->fwload_offset,
                                                     layout->fwload_size, config.fwload, now);
    }
    // QEMU's ivshmem-plain never connects to the attach socket: a VM's driver takes these instead (bus_abi.h).
    for (std::uint32_t i = 0; i < config.memory_peer_qps; ++i) {
        if (!d->_engine->attach(CM_BUS_MEMORY_PEER)) {
            return Unexpected{"bus: cannot lend " + std::to_string(config.memory_peer_qps) + " queue pairs to the memory peer"};
        }
    }
    log::info("bus: {} bytes at {}: {} queue pairs x {} ring entries, {} slots of {} bytes ({} per queue pair), "
              "attach socket {}{}{}",
              size, config.memory_path, layout->qp_count, layout->ring_entries, layout->slot_count,
              layout->slot_size, layout->slots_per_qp, config.socket_path, config.echo ? ", echo service on" : "",
              d->_fwload ? fmt::format(", firmware-load window of {} KiB at {:#x} (flash {})", layout->fwload_size / 1024,
                                       layout->fwload_offset, config.fwload.flash_path)
                         : std::string());
    return d;
}

BusDevice::~BusDevice()
{
    while (!_peers.empty()) {
        drop_peer(_peers.begin()->first);
    }
    _engine.reset();
    _echo.reset();
    for (int& fd : _doorbells) {
        close_fd(fd);
    }
    if (_listen_fd >= 0) {
        close_fd(_listen_fd);
        ::unlink(_config.socket_path.c_str());
    }
    close_fd(_epoll_fd);
    if (_map != nullptr) {
        ::munmap(_map, _size);
    }
    close_fd(_mem_fd);
}

void BusDevice::stop()
{
    _engine->stop();
    while (!_peers.empty()) {
        drop_peer(_peers.begin()->first);
    }
}

std::size_t BusDevice::poll(TimePoint now)
{
    std::size_t work = 0;
    if (_memory_peer_active && now >= _last_poll + _config.memory_peer_poll) {
        ++_engine->counters().memory_peer_polls;  // (or something else woke the loop just as late)
    }
    std::array<epoll_event, 32> events{};
    const int n = epoll_wait(_epoll_fd, events.data(), static_cast<int>(events.size()), 0);
    for (int i = 0; i < n; ++i) {
        const std::uint64_t data = events[static_cast<std::size_t>(i)].data.u64;
        const auto value = static_cast<std::uint32_t>(data);
        switch (data >> 32) {
        case tag_listen:
            accept_peers();
            break;
        case tag_peer:
            serve_peer(value);
            break;
        case tag_doorbell: {
            std::uint64_t count = 0;
            if (::read(_doorbells[value], &count, sizeof count) == static_cast<ssize_t>(sizeof count)) {
                ++_engine->counters().doorbells;
                // Only the memory peer's host (a VM through QEMU's ivshmem-doorbell) rings a memory-peer queue
                // pair: attach-socket peers ring their own. From now on, this lending needs no polling.
                std::uint32_t generation = 0;
                if (value < _rang_generation.size() &&
                    (_engine->memory_peer_active(value, generation) || generation != 0)) {
                    ++_engine->counters().memory_peer_doorbells;
                    _rang_generation[value] = generation;
                }
            }
            break;
        }
        default:
            break;
        }
        ++work;
    }
    if (_fwload) {
        work += _fwload->poll(now);
    }
    work += _engine->poll(now);
    _last_poll = now;
    _memory_peer_active = _config.memory_peer_qps != 0 && _config.memory_peer_poll > Duration::zero() &&
                          memory_peer_needs_poll();
    return work;
}

bool BusDevice::memory_peer_needs_poll() const
{
    for (std::uint32_t q = 0; q < _rang_generation.size(); ++q) {
        std::uint32_t generation = 0;
        if (_engine->memory_peer_active(q, generation) && _rang_generation[q] != generation) {
            return true;  // a process (or a release) on it, and its host has not rung in this lending
        }
    }
    return false;
}

std::optional<TimePoint> BusDevice::next_wakeup() const
{
    std::optional<TimePoint> wake = _engine->next_wakeup();
    if (_fwload) {
        if (const auto fw = _fwload->next_wakeup(); fw && (!wake || *fw < *wake)) {
            wake = fw;
        }
    }
    if (_memory_peer_active) {
        // No doorbell comes from a VM behind ivshmem-plain: look at its rings again soon.
        const TimePoint poll = _last_poll + _config.memory_peer_poll;
        if (!wake || poll < *wake) {
            wake = poll;
        }
    }
    return wake;
}

void BusDevice::accept_peers()
{
    for (;;) {
        const int fd = ::accept4(_listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            return;
        }
        Peer peer;
        peer.fd = fd;
        peer.id = _next_peer++;
        bool ok = true;
        for (std::uint32_t q = 0; q < _doorbells.size() && ok; ++q) {
            const int vector = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
            ok = vector >= 0;
            if (ok) {
                peer.vectors.push_back(vector);
            }
        }
        // The ivshmem-doorbell server's greeting (QEMU docs/specs/ivshmem-spec.rst), see cm/bus_abi.h.
        ok = ok && send_message(fd, CM_BUS_IVSHMEM_PROTOCOL, -1) && send_message(fd, peer.id, -1) &&
             send_message(fd, -1, _mem_fd);
        for (std::size_t v = 0; ok && v < _doorbells.size(); ++v) {
            ok = send_message(fd, CM_BUS_CARD_PEER_ID, _doorbells[v]);
        }
        for (std::size_t v = 0; ok && v < peer.vectors.size(); ++v) {
            ok = send_message(fd, peer.id, peer.vectors[v]);
        }
        ok = ok && epoll_add(_epoll_fd, fd, tag(tag_peer, peer.id), EPOLLIN | EPOLLRDHUP);
        const std::uint32_t id = peer.id;
        _peers.emplace(id, std::move(peer));
        if (!ok) {
            log::warn("bus: peer {}: greeting failed: {}", id, std::strerror(errno));
            drop_peer(id);
            continue;
        }
        ++_engine->counters().peers_connected;
        log::debug("bus: peer {} connected", id);
    }
}

void BusDevice::serve_peer(std::uint32_t id)
{
    auto it = _peers.find(id);
    if (it == _peers.end()) {
        return;
    }
    Peer& peer = it->second;
    std::array<std::uint8_t, 512> buf{};
    for (;;) {
        const ssize_t n = ::recv(peer.fd, buf.data(), buf.size(), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            ++_engine->counters().peers_gone;
            drop_peer(id);
            return;
        }
        if (n < 0) {
            return;
        }
        peer.in.insert(peer.in.end(), buf.begin(), buf.begin() + n);
        while (peer.in.size() >= sizeof(cm_bus_attach_msg)) {
            cm_bus_attach_msg request{};
            std::memcpy(&request, peer.in.data(), sizeof request);
            peer.in.erase(peer.in.begin(), peer.in.begin() + sizeof request);
            if (!handle_request(peer, request)) {
                drop_peer(id);
                return;
            }
        }
    }
}

bool BusDevice::handle_request(Peer& peer, const cm_bus_attach_msg& request)
{
    cm_bus_attach_msg reply{};
    reply.magic = CM_BUS_ATTACH_MAGIC;
    reply.type = static_cast<std::uint16_t>(CM_BUS_MSG_REPLY | request.type);
    if (request.magic != CM_BUS_ATTACH_MAGIC) {
        ++_engine->counters().bad_attach_msgs;
        return false;  // not speaking our protocol at all: hang up
    }
    if (request.type == CM_BUS_MSG_ATTACH && request.count >= 1 && request.count <= CM_BUS_ATTACH_MAX) {
        for (std::uint32_t i = 0; i < request.count; ++i) {
            const auto qp = _engine->attach(peer.id);
            if (!qp) {
                break;
            }
            _notify_fd[*qp] = peer.vectors[*qp];
            reply.qps[reply.count++] = *qp;
        }
        if (reply.count == 0) {
            ++_engine->counters().attach_refused;
            reply.status = CM_BUS_ENOSPC;
        }
        log::debug("bus: peer {} (pid {}) attached {} queue pair(s)", peer.id, request.host_pid, reply.count);
    } else if (request.type == CM_BUS_MSG_DETACH && request.qps[0] < _notify_fd.size()) {
        if (_engine->detach(request.qps[0], peer.id)) {
            _notify_fd[request.qps[0]] = -1;
        } else {
            reply.status = CM_BUS_EINVAL;
        }
    } else {
        ++_engine->counters().bad_attach_msgs;
        reply.status = CM_BUS_EINVAL;
    }
    return ::send(peer.fd, &reply, sizeof reply, MSG_NOSIGNAL | MSG_DONTWAIT) == static_cast<ssize_t>(sizeof reply);
}

void BusDevice::drop_peer(std::uint32_t id)
{
    auto it = _peers.find(id);
    if (it == _peers.end()) {
        return;
    }
    const std::uint32_t reclaimed = _engine->detach_peer(id);
    for (std::size_t q = 0; q < _notify_fd.size(); ++q) {
        for (int vector : it->second.vectors) {
            if (_notify_fd[q] == vector) {
                _notify_fd[q] = -1;
            }
        }
    }
    for (int& fd : it->second.vectors) {
        close_fd(fd);
    }
    epoll_ctl(_epoll_fd, EPOLL_CTL_DEL, it->second.fd, nullptr);
    close_fd(it->second.fd);
    _peers.erase(it);
    log::debug("bus: peer {} gone, {} queue pair(s) reclaimed", id, reclaimed);
}

void BusDevice::notify(std::uint32_t qp)
{
    const std::uint64_t one = 1;
    if (qp < _notify_fd.size() && _notify_fd[qp] >= 0) {
        (void)!::write(_notify_fd[qp], &one, sizeof one);
    } else if (_config.memory_peer_qps != 0 && qp < _notify_fd.size() &&
               load_relaxed(_engine->qp_header(qp).owner_peer) == CM_BUS_MEMORY_PEER) {
        // A memory-peer queue pair belongs to no socket peer, but a VM behind QEMU's ivshmem-doorbell is one:
        // its vector qp is the guest's MSI-X interrupt for queue pair qp. Which peer is that VM is not known
        // (QEMU sends no requests), so every peer's vector qp is written: the others never read that vector
        // (qp is not theirs), an eventfd only counts.
        for (const auto& [id, peer] : _peers) {
            if (qp < peer.vectors.size()) {
                (void)!::write(peer.vectors[qp], &one, sizeof one);
            }
        }
    }
}

}  // namespace cm::bus

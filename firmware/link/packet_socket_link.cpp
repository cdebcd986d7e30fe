#include "link/packet_socket_link.hpp"

#include "base/log.hpp"

#include <fmt/core.h>
#include <pcap/pcap.h>

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace cm::link {

namespace {

/// Sets or clears IFF_PROMISC through the interface flags; false on failure.
bool set_promisc_flag(int fd, const std::string& ifname, bool on)
{
    ifreq ifr{};
    std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname.c_str());
    if (::ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) {
        return false;
    }
    const bool is_on = (ifr.ifr_flags & IFF_PROMISC) != 0;
    if (is_on == on) {
        return true;
    }
    ifr.ifr_flags = static_cast<short>(on ? (ifr.ifr_flags | IFF_PROMISC) : (ifr.ifr_flags & ~IFF_PROMISC));
    return ::ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
}

}  // namespace

cm::Expected<std::unique_ptr<PacketSocketLink>, std::string> PacketSocketLink::open(const PcapLinkConfig& config)
{
    const std::string& ifname = config.interface;
    auto fail = [&](std::string_view what, int error) {
        return cm::Unexpected{fmt::format("packet socket link on interface '{}': {}{}{}", ifname, what,
                                          error ? ": " : "", error ? std::strerror(error) : "")};
    };
    if (ifname.empty() || ifname.size() >= IFNAMSIZ) {
        return fail("bad interface name", 0);
    }
    if (config.max_frame == 0 || config.max_frame > 65535 || config.tx_batch == 0 || config.snaplen < 64) {
        return fail("bad configuration (max_frame 1..65535, tx_batch >= 1, snaplen >= 64)", 0);
    }
    // Protocol 0: the socket receives nothing until bind() names a protocol, after the filter is on.
    const int fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return fail(errno == EPERM ? "socket(AF_PACKET) needs CAP_NET_RAW" : "socket(AF_PACKET)", errno);
    }
    struct FdGuard {
        int fd;
        ~FdGuard()
        {
            if (fd >= 0) {
                ::close(fd);
            }
        }
    } guard{fd};

    ifreq ifr{};
    std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname.c_str());
    if (::ioctl(fd, SIOCGIFINDEX, &ifr) != 0) {
        return fail("no such interface", errno);
    }
    const int ifindex = ifr.ifr_ifindex;

    // The card's filter, compiled by libpcap for Ethernet without opening a capture. Frames the card sent
    // itself are also cut here (an AF_PACKET socket sees outgoing frames too).
    const std::string filter = fmt::format("({}) and not ether src {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                                           card_filter_expression(config), config.card_mac[0], config.card_mac[1],
                                           config.card_mac[2], config.card_mac[3], config.card_mac[4],
                                           config.card_mac[5]);
    pcap_t* dead = pcap_open_dead(DLT_EN10MB, config.snaplen);
    if (dead == nullptr) {
        return fail("pcap_open_dead failed", 0);
    }
    bpf_program program{};
    if (pcap_compile(dead, &program, filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
        std::string error = pcap_geterr(dead);
        pcap_close(dead);
        return cm::Unexpected{fmt::format("packet socket link on interface '{}': bad BPF filter \"{}\": {}", ifname,
                                          filter, error)};
    }
    static_assert(sizeof(bpf_insn) == sizeof(sock_filter), "libpcap's BPF instructions are the kernel's");
    sock_fprog fprog{static_cast<unsigned short>(program.bf_len), reinterpret_cast<sock_filter*>(program.bf_insns)};
    const int attached = ::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog);
    const int attach_errno = errno;
    pcap_freecode(&program);
    pcap_close(dead);
    if (attached != 0) {
        return fail("SO_ATTACH_FILTER", attach_errno);
    }
    if (config.buffer_bytes > 0) {
        // Best effort: SO_RCVBUFFORCE (root) ignores rmem_max; SO_RCVBUF is capped by it.
        if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &config.buffer_bytes, sizeof config.buffer_bytes) != 0) {
            (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &config.buffer_bytes, sizeof config.buffer_bytes);
        }
    }

    sockaddr_ll address{};
    address.sll_family = AF_PACKET;
    address.sll_protocol = htons(ETH_P_ALL);
    address.sll_ifindex = ifindex;
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
        return fail("bind", errno);
    }

    // Promiscuous: the card's MAC is not the interface's. The membership form is undone by the kernel when
    // the socket closes; the flag form (where the membership is missing, e.g. under qemu-user) by us.
    bool restore_promisc = false;
    packet_mreq mreq{};
    mreq.mr_ifindex = ifindex;
    mreq.mr_type = PACKET_MR_PROMISC;
    if (::setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof mreq) != 0) {
        ifreq flags{};
        std::snprintf(flags.ifr_name, sizeof flags.ifr_name, "%s", ifname.c_str());
        const bool was_on = ::ioctl(fd, SIOCGIFFLAGS, &flags) == 0 && (flags.ifr_flags & IFF_PROMISC) != 0;
        if (!set_promisc_flag(fd, ifname, true)) {
            return fail("cannot enable promiscuous mode", errno);
        }
        restore_promisc = !was_on;
    }
    log::info("packet socket link on interface '{}' open: filter \"{}\", snaplen {}", ifname, filter, config.snaplen);
    guard.fd = -1;
    return std::unique_ptr<PacketSocketLink>(new PacketSocketLink(config, fd, restore_promisc));
}

PacketSocketLink::PacketSocketLink(PcapLinkConfig config, int fd, bool restore_promisc)
    : _config(std::move(config)),
      _fd(fd),
      _restore_promisc(restore_promisc),
      _rx_buffer(static_cast<std::size_t>(_config.snaplen)),
      _tx(_config.tx_batch, _config.max_frame)
{
}

PacketSocketLink::~PacketSocketLink()
{
    if (_restore_promisc) {
        (void)set_promisc_flag(_fd, _config.interface, false);
    }
    ::close(_fd);
}

std::size_t PacketSocketLink::receive(FrameHandler& handler, std::size_t budget)
{
    std::size_t delivered = 0;
    while (delivered < budget) {
        sockaddr_ll from{};
        socklen_t from_len = sizeof from;
        const ssize_t n = ::recvfrom(_fd, _rx_buffer.data(), _rx_buffer.size(), MSG_DONTWAIT | MSG_TRUNC,
                                     reinterpret_cast<sockaddr*>(&from), &from_len);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                _counters.rx_errors++;
                log_error_once("recvfrom", errno);
            }
            break;
        }
        if (from.sll_pkttype == PACKET_OUTGOING) {
            continue;  // our own transmission, looped back to the socket
        }
        if (static_cast<std::size_t>(n) > _rx_buffer.size()) {
            _counters.rx_truncated++;  // MSG_TRUNC: n is the frame's real length
            continue;
        }
        _counters.rx_frames++;
        _counters.rx_bytes += static_cast<std::uint64_t>(n);
        delivered++;
        handler.on_frame({_rx_buffer.data(), static_cast<std::size_t>(n)});
    }
    return delivered;
}

bool PacketSocketLink::send(std::span<const std::byte> frame)
{
    return _tx.push(frame, _counters);
}

std::size_t PacketSocketLink::flush()
{
    return _tx.drain(_counters, [this](std::span<const std::byte> frame) {
        const ssize_t n = ::send(_fd, frame.data(), frame.size(), MSG_DONTWAIT);
        if (n < 0 || static_cast<std::size_t>(n) != frame.size()) {
            log_error_once("send", n < 0 ? errno : EMSGSIZE);
            return false;
        }
        return true;
    });
}

void PacketSocketLink::refresh_stats()
{
    if (!_stats_available) {
        return;
    }
    tpacket_stats stats{};
    socklen_t len = sizeof stats;
    if (::getsockopt(_fd, SOL_PACKET, PACKET_STATISTICS, &stats, &len) != 0) {
        _stats_available = false;  // e.g. qemu-user: rx_kernel_dropped stays 0, said once
        log::info("packet socket link on interface '{}': no PACKET_STATISTICS ({}): kernel drops are not counted",
                  _config.interface, std::strerror(errno));
        return;
    }
    _counters.rx_kernel_dropped += stats.tp_drops;  // the kernel resets the counts on every read
}

void PacketSocketLink::log_error_once(const char* what, int error)
{
    std::string message = fmt::format("packet socket link on interface '{}': {} failed: {}", _config.interface, what,
                                      std::strerror(error));
    if (_errors.first_time(message)) {
        log::error("{} (logged once; further failures are only counted)", message);
    }
}

}  // namespace cm::link

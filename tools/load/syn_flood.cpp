// cm-synflood: sends TCP SYNs with spoofed sources at a paced rate from an interface, to test a TCP stack
// under a SYN flood (RFC 4987). Frames are built with cm's wire library and sent in batches with
// sendmmsg() on an AF_PACKET socket, so one core reaches several hundred thousand SYN/s.
//
//   cm-synflood --interface cmc1234 --dst-ip 198.18.0.2 --dst-mac 02:.. --dst-port 7 --rate 60000 --duration 5
//
// Sources are random addresses in --src-net with random ports and ISNs; each SYN carries the options a Linux
// client sends (MSS, SACK-permitted, timestamps, window scale) so the target must answer as it would a real
// client (SYN cookies included). It prints what it sent and the rate it achieved. Use it only against
// addresses in namespaces you created: it does what its name says.
#include "wire/address.hpp"
#include "wire/ethernet.hpp"
#include "wire/ipv4.hpp"
#include "wire/tcp.hpp"

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

using namespace cm::wire;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t frame_len = 14 + 20 + 40;  // Ethernet + IPv4 + TCP with 20 bytes of options

struct Options {
    std::string interface;
    std::string dst_ip_text;
    std::string dst_mac_text;
    std::uint16_t dst_port = 7;
    std::string src_net_text = "198.18.128.0/17";
    double rate = 50000;
    double duration = 5;
    std::size_t batch = 64;
    std::uint64_t seed = 1;
};

int fail(const std::string& message)
{
    fmt::print(stderr, "cm-synflood: {}\n", message);
    return 1;
}

}  // namespace

int main(int argc, char** argv)
{
    Options o;
    CLI::App app{"Send paced TCP SYNs with spoofed sources (SYN-flood test tool).", "cm-synflood"};
    app.add_option("--interface", o.interface, "interface to send from")->required();
    app.add_option("--dst-ip", o.dst_ip_text, "target IPv4 address")->required();
    app.add_option("--dst-mac", o.dst_mac_text, "target (or next-hop) MAC address")->required();
    app.add_option("--dst-port", o.dst_port, "target TCP port")->capture_default_str();
    app.add_option("--src-net", o.src_net_text, "spoofed sources are drawn from this CIDR")->capture_default_str();
    app.add_option("--rate", o.rate, "SYNs per second")->check(CLI::Range(1.0, 1e8))->capture_default_str();
    app.add_option("--duration", o.duration, "seconds to run")->check(CLI::Range(0.01, 3600.0))->capture_default_str();
    app.add_option("--batch", o.batch, "frames per sendmmsg")->check(CLI::Range(1, 256))->capture_default_str();
    app.add_option("--seed", o.seed, "random seed (sources, ports, ISNs)")->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    const auto dst_ip = Ipv4Address::parse(o.dst_ip_text);
    const auto dst_mac = MacAddress::parse(o.dst_mac_text);
    const auto src_net = Ipv4Cidr::parse(o.src_net_text);
    if (!dst_ip || !dst_mac || !src_net) {
        return fail("bad --dst-ip, --dst-mac or --src-net");
    }
    const int fd = ::socket(AF_PACKET, SOCK_RAW, 0);  // protocol 0: send only, receive nothing
    if (fd < 0) {
        return fail(fmt::format("socket(AF_PACKET): {} (needs CAP_NET_RAW)", std::strerror(errno)));
    }
    ifreq ifr{};
    std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", o.interface.c_str());
    if (::ioctl(fd, SIOCGIFINDEX, &ifr) != 0) {
        return fail(fmt::format("interface '{}': {}", o.interface, std::strerror(errno)));
    }
    const int ifindex = ifr.ifr_ifindex;
    if (::ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) {
        return fail(fmt::format("interface '{}' has no MAC: {}", o.interface, std::strerror(errno)));
    }
    MacAddress src_mac{};
    std::memcpy(src_mac.octets.data(), ifr.ifr_hwaddr.sa_data, 6);
    const int one = 1;
    ::setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);  // best effort: skip the qdisc
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_ifindex = ifindex;
    to.sll_halen = 6;
    std::memcpy(to.sll_addr, dst_mac->octets.data(), 6);

    std::mt19937_64 rng(o.seed);
    const std::uint32_t host_mask = src_net->prefix_len >= 32 ? 0 : ~std::uint32_t{0} >> src_net->prefix_len;
    std::vector<std::array<std::byte, frame_len>> frames(o.batch);
    std::vector<iovec> iov(o.batch);
    std::vector<mmsghdr> msgs(o.batch);

    // Fills frame i with a fresh SYN from a random source.
    const auto build = [&](std::size_t i) {
        TcpRepr syn{};
        syn.source_port = static_cast<std::uint16_t>(1024 + rng() % 64000);
        syn.destination_port = o.dst_port;
        syn.sequence = SeqNumber(static_cast<std::uint32_t>(rng()));
        syn.flags = tcp_flags::syn;
        syn.window = 64240;
        syn.mss = 1460;
        syn.sack_permitted = true;
        syn.timestamps = TcpTimestamps{static_cast<std::uint32_t>(rng()), 0};
        syn.window_scale = 7;
        const Ipv4Address src{src_net->network().value | (static_cast<std::uint32_t>(rng()) & host_mask)};
        Ipv4Repr ip{};
        ip.source = src;
        ip.destination = *dst_ip;
        ip.protocol = ip_protocol::tcp;
        ip.payload_len = static_cast<std::uint16_t>(syn.buffer_len());
        auto& f = frames[i];
        EthernetRepr{*dst_mac, src_mac, ethertype::ipv4}.emit(f);
        ip.emit(std::span(f).subspan(14, 20));
        syn.emit(std::span(f).subspan(34, syn.buffer_len()), src, *dst_ip);
        iov[i] = iovec{f.data(), 34 + syn.buffer_len()};
        msgs[i] = mmsghdr{};
        msgs[i].msg_hdr.msg_name = &to;
        msgs[i].msg_hdr.msg_namelen = sizeof to;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    };

    const auto start = Clock::now();
    const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration));
    std::uint64_t sent = 0;
    std::uint64_t errors = 0;
    for (auto now = start; now < end; now = Clock::now()) {
        // Pacing: the number due by now minus what went; sleep a little when ahead.
        const double elapsed = std::chrono::duration<double>(now - start).count();
        const auto due = static_cast<std::uint64_t>(elapsed * o.rate);
        if (due <= sent) {
            std::this_thread::sleep_for(std::chrono::microseconds(50));
            continue;
        }
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(due - sent, o.batch));
        for (std::size_t i = 0; i < n; ++i) {
            build(i);
        }
        const int r = ::sendmmsg(fd, msgs.data(), static_cast<unsigned>(n), 0);
        if (r < 0) {
            ++errors;
            if (errors == 1) {
                fmt::print(stderr, "cm-synflood: sendmmsg: {}\n", std::strerror(errno));
            }
            std::this_thread::sleep_for(std::chrono::microseconds(100));
            continue;
        }
        sent += static_cast<std::uint64_t>(r);
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    fmt::print("sent={} seconds={:.3f} rate={:.0f} send_errors={}\n", sent, seconds, sent / seconds, errors);
    ::close(fd);
    return 0;
}

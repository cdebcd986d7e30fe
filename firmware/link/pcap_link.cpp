#include "link/pcap_link.hpp"

#include "base/log.hpp"

#include <fmt/core.h>
#include <pcap/pcap.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <utility>

namespace cm::link {

namespace {

std::string mac_text(const std::array<std::uint8_t, 6>& mac)
{
    return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", mac[0], mac[1], mac[2], mac[3], mac[4],
                       mac[5]);
}

/// Closes a pcap handle unless released: open() has several ways to fail after pcap_create.
struct HandleGuard {
    pcap_t* handle;
    ~HandleGuard()
    {
        if (handle != nullptr) {
            pcap_close(handle);
        }
    }
    pcap_t* release() { return std::exchange(handle, nullptr); }
};

}  // namespace

std::string card_filter_expression(const PcapLinkConfig& config)
{
    std::string filter = fmt::format("ether dst {} or ether broadcast", mac_text(config.card_mac));
    if (config.accept_multicast) {
        filter += " or ether multicast";
    }
    if (!config.extra_filter.empty()) {
        filter = fmt::format("({}) and ({})", filter, config.extra_filter);
    }
    return filter;
}

struct PcapLink::DispatchState {
    PcapLink* link;
    FrameHandler* handler;
    std::size_t delivered;

    static void on_packet(u_char* user, const pcap_pkthdr* header, const u_char* bytes)
    {
        auto* state = reinterpret_cast<DispatchState*>(user);
        LinkCounters& counters = state->link->_counters;
        if (header->caplen < header->len) {
            // Cut short by the snaplen: a frame the stack cannot trust. Drop it, visibly.
            counters.rx_truncated++;
            return;
        }
        counters.rx_frames++;
        counters.rx_bytes += header->caplen;
        state->delivered++;
        state->handler->on_frame({reinterpret_cast<const std::byte*>(bytes), header->caplen});
    }
};

cm::Expected<std::unique_ptr<PcapLink>, std::string> PcapLink::open(const PcapLinkConfig& config)
{
    const std::string& ifname = config.interface;
    auto fail = [&](std::string_view what, std::string_view detail) {
        return cm::Unexpected{fmt::format("pcap link on interface '{}': {}{}{}", ifname, what,
                                          detail.empty() ? "" : ": ", detail)};
    };
    if (ifname.empty()) {
        return fail("no interface name given", "");
    }
    if (config.max_frame == 0 || config.max_frame > 65535 || config.tx_batch == 0) {
        return fail("bad configuration", "max_frame must be 1..65535 and tx_batch at least 1");
    }

    char errbuf[PCAP_ERRBUF_SIZE] = {};
    HandleGuard guard{pcap_create(ifname.c_str(), errbuf)};
    if (guard.handle == nullptr) {
        return fail("pcap_create failed", errbuf);
    }
    pcap_t* p = guard.handle;
    // Options set before activation only fail on an already-activated handle; checked for completeness.
    if (pcap_set_immediate_mode(p, 1) != 0 || pcap_set_snaplen(p, config.snaplen) != 0 ||
        pcap_set_buffer_size(p, config.buffer_bytes) != 0 || pcap_set_promisc(p, 1) != 0) {
        return fail("setting capture options failed", pcap_geterr(p));
    }

    const int status = pcap_activate(p);
    if (status < 0) {
        // pcap_statustostr names the class of failure ("No such device exists", "permission denied");
        // pcap_geterr has the detail, when there is one.
        std::string detail = pcap_geterr(p);
        const std::string kind = pcap_statustostr(status);
        if (detail == kind) {
            detail.clear();
        }
        std::string what = fmt::format("pcap_activate failed ({})", kind);
        if (status == PCAP_ERROR_PERM_DENIED || status == PCAP_ERROR_PROMISC_PERM_DENIED) {
            what += " - capturing needs CAP_NET_RAW (run as root or in a namespace you own)";
        }
        return fail(what, detail);
    }
    if (status > 0) {
        log::warn("pcap link on interface '{}': pcap_activate warning ({}): {}", ifname,
                  pcap_statustostr(status), pcap_geterr(p));
    }

    if (pcap_datalink(p) != DLT_EN10MB) {
        return fail("not an Ethernet interface", fmt::format("link type {}", pcap_datalink(p)));
    }
    if (pcap_setnonblock(p, 1, errbuf) != 0) {
        return fail("pcap_setnonblock failed", errbuf);
    }
    if (pcap_setdirection(p, PCAP_D_IN) != 0) {
        return fail("pcap_setdirection(PCAP_D_IN) failed", pcap_geterr(p));
    }

    const std::string filter = card_filter_expression(config);
    bpf_program program{};
    if (pcap_compile(p, &program, filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
        return fail(fmt::format("bad BPF filter \"{}\"", filter), pcap_geterr(p));
    }
    const int set = pcap_setfilter(p, &program);
    pcap_freecode(&program);
    if (set != 0) {
        return fail("pcap_setfilter failed", pcap_geterr(p));
    }

    const int fd = pcap_get_selectable_fd(p);
    if (fd < 0) {
        return fail("no selectable file descriptor", "");
    }
    log::info("pcap link on interface '{}' open: card mac {}, filter \"{}\", snaplen {}", ifname,
              mac_text(config.card_mac), filter, config.snaplen);
    return std::unique_ptr<PcapLink>(new PcapLink(config, guard.release(), fd));
}

PcapLink::PcapLink(PcapLinkConfig config, ::pcap* handle, int fd)
    : _config(std::move(config)),
      _pcap(handle),
      _fd(fd),
      _tx(_config.tx_batch, _config.max_frame)
{
}

PcapLink::~PcapLink()
{
    pcap_close(_pcap);
}

std::size_t PcapLink::receive(FrameHandler& handler, std::size_t budget)
{
    if (++_receives_since_stats >= stats_every_n_receives) {
        refresh_stats();
    }
    if (budget == 0) {
        return 0;  // pcap_dispatch would read "0" as "no limit"
    }
    DispatchState state{this, &handler, 0};
    const int cnt = static_cast<int>(std::min<std::size_t>(budget, INT_MAX));
    const int n = pcap_dispatch(_pcap, cnt, &DispatchState::on_packet, reinterpret_cast<u_char*>(&state));
    if (n == PCAP_ERROR) {
        _counters.rx_errors++;
        log_error_once("pcap_dispatch", pcap_geterr(_pcap));
    }
    // n == PCAP_ERROR_BREAK only after pcap_breakloop, which nobody calls; n >= 0 counts truncated frames
    // too, so the number delivered is our own count.
    return state.delivered;
}

bool PcapLink::send(std::span<const std::byte> frame)
{
    return _tx.push(frame, _counters);
}

// One pcap_inject per frame: libpcap has no batched transmit. On Linux pcap_inject is a send() on the
// capture's AF_PACKET socket, so each frame is one syscall plus a trip through the interface's qdisc and,
// on a veth, through the peer's receive path (which is where most of the time goes).
// Measured on the development machine (veth in a namespace, 60-byte frames, batches of 256; the hidden
// test `cm_link_tests "[bench]"`): pcap_inject ~2.8-2.9 us/frame, one sendmmsg() per batch on
// pcap_get_selectable_fd() ~2.8 us/frame: only 3-7% better, so not worth leaving libpcap's API for now.
//   - sendmmsg() on the pcap fd works (the socket is bound to the interface) if syscall count ever matters,
//     e.g. on a real NIC where the peer does not run on our CPU.
//   - setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, 1) skips the qdisc. Do NOT turn it on by default: it
//     also bypasses `tc netem` on the card's side of the veth, which the lossy-link tests rely on.
//   - PACKET_TX_RING (an mmap'ed transmit ring, one syscall to kick it) is the step after sendmmsg.
std::size_t PcapLink::flush()
{
    return _tx.drain(_counters, [this](std::span<const std::byte> frame) {
        const int n = pcap_inject(_pcap, frame.data(), frame.size());
        if (n < 0 || static_cast<std::size_t>(n) != frame.size()) {
            log_error_once("pcap_inject", n < 0 ? pcap_geterr(_pcap) : "short write");
            return false;
        }
        return true;
    });
}

void PcapLink::refresh_stats()
{
    _receives_since_stats = 0;
    pcap_stat stats{};
    if (pcap_stats(_pcap, &stats) != 0) {
        log_error_once("pcap_stats", pcap_geterr(_pcap));
        return;
    }
    // ps_drop is cumulative since open and 32 bits wide: add the difference, modulo 2^32.
    const std::uint32_t drop = stats.ps_drop;
    _counters.rx_kernel_dropped += static_cast<std::uint32_t>(drop - _last_ps_drop);
    _last_ps_drop = drop;
}

void PcapLink::log_error_once(const char* what, const char* pcap_error)
{
    std::string message = fmt::format("pcap link on interface '{}': {} failed: {}", _config.interface, what,
                                      pcap_error);
    if (_errors.first_time(message)) {
        log::error("{} (logged once; further failures are only counted)", message);
    }
}

}  // namespace cm::link

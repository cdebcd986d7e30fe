// PcapLink against a real veth pair, in a network namespace the test creates and always deletes.
//
// The parent (the Catch2 process) creates namespace cmtest-link-<pid> with veth cml<pid>c (the card's
// port) and cml<pid>p (its peer), then forks. The child enters the namespace with setns(2), runs every
// check with plain code (no Catch2 in the child: it must not return into the test runner) and reports
// through its exit status; the parent deletes the namespace whatever happened. Needs root; skipped
// otherwise.
#include "link/pcap_link.hpp"

#include "test_frames.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace cm;
using namespace cm::link;
using namespace cm::link::test;

namespace {

constexpr Mac card_mac{0x02, 0xc0, 0xff, 0xee, 0x00, 0x01};
constexpr Mac peer_mac{0x02, 0xc0, 0xff, 0xee, 0x00, 0x02};
constexpr Mac other_mac{0x02, 0xc0, 0xff, 0xee, 0x00, 0x99};
constexpr Mac multicast_mac{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01};

bool run(const std::string& cmd)
{
    return std::system(cmd.c_str()) == 0;
}

/// Creates the namespace and its veth pair; deletes the namespace (and with it the veths) when destroyed.
struct TestNamespace {
    std::string name = "cmtest-link-" + std::to_string(getpid());
    std::string card_if = "cml" + std::to_string(getpid()) + "c";
    std::string peer_if = "cml" + std::to_string(getpid()) + "p";
    bool created = false;
    std::string error;

    TestNamespace()
    {
        run("ip netns del " + name + " 2>/dev/null");  // a leftover from a killed run with the same pid
        if (!run("ip netns add " + name)) {
            error = "ip netns add " + name + " failed";
            return;
        }
        created = true;
        const std::string in = "ip -n " + name + " ";
        // MTU 9000 on both ends so that a frame longer than the card's snaplen can be sent.
        if (!run(in + "link add " + card_if + " mtu 9000 type veth peer name " + peer_if + " mtu 9000") ||
            !run(in + "link set " + card_if + " up") || !run(in + "link set " + peer_if + " up") ||
            !run(in + "link set lo up")) {
            error = "creating the veth pair in " + name + " failed";
        }
    }
    ~TestNamespace()
    {
        if (created) {
            run("ip netns del " + name);
        }
    }
    TestNamespace(const TestNamespace&) = delete;
    TestNamespace& operator=(const TestNamespace&) = delete;
};

bool enter(const TestNamespace& ns)
{
    const int nsfd = ::open(("/run/netns/" + ns.name).c_str(), O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) {
        return false;
    }
    const bool ok = setns(nsfd, CLONE_NEWNET) == 0;
    ::close(nsfd);
    return ok;
}

// ---- the child: plain code, reports by exit status -------------------------------------------------------

#define EXPECT(cond, code)                                                                               \
    do {                                                                                                 \
        if (!(cond)) {                                                                                   \
            std::fprintf(stderr, "pcap link test (child): check failed at line %d: %s\n", __LINE__, #cond); \
            return code;                                                                                 \
        }                                                                                                \
    } while (0)

using Wall = std::chrono::steady_clock;  // real time for the real link (cm::Clock is not needed here)

/// A raw AF_PACKET socket on the peer's end: what "the network" sends and sees.
struct RawSocket {
    int fd = -1;
    int ifindex = 0;
    ~RawSocket()
    {
        if (fd >= 0) {
            ::close(fd);
        }
    }
    bool open(const std::string& ifname)
    {
        ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
        fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));
        if (ifindex == 0 || fd < 0) {
            return false;
        }
        sockaddr_ll sll{};
        sll.sll_family = AF_PACKET;
        sll.sll_protocol = htons(ETH_P_ALL);
        sll.sll_ifindex = ifindex;
        return ::bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof sll) == 0;
    }
    bool send(const Bytes& frame) const { return ::send(fd, frame.data(), frame.size(), 0) == ssize_t(frame.size()); }
    /// Frames that arrived on the interface (not the ones this end sent), for up to `wait`, until `want`.
    std::vector<Bytes> receive_incoming(std::size_t want, std::chrono::milliseconds wait) const
    {
        std::vector<Bytes> out;
        const auto deadline = Wall::now() + wait;
        Bytes buf(65536);
        while (out.size() < want && Wall::now() < deadline) {
            pollfd p{fd, POLLIN, 0};
            ::poll(&p, 1, 20);
            for (;;) {
                sockaddr_ll from{};
                socklen_t len = sizeof from;
                const ssize_t n = ::recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
                if (n < 0) {
                    break;
                }
                if (from.sll_pkttype != PACKET_OUTGOING) {
                    out.emplace_back(buf.begin(), buf.begin() + n);
                }
            }
        }
        return out;
    }
};

/// Receives from the link, polling its fd, for up to `wait` or until `want` test frames arrived.
void receive_for(PcapLink& link, Collector& got, std::size_t want, std::chrono::milliseconds wait)
{
    const auto deadline = Wall::now() + wait;
    while (got.frames.size() < want && Wall::now() < deadline) {
        pollfd p{link.wait_fd(), POLLIN, 0};
        ::poll(&p, 1, 20);
        link.receive(got, 64);
    }
}

int child_checks(const TestNamespace& ns)
{
    EXPECT(enter(ns), 10);

    PcapLinkConfig config;
    config.interface = ns.card_if;
    config.card_mac = card_mac;

    // Errors name the interface.
    {
        PcapLinkConfig bad = config;
        bad.interface = "cmnosuch0";
        auto r = PcapLink::open(bad);
        EXPECT(!r.has_value(), 20);
        std::fprintf(stderr, "pcap link test (child): expected error: %s\n", r.error().c_str());
        EXPECT(r.error().find("cmnosuch0") != std::string::npos, 21);
        bad = config;
        bad.extra_filter = "not a valid filter (";
        auto f = PcapLink::open(bad);
        EXPECT(!f.has_value(), 22);
        EXPECT(f.error().find(ns.card_if) != std::string::npos, 23);
        EXPECT(f.error().find("filter") != std::string::npos, 24);
    }

    auto opened = PcapLink::open(config);
    if (!opened) {
        std::fprintf(stderr, "pcap link test (child): %s\n", opened.error().c_str());
    }
    EXPECT(opened.has_value(), 30);
    PcapLink& link = **opened;
    EXPECT(link.wait_fd() >= 0, 31);

    RawSocket peer;
    EXPECT(peer.open(ns.peer_if), 32);

    // ---- receive: only frames for the card (and broadcast) arrive; truncated frames are dropped ----
    EXPECT(peer.send(make_frame(1, 60, card_mac, peer_mac)), 40);
    EXPECT(peer.send(make_frame(2, 60, mac_broadcast, peer_mac)), 41);
    EXPECT(peer.send(make_frame(3, 60, other_mac, peer_mac)), 42);      // another host: filtered out
    EXPECT(peer.send(make_frame(4, 60, multicast_mac, peer_mac)), 43);  // multicast: filtered out
    EXPECT(peer.send(make_frame(5, 3000, card_mac, peer_mac)), 44);     // > snaplen 2048: truncated
    EXPECT(peer.send(make_frame(6, 1514, card_mac, peer_mac)), 45);

    Collector got;
    receive_for(link, got, 3, std::chrono::milliseconds(3000));
    receive_for(link, got, 100, std::chrono::milliseconds(200));  // anything else that might still come
    std::vector<std::uint32_t> seqs;
    for (const Bytes& f : got.frames) {
        const Mac dst = frame_dst(f);
        EXPECT(dst == card_mac || dst == mac_broadcast, 46);
        if (is_test_frame(f)) {
            seqs.push_back(frame_seq(f));
        }
    }
    for (auto s : seqs) {
        std::fprintf(stderr, "pcap link test (child): received seq %u\n", s);
    }
    EXPECT((seqs == std::vector<std::uint32_t>{1, 2, 6}), 47);
    EXPECT(got.frames[0] == make_frame(1, 60, card_mac, peer_mac), 48);
    EXPECT(got.frames.back() == make_frame(6, 1514, card_mac, peer_mac), 49);
    EXPECT(link.counters().rx_truncated == 1, 50);
    EXPECT(link.counters().rx_frames == got.frames.size(), 51);
    EXPECT(link.counters().rx_errors == 0, 52);

    // ---- budget: 10 frames, budget 4 ----
    for (std::uint32_t i = 0; i < 10; ++i) {
        EXPECT(peer.send(make_frame(100 + i, 60, card_mac, peer_mac)), 55);
    }
    {
        Collector batch;
        const auto deadline = Wall::now() + std::chrono::milliseconds(3000);
        std::size_t max_per_call = 0;
        while (batch.frames.size() < 10 && Wall::now() < deadline) {
            pollfd p{link.wait_fd(), POLLIN, 0};
            ::poll(&p, 1, 20);
            max_per_call = std::max(max_per_call, link.receive(batch, 4));
        }
        EXPECT(batch.frames.size() == 10, 56);
        EXPECT(max_per_call <= 4, 57);
        EXPECT(link.receive(batch, 0) == 0, 58);
    }

    // ---- send: frames arrive at the peer intact and in order; the card does not see its own ----
    std::vector<Bytes> sent;
    for (std::uint32_t i = 0; i < 20; ++i) {
        sent.push_back(make_frame(200 + i, 60 + i * 72, peer_mac, card_mac));
    }
    sent.push_back(make_frame(220, 60, mac_broadcast, card_mac));
    for (const Bytes& f : sent) {
        EXPECT(link.send(f), 60);
    }
    EXPECT(link.flush() == sent.size(), 61);
    EXPECT(link.counters().tx_frames == sent.size(), 62);
    EXPECT(link.counters().tx_errors == 0, 63);
    std::vector<Bytes> at_peer;
    for (const Bytes& f : peer.receive_incoming(sent.size() + 10, std::chrono::milliseconds(1000))) {
        if (is_test_frame(f)) {
            at_peer.push_back(f);
        }
    }
    EXPECT(at_peer == sent, 64);
    Collector own;
    receive_for(link, own, 1, std::chrono::milliseconds(200));
    for (const Bytes& f : own.frames) {
        EXPECT(!(is_test_frame(f) && frame_seq(f) == 220), 65);  // our own broadcast, seen by ourselves
    }

    // ---- send() limits ----
    EXPECT(!link.send(make_frame(0, 1515, peer_mac, card_mac)), 70);
    EXPECT(link.counters().tx_dropped_too_large == 1, 71);
    for (std::size_t i = 0; i < Link::default_tx_batch; ++i) {
        EXPECT(link.send(make_frame(static_cast<std::uint32_t>(300 + i), 60, peer_mac, card_mac)), 72);
    }
    EXPECT(!link.send(make_frame(999, 60, peer_mac, card_mac)), 73);
    EXPECT(link.counters().tx_dropped_queue_full == 1, 74);
    EXPECT(link.flush() == Link::default_tx_batch, 75);
    EXPECT(link.flush() == 0, 76);

    link.refresh_stats();
    EXPECT(link.counters().rx_kernel_dropped == 0, 80);
    return 0;
}

/// Creates the namespace, runs `checks` in a forked child inside it, deletes the namespace. Skips (with a
/// WARN) when the test cannot run here; otherwise checks the child's exit status.
template <class Checks>
void run_in_namespace(Checks checks)
{
    if (geteuid() != 0) {
        WARN("skipped: needs root (creates a network namespace and a veth pair)");
        SUCCEED();
        return;
    }
    if (!run("command -v ip >/dev/null 2>&1")) {
        WARN("skipped: iproute2's `ip` not found");
        SUCCEED();
        return;
    }
    TestNamespace ns;
    if (!ns.created) {
        WARN("skipped: " << ns.error);
        SUCCEED();
        return;
    }
    REQUIRE(ns.error.empty());

    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        alarm(60);  // never outlive a hung check
        int code = 99;
        try {
            code = checks(ns);
        } catch (...) {
            code = 98;
        }
        std::fflush(stderr);
        _exit(code);
    }
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    INFO("child status " << status << " (exit code is the failed check's number; see stderr)");
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

/// Not a check: numbers for the report. `cm_link_tests "[bench]"` runs it.
int child_bench(const TestNamespace& ns)
{
    EXPECT(enter(ns), 10);
    PcapLinkConfig config;
    config.interface = ns.card_if;
    config.card_mac = card_mac;
    auto opened = PcapLink::open(config);
    EXPECT(opened.has_value(), 30);
    PcapLink& link = **opened;
    RawSocket peer;
    EXPECT(peer.open(ns.peer_if), 32);
    using std::chrono::duration;

    // Transmit: batches of 256 60-byte frames, send() + flush().
    const Bytes frame = make_frame(1, 60, peer_mac, card_mac);
    constexpr int tx_frames = 256 * 400;
    auto t0 = Wall::now();
    for (int b = 0; b < tx_frames / 256; ++b) {
        for (int i = 0; i < 256; ++i) {
            link.send(frame);
        }
        link.flush();
    }
    const double tx_ns = duration<double, std::nano>(Wall::now() - t0).count() / tx_frames;

    // For comparison (the comment on PcapLink::flush): the same batches with one sendmmsg() on the
    // capture's own socket.
    std::vector<iovec> iov(256);
    std::vector<mmsghdr> msgs(256);
    for (int i = 0; i < 256; ++i) {
        iov[i] = {const_cast<std::byte*>(frame.data()), frame.size()};
        msgs[i] = {};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    t0 = Wall::now();
    int mmsg_sent = 0;
    for (int b = 0; b < tx_frames / 256; ++b) {
        const int n = ::sendmmsg(link.wait_fd(), msgs.data(), 256, 0);
        mmsg_sent += n > 0 ? n : 0;
    }
    const double mmsg_ns = duration<double, std::nano>(Wall::now() - t0).count() / tx_frames;
    EXPECT(mmsg_sent == tx_frames, 33);

    // Receive: the peer sends 1000 frames, then the link takes them in batches of 64.
    constexpr int rounds = 50;
    double rx_total = 0;
    std::size_t rx_count = 0;
    for (int r = 0; r < rounds; ++r) {
        for (int i = 0; i < 1000; ++i) {
            peer.send(make_frame(static_cast<std::uint32_t>(i), 60, card_mac, peer_mac));
        }
        Collector got;
        got.frames.reserve(1000);
        auto r0 = Wall::now();
        while (got.frames.size() < 1000 && Wall::now() - r0 < std::chrono::seconds(2)) {
            link.receive(got, 64);
        }
        rx_total += duration<double, std::nano>(Wall::now() - r0).count();
        rx_count += got.frames.size();
    }

    // Latency: one frame from the peer, poll() on wait_fd, receive().
    std::vector<double> lat;
    for (int i = 0; i < 2000; ++i) {
        Collector got;
        auto s0 = Wall::now();
        peer.send(make_frame(static_cast<std::uint32_t>(i), 60, card_mac, peer_mac));
        while (got.frames.empty()) {
            pollfd p{link.wait_fd(), POLLIN, 0};
            ::poll(&p, 1, 100);
            link.receive(got, 64);
        }
        lat.push_back(duration<double, std::micro>(Wall::now() - s0).count());
    }
    std::sort(lat.begin(), lat.end());
    link.refresh_stats();
    std::fprintf(stderr,
                 "pcap link bench: tx %.0f ns/frame (send+flush, 60 B, batches of 256; sendmmsg %.0f); rx %.0f ns/frame "
                 "(receive, budget 64, %zu frames); peer send -> on_frame latency p50 %.1f us p99 %.1f us; "
                 "tx_errors %llu rx_kernel_dropped %llu\n",
                 tx_ns, mmsg_ns, rx_total / static_cast<double>(rx_count), rx_count, lat[lat.size() / 2],
                 lat[lat.size() * 99 / 100], static_cast<unsigned long long>(link.counters().tx_errors),
                 static_cast<unsigned long long>(link.counters().rx_kernel_dropped));
    return 0;
}

}  // namespace

TEST_CASE("pcap link: on a veth pair in a namespace of its own, it filters, receives and sends", "[link][pcap][root]")
{
    run_in_namespace(child_checks);
}

TEST_CASE("pcap link: throughput and latency on a veth pair", "[.][bench]")
{
    run_in_namespace(child_bench);
}

TEST_CASE("pcap link: opening a missing interface fails with a message naming it", "[link][pcap]")
{
    PcapLinkConfig config;
    config.interface = "cmnosuch-xyz";  // does not exist; nothing is touched
    auto r = PcapLink::open(config);
    REQUIRE_FALSE(r.has_value());
    INFO(r.error());
    CHECK(r.error().find("cmnosuch-xyz") != std::string::npos);
    PcapLinkConfig empty;
    CHECK(PcapLink::open(empty).error().find("no interface") != std::string::npos);
}

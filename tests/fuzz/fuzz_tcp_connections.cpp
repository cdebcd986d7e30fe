// Fuzzes the card's TCP with arbitrary segments into listening, half-open and established connections,
// with timers, the application's calls and active opens in between.
//
// The input is a sequence of 12-byte records, each optionally followed by payload bytes. The harness keeps,
// per (client port, card port) pair, the next sequence number the client would send and the highest
// sequence number the card has sent, so records can say "in order", "10 bytes ahead" or "acknowledge what
// the card sent" and reach every state; checksums are computed by the harness (a raw record exercises the
// parser with the input's own bytes). Record layout (r[0] % 4 picks the kind):
//   0 segment:  r[1] TCP flags; r[2] bits 0-1 client (port 40000 + n), bits 2-3 card port (80 app, 7 echo,
//               19 chargen, the last active open's local port or else closed port 81); r[3] bit 0 raw
//               sequence number, bit 1 raw ACK number; r[4..5] sequence delta (int16) or high bits;
//               r[6..7] ACK delta or high bits; r[8..9] window; r[10] options: bit 0 MSS (bit 6: MSS 1),
//               1 window scale (bit 6: 15), 2 SACK-permitted, 3 timestamps (bit 7: an old TSval), 4 one
//               SACK block, 5 three SACK blocks; r[11] payload length (bytes taken from the input)
//   1 time:     advance r[1] * 10 ms (r[2] bit 0: r[1] seconds) in 10 ms loop iterations
//   2 app:      r[1] % 10: send r[2] * 64 bytes / read everything / close / shutdown_write / abort /
//               keep-alive on / set_timer(r[2] ms) / nodelay / connect to the peer's port 40000 + r[2] % 4 /
//               unlisten-or-listen port 80; r[3] picks the connection
//   3 raw:      r[1..2] length of a TCP segment taken from the input as is; r[3] bit 0: fix its checksum
//
// Oracle: every frame the card sends is well formed and from the card (Ethernet, IPv4 and TCP checksums);
// the layer's gauges agree with its table after every record; and at the end, after abort_all(), the pool,
// the buffer sets and the table are empty (a leak of a chunk or a control block aborts).
#include "core/timer_wheel.hpp"
#include "link/memory_link.hpp"
#include "stack/interface.hpp"
#include "tcp/tcp.hpp"
#include "tcp/test_services.hpp"
#include "wire/arp.hpp"
#include "wire/ethernet.hpp"
#include "wire/ipv4.hpp"
#include "wire/tcp.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

using namespace cm;
using namespace cm::wire;

namespace {

const MacAddress card_mac = *MacAddress::parse("02:00:00:00:00:02");
const MacAddress peer_mac = *MacAddress::parse("02:00:00:00:00:01");
const Ipv4Address card_ip = Ipv4Address::from_octets(198, 18, 0, 2);
const Ipv4Address peer_ip = Ipv4Address::from_octets(198, 18, 0, 1);

[[noreturn]] void fail(const char* what)
{
    std::fprintf(stderr, "fuzz_tcp_connections oracle: %s\n", what);
    std::abort();
}

struct Flow {
    SeqNumber peer_next{0xffff0000u};  // what the client sends next, in order
    SeqNumber card_next{0};             // one past the highest sequence number the card sent
    std::uint32_t card_tsval = 0;
    std::uint32_t peer_tsval = 1000;
};

struct App final : tcp::TcpHandler {
    tcp::TcpLayer* tcp = nullptr;
    std::vector<tcp::ConnectionId> ids;
    bool read = true;
    bool on_accept(tcp::ConnectionId id, const tcp::FourTuple&) override
    {
        ids.push_back(id);
        return true;
    }
    void on_connected(tcp::ConnectionId id) override { ids.push_back(id); }
    void on_readable(tcp::ConnectionId id) override
    {
        std::array<std::byte, 2048> buf{};
        while (read && tcp->read(id, buf) > 0) {
        }
    }
    void on_closed(tcp::ConnectionId, tcp::CloseReason) override {}
};

struct Harness {
    ManualClock clock;
    core::TimerWheel timers{clock.now()};
    link::MemoryLinkPair pair{clock};
    stack::NetworkInterface card;
    tcp::TcpLayer tcp;
    tcp::TestServices services{tcp};
    App app;
    std::array<std::array<Flow, 4>, 4> flows{};
    std::uint16_t active_port = 0;  // local port of the card's last active open

    static stack::InterfaceConfig net()
    {
        stack::InterfaceConfig c;
        c.mac = card_mac;
        c.address = *Ipv4Cidr::parse("198.18.0.2/24");
        return c;
    }
    static tcp::TcpConfig config()
    {
        tcp::TcpConfig c;
        c.max_connections = 16;
        c.syn_backlog = 3;
        c.pool_chunks = 96;
        c.pool_chunk_size = 512;
        c.send_buffer = 8192;
        c.recv_buffer = 8192;
        c.max_retries = 4;
        c.syn_retries = 2;
        c.challenge_ack_limit = 20;
        for (std::size_t i = 0; i < c.secret.size(); ++i) {
            c.secret[i] = static_cast<std::uint8_t>(i);
        }
        return c;
    }

    Harness() : card(pair.a(), timers, net()), tcp(card, timers, clock, config())
    {
        app.tcp = &tcp;
        tcp.listen(80, app);
        std::vector<std::byte> arp(ArpRepr::buffer_len());
        ArpRepr{arp_op::request, peer_mac, peer_ip, MacAddress{}, card_ip}.emit(arp);
        send_frame(ethertype::arp, arp);
    }

    [[nodiscard]] std::uint16_t card_port(unsigned sel) const
    {
        switch (sel & 3) {
        case 0: return 80;
        case 1: return 7;
        case 2: return 19;
        default: return active_port != 0 ? active_port : 81;
        }
    }

    void step()
    {
        tcp.poll(clock.now());
        card.poll(clock.now());
        timers.advance(clock.now());
        tcp.flush();
        card.flush();
        check_output();
        if (tcp.counters().conn_active != tcp.connection_count()) {
            fail("tcp.conn_active disagrees with the table");
        }
        if (tcp.counters().buffers_attached != tcp.buffer_sets_in_use()) {
            fail("tcp.buffers_attached disagrees with the buffer sets");
        }
    }

    void send_frame(std::uint16_t type, std::span<const std::byte> payload)
    {
        std::vector<std::byte> frame(14 + payload.size());
        EthernetRepr{card_mac, peer_mac, type}.emit(frame);
        std::copy(payload.begin(), payload.end(), frame.begin() + 14);
        if (pair.b().send(frame)) {
            pair.b().flush();
        }
        step();
    }

    void send_ipv4(std::span<const std::byte> segment)
    {
        Ipv4Repr ip{};
        ip.source = peer_ip;
        ip.destination = card_ip;
        ip.protocol = ip_protocol::tcp;
        ip.payload_len = static_cast<std::uint16_t>(segment.size());
        std::vector<std::byte> packet(ip.buffer_len());
        ip.emit(packet);
        std::copy(segment.begin(), segment.end(), packet.begin() + 20);
        send_frame(ethertype::ipv4, packet);
    }

    struct Checker final : link::FrameHandler {
        Harness* h = nullptr;
        void on_frame(std::span<const std::byte> frame) override { h->check_frame(frame); }
    };

    void check_output()
    {
        Checker c;
        c.h = this;
        while (pair.b().receive(c, 64) > 0) {
        }
    }

    void check_frame(std::span<const std::byte> frame)
    {
        const auto eth = EthernetView::check(frame);
        if (!eth || eth->source() != card_mac || frame.size() < 60) {
            fail("not an Ethernet frame from the card");
        }
        if (eth->ethertype() == ethertype::arp) {
            return;
        }
        const auto ipv = Ipv4View::check(eth->payload());
        if (!ipv) {
            fail("bad IPv4");
        }
        const auto ip = Ipv4Repr::parse(*ipv);
        if (!ip || ip->protocol != ip_protocol::tcp || ip->destination != peer_ip || ip->source != card_ip) {
            fail("not TCP from the card to the peer");
        }
        const auto tv = TcpView::check(ipv->payload());
        if (!tv) {
            fail("bad TCP header");
        }
        const auto tr = TcpRepr::parse(*tv, ip->source, ip->destination);
        if (!tr) {
            fail("bad TCP checksum or options");
        }
        if (tr->destination_port < 40000 || tr->destination_port > 40003) {
            return;  // an answer to a raw record's port
        }
        for (unsigned d = 0; d < 4; ++d) {
            if (card_port(d) == tr->source_port) {
                Flow& f = flows[tr->destination_port - 40000][d];
                const SeqNumber end = tr->sequence + tr->sequence_len();
                if ((tr->flags & tcp_flags::syn) != 0 || end > f.card_next || f.card_next == SeqNumber{0}) {
                    f.card_next = end;
                }
                if (tr->timestamps) {
                    f.card_tsval = tr->timestamps->value;
                }
            }
        }
    }

    void segment(const std::uint8_t* r, std::span<const std::byte> payload)
    {
        const unsigned client = r[2] & 3;
        const unsigned dport = (r[2] >> 2) & 3;
        Flow& f = flows[client][dport];
        TcpRepr s{};
        s.source_port = static_cast<std::uint16_t>(40000 + client);
        s.destination_port = card_port(dport);
        s.flags = r[1];
        const auto delta16 = [](const std::uint8_t* p) {
            return static_cast<std::int32_t>(static_cast<std::int16_t>(p[0] << 8 | p[1]));
        };
        const bool raw_seq = (r[3] & 1) != 0;
        const bool raw_ack = (r[3] & 2) != 0;
        s.sequence = raw_seq ? SeqNumber(static_cast<std::uint32_t>(r[4] << 24 | r[5] << 16 | r[6] << 8 | r[7]))
                             : f.peer_next + delta16(r + 4);
        s.acknowledgment = raw_ack ? SeqNumber(static_cast<std::uint32_t>(r[6] << 24 | r[7] << 16 | r[4] << 8 | r[5]))
                                   : f.card_next + delta16(r + 6);
        s.window = static_cast<std::uint16_t>(r[8] << 8 | r[9]);
        const std::uint8_t o = r[10];
        if ((o & 1) != 0) {
            s.mss = (o & 0x40) != 0 ? 1 : 1460;
        }
        if ((o & 2) != 0) {
            s.window_scale = (o & 0x40) != 0 ? 15 : 7;
        }
        s.sack_permitted = (o & 4) != 0;
        if ((o & 8) != 0) {
            f.peer_tsval += 3;
            s.timestamps = TcpTimestamps{(o & 0x80) != 0 ? f.peer_tsval - 100000 : f.peer_tsval, f.card_tsval};
        }
        if ((o & 0x30) != 0) {
            const SeqNumber base = s.acknowledgment;
            s.sack_blocks[0] = SackBlock{base + 1000u, base + 2000u};
            s.sack_count = 1;
            if ((o & 0x20) != 0) {
                s.sack_blocks[1] = SackBlock{base + 3000u, base + 3500u};
                s.sack_blocks[2] = SackBlock{base - 500, base + 100u};
                s.sack_count = 3;
            }
        }
        s.payload = payload;
        if (s.header_len() + payload.size() > 1480) {
            s.payload = payload.first(1480 - s.header_len());
        }
        std::vector<std::byte> segment(s.buffer_len());
        s.emit(segment, peer_ip, card_ip);
        if (!raw_seq && delta16(r + 4) == 0) {
            f.peer_next = s.sequence + s.sequence_len();
        }
        send_ipv4(segment);
    }

    void advance(const std::uint8_t* r)
    {
        const unsigned steps = (r[2] & 1) != 0 ? r[1] * 100u : r[1];
        for (unsigned i = 0; i < std::min(steps, 3000u); ++i) {
            clock.advance(10ms);
            step();
        }
    }

    void app_call(const std::uint8_t* r)
    {
        const tcp::ConnectionId id = app.ids.empty() ? tcp::ConnectionId{} : app.ids[r[3] % app.ids.size()];
        std::array<std::byte, 16384> buf{};
        switch (r[1] % 10) {
        case 0: {
            const std::size_t n = std::min<std::size_t>(r[2] * 64u, buf.size());
            for (std::size_t i = 0; i < n; ++i) {
                buf[i] = static_cast<std::byte>(i);
            }
            tcp.send(id, std::span(buf).first(n));
            break;
        }
        case 1:
            while (tcp.read(id, buf) > 0) {
            }
            break;
        case 2: tcp.close(id); break;
        case 3: tcp.shutdown_write(id); break;
        case 4: tcp.abort(id); break;
        case 5: tcp.set_keepalive(id, tcp::KeepAliveSettings{true, 1s, 1s, 2}); break;
        case 6: tcp.set_timer(id, std::chrono::milliseconds(r[2])); break;
        case 7: tcp.set_nodelay(id, (r[2] & 1) != 0); break;
        case 8:
            if (const auto c = tcp.connect(peer_ip, static_cast<std::uint16_t>(40000 + r[2] % 4), app)) {
                app.ids.push_back(*c);
                if (const auto info = tcp.info(*c)) {
                    active_port = info->tuple.local_port;
                    flows[r[2] % 4][3] = Flow{};
                }
            }
            break;
        case 9:
            if (!tcp.listen(80, app)) {
                tcp.unlisten(80);
            }
            break;
        }
        app.read = (r[2] & 0x80) == 0;
        step();
    }

    void raw(const std::uint8_t* r, std::span<const std::byte> bytes)
    {
        std::vector<std::byte> segment(bytes.begin(), bytes.end());
        if ((r[3] & 1) != 0 && segment.size() >= 20 && segment.size() <= 1480) {
            segment[16] = segment[17] = std::byte{0};
            // Fix the checksum the way the card checks it: emit() of the parsed repr would normalise the
            // options, so compute it directly.
            std::uint32_t sum = (peer_ip.value >> 16) + (peer_ip.value & 0xffff) + (card_ip.value >> 16) +
                                (card_ip.value & 0xffff) + ip_protocol::tcp + static_cast<std::uint32_t>(segment.size());
            for (std::size_t i = 0; i + 1 < segment.size(); i += 2) {
                sum += static_cast<std::uint32_t>(std::to_integer<std::uint8_t>(segment[i]) << 8 |
                                                  std::to_integer<std::uint8_t>(segment[i + 1]));
            }
            if (segment.size() % 2 != 0) {
                sum += static_cast<std::uint32_t>(std::to_integer<std::uint8_t>(segment.back()) << 8);
            }
            while ((sum >> 16) != 0) {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            const auto checksum = static_cast<std::uint16_t>(~sum);
            segment[16] = static_cast<std::byte>(checksum >> 8);
            segment[17] = static_cast<std::byte>(checksum & 0xff);
        }
        if (segment.size() <= 1480) {
            send_ipv4(segment);
        }
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    Harness h;
    constexpr std::size_t record = 12;
    std::size_t at = 0;
    while (at + record <= size) {
        const std::uint8_t* r = data + at;
        at += record;
        switch (r[0] % 4) {
        case 0: {
            const std::size_t n = std::min<std::size_t>(r[11], size - at);
            h.segment(r, std::span(reinterpret_cast<const std::byte*>(data + at), n));
            at += n;
            break;
        }
        case 1: h.advance(r); break;
        case 2: h.app_call(r); break;
        case 3: {
            const std::size_t n = std::min<std::size_t>(static_cast<std::size_t>(r[1] << 8 | r[2]) % 1500, size - at);
            h.raw(r, std::span(reinterpret_cast<const std::byte*>(data + at), n));
            at += n;
            break;
        }
        }
    }
    // Let timers run out what they will (retransmissions, TIME_WAIT), then end everything.
    for (int i = 0; i < 20; ++i) {
        h.clock.advance(100ms);
        h.step();
    }
    h.tcp.abort_all();
    h.step();
    if (h.tcp.pool().in_use() != 0 || h.tcp.connection_count() != 0 || h.tcp.buffer_sets_in_use() != 0) {
        fail("after abort_all: pool, buffer sets or table not empty");
    }
    return 0;
}

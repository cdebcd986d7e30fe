// A card engine over plain memory and a bare-hands host for it: the engine's unit tests and the bus fuzzer
// drive the card's side through the same rings a host would, without sockets or processes.
#pragma once

#include "bus/echo.hpp"
#include "bus/engine.hpp"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace cm::bus::test {

inline LayoutParams small_layout()
{
    LayoutParams p;
    p.total_size = 1u << 20;
    p.qp_count = 3;
    p.ring_entries = 64;
    p.slot_size = 1024;
    p.conn_credit = 4;
    p.max_conns_per_qp = 32;
    return p;
}

/// The card: an engine with the echo service over page-aligned memory, and a clock the test moves.
struct Card {
    struct Free {
        void operator()(std::byte* p) const { std::free(p); }
    };
    Layout layout;
    std::unique_ptr<std::byte, Free> memory;
    ManualClock clock;
    std::unique_ptr<BusEngine> engine;
    std::unique_ptr<EchoService> echo;

    explicit Card(const LayoutParams& params = small_layout(), const EngineConfig& config = {})
    {
        std::string why;
        layout = *compute_layout(params, why);
        memory.reset(static_cast<std::byte*>(std::aligned_alloc(4096, layout.total_size)));
        std::memset(memory.get(), 0, layout.total_size);
        engine = std::make_unique<BusEngine>(memory.get(), layout, config, clock.now());
        echo = std::make_unique<EchoService>(*engine);
    }
    void run()
    {
        engine->poll(clock.now());
        engine->flush();
    }
};

/// One host queue pair, driven by hand.
struct Host {
    Card& card;
    std::uint32_t qp = 0;
    cm_bus_qp* hdr = nullptr;
    RingProducer sq;
    RingConsumer eq;
    std::uint64_t cookie = 1;

    Host(Card& c, std::uint32_t peer) : Host(c, *c.engine->attach(peer), nullptr) {}
    /// A host taking over queue pair `index` that the card already attached (the memory peer's, which the
    /// card lends up front and again after a release).
    Host(Card& c, std::uint32_t index, std::nullptr_t) : card(c)
    {
        qp = index;
        hdr = &card.engine->qp_header(qp);
        auto* base = reinterpret_cast<cm_bus_desc*>(hdr);
        const Layout& l = card.layout;
        sq = RingProducer({base + l.sq_offset() / CM_BUS_DESC_SIZE, l.ring_entries, &hdr->sq_prod, &hdr->sq_cons,
                           &hdr->card_need_wakeup}, 0);
        eq = RingConsumer({base + l.eq_offset() / CM_BUS_DESC_SIZE, l.ring_entries, &hdr->eq_prod, &hdr->eq_cons,
                           &hdr->host_need_wakeup}, 0);
    }
    /// Submits (false when the ring is full) and publishes.
    bool submit(const cm_bus_desc& d)
    {
        if (!sq.refresh() || sq.space() == 0) {
            return false;
        }
        sq.push(d);
        (void)sq.publish();
        return true;
    }
    std::vector<cm_bus_desc> events()
    {
        std::vector<cm_bus_desc> out;
        if (eq.refresh()) {
            while (eq.available() > 0) {
                out.push_back(eq.pop());
            }
            eq.release();
        }
        return out;
    }
    cm_bus_desc op(std::uint16_t opcode, std::uint32_t conn = 0)
    {
        cm_bus_desc d{};
        d.opcode = opcode;
        d.conn = conn;
        d.slot = CM_BUS_NO_SLOT;
        d.cookie = cookie++;
        return d;
    }
    std::uint32_t h2c(std::uint32_t i) const { return card.layout.h2c_first(qp) + i; }
    std::byte* slot(std::uint32_t s) { return card.memory.get() + card.layout.slot_byte_offset(s); }
    cm_bus_desc data(std::uint32_t conn, std::uint32_t s, const char* text)
    {
        cm_bus_desc d = op(CM_BUS_SQ_DATA, conn);
        d.slot = s;
        d.len = static_cast<std::uint32_t>(std::strlen(text));
        std::memcpy(slot(s), text, d.len);
        return d;
    }
    /// CONNECT to the echo service; the new connection id (0 on failure).
    std::uint32_t connect_echo()
    {
        cm_bus_desc d = op(CM_BUS_SQ_CONNECT);
        d.value = CM_BUS_CLIENT_ECHO;
        submit(d);
        card.run();
        for (const cm_bus_desc& e : events()) {
            if (e.opcode == CM_BUS_EV_CONNECTED && e.cookie == d.cookie) {
                return e.conn;
            }
        }
        return 0;
    }
};

}  // namespace cm::bus::test

// The card's bus input: everything a host process can write into its queue pair. Input: a stream of
// operations by a hostile host on one queue pair (raw descriptors, raw producer and consumer indices,
// detach and re-attach), interleaved with card polls. Oracle: no crash or out-of-bounds access
// (sanitizers), the engine's bookkeeping stays consistent after every poll, and a well-behaved host on
// another queue pair is never faulted and still gets its echo at the end.
#include "fake_host.hpp"
#include "fuzz_common.hpp"

#include <cstring>
#include <optional>

using namespace cm::bus;
using namespace cm::bus::test;

namespace {

std::uint32_t read_u32(const std::uint8_t*& p, const std::uint8_t* end)
{
    std::uint32_t v = 0;
    const std::size_t n = std::min<std::size_t>(4, static_cast<std::size_t>(end - p));
    std::memcpy(&v, p, n);
    p += n;
    return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    Card card;
    std::optional<Host> evil(std::in_place, card, 1);
    Host good(card, 2);
    const std::uint32_t good_conn = good.connect_echo();
    CM_FUZZ_ASSERT(good_conn != 0);
    std::uint32_t evil_conn = evil->connect_echo();
    std::uint32_t evil_peer = 1;
    std::uint32_t next_peer = 3;

    const std::uint8_t* p = data;
    const std::uint8_t* end = data + size;
    while (p < end) {
        const std::uint8_t op = *p++;
        switch (op % 8) {
        case 0: {  // a raw descriptor
            cm_bus_desc d{};
            const std::size_t n = std::min<std::size_t>(sizeof d, static_cast<std::size_t>(end - p));
            std::memcpy(&d, p, n);
            p += n;
            (void)evil->submit(d);
            break;
        }
        case 1: {  // a structured one: a real opcode on the live connection, fuzzed slot/offset/len
            cm_bus_desc d = evil->op(static_cast<std::uint16_t>(1 + (op >> 3) % 11), evil_conn);
            d.slot = evil->h2c(read_u32(p, end) % (card.layout.slots_per_qp + 2)) - 1;
            d.offset = read_u32(p, end) % (card.layout.slot_size + 2);
            d.len = read_u32(p, end) % (card.layout.slot_size + 2);
            d.aux = op >> 4;
            d.value = op >> 2;
            (void)evil->submit(d);
            break;
        }
        case 2:
            cm::bus::store_release(evil->hdr->sq_prod, read_u32(p, end));
            break;
        case 3:
            cm::bus::store_release(evil->hdr->eq_cons, read_u32(p, end));
            break;
        case 4:
            (void)evil->events();
            break;
        case 5:
            if ((op & 0x80) != 0) {
                card.engine->detach_peer(evil_peer);
                evil.reset();
                evil_peer = next_peer++;
                evil.emplace(card, evil_peer);
                evil_conn = evil->connect_echo();
            }
            break;
        default:
            break;
        }
        card.run();
        (void)good.events();
        const std::string bad = card.engine->check_invariants();
        if (!bad.empty()) {
            std::fprintf(stderr, "%s\n", bad.c_str());
        }
        CM_FUZZ_ASSERT(bad.empty());
        CM_FUZZ_ASSERT(good.hdr->state == CM_BUS_QP_ATTACHED);
    }
    // The well-behaved queue pair still works.
    (void)good.events();
    CM_FUZZ_ASSERT(good.submit(good.data(good_conn, good.h2c(0), "still fine")));
    card.run();
    bool echoed = false;
    for (const cm_bus_desc& e : good.events()) {
        echoed = echoed || (e.opcode == CM_BUS_EV_DATA && e.conn == good_conn && e.len == 10);
    }
    CM_FUZZ_ASSERT(echoed);
    return 0;
}

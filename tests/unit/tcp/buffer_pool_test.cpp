// The chunk pool, the byte queue and the reassembly queue: boundaries, exhaustion, models, and every chunk
// back in the pool at the end of every test.
#include "tcp/buffer_pool.hpp"

#include <catch2/catch.hpp>

#include <deque>
#include <map>
#include <random>
#include <vector>

using namespace cm::tcp;
using cm::wire::SackBlock;
using cm::wire::SeqNumber;

namespace {

std::vector<std::byte> pattern(std::size_t n, std::uint32_t seed)
{
    std::vector<std::byte> bytes(n);
    for (std::size_t i = 0; i < n; ++i) {
        bytes[i] = static_cast<std::byte>((seed + i) * 2654435761u >> 24);
    }
    return bytes;
}

std::vector<std::byte> read_all(const ByteQueue& q)
{
    std::vector<std::byte> out(q.size());
    CHECK(q.peek(0, out) == q.size());
    return out;
}

/// The byte of the stream at absolute offset `at`, written by insert number `version`: a later copy of the
/// same bytes differs, so the first-copy rule can be seen.
std::byte stream_byte(std::uint32_t at, std::uint32_t version)
{
    return static_cast<std::byte>((at * 7u + version * 131u) & 0xff);
}

}  // namespace

TEST_CASE("the pool hands out every chunk once and counts exhaustion", "[pool]")
{
    BufferPool pool(100, 4);  // rounded up to 104
    CHECK(pool.chunk_size() == 104);
    CHECK(pool.capacity() == 4);
    CHECK(pool.counters().chunks_total == 4);
    std::vector<Chunk*> chunks;
    for (int i = 0; i < 4; ++i) {
        Chunk* c = pool.allocate();
        REQUIRE(c != nullptr);
        CHECK(pool.owns(c));
        CHECK(c->capacity == 104);
        CHECK(c->size() == 0);
        CHECK(c->next == nullptr);
        chunks.push_back(c);
    }
    CHECK(pool.in_use() == 4);
    CHECK(pool.available() == 0);
    CHECK(pool.allocate() == nullptr);
    CHECK(pool.counters().alloc_failures == 1);
    // Distinct, non-overlapping payloads.
    for (std::size_t i = 0; i < chunks.size(); ++i) {
        std::memset(chunks[i]->data(), static_cast<int>(i), chunks[i]->capacity);
    }
    for (std::size_t i = 0; i < chunks.size(); ++i) {
        CHECK(std::to_integer<std::size_t>(chunks[i]->data()[103]) == i);
    }
    pool.release(chunks[0]);
    pool.release(chunks[1]);
    CHECK(pool.in_use() == 2);
    CHECK(pool.counters().chunks_high_water == 4);
    chunks[2]->next = chunks[3];
    chunks[3]->next = nullptr;
    pool.release_chain(chunks[2]);
    CHECK(pool.in_use() == 0);
    CHECK(pool.counters().chunks_in_use == 0);
    CHECK_FALSE(pool.owns(nullptr));
    int local = 0;
    CHECK_FALSE(pool.owns(reinterpret_cast<Chunk*>(&local)));
}

TEST_CASE("chunk sizes are bounded and a pool may be empty", "[pool]")
{
    BufferPool tiny(1, 1);
    CHECK(tiny.chunk_size() == 64);
    BufferPool none(2048, 0);
    CHECK(none.capacity() == 0);
    CHECK(none.allocate() == nullptr);
    CHECK(none.counters().alloc_failures == 1);
    ByteQueue q;
    const auto data = pattern(10, 1);
    CHECK(q.push(none, data) == 0);
    CHECK(q.empty());
}

TEST_CASE("the per-connection types are small", "[pool]")
{
    STATIC_REQUIRE(sizeof(ByteQueue) <= 32);
    STATIC_REQUIRE(sizeof(ReassemblyQueue) <= 48);
    STATIC_REQUIRE(sizeof(Chunk) == 24);
}

TEST_CASE("ByteQueue across chunk boundaries", "[pool][byte_queue]")
{
    BufferPool pool(64, 16);
    ByteQueue q;
    CHECK(q.empty());
    CHECK(q.chunk_count() == 0);
    const auto data = pattern(200, 7);
    CHECK(q.push(pool, data) == 200);
    CHECK(q.size() == 200);
    CHECK(q.chunk_count() == 4);  // 64 + 64 + 64 + 8
    CHECK(pool.in_use() == 4);
    CHECK(read_all(q) == data);

    // contiguous_at stops at a chunk boundary and at max.
    CHECK(q.contiguous_at(0, 1000).size() == 64);
    CHECK(q.contiguous_at(60, 1000).size() == 4);
    CHECK(q.contiguous_at(64, 10).size() == 10);
    CHECK(q.contiguous_at(199, 10).size() == 1);
    CHECK(q.contiguous_at(200, 10).empty());
    CHECK(q.contiguous_at(0, 0).empty());
    CHECK(q.contiguous_at(130, 5)[0] == data[130]);

    // peek from an offset across two boundaries; a short read at the end.
    std::vector<std::byte> out(150);
    CHECK(q.peek(40, out) == 150);
    CHECK(std::equal(out.begin(), out.end(), data.begin() + 40));
    CHECK(q.peek(190, out) == 10);
    CHECK(q.peek(200, out) == 0);

    // consume releases the chunks it empties.
    q.consume(pool, 70);
    CHECK(q.size() == 130);
    CHECK(pool.in_use() == 3);
    CHECK(q.contiguous_at(0, 100).size() == 58);
    CHECK(read_all(q) == std::vector<std::byte>(data.begin() + 70, data.end()));
    q.consume(pool, 1000);  // more than held: everything
    CHECK(q.empty());
    CHECK(pool.in_use() == 0);  // an empty queue holds no chunk
    CHECK(q.contiguous_at(0, 10).empty());

    CHECK(q.push(pool, data) == 200);
    q.clear(pool);
    CHECK(q.empty());
    CHECK(pool.in_use() == 0);
}

TEST_CASE("ByteQueue takes what the pool can give", "[pool][byte_queue]")
{
    BufferPool pool(64, 3);
    ByteQueue a;
    ByteQueue b;
    const auto data = pattern(300, 3);
    CHECK(a.push(pool, data) == 192);
    CHECK(pool.counters().alloc_failures == 1);
    CHECK(b.push(pool, data) == 0);
    a.consume(pool, 64);
    CHECK(b.push(pool, data) == 64);
    CHECK(read_all(b) == std::vector<std::byte>(data.begin(), data.begin() + 64));
    a.clear(pool);
    b.clear(pool);
    CHECK(pool.in_use() == 0);
}

TEST_CASE("ByteQueue against a std::deque model under random operations", "[pool][byte_queue]")
{
    std::mt19937 rng(1234);
    BufferPool pool(64, 64);
    ByteQueue q;
    std::deque<std::byte> model;
    std::uint32_t seed = 0;
    for (int step = 0; step < 20000; ++step) {
        switch (rng() % 5) {
        case 0:
        case 1: {
            const auto data = pattern(rng() % 300, seed++);
            const std::size_t taken = q.push(pool, data);
            model.insert(model.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(taken));
            if (taken < data.size()) {
                CHECK(pool.available() == 0);
            }
            break;
        }
        case 2: {
            const std::size_t n = rng() % 250;
            q.consume(pool, n);
            model.erase(model.begin(), model.begin() + static_cast<std::ptrdiff_t>(std::min(n, model.size())));
            break;
        }
        case 3: {
            const std::size_t offset = model.empty() ? 0 : rng() % (model.size() + 10);
            std::vector<std::byte> out(rng() % 200);
            const std::size_t got = q.peek(offset, out);
            const std::size_t expected = offset >= model.size() ? 0 : std::min(out.size(), model.size() - offset);
            REQUIRE(got == expected);
            for (std::size_t i = 0; i < got; ++i) {
                REQUIRE(out[i] == model[offset + i]);
            }
            break;
        }
        default: {
            // Read the queue front to back in segments, as output does (exercises the cursor).
            std::size_t offset = rng() % 50;
            while (offset < model.size()) {
                const auto piece = q.contiguous_at(offset, 1 + rng() % 100);
                REQUIRE(!piece.empty());
                for (std::size_t i = 0; i < piece.size(); ++i) {
                    REQUIRE(piece[i] == model[offset + i]);
                }
                offset += piece.size();
            }
            CHECK(q.contiguous_at(offset, 10).empty());
            break;
        }
        }
        REQUIRE(q.size() == model.size());
        REQUIRE(pool.in_use() == q.chunk_count());
        REQUIRE(q.chunk_count() <= (model.size() + 63) / 64 + 1);
    }
    q.clear(pool);
    CHECK(pool.in_use() == 0);
}

TEST_CASE("ReassemblyQueue fills a hole and drains in order, across 2^32", "[pool][reassembly]")
{
    BufferPool pool(64, 32);
    ReassemblyQueue rq;
    ByteQueue in;
    const SeqNumber rcv_nxt(0xffffffc0u);  // 64 bytes below the wrap
    const auto data = pattern(300, 9);
    const auto part = [&](std::size_t from, std::size_t to) {
        return std::span<const std::byte>(data).subspan(from, to - from);
    };
    CHECK(rq.insert(pool, rcv_nxt, rcv_nxt + 100u, part(100, 200), 10000));
    CHECK(rq.insert(pool, rcv_nxt, rcv_nxt + 250u, part(250, 300), 10000));
    CHECK(rq.bytes() == 150);
    CHECK(rq.range_count() == 2);
    CHECK(rq.valid());
    CHECK(rq.drain_into(pool, rcv_nxt, in) == 0);  // still a hole at rcv_nxt

    std::array<SackBlock, 4> blocks{};
    REQUIRE(rq.sack_blocks(blocks) == 2);
    CHECK(blocks[0] == SackBlock{rcv_nxt + 250u, rcv_nxt + 300u});  // most recent first
    CHECK(blocks[1] == SackBlock{rcv_nxt + 100u, rcv_nxt + 200u});

    // The in-order segment goes straight to the receive queue; then the held bytes follow.
    CHECK(in.push(pool, part(0, 100)) == 100);
    CHECK(rq.drain_into(pool, rcv_nxt + 100u, in) == 100);
    CHECK(rq.range_count() == 1);
    CHECK(rq.insert(pool, rcv_nxt + 200u, rcv_nxt + 200u, part(200, 250), 10000));
    CHECK(rq.drain_into(pool, rcv_nxt + 200u, in) == 100);
    CHECK(rq.empty());
    CHECK(rq.bytes() == 0);
    CHECK(read_all(in) == data);
    in.clear(pool);
    CHECK(pool.in_use() == 0);
}

TEST_CASE("ReassemblyQueue keeps the first copy of overlapping data (RFC 9293)", "[pool][reassembly]")
{
    BufferPool pool(64, 32);
    ReassemblyQueue rq;
    const SeqNumber rcv_nxt(1000);
    const std::vector<std::byte> first(100, std::byte{0xaa});
    const std::vector<std::byte> second(300, std::byte{0xbb});
    CHECK(rq.insert(pool, rcv_nxt, rcv_nxt + 100u, first, 10000));
    CHECK(rq.insert(pool, rcv_nxt, rcv_nxt + 50u, second, 10000));  // covers it and both sides
    CHECK(rq.bytes() == 300);
    CHECK(rq.valid());
    CHECK(rq.insert(pool, rcv_nxt, rcv_nxt + 100u, second, 10000));  // all held already
    CHECK(rq.bytes() == 350);

    ByteQueue in;
    const std::vector<std::byte> head(50, std::byte{0xcc});
    CHECK(in.push(pool, head) == 50);
    CHECK(rq.drain_into(pool, rcv_nxt + 50u, in) == 350);
    const auto all = read_all(in);
    REQUIRE(all.size() == 400);
    CHECK(std::count(all.begin() + 50, all.begin() + 100, std::byte{0xbb}) == 50);
    CHECK(std::count(all.begin() + 100, all.begin() + 200, std::byte{0xaa}) == 100);
    CHECK(std::count(all.begin() + 200, all.end(), std::byte{0xbb}) == 200);
    in.clear(pool);
    CHECK(pool.in_use() == 0);
}

TEST_CASE("ReassemblyQueue ignores what is before rcv_nxt and releases what rcv_nxt passed", "[pool][reassembly]")
{
    BufferPool pool(64, 32);
    ReassemblyQueue rq;
    const auto data = pattern(100, 1);
    CHECK(rq.insert(pool, SeqNumber(500), SeqNumber(300), data, 10000));  // wholly old
    CHECK(rq.empty());
    CHECK(rq.insert(pool, SeqNumber(500), SeqNumber(450), data, 10000));  // half old
    CHECK(rq.bytes() == 50);
    CHECK(rq.insert(pool, SeqNumber(500), SeqNumber(600), std::span<const std::byte>{}, 10000));
    CHECK(rq.insert(pool, SeqNumber(500), SeqNumber(700), data, 10000));
    // In-order data arrived elsewhere and took rcv_nxt past the first range and into the second.
    ByteQueue in;
    CHECK(rq.drain_into(pool, SeqNumber(750), in) == 50);
    CHECK(read_all(in) == std::vector<std::byte>(data.begin() + 50, data.end()));
    CHECK(rq.empty());
    in.clear(pool);
    CHECK(pool.in_use() == 0);
}

TEST_CASE("ReassemblyQueue limits: bytes, ranges, pool", "[pool][reassembly]")
{
    const auto data = pattern(200, 5);
    SECTION("max_bytes: stores what fits, says false")
    {
        BufferPool pool(64, 32);
        ReassemblyQueue rq;
        CHECK(rq.insert(pool, SeqNumber(0), SeqNumber(100), std::span(data).first(100), 150));
        CHECK_FALSE(rq.insert(pool, SeqNumber(0), SeqNumber(300), std::span(data).first(100), 150));
        CHECK(rq.bytes() == 150);
        CHECK_FALSE(rq.insert(pool, SeqNumber(0), SeqNumber(1000), std::span(data).first(10), 150));
        CHECK(rq.bytes() == 150);
        // Data already held is fine even at the limit.
        CHECK(rq.insert(pool, SeqNumber(0), SeqNumber(100), std::span(data).first(50), 150));
        CHECK(rq.valid());
        rq.clear(pool);
        CHECK(pool.in_use() == 0);
    }
    SECTION("max_ranges")
    {
        BufferPool pool(64, 64);
        ReassemblyQueue rq;
        for (std::uint32_t i = 0; i < ReassemblyQueue::max_ranges; ++i) {
            CHECK(rq.insert(pool, SeqNumber(0), SeqNumber(100 + 100 * i), std::span(data).first(10), 100000));
        }
        CHECK(rq.range_count() == ReassemblyQueue::max_ranges);
        CHECK_FALSE(rq.insert(pool, SeqNumber(0), SeqNumber(5000), std::span(data).first(10), 100000));
        // Extending an existing range is still fine, and so is joining two.
        CHECK(rq.insert(pool, SeqNumber(0), SeqNumber(110), std::span(data).first(10), 100000));
        CHECK(rq.insert(pool, SeqNumber(0), SeqNumber(120), std::span(data).first(80), 100000));
        CHECK(rq.range_count() == ReassemblyQueue::max_ranges - 1);
        CHECK(rq.valid());
        rq.clear(pool);
        CHECK(pool.in_use() == 0);
    }
    SECTION("pool exhausted")
    {
        BufferPool pool(64, 2);
        ReassemblyQueue rq;
        CHECK_FALSE(rq.insert(pool, SeqNumber(0), SeqNumber(10), data, 100000));
        CHECK(rq.bytes() == 128);  // what the two chunks hold stays and is reported
        CHECK(rq.valid());
        std::array<SackBlock, 4> blocks{};
        CHECK(rq.sack_blocks(blocks) == 1);
        CHECK(blocks[0] == SackBlock{SeqNumber(10), SeqNumber(138)});
        rq.clear(pool);
        CHECK(pool.in_use() == 0);
    }
}

TEST_CASE("ReassemblyQueue packs small segments densely in either order", "[pool][reassembly]")
{
    BufferPool pool(2048, 64);
    const auto data = pattern(8192, 11);
    SECTION("ascending")
    {
        ReassemblyQueue rq;
        for (std::uint32_t at = 100; at < 8192; at += 100) {
            const std::size_t len = std::min<std::size_t>(100, data.size() - at);
            CHECK(rq.insert(pool, SeqNumber(0), SeqNumber(at), std::span(data).subspan(at, len), 100000));
        }
        CHECK(rq.chunk_count() <= 4);
        rq.clear(pool);
    }
    SECTION("descending")
    {
        ReassemblyQueue rq;
        for (std::uint32_t at = 8100; at >= 100; at -= 100) {
            const std::size_t len = std::min<std::size_t>(100, data.size() - at);
            CHECK(rq.insert(pool, SeqNumber(0), SeqNumber(at), std::span(data).subspan(at, len), 100000));
        }
        CHECK(rq.chunk_count() <= 5);
        CHECK(rq.range_count() == 1);
        ByteQueue in;
        CHECK(in.push(pool, std::span(data).first(100)) == 100);
        CHECK(rq.drain_into(pool, SeqNumber(100), in) == 8092);
        CHECK(read_all(in) == data);
        in.clear(pool);
        rq.clear(pool);
    }
    CHECK(pool.in_use() == 0);
}

TEST_CASE("SACK blocks: most recent first, then the rest from the highest (RFC 2018 4)", "[pool][reassembly]")
{
    BufferPool pool(64, 64);
    ReassemblyQueue rq;
    const auto data = pattern(10, 1);
    const SeqNumber nxt(0xfffffff0u);
    for (std::uint32_t at : {100u, 300u, 500u, 700u, 900u, 200u}) {
        CHECK(rq.insert(pool, nxt, nxt + at, data, 100000));
    }
    std::array<SackBlock, 4> blocks{};
    REQUIRE(rq.sack_blocks(blocks) == 4);
    CHECK(blocks[0] == SackBlock{nxt + 200u, nxt + 210u});
    CHECK(blocks[1] == SackBlock{nxt + 900u, nxt + 910u});
    CHECK(blocks[2] == SackBlock{nxt + 700u, nxt + 710u});
    CHECK(blocks[3] == SackBlock{nxt + 500u, nxt + 510u});
    // Another segment in the range at 900: that range comes first, once.
    CHECK(rq.insert(pool, nxt, nxt + 910u, data, 100000));
    REQUIRE(rq.sack_blocks(blocks) == 4);
    CHECK(blocks[0] == SackBlock{nxt + 900u, nxt + 920u});
    CHECK(blocks[1] == SackBlock{nxt + 200u, nxt + 210u});
    CHECK(blocks[2] == SackBlock{nxt + 700u, nxt + 710u});
    CHECK(blocks[3] == SackBlock{nxt + 500u, nxt + 510u});
    // Fewer slots (timestamps take room): the most recent ones.
    std::array<SackBlock, 3> three{};
    CHECK(rq.sack_blocks(three) == 3);
    CHECK(three[0] == blocks[0]);
    // Ranges drained below rcv_nxt disappear from the blocks.
    ByteQueue in;
    CHECK(rq.drain_into(pool, nxt + 100u, in) == 10);
    CHECK(rq.sack_blocks(blocks) == 4);
    for (const auto& b : blocks) {
        CHECK(b.left != nxt + 100u);
    }
    in.clear(pool);
    rq.clear(pool);
    CHECK(pool.in_use() == 0);
    CHECK(rq.sack_blocks(blocks) == 0);
}

TEST_CASE("ReassemblyQueue against a model: random overlapping inserts near the 2^32 wrap", "[pool][reassembly]")
{
    std::mt19937 rng(99);
    for (int round = 0; round < 40; ++round) {
        BufferPool pool(64, 512);
        ReassemblyQueue rq;
        ByteQueue in;
        // Stream offset 0 is this sequence number: the stream crosses 2^32 a few thousand bytes in.
        const SeqNumber isn(0xffffffffu - static_cast<std::uint32_t>(rng() % 5000));
        constexpr std::uint32_t total = 12000;
        std::map<std::uint32_t, std::byte> held;  // stream offset -> first copy received
        std::vector<std::byte> delivered;
        std::uint32_t nxt = 0;
        std::uint32_t version = 0;
        const std::size_t max_bytes = 3000;
        while (nxt < total) {
            ++version;
            const std::uint32_t len = 1 + rng() % 200;
            const bool in_order = rng() % 6 == 0;
            const std::uint32_t start =
                in_order ? nxt : std::min<std::uint32_t>(total - 1, nxt > 100 ? nxt - 100 + rng() % 2500 : rng() % 2500);
            const std::uint32_t end = std::min(total, start + len);
            std::vector<std::byte> segment(end - start);
            for (std::uint32_t i = start; i < end; ++i) {
                segment[i - start] = stream_byte(i, version);
            }
            if (start <= nxt && nxt < end) {
                // In order: the receiver appends it and advances, then drains.
                const auto fresh = std::span<const std::byte>(segment).subspan(nxt - start);
                REQUIRE(in.push(pool, fresh) == fresh.size());
                for (auto b : fresh) {
                    delivered.push_back(b);
                }
                nxt = end;
                const std::size_t drained = rq.drain_into(pool, isn + nxt, in);
                for (std::size_t i = 0; i < drained; ++i) {
                    REQUIRE(held.count(nxt) == 1);
                    delivered.push_back(held[nxt]);
                    ++nxt;
                }
                held.erase(held.begin(), held.lower_bound(nxt));
            } else if (start > nxt) {
                const std::size_t before = rq.bytes();
                const bool ok = rq.insert(pool, isn + nxt, isn + start, segment, max_bytes);
                std::size_t fresh = 0;
                for (std::uint32_t i = start; i < end; ++i) {
                    fresh += held.count(i) == 0 ? 1 : 0;
                }
                if (ok) {
                    for (std::uint32_t i = start; i < end; ++i) {
                        held.emplace(i, segment[i - start]);  // emplace keeps an existing (first) copy
                    }
                    REQUIRE(rq.bytes() == before + fresh);
                } else {
                    // Partial: re-derive the model from what the queue reports.
                    REQUIRE(rq.bytes() <= max_bytes);
                    std::array<SackBlock, ReassemblyQueue::max_ranges> ranges{};
                    const std::size_t n = rq.sack_blocks(ranges);
                    std::size_t covered = 0;
                    for (std::size_t r = 0; r < n; ++r) {
                        covered += static_cast<std::uint32_t>(ranges[r].right - ranges[r].left);
                        for (SeqNumber s = ranges[r].left; s < ranges[r].right; s += 1u) {
                            const std::uint32_t i = static_cast<std::uint32_t>(s - isn);
                            if (held.count(i) == 0) {
                                REQUIRE(i >= start);
                                REQUIRE(i < end);
                                held.emplace(i, segment[i - start]);
                            }
                        }
                    }
                    REQUIRE(covered == rq.bytes());
                }
            }
            REQUIRE(rq.valid());
            REQUIRE(rq.bytes() == held.size());
            REQUIRE(rq.bytes() <= max_bytes);
            REQUIRE(pool.in_use() == rq.chunk_count() + in.chunk_count());
            // Every advertised block is held, and blocks never overlap each other.
            std::array<SackBlock, 4> blocks{};
            const std::size_t nb = rq.sack_blocks(blocks);
            CHECK(nb == std::min<std::size_t>(4, rq.range_count()));
            for (std::size_t b = 0; b < nb; ++b) {
                REQUIRE(blocks[b].left < blocks[b].right);
                REQUIRE(isn + nxt < blocks[b].left);
                REQUIRE(held.count(static_cast<std::uint32_t>(blocks[b].left - isn)) == 1);
                REQUIRE(held.count(static_cast<std::uint32_t>(blocks[b].right - isn)) == 0);
            }
        }
        REQUIRE(in.size() == total);
        REQUIRE(read_all(in) == delivered);
        // The delivered stream is the first copy of every byte.
        rq.clear(pool);
        in.clear(pool);
        CHECK(pool.in_use() == 0);
    }
}

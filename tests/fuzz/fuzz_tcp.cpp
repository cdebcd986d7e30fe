// Input: a control byte (see fuzz_common.hpp), 4 bytes of source and 4 of destination IPv4 address for
// the pseudo header, then one TCP segment.
#include "fuzz_common.hpp"
#include "wire/checksum.hpp"
#include "wire/ipv4.hpp"
#include "wire/tcp.hpp"

#include <vector>

using namespace cm::wire;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size < 9) {
        return 0;
    }
    const bool fix_checksum = (data[0] & 1) != 0;
    const Bytes prefix = fuzz::input_bytes(data, 9);
    const Ipv4Address source = Ipv4Address::read(prefix, 1);
    const Ipv4Address destination = Ipv4Address::read(prefix, 5);
    const Bytes input = fuzz::input_bytes(data + 9, size - 9);
    std::vector<std::byte> segment(input.begin(), input.end());

    auto view = TcpView::check(segment);
    if (!view) {
        const WireError e = view.error();
        CM_FUZZ_ASSERT(e == WireError::truncated || e == WireError::bad_header_length);
        return 0;
    }
    CM_FUZZ_ASSERT(view->header_len() >= 20 && view->header_len() <= 60 && view->header_len() <= segment.size());
    CM_FUZZ_ASSERT(view->options().size() + 20 + view->payload().size() == segment.size());
    if (fix_checksum && segment.size() <= 0xffff) {
        store_be16(segment, 16, 0);
        ChecksumAccumulator acc;
        add_ipv4_pseudo_header(acc, source, destination, ip_protocol::tcp, static_cast<std::uint16_t>(segment.size()));
        acc.add(segment);
        store_be16(segment, 16, acc.finish());
    }

    auto repr = TcpRepr::parse(*view, source, destination);
    if (!repr) {
        const WireError e = repr.error();
        CM_FUZZ_ASSERT(e == WireError::bad_checksum || e == WireError::malformed);
        return 0;
    }
    CM_FUZZ_ASSERT(repr->sack_count <= TcpRepr::max_sack_blocks);
    CM_FUZZ_ASSERT(repr->header_len() <= TcpView::max_header_len && repr->header_len() % 4 == 0);
    // Any option set that fits in a segment also fits in our encoding: no SACK block is ever dropped here.
    CM_FUZZ_ASSERT(repr->emitted_sack_count() == repr->sack_count);

    std::vector<std::byte> out(repr->buffer_len());
    repr->emit(out, source, destination);
    auto again = TcpView::check(out);
    CM_FUZZ_ASSERT(again.has_value());
    CM_FUZZ_ASSERT(again->verify_checksum(source, destination));
    CM_FUZZ_ASSERT(again->header_len() == repr->header_len());
    auto reparsed = TcpRepr::parse(*again, source, destination);
    CM_FUZZ_ASSERT(reparsed.has_value());
    CM_FUZZ_ASSERT(*reparsed == *repr);
    // The fixed header is reproduced except the data offset (options are re-encoded), the NS bit, the
    // checksum and the urgent pointer (not kept).
    CM_FUZZ_ASSERT(equal_bytes(Bytes(out).first(12), Bytes(segment).first(12)));
    CM_FUZZ_ASSERT(equal_bytes(Bytes(out).subspan(13, 3), Bytes(segment).subspan(13, 3)));
    CM_FUZZ_ASSERT(equal_bytes(again->payload(), view->payload()));
    return 0;
}

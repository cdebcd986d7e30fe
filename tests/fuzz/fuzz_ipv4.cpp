// Input: a control byte (see fuzz_common.hpp), then one IPv4 datagram (padding allowed).
#include "fuzz_common.hpp"
#include "wire/checksum.hpp"
#include "wire/ipv4.hpp"

#include <algorithm>
#include <vector>

using namespace cm::wire;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size < 1) {
        return 0;
    }
    const bool fix_checksum = (data[0] & 1) != 0;
    const Bytes input = fuzz::input_bytes(data + 1, size - 1);
    std::vector<std::byte> packet(input.begin(), input.end());  // a copy: fix_checksum writes to it

    auto view = Ipv4View::check(packet);
    if (!view) {
        const WireError e = view.error();
        CM_FUZZ_ASSERT(e == WireError::truncated || e == WireError::bad_header_length ||
                       e == WireError::bad_total_length);
        return 0;
    }
    CM_FUZZ_ASSERT(view->header_len() >= 20 && view->header_len() <= view->total_length());
    CM_FUZZ_ASSERT(view->total_length() <= packet.size());
    CM_FUZZ_ASSERT(view->options().size() + 20 + view->payload().size() == view->total_length());

    if (fix_checksum) {
        const MutableBytes header = MutableBytes(packet).first(view->header_len());
        store_be16(header, 10, 0);
        store_be16(header, 10, internet_checksum(header));
        CM_FUZZ_ASSERT(view->verify_checksum());  // the view sees the same (now fixed) bytes
    }

    auto repr = Ipv4Repr::parse(*view);
    if (!repr) {
        const WireError e = repr.error();
        CM_FUZZ_ASSERT(e == WireError::bad_version || e == WireError::bad_checksum || e == WireError::fragmented ||
                       e == WireError::has_options);
        CM_FUZZ_ASSERT(!(fix_checksum && e == WireError::bad_checksum));
        return 0;
    }
    CM_FUZZ_ASSERT(repr->buffer_len() == view->total_length());

    std::vector<std::byte> out(repr->buffer_len());
    repr->emit(out);
    std::copy(view->payload().begin(), view->payload().end(), out.begin() + Ipv4Repr::header_len());

    auto again = Ipv4View::check(out);
    CM_FUZZ_ASSERT(again.has_value());
    CM_FUZZ_ASSERT(again->verify_checksum());
    auto reparsed = Ipv4Repr::parse(*again);
    CM_FUZZ_ASSERT(reparsed.has_value());
    CM_FUZZ_ASSERT(*reparsed == *repr);
    CM_FUZZ_ASSERT(equal_bytes(again->payload(), view->payload()));
    // Only the reserved flag bit and the checksum's representation of zero may differ from the input.
    auto header_in = view->bytes().first(20);
    auto header_out = again->bytes().first(20);
    for (std::size_t i = 0; i < 20; ++i) {
        if (i == 6 || i == 10 || i == 11) {
            continue;
        }
        CM_FUZZ_ASSERT(header_in[i] == header_out[i]);
    }
    CM_FUZZ_ASSERT((load_be16(header_in, 6) & 0x7fff) == load_be16(header_out, 6));
    return 0;
}

// Input: a control byte (see fuzz_common.hpp), then one ICMPv4 message.
#include "fuzz_common.hpp"
#include "wire/checksum.hpp"
#include "wire/icmp.hpp"

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
    std::vector<std::byte> message(input.begin(), input.end());

    auto view = IcmpView::check(message);
    if (!view) {
        CM_FUZZ_ASSERT(message.size() < IcmpView::header_len && view.error() == WireError::truncated);
        return 0;
    }
    CM_FUZZ_ASSERT(view->data().size() == message.size() - IcmpView::header_len);
    if (fix_checksum) {
        store_be16(message, 2, 0);
        store_be16(message, 2, internet_checksum(message));
    }

    auto repr = IcmpRepr::parse(*view);
    if (!repr) {
        CM_FUZZ_ASSERT(repr.error() == WireError::bad_checksum && !fix_checksum);
        return 0;
    }
    CM_FUZZ_ASSERT(repr->buffer_len() == message.size());

    std::vector<std::byte> out(repr->buffer_len());
    repr->emit(out);
    auto again = IcmpView::check(out);
    CM_FUZZ_ASSERT(again.has_value());
    CM_FUZZ_ASSERT(again->verify_checksum());
    auto reparsed = IcmpRepr::parse(*again);
    CM_FUZZ_ASSERT(reparsed.has_value());
    CM_FUZZ_ASSERT(*reparsed == *repr);
    // Everything but the checksum field (0x0000 and 0xffff both verify in rare cases) is reproduced.
    CM_FUZZ_ASSERT(equal_bytes(Bytes(out).first(2), Bytes(message).first(2)));
    CM_FUZZ_ASSERT(equal_bytes(Bytes(out).subspan(4), Bytes(message).subspan(4)));
    return 0;
}

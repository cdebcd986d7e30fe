// Input: one Ethernet frame.
#include "fuzz_common.hpp"
#include "wire/ethernet.hpp"

#include <algorithm>
#include <vector>

using namespace cm::wire;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const Bytes input = fuzz::input_bytes(data, size);
    auto view = EthernetView::check(input);
    if (!view) {
        CM_FUZZ_ASSERT(size < EthernetView::header_len && view.error() == WireError::truncated);
        return 0;
    }
    const EthernetRepr repr = EthernetRepr::parse(*view);
    CM_FUZZ_ASSERT(view->payload().size() == size - EthernetView::header_len);

    std::vector<std::byte> out(EthernetRepr::buffer_len() + view->payload().size());
    repr.emit(out);
    std::copy(view->payload().begin(), view->payload().end(), out.begin() + EthernetView::header_len);
    // Ethernet has no hidden state: the emitted frame is the input, byte for byte.
    CM_FUZZ_ASSERT(equal_bytes(out, input));

    auto again = EthernetView::check(out);
    CM_FUZZ_ASSERT(again.has_value());
    CM_FUZZ_ASSERT(EthernetRepr::parse(*again) == repr);
    return 0;
}

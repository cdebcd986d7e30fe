// Input: one ARP packet (an Ethernet payload, padding allowed).
#include "fuzz_common.hpp"
#include "wire/arp.hpp"

#include <array>

using namespace cm::wire;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const Bytes input = fuzz::input_bytes(data, size);
    auto view = ArpView::check(input);
    if (!view) {
        CM_FUZZ_ASSERT(size < ArpView::packet_len && view.error() == WireError::truncated);
        return 0;
    }
    auto repr = ArpRepr::parse(*view);
    if (!repr) {
        CM_FUZZ_ASSERT(repr.error() == WireError::unsupported || repr.error() == WireError::malformed);
        return 0;
    }
    CM_FUZZ_ASSERT(repr->operation == arp_op::request || repr->operation == arp_op::reply);

    std::array<std::byte, ArpRepr::buffer_len()> out{};
    repr->emit(out);
    // A packet that parsed has the fixed Ethernet/IPv4 layout, so emit reproduces its 28 bytes exactly.
    CM_FUZZ_ASSERT(equal_bytes(out, input.first(ArpView::packet_len)));

    auto again = ArpView::check(out);
    CM_FUZZ_ASSERT(again.has_value());
    auto reparsed = ArpRepr::parse(*again);
    CM_FUZZ_ASSERT(reparsed.has_value());
    CM_FUZZ_ASSERT(*reparsed == *repr);
    return 0;
}

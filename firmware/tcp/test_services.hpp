// Test services on the card, on the classic ports, for tests and benchmarks of TCP alone (no bus):
//
//   echo     7  (RFC 862)  every byte received is sent back; when the client finishes sending (FIN), the card
//                          finishes echoing and closes. Backpressure: bytes are taken from the receive queue
//                          only as fast as the send queue has room, so a client that does not read sees its
//                          own sending stall (the card's window closes), never lost data.
//   discard  9  (RFC 863)  everything received is thrown away; the card closes when the client does.
//   chargen 19  (RFC 864)  the card sends a known pattern. How much: if the client sends a line holding a
//                          decimal byte count ("1048576\n", at most 20 digits) within 100 ms of the
//                          handshake, exactly that many bytes and then a FIN; a count of 0 sends nothing and
//                          closes. If nothing arrives within 100 ms, or the first line is not a number, the
//                          pattern flows until the client closes or resets. Anything else the client sends is
//                          discarded.
//
// The pattern (chargen_byte): RFC 864's rotating lines. Line k (k = 0, 1, ...) is 72 printable characters,
// character c of it being ASCII 32 + ((k + c) mod 95), followed by CR LF: 74 bytes per line, repeating
// every 95 lines. Byte i of the stream is line i / 74, column i % 74. A client checks what it received by
// generating the same bytes (tests/integration/tcp_lib.py).
//
// Counters: svc.* (connections and bytes per service). Ownership: the services listen on construction and
// stop listening on destruction; they hold no connection beyond what the layer holds (state indexed by
// ConnectionId::index). Thread rule: the loop's thread, like the layer.
#pragma once

#include "base/counters.hpp"
#include "tcp/tcp.hpp"

#include <array>
#include <cstdint>
#include <vector>

namespace cm::tcp {

#define CM_TEST_SERVICE_COUNTERS(X)                                      \
    X(echo_connections, "echo (7) connections accepted")                \
    X(echo_bytes, "bytes echoed")                                       \
    X(discard_connections, "discard (9) connections accepted")          \
    X(discard_bytes, "bytes discarded")                                 \
    X(chargen_connections, "chargen (19) connections accepted")         \
    X(chargen_bytes, "pattern bytes sent")                              \
    X(chargen_counted, "chargen connections that asked for a byte count") \
    X(closed_by_peer_reset, "service connections reset by the client")
CM_DECLARE_COUNTERS(TestServiceCounters, CM_TEST_SERVICE_COUNTERS)

class TestServices final : public TcpHandler {
public:
    static constexpr std::uint16_t echo_port = 7;
    static constexpr std::uint16_t discard_port = 9;
    static constexpr std::uint16_t chargen_port = 19;
    static constexpr Duration chargen_count_wait = std::chrono::milliseconds(100);

    explicit TestServices(TcpLayer& tcp);
    ~TestServices() override;
    TestServices(const TestServices&) = delete;
    TestServices& operator=(const TestServices&) = delete;

    /// Byte `offset` of the chargen pattern.
    [[nodiscard]] static std::byte chargen_byte(std::uint64_t offset) noexcept;
    /// Fills `out` with the pattern from `offset`.
    static void chargen_fill(std::uint64_t offset, std::span<std::byte> out) noexcept;

    bool on_accept(ConnectionId id, const FourTuple& tuple) override;
    void on_readable(ConnectionId id) override;
    void on_writable(ConnectionId id) override;
    void on_timer(ConnectionId id) override;
    void on_closed(ConnectionId id, CloseReason reason) override;

    [[nodiscard]] const TestServiceCounters& counters() const noexcept { return _counters; }
    /// Adds svc.* to `registry`.
    void register_counters(CounterRegistry& registry) const;

private:
    enum class Service : std::uint8_t { none, echo, discard, chargen };
    struct Conn {
        Service service = Service::none;
        bool counting = false;     // chargen: waiting for the count line
        bool unlimited = false;    // chargen: no count, send until the client leaves
        bool done = false;         // closed by us
        std::uint8_t line_len = 0;
        std::array<char, 21> line{};
        std::uint64_t offset = 0;     // chargen: pattern bytes sent
        std::uint64_t remaining = 0;  // chargen: bytes still to send (counted mode)
    };

    Conn& conn(ConnectionId id);
    void echo(ConnectionId id);
    void discard(ConnectionId id);
    void chargen_read(ConnectionId id, Conn& c);
    void chargen_send(ConnectionId id, Conn& c);

    TcpLayer& _tcp;
    std::vector<Conn> _conns;  // by ConnectionId::index, grown on demand
    std::array<std::byte, 16384> _scratch{};
    TestServiceCounters _counters;
};

}  // namespace cm::tcp

// The card's bus test service (cmfw --bus-echo): every byte a host writes on one of its bus connections
// comes back on the same connection, and the host's EOF comes back as the card's EOF. It lets the bus and
// libcm be tested and measured without the network. Two ways in:
//   - connect: the host connects towards client id CM_BUS_CLIENT_ECHO (cm_connect(qp, CM_CLIENT_ECHO));
//   - dial:    the host listens on a port, then sets global option CM_BUS_GOPT_ECHO_DIAL (port | count << 16):
//              the service opens `count` bus connections towards that listener on the same queue pair, as
//              the proxy does for real clients, with test client addresses 192.0.2.1:(40000 + i).
// Back-pressure is the bus's own: when the host does not read, send() takes less, the service takes less
// of the host's data (on_data returns short), and the host runs out of credit.
#pragma once

#include "bus/engine.hpp"

namespace cm::bus {

class EchoService final : public BusService, private BusConnHandler {
public:
    static constexpr std::uint32_t test_client_addr = 0xc0000201;  // 192.0.2.1 (TEST-NET-1)
    static constexpr std::uint16_t test_client_port = 40000;
    static constexpr std::uint32_t max_dial = 1024;

    explicit EchoService(BusEngine& engine) : _engine(engine) { engine.add_service(*this); }

    BusConnHandler* on_connect(std::uint64_t client_id, ConnRef conn) override;
    std::optional<std::uint32_t> on_global_option(std::uint32_t qp, std::uint32_t option, std::uint64_t value) override;

private:
    std::size_t on_data(ConnRef conn, std::span<const std::byte> data) override;
    void on_eof(ConnRef conn) override;
    void on_writable(ConnRef conn) override;
    void on_closed(ConnRef /*conn*/, CloseReason /*reason*/) override {}

    BusEngine& _engine;
    std::uint64_t _dialled = 0;
};

}  // namespace cm::bus

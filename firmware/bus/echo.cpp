#include "bus/echo.hpp"

namespace cm::bus {

BusConnHandler* EchoService::on_connect(std::uint64_t client_id, ConnRef /*conn*/)
{
    return client_id == CM_BUS_CLIENT_ECHO ? this : nullptr;
}

std::optional<std::uint32_t> EchoService::on_global_option(std::uint32_t qp, std::uint32_t option, std::uint64_t value)
{
    if (option != CM_BUS_GOPT_ECHO_DIAL) {
        return std::nullopt;
    }
    const auto port = static_cast<std::uint16_t>(value & 0xffff);
    const std::uint64_t count = value >> 16;
    if (port == 0 || count == 0 || count > max_dial) {
        return CM_BUS_EINVAL;
    }
    for (std::uint64_t i = 0; i < count; ++i) {
        ConnInfo info;
        info.peer_addr = test_client_addr;
        info.peer_port = static_cast<std::uint16_t>(test_client_port + (_dialled++ % 20000));
        info.client_id = _dialled;
        auto opened = _engine.open_connection(port, info, *this, qp);
        if (!opened) {
            return opened.error();
        }
    }
    return 0;
}

std::size_t EchoService::on_data(ConnRef conn, std::span<const std::byte> data)
{
    if (!_engine.can_send(conn)) {
        return data.size();  // closing, or the host already got our EOF: nothing can go back
    }
    return _engine.send(conn, data);
}

void EchoService::on_eof(ConnRef conn)
{
    _engine.send_eof(conn);
}

void EchoService::on_writable(ConnRef conn)
{
    _engine.resume(conn);
}

}  // namespace cm::bus

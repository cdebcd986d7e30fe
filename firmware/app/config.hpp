// cmfw's configuration: one set of options, read from the command line and, with --config FILE, from a
// TOML/INI file whose keys are the long option names (command line wins over the file).
#pragma once

#include "base/expected.hpp"
#include "base/log.hpp"
#include "bus/device.hpp"
#include "link/fault_channel.hpp"
#include "proxy/proxy.hpp"
#include "stack/interface.hpp"
#include "tcp/tcp.hpp"

#include <optional>
#include <string>
#include <vector>

namespace cm::app {

/// How the card reaches its port: libpcap (the default), a plain AF_PACKET socket, or libpcap with the
/// socket as the fallback when libpcap cannot capture (qemu-user).
enum class PortIo { Auto, Pcap, Packet };

struct FirmwareConfig {
    std::string interface;       // the card's network port
    stack::InterfaceConfig net;  // MAC, address, gateway, ARP timers
    std::string pcap_tap;        // write every frame to this .pcap file ("" = off)
    PortIo port_io = PortIo::Auto;
    // User-space impairment of the port (ImpairedLink), netem-style; none of either: no ImpairedLink at all.
    std::optional<link::FaultProfile> impair_to_card;    // frames received on the port
    std::optional<link::FaultProfile> impair_to_client;  // frames sent on the port
    std::string counters_file;   // SIGUSR1 and exit write the counters here ("" = stderr on SIGUSR1)
    std::string ready_file;      // created, holding our pid, once the port is open and announced
    log::Level log_level = log::Level::info;
    Duration busy_poll{0};       // spin this long after the last work before sleeping (0: sleep at once)
    bus::BusDeviceConfig bus;    // --bus-*: the host bus (no --bus-memory: no bus)
    tcp::TcpConfig tcp;          // --tcp-*: limits and settings of the card's TCP (secret: random at start)
    bool test_services = false;  // --test-services: echo (7), discard (9), chargen (19) on TCP
    proxy::ProxyConfig proxy;    // --proxy-*: the proxies by port (none: no proxy)
    // --boot-*: given by the boot ROM when it booted us from a flash slot (docs/image.md). Once the card has
    // been up for `boot_confirm_after`, the firmware confirms a healthy start in the flash's boot metadata;
    // a slot on trial that never confirms is rolled back by the boot ROM.
    std::string boot_flash;                      // "" = not booted from flash
    std::uint32_t boot_slot = 0;                 // 0 = A, 1 = B
    Duration boot_confirm_after{std::chrono::seconds(1)};
};

/// Outcome of parsing: either a config to run with, or an exit (help text, version, or an error message
/// already formatted for the user) with the status to exit with.
struct ParseOutcome {
    std::optional<FirmwareConfig> config;
    int exit_code = 0;
    std::string message;
};

ParseOutcome parse_firmware_config(const std::vector<std::string>& args);

}  // namespace cm::app

// The firmware assembled: clock, loop, the card's port, the stack, counters, signals.
//
// The port, from the stack down:
//   NetworkInterface -> [PcapFileTap, --pcap-tap] -> [ImpairedLink, --impair*] -> PcapLink or PacketSocketLink (the veth)
// The tap sits outside the impairment, so the capture holds what the stack received and sent: frames
// lost on the way to the card are not in it, frames the card sent and the impairment then lost are.
#pragma once

#include "app/config.hpp"
#include "bus/device.hpp"
#include "base/clock.hpp"
#include "base/counters.hpp"
#include "core/event_loop.hpp"
#include "link/impaired_link.hpp"
#include "link/link.hpp"
#include "link/pcap_link.hpp"
#include "stack/icmp.hpp"
#include "stack/interface.hpp"
#include "tcp/tcp.hpp"
#include "tcp/test_services.hpp"

#include <memory>
#include <string>

namespace cm::app {

class Firmware {
public:
    /// Opens the port and builds the stack; returns an error message when the port cannot be opened.
    static Expected<std::unique_ptr<Firmware>, std::string> create(const FirmwareConfig& config);
    ~Firmware();

    /// Runs until SIGTERM or SIGINT; returns the process exit status.
    int run();

    /// Writes every counter as "group.name value" lines: atomically to the counters file when one is
    /// configured, otherwise to stderr.
    void report_counters() const;

private:
    Firmware(const FirmwareConfig& config, std::unique_ptr<SteadyClock> clock, std::unique_ptr<link::Link> port,
             std::unique_ptr<link::ImpairedLink> impaired, std::unique_ptr<link::Link> tap);
    void on_signal();
    static void on_stats_timer(void* self);
    static void on_boot_confirm_timer(void* self);
    void confirm_boot();
    void write_ready_file() const;

    FirmwareConfig _config;
    std::unique_ptr<SteadyClock> _clock;  // made before the links, which read it (ImpairedLink)
    core::EventLoop _loop;
    std::unique_ptr<bus::BusDevice> _bus;             // the host bus, when --bus-memory is given
    std::unique_ptr<link::Link> _port;                // the port: PcapLink, or PacketSocketLink (--port-io)
    std::unique_ptr<link::ImpairedLink> _impaired;    // around the port, when --impair* is given
    std::unique_ptr<link::Link> _tap;                 // the pcap-file tap around those, when configured
    stack::NetworkInterface _interface;
    stack::IcmpLayer _icmp;
    std::unique_ptr<tcp::TcpLayer> _tcp;          // after the interface it registers with
    std::unique_ptr<proxy::Proxy> _proxy;          // --proxy-*: after the bus and TCP it uses
    std::unique_ptr<tcp::TestServices> _services;  // --test-services; before the layer it listens on goes
    CounterRegistry _counters;
    core::Timer _stats_timer;
    core::Timer _boot_confirm_timer;  // --boot-flash: confirms a healthy start in the flash
    int _signal_fd = -1;
};

}  // namespace cm::app

#include "app/firmware.hpp"

#include "base/log.hpp"
#include "boot/elf_info.hpp"
#include "boot/flash.hpp"
#include "boot/image_format.hpp"
#include "link/fault_profile_parse.hpp"
#include "link/pcap_file_tap.hpp"
#include "link/packet_socket_link.hpp"
#include "link/pcap_link.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>

namespace cm::app {
namespace {

constexpr auto stats_interval = std::chrono::seconds(1);

/// The link the stack talks to: the outermost of port, impairment, tap.
link::Link& outer(const std::unique_ptr<link::Link>& port, const std::unique_ptr<link::ImpairedLink>& impaired,
                  const std::unique_ptr<link::Link>& tap)
{
    if (tap) {
        return *tap;
    }
    if (impaired) {
        return *impaired;
    }
    return *port;
}

/// The card's port: libpcap, or a plain packet socket where libpcap cannot capture (--port-io; PortIo::Auto
/// tries libpcap first: qemu-user, which runs the aarch64 image on the emulated card, lacks its packet ring).
Expected<std::unique_ptr<link::Link>, std::string> open_port(const link::PcapLinkConfig& config, PortIo io)
{
    if (io != PortIo::Packet) {
        auto pcap = link::PcapLink::open(config);
        if (pcap) {
            return std::unique_ptr<link::Link>(std::move(*pcap));
        }
        if (io == PortIo::Pcap) {
            return Unexpected{pcap.error()};
        }
        log::warn("{}; trying a plain packet socket (--port-io packet)", pcap.error());
    }
    auto packet = link::PacketSocketLink::open(config);
    if (!packet) {
        return Unexpected{packet.error()};
    }
    return std::unique_ptr<link::Link>(std::move(*packet));
}

}  // namespace

Expected<std::unique_ptr<Firmware>, std::string> Firmware::create(const FirmwareConfig& config)
{
    link::PcapLinkConfig port_config;
    port_config.interface = config.interface;
    port_config.card_mac = config.net.mac.octets;
    auto port = open_port(port_config, config.port_io);
    if (!port) {
        return Unexpected{port.error()};
    }
    auto clock = std::make_unique<SteadyClock>();
    std::unique_ptr<link::ImpairedLink> impaired;
    if (config.impair_to_card || config.impair_to_client) {
        impaired = std::make_unique<link::ImpairedLink>(**port, *clock, config.impair_to_card.value_or(link::FaultProfile{}),
                                                        config.impair_to_client.value_or(link::FaultProfile{}),
                                                        port_config.tx_batch);
    }
    std::unique_ptr<link::Link> tap;
    if (!config.pcap_tap.empty()) {
        link::Link& inner = impaired ? static_cast<link::Link&>(*impaired) : **port;
        auto opened = link::PcapFileTap::open(inner, config.pcap_tap);
        if (!opened) {
            return Unexpected{opened.error()};
        }
        tap = std::move(*opened);
    }
    return std::unique_ptr<Firmware>(
        new Firmware(config, std::move(clock), std::move(*port), std::move(impaired), std::move(tap)));
}

Firmware::Firmware(const FirmwareConfig& config, std::unique_ptr<SteadyClock> clock, std::unique_ptr<link::Link> port,
                   std::unique_ptr<link::ImpairedLink> impaired, std::unique_ptr<link::Link> tap)
    : _config(config),
      _clock(std::move(clock)),
      _loop(*_clock),
      _port(std::move(port)),
      _impaired(std::move(impaired)),
      _tap(std::move(tap)),
      _interface(outer(_port, _impaired, _tap), _loop.timers(), config.net),
      _icmp(_interface),
      _stats_timer(&Firmware::on_stats_timer, this),
      _boot_confirm_timer(&Firmware::on_boot_confirm_timer, this)
{
    _interface.register_counters(_counters);
    _counters.add("icmp", _icmp.counters());
    if (_impaired) {
        _counters.add("impair.to_card", _impaired->rx_faults());
        _counters.add("impair.to_client", _impaired->tx_faults());
    }
    _counters.add("timers", _loop.timers().counters());
    _counters.add("loop", _loop.counters());
    {
        // TCP: a fresh secret per start (table hash key, ISNs, SYN cookies). The layer is a source ahead of
        // the interface, so the segments it queues leave in the same iteration's link flush.
        tcp::TcpConfig tcp_config = config.tcp;
        std::random_device random;
        for (auto& byte : tcp_config.secret) {
            byte = static_cast<std::uint8_t>(random());
        }
        _tcp = std::make_unique<tcp::TcpLayer>(_interface, _loop.timers(), *_clock, tcp_config);
        _tcp->register_counters(_counters);
        _loop.add_source(*_tcp);
        if (config.test_services) {
            _services = std::make_unique<tcp::TestServices>(*_tcp);
            _services->register_counters(_counters);
        }
    }
    _loop.add_source(_interface);
    if (!config.bus.memory_path.empty()) {
        bus::BusDeviceConfig bus_config = config.bus;
        bus_config.engine.fw_version_str = CM_VERSION;
        unsigned major = 0, minor = 0, patch = 0;
        if (std::sscanf(CM_VERSION, "%u.%u.%u", &major, &minor, &patch) == 3) {
            bus_config.engine.fw_version = major << 16 | minor << 8 | patch;
        }
        // Booted from a flash: the host may load firmware over the bus into the other slot (docs/bus.md).
        bus_config.fwload.flash_path = config.boot_flash;
        bus_config.fwload.running_slot = config.boot_slot;
        auto bus = bus::BusDevice::create(bus_config, _clock->now());
        if (!bus) {
            throw std::runtime_error(bus.error());
        }
        _bus = std::move(*bus);
        _bus->register_counters(_counters);
        _loop.add_source(*_bus);
    }
    if (!config.proxy.ports.empty()) {
        // After the bus in the loop: the proxy's poll() dispatches what the bus callbacks left queued.
        _proxy = std::make_unique<proxy::Proxy>(*_tcp, _bus->engine(), _loop.timers(), config.proxy);
        if (std::string error = _proxy->start(); !error.empty()) {
            throw std::runtime_error(error);
        }
        _proxy->register_counters(_counters);
        _loop.add_source(*_proxy);
    }
    _loop.set_busy_poll(config.busy_poll);

    // Signals arrive as readable data on a signalfd, handled by the loop like any other event.
    sigset_t signals;
    sigemptyset(&signals);
    for (int s : {SIGTERM, SIGINT, SIGUSR1, SIGHUP}) {
        sigaddset(&signals, s);
    }
    sigprocmask(SIG_BLOCK, &signals, nullptr);
    _signal_fd = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
    if (_signal_fd < 0) {
        throw std::runtime_error(fmt::format("signalfd: {}", std::strerror(errno)));
    }
    _loop.watch_fd(_signal_fd, [this] { on_signal(); });
}

Firmware::~Firmware()
{
    if (_signal_fd >= 0) {
        ::close(_signal_fd);
    }
}

void Firmware::on_signal()
{
    signalfd_siginfo info{};
    while (::read(_signal_fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        switch (info.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            log::info("signal {}: shutting down", info.ssi_signo == SIGTERM ? "TERM" : "INT");
            _loop.stop();
            break;
        case SIGUSR1:
            report_counters();
            break;
        default:
            break;  // SIGHUP: nothing to reload yet
        }
    }
}

int Firmware::run()
{
    _interface.start();
    _interface.flush();
    _loop.timers().schedule_after(_stats_timer, stats_interval);
    write_ready_file();
    log::info("cmfw {} up: port {} mac {} address {}", CM_VERSION, _config.interface, _config.net.mac,
              _config.net.address);
    if (!_config.boot_flash.empty()) {
        const boot::ElfInfo self = boot::read_own_elf_info();
        log::info("booted from slot {} of {}: build id {}; confirming after {} ms", boot::slot_letter(_config.boot_slot),
                  _config.boot_flash, self.build_id.empty() ? "none" : boot::to_hex(self.build_id),
                  std::chrono::duration_cast<std::chrono::milliseconds>(_config.boot_confirm_after).count());
        _loop.timers().schedule_after(_boot_confirm_timer, _config.boot_confirm_after);
    }
    if (_impaired) {
        log::info("impairing the port in user space: to card: {}; to client: {}",
                  link::describe_fault_profile(_impaired->rx_profile()),
                  link::describe_fault_profile(_config.impair_to_client.value_or(link::FaultProfile{})));
    }
    _loop.run();
    _interface.flush();
    if (_bus) {
        _bus->stop();
    }
    report_counters();
    if (!_config.ready_file.empty()) {
        std::remove(_config.ready_file.c_str());
    }
    log::info("cmfw stopped");
    return 0;
}

void Firmware::on_stats_timer(void* self)
{
    // libpcap's kernel drop count is read once a second, off the per-packet path.
    auto* firmware = static_cast<Firmware*>(self);
    firmware->_port->refresh_stats();
    firmware->_loop.timers().schedule_after(firmware->_stats_timer, stats_interval);
}

void Firmware::on_boot_confirm_timer(void* self)
{
    static_cast<Firmware*>(self)->confirm_boot();
}

// The card has run its loop for --boot-confirm-after since it came up: tell the boot ROM, through the
// flash's boot metadata, that this slot starts healthy. Once, off the datapath (a few small writes).
void Firmware::confirm_boot()
{
    auto flash = boot::FlashFile::open(_config.boot_flash);
    if (!flash) {
        log::error("boot: cannot confirm: {}", flash.error());
        return;
    }
    if (auto locked = flash->lock(); !locked) {
        log::error("boot: cannot confirm: {}", locked.error());
        return;
    }
    auto meta = flash->read_metadata();
    if (!meta) {
        log::error("boot: cannot confirm: {}", meta.error());
        return;
    }
    const char slot = boot::slot_letter(_config.boot_slot);
    if (!boot::record_confirm(*meta, _config.boot_slot)) {
        log::info("boot: slot {} is {} (running slot {}): nothing to confirm", slot,
                  boot::slot_state_name(meta->slots[_config.boot_slot].state), boot::slot_letter(meta->running_slot));
        return;
    }
    if (auto written = flash->write_metadata(*meta); !written) {
        log::error("boot: cannot confirm: {}", written.error());
        return;
    }
    log::info("boot: slot {} confirmed: a healthy start", slot);
}

void Firmware::write_ready_file() const
{
    if (_config.ready_file.empty()) {
        return;
    }
    const std::string tmp = _config.ready_file + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << ::getpid() << '\n';
    }
    std::rename(tmp.c_str(), _config.ready_file.c_str());
}

void Firmware::report_counters() const
{
    std::string text;
    _counters.for_each([&](std::string_view name, std::string_view, std::uint64_t value) {
        text += fmt::format("{} {}\n", name, value);
    });
    if (_config.counters_file.empty()) {
        std::fputs(text.c_str(), stderr);
        return;
    }
    // Write-then-rename: a reader never sees a half-written file.
    const std::string tmp = _config.counters_file + ".tmp";
    std::FILE* out = std::fopen(tmp.c_str(), "w");
    if (out == nullptr) {
        log::warn("counters: cannot write {}: {}", tmp, std::strerror(errno));
        return;
    }
    std::fputs(text.c_str(), out);
    std::fclose(out);
    if (std::rename(tmp.c_str(), _config.counters_file.c_str()) != 0) {
        log::warn("counters: cannot rename to {}: {}", _config.counters_file, std::strerror(errno));
    }
}

}  // namespace cm::app

#include "app/config.hpp"

#include "link/fault_profile_parse.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <tuple>
#include <sstream>

namespace cm::app {

ParseOutcome parse_firmware_config(const std::vector<std::string>& args)
{
    FirmwareConfig config;
    std::string mac_text;
    std::string ip_text;
    std::string gateway_text;
    std::string level_text = "info";
    unsigned arp_reachable_s = 60;
    unsigned arp_retries = 3;
    unsigned busy_poll_us = 0;
    unsigned bus_notify_coalesce_us = 0;
    unsigned bus_lazy_completions_ms = 50;
    std::string impair_both;
    std::string impair_to_card;
    std::string impair_to_client;
    // the proxy (proxy/proxy.hpp)
    std::vector<std::string> proxy_http, proxy_pass, proxy_allow, proxy_deny;
    std::string proxy_bus_mode = "pooled";
    std::string proxy_require_header;
    unsigned proxy_request_timeout_ms = 30000, proxy_keepalive_timeout_ms = 75000;
    unsigned proxy_slow_request_after_ms = 100, proxy_slow_request_delay_ms = 20;
    unsigned proxy_response_timeout_ms = 60000, proxy_send_timeout_ms = 60000, proxy_pass_idle_timeout_ms = 300000;

    CLI::App app{"cmfw: the cm adapter's firmware. Owns one network port and one IPv4 address on it.", "cmfw"};
    app.set_config("--config", "", "read options from a TOML/INI file (keys are the long option names)");
    app.set_version_flag("--version", std::string(CM_VERSION));
    app.add_option("--interface", config.interface, "network port to own (e.g. the card side of a veth)")->required();
    app.add_option("--ip", ip_text, "the card's address and subnet, e.g. 198.18.0.2/24")->required();
    app.add_option("--mac", mac_text, "the card's MAC address, e.g. 02:00:00:00:00:02")->required();
    app.add_option("--gateway", gateway_text, "next hop for off-subnet destinations (default: none)");
    std::string port_io_text = "auto";
    app.add_option("--port-io", port_io_text,
                   "how to reach the port: pcap (libpcap), packet (a plain AF_PACKET socket, for qemu-user), or auto "
                   "(pcap, else packet)")
        ->capture_default_str();
    app.add_option("--pcap-tap", config.pcap_tap, "write every frame received and sent to this .pcap file");
    CLI::Option* impair_both_option = app.add_option("--impair", impair_both,
                   "impair both directions of the port in user space, netem syntax: \"delay 20ms [5ms] loss 1% "
                   "duplicate 1% reorder 5% rate 10mbit limit 1000 seed 7\"");
    CLI::Option* impair_to_card_option = app.add_option("--impair-to-card", impair_to_card, "impair only frames received on the port (overrides --impair)");
    CLI::Option* impair_to_client_option = app.add_option("--impair-to-client", impair_to_client, "impair only frames sent on the port (overrides --impair)");
    app.add_option("--counters-file", config.counters_file, "write counters here on SIGUSR1 and at exit");
    app.add_option("--ready-file", config.ready_file, "create this file (our pid) once the port is up");
    app.add_option("--log-level", level_text, "debug, info, warn or error")->capture_default_str();
    app.add_option("--rx-batch", config.net.rx_batch, "frames taken from the port per loop iteration")
        ->check(CLI::Range(1, 4096))
        ->capture_default_str();
    app.add_option("--busy-poll", busy_poll_us,
                   "microseconds to keep polling the port after the last packet before sleeping; trades a "
                   "core for wake-up latency (0: sleep at once)")
        ->check(CLI::Range(0, 1000000))
        ->capture_default_str();
    app.add_option("--bus-memory", config.bus.memory_path, "the host bus: this shared-memory file (cmemu creates it)");
    app.add_option("--bus-socket", config.bus.socket_path, "the bus's attach socket for host processes (with --bus-memory)");
    app.add_option("--bus-size", config.bus.size, "bus memory bytes (default: the file's size)");
    app.add_option("--bus-queue-pairs", config.bus.layout.qp_count, "bus queue pairs")->capture_default_str();
    app.add_option("--bus-ring-entries", config.bus.layout.ring_entries, "descriptors per bus ring (a power of two)")
        ->capture_default_str();
    app.add_option("--bus-slot-size", config.bus.layout.slot_size, "bytes per bus buffer slot")->capture_default_str();
    app.add_option("--bus-credit", config.bus.layout.conn_credit, "slots in flight per bus connection and direction")
        ->capture_default_str();
    app.add_option("--bus-notify-coalesce-us", bus_notify_coalesce_us,
                   "at most one notification (interrupt) per bus queue pair per this many microseconds; events "
                   "posted meanwhile wait for the next one (0: notify at once)")
        ->check(CLI::Range(0u, 100000u))
        ->capture_default_str();
    app.add_option("--bus-lazy-completions-ms", bus_lazy_completions_ms,
                   "a host that says it is not waiting for slots (CM_BUS_WAKE_WORK) is not woken for transmit "
                   "completions alone for up to this long: they ride with its next wake-up (0: it is woken)")
        ->check(CLI::Range(0u, 1000u))
        ->capture_default_str();
    app.add_flag("--bus-echo", config.bus.echo, "run the bus echo test service (docs/bus.md)");
    app.add_option("--bus-memory-peer-qps", config.bus.memory_peer_qps,
                   "bus queue pairs lent up front to a host that has only the memory (a VM's ivshmem-plain driver)");
    // TCP (docs/tcp.md): the limits the connection table, the control blocks and the pool are sized from.
    std::string tcp_congestion = "cubic";
    unsigned tcp_time_wait_ms = 1000;
    std::string boot_slot_text;
    unsigned boot_confirm_after_ms = 1000;
    bool tcp_no_syn_cookies = false;
    app.add_flag("--test-services", config.test_services,
                 "serve echo (7), discard (9) and chargen (19) on TCP (docs/tcp.md: how much chargen sends)");
    app.add_option("--tcp-max-connections", config.tcp.max_connections, "TCP control blocks, every state but LISTEN")
        ->check(CLI::Range(1, 16777216))
        ->capture_default_str();
    app.add_option("--tcp-syn-backlog", config.tcp.syn_backlog, "half-open connections per listener; beyond: SYN cookies")
        ->check(CLI::Range(1, 16777216))
        ->capture_default_str();
    app.add_flag("--tcp-no-syn-cookies", tcp_no_syn_cookies, "drop SYNs beyond the backlog instead of answering with cookies");
    app.add_option("--tcp-pool-chunks", config.tcp.pool_chunks, "chunks in the shared TCP data pool")
        ->check(CLI::Range(16, 67108864))
        ->capture_default_str();
    app.add_option("--tcp-chunk-size", config.tcp.pool_chunk_size, "bytes per pool chunk")
        ->check(CLI::Range(256, 65536))
        ->capture_default_str();
    app.add_option("--tcp-buffer-sets", config.tcp.buffer_sets,
                   "connections with data buffers attached at once (0: as many as --tcp-max-connections)")
        ->capture_default_str();
    app.add_option("--tcp-send-buffer", config.tcp.send_buffer, "per-connection cap on queued outgoing bytes")
        ->check(CLI::Range(1024, 1 << 30))
        ->capture_default_str();
    app.add_option("--tcp-recv-buffer", config.tcp.recv_buffer, "per-connection receive window (unread bytes)")
        ->check(CLI::Range(4096, 1 << 30))
        ->capture_default_str();
    app.add_option("--tcp-time-wait", tcp_time_wait_ms, "milliseconds in TIME_WAIT")
        ->check(CLI::Range(0, 240000))
        ->capture_default_str();
    app.add_option("--tcp-congestion", tcp_congestion, "congestion control: cubic or newreno")->capture_default_str();
    app.add_option("--arp-reachable", arp_reachable_s, "seconds a resolved neighbour is trusted")
        ->check(CLI::Range(1, 86400))
        ->capture_default_str();
    app.add_option("--arp-retries", arp_retries, "requests before a neighbour is given up")
        ->check(CLI::Range(1, 100))
        ->capture_default_str();

    auto& px = config.proxy;
    app.add_option("--boot-flash", config.boot_flash, "the flash file we were booted from (set by the boot ROM)");
    app.add_option("--boot-slot", boot_slot_text, "the flash slot we were booted from: A or B (set by the boot ROM)");
    app.add_option("--boot-confirm-after", boot_confirm_after_ms,
                   "ms of healthy running before confirming the boot in flash (a trial slot that never confirms is rolled back)")
        ->capture_default_str();
    app.add_option("--proxy-http", proxy_http, "HTTP/1.1 proxy on this card port; PORT or PORT:HOST_PORT (repeatable)");
    app.add_option("--proxy-pass", proxy_pass, "pass-through proxy on this card port; PORT or PORT:HOST_PORT (repeatable)");
    app.add_option("--proxy-bus-mode", proxy_bus_mode, "bus connections: pooled (persistent, reused) or per-request")
        ->capture_default_str();
    app.add_option("--proxy-pool", px.pool_size, "pooled mode: persistent bus connections per HTTP port")
        ->check(CLI::Range(1u, 65535u))
        ->capture_default_str();
    app.add_option("--proxy-max-clients", px.max_clients, "client connections held at once (0: the TCP limit)")
        ->capture_default_str();
    app.add_option("--proxy-max-bus", px.max_bus_connections, "bus connections open at once")
        ->check(CLI::Range(1u, 1u << 20))
        ->capture_default_str();
    app.add_option("--proxy-max-header", px.limits.max_header_bytes, "request line + headers limit in bytes (431 beyond)")
        ->check(CLI::Range(std::size_t{256}, std::size_t{1} << 24))
        ->capture_default_str();
    app.add_option("--proxy-max-body", px.limits.max_body_bytes, "request body limit in bytes (413 beyond)")
        ->check(CLI::Range(std::uint64_t{0}, std::uint64_t{1} << 32))
        ->capture_default_str();
    app.add_option("--proxy-response-buffer", px.response_buffer,
                   "response bytes held per client beyond its TCP send buffer (then backpressure on the bus)")
        ->capture_default_str();
    app.add_option("--proxy-slow-request-delay", proxy_slow_request_delay_ms,
                   "ms a slow request (see --proxy-slow-request-after) may wait for the host's next wake-up instead of "
                   "waking it (0: never waits)")
        ->check(CLI::Range(0u, 1000u))
        ->capture_default_str();
    app.add_option("--proxy-slow-request-after", proxy_slow_request_after_ms,
                   "ms from a request's first byte to its end that make it slow")
        ->capture_default_str();
    app.add_option("--proxy-request-timeout", proxy_request_timeout_ms, "ms from a request's first byte to its end (408)")
        ->capture_default_str();
    app.add_option("--proxy-keepalive-timeout", proxy_keepalive_timeout_ms, "ms an idle client connection is kept")
        ->capture_default_str();
    app.add_option("--proxy-response-timeout", proxy_response_timeout_ms, "ms from a complete request to its response (503/504)")
        ->capture_default_str();
    app.add_option("--proxy-send-timeout", proxy_send_timeout_ms, "ms a client may take nothing of its response")
        ->capture_default_str();
    app.add_option("--proxy-pass-idle-timeout", proxy_pass_idle_timeout_ms,
                   "ms a pass-through connection may carry no byte either way before it is closed")
        ->capture_default_str();
    app.add_option("--proxy-allow", proxy_allow, "only these sources (CIDR, repeatable)");
    app.add_option("--proxy-deny", proxy_deny, "refuse these sources (CIDR, repeatable; checked first)");
    app.add_option("--proxy-per-source-max", px.security.per_source_max, "connections at once per source address (0: no cap)")
        ->capture_default_str();
    app.add_option("--proxy-require-header", proxy_require_header,
                   "HTTP: requests must carry this header, 'Name' or 'Name: value' (403 otherwise)");

    std::vector<std::string> reversed(args.rbegin(), args.rend());
    if (!reversed.empty()) {
        reversed.pop_back();  // argv[0]
    }
    try {
        app.parse(reversed);
    } catch (const CLI::ParseError& e) {
        std::ostringstream out;
        std::ostringstream err;
        const int code = app.exit(e, out, err);
        return ParseOutcome{std::nullopt, code, out.str() + err.str()};
    }

    const auto fail = [](std::string message) { return ParseOutcome{std::nullopt, 2, "cmfw: " + message + "\n"}; };
    const auto mac = wire::MacAddress::parse(mac_text);
    if (!mac || !mac->is_unicast() || mac->is_zero()) {
        return fail("--mac: '" + mac_text + "' is not a unicast MAC address");
    }
    const auto cidr = wire::Ipv4Cidr::parse(ip_text);
    if (!cidr || cidr->prefix_len > 32 || cidr->address.is_unspecified() || cidr->address.is_multicast() ||
        cidr->address.is_broadcast()) {
        return fail("--ip: '" + ip_text + "' is not a unicast address with a prefix length, e.g. 198.18.0.2/24");
    }
    config.net.mac = *mac;
    config.net.address = *cidr;
    if (!gateway_text.empty()) {
        const auto gateway = wire::Ipv4Address::parse(gateway_text);
        if (!gateway || !cidr->contains(*gateway)) {
            return fail("--gateway: '" + gateway_text + "' is not an address inside " + ip_text);
        }
        config.net.gateway = *gateway;
    }
    if (!log::parse_level(level_text, config.log_level)) {
        return fail("--log-level: '" + level_text + "' is not one of debug, info, warn, error");
    }
    // --impair gives both directions; the per-direction options override it. The option named in an error
    // is the one the text came from.
    struct Impairment {
        const CLI::Option* option;
        const std::string& text;
        std::optional<link::FaultProfile>& out;
    };
    for (const Impairment& impairment :
         {Impairment{impair_to_card_option, impair_to_card, config.impair_to_card},
          Impairment{impair_to_client_option, impair_to_client, config.impair_to_client}}) {
        const CLI::Option* given = impairment.option->count() > 0 ? impairment.option : impair_both_option;
        if (given->count() == 0) {
            continue;
        }
        const auto profile = link::parse_fault_profile(given == impair_both_option ? impair_both : impairment.text);
        if (!profile) {
            return fail(given->get_name() + ": " + profile.error());
        }
        impairment.out = *profile;
    }
    config.net.arp.reachable_time = std::chrono::seconds(arp_reachable_s);
    config.net.arp.max_retries = arp_retries;
    config.busy_poll = std::chrono::microseconds(busy_poll_us);
    if (tcp_congestion == "cubic") {
        config.tcp.congestion = tcp::CongestionAlgorithm::cubic;
    } else if (tcp_congestion == "newreno") {
        config.tcp.congestion = tcp::CongestionAlgorithm::newreno;
    } else {
        return fail("--tcp-congestion: '" + tcp_congestion + "' is not cubic or newreno");
    }
    config.tcp.time_wait = std::chrono::milliseconds(tcp_time_wait_ms);
    if (port_io_text == "auto" || port_io_text == "pcap" || port_io_text == "packet") {
        config.port_io = port_io_text == "pcap" ? PortIo::Pcap : port_io_text == "packet" ? PortIo::Packet : PortIo::Auto;
    } else {
        return fail("--port-io: '" + port_io_text + "' is not auto, pcap or packet");
    }
    if (config.boot_flash.empty() != boot_slot_text.empty()) {
        return fail("--boot-flash and --boot-slot go together (the boot ROM gives both)");
    }
    if (!boot_slot_text.empty()) {
        if (boot_slot_text != "A" && boot_slot_text != "B") {
            return fail("--boot-slot: '" + boot_slot_text + "' is not A or B");
        }
        config.boot_slot = boot_slot_text == "A" ? 0 : 1;
    }
    config.boot_confirm_after = std::chrono::milliseconds(boot_confirm_after_ms);
    config.tcp.syn_cookies = !tcp_no_syn_cookies;
    if (!config.bus.memory_path.empty() && config.bus.socket_path.empty()) {
        return fail("--bus-memory needs --bus-socket");
    }
    for (const auto& [texts, kind, option] : {std::tuple{&proxy_http, proxy::ProxyKind::http, "--proxy-http"},
                                              std::tuple{&proxy_pass, proxy::ProxyKind::pass, "--proxy-pass"}}) {
        for (const std::string& text : *texts) {
            unsigned port = 0, host_port = 0;
            char extra = 0;
            const int n = std::sscanf(text.c_str(), "%u:%u%c", &port, &host_port, &extra);
            if ((n != 1 && n != 2) || port == 0 || port > 65535 || host_port > 65535 ||
                (n == 2 && host_port == 0)) {
                return fail(std::string(option) + ": '" + text + "' is not PORT or PORT:HOST_PORT");
            }
            for (const auto& existing : px.ports) {
                if (existing.port == port) {
                    return fail(std::string(option) + ": port " + std::to_string(port) + " is given twice");
                }
            }
            px.ports.push_back({static_cast<std::uint16_t>(port), kind, static_cast<std::uint16_t>(host_port)});
        }
    }
    if (proxy_bus_mode == "pooled") {
        px.bus_mode = proxy::BusMode::pooled;
    } else if (proxy_bus_mode == "per-request") {
        px.bus_mode = proxy::BusMode::per_request;
    } else {
        return fail("--proxy-bus-mode: '" + proxy_bus_mode + "' is not pooled or per-request");
    }
    for (const auto& [texts, out, option] : {std::tuple{&proxy_allow, &px.security.allow, "--proxy-allow"},
                                             std::tuple{&proxy_deny, &px.security.deny, "--proxy-deny"}}) {
        for (const std::string& text : *texts) {
            const auto range = proxy::parse_source_range(text);
            if (!range) {
                return fail(std::string(option) + ": '" + text + "' is not an IPv4 address or CIDR (a.b.c.d/len)");
            }
            out->push_back(*range);
        }
    }
    if (!proxy_require_header.empty()) {
        const auto colon = proxy_require_header.find(':');
        std::string name = proxy_require_header.substr(0, colon);
        std::string value = colon == std::string::npos ? "" : proxy_require_header.substr(colon + 1);
        const auto trim = [](std::string& s) {
            s.erase(0, s.find_first_not_of(" \t"));
            s.erase(s.find_last_not_of(" \t") + 1);
        };
        trim(name);
        trim(value);
        if (name.empty() || name.find_first_of(" \t") != std::string::npos) {
            return fail("--proxy-require-header: '" + proxy_require_header + "' is not 'Name' or 'Name: value'");
        }
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return std::tolower(ch); });
        px.security.required_header = name;
        px.security.required_value = value;
        px.limits.required_header = name;
    }
    px.request_timeout = std::chrono::milliseconds(proxy_request_timeout_ms);
    px.slow_request_after = std::chrono::milliseconds(proxy_slow_request_after_ms);
    px.slow_request_delay = std::chrono::milliseconds(proxy_slow_request_delay_ms);
    px.keepalive_timeout = std::chrono::milliseconds(proxy_keepalive_timeout_ms);
    px.response_timeout = std::chrono::milliseconds(proxy_response_timeout_ms);
    px.send_timeout = std::chrono::milliseconds(proxy_send_timeout_ms);
    px.pass_idle_timeout = std::chrono::milliseconds(proxy_pass_idle_timeout_ms);
    if (!px.ports.empty() && config.bus.memory_path.empty()) {
        return fail("--proxy-http/--proxy-pass need the host bus (--bus-memory, --bus-socket)");
    }
    config.bus.engine.arm_after = config.busy_poll;  // the bus asks for doorbells only when the loop would sleep
    config.bus.engine.notify_coalesce = std::chrono::microseconds(bus_notify_coalesce_us);
    config.bus.engine.lazy_completions = std::chrono::milliseconds(bus_lazy_completions_ms);
    return ParseOutcome{config, 0, {}};
}

}  // namespace cm::app

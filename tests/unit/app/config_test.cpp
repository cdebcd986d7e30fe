#include "app/config.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <unistd.h>

using cm::app::parse_firmware_config;

namespace {

std::vector<std::string> args(std::initializer_list<std::string> rest)
{
    std::vector<std::string> v{"cmfw"};
    v.insert(v.end(), rest);
    return v;
}

/// A config file that removes itself.
struct TempFile {
    std::string path = "/tmp/cm-config-test-" + std::to_string(::getpid()) + ".toml";
    explicit TempFile(const std::string& text) { std::ofstream(path) << text; }
    ~TempFile() { std::remove(path.c_str()); }
};

}  // namespace

TEST_CASE("the command line gives the port, address, MAC and options", "[config]")
{
    const auto parsed = parse_firmware_config(args({"--interface", "veth0", "--ip", "198.18.0.2/24", "--mac",
                                                    "02:00:00:00:00:02", "--gateway", "198.18.0.1", "--rx-batch",
                                                    "32", "--log-level", "debug", "--arp-retries", "5"}));
    REQUIRE(parsed.config);
    const auto& c = *parsed.config;
    CHECK(c.interface == "veth0");
    CHECK(c.net.address.to_string() == "198.18.0.2/24");
    CHECK(c.net.mac.to_string() == "02:00:00:00:00:02");
    REQUIRE(c.net.gateway);
    CHECK(c.net.gateway->to_string() == "198.18.0.1");
    CHECK(c.net.rx_batch == 32);
    CHECK(c.net.arp.max_retries == 5);
    CHECK(c.log_level == cm::log::Level::debug);
}

TEST_CASE("a config file gives the same options, and the command line wins over it", "[config]")
{
    TempFile file("interface = \"from-file\"\nip = \"198.18.0.9/16\"\nmac = \"02:aa:bb:cc:dd:ee\"\nrx-batch = 16\n");
    const auto parsed = parse_firmware_config(args({"--config", file.path, "--interface", "from-cli"}));
    REQUIRE(parsed.config);
    CHECK(parsed.config->interface == "from-cli");
    CHECK(parsed.config->net.address.to_string() == "198.18.0.9/16");
    CHECK(parsed.config->net.mac.to_string() == "02:aa:bb:cc:dd:ee");
    CHECK(parsed.config->net.rx_batch == 16);
}

TEST_CASE("bad values are refused with a message naming the option", "[config]")
{
    const auto base = [](std::string opt, std::string value) {
        std::vector<std::string> v = args({"--interface", "veth0", "--ip", "198.18.0.2/24", "--mac", "02:00:00:00:00:02"});
        v.push_back(opt);
        v.push_back(value);
        return parse_firmware_config(v);
    };
    struct Case {
        const char* option;
        const char* value;
    };
    for (const Case& bad : {Case{"--mac", "ff:ff:ff:ff:ff:ff"}, Case{"--mac", "01:00:5e:00:00:01"}, Case{"--mac", "nonsense"},
                            Case{"--ip", "198.18.0.2"}, Case{"--ip", "224.0.0.1/4"}, Case{"--ip", "300.1.1.1/24"},
                            Case{"--gateway", "10.0.0.1"}, Case{"--log-level", "loud"}, Case{"--rx-batch", "0"}}) {
        INFO(bad.option << " " << bad.value);
        const auto parsed = base(bad.option, bad.value);
        CHECK_FALSE(parsed.config);
        CHECK(parsed.exit_code != 0);
        CHECK(parsed.message.find(std::string(bad.option).substr(2)) != std::string::npos);
    }
}

TEST_CASE("required options missing, and --help", "[config]")
{
    const auto missing = parse_firmware_config(args({"--interface", "veth0"}));
    CHECK_FALSE(missing.config);
    CHECK(missing.exit_code != 0);
    CHECK(missing.message.find("--ip") != std::string::npos);
    const auto help = parse_firmware_config(args({"--help"}));
    CHECK_FALSE(help.config);
    CHECK(help.exit_code == 0);
    CHECK(help.message.find("--pcap-tap") != std::string::npos);
}

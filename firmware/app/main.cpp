// cmfw: the card's firmware. See app/config.cpp for its options and docs/firmware.md for what it does.
#include "app/config.hpp"
#include "app/firmware.hpp"
#include "base/log.hpp"

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

int main(int argc, char** argv)
{
    const std::vector<std::string> args(argv, argv + argc);
    const auto parsed = cm::app::parse_firmware_config(args);
    if (!parsed.config) {
        std::fputs(parsed.message.c_str(), parsed.exit_code == 0 ? stdout : stderr);
        return parsed.exit_code;
    }
    cm::log::set_threshold(parsed.config->log_level);
    try {
        auto firmware = cm::app::Firmware::create(*parsed.config);
        if (!firmware) {
            cm::log::error("cmfw: {}", firmware.error());
            return 1;
        }
        return (*firmware)->run();
    } catch (const std::exception& e) {
        cm::log::error("cmfw: fatal: {}", e.what());
        return 1;
    }
}

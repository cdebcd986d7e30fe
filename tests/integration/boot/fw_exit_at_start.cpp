// A test build of the firmware that crashes at start: it reads its options like cmfw (a bad option is still
// an error) and then exits with status 70 before the port is up, so it never confirms its boot. The boot
// ROM must roll it back (tests/integration/boot_flash.sh). Its version note says "-exit-at-start".
#include "app/config.hpp"
#include "base/log.hpp"

#include <cstdio>
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
    cm::log::error("cmfw (test build): exiting at start with status 70");
    return 70;
}

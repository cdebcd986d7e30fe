#include "link/memory_link.hpp"
#include "link/pcap_file_tap.hpp"

#include "test_frames.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <cstdio>
#include <ctime>
#include <fcntl.h>
#include <fstream>
#include <iterator>
#include <string>
#include <unistd.h>

using namespace cm;
using namespace cm::link;
using namespace cm::link::test;

namespace {

struct PcapRecord {
    std::uint32_t sec;
    std::uint32_t nsec;
    std::uint32_t orig_len;
    Bytes bytes;
};

struct PcapFile {
    std::uint32_t magic = 0;
    std::uint16_t major = 0;
    std::uint16_t minor = 0;
    std::uint32_t snaplen = 0;
    std::uint32_t linktype = 0;
    std::vector<PcapRecord> records;
    bool complete = true;  // false when the file ends inside a record
};

std::uint32_t le32(const std::vector<unsigned char>& d, std::size_t at)
{
    return d[at] | (d[at + 1] << 8) | (d[at + 2] << 16) | (static_cast<std::uint32_t>(d[at + 3]) << 24);
}

/// Our own reader for the classic format, little-endian (the machines we run on).
PcapFile read_pcap(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    std::vector<unsigned char> d((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    PcapFile f;
    REQUIRE(d.size() >= 24);
    f.magic = le32(d, 0);
    f.major = static_cast<std::uint16_t>(d[4] | (d[5] << 8));
    f.minor = static_cast<std::uint16_t>(d[6] | (d[7] << 8));
    f.snaplen = le32(d, 16);
    f.linktype = le32(d, 20);
    std::size_t at = 24;
    while (at < d.size()) {
        if (d.size() - at < 16) {
            f.complete = false;
            break;
        }
        PcapRecord r{le32(d, at), le32(d, at + 4), le32(d, at + 12), {}};
        const std::uint32_t incl = le32(d, at + 8);
        at += 16;
        if (d.size() - at < incl) {
            f.complete = false;
            break;
        }
        r.bytes.resize(incl);
        std::memcpy(r.bytes.data(), d.data() + at, incl);
        at += incl;
        f.records.push_back(std::move(r));
    }
    return f;
}

std::string temp_path(const char* what)
{
    return "/tmp/cm-link-test-" + std::to_string(getpid()) + "-" + what + ".pcap";
}

/// Removes the file when the test ends, however it ends.
struct FileRemover {
    std::string path;
    ~FileRemover() { std::remove(path.c_str()); }
};

bool have_tcpdump()
{
    return std::system("command -v tcpdump >/dev/null 2>&1") == 0;
}

/// Runs `tcpdump -nn -r path` and counts the packets it printed (one line each, starting with the time;
/// hex dumps of unknown ethertypes come on indented lines). Returns -1 if tcpdump failed.
int tcpdump_count(const std::string& path, std::string& first_line)
{
    const std::string cmd = "tcpdump -nn --time-stamp-precision=nano -r '" + path + "' 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    if (p == nullptr) {
        return -1;
    }
    int count = 0;
    char line[4096];
    while (std::fgets(line, sizeof line, p) != nullptr) {
        if (line[0] >= '0' && line[0] <= '9') {
            if (count == 0) {
                first_line = line;
            }
            count++;
        }
    }
    const int status = pclose(p);
    return status == 0 ? count : -1;
}

}  // namespace

TEST_CASE("pcap tap: frames sent and received through a tapped memory link are written, and read back",
          "[link][tap]")
{
    ManualClock clock;
    MemoryLinkPair pair(clock);
    const std::string path = temp_path("roundtrip");
    FileRemover remover{path};

    timespec before{};
    clock_gettime(CLOCK_REALTIME, &before);
    std::vector<Bytes> expected;
    {
        auto opened = PcapFileTap::open(pair.a(), path);
        REQUIRE(opened.has_value());
        PcapFileTap& tap = **opened;
        CHECK(&tap.counters() == &pair.a().counters());
        CHECK(tap.wait_fd() == -1);
        CHECK(tap.max_frame() == pair.a().max_frame());

        // 300 frames out (more than 64 KiB, so the buffer is written out several times), in batches.
        std::uint32_t seq = 0;
        for (int batch = 0; batch < 3; ++batch) {
            for (int i = 0; i < 100; ++i, ++seq) {
                Bytes f = make_frame(seq, 60 + (seq * 97) % 1455);
                REQUIRE(tap.send(f));
                expected.push_back(f);
            }
            CHECK(tap.flush() == 100);
        }
        // A frame the inner link refuses is not recorded.
        CHECK_FALSE(tap.send(make_frame(9999, 2000)));
        CHECK(pair.a().counters().tx_dropped_too_large == 1);

        Collector at_b;
        CHECK(pair.b().receive(at_b, SIZE_MAX) == 300);
        for (std::uint32_t i = 0; i < 300; ++i) {
            CHECK(at_b.frames[i] == expected[i]);
        }

        // 50 frames in.
        for (std::uint32_t i = 0; i < 50; ++i) {
            Bytes f = make_frame(1000 + i, 1514, mac_a, mac_b);
            REQUIRE(pair.b().send(f));
            expected.push_back(f);
        }
        pair.b().flush();
        Collector at_a;
        CHECK(tap.receive(at_a, 20) == 20);
        CHECK(tap.receive(at_a, SIZE_MAX) == 30);
        REQUIRE(at_a.frames.size() == 50);
        CHECK(at_a.frames[49] == expected[349]);
        // No sync(): the destructor writes out what receive() left in the buffer.
        CHECK(tap.tap_counters().frames_written >= 300);
        CHECK(tap.tap_counters().frames_written < 350);
    }
    timespec after{};
    clock_gettime(CLOCK_REALTIME, &after);

    const PcapFile file = read_pcap(path);
    CHECK(file.magic == 0xa1b23c4d);
    CHECK(file.major == 2);
    CHECK(file.minor == 4);
    CHECK(file.snaplen == 65535);
    CHECK(file.linktype == 1);
    CHECK(file.complete);
    REQUIRE(file.records.size() == expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
        const PcapRecord& r = file.records[i];
        CHECK(r.bytes == expected[i]);
        CHECK(r.orig_len == expected[i].size());
        CHECK(r.nsec < 1000000000u);
        CHECK(r.sec >= static_cast<std::uint32_t>(before.tv_sec));
        CHECK(r.sec <= static_cast<std::uint32_t>(after.tv_sec));
        if (i > 0) {
            const auto& p = file.records[i - 1];
            CHECK((r.sec > p.sec || (r.sec == p.sec && r.nsec >= p.nsec)));
        }
    }

    if (!have_tcpdump()) {
        WARN("tcpdump not found: skipped checking that tcpdump reads the file");
        return;
    }
    std::string first;
    const int printed = tcpdump_count(path, first);
    INFO("first line from tcpdump: " << first);
    CHECK(printed == static_cast<int>(expected.size()));
    CHECK(first.find("02:00:00:00:00:0a > 02:00:00:00:00:0b") != std::string::npos);
}

TEST_CASE("pcap tap: sync() writes out what is buffered and the counters say what was written", "[link][tap]")
{
    ManualClock clock;
    MemoryLinkPair pair(clock);
    const std::string path = temp_path("sync");
    FileRemover remover{path};
    auto opened = PcapFileTap::open(pair.a(), path);
    REQUIRE(opened.has_value());
    PcapFileTap& tap = **opened;
    CHECK(read_pcap(path).records.empty());
    REQUIRE(tap.send(make_frame(1, 100)));
    CHECK(read_pcap(path).records.empty());  // buffered, not yet written
    tap.sync();
    const PcapFile file = read_pcap(path);
    REQUIRE(file.records.size() == 1);
    CHECK(file.records[0].bytes == make_frame(1, 100));
    CHECK(tap.tap_counters().frames_written == 1);
    CHECK(tap.tap_counters().bytes_written == 16 + 100);
    CHECK(tap.tap_counters().write_errors == 0);
    CHECK(tap.path() == path);
}

TEST_CASE("pcap tap: open() on a path it cannot create fails with a message naming the path", "[link][tap]")
{
    ManualClock clock;
    MemoryLinkPair pair(clock);
    const std::string path = "/nonexistent-cm-dir/x.pcap";
    auto opened = PcapFileTap::open(pair.a(), path);
    REQUIRE_FALSE(opened.has_value());
    CHECK(opened.error().find(path) != std::string::npos);
    CHECK(opened.error().find("No such file") != std::string::npos);
}

TEST_CASE("pcap tap: a write error is counted once, stops the capture, and never stops the datapath",
          "[link][tap]")
{
    // The file is a pipe whose reader goes away: the header fits in the pipe, the next write fails (EPIPE).
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    auto old_sigpipe = std::signal(SIGPIPE, SIG_IGN);
    const std::string path = "/proc/self/fd/" + std::to_string(fds[1]);

    ManualClock clock;
    MemoryLinkPair pair(clock);
    {
        auto opened = PcapFileTap::open(pair.a(), path);
        REQUIRE(opened.has_value());
        PcapFileTap& tap = **opened;
        ::close(fds[0]);
        ::close(fds[1]);  // the tap has its own descriptor for the pipe

        for (std::uint32_t i = 0; i < 5; ++i) {
            REQUIRE(tap.send(make_frame(i)));
        }
        CHECK(tap.flush() == 5);  // the frames leave even though the file write fails
        CHECK(tap.tap_counters().write_errors == 1);
        CHECK(tap.tap_counters().frames_not_written == 5);
        CHECK(tap.tap_counters().frames_written == 0);

        for (std::uint32_t i = 5; i < 10; ++i) {
            REQUIRE(tap.send(make_frame(i)));
        }
        CHECK(tap.flush() == 5);
        CHECK(tap.tap_counters().write_errors == 1);  // stopped: no second attempt, no second log line
        CHECK(tap.tap_counters().frames_not_written == 10);

        Collector at_b;
        CHECK(pair.b().receive(at_b, SIZE_MAX) == 10);
        pair.b().send(make_frame(99, 60, mac_a, mac_b));
        pair.b().flush();
        Collector at_a;
        CHECK(tap.receive(at_a, SIZE_MAX) == 1);
        CHECK(tap.tap_counters().frames_not_written == 11);
    }
    std::signal(SIGPIPE, old_sigpipe);
}

TEST_CASE("pcap tap: frames longer than the file's snaplen are stored cut, with their real length",
          "[link][tap]")
{
    ManualClock clock;
    MemoryLinkPair pair(clock, {}, {}, MemoryLinkLimits{.max_frame = 70000});
    const std::string path = temp_path("cut");
    FileRemover remover{path};
    {
        auto opened = PcapFileTap::open(pair.a(), path);
        REQUIRE(opened.has_value());
        REQUIRE((*opened)->send(make_frame(1, 70000)));
        REQUIRE((*opened)->send(make_frame(2, 60)));
        (*opened)->flush();
        CHECK((*opened)->tap_counters().frames_cut == 1);
    }
    const PcapFile file = read_pcap(path);
    REQUIRE(file.records.size() == 2);
    CHECK(file.records[0].bytes.size() == 65535);
    CHECK(file.records[0].orig_len == 70000);
    CHECK(file.records[1].bytes == make_frame(2, 60));
}

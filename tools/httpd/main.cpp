// cm-httpd: the example HTTP/1.1 server, with the same server logic (HttpSession) behind two front ends:
//
//   cm-httpd --backend cm [--device PATH] [--port 80] ...    connections from the card over libcm
//   cm-httpd --backend kernel [--listen 0.0.0.0:8080] ...    plain Linux sockets: the baseline
//
// Routes, statistics and the reasons for two backends: docs/httpd.md.
#include "frontend.hpp"

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <signal.h>

#include <climits>
#include <cstdlib>

int main(int argc, char** argv)
{
    using namespace cm::httpd;
    std::string backend;
    std::string device;
    int port = 80;
    std::string listen = "0.0.0.0:8080";
    Config config;
    std::string root;
    RunOptions options;

    CLI::App app{"cm-httpd: an HTTP/1.1 server fed by the card (--backend cm) or by Linux sockets (--backend kernel)"};
    app.add_option("--backend", backend, "where connections come from: cm (the card, over libcm) or kernel")
        ->required()
        ->check(CLI::IsMember({"cm", "kernel"}));
    app.add_option("--device", device,
                   "cm: the card: an emulated card's bus socket or the host driver's /dev/cmN; default $CM_DEVICE, "
                   "the only emulated card, else /dev/cm0");
    app.add_option("--port", port, "cm: the card's port to listen on")->capture_default_str()->check(CLI::Range(1, 65535));
    app.add_option("--listen", listen, "kernel: IPv4:PORT to listen on (PORT 0: any, see --ready-file)")
        ->capture_default_str();
    app.add_option("--body-size", config.body_size, "bytes of the synthetic response of GET /")->capture_default_str();
    app.add_option("--root", root, "directory GET /files/PATH serves (none: 404)");
    app.add_option("--max-body", config.max_body, "largest request body POST /echo keeps (larger: 413)")
        ->capture_default_str();
    app.add_option("--stats-file", options.stats_file, "statistics written here on SIGUSR1 and at exit");
    app.add_option("--ready-file", options.ready_file, "written once listening (backend=, port=, pid=)");
    app.add_flag("!--no-defer-doorbell", options.defer_doorbell,
                 "cm: ring the card's doorbell in every call that submits, not once per loop round");
    app.add_flag("--quiet", options.quiet, "no start-up or diagnostic messages (the exit statistics still go to stderr)");
    CLI11_PARSE(app, argc, argv);

    if (!root.empty()) {
        char resolved[PATH_MAX];
        if (realpath(root.c_str(), resolved) == nullptr) {
            fmt::print(stderr, "cm-httpd: --root {}: not found\n", root);
            return 1;
        }
        config.root = resolved;
    }
    signal(SIGPIPE, SIG_IGN);

    Stats stats;
    const int status = backend == "cm" ? run_cm(device, static_cast<std::uint16_t>(port), config, options, stats)
                                       : run_kernel(listen, config, options, stats);
    if (!options.stats_file.empty()) {
        write_file_atomically(options.stats_file, stats.format());
    }
    fmt::print(stderr, "{}", stats.format());
    return status;
}

#include "frontend.hpp"

#include <fmt/core.h>

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace cm::httpd {

std::uint64_t Sessions::add(std::unique_ptr<HttpSession> session)
{
    const std::uint64_t id = _next_id++;
    _sessions.emplace(id, std::move(session));
    return id;
}

HttpSession* Sessions::find(std::uint64_t id)
{
    const auto it = _sessions.find(id);
    return it == _sessions.end() ? nullptr : it->second.get();
}

void Sessions::settle(std::uint64_t id)
{
    HttpSession* s = find(id);
    if (s == nullptr) {
        return;
    }
    if (s->closed()) {
        destroy(id);
    } else if (s->wants_more()) {
        _deferred.push_back(id);
    }
}

void Sessions::run_deferred()
{
    std::vector<std::uint64_t> ids;
    ids.swap(_deferred);
    for (const std::uint64_t id : ids) {
        if (HttpSession* s = find(id); s != nullptr && s->wants_more()) {
            s->pump();
            settle(id);
        }
    }
}

void Sessions::abandon_all()
{
    for (auto& [id, s] : _sessions) {
        s->abandon();
    }
    clear();
}

void Sessions::clear()
{
    while (!_sessions.empty()) {
        destroy(_sessions.begin()->first);
    }
    _deferred.clear();
}

void Sessions::destroy(std::uint64_t id)
{
    if (_on_destroy) {
        _on_destroy(id);
    }
    _sessions.erase(id);
}

Signals::Signals()
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    _fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

Signals::~Signals()
{
    if (_fd >= 0) {
        ::close(_fd);
    }
}

bool Signals::handle(const RunOptions& options, const Stats& stats)
{
    bool stop = false;
    signalfd_siginfo info{};
    while (::read(_fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        if (info.ssi_signo == SIGUSR1) {
            if (!options.stats_file.empty()) {
                write_file_atomically(options.stats_file, stats.format());
            }
        } else {
            stop = true;
        }
    }
    return stop;
}

bool write_file_atomically(const std::string& path, const std::string& text)
{
    const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
    std::FILE* f = std::fopen(tmp.c_str(), "w");
    bool ok = f != nullptr && std::fwrite(text.data(), 1, text.size(), f) == text.size();
    if (f != nullptr) {
        ok = std::fclose(f) == 0 && ok;
    }
    ok = ok && std::rename(tmp.c_str(), path.c_str()) == 0;
    if (!ok) {
        fmt::print(stderr, "cm-httpd: {}: {}\n", path, std::strerror(errno));
        std::remove(tmp.c_str());
    }
    return ok;
}

}  // namespace cm::httpd

// Named counters. Every drop, refusal and rejection in cm increments one of these, and every one of them
// is visible from outside (cmfw's counter dump now, cmctl later).
//
// A counter group is declared once from an X-macro list, so the field the code increments and the name
// that is printed can never drift apart:
//
//   #define CM_IPV4_COUNTERS(X) X(rx_packets, "IPv4 packets received") X(rx_bad_checksum, "dropped: ...")
//   CM_DECLARE_COUNTERS(Ipv4Counters, CM_IPV4_COUNTERS)
//
//   counters.rx_bad_checksum++;
//   counters.for_each([](std::string_view name, std::string_view help, std::uint64_t value) { ... });
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#define CM_COUNTER_FIELD_(name, help) std::uint64_t name = 0;
#define CM_COUNTER_VISIT_(name, help) visit(std::string_view{#name}, std::string_view{help}, name);

#define CM_DECLARE_COUNTERS(Type, LIST)                    \
    struct Type {                                          \
        LIST(CM_COUNTER_FIELD_)                            \
        template <class Visitor>                           \
        void for_each(Visitor&& visit) const               \
        {                                                  \
            LIST(CM_COUNTER_VISIT_)                        \
        }                                                  \
    };

namespace cm {

/// A flat view of every counter group in the process, for reporting. Groups register a reference to
/// their counters struct; the registry never owns them, and a group must outlive its registration.
class CounterRegistry {
public:
    using Visitor = std::function<void(std::string_view name, std::string_view help, std::uint64_t value)>;

    template <class Group>
    void add(std::string prefix, const Group& group)
    {
        _groups.push_back({std::move(prefix), [&group](const Visitor& visit) { group.for_each(visit); }});
    }

    /// Calls `visit` for every counter as ("prefix.name", help, value), in registration order.
    void for_each(const Visitor& visit) const
    {
        for (const auto& g : _groups) {
            g.enumerate([&](std::string_view name, std::string_view help, std::uint64_t value) {
                std::string full = g.prefix;
                full += '.';
                full += name;
                visit(full, help, value);
            });
        }
    }

    /// Value of one counter by its full name ("ipv4.rx_bad_checksum"); 0 when unknown.
    [[nodiscard]] std::uint64_t value(std::string_view full_name) const
    {
        std::uint64_t found = 0;
        for_each([&](std::string_view name, std::string_view, std::uint64_t v) {
            if (name == full_name) {
                found = v;
            }
        });
        return found;
    }

private:
    struct Entry {
        std::string prefix;
        std::function<void(const Visitor&)> enumerate;
    };
    std::vector<Entry> _groups;
};

}  // namespace cm

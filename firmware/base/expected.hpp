// A value or an error, for the datapath where exceptions are not used (C++20 has no std::expected).
#pragma once

#include <cassert>
#include <type_traits>
#include <utility>
#include <variant>

namespace cm {

template <class E>
struct Unexpected {
    E error;
};

template <class E>
Unexpected(E) -> Unexpected<E>;

/// Holds either a T or an E. Accessing the wrong alternative is a programming error (asserted).
template <class T, class E>
class Expected {
public:
    using value_type = T;
    using error_type = E;

    Expected(const T& value) : _storage(std::in_place_index<0>, value) {}
    Expected(T&& value) : _storage(std::in_place_index<0>, std::move(value)) {}
    template <class G>
    Expected(Unexpected<G> u) : _storage(std::in_place_index<1>, E(std::move(u.error))) {}

    [[nodiscard]] bool has_value() const noexcept { return _storage.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }

    T& value() & { assert(has_value()); return *std::get_if<0>(&_storage); }
    const T& value() const& { assert(has_value()); return *std::get_if<0>(&_storage); }
    T&& value() && { assert(has_value()); return std::move(*std::get_if<0>(&_storage)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const E& error() const { assert(!has_value()); return *std::get_if<1>(&_storage); }

private:
    std::variant<T, E> _storage;
};

}  // namespace cm

// Overflow-checked integer arithmetic for sizes read from files and flags,
// and the one reader of a finite number from text (flags, specs, options).
//
// A size such as count * rows * cols that comes from a header or a spec must
// not wrap around: a wrapped product is small, passes every cap and then
// indexes far past the memory that was really allocated. These helpers say
// when the true result does not fit, so the caller can name the input.
// They live in messages/ because every layer (data, models, tools) sizes
// buffers from untrusted numbers.
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace chorus {

/// a * b, or nullopt when the true product does not fit in T. Written with
/// divisions rather than compiler builtins so that every compiler that
/// includes it (nvcc too) accepts it.
template <class T>
constexpr std::optional<T> checked_mul(T a, T b) {
  static_assert(std::is_integral_v<T>, "checked_mul is for integers");
  using lim = std::numeric_limits<T>;
  if (a == 0 || b == 0)
    return T{0};
  bool fits = false;
  if constexpr (std::is_signed_v<T>) {
    if (a > 0)
      fits = b > 0 ? a <= lim::max() / b : b >= lim::min() / a;
    else
      fits = b > 0 ? a >= lim::min() / b : b >= lim::max() / a;
  } else {
    fits = a <= lim::max() / b;
  }
  if (!fits)
    return std::nullopt;
  return static_cast<T>(a * b);
}

/// a + b, or nullopt when the true sum does not fit in T.
template <class T>
constexpr std::optional<T> checked_add(T a, T b) {
  static_assert(std::is_integral_v<T>, "checked_add is for integers");
  using lim = std::numeric_limits<T>;
  if (b > 0 ? a > lim::max() - b : a < lim::min() - b)
    return std::nullopt;
  return static_cast<T>(a + b);
}

/// The product of all `factors` (1 for none), or nullopt when any partial
/// product does not fit in T.
template <class T>
constexpr std::optional<T> checked_product(std::initializer_list<T> factors) {
  T out{1};
  for (T f : factors) {
    auto next = checked_mul(out, f);
    if (!next)
      return std::nullopt;
    out = *next;
  }
  return out;
}

/// The whole of `text` as a finite number (std::stod's syntax: "1e-3",
/// " 2" with leading space), or nullopt when it is empty, has anything after
/// the number, overflows or is not finite (nan, inf). Callers name the flag
/// or spec in their own error.
inline std::optional<double> parse_finite(const std::string& text) {
  size_t used = 0;
  double x = 0;
  try {
    x = std::stod(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (used != text.size() || !std::isfinite(x))
    return std::nullopt;
  return x;
}

} // namespace chorus

// The non-differentiable part r(w) of the objective and its proximal operator
//   Prox_{r,eta}(v) = argmin_u r(u) + ||u - v||^2 / (2 eta).
// Closed forms (applied element-wise):
//   none:        u = v
//   l1 (lam):    r = lam ||w||_1            u = sign(v) max(|v| - eta lam, 0)
//   l2 (lam):    r = lam/2 ||w||^2          u = v / (1 + eta lam)
//   elastic:     r = l1 ||w||_1 + l2/2 ||w||^2
//                                           u = soft(v, eta l1) / (1 + eta l2)
// This header is the plain value (kind and strengths, its parse and r(w));
// it sits in messages/ because run plans carry it. The backends apply the
// proximal operator (gpu/backend.hpp: prox, prox_step).
#pragma once

#include <cstdint>
#include <string>

#include <caf/meta/type_name.hpp>

namespace chorus {

/// A regularizer value: kind plus strengths. Plain data, sent in messages.
struct regularizer {
  enum kind_t : int32_t { kind_none = 0, kind_l1 = 1, kind_l2 = 2, kind_elastic = 3 };
  int32_t kind = kind_none;
  float l1 = 0;  ///< weight of ||w||_1
  float l2 = 0;  ///< weight of ||w||^2 / 2

  /// Parses "none", "l1:1e-4", "l2:1e-3", "elastic:1e-4,1e-3"; throws
  /// std::invalid_argument with the accepted forms on anything else.
  static regularizer parse(const std::string& spec);
  /// The spec string parse() accepts back.
  std::string to_string() const;
  /// r(w) for a host vector.
  double value(const float* w, size_t n) const;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, regularizer& x) {
  return f(caf::meta::type_name("regularizer"), x.kind, x.l1, x.l2);
}

} // namespace chorus

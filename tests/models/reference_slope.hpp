// The derivative reference for the model tests' gradient checks: the slope of
// a loss that the test evaluates in double straight from the model's
// documented definition, along a direction, by finite differences that stay
// on one smooth piece of the loss. ReLUs and max pools make a network's loss
// piecewise smooth; a difference quotient whose step crosses a kink measures
// neither side's derivative. Nothing here touches float or the model code, so
// the reference is the same on every instruction set.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace chorus::test {

/// A loss in double at a point, with the piece it lies on: an id per kink
/// (a ReLU input's sign, a pooling window's argmax), constant where the loss
/// is smooth. `margin` is the point's distance to the nearest kink, in the
/// units the kinks are measured in (the smallest |ReLU input|, the smallest
/// gap between a window's largest and second largest positive value).
struct piecewise_loss {
  double loss = 0;
  std::vector<int32_t> piece;
  double margin = std::numeric_limits<double>::infinity();
};

/// A slope and the step it was measured with (0: no step found).
struct slope_estimate {
  double slope = std::numeric_limits<double>::quiet_NaN();
  double step = 0;
};

/// The derivative of f at w along v: central differences D(h) = (f(w + h v)
/// - f(w - h v)) / 2h with one Richardson step, (4 D(h/2) - D(h)) / 3, whose
/// error is O(h^4). h starts at `first_step` and shrinks 8-fold until all
/// four points lie on w's own piece (same ReLU signs and pooling argmaxes),
/// so the quotient is of one smooth function. In double the rounding error of
/// the quotient is about 1e-16 |f| / h: ~1e-13 at h = 1e-3, still ~1e-10 at
/// the smallest step tried, 1e-6. Returns step 0 if even that crosses a kink
/// (w is then on a kink itself, and the derivative is one-sided).
template <class F>
slope_estimate reference_slope(F&& f, const std::vector<double>& w, const std::vector<double>& v,
                               double first_step = 1e-3) {
  const std::vector<int32_t> piece = f(w).piece;
  std::vector<double> at(w.size());
  auto value = [&](double t, bool& same_piece) {
    for (size_t i = 0; i < w.size(); ++i)
      at[i] = w[i] + t * v[i];
    piecewise_loss p = f(at);
    same_piece = same_piece && p.piece == piece;
    return p.loss;
  };
  for (double h = first_step; h >= 1e-6; h /= 8) {
    bool same = true;
    const double up = value(h, same), down = value(-h, same);
    const double half_up = value(h / 2, same), half_down = value(-h / 2, same);
    if (!same)
      continue;
    const double wide = (up - down) / (2 * h), narrow = (half_up - half_down) / h;
    return {(4 * narrow - wide) / 3, h};
  }
  return {};
}

} // namespace chorus::test

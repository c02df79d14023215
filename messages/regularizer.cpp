#include "messages/regularizer.hpp"

#include <cmath>
#include <stdexcept>

namespace chorus {

namespace {

float parse_strength(const std::string& text, const std::string& spec) {
  size_t used = 0;
  float value = 0;
  try {
    value = std::stof(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || !std::isfinite(value) || value < 0)
    throw std::invalid_argument("regularizer '" + spec + "': strength '" + text
                                + "' is not a finite number >= 0");
  return value;
}

const char* valid_forms = "valid forms: none, l1:LAMBDA, l2:LAMBDA, elastic:L1,L2";

} // namespace

regularizer regularizer::parse(const std::string& spec) {
  regularizer r;
  if (spec.empty() || spec == "none")
    return r;
  auto colon = spec.find(':');
  if (colon == std::string::npos)
    throw std::invalid_argument("unknown regularizer '" + spec + "'; " + valid_forms);
  auto head = spec.substr(0, colon);
  auto tail = spec.substr(colon + 1);
  if (head == "l1") {
    r.kind = kind_l1;
    r.l1 = parse_strength(tail, spec);
  } else if (head == "l2") {
    r.kind = kind_l2;
    r.l2 = parse_strength(tail, spec);
  } else if (head == "elastic") {
    auto comma = tail.find(',');
    if (comma == std::string::npos)
      throw std::invalid_argument("regularizer '" + spec + "' needs two strengths; "
                                  + valid_forms);
    r.kind = kind_elastic;
    r.l1 = parse_strength(tail.substr(0, comma), spec);
    r.l2 = parse_strength(tail.substr(comma + 1), spec);
  } else {
    throw std::invalid_argument("unknown regularizer '" + spec + "'; " + valid_forms);
  }
  return r;
}

std::string regularizer::to_string() const {
  auto num = [](float x) {
    char text[32];
    std::snprintf(text, sizeof(text), "%g", static_cast<double>(x));
    return std::string(text);
  };
  switch (kind) {
    case kind_l1:
      return "l1:" + num(l1);
    case kind_l2:
      return "l2:" + num(l2);
    case kind_elastic:
      return "elastic:" + num(l1) + "," + num(l2);
    default:
      return "none";
  }
}

double regularizer::value(const float* w, size_t n) const {
  double abs_sum = 0;
  double sq_sum = 0;
  for (size_t i = 0; i < n; ++i) {
    abs_sum += std::fabs(w[i]);
    sq_sum += static_cast<double>(w[i]) * w[i];
  }
  double l1_weight = (kind == kind_l1 || kind == kind_elastic) ? l1 : 0.0;
  double l2_weight = (kind == kind_l2 || kind == kind_elastic) ? l2 : 0.0;
  return l1_weight * abs_sum + 0.5 * l2_weight * sq_sum;
}

} // namespace chorus

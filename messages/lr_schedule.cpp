#include "messages/lr_schedule.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "messages/checked.hpp"

namespace chorus {

const char* const lr_schedule_forms =
  "const | inv:T0 | invsqrt[:T0] | cosine | step:EVERY,FACTOR";

std::vector<std::pair<std::string, std::string>> lr_schedule_names() {
  return {{"const", "s(t) = 1 (the default)"},
          {"inv:T0", "s(t) = 1 / (1 + t/T0)"},
          {"invsqrt[:T0]", "s(t) = 1 / sqrt(1 + t/T0) [T0 1]"},
          {"cosine", "s(t) = (1 + cos(pi t/T)) / 2, T: the run's length in t (needs --steps)"},
          {"step:EVERY,FACTOR", "s(t) = FACTOR^floor(t/EVERY), 0 < FACTOR <= 1"}};
}

namespace {

[[noreturn]] void refuse(const std::string& spec, const std::string& why) {
  std::string shown = spec.size() > 60 ? spec.substr(0, 60) + "..." : spec;
  throw std::invalid_argument("--lr-schedule '" + shown + "': " + why + " (valid: "
                              + lr_schedule_forms + ")");
}

double number(const std::string& text, const std::string& spec, const char* what) {
  auto x = parse_finite(text);
  if (!x)
    refuse(spec, std::string(what) + " '" + text + "' is not a number");
  return *x;
}

std::string num(double x) {
  char text[40];
  std::snprintf(text, sizeof(text), "%.17g", x);
  return text;
}

} // namespace

lr_schedule lr_schedule::parse(const std::string& spec) {
  lr_schedule s;
  const auto colon = spec.find(':');
  const std::string head = spec.substr(0, colon);
  const bool has_arg = colon != std::string::npos;
  const std::string arg = has_arg ? spec.substr(colon + 1) : "";
  if (head == "const" || head == "none" || spec.empty()) {
    if (has_arg)
      refuse(spec, "const takes no parameter");
    return s;
  }
  if (head == "inv" || head == "invsqrt") {
    s.kind = head == "inv" ? kind_inv : kind_invsqrt;
    if (!has_arg && s.kind == kind_inv)
      refuse(spec, "inv needs its step scale, e.g. inv:100");
    if (has_arg) {
      s.t0 = number(arg, spec, "T0");
      if (!(s.t0 > 0))
        refuse(spec, "T0 must be > 0");
    }
    return s;
  }
  if (head == "cosine") {
    if (has_arg)
      refuse(spec, "cosine takes no parameter (its horizon is --steps)");
    s.kind = kind_cosine;
    return s;
  }
  if (head == "step") {
    const auto comma = arg.find(',');
    if (!has_arg || comma == std::string::npos)
      refuse(spec, "step needs EVERY,FACTOR, e.g. step:100,0.5");
    s.kind = kind_step;
    const double every = number(arg.substr(0, comma), spec, "EVERY");
    if (!(every >= 1 && every <= 9e15) || every != std::floor(every))
      refuse(spec, "EVERY must be a whole number >= 1");
    s.every = static_cast<int64_t>(every);
    s.factor = number(arg.substr(comma + 1), spec, "FACTOR");
    if (!(s.factor > 0 && s.factor <= 1))
      refuse(spec, "FACTOR must be in (0, 1]");
    return s;
  }
  refuse(spec, "unknown schedule");
}

std::string lr_schedule::to_string() const {
  switch (kind) {
    case kind_inv:
      return "inv:" + num(t0);
    case kind_invsqrt:
      return "invsqrt:" + num(t0);
    case kind_cosine:
      return "cosine";
    case kind_step:
      return "step:" + std::to_string(every) + "," + num(factor);
    default:
      return "const";
  }
}

double lr_schedule::scale(int64_t t, int64_t horizon) const {
  const double x = static_cast<double>(std::max<int64_t>(0, t));
  switch (kind) {
    case kind_inv:
      return 1.0 / (1.0 + x / t0);
    case kind_invsqrt:
      return 1.0 / std::sqrt(1.0 + x / t0);
    case kind_cosine: {
      const double T = static_cast<double>(std::max<int64_t>(1, horizon));
      return 0.5 * (1.0 + std::cos(M_PI * std::min(x, T) / T));
    }
    case kind_step:
      return std::pow(factor, std::floor(x / static_cast<double>(every)));
    default:
      return 1.0;
  }
}

} // namespace chorus

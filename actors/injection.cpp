#include "actors/injection.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "messages/checked.hpp"

namespace chorus {

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(s);
  while (std::getline(in, part, sep))
    parts.push_back(part);
  return parts;
}

double parse_number(const std::string& text, const std::string& what) {
  auto x = parse_finite(text);
  if (!x)
    throw std::invalid_argument(what + ": '" + text + "' is not a number");
  return *x;
}

// "RANK:VALUE[,RANK:VALUE...]" with ranks checked against `workers`, each
// rank at most once.
std::vector<std::pair<int, double>> parse_rank_values(const std::string& spec, int workers,
                                                      const std::string& flag) {
  std::vector<std::pair<int, double>> out;
  std::vector<std::string> seen(static_cast<size_t>(std::max(workers, 0)));
  if (spec.empty())
    return out;
  for (auto& item : split(spec, ',')) {
    auto colon = item.find(':');
    if (colon == std::string::npos)
      throw std::invalid_argument(flag + ": '" + item + "' should be RANK:VALUE");
    double rank = parse_number(item.substr(0, colon), flag + " rank");
    if (rank != std::floor(rank) || rank < 0 || rank >= workers)
      throw std::invalid_argument(flag + ": worker " + item.substr(0, colon)
                                  + " does not exist (workers are 0.." + std::to_string(workers - 1)
                                  + ")");
    auto& first = seen[static_cast<size_t>(rank)];
    if (!first.empty())
      throw std::invalid_argument(flag + ": worker " + item.substr(0, colon) + " is given twice ('"
                                  + first + "' and '" + item + "'); give each worker once");
    first = item;
    out.emplace_back(static_cast<int>(rank), parse_number(item.substr(colon + 1), flag));
  }
  return out;
}

std::string short_number(double x) {
  std::ostringstream o;
  o << x;
  return o.str();
}

} // namespace

double parse_millis(const std::string& text) {
  auto ends = [&](const char* suffix) {
    std::string s(suffix);
    return text.size() > s.size() && text.compare(text.size() - s.size(), s.size(), s) == 0;
  };
  double ms;
  if (ends("us"))
    ms = parse_number(text.substr(0, text.size() - 2), "duration") / 1000;
  else if (ends("ms"))
    ms = parse_number(text.substr(0, text.size() - 2), "duration");
  else if (ends("s"))
    ms = parse_number(text.substr(0, text.size() - 1), "duration") * 1000;
  else
    ms = parse_number(text, "duration");
  if (ms < 0)
    throw std::invalid_argument("duration '" + text + "' is negative");
  if (ms > max_injected_ms)
    throw std::invalid_argument("duration '" + text + "' is too long (at most 1e15 ms)");
  return ms;
}

delay_spec delay_spec::parse(const std::string& spec) {
  const char* forms = "valid forms: fixed:2ms, uniform:1ms,5ms, exp:2ms";
  delay_spec d;
  if (spec.empty() || spec == "none")
    return d;
  auto colon = spec.find(':');
  if (colon == std::string::npos)
    throw std::invalid_argument("delay '" + spec + "': " + forms);
  auto head = spec.substr(0, colon), tail = spec.substr(colon + 1);
  if (head == "fixed") {
    d.kind = fixed;
    d.a_ms = parse_millis(tail);
  } else if (head == "exp") {
    d.kind = exponential;
    d.a_ms = parse_millis(tail);
  } else if (head == "uniform") {
    auto parts = split(tail, ',');
    if (parts.size() != 2)
      throw std::invalid_argument("delay '" + spec + "': uniform needs LOW,HIGH; " + forms);
    d.kind = uniform;
    d.a_ms = parse_millis(parts[0]);
    d.b_ms = parse_millis(parts[1]);
    if (d.b_ms < d.a_ms)
      throw std::invalid_argument("delay '" + spec + "': HIGH must be >= LOW");
  } else {
    throw std::invalid_argument("delay '" + spec + "': " + forms);
  }
  return d;
}

std::string delay_spec::to_string() const {
  auto ms = [](double x) {
    std::ostringstream o;
    o << x << "ms";
    return o.str();
  };
  switch (kind) {
    case fixed:
      return "fixed:" + ms(a_ms);
    case uniform:
      return "uniform:" + ms(a_ms) + "," + ms(b_ms);
    case exponential:
      return "exp:" + ms(a_ms);
    default:
      return "none";
  }
}

std::chrono::microseconds delay_spec::sample(std::mt19937_64& rng) const {
  double ms = 0;
  switch (kind) {
    case fixed:
      ms = a_ms;
      break;
    case uniform:
      ms = std::uniform_real_distribution<double>(a_ms, b_ms)(rng);
      break;
    case exponential:
      ms = a_ms > 0 ? std::exponential_distribution<double>(1.0 / a_ms)(rng) : 0;
      break;
    default:
      break;
  }
  // Compared as double before the cast: a cast of an out-of-range value is
  // undefined.
  double us = std::min(ms * 1000, static_cast<double>(max_injected_wait.count()));
  return std::chrono::microseconds(static_cast<int64_t>(us));
}

std::chrono::microseconds injection::extra_time(std::chrono::nanoseconds compute,
                                                std::mt19937_64& rng) const {
  double us = static_cast<double>(compute.count()) / 1000 * (slowdown - 1)
              + static_cast<double>(step_delay.sample(rng).count()) + 2000 * link_delay_ms;
  us = std::min(std::max(us, 0.0), static_cast<double>(max_injected_wait.count()));
  return std::chrono::microseconds(static_cast<int64_t>(us));
}

std::string injection::describe() const {
  std::ostringstream o;
  const char* sep = "";
  if (slowdown != 1)
    o << sep << "slow x" << slowdown, sep = ", ";
  if (step_delay.active())
    o << sep << "delay " << step_delay.to_string(), sep = ", ";
  if (link_delay_ms > 0)
    o << sep << "link " << link_delay_ms << "ms", sep = ", ";
  if (crash_at_step >= 0)
    o << sep << "crash at protocol step " << crash_at_step, sep = ", ";
  return o.str().empty() ? "none" : o.str();
}

std::vector<injection> parse_injections(int workers, const std::string& slow,
                                        const std::string& delay, const std::string& link,
                                        const std::string& crash) {
  std::vector<injection> out(static_cast<size_t>(std::max(workers, 0)));
  for (auto [rank, factor] : parse_rank_values(slow, workers, "--slow")) {
    if (factor < 1 || factor > max_slowdown)
      throw std::invalid_argument("--slow: factor " + short_number(factor)
                                  + " must be between 1 and 1e12");
    out[rank].slowdown = factor;
  }
  // The flag's name in front of the parsers' own messages.
  auto named = [](const char* flag, auto parse) {
    try {
      return parse();
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string(flag) + ": " + e.what());
    }
  };
  auto d = named("--delay", [&] { return delay_spec::parse(delay); });
  double link_ms = named("--link-delay", [&] { return link.empty() ? 0 : parse_millis(link); });
  for (auto& inj : out) {
    inj.step_delay = d;
    inj.link_delay_ms = link_ms;
  }
  for (auto [rank, step] : parse_rank_values(crash, workers, "--crash")) {
    if (step < 0 || step != std::floor(step) || step > static_cast<double>(max_crash_step))
      throw std::invalid_argument("--crash: step " + short_number(step)
                                  + " must be a whole number between 0 and 2^53");
    out[rank].crash_at_step = static_cast<int64_t>(step);
  }
  return out;
}

} // namespace chorus

#include "actors/run_tracker.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "messages/checked.hpp"

namespace chorus {

const std::string& run_plan::text(const std::string& key) const {
  auto i = options.find(key);
  if (i == options.end())
    throw std::invalid_argument("option " + key + " is not set (spawn_algorithm fills in every "
                                "option's default from the registry)");
  return i->second;
}

int64_t run_plan::lr_clock::t_after(int64_t protocol_steps) const {
  const int64_t s = std::max<int64_t>(0, protocol_steps);
  const int64_t first = std::min(s, sync_steps);
  return (first + (s - first) * per_step) / std::max<int64_t>(1, peers);
}

float run_plan::lr_at(int64_t t) const {
  if (schedule.constant())
    return lr;
  return static_cast<float>(static_cast<double>(lr) * schedule.scale(t, clock.t_after(steps)));
}

double run_plan::number(const std::string& key) const {
  const auto& value = text(key);
  auto x = parse_finite(value);
  if (!x)
    throw std::invalid_argument("option " + key + ": '" + value + "' is not a number");
  return *x;
}

double run_tracker::epoch() const {
  return static_cast<double>(samples_) / static_cast<double>(std::max<int64_t>(1, plan_.train_size));
}

bool run_tracker::budget_spent() const {
  return (plan_.steps > 0 && step_ >= plan_.steps)
         || (plan_.max_samples > 0 && samples_ >= plan_.max_samples);
}

bool run_tracker::eval_due() const {
  if (budget_spent())
    return last_eval_step_ != step_;
  if (plan_.eval_every > 0)
    return step_ > 0 && step_ % plan_.eval_every == 0 && last_eval_step_ != step_;
  if (plan_.eval_every_samples > 0)
    return samples_ / plan_.eval_every_samples
           > std::max<int64_t>(0, last_eval_samples_) / plan_.eval_every_samples;
  return false;
}

void run_tracker::eval_started(bool pauses_training) {
  eval_t0_ = clock_type::now();
  eval_pauses_ = pauses_training;
  last_eval_step_ = step_;
  last_eval_samples_ = samples_;
}

metrics_row run_tracker::eval_finished(const evaluation& ev, std::map<std::string, double> extra) {
  if (eval_pauses_)
    eval_s_ += std::chrono::duration<double>(clock_type::now() - eval_t0_).count();
  metrics_row row;
  row.step = step_;
  row.epoch = epoch();
  row.wall_s = wall();
  row.train_loss = loss_count_ > 0 ? loss_sum_ / static_cast<double>(loss_count_)
                                   : std::numeric_limits<double>::quiet_NaN();
  row.test_loss = ev.loss;
  row.test_acc = ev.accuracy;
  row.bytes_sent = bytes_;
  // The latest protocol metrics also go into the final summary, whichever
  // way the run ends (budget, target, stop).
  for (auto& [key, value] : extra)
    summary_extra_[key] = value;
  row.extra = std::move(extra);
  // The step size of the last step taken (rows only, not the summary).
  row.extra["lr"] = plan_.lr_at(std::max<int64_t>(0, plan_.clock.t_after(step_) - 1));
  if (loss_count_ > 0)
    summary_.train_loss = row.train_loss;
  loss_sum_ = 0;
  loss_count_ = 0;
  summary_.test_loss = ev.loss;
  summary_.test_acc = ev.accuracy;
  target_hit_now_ = false;
  if (plan_.target_acc >= 0 && ev.accuracy >= plan_.target_acc && !summary_.reached_target) {
    summary_.reached_target = true;
    summary_.time_to_target_s = row.wall_s;
    target_hit_now_ = true;
  }
  return row;
}

run_summary run_tracker::finish(const buffer& w, std::string reason) {
  running_ = false;
  auto s = summary_;
  s.algorithm = plan_.algorithm;
  s.steps = step_;
  s.epochs = epoch();
  s.wall_s = wall();
  s.eval_s = eval_s_;
  s.samples = samples_;
  s.bytes_sent = bytes_;
  s.workers_lost = lost_;
  s.stop_reason = std::move(reason);
  s.final_weights = w;
  s.extra = summary_extra_;
  return s;
}

} // namespace chorus

#include "actors/monitor.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include <caf/all.hpp>

#include "messages/json.hpp"

namespace chorus {

std::string to_json(const metrics_row& row) {
  json_object o;
  o.add("step", row.step)
    .add("epoch", row.epoch)
    .add("wall_s", row.wall_s)
    .add("train_loss", row.train_loss)
    .add("test_loss", row.test_loss)
    .add("test_acc", row.test_acc)
    .add("bytes_sent", row.bytes_sent);
  for (auto& [key, value] : row.extra)
    o.add(key, value);
  return o.str();
}

namespace {

struct monitor_state {
  static inline const char* name = "chorus.monitor";
  monitor_config cfg;
  std::unique_ptr<std::ofstream> metrics;
  std::unique_ptr<std::ofstream> log;
};

// A new file, never the old one truncated: a run that still writes to the
// old one (an --overwrite took its folder) cannot mix its rows into ours.
std::unique_ptr<std::ofstream> open_for_writing(const std::filesystem::path& p) {
  std::error_code ec;
  std::filesystem::remove(p, ec);
  auto f = std::make_unique<std::ofstream>(p, std::ios::out | std::ios::trunc);
  if (!*f)
    throw std::runtime_error("cannot write " + p.string());
  return f;
}

monitor_actor::behavior_type monitor_behavior(monitor_actor::stateful_pointer<monitor_state> self,
                                              monitor_config cfg,
                                              std::shared_ptr<std::ofstream> metrics,
                                              std::shared_ptr<std::ofstream> log) {
  self->state.cfg = std::move(cfg);
  return {
    [=](metrics_atom, const metrics_row& row) {
      // One write and a flush per row: a kill loses at most the row being
      // written, never leaves half of one.
      if (metrics) {
        auto line = to_json(row) + '\n';
        metrics->write(line.data(), static_cast<std::streamsize>(line.size()));
        metrics->flush();
      }
      if (self->state.cfg.progress) {
        char line[256];
        std::snprintf(line, sizeof(line),
                      "step %lld (epoch %.2f): train_loss %.4f test_loss %.4f test_acc %.4f "
                      "(%.2f s)",
                      static_cast<long long>(row.step), row.epoch, row.train_loss, row.test_loss,
                      row.test_acc, row.wall_s);
        std::cout << line << std::endl;
      }
    },
    [=](log_atom, const std::string& line) {
      if (log) {
        auto text = line + '\n';
        log->write(text.data(), static_cast<std::streamsize>(text.size()));
        log->flush();
      }
      if (!self->state.cfg.quiet_log)
        std::cerr << "[chorus] " << line << std::endl;
    },
    [=](flush_atom) {
      if (metrics)
        metrics->flush();
      if (log)
        log->flush();
      return ok_atom_v;
    },
  };
}

} // namespace

monitor_actor spawn_monitor(caf::actor_system& sys, monitor_config cfg) {
  std::shared_ptr<std::ofstream> metrics, log;
  if (!cfg.out_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(cfg.out_dir, ec);
    if (ec)
      throw std::runtime_error("cannot create output directory " + cfg.out_dir + ": "
                               + ec.message());
    std::filesystem::path dir(cfg.out_dir);
    metrics = open_for_writing(dir / "metrics.jsonl");
    log = open_for_writing(dir / "log.txt");
  }
  // Detached: file and console I/O must not stall a scheduler thread that
  // a worker could be computing on.
  return sys.spawn<caf::detached>(monitor_behavior, std::move(cfg), std::move(metrics),
                                  std::move(log));
}

} // namespace chorus

// Stopping a run from outside it. A stop_switch is what any thread flips to
// end the experiment in progress after its current step; signal_watch is what
// `chorus train` installs so that SIGINT and SIGTERM flip it. The signal
// handler only writes a byte to a pipe (a self-pipe: async-signal-safe, and
// whichever thread takes the signal, libraries' threads included); a thread of
// the watch's own reads it and flips the switch. The first signal stops the
// run, which then ends as usual (metrics and log flushed, model.npy and the
// summary written, stop_reason "interrupted"); a second exits at once, from
// the handler. A signal the parent set to be ignored (a background job's
// SIGINT) stays ignored.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace chorus {

/// A request to stop the experiment in progress, from any thread.
class stop_switch {
public:
  /// Asks the run to stop after its current step, or right after it starts
  /// when it has not started yet. Thread-safe; later calls do nothing.
  void request(const std::string& why);

  /// Whether request() was called.
  bool requested() const;

  /// Used by the runner while its protocol runs: a request calls `stop`
  /// (once), at once if one came before. detach() returns only when no call
  /// of `stop` is in progress.
  void attach(std::function<void(const std::string& why)> stop);
  void detach();

private:
  mutable std::mutex mutex_;
  bool requested_ = false;
  bool delivered_ = false;
  std::string why_;
  std::function<void(const std::string&)> stop_;
};

/// Turns SIGINT and SIGTERM into a stop_switch request while it lives.
class signal_watch {
public:
  /// Installs the handlers and starts the thread that reads the pipe. A
  /// second signal prints a line and _exit()s with 128 + its number. One
  /// watch at a time per process; throws std::runtime_error for a second.
  explicit signal_watch(stop_switch& target);
  signal_watch(const signal_watch&) = delete;
  signal_watch& operator=(const signal_watch&) = delete;
  /// Restores the previous handlers and stops the reading thread.
  ~signal_watch();

  /// The first signal received, 0 if none.
  int signal() const { return first_.load(); }

  /// The conventional exit status for it (130 for SIGINT, 143 for SIGTERM),
  /// 0 if none came.
  int exit_status() const { return signal() == 0 ? 0 : 128 + signal(); }

private:
  void watch();

  stop_switch& target_;
  std::atomic<int> first_{0};
  int pipe_[2] = {-1, -1};
  bool installed_[2] = {false, false};  // SIGINT, SIGTERM
  std::thread thread_;
};

} // namespace chorus

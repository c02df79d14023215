// A run's output folder (--out): one run at a time writes into it, and the
// files a reader opens whole (config.json, model.npy) appear whole or not at
// all. A run holds an flock on OUT/.lock, which names it (pid, start time);
// the kernel drops the lock when the process ends, however it ends, so a
// killed run leaves nothing stale. The file itself stays.
#pragma once

#include <functional>
#include <string>

namespace chorus {

/// Exclusive use of an output folder for as long as it lives.
class out_dir_lock {
public:
  /// Creates `dir` if needed and locks it. When another run holds it, throws
  /// std::invalid_argument naming the folder and that run, unless `take_over`
  /// (--overwrite): then this run takes the folder and the other one writes
  /// nothing more into it. Throws std::runtime_error when `dir` cannot be
  /// created or written.
  out_dir_lock(const std::string& dir, bool take_over);
  out_dir_lock(const out_dir_lock&) = delete;
  out_dir_lock& operator=(const out_dir_lock&) = delete;
  ~out_dir_lock();

  /// False once another run took the folder over with --overwrite.
  bool still_held() const;

private:
  std::string dir_;
  int fd_ = -1;
};

/// Writes `path` through `write` (given a temporary path beside it), then
/// renames the result into place, so readers see the old file or the whole
/// new one. Removes the temporary file and rethrows when `write` throws.
void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write);

} // namespace chorus

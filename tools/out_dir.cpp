// A run's output folder (see out_dir.hpp).
#include "tools/out_dir.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <stdexcept>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace chorus {

namespace {

std::string lock_path(const std::string& dir) {
  return (std::filesystem::path(dir) / ".lock").string();
}

bool same_file(int fd, const std::string& path) {
  struct stat a {}, b {};
  return ::fstat(fd, &a) == 0 && ::stat(path.c_str(), &b) == 0 && a.st_dev == b.st_dev
         && a.st_ino == b.st_ino;
}

// What the lock file says about the run that holds it ("pid 123, started ...").
std::string holder(const std::string& path) {
  std::string text(200, '\0');
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return "unknown";
  auto n = ::read(fd, text.data(), text.size());
  ::close(fd);
  text.resize(n > 0 ? static_cast<size_t>(n) : 0);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\0'))
    text.pop_back();
  return text.empty() ? "unknown" : text;
}

void describe_self(int fd) {
  char when[32] = "?";
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  if (localtime_r(&now, &tm) != nullptr)
    std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
  char text[96];
  int n = std::snprintf(text, sizeof(text), "pid %ld, started %s\n", static_cast<long>(::getpid()), when);
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text, static_cast<size_t>(n), 0) != n)
    return;  // the lock holds without its description
}

} // namespace

out_dir_lock::out_dir_lock(const std::string& dir, bool take_over) : dir_(dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    throw std::runtime_error("cannot create output directory " + dir + ": " + ec.message());
  auto path = lock_path(dir);
  // A lock taken on a file that another run has just replaced (--overwrite)
  // is no lock: check that the locked file is still the one at `path`.
  for (int attempt = 0; attempt < 100; ++attempt) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0)
      throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) {
      if (same_file(fd_, path)) {
        describe_self(fd_);
        return;
      }
    } else if (errno != EWOULDBLOCK) {
      std::string why = std::strerror(errno);
      ::close(fd_);
      throw std::runtime_error("cannot lock " + path + ": " + why);
    } else if (!take_over) {
      auto other = holder(path);
      ::close(fd_);
      fd_ = -1;
      throw std::invalid_argument("output directory " + dir + " is in use by another chorus run ("
                                  + other + "); wait for it, choose another --out, or pass "
                                  "--overwrite to take the directory over from it");
    } else {
      // Take over: a fresh lock file renamed over the old one. The other run
      // keeps its lock on a file no longer in the folder and sees that.
      ::close(fd_);
      auto fresh = path + "." + std::to_string(::getpid());
      fd_ = ::open(fresh.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd_ < 0)
        throw std::runtime_error("cannot write " + fresh + ": " + std::strerror(errno));
      if (::flock(fd_, LOCK_EX | LOCK_NB) == 0 && ::rename(fresh.c_str(), path.c_str()) == 0) {
        describe_self(fd_);
        return;
      }
      ::unlink(fresh.c_str());
    }
    ::close(fd_);
    fd_ = -1;
  }
  throw std::runtime_error("cannot lock " + path + ": it keeps being replaced");
}

out_dir_lock::~out_dir_lock() {
  if (fd_ >= 0)
    ::close(fd_);  // drops the lock; the file stays (see out_dir.hpp)
}

bool out_dir_lock::still_held() const {
  return fd_ >= 0 && same_file(fd_, lock_path(dir_));
}

void write_atomically(const std::string& path,
                      const std::function<void(const std::string&)>& write) {
  auto temp = path + ".tmp." + std::to_string(::getpid());
  try {
    write(temp);
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove(temp, ec);
    throw;
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    std::string why = std::strerror(errno);
    std::error_code ec;
    std::filesystem::remove(temp, ec);
    throw std::runtime_error("cannot write " + path + ": " + why);
  }
}

} // namespace chorus

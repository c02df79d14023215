// chorus plot: runs tools/plot.py (matplotlib) on run and sweep folders
// (commands.hpp). The script lies beside the binary in a build folder, in
// PREFIX/share/chorus once installed.
#include "tools/commands.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <sstream>

#include <unistd.h>

namespace chorus {

namespace {

namespace fs = std::filesystem;

std::string find_script() {
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec)
    return {};
  for (auto candidate : {exe.parent_path() / "plot.py",
                         exe.parent_path().parent_path() / "share" / "chorus" / "plot.py"})
    if (fs::is_regular_file(candidate, ec))
      return candidate.string();
  return {};
}

// /usr/bin/python3 (Debian's, with python3-matplotlib) when there is one,
// else the first python3 on PATH.
std::string find_python() {
  if (::access("/usr/bin/python3", X_OK) == 0)
    return "/usr/bin/python3";
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    auto candidate = (fs::path(dir.empty() ? "." : dir) / "python3").string();
    if (::access(candidate.c_str(), X_OK) == 0)
      return candidate;
  }
  return {};
}

} // namespace

int plot_main(const std::vector<std::string>& args) {
  auto script = find_script();
  if (script.empty()) {
    std::cerr << "chorus plot: plot.py not found beside this chorus binary nor in "
                 "../share/chorus/ (a build folder gets it at configure time; "
                 "cmake --install puts it in PREFIX/share/chorus)\n";
    return 1;
  }
  auto python = find_python();
  if (python.empty()) {
    std::cerr << "chorus plot: no python3 found (/usr/bin/python3 or on PATH); install "
                 "python3 and python3-matplotlib (apt-get install python3-matplotlib)\n";
    return 1;
  }
  std::vector<std::string> argv_s{python, script};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  std::cout.flush();
  ::execv(argv[0], argv.data());
  std::cerr << "chorus plot: cannot run " << python << ": " << std::strerror(errno) << "\n";
  return 1;
}

} // namespace chorus

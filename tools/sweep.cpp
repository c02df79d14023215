// chorus sweep: a grid of `chorus train` runs over seeds, resumable, and the
// summary table over seeds (commands.hpp).
#include "tools/commands.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "tools/experiment.hpp"
#include "tools/options.hpp"
#include "tools/out_dir.hpp"

namespace chorus {

namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

const char* sweep_help =
  "usage: chorus sweep NAME --grid KEY=V1,V2[,...] [--grid ...] [--seeds S1,S2,...]\n"
  "                    [--runs-dir DIR] [--jobs J] [chorus train options: the base config]\n\n"
  "Runs every point of the grid (the cartesian product of the --grid lists) with every\n"
  "seed as its own `chorus train` process, into RUNS/NAME/POINT/seed-S/ (POINT: the\n"
  "KEY=VALUE pairs, keys sorted, joined by ','). KEY is a train option without dashes\n"
  "(lr, algorithm, workers, tau, ...). Values are split on ',' or, when the list holds\n"
  "a ';', on ';' (for values with commas: --grid 'model=mlp:64,64;mlp:128').\n"
  "A run whose summary.json exists is finished and skipped: rerun the same command to\n"
  "resume. A failed run is reported with its log (output.txt in its folder) and the\n"
  "sweep goes on; the exit status is then 1.\n"
  "Writes RUNS/NAME/summary.csv and summary.json: per point, mean and sample standard\n"
  "deviation (n-1) over seeds of every numeric final metric of the runs' summaries,\n"
  "and with --target-acc A the time to target: the first evaluation (wall_s, step) of\n"
  "metrics.jsonl with test_acc >= A, averaged over the seeds that reached it.\n\n"
  "options:\n"
  "  --grid KEY=VALUES   one axis of the grid (repeat for more)\n"
  "  --seeds LIST        seeds of every point [1]\n"
  "  --runs-dir DIR      where sweeps go [runs]\n"
  "  --jobs J            runs at a time [1]\n\n"
  "example:\n"
  "  chorus sweep lr-vs-algo --grid lr=0.05,0.1 --grid algorithm=sync_sgd,async_sgd \\\n"
  "      --seeds 1,2,3 --dataset synthetic-logistic --model logistic --steps 200\n";

struct axis {
  std::string key;  // the flag name, e.g. "lr", "eval-every"
  std::vector<std::string> values;
};

struct point {
  std::string name;                                   // folder name
  std::vector<std::pair<std::string, std::string>> params;  // in key order
};

struct sweep_spec {
  std::string name;
  std::vector<axis> grid;
  std::vector<uint64_t> seeds{1};
  std::string runs_dir = "runs";
  int jobs = 1;
  std::vector<std::string> base;  // train flags
  double target_acc = -1;
};

std::vector<std::string> split_values(const std::string& list) {
  const char sep = list.find(';') != std::string::npos ? ';' : ',';
  std::vector<std::string> out;
  std::string item;
  for (size_t at = 0; at <= list.size(); ++at) {
    if (at == list.size() || list[at] == sep) {
      out.push_back(item);
      item.clear();
    } else {
      item += list[at];
    }
  }
  return out;
}

axis parse_axis(const std::string& text) {
  auto eq = text.find('=');
  if (eq == std::string::npos)
    throw usage_error("--grid '" + text + "': expected KEY=V1,V2,... (e.g. --grid lr=0.05,0.1)");
  axis a;
  a.key = text.substr(0, eq);
  a.key.erase(0, std::min(a.key.find_first_not_of('-'), a.key.size()));
  std::replace(a.key.begin(), a.key.end(), '_', '-');
  bool takes_value = true;
  if (a.key.empty() || !is_train_option(a.key, &takes_value))
    throw usage_error("--grid: unknown key '" + text.substr(0, eq)
                      + "' (keys are chorus train options without dashes, e.g. lr, algorithm, "
                        "workers, tau; see chorus train --help)");
  if (!takes_value)
    throw usage_error("--grid: --" + a.key + " is a switch, not an option with values");
  if (a.key == "seed")
    throw usage_error("--grid: seeds go in --seeds, not --grid seed=...");
  if (a.key == "out" || a.key == "overwrite")
    throw usage_error("--grid: --" + a.key + " cannot vary (the sweep chooses each run's folder)");
  a.values = split_values(text.substr(eq + 1));
  std::set<std::string> seen;
  for (auto& v : a.values) {
    if (v.empty())
      throw usage_error("--grid '" + text + "': empty value (expected " + a.key + "=V1,V2,...)");
    if (!seen.insert(v).second)
      throw usage_error("--grid '" + text + "': value '" + v + "' given twice");
  }
  return a;
}

std::vector<uint64_t> parse_seeds(const std::string& list) {
  std::vector<uint64_t> out;
  for (auto& s : split_values(list)) {
    size_t used = 0;
    long long x = -1;
    try {
      x = std::stoll(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (s.empty() || used != s.size() || x < 0)
      throw usage_error("--seeds '" + list + "': '" + s + "' is not a seed (an integer >= 0)");
    if (std::find(out.begin(), out.end(), static_cast<uint64_t>(x)) != out.end())
      throw usage_error("--seeds '" + list + "': seed " + s + " given twice");
    out.push_back(static_cast<uint64_t>(x));
  }
  return out;
}

// Takes the value of option `name` at args[i] ("--name V" or "--name=V").
bool take(const std::vector<std::string>& args, size_t& i, const std::string& name,
          std::string& value) {
  const auto& a = args[i];
  if (a == "--" + name) {
    if (i + 1 >= args.size())
      throw usage_error("--" + name + " needs a value");
    value = args[++i];
    return true;
  }
  if (a.rfind("--" + name + "=", 0) == 0) {
    value = a.substr(name.size() + 3);
    return true;
  }
  return false;
}

sweep_spec parse_sweep_args(const std::vector<std::string>& args, bool* help) {
  sweep_spec spec;
  *help = false;
  std::set<std::string> base_flags;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    std::string value;
    if (a == "--help" || a == "-h") {
      *help = true;
      return spec;
    }
    if (take(args, i, "grid", value)) {
      auto ax = parse_axis(value);
      for (auto& other : spec.grid)
        if (other.key == ax.key)
          throw usage_error("--grid: key '" + ax.key + "' given twice (one --grid per key)");
      spec.grid.push_back(std::move(ax));
    } else if (take(args, i, "seeds", value)) {
      spec.seeds = parse_seeds(value);
    } else if (take(args, i, "runs-dir", value)) {
      if (value.empty())
        throw usage_error("--runs-dir needs a folder");
      spec.runs_dir = value;
    } else if (take(args, i, "jobs", value)) {
      size_t used = 0;
      int j = 0;
      try {
        j = std::stoi(value, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != value.size() || j < 1 || j > 256)
        throw usage_error("--jobs must be between 1 and 256 (got '" + value + "')");
      spec.jobs = j;
    } else if (a.rfind("--", 0) == 0) {
      auto name = a.substr(2, a.find('=') == std::string::npos ? std::string::npos : a.find('=') - 2);
      bool takes_value = true;
      if (!is_train_option(name, &takes_value) && name != "config")
        throw usage_error("unknown option --" + name + " (see chorus sweep --help and chorus train --help)");
      if (name == "out")
        throw usage_error("--out: a sweep puts each run in RUNS/NAME/POINT/seed-S; use --runs-dir");
      if (name == "seed")
        throw usage_error("--seed: a sweep takes its seeds from --seeds");
      base_flags.insert(name);
      spec.base.push_back(a);
      if ((takes_value || name == "config") && a.find('=') == std::string::npos) {
        if (i + 1 >= args.size())
          throw usage_error("--" + name + " needs a value");
        spec.base.push_back(args[++i]);
      }
    } else if (spec.name.empty()) {
      spec.name = a;
    } else {
      throw usage_error("one sweep name (got '" + spec.name + "' and '" + a + "')");
    }
  }
  if (spec.name.empty())
    throw usage_error("a sweep needs a NAME: chorus sweep NAME --grid KEY=V1,V2 ...");
  if (spec.name == "." || spec.name == ".." || spec.name.find('/') != std::string::npos)
    throw usage_error("sweep name '" + spec.name + "': a folder name, without '/'");
  for (auto& ax : spec.grid)
    if (base_flags.count(ax.key))
      throw usage_error("--" + ax.key + " is both a base option and a --grid key; give it once");
  return spec;
}

std::string sanitize(const std::string& s) {
  std::string out;
  for (char c : s)
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_'
            || c == '=' || c == '+')
             ? c
             : '_';
  return out;
}

std::vector<point> make_points(const std::vector<axis>& grid) {
  std::vector<point> points{point{}};
  for (auto& ax : grid) {
    std::vector<point> next;
    for (auto& p : points)
      for (auto& v : ax.values) {
        auto q = p;
        q.params.emplace_back(ax.key, v);
        next.push_back(std::move(q));
      }
    points = std::move(next);
  }
  std::set<std::string> names;
  for (auto& p : points) {
    auto sorted = p.params;
    std::sort(sorted.begin(), sorted.end());
    for (auto& [k, v] : sorted)
      p.name += (p.name.empty() ? "" : ",") + sanitize(k + "=" + v);
    if (p.name.empty())
      p.name = "base";
    if (!names.insert(p.name).second)
      throw usage_error("--grid: two points share the folder name '" + p.name
                        + "' (values that differ only in characters outside [A-Za-z0-9._=+-])");
  }
  return points;
}

std::string describe(const point& p) {
  std::string out;
  for (auto& [k, v] : p.params)
    out += (out.empty() ? "" : " ") + k + "=" + v;
  return out.empty() ? "base" : out;
}

// A run's summary.json, when the run finished (not interrupted).
bool read_summary(const std::string& dir, ojson* out) {
  std::ifstream in(fs::path(dir) / "summary.json");
  if (!in)
    return false;
  try {
    auto s = ojson::parse(in);
    if (!s.is_object() || s.value("stop_reason", "") == "interrupted")
      return false;
    if (out)
      *out = std::move(s);
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

std::string last_line(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty())
      last = line;
  return last.size() > 200 ? last.substr(0, 200) + "..." : last;
}

volatile std::sig_atomic_t stop_signal = 0;
extern "C" void on_stop_signal(int sig) {
  if (stop_signal == 0)
    stop_signal = sig;
}

struct run_job {
  size_t point = 0;
  uint64_t seed = 0;
  std::string dir;
  size_t index = 0;  // 1-based, of all runs
  std::chrono::steady_clock::time_point started;
};

pid_t start_run(const std::vector<std::string>& train_args, const std::string& log_path) {
  std::vector<std::string> argv_s{"/proc/self/exe", "train"};
  argv_s.insert(argv_s.end(), train_args.begin(), train_args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  std::cout.flush();
  std::cerr.flush();
  pid_t pid = ::fork();
  if (pid < 0)
    throw std::runtime_error(std::string("cannot start a run: fork: ") + std::strerror(errno));
  if (pid == 0) {
    // Only async-signal-safe calls until exec. A process group of its own:
    // a terminal's Ctrl-C reaches the sweep alone, which passes it on once
    // (a second SIGINT would end a run at once, without its files).
    ::setpgid(0, 0);
    int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || ::dup2(fd, 1) < 0 || ::dup2(fd, 2) < 0)
      ::_exit(127);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGINT, &dfl, nullptr);
    ::sigaction(SIGTERM, &dfl, nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

struct stats {
  double mean = 0, std = NAN, min = 0, max = 0;
  size_t n = 0;
};

stats compute(const std::vector<double>& xs) {
  stats s;
  s.n = xs.size();
  if (xs.empty())
    return s;
  double sum = 0;
  for (double x : xs)
    sum += x;
  s.mean = sum / static_cast<double>(xs.size());
  if (xs.size() > 1) {
    double sq = 0;
    for (double x : xs)
      sq += (x - s.mean) * (x - s.mean);
    s.std = std::sqrt(sq / static_cast<double>(xs.size() - 1));
  }
  s.min = *std::min_element(xs.begin(), xs.end());
  s.max = *std::max_element(xs.begin(), xs.end());
  return s;
}

ojson to_json(const stats& s) {
  ojson o;
  o["mean"] = s.n ? ojson(s.mean) : ojson();
  o["std"] = std::isnan(s.std) ? ojson() : ojson(s.std);
  o["min"] = s.n ? ojson(s.min) : ojson();
  o["max"] = s.n ? ojson(s.max) : ojson();
  o["n"] = s.n;
  return o;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos)
    return s;
  std::string out = "\"";
  for (char c : s)
    out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string csv_number(double x, size_t n) {
  if (n == 0 || std::isnan(x))
    return "";
  char text[40];
  std::snprintf(text, sizeof(text), "%.10g", x);
  return text;
}

// The first evaluation of metrics.jsonl at or above `target`: (wall_s, step).
bool time_to_target(const std::string& dir, double target, double* wall_s, double* step) {
  std::ifstream in(fs::path(dir) / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    try {
      auto row = nlohmann::json::parse(line);
      auto acc = row.find("test_acc");
      if (acc != row.end() && acc->is_number() && acc->get<double>() >= target) {
        *wall_s = row.value("wall_s", NAN);
        *step = row.value("step", NAN);
        return true;
      }
    } catch (const nlohmann::json::exception&) {
      return false;  // a torn last line: not reached
    }
  }
  return false;
}

void write_summary(const sweep_spec& spec, const std::vector<point>& points,
                   const std::string& sweep_dir) {
  std::vector<std::string> metric_names;  // in order of first appearance
  std::vector<std::map<std::string, std::vector<double>>> values(points.size());
  struct ttt {
    std::vector<double> wall_s, step;
    size_t of = 0;
  };
  std::vector<ttt> targets(points.size());
  std::vector<std::vector<uint64_t>> finished(points.size());
  for (size_t p = 0; p < points.size(); ++p)
    for (auto seed : spec.seeds) {
      auto dir = (fs::path(sweep_dir) / points[p].name / ("seed-" + std::to_string(seed))).string();
      ojson s;
      if (!read_summary(dir, &s))
        continue;
      finished[p].push_back(seed);
      for (auto& [key, v] : s.items()) {
        if (!v.is_number())
          continue;
        if (std::find(metric_names.begin(), metric_names.end(), key) == metric_names.end())
          metric_names.push_back(key);
        values[p][key].push_back(v.get<double>());
      }
      if (spec.target_acc >= 0) {
        ++targets[p].of;
        double w = 0, st = 0;
        if (time_to_target(dir, spec.target_acc, &w, &st)) {
          targets[p].wall_s.push_back(w);
          targets[p].step.push_back(st);
        }
      }
    }
  ojson doc;
  doc["sweep"] = spec.name;
  ojson grid = ojson::object();
  for (auto& ax : spec.grid)
    grid[ax.key] = ax.values;
  doc["grid"] = grid;
  doc["seeds"] = spec.seeds;
  doc["base"] = spec.base;
  doc["target_acc"] = spec.target_acc >= 0 ? ojson(spec.target_acc) : ojson();
  doc["spread"] = "std: sample standard deviation over the finished seeds (n-1; null for one "
                  "seed); min, max over them";
  doc["time_to_target"] = "first evaluation in metrics.jsonl with test_acc >= target_acc; "
                          "mean over the seeds that reached it (reached of finished)";
  std::ostringstream csv;
  csv << "point";
  for (auto& ax : spec.grid)
    csv << "," << csv_field(ax.key);
  csv << ",seeds_finished";
  for (auto& m : metric_names)
    csv << "," << csv_field(m + "_mean") << "," << csv_field(m + "_std");
  if (spec.target_acc >= 0)
    csv << ",ttt_reached,ttt_wall_s_mean,ttt_wall_s_std,ttt_step_mean,ttt_step_std";
  csv << "\n";
  ojson rows = ojson::array();
  for (size_t p = 0; p < points.size(); ++p) {
    ojson row;
    row["point"] = points[p].name;
    ojson params = ojson::object();
    for (auto& [k, v] : points[p].params)
      params[k] = v;
    row["params"] = params;
    row["seeds_finished"] = finished[p];
    csv << csv_field(points[p].name);
    for (auto& [k, v] : points[p].params)
      csv << "," << csv_field(v);
    csv << "," << finished[p].size();
    ojson metrics = ojson::object();
    for (auto& m : metric_names) {
      auto s = compute(values[p][m]);
      metrics[m] = to_json(s);
      csv << "," << csv_number(s.mean, s.n) << "," << csv_number(s.std, s.n);
    }
    row["metrics"] = metrics;
    if (spec.target_acc >= 0) {
      auto w = compute(targets[p].wall_s), st = compute(targets[p].step);
      row["time_to_target"] = {{"reached", w.n}, {"of", targets[p].of},
                               {"wall_s", to_json(w)}, {"step", to_json(st)}};
      csv << "," << w.n << "," << csv_number(w.mean, w.n) << "," << csv_number(w.std, w.n) << ","
          << csv_number(st.mean, st.n) << "," << csv_number(st.std, st.n);
    }
    csv << "\n";
    rows.push_back(std::move(row));
  }
  doc["points"] = std::move(rows);
  auto write = [](const std::string& path, const std::string& text) {
    write_atomically(path, [&](const std::string& temp) {
      std::ofstream out(temp);
      out << text;
      if (!out.flush())
        throw std::runtime_error("cannot write " + path);
    });
  };
  write((fs::path(sweep_dir) / "summary.json").string(), doc.dump(2) + "\n");
  write((fs::path(sweep_dir) / "summary.csv").string(), csv.str());
}

// Whether the run in `dir` was made with `cfg` (its folder aside); throws
// usage_error naming the first key that differs.
void check_same_config(const std::string& dir, const experiment_config& cfg) {
  auto path = (fs::path(dir) / "config.json").string();
  std::ifstream in(path);
  nlohmann::json had;
  try {
    had = nlohmann::json::parse(in).at("config");
  } catch (const nlohmann::json::exception&) {
    throw usage_error(path + " is missing or unreadable, but the run's summary.json is there; "
                      "remove " + dir + " to run it again");
  }
  auto want = nlohmann::json::parse(to_json(cfg));
  had.erase("out");
  want.erase("out");
  if (had == want)
    return;
  std::string key = "?";
  for (auto& [k, v] : want.items())
    if (!had.contains(k) || had[k] != v) {
      key = k + " (" + (had.contains(k) ? had[k].dump() : "absent") + " there, " + v.dump()
            + " now)";
      break;
    }
  throw usage_error("the finished run in " + dir + " was made with another config: " + key
                    + "; give the sweep another NAME (or --runs-dir), or remove that folder");
}

} // namespace

int sweep_main(const std::vector<std::string>& args) {
  sweep_spec spec;
  std::vector<point> points;
  try {
    bool help = false;
    spec = parse_sweep_args(args, &help);
    if (help) {
      std::cout << sweep_help;
      return 0;
    }
    points = make_points(spec.grid);
    // Every run's config is checked before any runs.
    for (auto& p : points)
      for (auto seed : spec.seeds) {
        auto flags = spec.base;
        for (auto& [k, v] : p.params)
          flags.insert(flags.end(), {"--" + k, v});
        flags.insert(flags.end(), {"--seed", std::to_string(seed)});
        bool train_help = false;
        experiment_config cfg;
        try {
          cfg = parse_train_args(flags, &train_help);
          spec.target_acc = cfg.target_acc;
        } catch (const std::invalid_argument& e) {
          throw usage_error("point " + describe(p) + ": " + e.what());
        }
        // A finished run of another config in the same place would be
        // skipped and summarized as this one: refused.
        auto dir = (fs::path(spec.runs_dir) / spec.name / p.name / ("seed-" + std::to_string(seed)))
                     .string();
        if (read_summary(dir, nullptr))
          check_same_config(dir, cfg);
      }
  } catch (const std::invalid_argument& e) {
    std::cerr << "chorus sweep: " << e.what() << "\n";
    return 2;
  }
  const auto sweep_dir = (fs::path(spec.runs_dir) / spec.name).string();
  std::error_code ec;
  fs::create_directories(sweep_dir, ec);
  if (ec) {
    std::cerr << "chorus sweep: cannot create " << sweep_dir << ": " << ec.message() << "\n";
    return 1;
  }
  std::vector<run_job> pending;
  const size_t total = points.size() * spec.seeds.size();
  size_t index = 0, skipped = 0;
  for (size_t p = 0; p < points.size(); ++p)
    for (auto seed : spec.seeds) {
      run_job job;
      job.point = p;
      job.seed = seed;
      job.index = ++index;
      job.dir = (fs::path(sweep_dir) / points[p].name / ("seed-" + std::to_string(seed))).string();
      if (read_summary(job.dir, nullptr)) {
        ++skipped;
        std::cout << "[sweep] " << job.index << "/" << total << " " << describe(points[p])
                  << " seed " << seed << ": finished before, skipped (" << job.dir
                  << "/summary.json)\n";
      } else {
        pending.push_back(job);
      }
    }
  std::cout << "[sweep] " << spec.name << ": " << points.size() << " point(s) x "
            << spec.seeds.size() << " seed(s) = " << total << " run(s), " << skipped
            << " finished before, " << pending.size() << " to run, " << spec.jobs
            << " at a time, in " << sweep_dir << std::endl;

  // SIGINT or SIGTERM: no new runs, the running ones get it once and end as
  // interrupted runs (not finished: a rerun of the sweep runs them again),
  // then the summary of what finished.
  struct sigaction act {}, old_int {}, old_term {};
  act.sa_handler = on_stop_signal;  // no SA_RESTART: waitpid returns EINTR
  sigemptyset(&act.sa_mask);
  stop_signal = 0;
  ::sigaction(SIGINT, &act, &old_int);
  ::sigaction(SIGTERM, &act, &old_term);
  std::map<pid_t, run_job> running;
  size_t done = 0, failed = 0, next = 0;
  bool forwarded = false;
  std::vector<std::string> failures;
  while (next < pending.size() || !running.empty()) {
    while (stop_signal == 0 && next < pending.size() && running.size() < static_cast<size_t>(spec.jobs)) {
      auto job = pending[next++];
      auto& p = points[job.point];
      fs::create_directories(job.dir, ec);
      auto flags = spec.base;
      for (auto& [k, v] : p.params)
        flags.insert(flags.end(), {"--" + k, v});
      flags.insert(flags.end(), {"--seed", std::to_string(job.seed), "--out", job.dir, "--quiet"});
      job.started = std::chrono::steady_clock::now();
      try {
        auto pid = start_run(flags, (fs::path(job.dir) / "output.txt").string());
        running.emplace(pid, job);
        std::cout << "[sweep] " << job.index << "/" << total << " " << describe(p) << " seed "
                  << job.seed << ": started" << std::endl;
      } catch (const std::exception& e) {
        std::cerr << "chorus sweep: " << e.what() << "\n";
        ++failed;
        failures.push_back(job.dir);
      }
    }
    if (running.empty())
      break;
    if (stop_signal != 0 && !forwarded) {
      forwarded = true;
      std::cout << "[sweep] signal " << stop_signal << ": no new runs; waiting for "
                << running.size() << " running" << std::endl;
      for (auto& [pid, job] : running)
        ::kill(pid, stop_signal);
    }
    int raw = 0;
    pid_t pid = ::waitpid(-1, &raw, 0);
    if (pid < 0) {
      if (errno == EINTR)
        continue;
      std::cerr << "chorus sweep: waitpid: " << std::strerror(errno) << "\n";
      break;
    }
    auto it = running.find(pid);
    if (it == running.end())
      continue;
    auto job = it->second;
    running.erase(it);
    const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - job.started).count();
    const int status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
    ojson summary;
    const auto log = (fs::path(job.dir) / "output.txt").string();
    std::cout << "[sweep] " << job.index << "/" << total << " " << describe(points[job.point])
              << " seed " << job.seed << ": ";
    if (status == 0 && read_summary(job.dir, &summary)) {
      ++done;
      char line[128];
      std::snprintf(line, sizeof(line), "done in %.1f s, test_acc %.4f", secs,
                    summary.value("test_acc", NAN));
      std::cout << line << std::endl;
    } else if (stop_signal != 0 && (status == 130 || status == 143)) {
      std::cout << "interrupted (exit " << status << "); log: " << log << std::endl;
    } else {
      ++failed;
      failures.push_back(log);
      std::cout << "FAILED (exit " << status << "): " << last_line(log) << "; log: " << log
                << std::endl;
    }
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  try {
    write_summary(spec, points, sweep_dir);
  } catch (const std::exception& e) {
    std::cerr << "chorus sweep: " << e.what() << "\n";
    return 1;
  }
  std::cout << "[sweep] " << spec.name << ": " << done << " ran, " << skipped << " skipped, "
            << failed << " failed" << (stop_signal ? ", interrupted (rerun to resume)" : "")
            << "; summary: " << sweep_dir << "/summary.csv, " << sweep_dir << "/summary.json"
            << std::endl;
  for (auto& f : failures)
    std::cout << "[sweep] failed: " << f << "\n";
  if (stop_signal != 0)
    return 128 + stop_signal;
  return failed > 0 ? 1 : 0;
}

} // namespace chorus

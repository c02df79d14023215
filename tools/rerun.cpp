// chorus rerun: a run again from the config.json it wrote (commands.hpp).
#include "tools/commands.hpp"

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "tools/options.hpp"

namespace chorus {

namespace {

// A JSON scalar as a flag value: strings as they are, numbers as
// nlohmann-json writes them (shortest form that reads back to the same
// double), booleans as 1/0.
std::string flag_value(const nlohmann::json& v, const std::string& where) {
  if (v.is_string())
    return v.get<std::string>();
  if (v.is_boolean())
    return v.get<bool>() ? "1" : "0";
  if (v.is_number())
    return v.dump();
  throw usage_error(where + ": expected a string or a number, got " + v.dump());
}

} // namespace

std::vector<std::string> args_from_config_json(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw usage_error("no run config at " + path + " (a run folder written by chorus train --out holds config.json)");
  std::ifstream in(path);
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw usage_error(path + ": not valid JSON (" + e.what() + ")");
  }
  if (!doc.is_object() || !doc.contains("config") || !doc["config"].is_object())
    throw usage_error(path + ": no \"config\" object (not a chorus run's config.json)");
  std::vector<std::string> args;
  auto add = [&](const std::string& flag, const std::string& value) {
    args.push_back("--" + flag);
    args.push_back(value);
  };
  for (auto& [key, v] : doc["config"].items()) {
    const std::string where = path + ": config." + key;
    if (key == "out")
      continue;  // where it went, not what it ran
    if (key == "options") {
      if (!v.is_object())
        throw usage_error(where + ": expected an object");
      for (auto& [k, x] : v.items()) {
        std::string flag = k;
        std::replace(flag.begin(), flag.end(), '_', '-');
        bool takes_value = true;
        if (!is_train_option(flag, &takes_value))
          throw usage_error(where + "." + k + ": no such option in this chorus (--" + flag + ")");
        if (takes_value)
          add(flag, flag_value(x, where + "." + k));
        else if (flag_value(x, where + "." + k) != "0")
          args.push_back("--" + flag);
      }
      continue;
    }
    if (key == "devices" || key == "nodes") {
      if (!v.is_array())
        throw usage_error(where + ": expected an array");
      std::string list;
      for (auto& x : v)
        list += (list.empty() ? "" : ",") + flag_value(x, where);
      if (!list.empty())
        add(key, list);
      continue;
    }
    if (key == "timeout_ms") {
      add("timeout", flag_value(v, where) + "ms");
      continue;
    }
    if (key == "target_acc" && v.is_number() && v.get<double>() < 0)
      continue;  // none
    if (key == "processes" && v.is_number() && v.get<double>() == 0)
      continue;
    std::string flag = key;
    std::replace(flag.begin(), flag.end(), '_', '-');
    bool takes_value = true;
    if (!is_train_option(flag, &takes_value))
      throw usage_error(where + ": no such option in this chorus (--" + flag + ")");
    auto value = flag_value(v, where);
    if (!takes_value) {
      if (value != "0")
        args.push_back("--" + flag);
    } else if (!value.empty()) {
      add(flag, value);
    }
  }
  return args;
}

std::string rerun_help() {
  return "usage: chorus rerun DIR [--out NEWDIR] [--quiet]\n\n"
         "Runs again the run in DIR, with every flag its DIR/config.json records (the\n"
         "seed included), into NEWDIR [DIR-rerun, or DIR-rerun-2, ... when taken].\n"
         "A deterministic run (one worker, or a protocol without races) gives the same\n"
         "model.npy bit for bit on the same build. --threads and --spin-polls are rerun\n"
         "as recorded (auto stays auto): they change speed, not results.\n";
}

std::vector<std::string> rerun_args(const std::vector<std::string>& args, bool* help) {
  *help = false;
  std::string dir, out;
  bool quiet = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if (a == "--help" || a == "-h") {
      *help = true;
      return {};
    }
    if (a == "--out" || a.rfind("--out=", 0) == 0) {
      if (a == "--out" && i + 1 >= args.size())
        throw usage_error("--out needs a value NEWDIR");
      out = a == "--out" ? args[++i] : a.substr(6);
      if (out.empty())
        throw usage_error("--out needs a value NEWDIR");
    } else if (a == "--quiet") {
      quiet = true;
    } else if (a.rfind("--", 0) == 0) {
      throw usage_error("unknown option " + a + " (chorus rerun DIR [--out NEWDIR] [--quiet])");
    } else if (dir.empty()) {
      dir = a;
    } else {
      throw usage_error("one run folder at a time (got '" + dir + "' and '" + a + "')");
    }
  }
  if (dir.empty())
    throw usage_error("which run? chorus rerun DIR [--out NEWDIR]");
  while (dir.size() > 1 && dir.back() == '/')
    dir.pop_back();
  auto train = args_from_config_json((std::filesystem::path(dir) / "config.json").string());
  if (out.empty()) {
    std::error_code ec;
    out = dir + "-rerun";
    for (int n = 2; std::filesystem::exists(out, ec); ++n)
      out = dir + "-rerun-" + std::to_string(n);
  }
  if (std::filesystem::weakly_canonical(out) == std::filesystem::weakly_canonical(dir))
    throw usage_error("--out " + out + " is the run being rerun; choose another folder");
  train.push_back("--out");
  train.push_back(out);
  if (quiet)
    train.push_back("--quiet");
  return train;
}

} // namespace chorus

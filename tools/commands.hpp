// The commands around runs: `chorus sweep` (a grid of runs over seeds and
// their summary table), `chorus plot` (curves from run folders, through
// tools/plot.py and matplotlib) and `chorus rerun` (a run again from its
// config.json). Each returns the process's exit status: 0 done, 2 bad usage
// (nothing ran), 1 a run or the plot failed.
#pragma once

#include <string>
#include <vector>

namespace chorus {

/// `chorus sweep NAME --grid KEY=V1,V2 ... [--seeds S,...] [train flags]`.
int sweep_main(const std::vector<std::string>& args);

/// `chorus plot DIR... --x X --y Y [--out FILE] [--title T] [--band minmax|std]`.
int plot_main(const std::vector<std::string>& args);

/// The `chorus train` arguments that rerun the run whose config.json is
/// `config_path` (every recorded flag; no --out). Throws usage_error naming
/// the file for a missing, unreadable or foreign file.
std::vector<std::string> args_from_config_json(const std::string& config_path);

/// `chorus rerun DIR [--out NEWDIR]`: the train arguments (with --out) for
/// main to run; sets *help for --help. Throws usage_error.
std::vector<std::string> rerun_args(const std::vector<std::string>& args, bool* help);

/// The text of `chorus rerun --help`.
std::string rerun_help();

} // namespace chorus

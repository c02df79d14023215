// Command-line and config-file options of `chorus train`, with their help
// text. One table describes every option once: its flag, what it sets, and
// the line --help prints, so parser and documentation cannot drift apart.
#pragma once

#include <string>
#include <vector>

#include "tools/experiment.hpp"

namespace chorus {

/// Thrown for a bad flag or value; the message is for the user.
struct usage_error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

/// Parses `chorus train` arguments (after "train"). A --config FILE is read
/// first, wherever it appears, then the flags override it. Sets *help when
/// --help was given. Throws usage_error.
experiment_config parse_train_args(const std::vector<std::string>& args, bool* help);

/// The flags that make parse_train_args give back cfg's run: what it
/// trains on and how (not where: the cluster options, --out and the like
/// stay out). What a coordinator sends its nodes.
std::vector<std::string> to_args(const experiment_config& cfg);

/// Whether `name` (without dashes, e.g. "lr", "tau") is a `chorus train`
/// option; *takes_value says whether it takes a value (not a switch).
bool is_train_option(const std::string& name, bool* takes_value = nullptr);

/// The text of `chorus train --help`.
std::string train_help();

/// Reads a config file: one `key = value` per line, keys are the long option
/// names without dashes ("workers = 4"), '#' starts a comment. Returns the
/// pairs in order; throws usage_error naming the file and line.
std::vector<std::pair<std::string, std::string>> read_config_file(const std::string& path);

} // namespace chorus

#include "messages/errors.hpp"

#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace chorus {

std::string to_string(errc x) {
  switch (x) {
    case errc::none:
      return "none";
    case errc::worker_lost:
      return "worker_lost";
    case errc::timeout:
      return "timeout";
    case errc::non_finite:
      return "non_finite";
    case errc::dimension_mismatch:
      return "dimension_mismatch";
    case errc::bad_request:
      return "bad_request";
    case errc::no_workers_left:
      return "no_workers_left";
    case errc::compute_failed:
      return "compute_failed";
  }
  return "unknown";
}

caf::error make_error(errc x, std::string context) {
  return caf::error(static_cast<uint8_t>(x), errc_category,
                    caf::make_message(std::move(context)));
}

std::string describe(const caf::error& err) {
  if (!err)
    return "no error";
  if (err.category() == errc_category) {
    std::string text = to_string(static_cast<errc>(err.code()));
    auto& ctx = err.context();
    if (ctx.match_elements<std::string>())
      text += ": " + ctx.get_as<std::string>(0);
    return text;
  }
  if (err.category() == caf::atom("system"))
    return "caf: " + caf::to_string(static_cast<caf::sec>(err.code()));
  return caf::to_string(err);
}

bool is_run_failure(const caf::error& err) {
  return err.category() == errc_category && err.code() != static_cast<uint8_t>(errc::worker_lost);
}

} // namespace chorus

// The model registry: one explicit table from spec name to factory. It parses
// specs ("mlp:256,128") and reports unknown or malformed ones; each factory
// checks that the data fits its model (classes, features). Models themselves
// live in linear.cpp, mlp.cpp and cnn.cpp.
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "models/model.hpp"

namespace chorus {

// Factories defined beside their models.
namespace detail {
std::unique_ptr<model> make_linear(int64_t num_features, int64_t num_classes);
std::unique_ptr<model> make_logistic(int64_t num_features, int64_t num_classes);
std::unique_ptr<model> make_mlp(const std::string& spec, int64_t num_features,
                                const std::vector<int64_t>& hidden, int64_t num_classes);
std::unique_ptr<model> make_cnn(const std::string& spec, const std::string& args,
                                int64_t num_features, int64_t num_classes);
} // namespace detail

namespace {

// A wider layer is surely a typo, and would allocate gigabytes on first use.
constexpr int64_t max_hidden = int64_t{1} << 20;

// "H1,H2,..." -> sizes; each a plain positive decimal integer.
std::vector<int64_t> parse_hidden(const std::string& spec, const std::string& args) {
  auto bad = [&](const std::string& why) {
    return std::invalid_argument("model spec \"" + spec + "\": " + why +
                                 "; expected mlp:H1[,H2...] with positive integer widths, "
                                 "e.g. mlp:256 or mlp:256,128");
  };
  if (args.empty())
    throw bad("no hidden layer sizes");
  std::vector<int64_t> sizes;
  size_t pos = 0;
  while (true) {
    size_t comma = args.find(',', pos);
    std::string item = args.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (item.empty())
      throw bad("empty hidden layer size");
    int64_t v = 0;
    for (char ch : item) {
      if (ch < '0' || ch > '9')
        throw bad("hidden size \"" + item + "\" is not a positive integer");
      v = v * 10 + (ch - '0');
      if (v > max_hidden)
        throw bad("hidden size " + item + " exceeds " + std::to_string(max_hidden));
    }
    if (v == 0)
      throw bad("hidden size must be at least 1");
    sizes.push_back(v);
    if (comma == std::string::npos)
      break;
    pos = comma + 1;
  }
  return sizes;
}

struct entry {
  const char* name;   // what precedes ':' in a spec
  const char* form;   // how the spec is written
  const char* help;
  bool takes_args;    // whether the spec has a ":..." part
  std::unique_ptr<model> (*make)(const std::string& spec, const std::string& args,
                                 int64_t num_features, int64_t num_classes);
  bool args_optional = false;  // takes_args, but the bare name is valid too
};

const entry registry[] = {
    {"linear", "linear", "least squares 0.5 (<w,x> - y)^2, w in R^d, no bias (regression data)",
     false,
     [](const std::string&, const std::string&, int64_t d, int64_t c) {
       return detail::make_linear(d, c);
     }},
    {"logistic", "logistic",
     "binary logistic regression log(1 + exp(-s <w,x>)), s = 2y - 1, w in R^d, no bias (2 classes)",
     false,
     [](const std::string&, const std::string&, int64_t d, int64_t c) {
       return detail::make_logistic(d, c);
     }},
    {"softmax", "softmax", "multinomial logistic regression, W[C x d] then b[C] (C >= 2 classes)",
     false,
     [](const std::string&, const std::string&, int64_t d, int64_t c) {
       return detail::make_mlp("softmax", d, {}, c);
     }},
    {"mlp", "mlp:H1[,H2...]",
     "ReLU hidden layers of widths H1, H2, ..., softmax cross-entropy head (C >= 2 classes)", true,
     [](const std::string& spec, const std::string& args, int64_t d, int64_t c) {
       std::vector<int64_t> hidden = parse_hidden(spec, args);
       std::string canonical = "mlp:";
       for (size_t i = 0; i < hidden.size(); ++i)
         canonical += (i ? "," : "") + std::to_string(hidden[i]);
       return detail::make_mlp(canonical, d, hidden, c);
     }},
    {"cnn", "cnn[:C1,C2]",
     "square 1-channel images: conv3x3(C1)+ReLU, maxpool 2x2, conv3x3(C2)+ReLU, maxpool 2x2, "
     "dense softmax cross-entropy head (C >= 2 classes; default cnn:8,16)",
     true, detail::make_cnn, true},
};

std::string valid_specs() {
  std::string out;
  for (const entry& e : registry)
    out += std::string(out.empty() ? "" : ", ") + e.form;
  return out;
}

} // namespace

std::unique_ptr<model> make_model(const std::string& spec, int64_t num_features,
                                  int64_t num_classes) {
  size_t colon = spec.find(':');
  std::string name = spec.substr(0, colon);
  for (const entry& e : registry) {
    if (name != e.name)
      continue;
    bool has_args = colon != std::string::npos;
    if (e.takes_args && !has_args && !e.args_optional)
      throw std::invalid_argument("model spec \"" + spec + "\" needs arguments: " + e.form);
    if (!e.takes_args && has_args)
      throw std::invalid_argument("model spec \"" + spec + "\" takes no arguments: use \"" +
                                  e.form + "\"");
    return e.make(spec, has_args ? spec.substr(colon + 1) : std::string(), num_features,
                  num_classes);
  }
  throw std::invalid_argument("unknown model \"" + spec + "\"; valid models: " + valid_specs());
}

std::vector<std::pair<std::string, std::string>> model_names() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const entry& e : registry)
    out.emplace_back(e.form, e.help);
  return out;
}

} // namespace chorus

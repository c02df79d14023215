// A minimal JSON object writer for metrics rows, configs and summaries.
// Non-finite numbers become null (JSON has no NaN). Not a parser.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace chorus {

/// Quotes and escapes a string for JSON.
std::string json_quote(const std::string& s);

/// A JSON array of integers, e.g. [784,256].
template <class Int>
std::string json_int_array(const std::vector<Int>& xs) {
  std::string out = "[";
  for (size_t i = 0; i < xs.size(); ++i)
    out += (i ? "," : "") + std::to_string(xs[i]);
  return out + "]";
}

/// Builds one JSON object, keys in insertion order.
class json_object {
public:
  json_object& add(const std::string& key, double v) {
    char text[40];
    if (std::isfinite(v))
      std::snprintf(text, sizeof(text), "%.10g", v);
    else
      std::snprintf(text, sizeof(text), "null");
    return raw(key, text);
  }
  json_object& add(const std::string& key, int64_t v) { return raw(key, std::to_string(v)); }
  json_object& add(const std::string& key, int32_t v) { return raw(key, std::to_string(v)); }
  json_object& add(const std::string& key, uint64_t v) { return raw(key, std::to_string(v)); }
  json_object& add(const std::string& key, bool v) { return raw(key, v ? "true" : "false"); }
  json_object& add(const std::string& key, const std::string& v) { return raw(key, json_quote(v)); }
  json_object& add(const std::string& key, const char* v) { return raw(key, json_quote(v)); }
  json_object& add_null(const std::string& key) { return raw(key, "null"); }
  /// Adds an already-encoded JSON value (object, array).
  json_object& raw(const std::string& key, const std::string& encoded) {
    fields_.push_back(json_quote(key) + ":" + encoded);
    return *this;
  }
  std::string str() const {
    std::string out = "{";
    for (size_t i = 0; i < fields_.size(); ++i)
      out += (i ? "," : "") + fields_[i];
    return out + "}";
  }

private:
  std::vector<std::string> fields_;
};

} // namespace chorus

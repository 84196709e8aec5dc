#include "core/io/bounded_json.h"

namespace tandem {
namespace {

struct TooDeep {};

}  // namespace

bool parse_json_bounded(std::string_view text, nlohmann::json* out, std::string* error) {
  // `depth` is the number of containers around the event: a list or object opened at depth
  // kMaxJsonDepth would be level kMaxJsonDepth + 1.
  auto limit = [](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
    if ((event == nlohmann::json::parse_event_t::object_start ||
         event == nlohmann::json::parse_event_t::array_start) &&
        depth >= kMaxJsonDepth)
      throw TooDeep{};
    return true;
  };
  try {
    *out = nlohmann::json::parse(text.begin(), text.end(), limit);
    return true;
  } catch (const TooDeep&) {
    *error = "nesting deeper than " + std::to_string(kMaxJsonDepth) + " levels";
  } catch (const nlohmann::json::exception& e) {
    *error = name_excerpt(e.what(), 200);
  }
  *out = nullptr;
  return false;
}

std::string json_excerpt(const nlohmann::json& value, size_t max_chars) {
  if (value.is_array()) return "a list of " + std::to_string(value.size()) + " items";
  if (value.is_object()) return "an object of " + std::to_string(value.size()) + " keys";
  if (value.is_string())
    return "\"" + name_excerpt(value.get_ref<const std::string&>(), max_chars) + "\"";
  return name_excerpt(value.dump(), max_chars);  // a number, boolean or null: short
}

std::string name_excerpt(std::string_view name, size_t max_chars) {
  std::string out;
  for (char c : name.substr(0, max_chars))
    out.push_back(static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? '?' : c);
  if (name.size() > max_chars) out += "...";
  return out;
}

}  // namespace tandem

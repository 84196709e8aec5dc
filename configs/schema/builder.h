// Internal to tandem_config: fills an ExperimentConfig from YAML nodes (the file, then each
// override), remembering where every value came from so that later checks can point at it.
#pragma once

#include <yaml-cpp/yaml.h>

#include <map>
#include <string>

#include "configs/schema/config.h"
#include "configs/schema/schema.h"

namespace tandem::config_internal {

// Where nodes come from: a file (errors say "FILE:LINE:COLUMN") or one override (errors say
// "override 'k=v'", whatever the mark).
struct Source {
  std::string file;
  std::string override_text;  // set for an override
  std::string at(const YAML::Mark& mark) const;
};

// Throws ConfigError "WHERE: PATH: MESSAGE" ("WHERE: MESSAGE" when path is empty).
[[noreturn]] void fail(const std::string& where, const std::string& path,
                       const std::string& message);

class Builder {
 public:
  Builder(ExperimentConfig& config, const std::string& source_name);

  // The document's root mapping (parse.cc checked that it is one).
  void apply_document(const YAML::Node& root);
  // One "key.path=value" argument (overrides.cc).
  void apply_override(const std::string& text);
  // Required keys, defaults that depend on other keys, checks across keys and on the file
  // system (validate.cc).
  void resolve(const LoadOptions& options);

 private:
  // resolve's steps. The model's and the data set's names (model.onnx may stand for model.name)
  // and the defaults that follow from them; true when data.path is the data set's default.
  bool resolve_names_and_defaults();
  void check_rules();                   // rules across keys
  void check_paths(bool default_data);  // the files and directories that must exist
  // Applies `value` to the section or key at `path`; `key_mark` is where its key was written.
  void apply(const std::string& path, const YAML::Mark& key_mark, const YAML::Node& value,
             const Source& source);
  void apply_section(const std::string& path, const YAML::Node& value, const Source& source,
                     const std::string& where);
  void set_field(const Field& field, const YAML::Node& value, const Source& source,
                 const std::string& where);
  // Where `path` was set, else where its section was, else the top of the file.
  std::string origin(const std::string& path) const;
  bool was_set(const std::string& path) const { return origins_.count(path) > 0; }

  ExperimentConfig& config_;
  Schema schema_;
  Source file_;
  std::map<std::string, std::string> origins_;  // key or section path -> "FILE:L:C" / override
};

}  // namespace tandem::config_internal

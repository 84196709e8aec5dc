// Checkpoints: one directory per saved step, made visible by a single rename, so a crash at any
// moment leaves the earlier checkpoints intact and never a half-written `step-*` directory.
//
//   <dir>/step-00000100/model.safetensors       model state_dict (parameters and buffers by name)
//                       optimizer.safetensors   optimizer state_dict
//                       trainer_state.json      step, epoch, RNG states, config digest, ...
//   <dir>/best/                                 the same three files (checkpoint.keep_best):
//                                               save_named_checkpoint, never pruned by `keep`
//
// trainer_state.json ends with "state_crc32c": the CRC-32C of the file as written with that value
// "00000000". A state file without it (written before it existed) still loads: its fields are
// checked one by one as before, and the file CRCs it records still cover the tensors.
//
// Both safetensors files carry `__metadata__` {"format": "tandem-checkpoint-1",
// "crc32c.<tensor>": "<8 hex digits>"} and load with safetensors.torch.load_file. The JSON records
// the CRC-32C and size of each safetensors file. Tensors are full (unsharded), so a checkpoint
// resumes at any world size. Matching names and shapes against a model is the model's job
// (Module::load_state_dict); this file only moves verified bytes.
//
// Saving happens on one process (rank 0); nothing here is thread-safe for concurrent saves into
// the same directory.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor/named_tensors.h"
#include "core/tensor/tensor.h"

namespace tandem {

inline constexpr const char* kCheckpointFormat = "tandem-checkpoint-1";

struct TrainerState {
  int64_t step = 0;           // optimizer steps completed (global, not per epoch)
  int64_t epoch = 0;          // the epoch the next step belongs to
  int64_t step_in_epoch = 0;  // steps of that epoch already done (the data cursor)
  // Every random stream by name, as numbers, e.g. {"seed": {seed}}.
  std::map<std::string, std::vector<uint64_t>> rng;
  std::string config_digest;  // of the resolved config, to warn when a resume changes it
  int64_t world_size = 1;     // at save time; a resume may use another
  double elapsed_s = 0;       // training wall time so far, summed over resumes
  double saved_at = 0;        // unix time of the save; filled in by save_checkpoint
  nlohmann::json extra = nlohmann::json::object();  // anything else the trainer wants back
};

struct LoadedCheckpoint {
  std::string path;  // the step directory
  NamedTensors model;
  NamedTensors optimizer;
  TrainerState state;
};

// "step-00000100"; steps beyond 8 digits get more digits.
std::string checkpoint_dir_name(int64_t step);

// Writes a checkpoint for `state.step` under dir (created if missing) and returns its path. Every
// file is written into `<dir>/.tmp-step-XXXXXXXX-<pid>/` and fsynced, the directory is renamed to
// `step-XXXXXXXX` (atomically replacing an existing one of the same step) and dir is fsynced.
// Then, with keep > 0, the oldest `step-*` beyond the newest `keep` are removed (renamed out of the
// way first, so a crash mid-delete leaves no partial `step-*`), and stale `.tmp-*` directories of
// crashed saves are removed. The checkpoint just written is never removed. Tensors must be on the
// CPU. Throws IoError on any failure, leaving the earlier checkpoints as they were.
std::string save_checkpoint(const std::string& dir, const NamedTensors& model,
                            const NamedTensors& optimizer, const TrainerState& state, int keep = 0);

// The same files, written the same way (temp directory, fsync, one rename that atomically
// replaces what was there), as <dir>/<name> -- e.g. "best", the trainer's best checkpoint
// (checkpoint.keep_best). Not a `step-*` name, so save_checkpoint's `keep` never removes it and
// find_latest_checkpoint never resumes from it. Throws IoError.
inline constexpr const char* kBestCheckpointName = "best";
std::string save_named_checkpoint(const std::string& dir, const std::string& name,
                                  const NamedTensors& model, const NamedTensors& optimizer,
                                  const TrainerState& state);

// Reads and verifies a step directory: all three files present, safetensors well-formed, every
// tensor's CRC-32C and each file's CRC-32C and size as recorded, trainer_state.json complete. Any
// failure is an IoError naming the file and what is wrong.
LoadedCheckpoint load_checkpoint(const std::string& path);

// The `step-*` directories under dir, oldest first, as (step, path). Empty if dir does not exist.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir);

// The newest `step-*` under dir that loads (resume: auto); each candidate is read and verified in
// full. Each one that fails to load is skipped and described in *warnings (when given). nullopt
// when none loads or dir does not exist.
std::optional<std::string> find_latest_checkpoint(const std::string& dir,
                                                  std::vector<std::string>* warnings = nullptr);

}  // namespace tandem

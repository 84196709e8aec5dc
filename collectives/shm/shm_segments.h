// The names of the shared-memory segments a job's ranks create, and how to find and remove what
// they leave behind. A segment's name is unlinked as soon as every rank has mapped it, so a
// finished job leaves nothing; a rank killed between creating a segment and that moment (during
// the setup barrier of ShmCommunicator or allocate_shared) leaves the name in /dev/shm for good.
//
// The one decision: each node's `tandem launch` agent makes a random prefix of its own and gives
// it to its workers as TANDEM_SHM_PREFIX; every segment they create is named /dev/shm/<prefix>...,
// and the agent removes whatever is left under that prefix after each round -- the segments a
// killed rank could not, SIGKILL included. Processes started otherwise (mpirun, a benchmark) use
// kDefaultShmPrefix and have nobody to clean up after a kill.
#pragma once

#include <cstdint>
#include <string>

namespace tandem {

// Every tandem segment's name starts with it.
constexpr const char* kDefaultShmPrefix = "tandem-";

// "tandem-<12 random hex digits>-": a prefix no other job on this host has. Throws IoError when
// /dev/urandom cannot be read.
std::string new_shm_prefix();

// True for a prefix that can name a segment: "tandem-" followed by letters, digits, '-' or '_'.
bool valid_shm_prefix(const std::string& prefix);

// A new segment's shm_open name: "/" + prefix + 16 random hex digits.
std::string new_shm_segment_name(const std::string& prefix);

struct ShmSegments {
  int count = 0;
  int64_t bytes = 0;  // their allocated size
};

// The segments in `dir` (/dev/shm, where glibc's shm_open puts them) whose names start with
// `prefix`. A missing directory has none.
ShmSegments find_shm_segments(const std::string& prefix, const std::string& dir = "/dev/shm");

// Removes them; returns what was removed (a segment that vanished meanwhile is not counted).
ShmSegments remove_shm_segments(const std::string& prefix, const std::string& dir = "/dev/shm");

// What to say when /dev/shm is full: how much of it this job's (`prefix`) and other tandem jobs'
// left-behind segments take, or, when there are none, to enlarge /dev/shm.
std::string shm_full_advice(const std::string& prefix, const std::string& dir = "/dev/shm");

}  // namespace tandem

// The job token: a shared secret the launcher creates once per job and hands to its workers (as
// TANDEM_JOB_TOKEN); the Store refuses every call that does not carry it.
#pragma once

#include <string>

namespace tandem {

// 32 lowercase hex characters (128 bits) read from /dev/urandom. Throws IoError when it cannot be
// read. Thread-safe.
std::string generate_job_token();

}  // namespace tandem

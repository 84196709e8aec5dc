// MpiRuntime: tandem's process-wide MPI state -- initialisation, finalisation at exit, and the MPI
// objects for bf16 (a datatype and a sum that reduces in f32) and the NaN-propagating max ops.
// TANDEM_MPI_CHECK wraps every MPI call in tandem: a failure throws CommError naming the call,
// file:line and MPI's own message.
//
// The decision: MPI is initialised with MPI_Init_thread requesting MPI_THREAD_MULTIPLE, and any
// level >= MPI_THREAD_SERIALIZED is accepted. tandem itself needs only SERIALIZED: it calls MPI
// from one thread at a time -- the communication thread, a waiter that runs a collective while
// that thread sleeps, and the constructor and destructor (dup/free) while it is not running.
// MULTIPLE is requested so the application may make its own MPI calls concurrently (a benchmark's
// raw MPI_Allreduce, an NCCL id exchange, a user's barrier), which would be undefined behaviour
// under SERIALIZED; Open MPI 4.1 supports it over shared memory and TCP. If the process
// initialised MPI itself, tandem uses it as it is (and never finalises it).
//
// Thread-safety: get() and the accessors are safe from any thread.
#pragma once

#include <mpi.h>

#include <string>

#include "core/tensor/dtype.h"

namespace tandem {

namespace detail {
[[noreturn]] void throw_mpi_error(int code, const char* call, const char* file, int line);
}  // namespace detail

// Throws CommError "<file>:<line>: MPI_Foo(...) failed: <MPI_Error_string>" unless the call returns
// MPI_SUCCESS. Only calls made on a communicator with MPI_ERRORS_RETURN (tandem sets it on its
// own) can return an error; MPI_COMM_WORLD's default handler aborts the job instead.
#define TANDEM_MPI_CHECK(call)                                                      \
  do {                                                                              \
    int tandem_mpi_rc_ = (call);                                                    \
    if (tandem_mpi_rc_ != MPI_SUCCESS)                                              \
      ::tandem::detail::throw_mpi_error(tandem_mpi_rc_, #call, __FILE__, __LINE__); \
  } while (0)

class MpiRuntime {
 public:
  // Initialises MPI on the first call unless the process already has, creates tandem's bf16
  // objects, and registers MPI_Finalize at exit when tandem initialised MPI. Throws CommError when
  // MPI was finalised already or runs below MPI_THREAD_SERIALIZED.
  static MpiRuntime& get();

  int thread_level() const { return thread_level_; }  // MPI_THREAD_SERIALIZED or MULTIPLE
  bool initialised_by_tandem() const { return owns_mpi_; }
  // What tandem did to libnbc's MPI_Iallreduce algorithm (see mpi_runtime.cc), for benchmarks.
  const std::string& iallreduce_tuning() const { return iallreduce_tuning_; }

  // bf16 as a 2-byte MPI datatype; its sum converts both operands to f32, adds, and rounds to
  // nearest even once per step (exact whenever the partial results are representable).
  MPI_Datatype bf16_type() const { return bf16_type_; }
  MPI_Op bf16_sum() const { return bf16_sum_; }
  // Max for f32, f64 or bf16 from collectives/cpu_reduction.h: a NaN on any rank wins, where
  // MPI_MAX keeps whichever operand its comparison favours.
  MPI_Op max_op(DType dtype) const {
    return dtype == DType::kF32 ? f32_max_ : dtype == DType::kF64 ? f64_max_ : bf16_max_;
  }

  // Live MpiCommunicators: at exit MPI_Finalize is skipped (with a warning) while any is alive,
  // since its communication thread may still be inside MPI.
  void retain();
  void release();

 private:
  MpiRuntime();
  static void finalize_at_exit();

  int thread_level_ = 0;
  bool owns_mpi_ = false;
  std::string iallreduce_tuning_;
  MPI_Datatype bf16_type_ = MPI_DATATYPE_NULL;
  MPI_Op bf16_sum_ = MPI_OP_NULL;
  MPI_Op f32_max_ = MPI_OP_NULL;
  MPI_Op f64_max_ = MPI_OP_NULL;
  MPI_Op bf16_max_ = MPI_OP_NULL;
};

}  // namespace tandem

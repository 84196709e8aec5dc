// MpiRuntime: MPI initialisation, the libnbc all-reduce algorithm choice, bf16 datatype, the ops,
// and MPI_Finalize at exit. See mpi_runtime.h for the thread-level decision.
#include "collectives/mpi/mpi_runtime.h"

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "collectives/cpu_reduction.h"
#include "core/base/error.h"
#include "core/tensor/dtype.h"

namespace tandem {

namespace detail {
void throw_mpi_error(int code, const char* call, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  std::string message;
  if (MPI_Error_string(code, text, &length) == MPI_SUCCESS) {
    message.assign(text, static_cast<size_t>(length));
  } else {
    message = str("MPI error code ", code);
  }
  throw CommError(str(file, ":", line, ": ", call, " failed: ", message));
}
}  // namespace detail

namespace {

std::atomic<int> g_live_communicators{0};
MpiRuntime* g_runtime = nullptr;

// MPI_User_function over the shared CPU reduction: inout[i] = in[i] op inout[i].
template <DType kDtype, ReduceOp kOp>
void user_fn(void* in, void* inout, int* len, MPI_Datatype*) {
  pair_reduce_fn(kDtype, kOp)(inout, in, inout, static_cast<size_t>(*len));
}

// libnbc (Open MPI's non-blocking collectives) picks a binomial tree for MPI_Iallreduce whenever
// the buffer is in place or fewer than 4 ranks take part -- every call tandem makes on 2 ranks --
// and that tree moves each byte through the root twice: measured here at 0.5x the bandwidth of
// the blocking MPI_Allreduce at 256 KiB-16 MiB on 2 ranks, where its Rabenseifner algorithm
// (reduce-scatter, then all-gather; it falls back to a ring for tiny or non-commutative calls)
// matched the blocking call within 3% on 2 and 4 ranks. So unless the user chose an algorithm
// (the MCA variable coll_libnbc_iallreduce_algorithm is not 0, "ignore"), tandem sets it to 3
// through the MPI tool interface -- standard MPI_T control variables, no environment involved.
// This is a tuning only: MPI_T return codes are checked and reported in the returned note, never
// thrown, and an MPI without the variable is left as it is.
std::string tune_libnbc_iallreduce() {
  int provided = 0;
  if (MPI_T_init_thread(MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
    return "unchanged (MPI_T_init_thread failed)";
  std::string note;
  int index = -1;
  if (MPI_T_cvar_get_index("coll_libnbc_iallreduce_algorithm", &index) != MPI_SUCCESS) {
    note = "unchanged (no coll_libnbc_iallreduce_algorithm: not Open MPI's libnbc)";
  } else {
    MPI_T_cvar_handle handle;
    int count = 0;
    if (MPI_T_cvar_handle_alloc(index, nullptr, &handle, &count) != MPI_SUCCESS || count != 1) {
      note = "unchanged (cannot open coll_libnbc_iallreduce_algorithm)";
    } else {
      int value = -1;
      if (MPI_T_cvar_read(handle, &value) != MPI_SUCCESS) {
        note = "unchanged (cannot read coll_libnbc_iallreduce_algorithm)";
      } else if (value != 0) {
        note = str("coll_libnbc_iallreduce_algorithm=", value, " (set by the user, kept)");
      } else {
        int rabenseifner = 3;
        note = MPI_T_cvar_write(handle, &rabenseifner) == MPI_SUCCESS
                   ? "coll_libnbc_iallreduce_algorithm=3 (rabenseifner, set by tandem)"
                   : "unchanged (coll_libnbc_iallreduce_algorithm is not writable)";
      }
      MPI_T_cvar_handle_free(&handle);
    }
  }
  MPI_T_finalize();
  return note;
}

}  // namespace

MpiRuntime& MpiRuntime::get() {
  // Leaked on purpose: finalize_at_exit may run after static destructors.
  static MpiRuntime* runtime = new MpiRuntime();
  return *runtime;
}

MpiRuntime::MpiRuntime() {
  int finalized = 0;
  TANDEM_MPI_CHECK(MPI_Finalized(&finalized));
  TANDEM_CHECK_T(CommError, !finalized,
                 "MPI was already finalised in this process: create every MPI communicator "
                 "before MPI_Finalize");
  int initialised = 0;
  TANDEM_MPI_CHECK(MPI_Initialized(&initialised));
  if (initialised) {
    TANDEM_MPI_CHECK(MPI_Query_thread(&thread_level_));
  } else {
    TANDEM_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &thread_level_));
    owns_mpi_ = true;
  }
  TANDEM_CHECK_T(CommError, thread_level_ >= MPI_THREAD_SERIALIZED, "MPI runs at thread level ",
                 thread_level_,
                 " but tandem's MPI backend needs at least MPI_THREAD_SERIALIZED (its collectives "
                 "run on a communication thread): initialise MPI with MPI_Init_thread(..., "
                 "MPI_THREAD_MULTIPLE, ...) or let tandem initialise it");

  TANDEM_MPI_CHECK(MPI_Type_contiguous(2, MPI_BYTE, &bf16_type_));
  TANDEM_MPI_CHECK(MPI_Type_set_name(bf16_type_, "tandem_bf16"));
  TANDEM_MPI_CHECK(MPI_Type_commit(&bf16_type_));
  TANDEM_MPI_CHECK(
      MPI_Op_create(&user_fn<DType::kBF16, ReduceOp::kSum>, /*commute=*/1, &bf16_sum_));
  TANDEM_MPI_CHECK(MPI_Op_create(&user_fn<DType::kF32, ReduceOp::kMax>, /*commute=*/1, &f32_max_));
  TANDEM_MPI_CHECK(MPI_Op_create(&user_fn<DType::kF64, ReduceOp::kMax>, /*commute=*/1, &f64_max_));
  TANDEM_MPI_CHECK(
      MPI_Op_create(&user_fn<DType::kBF16, ReduceOp::kMax>, /*commute=*/1, &bf16_max_));
  iallreduce_tuning_ = tune_libnbc_iallreduce();

  g_runtime = this;
  if (owns_mpi_) std::atexit(&MpiRuntime::finalize_at_exit);
}

void MpiRuntime::retain() {
  g_live_communicators.fetch_add(1);
}
void MpiRuntime::release() {
  g_live_communicators.fetch_sub(1);
}

void MpiRuntime::finalize_at_exit() {
  int live = g_live_communicators.load();
  if (live > 0) {
    std::fprintf(stderr,
                 "tandem: %d MPI communicator(s) still alive at exit; MPI_Finalize skipped "
                 "(destroy communicators before the process exits)\n",
                 live);
    return;
  }
  try {
    int finalized = 0;
    TANDEM_MPI_CHECK(MPI_Finalized(&finalized));
    if (finalized) return;
    TANDEM_MPI_CHECK(MPI_Op_free(&g_runtime->bf16_sum_));
    TANDEM_MPI_CHECK(MPI_Op_free(&g_runtime->f32_max_));
    TANDEM_MPI_CHECK(MPI_Op_free(&g_runtime->f64_max_));
    TANDEM_MPI_CHECK(MPI_Op_free(&g_runtime->bf16_max_));
    TANDEM_MPI_CHECK(MPI_Type_free(&g_runtime->bf16_type_));
    TANDEM_MPI_CHECK(MPI_Finalize());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tandem: MPI finalisation failed: %s\n", e.what());
  }
}

}  // namespace tandem

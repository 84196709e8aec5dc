// What a caller without the job token can make a tandem gRPC server (the store, a parameter
// server) hold in memory: send_without_token() sends one large message to any method, and the peak
// resident memory of this process (VmHWM) says what the server buffered.
//
// The one decision: the message is a chain of references to one static 1 MiB block, so the
// sending side holds no copy of it and the peak memory of a test process that hosts the server
// and sends to it moves only with what the server reads. Header-only: the support library does
// not link gRPC, the store and parameter-server tests do.
#pragma once

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <future>
#include <string>
#include <vector>

// ASan's and TSan's shadow memory and quarantine move the peak with every allocation, so a
// sanitizer build says nothing about what a server read: tests check the answer only there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TANDEM_PEAK_MEMORY_MEANINGFUL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TANDEM_PEAK_MEMORY_MEANINGFUL 0
#endif
#endif
#ifndef TANDEM_PEAK_MEMORY_MEANINGFUL
#define TANDEM_PEAK_MEMORY_MEANINGFUL 1
#endif

namespace tandem::testing {

inline constexpr bool kPeakMemoryMeaningful = TANDEM_PEAK_MEMORY_MEANINGFUL;

// The peak resident memory of this process since it started or since reset_peak_memory(), in
// bytes (VmHWM in /proc/self/status); -1 where it cannot be read.
inline int64_t peak_memory_bytes() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // in kB
  return -1;
}

// Sets the peak to the current resident memory (Linux: "5" to /proc/self/clear_refs). False
// where that is not allowed, and a peak measured afterwards includes what came before.
inline bool reset_peak_memory() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

// Calls `method` ("/tandem.store.Store/Set") at `endpoint` over plaintext, without the job token,
// with one message of `bytes` bytes (not a valid request: it is never meant to be read), and
// returns the status the server answered or DEADLINE_EXCEEDED after `deadline`.
inline grpc::Status send_without_token(
    const std::string& endpoint, const std::string& method, int64_t bytes,
    std::chrono::milliseconds deadline = std::chrono::seconds(30)) {
  static const std::string block(1 << 20, 'x');
  std::vector<grpc::Slice> slices;
  for (int64_t left = bytes; left > 0; left -= static_cast<int64_t>(block.size()))
    slices.emplace_back(block.data(), static_cast<size_t>(std::min<int64_t>(left, block.size())),
                        grpc::Slice::STATIC_SLICE);
  grpc::ByteBuffer request(slices.data(), slices.size());
  grpc::ByteBuffer response;
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);
  grpc::GenericStub stub(
      grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response,
                 [&](grpc::Status status) { done.set_value(status); });
  return done.get_future().get();
}

// Sends one message of `bytes` without the token to each of `methods` of `service`
// ("/tandem.store.Store/") at `endpoint` and checks that every call is refused as missing the job
// token, and, where peak memory means something, that `who`'s peak grew by less than `most_held`.
// False when the peak cannot be reset: the caller skips the test.
inline bool expect_refused_before_read(const std::string& endpoint, const std::string& service,
                                       const std::vector<std::string>& methods, int64_t bytes,
                                       int64_t most_held, const std::string& who) {
  constexpr int64_t kMiB = 1 << 20;
  for (const std::string& method : methods) {
    if (!reset_peak_memory()) return false;
    const int64_t before = peak_memory_bytes();
    grpc::Status status = send_without_token(endpoint, service + method, bytes);
    const int64_t grew = peak_memory_bytes() - before;
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << method << ": " << status.error_message();
    EXPECT_NE(status.error_message().find("missing job token"), std::string::npos)
        << status.error_message();
    if (kPeakMemoryMeaningful) {
      EXPECT_LT(grew, most_held) << method << " without the token, " << bytes / kMiB
                                 << " MiB: " << who << "'s peak memory grew by " << grew / kMiB
                                 << " MiB";
    }
  }
  return true;
}

}  // namespace tandem::testing

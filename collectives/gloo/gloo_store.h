// GlooStore: gloo's rendezvous Store interface over tandem's StoreClient, so gloo's connectFullMesh
// exchanges its pair addresses through the job's gRPC Store (and its token) instead of a file or
// Redis store. Every key is put under a prefix ("gloo/0/" + gloo's own key), so several
// communicators, or several attempts of a restarted job, never read each other's addresses.
//
// Blocking: get and wait block until the keys exist or the timeout passes (TimeoutError from the
// StoreClient, which names the keys). Thread-safe as far as the StoreClient is (it is).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <gloo/rendezvous/store.h>

#include "collectives/store/store_client.h"

namespace tandem {

class GlooStore final : public gloo::rendezvous::Store {
 public:
  // `client` must outlive this object. `timeout` bounds get and the timeout-less wait.
  GlooStore(StoreClient& client, std::string prefix, std::chrono::milliseconds timeout);

  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override;

  const std::string& prefix() const { return prefix_; }

 private:
  StoreClient& client_;
  std::string prefix_;
  std::chrono::milliseconds timeout_;
};

}  // namespace tandem

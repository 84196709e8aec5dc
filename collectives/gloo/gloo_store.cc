// GlooStore: gloo::rendezvous::Store as prefixed keys in tandem's Store (see gloo_store.h).
#include "collectives/gloo/gloo_store.h"

namespace tandem {

GlooStore::GlooStore(StoreClient& client, std::string prefix, std::chrono::milliseconds timeout)
    : client_(client), prefix_(std::move(prefix)), timeout_(timeout) {}

void GlooStore::set(const std::string& key, const std::vector<char>& data) {
  client_.set(prefix_ + key, std::string(data.begin(), data.end()));
}

std::vector<char> GlooStore::get(const std::string& key) {
  std::string value = client_.get(prefix_ + key, timeout_);
  return std::vector<char>(value.begin(), value.end());
}

void GlooStore::wait(const std::vector<std::string>& keys) {
  wait(keys, timeout_);
}

void GlooStore::wait(const std::vector<std::string>& keys,
                     const std::chrono::milliseconds& timeout) {
  std::vector<std::string> prefixed;
  prefixed.reserve(keys.size());
  for (const std::string& key : keys) prefixed.push_back(prefix_ + key);
  // gloo passes kNoTimeout (0) to mean "no deadline of its own": use ours.
  client_.wait(prefixed, timeout.count() > 0 ? timeout : timeout_);
}

}  // namespace tandem

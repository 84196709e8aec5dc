#include "collectives/hierarchical/host_layout.h"

#include <algorithm>

namespace tandem {

bool HostLayout::uniform() const {
  return !ranks_on_host.empty() && std::all_of(ranks_on_host.begin(), ranks_on_host.end(),
                                               [&](int n) { return n == ranks_on_host.front(); });
}

int HostLayout::rank_at(int host, int local) const {
  for (int r = 0; r < world(); ++r)
    if (host_of[r] == host && local_of[r] == local) return r;
  return -1;
}

HostLayout HostLayout::from_host_names(const std::vector<std::string>& names) {
  HostLayout l;
  for (const std::string& name : names) {
    auto it = std::find(l.host_names.begin(), l.host_names.end(), name);
    int host = static_cast<int>(it - l.host_names.begin());
    if (it == l.host_names.end()) {
      l.host_names.push_back(name);
      l.ranks_on_host.push_back(0);
    }
    l.host_of.push_back(host);
    l.local_of.push_back(l.ranks_on_host[host]++);
  }
  return l;
}

}  // namespace tandem

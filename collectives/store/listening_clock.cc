// ListeningClock: deaf stretches as late ticks (see listening_clock.h).
#include "collectives/store/listening_clock.h"

#include <algorithm>

namespace tandem {
namespace {

// The length of [a, b) within [from, to).
ListeningClock::Clock::duration overlap(ListeningClock::Clock::time_point a,
                                        ListeningClock::Clock::time_point b,
                                        ListeningClock::Clock::time_point from,
                                        ListeningClock::Clock::time_point to) {
  const auto begin = std::max(a, from);
  const auto end = std::min(b, to);
  return end > begin ? end - begin : ListeningClock::Clock::duration::zero();
}

}  // namespace

void ListeningClock::tick(Clock::time_point now) {
  if (now - last_tick_ > deaf_gap_) {
    deaf_.push_back({last_tick_, now});
    if (deaf_.size() > kMaxStretches) deaf_.pop_front();
  }
  last_tick_ = std::max(last_tick_, now);
}

ListeningClock::Clock::duration ListeningClock::listened(Clock::time_point since,
                                                         Clock::time_point now) const {
  if (now <= since) return Clock::duration::zero();
  Clock::duration deaf = Clock::duration::zero();
  for (const auto& [from, to] : deaf_) deaf += overlap(from, to, since, now);
  if (now - last_tick_ > deaf_gap_) deaf += overlap(last_tick_, now, since, now);  // still open
  return (now - since) - deaf;
}

}  // namespace tandem

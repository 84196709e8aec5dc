// ListeningClock: how long a server has been able to listen since a moment -- the time that passed,
// less the stretches its process did not run (stopped by SIGSTOP, swapped out, starved of CPU).
// The store measures heartbeat ages on it, so that a sender is never blamed for silence that was
// the store's own: a store frozen for 40 s hears no heartbeat, and when it runs again the queued
// ones may reach it only after an agent has asked for their ages.
//
// The one decision: a stretch of not running is seen as a late tick. A thread of the server calls
// tick() about every kTick; a gap between ticks longer than the deaf gap is time the server was
// deaf. A gap still open when asked (the process just woke, the ticking thread has not run yet)
// counts too. Ages are then shorter, never longer, than the silence a sender really kept, by at
// most the deaf gap per stretch.
//
// Not thread-safe: the store calls it under its own mutex.
#pragma once

#include <chrono>
#include <deque>
#include <utility>

namespace tandem {

class ListeningClock {
 public:
  using Clock = std::chrono::steady_clock;
  // How often the server ticks.
  static constexpr std::chrono::milliseconds kTick{100};
  // A gap between ticks longer than this is deafness, not a late thread: 1 s is ten ticks.
  static constexpr std::chrono::milliseconds kDeafGap{1000};
  // The deaf stretches remembered; older ones are forgotten (ages across them then grow back).
  static constexpr size_t kMaxStretches = 64;

  explicit ListeningClock(Clock::time_point start = Clock::now(),
                          Clock::duration deaf_gap = kDeafGap)
      : deaf_gap_(deaf_gap), last_tick_(start) {}

  void tick(Clock::time_point now);
  // The time from `since` to `now` less the deaf stretches within it.
  Clock::duration listened(Clock::time_point since, Clock::time_point now) const;

 private:
  Clock::duration deaf_gap_;
  Clock::time_point last_tick_;
  std::deque<std::pair<Clock::time_point, Clock::time_point>> deaf_;  // [from, to), oldest first
};

}  // namespace tandem

// ListeningClock (collectives/store/listening_clock.h) on hand-made timelines: which stretches
// count as the server's deafness, and what is left of a heartbeat's age.
#include "collectives/store/listening_clock.h"

#include <gtest/gtest.h>

namespace tandem {
namespace {

using Clock = ListeningClock::Clock;
using std::chrono::milliseconds;

// The clock's listened time from `since_ms` to `now_ms`, in ms, on a timeline starting at t0.
int64_t listened_ms(const ListeningClock& c, Clock::time_point t0, int since_ms, int now_ms) {
  return std::chrono::duration_cast<milliseconds>(
             c.listened(t0 + milliseconds(since_ms), t0 + milliseconds(now_ms)))
      .count();
}

// Ticks every 100 ms from `from_ms` to `to_ms` (both included).
void tick_every_100ms(ListeningClock& c, Clock::time_point t0, int from_ms, int to_ms) {
  for (int t = from_ms; t <= to_ms; t += 100) c.tick(t0 + milliseconds(t));
}

TEST(ListeningClock, WithRegularTicksEveryMomentIsListened) {
  const Clock::time_point t0 = Clock::now();
  ListeningClock c(t0);
  tick_every_100ms(c, t0, 0, 5000);
  EXPECT_EQ(listened_ms(c, t0, 1000, 5000), 4000);
  EXPECT_EQ(listened_ms(c, t0, 5000, 5000), 0);
  EXPECT_EQ(listened_ms(c, t0, 6000, 5000), 0);  // received "after" now: no age
}

TEST(ListeningClock, AStretchWithoutTicksIsLeftOutOfEveryAgeAcrossIt) {
  const Clock::time_point t0 = Clock::now();
  ListeningClock c(t0);
  tick_every_100ms(c, t0, 0, 1000);
  tick_every_100ms(c, t0, 41000, 42000);  // stopped from 1 s to 41 s
  EXPECT_EQ(listened_ms(c, t0, 500, 41500), 41000 - 40000);
  EXPECT_EQ(listened_ms(c, t0, 20000, 41500), 500);  // received while "deaf": counts from 41 s
  EXPECT_EQ(listened_ms(c, t0, 41200, 42000), 800);  // after the stretch: untouched
}

TEST(ListeningClock, AStretchStillOpenWhenAskedIsLeftOutToo) {
  const Clock::time_point t0 = Clock::now();
  ListeningClock c(t0);
  tick_every_100ms(c, t0, 0, 1000);
  // The process just woke at 41 s; a handler asks before the ticking thread has run.
  EXPECT_EQ(listened_ms(c, t0, 500, 41000), 500);
  // Asked within the deaf gap after the last tick: a late thread, not deafness.
  EXPECT_EQ(listened_ms(c, t0, 500, 1900), 1400);
}

TEST(ListeningClock, GapsUpToTheDeafGapAreListened) {
  const Clock::time_point t0 = Clock::now();
  ListeningClock c(t0);
  c.tick(t0 + milliseconds(900));   // 900 ms late: a loaded machine
  c.tick(t0 + milliseconds(1900));  // 1000 ms: exactly the deaf gap, still listened
  c.tick(t0 + milliseconds(4000));  // 2100 ms: deaf
  EXPECT_EQ(listened_ms(c, t0, 0, 4000), 4000 - 2100);
}

TEST(ListeningClock, OnlyTheNewestStretchesAreRemembered) {
  const Clock::time_point t0 = Clock::now();
  ListeningClock c(t0);
  int t = 0;
  for (size_t i = 0; i <= ListeningClock::kMaxStretches; ++i) {  // one more than remembered
    t += 2000;
    c.tick(t0 + milliseconds(t));  // each tick 2 s after the last: a deaf stretch
  }
  // The first stretch [0, 2 s) is forgotten, the others are left out.
  EXPECT_EQ(listened_ms(c, t0, 0, t), 2000);
}

}  // namespace
}  // namespace tandem

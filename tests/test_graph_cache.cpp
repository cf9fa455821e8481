// The trainer's graph cache (src/graph_cache.hpp): when a step runs eagerly, is captured or is
// replayed, and when captured graphs are dropped because what they point to moved.
#include <gtest/gtest.h>

#include "graph_cache.hpp"

namespace descent::test {
namespace {

using detail::GraphCache;
using detail::GraphKey;
using detail::GraphPlan;

int destroyed = 0;
void count_destroy(detail::Graph*) noexcept { ++destroyed; }

// A stand-in for a captured graph: never dereferenced, only counted when destroyed.
detail::GraphPtr fake_graph() {
  static int token = 0;
  return detail::GraphPtr(reinterpret_cast<detail::Graph*>(&token), &count_destroy);
}

GraphKey key_of(std::int64_t rows, const void* x = nullptr) {
  GraphKey k;
  k.x = x;
  k.rows = rows;
  k.x_ld = 5;
  k.global_rows = rows;
  return k;
}

// Plans the step and, when it says capture, stores a graph as the trainer does.
GraphPlan step(GraphCache& c, const GraphKey& k, std::uint64_t generation, std::int64_t max_batch) {
  const GraphPlan p = c.plan(k, generation, max_batch);
  if (p == GraphPlan::capture) c.current() = fake_graph();
  return p;
}

TEST(GraphCache, EagerFirstThenCaptureThenReplay) {
  GraphCache c;
  const GraphKey k = key_of(8);
  EXPECT_EQ(step(c, k, 1, 64), GraphPlan::eager);
  EXPECT_EQ(step(c, k, 1, 64), GraphPlan::capture);
  EXPECT_EQ(step(c, k, 1, 64), GraphPlan::replay);
  EXPECT_EQ(c.graphs(), 1);
  int other = 0;
  EXPECT_EQ(step(c, key_of(8, &other), 1, 64), GraphPlan::eager) << "another address";
  EXPECT_EQ(step(c, key_of(7), 1, 64), GraphPlan::eager) << "another row count";
}

// The scratch was freed and grown (an evaluation of a larger batch, another op) after a graph
// was captured: replaying it would write into freed memory. It is captured again at once (the
// geometry ran eagerly before, and the scratch only grew).
TEST(GraphCache, NewScratchGenerationRecapturesInsteadOfReplaying) {
  GraphCache c;
  const GraphKey a = key_of(8), b = key_of(16);
  step(c, a, 1, 64);
  step(c, a, 1, 64);
  step(c, b, 1, 64);
  step(c, b, 1, 64);
  ASSERT_EQ(c.graphs(), 2);
  destroyed = 0;
  EXPECT_EQ(step(c, a, 2, 64), GraphPlan::capture);
  EXPECT_EQ(destroyed, 2) << "every graph of the old scratch is dropped";
  EXPECT_EQ(step(c, a, 2, 64), GraphPlan::replay);
  EXPECT_EQ(step(c, b, 2, 64), GraphPlan::capture);
  EXPECT_EQ(step(c, b, 2, 64), GraphPlan::replay);
  // The eager run of a new geometry grows the scratch itself: the next step sees the new count.
  const GraphKey d = key_of(32);
  EXPECT_EQ(step(c, d, 2, 64), GraphPlan::eager);
  EXPECT_EQ(step(c, a, 3, 64), GraphPlan::capture);
}

TEST(GraphCache, NewMaxBatchRunsEachGeometryEagerlyAgain) {
  GraphCache c;
  const GraphKey k = key_of(8);
  step(c, k, 1, 64);
  step(c, k, 1, 64);
  ASSERT_EQ(step(c, k, 1, 64), GraphPlan::replay);
  EXPECT_EQ(step(c, k, 1, 128), GraphPlan::eager);
  EXPECT_EQ(c.graphs(), 0);
  EXPECT_EQ(step(c, k, 1, 128), GraphPlan::capture);
}

TEST(GraphCache, HoldsAtMostFourGeometries) {
  GraphCache c;
  for (std::int64_t rows = 1; rows <= 6; ++rows) {
    step(c, key_of(rows), 1, 64);
    step(c, key_of(rows), 1, 64);
  }
  EXPECT_EQ(c.graphs(), static_cast<int>(GraphCache::kMaxGraphs));
  EXPECT_EQ(step(c, key_of(6), 1, 64), GraphPlan::eager) << "a fifth geometry is never captured";
  EXPECT_EQ(step(c, key_of(1), 1, 64), GraphPlan::replay);
}

TEST(GraphCache, ClearAndDropGraphs) {
  GraphCache c;
  const GraphKey k = key_of(8);
  step(c, k, 1, 64);
  step(c, k, 1, 64);
  c.drop_graphs();
  EXPECT_EQ(c.graphs(), 0);
  EXPECT_EQ(step(c, k, 1, 64), GraphPlan::capture);
  c.clear();
  EXPECT_EQ(step(c, k, 1, 64), GraphPlan::eager);
}

}  // namespace
}  // namespace descent::test

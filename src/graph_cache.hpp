// The trainer's captured steps and the rule that says when one may be replayed: host logic
// only, so that it is tested without a GPU (tests/test_graph_cache.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/backend.hpp"

namespace descent::detail {

// What identifies a captured step on this rank: the addresses and extents baked into the graph.
struct GraphKey {
  const void* x = nullptr;
  const void* labels = nullptr;
  const void* targets = nullptr;
  std::int64_t rows = 0, x_ld = 0, targets_ld = 0, global_rows = 0;
  friend bool operator==(const GraphKey&, const GraphKey&) = default;
};

// What a step does with its graph.
enum class GraphPlan {
  eager,    // run the ops (a geometry seen for the first time, or graphs off)
  capture,  // capture the step, then replay the new graph
  replay    // replay the graph captured before
};

// Up to kMaxGraphs captured steps, one per batch geometry. A graph bakes in addresses, so it is
// dropped when what it points to may have moved:
// - the model's activation buffers (a new max_batch): the geometries are forgotten too, so that
//   each runs eagerly again before it is captured (the larger shapes may grow device scratch,
//   which a capture cannot);
// - the device scratch the ops share (a new scratch generation: the backend freed the old block
//   to grow it): the geometries are kept and captured again at once, since the scratch only
//   grew since they ran.
class GraphCache {
 public:
  static constexpr std::size_t kMaxGraphs = 4;

  GraphCache() { entries_.reserve(kMaxGraphs); }

  // The plan for a step with `key`, given the backend's scratch generation now and the
  // model's max_batch; then current() is its entry (capture or replay).
  GraphPlan plan(const GraphKey& key, std::uint64_t scratch_generation, std::int64_t max_batch) {
    current_ = nullptr;
    if (max_batch != max_batch_) {
      entries_.clear();
      max_batch_ = max_batch;
    }
    if (scratch_generation != generation_) {
      drop_graphs();
      generation_ = scratch_generation;
    }
    for (Entry& e : entries_) {
      if (e.key == key) {
        current_ = &e;
        return e.graph ? GraphPlan::replay : GraphPlan::capture;
      }
    }
    // First time this geometry is seen: run eagerly, capture next time.
    if (entries_.size() < kMaxGraphs) entries_.push_back(Entry{key, GraphPtr(nullptr, nullptr)});
    return GraphPlan::eager;
  }

  // The graph of the step plan() planned (null until captured).
  GraphPtr& current() { return current_->graph; }

  // Forgets the captured graphs but not the geometries (they are captured again next time).
  void drop_graphs() {
    for (Entry& e : entries_) e.graph.reset();
  }
  // Forgets everything: each geometry runs eagerly again first.
  void clear() {
    entries_.clear();
    current_ = nullptr;
  }
  int graphs() const {
    int n = 0;
    for (const Entry& e : entries_) n += e.graph ? 1 : 0;
    return n;
  }

 private:
  struct Entry {
    GraphKey key;
    GraphPtr graph;
  };
  std::vector<Entry> entries_;  // at most kMaxGraphs; never reallocated (current_ points in)
  Entry* current_ = nullptr;
  std::uint64_t generation_ = 0;
  std::int64_t max_batch_ = 0;
};

}  // namespace descent::detail

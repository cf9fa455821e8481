// BatchLoader on every backend: seeded order, partial batches, dropping the last one, and batch
// buffers that keep their addresses.
#include <algorithm>
#include <set>

#include "descent/data.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

class LoaderTest : public BackendTest {
 protected:
  // 23 samples whose first feature is the sample index.
  Dataset numbered(bool bytes) {
    std::vector<std::int32_t> y;
    std::vector<float> x;
    std::vector<std::uint8_t> b;
    for (int i = 0; i < 23; ++i) {
      y.push_back(i % 4);
      for (int j = 0; j < 3; ++j) {
        x.push_back(static_cast<float>(i + 100 * j));
        b.push_back(static_cast<std::uint8_t>(i + 50 * j));
      }
    }
    return bytes ? Dataset::from_uint8(b, 3, y, 4, 1.0f, 0.0f) : Dataset::from_floats(x, 3, y, 4);
  }

  // The sample indices of every batch of one epoch, checking features and labels agree.
  std::vector<std::vector<int>> epoch(BatchLoader& loader, std::int64_t e, bool bytes) {
    std::vector<std::vector<int>> out;
    for (const Batch& b : loader.epoch(e)) {
      std::vector<float> x(static_cast<std::size_t>(b.x.size()));
      std::vector<std::int32_t> y(static_cast<std::size_t>(b.rows()));
      detail::copy_bytes(ctx(), x.data(), Device::cpu(), b.x.data, b.x.device, x.size() * 4);
      detail::copy_bytes(ctx(), y.data(), Device::cpu(), b.labels.data, b.labels.device,
                         y.size() * 4);
      std::vector<int> ids;
      for (std::int64_t r = 0; r < b.rows(); ++r) {
        const int i = static_cast<int>(x[static_cast<std::size_t>(r * 3)]);
        EXPECT_EQ(x[static_cast<std::size_t>(r * 3 + 2)],
                  static_cast<float>(i + (bytes ? 100 : 200)));
        EXPECT_EQ(y[static_cast<std::size_t>(r)], i % 4);
        ids.push_back(i);
      }
      out.push_back(ids);
    }
    return out;
  }
};

TEST_P(LoaderTest, EveryEpochIsAPermutationWithAPartialLastBatch) {
  for (bool bytes : {false, true}) {
    for (std::size_t budget : {std::size_t(0), std::size_t(1)}) {  // 1 byte: streaming on a GPU
      if (budget == 1 && !on_gpu()) continue;
      SCOPED_TRACE(std::string(bytes ? "uint8" : "float") + (budget == 1 ? " streaming" : ""));
      const Dataset d = numbered(bytes);
      LoaderOptions o{5, true, 77, false, budget};
      BatchLoader loader(ctx(), d, o);
      EXPECT_EQ(loader.batches(), 5);
      if (on_gpu()) {
        EXPECT_STREQ(loader.mode(), budget == 1 ? "streaming" : "resident");
      }
      const auto e0 = epoch(loader, 0, bytes), e0again = epoch(loader, 0, bytes),
                 e1 = epoch(loader, 1, bytes);
      ASSERT_EQ(e0.size(), 5u);
      EXPECT_EQ(e0.back().size(), 3u);
      EXPECT_EQ(e0, e0again) << "the order must depend on (seed, epoch) only";
      EXPECT_NE(e0, e1);
      std::multiset<int> seen;
      for (const auto& b : e0) seen.insert(b.begin(), b.end());
      EXPECT_EQ(seen.size(), 23u);
      EXPECT_EQ(std::set<int>(seen.begin(), seen.end()).size(), 23u);
      // Resuming in the middle of an epoch gives its remaining batches.
      loader.start_epoch(1, 3);
      Batch b;
      ASSERT_TRUE(loader.next(b));
      EXPECT_EQ(b.rows(), 5);
    }
  }
}

TEST_P(LoaderTest, UnshuffledIsInOrderAndDropLastDrops) {
  const Dataset d = numbered(false);
  BatchLoader loader(ctx(), d, {10, false, 0, true});
  EXPECT_EQ(loader.batches(), 2);
  EXPECT_EQ(loader.samples_per_epoch(), 20);
  const auto e = epoch(loader, 4, false);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[1].front(), 10);
  EXPECT_EQ(e[1].back(), 19);
}

TEST_P(LoaderTest, BatchBuffersKeepTheirAddresses) {
  const Dataset d = numbered(true);
  BatchLoader loader(ctx(), d, {4, true, 1});
  Batch first, b;
  loader.start_epoch(0);
  ASSERT_TRUE(loader.next(first));
  while (loader.next(b)) {
    EXPECT_EQ(b.x.data, first.x.data);
    EXPECT_EQ(b.labels.data, first.labels.data);
  }
}

DESCENT_INSTANTIATE_BACKENDS(LoaderTest);

}  // namespace
}  // namespace descent::test

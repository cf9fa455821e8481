// The communicator pieces that run in one process: the shard arithmetic, the single-process
// communicator, refusals without MPI, and a Trainer's checks of Batch::global_rows. The ranks'
// training itself is tested under mpirun (tests/mpi/test_mpi.cpp).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "descent/descent.hpp"
#include "train_support.hpp"

namespace descent::test {
namespace {

TEST(Sharding, ShardsCoverTheBatchInOrderWithSizesDifferingByOne) {
  for (std::int64_t rows : {0, 1, 3, 30, 31, 256, 1001}) {
    for (int ranks : {1, 2, 3, 4, 7, 64}) {
      std::int64_t next = 0, smallest = rows, largest = 0;
      for (int r = 0; r < ranks; ++r) {
        const Shard s = shard_of(rows, r, ranks);
        EXPECT_EQ(s.begin, next) << rows << " rows, rank " << r << " of " << ranks;
        next = s.end;
        smallest = std::min(smallest, s.rows());
        largest = std::max(largest, s.rows());
        if (r > 0) {
          EXPECT_LE(s.rows(), shard_of(rows, r - 1, ranks).rows()) << "larger first";
        }
      }
      EXPECT_EQ(next, rows);
      EXPECT_LE(largest - smallest, 1);
    }
  }
  EXPECT_THROW(shard_of(10, 2, 2), ArgumentError);
  EXPECT_THROW(shard_of(10, -1, 2), ArgumentError);
  EXPECT_THROW(shard_of(-1, 0, 2), ArgumentError);
  EXPECT_THROW(shard_of(10, 0, 0), ArgumentError);
}

TEST(Sharding, TheSingleCommunicatorIsOneRankWhoseCollectivesChangeNothing) {
  const Communicator comm;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.size(), 1);
  EXPECT_TRUE(comm.is_root());
  EXPECT_EQ(comm.backend(), CommBackend::single);
  EXPECT_STREQ(to_string(CommBackend::single), "single");
  EXPECT_STREQ(to_string(CommBackend::mpi), "mpi");
  EXPECT_STREQ(to_string(CommBackend::nccl), "nccl");
  EXPECT_EQ(comm.describe(), "single process");
  std::vector<double> d{1.5, -2.0};
  comm.sum(d);
  EXPECT_EQ(d, (std::vector<double>{1.5, -2.0}));
  EXPECT_EQ(comm.all_gather(42), std::vector<std::uint64_t>{42});
  EXPECT_THROW(comm.broadcast({}, 1), ArgumentError);
  comm.barrier();
}

TEST(Sharding, AnMPICommunicatorNeedsMPIInitialisedAndBuiltIn) {
  const Context ctx;
  try {
    Communicator::from_mpi_fortran(0, ctx);
    ADD_FAILURE() << "no error";
  } catch (const DeviceError& e) {
    const std::string what = e.what();
    if (built_with_mpi()) {
      EXPECT_NE(what.find("MPI is not initialised"), std::string::npos) << what;
    } else {
      EXPECT_NE(what.find("built without MPI"), std::string::npos) << what;
    }
  }
  EXPECT_THROW(Communicator::from_mpi_fortran(0, ctx, CommOptions{.bucket_bytes = 0}),
               ArgumentError);
}

TEST(Sharding, OneProcessRefusesABatchClaimingALargerGlobalBatch) {
  const Context ctx;
  const Dataset data = blobs(40, 4, 3, 1);
  Mlp model(ctx, {4, 8, 3}, Activation::relu, MlpOptions{.seed = 1});
  Sgd sgd(model, {.lr = 0.1f});
  Trainer trainer(model, Loss::softmax_cross_entropy, sgd);
  BatchLoader loader(ctx, data, {.batch_size = 16});
  Batch b;
  ASSERT_TRUE(loader.next(b));
  EXPECT_EQ(b.global_rows, 16) << "a loader on one process: its own rows";
  b.global_rows = 32;
  EXPECT_THROW(trainer.step(b), ArgumentError);
  b.global_rows = 0;
  trainer.step(b);
  EXPECT_EQ(sgd.steps(), 1);
}

}  // namespace
}  // namespace descent::test

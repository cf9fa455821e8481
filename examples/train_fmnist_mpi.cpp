// Trains a small MLP on Fashion-MNIST data parallel over MPI with descent's C++ API: every rank
// loads the data, trains on its shard of each global batch of 128, and rank 0 prints.
//   mpirun -np 2 train_fmnist_mpi [data folder] [epochs] [sample limit (0: all)]
#include <cstdio>
#include <cstdlib>
#include <descent/descent.hpp>
#include <descent/mpi.hpp>
#include <exception>
#include <string>

namespace {

void train(int argc, char** argv, const descent::Communicator& comm, descent::Context& ctx) {
  using namespace descent;
  const std::string dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 3;
  const IdxOptions idx{.limit = argc > 3 ? std::atoll(argv[3]) : 0};

  // Every rank holds the whole dataset; the sharded loaders pick each rank's rows.
  Dataset train =
      load_idx(dir + "/train-images-idx3-ubyte.gz", dir + "/train-labels-idx1-ubyte.gz", idx);
  Dataset test =
      load_idx(dir + "/t10k-images-idx3-ubyte.gz", dir + "/t10k-labels-idx1-ubyte.gz", idx);
  BatchLoader loader(ctx, train, {.batch_size = 128, .shuffle = true, .seed = 1}, comm);
  BatchLoader test_loader(ctx, test, {.batch_size = 1000, .shuffle = false}, comm);

  // The same seed on every rank: the replicas start equal and stay so.
  Mlp model(ctx, {784, 512, 256, 10}, Activation::relu);
  Sgd sgd(model, {.lr = 0.05f, .momentum = 0.9f}, LrSchedule::cosine(epochs * loader.batches()));
  Trainer trainer(model, Loss::softmax_cross_entropy, sgd, comm);

  // Losses and accuracies are over every rank's samples, the same on each: rank 0 prints them.
  const EvalResult r0 = trainer.evaluate(test_loader);
  if (comm.is_root()) {
    std::printf("C++ on %s, %d ranks, %lld training samples\n", ctx.device().str().c_str(),
                comm.size(), static_cast<long long>(train.size()));
    std::printf("initial: test loss %.4f, test accuracy %.2f%%\n", r0.loss, 100.0 * r0.accuracy);
  }
  for (int epoch = 0; epoch < epochs; ++epoch) {
    for (const Batch& batch : loader.epoch(epoch)) trainer.step(batch);
    const double train_loss = trainer.take_train_loss();
    const EvalResult r = trainer.evaluate(test_loader);
    if (comm.is_root()) {
      std::printf("epoch %d/%d: train loss %.4f, test loss %.4f, test accuracy %.2f%%\n", epoch + 1,
                  epochs, train_loss, r.loss, 100.0 * r.accuracy);
      std::fflush(stdout);
    }
  }
  // The replicas are identical: one checkpoint, written by rank 0.
  if (comm.is_root()) save_checkpoint("fmnist_mpi.ckpt", model, &sgd);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  {
    // Destroyed before MPI_Finalize: descent frees its duplicate of MPI_COMM_WORLD. The CPU
    // backend sums gradients over MPI; a CUDA context (one GPU per rank) needs a build with NCCL.
    descent::Context ctx(descent::Device::cpu());
    descent::Communicator comm;
    try {
      comm = descent::mpi_communicator(MPI_COMM_WORLD, ctx);
      train(argc, argv, comm, ctx);
    } catch (const std::exception& e) {
      // The other ranks may be waiting in a collective: end them all.
      if (comm.size() > 1) comm.abort(std::string("train_fmnist_mpi: ") + e.what());
      std::fprintf(stderr, "train_fmnist_mpi: %s\n", e.what());
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
  }
  MPI_Finalize();
  return 0;
}

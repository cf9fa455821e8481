// Trains a small MLP on Fashion-MNIST with descent's C++ API: the explicit loop of docs/library.md.
//   train_fmnist [data folder] [epochs] [sample limit (0: all)]
#include <cstdio>
#include <cstdlib>
#include <descent/descent.hpp>
#include <string>

int main(int argc, char** argv) try {
  using namespace descent;
  const std::string dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 3;
  const IdxOptions idx{.limit = argc > 3 ? std::atoll(argv[3]) : 0};

  Context ctx(cuda_device_count() > 0 ? Device::cuda(0) : Device::cpu());
  Dataset train =
      load_idx(dir + "/train-images-idx3-ubyte.gz", dir + "/train-labels-idx1-ubyte.gz", idx);
  Dataset test =
      load_idx(dir + "/t10k-images-idx3-ubyte.gz", dir + "/t10k-labels-idx1-ubyte.gz", idx);
  BatchLoader loader(ctx, train, {.batch_size = 128, .shuffle = true, .seed = 1});
  BatchLoader test_loader(ctx, test, {.batch_size = 1000, .shuffle = false});

  Mlp model(ctx, {784, 512, 256, 10}, Activation::relu);  // the last layer gives logits
  Sgd sgd(model, {.lr = 0.05f, .momentum = 0.9f}, LrSchedule::cosine(epochs * loader.batches()));
  Trainer trainer(model, Loss::softmax_cross_entropy, sgd);

  const EvalResult r0 = trainer.evaluate(test_loader);
  std::printf("C++ on %s, %lld training samples\n", ctx.device().str().c_str(),
              static_cast<long long>(train.size()));
  std::printf("initial: test loss %.4f, test accuracy %.2f%%\n", r0.loss, 100.0 * r0.accuracy);
  for (int epoch = 0; epoch < epochs; ++epoch) {
    for (const Batch& batch : loader.epoch(epoch)) trainer.step(batch);  // never waits for the GPU
    const double train_loss = trainer.take_train_loss();
    const EvalResult r = trainer.evaluate(test_loader);
    std::printf("epoch %d/%d: train loss %.4f, test loss %.4f, test accuracy %.2f%%\n", epoch + 1,
                epochs, train_loss, r.loss, 100.0 * r.accuracy);
  }
  save_checkpoint("fmnist.ckpt", model, &sgd);  // a temporary file renamed: never half-written
  return 0;
} catch (const descent::Error& e) {
  std::fprintf(stderr, "train_fmnist: %s\n", e.what());
  return 1;
}

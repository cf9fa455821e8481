// Trains a small MLP on Fashion-MNIST with descent's C++ API: the explicit loop of the README.
//   train_fmnist [data folder] [epochs]
#include <cstdio>
#include <cstdlib>
#include <string>

#include <descent/descent.hpp>

int main(int argc, char** argv) try {
  using namespace descent;
  const std::string dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 3;

  Context ctx(cuda_device_count() > 0 ? Device::cuda(0) : Device::cpu());
  Dataset train = load_idx(dir + "/train-images-idx3-ubyte.gz", dir + "/train-labels-idx1-ubyte.gz");
  Dataset test = load_idx(dir + "/t10k-images-idx3-ubyte.gz", dir + "/t10k-labels-idx1-ubyte.gz");
  BatchLoader loader(ctx, train, {.batch_size = 128, .shuffle = true, .seed = 1});
  BatchLoader test_loader(ctx, test, {.batch_size = 1000, .shuffle = false});

  Mlp model(ctx, {784, 512, 256, 10}, Activation::relu);  // the last layer gives logits
  Sgd sgd(model, {.lr = 0.05f, .momentum = 0.9f}, LrSchedule::cosine(epochs * loader.batches()));
  Trainer trainer(model, Loss::softmax_cross_entropy, sgd);

  for (int epoch = 0; epoch < epochs; ++epoch) {
    for (const Batch& batch : loader.epoch(epoch)) trainer.step(batch);  // never waits for the GPU
    const double train_loss = trainer.take_train_loss();
    const EvalResult r = trainer.evaluate(test_loader);
    std::printf("epoch %d on %s: train loss %.4f, test loss %.4f, test accuracy %.2f%%\n",
                epoch + 1, ctx.device().str().c_str(), train_loss, r.loss, 100.0 * r.accuracy);
  }
  save_checkpoint("fmnist.ckpt", model, &sgd);  // a temporary file renamed: never half-written
  return 0;
} catch (const descent::Error& e) {
  std::fprintf(stderr, "train_fmnist: %s\n", e.what());
  return 1;
}

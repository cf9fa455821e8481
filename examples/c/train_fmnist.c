/* Trains a small MLP on Fashion-MNIST with descent's C API.
 *   train_fmnist_c [data folder] [epochs] [sample limit (0: all)] */
#include <descent/descent.h>
#include <stdio.h>
#include <stdlib.h>

/* Any failing call: print descent's message and leave. */
#define TRY(call)                                                                 \
  do {                                                                            \
    descent_status status_ = (call);                                              \
    if (status_ != DESCENT_OK) {                                                  \
      fprintf(stderr, "train_fmnist_c: %s: %s\n", descent_status_string(status_), \
              descent_last_error());                                              \
      exit(1);                                                                    \
    }                                                                             \
  } while (0)

static void print_epoch(const descent_epoch_stats* s, void* user) {
  (void)user;
  printf("epoch %lld/%lld: train loss %.4f, test loss %.4f, test accuracy %.2f%%\n",
         (long long)s->epoch, (long long)s->epochs, s->train_loss, s->test_loss,
         100.0 * s->test_accuracy);
  fflush(stdout);
}

int main(int argc, char** argv) {
  const char* dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
  const int64_t epochs = argc > 2 ? atoll(argv[2]) : 3;
  const int64_t limit = argc > 3 ? atoll(argv[3]) : 0;
  const int64_t widths[] = {784, 512, 256, 10}; /* the last layer gives logits */
  const int64_t batch = 128;
  char images[4096], labels[4096];
  descent_context* ctx;
  descent_dataset *train, *test;
  descent_model* model;
  descent_optimizer* opt;
  descent_trainer* trainer;
  const char* device;
  int64_t samples;
  double loss, accuracy;

  TRY(descent_context_create(descent_cuda_device_count() > 0 ? "cuda:0" : "cpu", 0, &ctx));
  snprintf(images, sizeof images, "%s/train-images-idx3-ubyte.gz", dir);
  snprintf(labels, sizeof labels, "%s/train-labels-idx1-ubyte.gz", dir);
  TRY(descent_dataset_load_idx(images, labels, limit, &train));
  snprintf(images, sizeof images, "%s/t10k-images-idx3-ubyte.gz", dir);
  snprintf(labels, sizeof labels, "%s/t10k-labels-idx1-ubyte.gz", dir);
  TRY(descent_dataset_load_idx(images, labels, limit, &test));
  TRY(descent_dataset_shape(train, &samples, NULL, NULL));

  TRY(descent_model_create(ctx, widths, 4, "relu", 0, &model));
  /* SGD with momentum and a cosine schedule over all steps of the run. */
  TRY(descent_optimizer_create(model, 0.05f, 0.9f, 0.0f, 0, "cosine",
                               epochs * ((samples + batch - 1) / batch), 0.0f, &opt));
  TRY(descent_trainer_create(model, opt, "softmax_cross_entropy", &trainer));

  TRY(descent_context_device(ctx, &device));
  printf("C on %s, %lld training samples\n", device, (long long)samples);
  TRY(descent_trainer_evaluate_dataset(trainer, test, 1000, &loss, &accuracy));
  printf("initial: test loss %.4f, test accuracy %.2f%%\n", loss, 100.0 * accuracy);
  TRY(descent_trainer_fit(trainer, train, test, batch, epochs, 1, print_epoch, NULL));
  TRY(descent_checkpoint_save("fmnist_c.ckpt", model, opt));

  descent_trainer_destroy(trainer);
  descent_optimizer_destroy(opt);
  descent_model_destroy(model);
  descent_dataset_destroy(test);
  descent_dataset_destroy(train);
  descent_context_destroy(ctx);
  return 0;
}

/* Trains a small MLP on Fashion-MNIST data parallel over MPI with descent's C API: every rank
 * loads the data, trains on its shard of each global batch of 128, and rank 0 prints.
 *   mpirun -np 2 train_fmnist_mpi_c [data folder] [epochs] [sample limit (0: all)] */
#include <descent/descent.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static descent_communicator* comm = NULL;

/* Any failing call: the other ranks may be waiting in a collective, so end the whole job with
 * descent's message (before the communicator exists, through MPI directly). */
static void fail(descent_status status, const char* call) {
  char message[4096];
  snprintf(message, sizeof message, "train_fmnist_mpi_c: %s: %s: %s", call,
           descent_status_string(status), descent_last_error());
  if (comm != NULL) descent_communicator_abort(comm, message, 1);
  fprintf(stderr, "%s\n", message);
  MPI_Abort(MPI_COMM_WORLD, 1);
  exit(1); /* MPI_Abort does not return; should it, end this rank anyway */
}
#define TRY(call)                                    \
  do {                                               \
    descent_status status_ = (call);                 \
    if (status_ != DESCENT_OK) fail(status_, #call); \
  } while (0)

/* The statistics are over every rank's samples, the same on each: rank 0 prints them. */
static void print_epoch(const descent_epoch_stats* s, void* user) {
  if (*(const int*)user != 0) return;
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
  const int64_t batch = 128;                    /* the global batch, over all ranks */
  char images[4096], labels[4096];
  descent_context* ctx;
  descent_dataset *train, *test;
  descent_model* model;
  descent_optimizer* opt;
  descent_trainer* trainer;
  int64_t samples;
  int rank, size;
  double loss, accuracy;

  MPI_Init(&argc, &argv);
  /* The CPU backend sums gradients over MPI; a CUDA context needs a build with NCCL. */
  TRY(descent_context_create("cpu", 0, &ctx));
  TRY(descent_communicator_create_mpi(ctx, (int)MPI_Comm_c2f(MPI_COMM_WORLD), &comm));
  TRY(descent_communicator_rank(comm, &rank));
  TRY(descent_communicator_size(comm, &size));

  /* Every rank holds the whole dataset; fit and evaluate_dataset pick each rank's shard. */
  snprintf(images, sizeof images, "%s/train-images-idx3-ubyte.gz", dir);
  snprintf(labels, sizeof labels, "%s/train-labels-idx1-ubyte.gz", dir);
  TRY(descent_dataset_load_idx(images, labels, limit, &train));
  snprintf(images, sizeof images, "%s/t10k-images-idx3-ubyte.gz", dir);
  snprintf(labels, sizeof labels, "%s/t10k-labels-idx1-ubyte.gz", dir);
  TRY(descent_dataset_load_idx(images, labels, limit, &test));
  TRY(descent_dataset_shape(train, &samples, NULL, NULL));

  /* The same seed on every rank: the replicas start equal and stay so. */
  TRY(descent_model_create(ctx, widths, 4, "relu", 0, &model));
  TRY(descent_optimizer_create(model, 0.05f, 0.9f, 0.0f, 0, "cosine",
                               epochs * ((samples + batch - 1) / batch), 0.0f, &opt));
  TRY(descent_trainer_create_parallel(model, opt, "softmax_cross_entropy", comm, &trainer));

  TRY(descent_trainer_evaluate_dataset(trainer, test, 1000, &loss, &accuracy));
  if (rank == 0) {
    printf("C on cpu, %d ranks, %lld training samples\n", size, (long long)samples);
    printf("initial: test loss %.4f, test accuracy %.2f%%\n", loss, 100.0 * accuracy);
    fflush(stdout);
  }
  TRY(descent_trainer_fit(trainer, train, test, batch, epochs, 1, print_epoch, &rank));
  /* The replicas are identical: one checkpoint, written by rank 0. */
  if (rank == 0) TRY(descent_checkpoint_save("fmnist_mpi_c.ckpt", model, opt));

  descent_trainer_destroy(trainer);
  descent_optimizer_destroy(opt);
  descent_model_destroy(model);
  descent_dataset_destroy(test);
  descent_dataset_destroy(train);
  descent_communicator_destroy(comm); /* before MPI_Finalize */
  descent_context_destroy(ctx);
  MPI_Finalize();
  return 0;
}

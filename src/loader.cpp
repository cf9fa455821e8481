// BatchLoader: seeded per-epoch order, and the three ways a batch reaches the device, each a
// gather by the backend: from the dataset in place (a device that reads host memory), from a
// copy resident on the device, or streamed through the backend's pinned double buffers.
#include <algorithm>
#include <cstring>
#include <string>

#include "kernels/backend.hpp"
#include "comm/comm_impl.hpp"
#include "descent/data.hpp"
#include "descent/error.hpp"

namespace descent {

namespace {

// splitmix64: a tiny, well-mixed generator whose output is the same on every platform (unlike
// the distributions of <random>), so shuffles are reproducible everywhere.
struct SplitMix64 {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) without bias (Lemire's multiply-and-reject).
  std::uint64_t below(std::uint64_t n) {
    unsigned __int128 m = static_cast<unsigned __int128>(next()) * n;
    auto low = static_cast<std::uint64_t>(m);
    if (low < n) {
      const std::uint64_t threshold = (0 - n) % n;
      while (low < threshold) {
        m = static_cast<unsigned __int128>(next()) * n;
        low = static_cast<std::uint64_t>(m);
      }
    }
    return static_cast<std::uint64_t>(m >> 64);
  }
};

enum class Mode { cpu, resident, streaming };

constexpr std::size_t kAlign = 256;
std::size_t align_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

}  // namespace

struct BatchLoader::Impl {
  Context ctx;  // a handle: the loader keeps its device state alive
  const detail::Backend* backend = nullptr;
  const Dataset* data;
  LoaderOptions opt;
  Communicator comm;     // the ranks the global batches are sharded over
  std::int64_t shard_capacity = 0;  // the most rows one rank's shard of a batch holds
  Mode mode = Mode::cpu;
  std::int64_t batches = 0, samples = 0;
  std::vector<std::int32_t> order;
  std::int64_t next_batch = 0;
  // The batch handed out: fixed addresses for the whole life of the loader.
  Buffer<float> x, targets;
  Buffer<std::int32_t> labels;
  // Resident: the dataset on the device and the epoch's order.
  Buffer<std::uint8_t> dev_u8;
  Buffer<float> dev_f32, dev_targets;
  Buffer<std::int32_t> dev_labels, dev_order;
  // In place or resident: where rows are gathered from (the dataset's own arrays, or their
  // device copies above) and the epoch's order there.
  const std::uint8_t* src_u8 = nullptr;
  const float* src_f32 = nullptr;
  const float* src_targets = nullptr;
  const std::int32_t* src_labels = nullptr;
  const std::int32_t* src_order = nullptr;
  // Streaming: one slot holds a batch's features then its labels or targets.
  detail::StagerPtr stager{nullptr, nullptr};
  std::size_t feature_bytes = 0;

  std::size_t feature_element() const { return data->is_uint8() ? 1 : sizeof(float); }

  std::size_t device_bytes() const {
    const auto n = static_cast<std::size_t>(data->size());
    std::size_t b = n * static_cast<std::size_t>(data->features()) * feature_element();
    b += n * (data->has_labels() ? sizeof(std::int32_t)
                                 : sizeof(float) * static_cast<std::size_t>(data->target_count()));
    return b + n * sizeof(std::int32_t);  // the order
  }

  // The dataset in place, for a device that reads host memory.
  void setup_in_place() {
    mode = Mode::cpu;
    src_u8 = data->is_uint8() ? data->uint8_features().data() : nullptr;
    src_f32 = data->is_uint8() ? nullptr : data->float_features().data();
    src_labels = data->has_labels() ? data->labels().data() : nullptr;
    src_targets = data->has_labels() ? nullptr : data->targets().data();
    src_order = order.data();
  }

  // A copy resident on the device when it fits the budget, else streaming.
  void setup_device() {
    const std::size_t need = device_bytes();
    const std::size_t budget =
        opt.device_budget > 0
            ? opt.device_budget
            : static_cast<std::size_t>(backend->memory_bytes(ctx) / 2);
    const auto n = data->size();
    if (need <= budget || backend->create_stager == nullptr) {
      mode = Mode::resident;
      if (data->is_uint8()) {
        dev_u8 = Buffer<std::uint8_t>(ctx, data->uint8_features());
        src_u8 = dev_u8.data();
      } else {
        dev_f32 = Buffer<float>(ctx, data->float_features());
        src_f32 = dev_f32.data();
      }
      if (data->has_labels()) {
        dev_labels = Buffer<std::int32_t>(ctx, data->labels());
        src_labels = dev_labels.data();
      } else {
        dev_targets = Buffer<float>(ctx, data->targets());
        src_targets = dev_targets.data();
      }
      dev_order = Buffer<std::int32_t>(ctx, n);
      src_order = dev_order.data();
    } else {
      mode = Mode::streaming;
      feature_bytes = align_up(static_cast<std::size_t>(shard_capacity) *
                               static_cast<std::size_t>(data->features()) * feature_element());
      const std::size_t label_bytes =
          static_cast<std::size_t>(shard_capacity) *
          (data->has_labels() ? sizeof(std::int32_t)
                              : sizeof(float) * static_cast<std::size_t>(data->target_count()));
      stager = detail::StagerPtr(backend->create_stager(ctx, feature_bytes + label_bytes),
                                 backend->destroy_stager);
    }
  }

  // Gathers `rows` rows (index null: the first rows) from the sources into the batch buffers.
  void gather(const std::uint8_t* u8, const float* f32, const std::int32_t* labels_in,
              const float* targets_in, const std::int32_t* idx, std::int64_t rows) {
    if (u8 != nullptr) {
      backend->gather_rows_u8(ctx, u8, data->features(), idx, rows, data->scale(), data->shift(),
                              x.data());
    } else {
      backend->gather_rows(ctx, f32, data->features(), idx, rows, x.data());
    }
    if (labels_in != nullptr) {
      backend->gather_labels(ctx, labels_in, idx, rows, labels.data());
    } else {
      backend->gather_rows(ctx, targets_in, data->target_count(), idx, rows, targets.data());
    }
  }

  void fill_streaming(std::int64_t start, std::int64_t rows) {
    auto* host = static_cast<std::uint8_t*>(backend->stager_acquire(*stager));
    const std::int64_t f = data->features();
    const std::size_t row_bytes = static_cast<std::size_t>(f) * feature_element();
    const auto* src = data->is_uint8()
                          ? data->uint8_features().data()
                          : reinterpret_cast<const std::uint8_t*>(data->float_features().data());
    std::uint8_t* tail = host + feature_bytes;
    const std::size_t tail_row =
        data->has_labels() ? sizeof(std::int32_t)
                           : sizeof(float) * static_cast<std::size_t>(data->target_count());
    for (std::int64_t r = 0; r < rows; ++r) {
      const auto i = static_cast<std::size_t>(order[static_cast<std::size_t>(start + r)]);
      std::memcpy(host + static_cast<std::size_t>(r) * row_bytes, src + i * row_bytes, row_bytes);
      const void* t =
          data->has_labels()
              ? static_cast<const void*>(data->labels().data() + i)
              : static_cast<const void*>(data->targets().data() +
                                         i * static_cast<std::size_t>(data->target_count()));
      std::memcpy(tail + static_cast<std::size_t>(r) * tail_row, t, tail_row);
    }
    const auto* dev = static_cast<const std::uint8_t*>(backend->stager_submit(
        *stager, ctx, feature_bytes + static_cast<std::size_t>(rows) * tail_row));
    const bool u8 = data->is_uint8(), has_labels = data->has_labels();
    gather(u8 ? dev : nullptr, u8 ? nullptr : reinterpret_cast<const float*>(dev),
           has_labels ? reinterpret_cast<const std::int32_t*>(dev + feature_bytes) : nullptr,
           has_labels ? nullptr : reinterpret_cast<const float*>(dev + feature_bytes), nullptr,
           rows);
    backend->stager_release(*stager, ctx);
  }
};

BatchLoader::BatchLoader(const Context& ctx, const Dataset& data, LoaderOptions options)
    : BatchLoader(ctx, data, options, Communicator()) {}

BatchLoader::BatchLoader(const Context& ctx, const Dataset& data, LoaderOptions options,
                         const Communicator& comm)
    : impl_(std::make_unique<Impl>()) {
  if (options.batch_size < 1) {
    throw ArgumentError("BatchLoader: batch_size: must be >= 1, got " +
                        std::to_string(options.batch_size));
  }
  if (data.size() < 1) throw DataError("BatchLoader: the dataset is empty (0 samples)");
  Impl& m = *impl_;
  m.ctx = ctx;
  m.backend = &detail::backend_of(ctx);
  m.data = &data;
  m.opt = options;
  m.opt.batch_size = std::min(options.batch_size, data.size());
  m.comm = comm;
  if (comm.size() > 1) {
    // Every rank must cut the same batches from the same permutation.
    std::uint64_t h = fingerprint_of(data.size());
    h = fingerprint_of(data.features(), h);
    h = fingerprint_of(data.has_labels() ? std::int64_t{-1} : data.target_count(), h);
    h = fingerprint_of(m.opt.batch_size, h);
    h = fingerprint_of(m.opt.shuffle, h);
    h = fingerprint_of(m.opt.seed, h);
    h = fingerprint_of(m.opt.drop_last, h);
    check_same_on_every_rank(comm, h, "BatchLoader",
                             "the dataset's shape (samples, features, labels or targets) or the "
                             "batch size, shuffle, seed or drop_last");
  }
  const std::int64_t bs = m.opt.batch_size;
  m.shard_capacity = shard_of(bs, 0, comm.size()).rows();  // rank 0's shard is the largest
  if (options.drop_last) {
    m.batches = data.size() / bs;
    m.samples = m.batches * bs;
  } else {
    m.batches = (data.size() + bs - 1) / bs;
    m.samples = data.size();
  }
  // At least one row: a rank whose shard is empty still hands out a valid (0-row) view.
  const std::int64_t cap = std::max<std::int64_t>(m.shard_capacity, 1);
  m.x = Buffer<float>(ctx, cap * data.features());
  if (data.has_labels()) {
    m.labels = Buffer<std::int32_t>(ctx, cap);
  } else {
    m.targets = Buffer<float>(ctx, cap * data.target_count());
  }
  m.order.resize(static_cast<std::size_t>(data.size()));
  if (m.backend->host_memory) {
    m.setup_in_place();
  } else {
    m.setup_device();
  }
  start_epoch(0);
}

BatchLoader::BatchLoader(BatchLoader&&) noexcept = default;
BatchLoader& BatchLoader::operator=(BatchLoader&&) noexcept = default;
BatchLoader::~BatchLoader() = default;

const Dataset& BatchLoader::dataset() const { return *impl_->data; }
const Context& BatchLoader::context() const { return impl_->ctx; }
const LoaderOptions& BatchLoader::options() const { return impl_->opt; }
const Communicator& BatchLoader::communicator() const { return impl_->comm; }
std::int64_t BatchLoader::batch_size() const { return impl_->opt.batch_size; }
std::int64_t BatchLoader::batches() const { return impl_->batches; }
std::int64_t BatchLoader::samples_per_epoch() const { return impl_->samples; }

const char* BatchLoader::mode() const {
  switch (impl_->mode) {
    case Mode::cpu:
      return "cpu";
    case Mode::resident:
      return "resident";
    case Mode::streaming:
      return "streaming";
  }
  return "unknown";
}

void BatchLoader::start_epoch(std::int64_t epoch, std::int64_t first_batch) {
  Impl& m = *impl_;
  if (epoch < 0 || first_batch < 0 || first_batch > m.batches) {
    throw ArgumentError("BatchLoader::start_epoch: expected epoch >= 0 and first_batch in [0, " +
                        std::to_string(m.batches) + "], got " + std::to_string(epoch) + " and " +
                        std::to_string(first_batch));
  }
  for (std::size_t i = 0; i < m.order.size(); ++i) m.order[i] = static_cast<std::int32_t>(i);
  if (m.opt.shuffle) {
    SplitMix64 rng{m.opt.seed ^ (static_cast<std::uint64_t>(epoch) * 0xd1b54a32d192ed03ull)};
    for (std::size_t i = m.order.size(); i > 1; --i) {
      std::swap(m.order[i - 1], m.order[static_cast<std::size_t>(rng.below(i))]);
    }
  }
  if (m.mode == Mode::resident) {
    m.dev_order.copy_from_host(m.ctx, std::span<const std::int32_t>(m.order));
  }
  m.next_batch = first_batch;
}

bool BatchLoader::next(Batch& batch) {
  Impl& m = *impl_;
  if (m.next_batch >= m.batches) return false;
  const std::int64_t bs = m.opt.batch_size;
  const std::int64_t global_start = m.next_batch * bs;
  const std::int64_t global_rows = std::min(bs, m.samples - global_start);
  const Shard shard = shard_of(global_rows, m.comm.rank(), m.comm.size());
  const std::int64_t start = global_start + shard.begin, rows = shard.rows();
  ++m.next_batch;
  if (rows == 0) {
    // An empty shard: nothing to gather.
  } else if (m.mode == Mode::streaming) {
    m.fill_streaming(start, rows);
  } else {
    m.gather(m.src_u8, m.src_f32, m.src_labels, m.src_targets, m.src_order + start, rows);
  }
  const Dataset& d = *m.data;
  batch = Batch{};
  batch.x = m.x.matrix(rows, d.features());
  if (d.has_labels()) {
    batch.labels = VectorView<const std::int32_t>(m.labels.data(), rows, m.labels.device());
    batch.labels_below = d.classes();
  } else {
    batch.targets = m.targets.matrix(rows, d.target_count());
    batch.targets_in_unit = d.targets_in_unit();
  }
  batch.global_rows = global_rows;
  return true;
}

}  // namespace descent

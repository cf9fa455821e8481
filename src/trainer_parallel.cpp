// Trainer, data parallel: the buckets of the flat gradient buffer summed over the ranks while
// the backward pass goes on, and the checks that every rank trains the same replica.
#include <cstring>

#include "trainer_impl.hpp"

namespace descent {

namespace detail {

std::vector<Bucket> make_buckets(const Mlp& model, std::size_t bytes) {
  std::vector<Bucket> out;
  const int layers = model.layers();
  const auto end_of = [&](int l) {
    return l + 1 < layers ? model.weight_offset(l + 1) : model.parameter_count();
  };
  int last = layers - 1;
  for (int l = layers - 1; l >= 0; --l) {
    const std::int64_t count = end_of(last) - model.weight_offset(l);
    if (static_cast<std::size_t>(count) * sizeof(float) >= bytes || l == 0) {
      out.push_back(Bucket{l, last, model.weight_offset(l), count});
      last = l - 1;
    }
  }
  return out;
}

void check_replicas(const Communicator& comm, const Mlp& model, Loss loss, const Optimizer& opt,
                    const TrainerOptions& o) {
  if (comm.size() == 1) return;
  std::uint64_t arch = fingerprint(model.widths().data(), model.widths().size() * 8);
  for (Activation a : model.activations()) arch = fingerprint_of(a, arch);
  arch = fingerprint_of(model.precision(), arch);
  check_same_on_every_rank(comm, arch, "Trainer",
                           "the model's architecture (widths, activations, precision)");
  const std::vector<float> params = model.params_to_host();
  check_same_on_every_rank(comm, fingerprint(params.data(), params.size() * sizeof(float)),
                           "Trainer",
                           "the model's parameters (a different initialisation seed, or a "
                           "checkpoint loaded on some ranks only?)");
  std::uint64_t h = fingerprint_of(opt.kind());
  for (const OptimizerOption& o : opt.options_list()) {
    h = fingerprint(o.name, std::strlen(o.name), h);
    h = o.type == OptimizerOption::Type::flag ? fingerprint_of(o.flag, h)
                                              : fingerprint_of(o.number, h);
  }
  const LrSchedule& sc = opt.schedule();
  h = fingerprint_of(sc.kind, h);
  h = fingerprint_of(sc.every, h);
  h = fingerprint_of(sc.gamma, h);
  h = fingerprint_of(sc.total, h);
  h = fingerprint_of(sc.min_lr, h);
  h = fingerprint_of(opt.steps(), h);
  for (const std::string& name : opt.state_names()) {
    h = fingerprint(name.data(), name.size(), h);
    const std::vector<float> state = opt.state_to_host(name);
    h = fingerprint(state.data(), state.size() * sizeof(float), h);
  }
  check_same_on_every_rank(comm, h, "Trainer",
                           "the optimizer (kind, options, schedule, step count or state)");
  std::uint64_t t = fingerprint_of(loss);
  t = fingerprint_of(o.clip_grad_norm, t);
  t = fingerprint_of(o.clip_norm_type, t);
  t = fingerprint_of(o.on_non_finite, t);
  t = fingerprint_of(o.cuda_graphs, t);  // whether a step's sums are captured: the same everywhere
  check_same_on_every_rank(comm, t, "Trainer",
                           "the loss, the gradient clipping, the non-finite policy or cuda_graphs");
}

}  // namespace detail

void Trainer::Impl::start_buckets(int layer) {
  Communicator::Impl& c = comm.impl();
  for (; next_bucket < buckets.size() && buckets[next_bucket].first >= layer; ++next_bucket) {
    const Bucket& k = buckets[next_bucket];
    c.start_sum(ctx, model->grads().data + k.offset, static_cast<std::size_t>(k.count));
  }
  c.poll();
}

}  // namespace descent

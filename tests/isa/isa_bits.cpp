// Prints a hash of the bits of the CPU loops whose vector variants pick their own widths and
// register blocks (kernels/cpu/jet_products.cpp, dense_slices.cpp), in float32, where every
// variant with fused multiply-adds promises the same bits: a Burgers-shaped residual step through
// pde_residual_step (the slice products and gradient), the same through jet_forward,
// pde_residual_loss and jet_backward (the weight gradient's dot tasks), and a few Trainer steps
// of a narrow network on 4096 rows (the whole-network slice step). ctest runs it under
// DESCENT_CPU_ISA=avx2 and avx512-blocks and compares the outputs: the AVX-512 register blocks
// against the AVX2 ones, on any CPU with AVX2 and FMA. (float64 is left out: its lane sums
// follow the vector width, so its bits may differ.)
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <descent/descent.hpp>
#include <descent/jet.hpp>
#include <random>
#include <span>
#include <vector>

namespace {

using namespace descent;

std::uint64_t fnv(std::uint64_t h, std::span<const float> v) {
  for (const float f : v) {
    std::uint32_t u = 0;
    std::memcpy(&u, &f, sizeof u);
    h = (h ^ u) * 1099511628211ull;
  }
  return h;
}

std::vector<float> uniform(std::size_t n, float lo, float hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

std::uint64_t grads_hash(Mlp& model) {
  const VectorView<const float> g = std::as_const(model).grads();
  return fnv(1469598103934665603ull, std::span<const float>(g.data, std::size_t(g.size)));
}

}  // namespace

int main() {
  Context ctx(Device::cpu());

  // A Burgers-shaped residual (odd sizes: 2-20-19-21-1, 1000 points).
  Mlp jet_model(ctx, std::vector<std::int64_t>{2, 20, 19, 21, 1}, Activation::tanh);
  jet_model.init(Init::xavier, 7);
  const std::int64_t n = 1000;
  const std::vector<float> x = uniform(std::size_t(2 * n), -1.0f, 1.0f, 1);
  const std::vector<float> f = uniform(std::size_t(n), -0.1f, 0.1f, 2);
  const Buffer<float> xd(ctx, std::span<const float>(x)), fd(ctx, std::span<const float>(f));
  Buffer<float> loss(ctx, 1);
  JetOptions o;
  o.weights = {0.0f, 1.0f};
  PdeResidual r;
  r.b = {1.0f, 0.0f};
  r.c = -0.0031831f;
  r.d = {0.0f, 1.0f};
  const VectorView<float> lv(loss.data(), 1, ctx.device());

  Jet fused(jet_model, o);
  pde_residual_step(jet_model, xd.matrix(n, 2), fused, r, fd.matrix(n, 1), lv, 1.0f, false);
  std::printf("pde_residual_step: gradient %016llx, loss %a\n",
              static_cast<unsigned long long>(grads_hash(jet_model)), double(loss.to_host(ctx)[0]));

  Jet layers(jet_model, o);
  jet_forward(jet_model, xd.matrix(n, 2), layers);
  JetAdjoints adj = pde_residual_loss(layers, r, fd.matrix(n, 1), lv);
  adj.accumulate = false;
  jet_backward(jet_model, layers, adj);
  std::printf("jet_forward/jet_backward: gradient %016llx, loss %a\n",
              static_cast<unsigned long long>(grads_hash(jet_model)), double(loss.to_host(ctx)[0]));

  // The whole-network slice step: a narrow classifier, 4096 rows, three SGD steps.
  Mlp net(ctx, std::vector<std::int64_t>{33, 64, 47, 10}, Activation::tanh);
  net.init(Init::xavier, 11);
  const std::int64_t rows = 4096;
  const std::vector<float> xs = uniform(std::size_t(rows * 33), -1.0f, 1.0f, 3);
  std::vector<std::int32_t> labels(static_cast<std::size_t>(rows));
  std::mt19937 rng(4);
  for (std::int32_t& l : labels) l = static_cast<std::int32_t>(rng() % 10);
  const Buffer<float> xsd(ctx, std::span<const float>(xs));
  const Buffer<std::int32_t> ld(ctx, std::span<const std::int32_t>(labels));
  Sgd sgd(net, SgdOptions{0.05f, 0.9f});
  Trainer trainer(net, Loss::softmax_cross_entropy, sgd);
  Batch b;
  b.x = xsd.matrix(rows, 33);
  b.labels = VectorView<const std::int32_t>(ld.data(), rows, ctx.device());
  for (int step = 0; step < 3; ++step) {
    trainer.step(b);
    std::printf("slice step %d: gradient %016llx\n", step,
                static_cast<unsigned long long>(grads_hash(net)));
  }
  const std::vector<float> p = net.params_to_host();
  std::printf("slice step: parameters %016llx, loss %a\n",
              static_cast<unsigned long long>(fnv(1469598103934665603ull, p)),
              trainer.take_train_loss());
  return 0;
}

// The float64 whole-network jet step (Backend::jet_residual_step_f64): the recurrences of
// jet_residual_step_t (kernels/cpu/jet.cpp) in float64 throughout, for losses whose optimum
// float32 cannot resolve (docs/pinn.md: Burgers' L-BFGS stalls in float32 where the loss moves
// by less than its rounding). Every layer runs over slices of kSlice points held in cache,
// feature-major ([width, blocks · kSlice]: block b of feature i at row i, columns
// [b · kSlice, (b + 1) · kSlice)); the elementwise passes are jet.cpp's rows in float64
// (jet_rows_forward_f64: tanh from a vectorisable float64 expm1, its σ and σ' kept for the
// backward pass), the products jet_products.cpp's register tiles in float64 vectors (fused
// multiply-adds where the ISA variant has them). Tasks of a fixed number of points keep their own
// loss and gradient sums, added in task order: the same bits for any thread count.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cpu/cpu.hpp"
#include "kernels/math/jet.hpp"

namespace descent::cpu {

namespace {

constexpr std::int64_t kSlice = 32;  // points per slice

// Points per task: a function of the batch and the parameter count alone (so the bits do not
// depend on the thread count), 256 or, past `most` tasks' worth, whole slices of a most-th of the
// batch. Each task holds a float64 copy of the gradient until the end, so their number is bounded:
// at most 64, and at most 64 MB of such copies.
std::int64_t task_points(std::int64_t batch, std::int64_t params) {
  const std::int64_t most = std::clamp<std::int64_t>((std::int64_t{8} << 20) / params, 1, 64);
  const std::int64_t share = ((batch + most - 1) / most + kSlice - 1) / kSlice * kSlice;
  return std::max<std::int64_t>(256, share);
}

}  // namespace

double jet_residual_step_f64(const Context& ctx, const detail::JetStepF64& s) {
  constexpr std::int64_t P = kSlice;
  const int count = s.layers;
  const int k_count = s.directions;
  const detail::JetShape shape{k_count, s.second_order};
  const std::int64_t nb = 1 + k_count + (s.second_order ? 1 : 0), cols = nb * P;
  const std::int64_t* width = s.widths;
  const std::int64_t in = width[0], out = width[count];
  std::vector<std::int64_t> w_at(static_cast<std::size_t>(count)), b_at(w_at.size());
  std::int64_t params = 0, widest_layer = 0;
  for (int l = 0; l < count; ++l) {
    w_at[static_cast<std::size_t>(l)] = params;
    params += width[l + 1] * width[l];
    b_at[static_cast<std::size_t>(l)] = params;
    params += width[l + 1];
  }
  for (int l = 0; l <= count; ++l) widest_layer = std::max(widest_layer, width[l]);
  // One thread's slice memory: every layer's input h_l, pre-activation z_l and σ' (tanh), the
  // output, the backward pass's two input adjoints and one pre-activation adjoint, and the bias
  // and bias-gradient rows of one feature.
  std::vector<std::int64_t> h_at, z_at, slope_at;
  std::int64_t per_thread = 0;
  for (int l = 0; l <= count; ++l) {
    h_at.push_back(per_thread);
    per_thread += width[l] * cols;
  }
  for (int l = 0; l < count; ++l) {
    z_at.push_back(per_thread);
    per_thread += width[l + 1] * cols;
    slope_at.push_back(per_thread);
    per_thread += width[l + 1] * P;
  }
  const std::int64_t dh_at[2] = {per_thread, per_thread + widest_layer * cols};
  const std::int64_t dz_at = per_thread + 2 * widest_layer * cols;
  const std::int64_t row_at = dz_at + widest_layer * cols;  // P values: a bias, or z̄'s sums
  per_thread = row_at + P;

  const std::int64_t batch = s.batch;
  const std::int64_t per_task = task_points(batch, params);
  const std::int64_t tasks = (batch + per_task - 1) / per_task;
  const int threads =
      static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(ctx.threads(), tasks)));
  const bool backward = s.grad != nullptr;
  std::vector<double> memory(static_cast<std::size_t>(threads * per_thread));
  std::vector<double> task_grad(backward ? static_cast<std::size_t>(tasks * params) : 0, 0.0);
  std::vector<double> task_loss(static_cast<std::size_t>(tasks), 0.0);
  const double rows_out = static_cast<double>(batch) * static_cast<double>(out);
  const double scale = 2.0 * s.weight / rows_out;
  const JetRowsF64 rows{k_count, s.second_order, s.cweights, P};

#pragma omp parallel num_threads(threads)
  {
    double* const m0 = memory.data() + std::int64_t(omp_get_thread_num()) * per_thread;
#pragma omp for schedule(static)
    for (std::int64_t t = 0; t < tasks; ++t) {
      double* const grad = backward ? task_grad.data() + t * params : nullptr;
      double loss = 0.0;
      const std::int64_t end = std::min(batch, (t + 1) * per_task);
      for (std::int64_t s0 = t * per_task; s0 < end; s0 += P) {
        const std::int64_t m = std::min(P, batch - s0);
        // The input's jet: x (zeros past the batch), v_k's component in block k, no curvature.
        double* const h0 = m0 + h_at[0];
        for (std::int64_t i = 0; i < in; ++i) {
          double* row = h0 + i * cols;
          for (std::int64_t p = 0; p < P; ++p) row[p] = p < m ? s.x[(s0 + p) * in + i] : 0.0;
          for (int k = 0; k < k_count; ++k) std::fill_n(row + (1 + k) * P, P, s.v[k * in + i]);
          if (s.second_order) std::fill_n(row + (1 + k_count) * P, P, 0.0);
        }
        for (int l = 0; l < count; ++l) {
          const double* const w = s.params + w_at[static_cast<std::size_t>(l)];
          const double* const b = s.params + b_at[static_cast<std::size_t>(l)];
          double* const z = m0 + z_at[static_cast<std::size_t>(l)];
          double* const h_next = m0 + h_at[static_cast<std::size_t>(l) + 1];
          slice_product_f64(w, width[l], 1, width[l + 1], width[l],
                            m0 + h_at[static_cast<std::size_t>(l)], cols, z, cols);
          const bool keep = s.acts[l] == JetActivation::tanh;
          double* const slope = m0 + slope_at[static_cast<std::size_t>(l)];
          double* const bias = m0 + row_at;
          for (std::int64_t i = 0; i < width[l + 1]; ++i) {
            std::fill_n(bias, P, b[i]);
            jet_rows_forward_f64(s.acts[l], rows, bias, z + i * cols, P, h_next + i * cols, P,
                                 keep ? slope + i * P : nullptr);
          }
        }
        const double* const y = m0 + h_at[static_cast<std::size_t>(count)];
        if (s.y != nullptr) {
          for (std::int64_t blk = 0; blk < nb; ++blk) {
            for (std::int64_t p = 0; p < m; ++p) {
              double* dst = s.y + (blk * batch + s0 + p) * out;
              for (std::int64_t o = 0; o < out; ++o) dst[o] = y[o * cols + blk * P + p];
            }
          }
        }
        // The residual at the outputs, its adjoints into dh (zeros past the batch).
        double* dh = m0 + dh_at[0];
        double* other = m0 + dh_at[1];
        for (std::int64_t o = 0; o < out; ++o) {
          for (std::int64_t p = 0; p < P; ++p) {
            double* g = dh + o * cols + p;
            if (p >= m) {
              for (std::int64_t blk = 0; blk < nb; ++blk) g[blk * P] = 0.0;
              continue;
            }
            const double f = s.source != nullptr ? s.source[(s0 + p) * out + o] : 0.0;
            loss += detail::pde_residual_element(shape, s.coefficients, y + o * cols + p, P, f,
                                                 scale, g, P);
          }
        }
        if (!backward) continue;
        double* const dz = m0 + dz_at;
        for (int l = count - 1; l >= 0; --l) {
          const double* const z = m0 + z_at[static_cast<std::size_t>(l)];
          const double* const h_next = m0 + h_at[static_cast<std::size_t>(l) + 1];
          const double* const slope = m0 + slope_at[static_cast<std::size_t>(l)];
          const bool kept = s.acts[l] == JetActivation::tanh;
          double* const db = grad + b_at[static_cast<std::size_t>(l)];
          double* const part = m0 + row_at;
          for (std::int64_t i = 0; i < width[l + 1]; ++i) {
            std::fill_n(part, P, 0.0);
            jet_rows_backward_f64(s.acts[l], rows, z + i * cols, P, dh + i * cols, P, dz + i * cols,
                                  P, part, kept ? h_next + i * cols : nullptr,
                                  kept ? slope + i * P : nullptr);
            double sum = 0.0;
            for (std::int64_t p = 0; p < P; ++p) sum += part[p];
            db[i] += sum;
          }
          slice_weight_gradient_f64(dz, width[l + 1], m0 + h_at[static_cast<std::size_t>(l)],
                                    width[l], cols, cols, grad + w_at[static_cast<std::size_t>(l)]);
          if (l > 0) {
            slice_product_f64(s.params + w_at[static_cast<std::size_t>(l)], 1, width[l], width[l],
                              width[l + 1], dz, cols, other, cols);
            std::swap(dh, other);
          }
        }
      }
      task_loss[static_cast<std::size_t>(t)] = loss;
    }
  }
  if (backward) {
    for (std::int64_t e = 0; e < params; ++e) {
      double sum = 0.0;
      for (std::int64_t t = 0; t < tasks; ++t)
        sum += task_grad[static_cast<std::size_t>(t * params + e)];
      s.grad[e] = s.accumulate ? s.grad[e] + sum : sum;
    }
  }
  double loss = 0.0;
  for (double v : task_loss) loss += v;
  return s.weight * loss / rows_out;
}

}  // namespace descent::cpu

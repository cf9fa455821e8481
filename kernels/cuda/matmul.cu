// cuBLASLt matmuls planned once per shape: descriptors, layouts and the heuristic's algorithm are
// cached in the context's State, keyed by everything the choice depends on.
#include "kernels/cuda/matmul.cuh"

namespace descent::cuda {

namespace {

template <class T>
void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const T& value) {
  DESCENT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attr, &value, sizeof value));
}

template <class T>
void set_pref(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr,
              const T& value) {
  DESCENT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof value));
}

void destroy_plan(MatmulPlan& p) noexcept {
  if (p.pref) cublasLtMatmulPreferenceDestroy(p.pref);
  if (p.a) cublasLtMatrixLayoutDestroy(p.a);
  if (p.b) cublasLtMatrixLayoutDestroy(p.b);
  if (p.d) cublasLtMatrixLayoutDestroy(p.d);
  if (p.desc) cublasLtMatmulDescDestroy(p.desc);
  p = MatmulPlan{};
}

// Pointers only enter the plan through their alignment: cuBLASLt assumes 256-byte aligned
// operands unless told otherwise, and views into a flat parameter buffer rarely are.
MatmulKey key_of(const LtMatmul& mm) {
  return {mm.op_a,
          mm.op_b,
          mm.a.type,
          mm.a.rows,
          mm.a.cols,
          mm.a.ld,
          mm.b.type,
          mm.b.rows,
          mm.b.cols,
          mm.b.ld,
          mm.d_type,
          mm.d_rows,
          mm.d_cols,
          mm.d_ld,
          mm.compute,
          mm.epilogue,
          mm.aux_ld,
          alignment_of(mm.a.data),
          alignment_of(mm.b.data),
          alignment_of(mm.d),
          mm.bias ? alignment_of(mm.bias) : 0,
          mm.aux ? alignment_of(mm.aux) : 0};
}

void set_epilogue_pointers(const MatmulPlan& p, const LtMatmul& mm) {
  if (mm.bias)
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<const void*>(mm.bias));
  if (mm.aux) set_desc(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, mm.aux);
}

void build_plan(const State& s, MatmulPlan& p, const LtMatmul& mm) {
  DESCENT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, mm.compute, CUDA_R_32F));
  set_desc(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, static_cast<std::int32_t>(mm.op_a));
  set_desc(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, static_cast<std::int32_t>(mm.op_b));
  set_desc(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, static_cast<std::uint32_t>(mm.epilogue));
  if (mm.bias) {
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, static_cast<std::int32_t>(CUDA_R_32F));
  }
  if (mm.aux) set_desc(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, mm.aux_ld);
  set_epilogue_pointers(p, mm);

  DESCENT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, mm.a.type,
                                                  static_cast<std::uint64_t>(mm.a.rows),
                                                  static_cast<std::uint64_t>(mm.a.cols), mm.a.ld));
  DESCENT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, mm.b.type,
                                                  static_cast<std::uint64_t>(mm.b.rows),
                                                  static_cast<std::uint64_t>(mm.b.cols), mm.b.ld));
  DESCENT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.d, mm.d_type,
                                                  static_cast<std::uint64_t>(mm.d_rows),
                                                  static_cast<std::uint64_t>(mm.d_cols), mm.d_ld));

  DESCENT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&p.pref));
  set_pref(p.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
           static_cast<std::uint64_t>(s.workspace_bytes));
  set_pref(p.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignment_of(mm.a.data));
  set_pref(p.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment_of(mm.b.data));
  set_pref(p.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignment_of(mm.d));
  set_pref(p.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignment_of(mm.d));

  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(s.lt, p.desc, p.a, p.b, p.d, p.d, p.pref, 1, &result, &found);
  if (st == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS) {
    p.algo = result.algo;
    p.supported = true;
    return;
  }
  // An epilogue cuBLASLt cannot do for these types/alignments is a normal event (the caller
  // falls back); for a plain matmul it is a real failure.
  if (mm.epilogue != CUBLASLT_EPILOGUE_DEFAULT &&
      (st == CUBLAS_STATUS_SUCCESS || st == CUBLAS_STATUS_NOT_SUPPORTED ||
       st == CUBLAS_STATUS_INVALID_VALUE)) {
    p.supported = false;
    return;
  }
  if (st != CUBLAS_STATUS_SUCCESS) {
    throw_cublas_error(st, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
  }
  throw DeviceError("cuBLASLt found no algorithm for a " + std::to_string(mm.d_rows) + "x" +
                    std::to_string(mm.d_cols) +
                    " (k=" + std::to_string(mm.op_a == CUBLAS_OP_N ? mm.a.cols : mm.a.rows) +
                    ") matmul; this is a descent bug, please report it with the shapes");
}

}  // namespace

cublasComputeType_t fp32_compute(const Context& ctx) {
  return detail::impl_of(ctx).math == MathMode::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                     : CUBLAS_COMPUTE_32F;
}

bool lt_matmul(const Context& ctx, const LtMatmul& mm) {
  State& s = state_of(ctx);
  const MatmulKey key = key_of(mm);
  auto it = s.plans.find(key);
  if (it == s.plans.end()) {
    MatmulPlan plan;
    try {
      build_plan(s, plan, mm);
    } catch (...) {
      destroy_plan(plan);
      throw;
    }
    it = s.plans.emplace(key, plan).first;
  }
  MatmulPlan& p = it->second;
  if (!p.supported) return false;

  set_epilogue_pointers(p, mm);
  const float alpha = 1.0f;
  const cublasStatus_t st =
      cublasLtMatmul(s.lt, p.desc, &alpha, mm.a.data, p.a, mm.b.data, p.b, &mm.beta, mm.d, p.d,
                     mm.d, p.d, &p.algo, s.workspace, s.workspace_bytes, stream_of(ctx));
  if (st != CUBLAS_STATUS_SUCCESS && mm.epilogue != CUBLASLT_EPILOGUE_DEFAULT &&
      (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE)) {
    // Rejected before anything was queued; remember it so the fallback is taken directly.
    p.supported = false;
    return false;
  }
  if (st != CUBLAS_STATUS_SUCCESS) throw_cublas_error(st, "cublasLtMatmul", __FILE__, __LINE__);
  return true;
}

}  // namespace descent::cuda

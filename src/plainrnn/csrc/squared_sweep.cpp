// One pass over a weight matrix W (n × m) for Path-SGD on an MLP; see plainrnn/path/kernels.py.
// (This file also holds the extension's bindings, recurrence.cpp's among them: see plainrnn/native.py.)
//
//   optionally  W ← W − lr · G ∘ (row_factor ⊗ col_factor)        (Path-SGD update, eq. 8, κ = rows ⊗ cols)
//   then        row_out = (W∘W) gin,   col_out = (W∘W)ᵀ gout       (Algorithm 1, lines 3 and 5, p = 2)
//
// The 784-4000-4000-10 MLP's 4000×4000 matrix is 64 MB: the update, the squaring and both products are
// bound by memory traffic, so doing them in one read (and one write) of W is what makes the κ pass cheap.
//
// Precision: W and G have type T (float or double). The factors, the vectors gin/gout and every sum have
// type A, which is T or, for a float W, double ("wide"). A Path-SGD factor s/κ of a network that was
// rescaled node-wise spans the square of the rescaling (10^±60 for units scaled by 10^30), outside
// float's range although W, G and the step are in it; the wide variant keeps such factors, the
// product G·(s/κ) and the squares of tiny or huge weights exact, in the same single pass.
//
// Determinism: every sum is accumulated in kLanes fixed lanes, in the order the source gives, and the
// lanes are added in a fixed order at the end. The compiler may vectorize the lane loops but may not
// reorder them (no -ffast-math) or fuse a multiply and an add into one rounding (-ffp-contract=off,
// which g++ otherwise applies in some variants and not in others), so a row's result is the same in
// every variant of the kernel (with or without the update, with or without the other product). This is
// what lets an optimizer use the products its update produced instead of a fresh pass, bit for bit.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <vector>

namespace {

constexpr int kLanes = 16;  // 16 floats fill one 512-bit register
constexpr int kBlock = 4;   // rows per block: the column accumulator and factors are loaded once per 4 rows

template <typename T, typename A>
struct Sweep {
  T* W;
  const T* G;
  const A* row_factor;
  const A* col_factor;
  A lr;
  const A* gin;
  const A* gout;
  A* row_out;
  int64_t m;
};

template <typename T, typename A, int R, bool UPDATE, bool ROWS, bool COLS>
void sweep_block(const Sweep<T, A>& s, int64_t j, A* col_acc) {
  T* w[R];
  const T* g[R];
  A step[R], weight_out[R], acc[R][kLanes];
  for (int r = 0; r < R; ++r) {
    w[r] = s.W + (j + r) * s.m;
    g[r] = UPDATE ? s.G + (j + r) * s.m : nullptr;
    step[r] = UPDATE ? s.lr * s.row_factor[j + r] : A(0);
    weight_out[r] = COLS ? s.gout[j + r] : A(0);
    for (int l = 0; l < kLanes; ++l) acc[r][l] = A(0);
  }
  int64_t k = 0;
  for (; k + kLanes <= s.m; k += kLanes) {
    A col[kLanes];
    for (int l = 0; l < kLanes; ++l) col[l] = A(0);
    for (int r = 0; r < R; ++r) {
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) {
        T v = w[r][k + l];
        if constexpr (UPDATE) {
          // With A = T this is v -= step·g·c; wide, the product is formed in A and rounded once.
          v = static_cast<T>(static_cast<A>(v) - step[r] * static_cast<A>(g[r][k + l]) * s.col_factor[k + l]);
          w[r][k + l] = v;
        }
        const A a = static_cast<A>(v);
        const A sq = a * a;
        if constexpr (ROWS) acc[r][l] += sq * s.gin[k + l];
        if constexpr (COLS) col[l] += sq * weight_out[r];
      }
    }
    if constexpr (COLS) {
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) col_acc[k + l] += col[l];
    }
  }
  for (; k < s.m; ++k) {  // the tail, lane 0, the same order in every variant
    A col = A(0);
    for (int r = 0; r < R; ++r) {
      T v = w[r][k];
      if constexpr (UPDATE) {
        v = static_cast<T>(static_cast<A>(v) - step[r] * static_cast<A>(g[r][k]) * s.col_factor[k]);
        w[r][k] = v;
      }
      const A a = static_cast<A>(v);
      const A sq = a * a;
      if constexpr (ROWS) acc[r][0] += sq * s.gin[k];
      if constexpr (COLS) col += sq * weight_out[r];
    }
    if constexpr (COLS) col_acc[k] += col;
  }
  if constexpr (ROWS) {
    for (int r = 0; r < R; ++r) {
      A total = A(0);
      for (int l = 0; l < kLanes; ++l) total += acc[r][l];
      s.row_out[j + r] = total;
    }
  }
}

template <typename T, typename A, bool UPDATE, bool ROWS, bool COLS>
void sweep(const Sweep<T, A>& s, int64_t n, A* col_out) {
  // One column accumulator per thread; at::parallel_for gives each thread one contiguous range of
  // blocks, so for a given thread count the partial sums, and their sum below, are deterministic.
  const int threads = at::get_num_threads();
  std::vector<A> partial(COLS ? size_t(threads) * s.m : 0, A(0));
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    A* col_acc = COLS ? partial.data() + size_t(at::get_thread_num()) * s.m : nullptr;
    for (int64_t b = begin; b < end; ++b) {
      const int64_t j = b * kBlock;
      if (j + kBlock <= n) {
        sweep_block<T, A, kBlock, UPDATE, ROWS, COLS>(s, j, col_acc);
      } else {
        for (int64_t row = j; row < n; ++row) sweep_block<T, A, 1, UPDATE, ROWS, COLS>(s, row, col_acc);
      }
    }
  });
  if constexpr (COLS) {
    for (int64_t k = 0; k < s.m; ++k) col_out[k] = A(0);
    for (int t = 0; t < threads; ++t) {
      const A* part = partial.data() + size_t(t) * s.m;
      for (int64_t k = 0; k < s.m; ++k) col_out[k] += part[k];
    }
  }
}

template <typename T, typename A, bool UPDATE>
void dispatch_products(const Sweep<T, A>& s, int64_t n, A* col_out, bool rows, bool cols) {
  if (rows && cols) sweep<T, A, UPDATE, true, true>(s, n, col_out);
  else if (rows) sweep<T, A, UPDATE, true, false>(s, n, col_out);
  else if (cols) sweep<T, A, UPDATE, false, true>(s, n, col_out);
  else if (UPDATE) sweep<T, A, UPDATE, false, false>(s, n, col_out);
}

void check_vector(const torch::Tensor& v, at::ScalarType accum, int64_t size, const char* what) {
  TORCH_CHECK(v.dim() == 1 && v.size(0) == size, what, " must be a vector of length ", size);
  TORCH_CHECK(v.is_contiguous() && v.scalar_type() == accum && v.device().is_cpu(),
              what, " must be a contiguous CPU vector of the factors' dtype (", accum, ")");
}

template <typename T, typename A>
void run(torch::Tensor& W, const c10::optional<torch::Tensor>& gin, const c10::optional<torch::Tensor>& gout,
         const c10::optional<torch::Tensor>& G, const c10::optional<torch::Tensor>& row_factor,
         const c10::optional<torch::Tensor>& col_factor, double lr, torch::Tensor& row_out, torch::Tensor& col_out) {
  const bool update = G.has_value();
  Sweep<T, A> s{W.data_ptr<T>(),
                update ? G->data_ptr<T>() : nullptr,
                update ? row_factor->data_ptr<A>() : nullptr,
                update ? col_factor->data_ptr<A>() : nullptr,
                A(lr),
                gin ? gin->data_ptr<A>() : nullptr,
                gout ? gout->data_ptr<A>() : nullptr,
                gin ? row_out.data_ptr<A>() : nullptr,
                W.size(1)};
  A* cols = gout ? col_out.data_ptr<A>() : nullptr;
  const int64_t n = W.size(0);
  if (update) dispatch_products<T, A, true>(s, n, cols, gin.has_value(), gout.has_value());
  else dispatch_products<T, A, false>(s, n, cols, gin.has_value(), gout.has_value());
}

}  // namespace

// Returns [row_out, col_out]; an output is an empty tensor when its vector was not given. The vectors
// and factors share one dtype: W's, or float64 for a float32 W (the wide variant).
std::vector<torch::Tensor> squared_sweep(torch::Tensor W, c10::optional<torch::Tensor> gin,
                                         c10::optional<torch::Tensor> gout, c10::optional<torch::Tensor> G,
                                         c10::optional<torch::Tensor> row_factor,
                                         c10::optional<torch::Tensor> col_factor, double lr) {
  TORCH_CHECK(W.dim() == 2 && W.is_contiguous() && W.device().is_cpu(), "W must be a contiguous CPU matrix");
  TORCH_CHECK(W.scalar_type() == at::kFloat || W.scalar_type() == at::kDouble, "W must be float32 or float64");
  const int64_t n = W.size(0), m = W.size(1);
  const bool update = G.has_value();
  const c10::optional<torch::Tensor>& first = update ? row_factor : (gin ? gin : gout);
  const at::ScalarType accum = first ? first->scalar_type() : W.scalar_type();
  TORCH_CHECK(accum == W.scalar_type() || accum == at::kDouble,
              "the factors and vectors must have W's dtype or float64");
  if (update) {
    TORCH_CHECK(G->sizes() == W.sizes() && G->is_contiguous() && G->scalar_type() == W.scalar_type(),
                "G must be contiguous, with W's shape and dtype");
    TORCH_CHECK(row_factor.has_value() && col_factor.has_value(), "an update needs both factors");
    check_vector(*row_factor, accum, n, "row_factor");
    check_vector(*col_factor, accum, m, "col_factor");
  }
  if (gin) check_vector(*gin, accum, m, "gin");
  if (gout) check_vector(*gout, accum, n, "gout");
  const auto options = W.options().dtype(accum);
  auto row_out = gin ? torch::empty({n}, options) : torch::empty({0}, options);
  auto col_out = gout ? torch::empty({m}, options) : torch::empty({0}, options);
  if (W.scalar_type() == at::kDouble) run<double, double>(W, gin, gout, G, row_factor, col_factor, lr, row_out, col_out);
  else if (accum == at::kDouble) run<float, double>(W, gin, gout, G, row_factor, col_factor, lr, row_out, col_out);
  else run<float, float>(W, gin, gout, G, row_factor, col_factor, lr, row_out, col_out);
  return {row_out, col_out};
}

void register_recurrence(pybind11::module_& m);  // recurrence.cpp

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("squared_sweep", &squared_sweep, "update W and/or compute (W∘W) gin and (W∘W)ᵀ gout in one pass",
        py::arg("W"), py::arg("gin"), py::arg("gout"), py::arg("G"), py::arg("row_factor"),
        py::arg("col_factor"), py::arg("lr"));
  register_recurrence(m);
}

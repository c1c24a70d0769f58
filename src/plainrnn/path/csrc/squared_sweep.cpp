// One pass over a weight matrix W (n × m) for Path-SGD on an MLP; see plainrnn/path/kernels.py.
//
//   optionally  W ← W − lr · G ∘ (row_factor ⊗ col_factor)        (Path-SGD update, eq. 8, κ = rows ⊗ cols)
//   then        row_out = (W∘W) gin,   col_out = (W∘W)ᵀ gout       (Algorithm 1, lines 3 and 5, p = 2)
//
// The 784-4000-4000-10 MLP's 4000×4000 matrix is 64 MB: the update, the squaring and both products are
// bound by memory traffic, so doing them in one read (and one write) of W is what makes the κ pass cheap.
//
// Determinism: every sum is accumulated in kLanes fixed lanes, in the order the source gives, and the
// lanes are added in a fixed order at the end. The compiler may vectorize the lane loops but may not
// reorder them (no -ffast-math), so a row's result is the same in every variant of the kernel (with or
// without the update, with or without the other product). This is what lets an optimizer use the
// products its update produced instead of a fresh pass, bit for bit.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <vector>

namespace {

constexpr int kLanes = 16;  // 16 floats fill one 512-bit register
constexpr int kBlock = 4;   // rows per block: the column accumulator and factors are loaded once per 4 rows

template <typename T>
struct Sweep {
  T* W;
  const T* G;
  const T* row_factor;
  const T* col_factor;
  T lr;
  const T* gin;
  const T* gout;
  T* row_out;
  int64_t m;
};

template <typename T, int R, bool UPDATE, bool ROWS, bool COLS>
void sweep_block(const Sweep<T>& s, int64_t j, T* col_acc) {
  T* w[R];
  const T* g[R];
  T step[R], weight_out[R], acc[R][kLanes];
  for (int r = 0; r < R; ++r) {
    w[r] = s.W + (j + r) * s.m;
    g[r] = UPDATE ? s.G + (j + r) * s.m : nullptr;
    step[r] = UPDATE ? s.lr * s.row_factor[j + r] : T(0);
    weight_out[r] = COLS ? s.gout[j + r] : T(0);
    for (int l = 0; l < kLanes; ++l) acc[r][l] = T(0);
  }
  int64_t k = 0;
  for (; k + kLanes <= s.m; k += kLanes) {
    T col[kLanes];
    for (int l = 0; l < kLanes; ++l) col[l] = T(0);
    for (int r = 0; r < R; ++r) {
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) {
        T v = w[r][k + l];
        if constexpr (UPDATE) {
          v -= step[r] * g[r][k + l] * s.col_factor[k + l];
          w[r][k + l] = v;
        }
        const T sq = v * v;
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
    T col = T(0);
    for (int r = 0; r < R; ++r) {
      T v = w[r][k];
      if constexpr (UPDATE) {
        v -= step[r] * g[r][k] * s.col_factor[k];
        w[r][k] = v;
      }
      const T sq = v * v;
      if constexpr (ROWS) acc[r][0] += sq * s.gin[k];
      if constexpr (COLS) col += sq * weight_out[r];
    }
    if constexpr (COLS) col_acc[k] += col;
  }
  if constexpr (ROWS) {
    for (int r = 0; r < R; ++r) {
      T total = T(0);
      for (int l = 0; l < kLanes; ++l) total += acc[r][l];
      s.row_out[j + r] = total;
    }
  }
}

template <typename T, bool UPDATE, bool ROWS, bool COLS>
void sweep(const Sweep<T>& s, int64_t n, T* col_out) {
  // One column accumulator per thread; at::parallel_for gives each thread one contiguous range of
  // blocks, so for a given thread count the partial sums, and their sum below, are deterministic.
  const int threads = at::get_num_threads();
  std::vector<T> partial(COLS ? size_t(threads) * s.m : 0, T(0));
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    T* col_acc = COLS ? partial.data() + size_t(at::get_thread_num()) * s.m : nullptr;
    for (int64_t b = begin; b < end; ++b) {
      const int64_t j = b * kBlock;
      if (j + kBlock <= n) {
        sweep_block<T, kBlock, UPDATE, ROWS, COLS>(s, j, col_acc);
      } else {
        for (int64_t row = j; row < n; ++row) sweep_block<T, 1, UPDATE, ROWS, COLS>(s, row, col_acc);
      }
    }
  });
  if constexpr (COLS) {
    for (int64_t k = 0; k < s.m; ++k) col_out[k] = T(0);
    for (int t = 0; t < threads; ++t) {
      const T* part = partial.data() + size_t(t) * s.m;
      for (int64_t k = 0; k < s.m; ++k) col_out[k] += part[k];
    }
  }
}

template <typename T, bool UPDATE>
void dispatch_products(const Sweep<T>& s, int64_t n, T* col_out, bool rows, bool cols) {
  if (rows && cols) sweep<T, UPDATE, true, true>(s, n, col_out);
  else if (rows) sweep<T, UPDATE, true, false>(s, n, col_out);
  else if (cols) sweep<T, UPDATE, false, true>(s, n, col_out);
  else if (UPDATE) sweep<T, UPDATE, false, false>(s, n, col_out);
}

void check_vector(const torch::Tensor& v, const torch::Tensor& W, int64_t size, const char* what) {
  TORCH_CHECK(v.dim() == 1 && v.size(0) == size, what, " must be a vector of length ", size);
  TORCH_CHECK(v.is_contiguous() && v.scalar_type() == W.scalar_type() && v.device() == W.device(),
              what, " must be contiguous, on W's device, with W's dtype");
}

}  // namespace

// Returns [row_out, col_out]; an output is an empty tensor when its vector was not given.
std::vector<torch::Tensor> squared_sweep(torch::Tensor W, c10::optional<torch::Tensor> gin,
                                         c10::optional<torch::Tensor> gout, c10::optional<torch::Tensor> G,
                                         c10::optional<torch::Tensor> row_factor,
                                         c10::optional<torch::Tensor> col_factor, double lr) {
  TORCH_CHECK(W.dim() == 2 && W.is_contiguous() && W.device().is_cpu(), "W must be a contiguous CPU matrix");
  TORCH_CHECK(W.scalar_type() == at::kFloat || W.scalar_type() == at::kDouble, "W must be float32 or float64");
  const int64_t n = W.size(0), m = W.size(1);
  const bool update = G.has_value();
  if (update) {
    TORCH_CHECK(G->sizes() == W.sizes() && G->is_contiguous() && G->scalar_type() == W.scalar_type(),
                "G must be contiguous, with W's shape and dtype");
    TORCH_CHECK(row_factor.has_value() && col_factor.has_value(), "an update needs both factors");
    check_vector(*row_factor, W, n, "row_factor");
    check_vector(*col_factor, W, m, "col_factor");
  }
  if (gin) check_vector(*gin, W, m, "gin");
  if (gout) check_vector(*gout, W, n, "gout");
  auto row_out = gin ? torch::empty({n}, W.options()) : torch::empty({0}, W.options());
  auto col_out = gout ? torch::empty({m}, W.options()) : torch::empty({0}, W.options());
  AT_DISPATCH_FLOATING_TYPES(W.scalar_type(), "squared_sweep", [&] {
    Sweep<scalar_t> s{W.data_ptr<scalar_t>(),
                      update ? G->data_ptr<scalar_t>() : nullptr,
                      update ? row_factor->data_ptr<scalar_t>() : nullptr,
                      update ? col_factor->data_ptr<scalar_t>() : nullptr,
                      scalar_t(lr),
                      gin ? gin->data_ptr<scalar_t>() : nullptr,
                      gout ? gout->data_ptr<scalar_t>() : nullptr,
                      gin ? row_out.data_ptr<scalar_t>() : nullptr,
                      m};
    scalar_t* cols = gout ? col_out.data_ptr<scalar_t>() : nullptr;
    if (update) dispatch_products<scalar_t, true>(s, n, cols, gin.has_value(), gout.has_value());
    else dispatch_products<scalar_t, false>(s, n, cols, gin.has_value(), gout.has_value());
  });
  return {row_out, col_out};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("squared_sweep", &squared_sweep, "update W and/or compute (W∘W) gin and (W∘W)ᵀ gout in one pass",
        py::arg("W"), py::arg("gin"), py::arg("gout"), py::arg("G"), py::arg("row_factor"),
        py::arg("col_factor"), py::arg("lr"));
}

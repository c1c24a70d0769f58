// The ReLU/tanh recurrence's two loops for plainrnn/nets/recurrence.py (see its docstring for the math):
//
//   forward_   z_t = d_t + h_{t−1} Wᵀ,  h_t = φ(z_t)                   (states holds d_t, then h_t)
//   backward_  ∂z_t = φ'(z_t) ⊙ (∂h_t + ∂z_{t+1} W)                   (grad holds ∂h_t, then ∂z_t)
//
// The same ATen product per step as the Python loop (an in-place addmm_ on one T-slice), so the numbers
// are the Python route's bit for bit; what this file saves is Python's dispatch of 2T small ops per
// pass. ReLU and its derivative are plain loops over the B×H slice, written to give what torch's relu_
// and threshold_backward give: NaN stays NaN in relu (x < 0 ? 0 : x), and the derivative is 0 where
// h <= 0 and 1 elsewhere, NaN included (h <= 0 ? 0 : ∂h). tanh and its derivative are ATen's own
// calls (whose vector loops may fuse a multiply-add, which a loop of ours would round otherwise).
#include <torch/extension.h>

namespace {

template <typename scalar_t>
void relu_slice(scalar_t* h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] = h[i] < scalar_t(0) ? scalar_t(0) : h[i];
}

template <typename scalar_t>
void relu_derivative_slice(scalar_t* g, const scalar_t* h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) g[i] = h[i] <= scalar_t(0) ? scalar_t(0) : g[i];  // threshold_backward: NaN h keeps g
}

void check(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.dim() == 3, name, " must be a contiguous CPU T×B×H tensor");
  TORCH_CHECK(t.scalar_type() == torch::kFloat || t.scalar_type() == torch::kDouble, name, " must be float32 or float64");
}

void recurrence_forward(torch::Tensor states, const torch::Tensor& weight_t, bool relu) {
  check(states, "states");
  const int64_t T = states.size(0), n = states.size(1) * states.size(2);
  AT_DISPATCH_FLOATING_TYPES(states.scalar_type(), "recurrence_forward", [&] {
    for (int64_t t = 0; t < T; ++t) {
      auto step = states.select(0, t);
      if (t > 0) step.addmm_(states.select(0, t - 1), weight_t);
      if (relu) relu_slice(step.data_ptr<scalar_t>(), n);
      else step.tanh_();  // ATen's own tanh: the same values as the Python route's tanh_
    }
  });
}

void recurrence_backward(torch::Tensor grad, const torch::Tensor& states, const torch::Tensor& weight, bool relu) {
  check(grad, "grad");
  check(states, "states");
  TORCH_CHECK(grad.sizes() == states.sizes() && grad.scalar_type() == states.scalar_type(),
              "grad and states must have one shape and dtype");
  const int64_t T = states.size(0), n = states.size(1) * states.size(2);
  AT_DISPATCH_FLOATING_TYPES(states.scalar_type(), "recurrence_backward", [&] {
    for (int64_t t = T - 1; t >= 0; --t) {
      auto g = grad.select(0, t);
      if (t + 1 < T) g.addmm_(grad.select(0, t + 1), weight);
      auto h = states.select(0, t);
      if (relu) relu_derivative_slice(g.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), n);
      else at::tanh_backward_out(g, g, h);  // ATen's own: its vector loop may fuse 1 − h·h, ours would not
    }
  });
}

}  // namespace

void register_recurrence(pybind11::module_& m) {
  m.def("recurrence_forward_", &recurrence_forward, "in place: the drives d_t become h_t = φ(d_t + h_{t−1} Wᵀ)",
        py::arg("states"), py::arg("weight_t"), py::arg("relu"));
  m.def("recurrence_backward_", &recurrence_backward, "in place: ∂h_t becomes ∂z_t = φ'(z_t) ⊙ (∂h_t + ∂z_{t+1} W)",
        py::arg("grad"), py::arg("states"), py::arg("weight"), py::arg("relu"));
}

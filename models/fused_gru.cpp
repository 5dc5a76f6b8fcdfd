// One GRU layer over a sequence, forward and backward, for models/fused_gru.py: float32 on the CPU.
//
// Each step is one matrix product (ATen's) and one loop over the batch's gate values, vectorised with
// ATen's Vectorized<float> (8 floats with AVX2, 16 with AVX-512, as built). Shapes: T steps, B streams,
// H hidden units, G = 3H gate values in PyTorch's order (r, u, n). All tensors are contiguous; the Python
// side allocates them.

#include <ATen/cpu/vec/vec.h>
#include <algorithm>
#include <torch/extension.h>

using at::Tensor;
using Vec = at::vec::Vectorized<float>;

// gi (T, B, G): W_ih x + b_ih, with b_hh's r and u parts added; w_hh_t (H, G); b_hn (H).
// hs (T+1, B, H) holds h_0 in hs[0] and receives h_1 .. h_T. With Keep, r, u, n and ghn = W_hn h + b_hn
// (T, B, H) receive what the backward pass reads; without, they are not touched. gh (B, G) is scratch.
template <bool Keep>
void steps(const Tensor& gi, const Tensor& w_hh_t, const Tensor& b_hn, Tensor& hs, Tensor& r, Tensor& u,
           Tensor& n, Tensor& ghn, Tensor& gh) {
  at::NoGradGuard no_grad;
  const int64_t T = gi.size(0), B = gi.size(1), H = hs.size(2), G = 3 * H;
  const float* bn = b_hn.data_ptr<float>();
  const Vec zero(0.0f), one(1.0f), two(2.0f);
  for (int64_t t = 0; t < T; ++t) {
    at::mm_out(gh, hs[t], w_hh_t);
    const float* gi_t = gi.data_ptr<float>() + t * B * G;
    const float* gh_p = gh.data_ptr<float>();
    const float* h_p = hs.data_ptr<float>() + t * B * H;
    float* h_next = hs.data_ptr<float>() + (t + 1) * B * H;
    float* r_t = Keep ? r.data_ptr<float>() + t * B * H : nullptr;
    float* u_t = Keep ? u.data_ptr<float>() + t * B * H : nullptr;
    float* n_t = Keep ? n.data_ptr<float>() + t * B * H : nullptr;
    float* ghn_t = Keep ? ghn.data_ptr<float>() + t * B * H : nullptr;
    for (int64_t b = 0; b < B; ++b) {
      const float* gib = gi_t + b * G;
      const float* ghb = gh_p + b * G;
      const int64_t o = b * H;
      int64_t j = 0;
      for (; j + Vec::size() <= H; j += Vec::size()) {
        // sigmoid(a) = 1 / (1 + e^-a), tanh(a) = 1 - 2 / (e^2a + 1): Sleef's exp costs a quarter of its tanh
        const Vec rv = one / (one + (zero - (Vec::loadu(gib + j) + Vec::loadu(ghb + j))).exp());
        const Vec uv = one / (one + (zero - (Vec::loadu(gib + H + j) + Vec::loadu(ghb + H + j))).exp());
        const Vec gn = Vec::loadu(ghb + 2 * H + j) + Vec::loadu(bn + j);
        const Vec nv = one - two / (((Vec::loadu(gib + 2 * H + j) + rv * gn) * two).exp() + one);
        if constexpr (Keep) {
          rv.store(r_t + o + j);
          uv.store(u_t + o + j);
          gn.store(ghn_t + o + j);
          nv.store(n_t + o + j);
        }
        (nv + uv * (Vec::loadu(h_p + o + j) - nv)).store(h_next + o + j);
      }
      for (; j < H; ++j) {
        const float rv = 1.0f / (1.0f + std::exp(-(gib[j] + ghb[j])));
        const float uv = 1.0f / (1.0f + std::exp(-(gib[H + j] + ghb[H + j])));
        const float gn = ghb[2 * H + j] + bn[j];
        const float nv = std::tanh(gib[2 * H + j] + rv * gn);
        if constexpr (Keep) {
          r_t[o + j] = rv;
          u_t[o + j] = uv;
          ghn_t[o + j] = gn;
          n_t[o + j] = nv;
        }
        h_next[o + j] = nv + uv * (h_p[o + j] - nv);
      }
    }
  }
}

// Training's forward pass: the states, and what backward reads.
void forward(const Tensor& gi, const Tensor& w_hh_t, const Tensor& b_hn, Tensor& hs, Tensor& r, Tensor& u,
             Tensor& n, Tensor& ghn, Tensor& gh) {
  steps<true>(gi, w_hh_t, b_hn, hs, r, u, n, ghn, gh);
}

// Evaluation's: the states alone.
void infer(const Tensor& gi, const Tensor& w_hh_t, const Tensor& b_hn, Tensor& hs, Tensor& gh) {
  Tensor none;
  steps<false>(gi, w_hh_t, b_hn, hs, none, none, none, none, gh);
}

// dy (B, T, H): the gradient of each output h_1 .. h_T; dh (B, H): that of h_T as the final state,
// overwritten with the gradient of h_0. w_hh (G, H); hs, r, u, n, ghn as the forward pass left them.
// Receives dgi (T, B, G), the gradient of W_ih x + b_ih, and dgh (T, B, G), of W_hh h + b_hh, and into
// db (G + H, float64) their sums over steps and streams: b_ih's gradient, then that of b_hh's n part (b_hh's
// r and u parts have b_ih's). Each step's sum over its streams is added up in float, the steps' in double.
// carried (B, H) and step_sum (G + H) are scratch.
void backward(const Tensor& dy, Tensor& dh, const Tensor& w_hh, const Tensor& hs, const Tensor& r,
              const Tensor& u, const Tensor& n, const Tensor& ghn, Tensor& dgi, Tensor& dgh, Tensor& carried,
              Tensor& db, Tensor& step_sum) {
  at::NoGradGuard no_grad;
  const int64_t T = n.size(0), B = n.size(1), H = n.size(2), G = 3 * H;
  dh.add_(dy.select(1, T - 1));
  const Vec one(1.0f);
  double* db_p = db.data_ptr<double>();
  float* s_p = step_sum.data_ptr<float>();
  std::fill(db_p, db_p + G + H, 0.0);
  for (int64_t t = T - 1; t >= 0; --t) {
    std::fill(s_p, s_p + G + H, 0.0f);
    const float* dh_p = dh.data_ptr<float>();
    const float* h_p = hs.data_ptr<float>() + t * B * H;  // h_t's input, h_{t-1} in 1-based steps
    const float* r_t = r.data_ptr<float>() + t * B * H;
    const float* u_t = u.data_ptr<float>() + t * B * H;
    const float* n_t = n.data_ptr<float>() + t * B * H;
    const float* ghn_t = ghn.data_ptr<float>() + t * B * H;
    float* dgi_t = dgi.data_ptr<float>() + t * B * G;
    float* dgh_t = dgh.data_ptr<float>() + t * B * G;
    float* c_p = carried.data_ptr<float>();
    for (int64_t b = 0; b < B; ++b) {
      const int64_t o = b * H;
      float* gi_b = dgi_t + b * G;
      float* gh_b = dgh_t + b * G;
      // the output before this step reaches h_{t-1} from outside: none before the first step
      const float* dy_b = t > 0 ? dy.data_ptr<float>() + (b * T + t - 1) * H : nullptr;
      int64_t j = 0;
      for (; j + Vec::size() <= H; j += Vec::size()) {
        const Vec d = Vec::loadu(dh_p + o + j), rv = Vec::loadu(r_t + o + j), uv = Vec::loadu(u_t + o + j);
        const Vec nv = Vec::loadu(n_t + o + j);
        const Vec dan = d * (one - uv) * (one - nv * nv);  // of n's pre-activation
        const Vec dau = d * (Vec::loadu(h_p + o + j) - nv) * uv * (one - uv);
        const Vec dar = dan * Vec::loadu(ghn_t + o + j) * rv * (one - rv);
        const Vec dahn = dan * rv;
        dar.store(gi_b + j);
        dau.store(gi_b + H + j);
        dan.store(gi_b + 2 * H + j);
        dar.store(gh_b + j);
        dau.store(gh_b + H + j);
        dahn.store(gh_b + 2 * H + j);
        (Vec::loadu(s_p + j) + dar).store(s_p + j);
        (Vec::loadu(s_p + H + j) + dau).store(s_p + H + j);
        (Vec::loadu(s_p + 2 * H + j) + dan).store(s_p + 2 * H + j);
        (Vec::loadu(s_p + G + j) + dahn).store(s_p + G + j);
        const Vec direct = d * uv;  // h' = n + u * (h - n) reads h once outside the gates
        (dy_b ? direct + Vec::loadu(dy_b + j) : direct).store(c_p + o + j);
      }
      for (; j < H; ++j) {
        const float d = dh_p[o + j], rv = r_t[o + j], uv = u_t[o + j], nv = n_t[o + j];
        const float dan = d * (1.0f - uv) * (1.0f - nv * nv);
        const float dau = d * (h_p[o + j] - nv) * uv * (1.0f - uv);
        const float dar = dan * ghn_t[o + j] * rv * (1.0f - rv);
        gi_b[j] = dar;
        gi_b[H + j] = dau;
        gi_b[2 * H + j] = dan;
        gh_b[j] = dar;
        gh_b[H + j] = dau;
        gh_b[2 * H + j] = dan * rv;
        s_p[j] += dar;
        s_p[H + j] += dau;
        s_p[2 * H + j] += dan;
        s_p[G + j] += dan * rv;
        c_p[o + j] = d * uv + (dy_b ? dy_b[j] : 0.0f);
      }
    }
    at::addmm_out(dh, carried, dgh[t], w_hh);  // dh_{t-1}: what reached h directly, plus through W_hh h
    for (int64_t k = 0; k < G + H; ++k) db_p[k] += s_p[k];
  }
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward);
  m.def("infer", &infer);
  m.def("backward", &backward);
}

// One decode step of the classic GPT for a single sequence, in plain C++ loops: the whole token in one
// call, no framework in between. Built on first use by minilab/generation/nativedecode.py (PyTorch's own
// JIT extension builder, with this machine's compiler and -march=native), and checked there against
// the model's full forward pass.
//
// Why it exists: at batch 1 a token is a chain of small matrix-vector products, and in Python each
// of the ~60 calls a step needs costs a few microseconds of dispatch, and each product reads its
// weights from memory once. Here a step makes one call, and the weights may be stored in bf16: half
// the bytes to read per token. bf16 is only a storage format here: every weight is widened to fp32
// (a 16-bit shift) just before it is multiplied, so no bf16 arithmetic units are needed, and every
// sum is accumulated in fp32.
//
// The maths is minilab/model/gpt.py's, for the architecture FastDecoder handles
// (FAST_DECODE_SUPPORTS): token embedding x scale + position encoding, then per block
//   x += W_proj attention(LayerNorm1(x)) + b_proj;   x += W_out gelu(W_fc LayerNorm2(x) + b_fc) + b_out
// and logits = W_emb LayerNorm_f(x) (the head tied to the token embedding).

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

inline float widen(float w) { return w; }

inline float widen(at::BFloat16 w) {  // bf16 is the top half of an fp32: shift it back into place
  uint32_t bits = static_cast<uint32_t>(w.x) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// exp and erf in a form the compiler can vectorise (the C library's are one value per call). exp:
// Cephes' expf, e^x = 2^n e^r with |r| <= ln(2)/2 and a degree-6 polynomial for e^r (about 1e-7
// relative error). erf: Abramowitz and Stegun 7.1.26 (at most 1.5e-7 absolute error).
inline float exp(float x) {
  x = std::min(std::max(x, -87.f), 88.f);
  const float n = std::nearbyint(x * 1.44269504088896341f);  // x / ln 2, rounded
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;  // x - n ln 2, ln 2 in two parts for precision
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float erf(float x) {
  const float a = std::fabs(x), t = 1.f / (1.f + 0.3275911f * a);
  const float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  return std::copysign(1.f - poly * exp(-a * a), x);
}

enum class Then { Store, AddTo, Gelu };

// y[o] = W[o, :] . x + b[o] for every output row o, W (n_out, n_in) row-major. Called by every thread
// of the step's OpenMP team: each takes its share of the rows, and all wait for each other at the
// end. Then: store y, add it to what y holds (the residual stream), or store gelu(y).
template <typename W>
void matvec(const W* w, const float* x, const float* b, float* y, int64_t n_out, int64_t n_in, Then then) {
#pragma omp for schedule(static) nowait
  for (int64_t o = 0; o < n_out; ++o) {
    const W* row = w + o * n_in;
    float acc = 0.f;
    for (int64_t i = 0; i < n_in; ++i) acc += widen(row[i]) * x[i];  // vectorised by the compiler
    if (b != nullptr) acc += b[o];
    y[o] = then == Then::AddTo ? y[o] + acc : acc;
  }
  if (then == Then::Gelu) {
    // Exact GELU, as nn.GELU(): x (1 + erf(x / sqrt 2)) / 2, in a loop of its own that the compiler
    // vectorises. A static schedule over the same rows gives each thread the rows it just wrote.
#pragma omp for schedule(static) nowait
    for (int64_t o = 0; o < n_out; ++o) y[o] = 0.5f * y[o] * (1.f + erf(y[o] * 0.70710678118654752f));
  }
#pragma omp barrier
}

void layer_norm(const float* x, const float* gain, const float* bias, float eps, float* y, int64_t n) {
  float mean = 0.f;
  for (int64_t i = 0; i < n; ++i) mean += x[i];
  mean /= n;
  float var = 0.f;
  for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  const float inv = 1.f / std::sqrt(var / n + eps);  // the biased variance, as torch's layer_norm
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * inv * gain[i] + bias[i];
}

const float* f32(const torch::Tensor& t) { return t.data_ptr<float>(); }

struct Layer {
  torch::Tensor ln1_g, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_g, ln2_b, fc_w, fc_b, out_w, out_b;
  float eps1, eps2;
};

class Step {
 public:
  // tensors: per layer [ln1_g, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_g, ln2_b, fc_w, fc_b, out_w, out_b],
  // the weights (out, in) contiguous, all fp32 or all bf16; eps: per layer [eps1, eps2].
  // keys, values: the cache the prefill writes, (n_layers, 1, n_heads, ctx, head_dim) fp32.
  Step(std::vector<torch::Tensor> tensors, std::vector<double> eps, torch::Tensor tok_emb, torch::Tensor pos,
       double emb_scale, torch::Tensor head_w, torch::Tensor lnf_g, torch::Tensor lnf_b, double lnf_eps,
       torch::Tensor keys, torch::Tensor values, int64_t n_heads)
      : tok_emb_(tok_emb), pos_(pos), head_w_(head_w), lnf_g_(lnf_g), lnf_b_(lnf_b), keys_(keys), values_(values),
        emb_scale_(emb_scale), lnf_eps_(lnf_eps), n_heads_(n_heads) {
    TORCH_CHECK(tensors.size() % 12 == 0 && eps.size() * 6 == tensors.size(), "12 tensors and 2 eps per layer");
    for (size_t l = 0; l < tensors.size() / 12; ++l) {
      const torch::Tensor* t = &tensors[12 * l];
      layers_.push_back({t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], t[10], t[11],
                         static_cast<float>(eps[2 * l]), static_cast<float>(eps[2 * l + 1])});
    }
    d_model_ = tok_emb.size(1);
    d_ff_ = layers_[0].fc_w.size(0);
    ctx_ = keys.size(3);
    head_dim_ = d_model_ / n_heads;
    bf16_ = head_w.scalar_type() == at::kBFloat16;
    x_.resize(d_model_);
    h_.resize(d_model_);
    qkv_.resize(3 * d_model_);
    y_.resize(d_model_);
    f_.resize(d_ff_);
    scores_.resize(n_heads * ctx_);
    keys_t_.resize(layers_.size() * n_heads * head_dim_ * ctx_);
  }

  // After a prefill has written positions 0..length-1 of the cache: copy their keys into keys_t_.
  void sync(int64_t length) {
    TORCH_CHECK(0 <= length && length <= ctx_, "length out of range");
    const float* keys = keys_.data_ptr<float>();
    const int64_t hs = head_dim_, rows = static_cast<int64_t>(layers_.size()) * n_heads_;
    for (int64_t r = 0; r < rows; ++r)  // r = (layer, head)
      for (int64_t j = 0; j < length; ++j)
        for (int64_t i = 0; i < hs; ++i) keys_t_[(r * hs + i) * ctx_ + j] = keys[(r * ctx_ + j) * hs + i];
  }

  // Token `token` at position n (0 <= n < ctx): stores its keys and values, returns the next logits (1, V).
  // One OpenMP team (PyTorch's thread count) runs the whole step: the products and the heads are
  // shared out, the small serial parts run on one thread, and the threads meet at a barrier
  // between stages instead of being started and stopped some 20 times per token.
  torch::Tensor operator()(int64_t token, int64_t n) {
    TORCH_CHECK(0 <= n && n < ctx_ && 0 <= token && token < tok_emb_.size(0), "token or position out of range");
    const int64_t C = d_model_;
    const float* emb = f32(tok_emb_) + token * C;
    const float* pos = f32(pos_) + n * C;
    torch::Tensor logits = torch::empty({1, head_w_.size(0)}, tok_emb_.options());
    float* out = logits.data_ptr<float>();
#pragma omp parallel num_threads(at::get_num_threads())
    {
#pragma omp single
      for (int64_t i = 0; i < C; ++i) x_[i] = emb[i] * emb_scale_ + pos[i];
      for (size_t l = 0; l < layers_.size(); ++l) {
        const Layer& L = layers_[l];
#pragma omp single
        layer_norm(x_.data(), f32(L.ln1_g), f32(L.ln1_b), L.eps1, h_.data(), C);
        product(L.qkv_w, h_.data(), f32(L.qkv_b), qkv_.data(), Then::Store);  // [q | k | v]
        attend(l, n);                                                          // -> y_
        product(L.proj_w, y_.data(), f32(L.proj_b), x_.data(), Then::AddTo);
#pragma omp single
        layer_norm(x_.data(), f32(L.ln2_g), f32(L.ln2_b), L.eps2, h_.data(), C);
        product(L.fc_w, h_.data(), f32(L.fc_b), f_.data(), Then::Gelu);
        product(L.out_w, f_.data(), f32(L.out_b), x_.data(), Then::AddTo);
      }
#pragma omp single
      layer_norm(x_.data(), f32(lnf_g_), f32(lnf_b_), lnf_eps_, h_.data(), C);
      product(head_w_, h_.data(), nullptr, out, Then::Store);
    }
    return logits;
  }

 private:
  void product(const torch::Tensor& w, const float* x, const float* b, float* y, Then then) {
    if (bf16_)
      matvec(w.data_ptr<at::BFloat16>(), x, b, y, w.size(0), w.size(1), then);
    else
      matvec(w.data_ptr<float>(), x, b, y, w.size(0), w.size(1), then);
  }

  // Causal attention of the new token over positions 0..n of layer l, the heads shared out: its key and
  // value go into the cache first, then softmax(q . k_j / sqrt(head_dim)) weighs the values. The
  // scores read the keys transposed, keys_t_ (n_heads, hs, ctx) per layer, so that the loop over
  // positions is the inner one and runs in vector lanes, with no sum across lanes per position.
  void attend(size_t l, int64_t n) {
    const int64_t C = d_model_, hs = head_dim_, S = n + 1;
    float* values = values_.data_ptr<float>() + l * n_heads_ * ctx_ * hs;  // (n_heads, ctx, hs) of this layer
    float* keys = keys_.data_ptr<float>() + l * n_heads_ * ctx_ * hs;
    float* keys_t = &keys_t_[l * n_heads_ * hs * ctx_];
    const float scale = 1.f / std::sqrt(static_cast<float>(hs));
#pragma omp for schedule(static)
    for (int64_t h = 0; h < n_heads_; ++h) {
      float* K_t = keys_t + h * hs * ctx_;
      float* V = values + h * ctx_ * hs;
      const float* k = &qkv_[C + h * hs];
      std::memcpy(keys + (h * ctx_ + n) * hs, k, hs * sizeof(float));  // the model's layout, for a re-prefill
      for (int64_t i = 0; i < hs; ++i) K_t[i * ctx_ + n] = k[i];
      std::memcpy(V + n * hs, &qkv_[2 * C + h * hs], hs * sizeof(float));
      const float* q = &qkv_[h * hs];
      float* s = &scores_[h * ctx_];
      for (int64_t j = 0; j < S; ++j) s[j] = 0.f;
      for (int64_t i = 0; i < hs; ++i) {
        const float qi = q[i] * scale;
        const float* row = K_t + i * ctx_;
        for (int64_t j = 0; j < S; ++j) s[j] += qi * row[j];
      }
      float top = s[0];
      for (int64_t j = 1; j < S; ++j) top = std::max(top, s[j]);
      for (int64_t j = 0; j < S; ++j) s[j] = exp(s[j] - top);
      float total = 0.f;
      for (int64_t j = 0; j < S; ++j) total += s[j];
      float* y = &y_[h * hs];
      for (int64_t i = 0; i < hs; ++i) y[i] = 0.f;
      for (int64_t j = 0; j < S; ++j) {
        const float p = s[j] / total;
        for (int64_t i = 0; i < hs; ++i) y[i] += p * V[j * hs + i];
      }
    }
  }

  std::vector<Layer> layers_;
  torch::Tensor tok_emb_, pos_, head_w_, lnf_g_, lnf_b_, keys_, values_;
  float emb_scale_, lnf_eps_;
  int64_t n_heads_, d_model_, d_ff_, ctx_, head_dim_;
  bool bf16_;
  std::vector<float> x_, h_, qkv_, y_, f_, scores_;  // work buffers, reused every step
  std::vector<float> keys_t_;                         // (n_layers, n_heads, hs, ctx): the keys, transposed
};

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  pybind11::class_<Step>(m, "Step")
      .def(pybind11::init<std::vector<torch::Tensor>, std::vector<double>, torch::Tensor, torch::Tensor, double,
                          torch::Tensor, torch::Tensor, torch::Tensor, double, torch::Tensor, torch::Tensor,
                          int64_t>())
      .def("__call__", &Step::operator())
      .def("sync", &Step::sync);
}

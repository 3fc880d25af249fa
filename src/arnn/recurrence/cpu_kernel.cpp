// The antisymmetric recurrence on the CPU: the whole time loop in one call per direction.
//
// Forward, for each batch row independently (rows are split between threads; no thread waits
// for another inside the loop):
//   a_t = A h_{t-1};  c_t = tanh(a_t + xh_t);  [gated: z_t = sigmoid(a_t + xz_t)]
//   h_t = h_{t-1} + eps [z_t *] c_t
// A tile of R rows x 64 columns of a_t is accumulated in registers over k (one A^T row of 64
// columns loaded, each row's h broadcast: 4R fused multiply-adds per 4 loads), then the pointwise
// update is applied to the same registers and stored: one pass over the data per step.
// Backward runs the reverse recursion the same way:
//   g_t = dL/dh_t;  gh = eps g z (1 - c^2);  [gz = eps g c z (1 - z)];  da = gh [+ gz]
//   dL/dh_{t-1} = g_t + A^T da
// storing the pre-activation gradients (or, for few inputs, summing the input weights' and
// biases' gradients from them on the spot); dL/dA = sum_t da_t^T h_{t-1} is one blocked matrix
// product after the loop, summed in double (arnn_matrix_gradient_f32).
//
// float: tanh and sigmoid from one exp (Cephes' polynomial on a range-reduced argument) and a
// division, |tanh| below 0.625 from Cephes' odd polynomial; the error against float64 tanh is
// measured by `scripts/bench.py --tanh-error`. double (gradient checks): the C library's exp
// and tanh, exactly as torch's reference.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <omp.h>

namespace {

constexpr int kLanes = 16;  // floats per 512-bit vector (GCC lowers to what the CPU has)
typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));

inline vf load(const float* p) { vf v; std::memcpy(&v, p, sizeof v); return v; }
inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
inline vf splat(float x) { return vf{} + x; }

inline vf exp_v(vf x) {
  // exp(x) = 2^k exp(r), k = round(x / ln 2), |r| <= ln2 / 2 (Cephes expf). NaN stays NaN.
  x = x > 88.37f ? splat(88.37f) : x;
  x = x < -87.33f ? splat(-87.33f) : x;
  vf k = __builtin_convertvector(__builtin_convertvector(x * 1.44269504088896341f + (
      x >= 0 ? splat(0.5f) : splat(-0.5f)), vi), vf);
  vf r = x - k * 0.693359375f + k * 2.12194440e-4f;
  vf p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  vi bits = (__builtin_convertvector(k, vi) + 127) << 23;
  vf scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline vf sigmoid_v(vf x) { return 1.0f / (1.0f + exp_v(-x)); }

inline vf tanh_v(vf x) {
  vf ax = x < 0 ? -x : x;
  vf z = x * x;  // Cephes tanhf below 0.625: x + x^3 P(x^2)
  vf small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z
               + 1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
  vf big = 1.0f - 2.0f / (exp_v(ax + ax) + 1.0f);  // 1 - 2 / (e^{2|x|} + 1)
  big = x < 0 ? -big : big;
  return ax < 0.625f ? small : big;
}

// A step's input projections (the pre-activations' input part, k n columns per row): read from
// x_proj, computed by torch beforehand, or, for few inputs (m small), computed here from the row's
// inputs, the input weights (transposed, (m, k n)) and the biases, without a buffer of T B k n.
struct Proj {
  const float* xp;    // (B, k n) of this step, or null
  const float* x;     // (B, m) of this step, when xp is null
  const float* wt;
  const float* bias;
  int m, kn;

  inline vf at(size_t row, int col) const {
    if (xp) return load(xp + row * kn + col);
    vf p = load(bias + col);
    for (int i = 0; i < m; ++i) p += splat(x[row * m + i]) * load(wt + (size_t)i * kn + col);
    return p;
  }
  inline float one(size_t row, int col) const {
    if (xp) return xp[row * kn + col];
    float p = bias[col];
    for (int i = 0; i < m; ++i) p += x[row * m + i] * wt[(size_t)i * kn + col];
    return p;
  }
};

// One row tile of the forward step: rows [b, b + R) (of this step's batch), columns [j, j + 16 NV).
template <int R, int NV, bool Gated>
inline void forward_tile(const float* h, size_t b, int j, const float* at, const Proj& proj,
                         int n, float eps, float* hn, float* act) {
  const int kn = proj.kn;
  vf acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = vf{};
  for (int k = 0; k < n; ++k) {
    vf w[NV];
    for (int v = 0; v < NV; ++v) w[v] = load(at + (size_t)k * n + j + v * kLanes);
    for (int r = 0; r < R; ++r) {
      vf s = splat(h[(b + r) * n + k]);
      for (int v = 0; v < NV; ++v) acc[r][v] += s * w[v];
    }
  }
  for (int r = 0; r < R; ++r) {
    size_t row = b + r;
    for (int v = 0; v < NV; ++v) {
      int o = j + v * kLanes;
      vf c = tanh_v(acc[r][v] + proj.at(row, o));
      store(act + row * kn + o, c);
      vf step = c;
      if (Gated) {
        vf z = sigmoid_v(acc[r][v] + proj.at(row, n + o));
        store(act + row * kn + n + o, z);
        step = z * c;
      }
      store(hn + row * n + o, load(h + row * n + o) + eps * step);
    }
  }
}

// The columns a tile of vectors does not cover (n not a multiple of 16): one at a time.
template <bool Gated>
inline void forward_tail(const float* h, size_t b, int rows, int j0, const float* at,
                         const Proj& proj, int n, float eps, float* hn, float* act) {
  const int kn = proj.kn;
  for (size_t row = b; row < b + rows; ++row)
    for (int j = j0; j < n; ++j) {
      float a = 0;
      for (int k = 0; k < n; ++k) a += h[row * n + k] * at[(size_t)k * n + j];
      float c = std::tanh(a + proj.one(row, j));
      act[row * kn + j] = c;
      float step = c;
      if (Gated) {
        float z = 1.0f / (1.0f + std::exp(-(a + proj.one(row, n + j))));
        act[row * kn + n + j] = z;
        step = z * c;
      }
      hn[row * n + j] = h[row * n + j] + eps * step;
    }
}

template <int R, bool Gated>
inline void forward_rows(const float* h, size_t b, const float* at, const Proj& proj, int n,
                         float eps, float* hn, float* act) {
  int j = 0;
  for (; j + 4 * kLanes <= n; j += 4 * kLanes)
    forward_tile<R, 4, Gated>(h, b, j, at, proj, n, eps, hn, act);
  for (; j + 2 * kLanes <= n; j += 2 * kLanes)
    forward_tile<R, 2, Gated>(h, b, j, at, proj, n, eps, hn, act);
  for (; j + kLanes <= n; j += kLanes)
    forward_tile<R, 1, Gated>(h, b, j, at, proj, n, eps, hn, act);
  if (j < n) forward_tail<Gated>(h, b, R, j, at, proj, n, eps, hn, act);
}

constexpr int kRows = 6;  // rows of a tile: 6 x 4 accumulators + 4 loads fit 32 registers

template <bool Gated>
void forward_chunk(int steps, int batch, int n, int b0, int b1, const float* xproj,
                   const float* x, const float* wt, const float* bias, int m, const float* at,
                   float eps, float* states, float* acts) {
  const int kn = Gated ? 2 * n : n;
  for (int t = 0; t < steps; ++t) {
    size_t first = (size_t)t * batch;
    const float* h = states + first * n;
    float* hn = states + (first + batch) * n;
    float* act = acts + first * kn;
    Proj proj{xproj ? xproj + first * kn : nullptr, x ? x + first * m : nullptr, wt, bias, m,
              kn};
    int b = b0;
    for (; b + kRows <= b1; b += kRows)
      forward_rows<kRows, Gated>(h, b, at, proj, n, eps, hn, act);
    for (; b < b1; ++b) forward_rows<1, Gated>(h, b, at, proj, n, eps, hn, act);
  }
}

// dh[r] += da[r] A for a tile of rows: out columns [j, j + 16 NV), A row-major (n x n).
template <int R, int NV>
inline void backward_tile(const float* da, const float* a, int n, float* dh) {
  vf acc[R][NV];  // the product alone, added to dh at the end: dh is large beside each term
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = vf{};
  for (int i = 0; i < n; ++i) {
    vf w[NV];
    for (int v = 0; v < NV; ++v) w[v] = load(a + (size_t)i * n + v * kLanes);
    for (int r = 0; r < R; ++r) {
      vf g = splat(da[(size_t)r * n + i]);
      for (int v = 0; v < NV; ++v) acc[r][v] += g * w[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) {
      float* out = dh + (size_t)r * n + v * kLanes;
      store(out, load(out) + acc[r][v]);
    }
}

template <int R>
inline void backward_rows(const float* da, const float* a, int n, float* dh) {
  int j = 0;
  for (; j + 4 * kLanes <= n; j += 4 * kLanes) backward_tile<R, 4>(da, a + j, n, dh + j);
  for (; j + 2 * kLanes <= n; j += 2 * kLanes) backward_tile<R, 2>(da, a + j, n, dh + j);
  for (; j + kLanes <= n; j += kLanes) backward_tile<R, 1>(da, a + j, n, dh + j);
  for (int r = 0; r < R; ++r)
    for (int c = j; c < n; ++c) {
      float s = 0.0f;
      for (int i = 0; i < n; ++i) s += da[(size_t)r * n + i] * a[(size_t)i * n + c];
      dh[(size_t)r * n + c] += s;
    }
}

// What the backward pass does with the pre-activation gradients besides the recursion: store
// them (`gp`, when the caller needs dL/dx_proj itself), and/or accumulate the input weights' and
// biases' gradients (`dwb`: (m + 1) rows of k n, dW^T then db, this thread's partial sums).
struct Sinks {
  float* gp;          // (T, B, k n) or null
  float* dwb;         // (m + 1, k n) or null: this step's sums (float, over this thread's rows)
  double* total;      // (m + 1, k n): every step's, in double (a sum over T B terms)
  const float* x;     // (T, B, m): the inputs, when dwb is given
  int m;

  void flush(int kn) const {  // one step's float sums into the double totals
    if (!dwb) return;
    for (size_t i = 0; i < (size_t)(m + 1) * kn; ++i) {
      total[i] += dwb[i];
      dwb[i] = 0.0f;
    }
  }
};

inline void sink(const Sinks& s, size_t row, int kn, int col, vf g) {
  if (s.gp) store(s.gp + row * kn + col, g);
  if (s.dwb) {
    const float* x = s.x + row * s.m;
    for (int i = 0; i < s.m; ++i) {
      float* w = s.dwb + (size_t)i * kn + col;
      store(w, load(w) + g * x[i]);
    }
    float* bias = s.dwb + (size_t)s.m * kn + col;
    store(bias, load(bias) + g);
  }
}

inline void sink(const Sinks& s, size_t row, int kn, int col, float g) {
  if (s.gp) s.gp[row * kn + col] = g;
  if (s.dwb) {
    for (int i = 0; i < s.m; ++i) s.dwb[(size_t)i * kn + col] += g * s.x[row * s.m + i];
    s.dwb[(size_t)s.m * kn + col] += g;
  }
}

// The pointwise part of a backward step for a tile of R rows (rows `row`.. of step t): g =
// dL/dh_t (dh, plus the state's own gradient when given), gh = eps g z (1 - c^2) [gz = eps g c
// z (1 - z)] to the sinks, da = gh [+ gz] into `da` for the matrix product that follows.
template <int R, bool Gated>
inline void backward_pointwise(const float* g, const float* act, int n, float eps, float* dh,
                               float* da, const Sinks& sinks, size_t row) {
  const int kn = Gated ? 2 * n : n;
  for (int r = 0; r < R; ++r) {
    const float* ar = act + (size_t)r * kn;
    int j = 0;
    for (; j + kLanes <= n; j += kLanes) {
      size_t i = (size_t)r * n + j;
      vf d = load(dh + i);
      if (g) d += load(g + i);
      store(dh + i, d);
      vf c = load(ar + j), gh;
      if (Gated) {
        vf z = load(ar + n + j);
        gh = eps * d * z * (1.0f - c * c);
        vf gz = eps * d * c * z * (1.0f - z);
        sink(sinks, row + r, kn, n + j, gz);
        store(da + i, gh + gz);
      } else {
        gh = eps * d * (1.0f - c * c);
        store(da + i, gh);
      }
      sink(sinks, row + r, kn, j, gh);
    }
    for (; j < n; ++j) {
      size_t i = (size_t)r * n + j;
      float d = dh[i] + (g ? g[i] : 0.0f), c = ar[j], gh;
      dh[i] = d;
      if (Gated) {
        float z = ar[n + j];
        gh = eps * d * z * (1.0f - c * c);
        float gz = eps * d * c * z * (1.0f - z);
        sink(sinks, row + r, kn, n + j, gz);
        da[i] = gh + gz;
      } else {
        gh = eps * d * (1.0f - c * c);
        da[i] = gh;
      }
      sink(sinks, row + r, kn, j, gh);
    }
  }
}

template <int R, bool Gated>
inline void backward_tile_rows(const float* g, const float* act, const float* a, int n,
                               float eps, float* dh, float* da, const Sinks& sinks, size_t row) {
  backward_pointwise<R, Gated>(g, act, n, eps, dh, da, sinks, row);
  backward_rows<R>(da, a, n, dh);
}

// grad_states may be null: only the last state has a gradient (dh comes in holding it).
template <bool Gated>
void backward_chunk(int steps, int batch, int n, int b0, int b1, const float* grad_states,
                    const float* acts, const float* a, float eps, float* da_all, float* dh_all,
                    const Sinks& sinks) {
  const int kn = Gated ? 2 * n : n;
  for (int t = steps - 1; t >= 0; --t) {
    size_t row = (size_t)t * batch;
    int b = b0;
    for (; b + kRows <= b1; b += kRows)
      backward_tile_rows<kRows, Gated>(
          grad_states ? grad_states + (row + b) * n : nullptr, acts + (row + b) * kn, a, n, eps,
          dh_all + (size_t)b * n, da_all + (row + b) * n, sinks, row + b);
    for (; b < b1; ++b)
      backward_tile_rows<1, Gated>(
          grad_states ? grad_states + (row + b) * n : nullptr, acts + (row + b) * kn, a, n, eps,
          dh_all + (size_t)b * n, da_all + (row + b) * n, sinks, row + b);
    sinks.flush(kn);
  }
}

// dL/dA = sum over the T B rows k of da[k]^T h[k] (h: the states h_0..h_{T-1}): C (n x n) =
// G^T H with G = da, H = states, both (K, n). Tiles of 6 rows of C (i) x 64 columns (j) are
// accumulated in registers over a block of rows k (G[k, i..i+5] broadcast, H[k, j..j+63]
// loaded), from zero, then added to C in double: each element's sum over K = T B terms (100,000
// at T = 784) is exact to float rounding within a block and in double across blocks. Threads
// take whole rows of C, and every element is summed in the same order whatever their count.
constexpr int kBlock = 256;  // rows k per block: H's block (n = 128: 128 kB) stays in L2

template <int R, int NV>
inline void gemm_tile(const float* g, const float* h, int n, int i, int j, size_t k0,
                      size_t k1, double* c) {
  vf acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = vf{};
  for (size_t k = k0; k < k1; ++k) {
    vf w[NV];
    for (int v = 0; v < NV; ++v) w[v] = load(h + k * n + j + v * kLanes);
    for (int r = 0; r < R; ++r) {
      vf s = splat(g[k * n + i + r]);
      for (int v = 0; v < NV; ++v) acc[r][v] += s * w[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) {
      float lanes[kLanes];
      store(lanes, acc[r][v]);
      double* out = c + (size_t)(i + r) * n + j + v * kLanes;
      for (int l = 0; l < kLanes; ++l) out[l] += lanes[l];
    }
}

template <int R>
inline void gemm_rows(const float* g, const float* h, int n, int i, size_t k0, size_t k1,
                      double* c) {
  int j = 0;
  for (; j + 4 * kLanes <= n; j += 4 * kLanes) gemm_tile<R, 4>(g, h, n, i, j, k0, k1, c);
  for (; j + 2 * kLanes <= n; j += 2 * kLanes) gemm_tile<R, 2>(g, h, n, i, j, k0, k1, c);
  for (; j + kLanes <= n; j += kLanes) gemm_tile<R, 1>(g, h, n, i, j, k0, k1, c);
  for (int r = 0; r < R; ++r)
    for (int col = j; col < n; ++col) {
      float s = 0.0f;
      for (size_t k = k0; k < k1; ++k) s += g[k * n + i + r] * h[k * n + col];
      c[(size_t)(i + r) * n + col] += s;
    }
}

void gemm_chunk(const float* g, const float* h, size_t rows, int n, int i0, int i1, double* c) {
  for (size_t k0 = 0; k0 < rows; k0 += kBlock) {
    size_t k1 = std::min(rows, k0 + kBlock);
    int i = i0;
    for (; i + kRows <= i1; i += kRows) gemm_rows<kRows>(g, h, n, i, k0, k1, c);
    for (; i < i1; ++i) gemm_rows<1>(g, h, n, i, k0, k1, c);
  }
}

// double: the same recursion with the C library's functions (the gradient check's path).
template <bool Gated>
void forward_chunk_f64(int steps, int batch, int n, int b0, int b1, const double* xproj,
                       const double* at, double eps, double* states, double* acts) {
  const int k = Gated ? 2 : 1, xs = k * n;
  for (int t = 0; t < steps; ++t)
    for (int b = b0; b < b1; ++b) {
      const double* h = states + ((size_t)t * batch + b) * n;
      double* hn = states + ((size_t)(t + 1) * batch + b) * n;
      const double* xp = xproj + ((size_t)t * batch + b) * xs;
      double* act = acts + ((size_t)t * batch + b) * xs;
      for (int j = 0; j < n; ++j) {
        double a = 0;
        for (int i = 0; i < n; ++i) a += h[i] * at[(size_t)i * n + j];
        double c = std::tanh(a + xp[j]), step = c;
        act[j] = c;
        if (Gated) {
          double z = 1.0 / (1.0 + std::exp(-(a + xp[n + j])));
          act[n + j] = z;
          step = z * c;
        }
        hn[j] = h[j] + eps * step;
      }
    }
}

template <bool Gated>
void backward_chunk_f64(int steps, int batch, int n, int b0, int b1, const double* grad_states,
                        const double* acts, const double* a, double eps, double* grad_pre,
                        double* da_all, double* dh_all) {
  const int k = Gated ? 2 : 1, as = k * n;
  for (int b = b0; b < b1; ++b) {
    double* dh = dh_all + (size_t)b * n;
    for (int t = steps - 1; t >= 0; --t) {
      const double* g = grad_states ? grad_states + ((size_t)t * batch + b) * n : nullptr;
      const double* act = acts + ((size_t)t * batch + b) * as;
      double* gp = grad_pre + ((size_t)t * batch + b) * as;
      double* da = da_all + ((size_t)t * batch + b) * n;
      for (int j = 0; j < n; ++j) {
        double d = dh[j] + (g ? g[j] : 0.0), c = act[j], gh;
        dh[j] = d;
        if (Gated) {
          double z = act[n + j];
          gh = eps * d * z * (1.0 - c * c);
          double gz = eps * d * c * z * (1.0 - z);
          gp[n + j] = gz;
          da[j] = gh + gz;
        } else {
          gh = eps * d * (1.0 - c * c);
          da[j] = gh;
        }
        gp[j] = gh;
      }
      for (int c = 0; c < n; ++c) {
        double s = dh[c];
        for (int i = 0; i < n; ++i) s += da[i] * a[(size_t)i * n + c];
        dh[c] = s;
      }
    }
  }
}

// Rows split between at most `threads` threads (one per tile at most), in whole tiles;
// `work(b0, b1, index)` on each. The threads are OpenMP's: in a process that has loaded torch,
// the runtime torch brought (libgomp.so.1 is found loaded), so that this work runs on torch's
// own threads instead of competing with them for the cores while they spin between operations.
template <typename F>
void in_threads(int batch, int threads, F&& work) {
  const int tiles = (batch + kRows - 1) / kRows;
  threads = std::max(1, std::min(threads, tiles));
#pragma omp parallel num_threads(threads)
  {
    const int count = omp_get_num_threads(), i = omp_get_thread_num();
    int start = (int)((long)tiles * i / count) * kRows;
    int end = i == count - 1 ? batch : (int)((long)tiles * (i + 1) / count) * kRows;
    work(std::min(start, batch), std::min(end, batch), i);
  }
}

}  // namespace

extern "C" {

// states: (T + 1, B, n) with states[0] = h0; acts: (T, B, k n); matrix_t: A^T, (n, n) row-major.
// The inputs: xproj (T, B, k n), or (when null) x (T, B, m), wt: the input weights transposed
// (m, k n), and bias (k n).
void arnn_forward_f32(int steps, int batch, int n, int gated, const float* xproj, const float* x,
                      const float* wt, const float* bias, int m, const float* matrix_t,
                      float eps, float* states, float* acts, int threads) {
  in_threads(batch, threads, [=](int b0, int b1, int) {
    if (gated) forward_chunk<true>(steps, batch, n, b0, b1, xproj, x, wt, bias, m, matrix_t,
                                   eps, states, acts);
    else forward_chunk<false>(steps, batch, n, b0, b1, xproj, x, wt, bias, m, matrix_t, eps,
                              states, acts);
  });
}

// grad_states: (T, B, n), or null when only h_T has a gradient; da: (T, B, n); dh: (B, n):
// dL/dh_T in (zeros when grad_states holds it), dL/dh0 out. grad_pre: (T, B, k n) or null; dwb:
// `threads` blocks of (m + 1, k n) doubles, zeros in, each thread's partial dW^T and db out
// (null: none); x: (T, B, m), read when dwb is given.
void arnn_backward_f32(int steps, int batch, int n, int gated, const float* grad_states,
                       const float* acts, const float* matrix, float eps, float* grad_pre,
                       float* da, float* dh, const float* x, int m, double* dwb, int threads) {
  const int kn = gated ? 2 * n : n;
  in_threads(batch, threads, [=](int b0, int b1, int index) {
    std::vector<float> step_sums(dwb ? (size_t)(m + 1) * kn : 0, 0.0f);
    Sinks sinks{grad_pre, dwb ? step_sums.data() : nullptr,
                dwb ? dwb + (size_t)index * (m + 1) * kn : nullptr, x, m};
    if (gated) backward_chunk<true>(steps, batch, n, b0, b1, grad_states, acts, matrix, eps, da,
                                    dh, sinks);
    else backward_chunk<false>(steps, batch, n, b0, b1, grad_states, acts, matrix, eps, da, dh,
                               sinks);
  });
}

// c: (n, n) doubles, zeros in, da^T states[:-1] out; da, states: (rows, n).
void arnn_matrix_gradient_f32(long rows, int n, const float* da, const float* states, double* c,
                              int threads) {
  in_threads(n, threads, [=](int i0, int i1, int) { gemm_chunk(da, states, rows, n, i0, i1, c); });
}

void arnn_forward_f64(int steps, int batch, int n, int gated, const double* xproj,
                      const double* matrix_t, double eps, double* states, double* acts,
                      int threads) {
  in_threads(batch, threads, [=](int b0, int b1, int) {
    if (gated) forward_chunk_f64<true>(steps, batch, n, b0, b1, xproj, matrix_t, eps, states,
                                       acts);
    else forward_chunk_f64<false>(steps, batch, n, b0, b1, xproj, matrix_t, eps, states, acts);
  });
}

void arnn_backward_f64(int steps, int batch, int n, int gated, const double* grad_states,
                       const double* acts, const double* matrix, double eps, double* grad_pre,
                       double* da, double* dh, int threads) {
  in_threads(batch, threads, [=](int b0, int b1, int) {
    if (gated) backward_chunk_f64<true>(steps, batch, n, b0, b1, grad_states, acts, matrix, eps,
                                        grad_pre, da, dh);
    else backward_chunk_f64<false>(steps, batch, n, b0, b1, grad_states, acts, matrix, eps,
                                   grad_pre, da, dh);
  });
}

// tanh and sigmoid of `count` floats as the forward pass computes them (error measurements).
void arnn_tanh_f32(const float* x, float* out, long count) {
  long i = 0;
  for (; i + kLanes <= count; i += kLanes) store(out + i, tanh_v(load(x + i)));
  for (; i < count; ++i) out[i] = std::tanh(x[i]);
}

void arnn_sigmoid_f32(const float* x, float* out, long count) {
  long i = 0;
  for (; i + kLanes <= count; i += kLanes) store(out + i, sigmoid_v(load(x + i)));
  for (; i < count; ++i) out[i] = 1.0f / (1.0f + std::exp(-x[i]));
}

}  // extern "C"

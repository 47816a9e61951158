// Fused CPU kernels of norse-dh: DH-LIF / LIF time loops with hand-derived backward, the leaky-integrator
// recurrence, and event-driven (sparse-input) masked projections. Plain C ABI (loaded with ctypes), no torch
// headers: it compiles in about a second. Built with -ffp-contract=off so every multiply and add rounds like
// PyTorch's separate element-wise kernels (the forward is then bit-identical to the functional step).
#include <algorithm>
#include <cmath>
#include <cstdint>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <cstring>
#include <vector>

namespace {

enum Reset { SUBTRACT = 0, ZERO = 1, NONE = 2 };

typedef void (*gemm_f32)(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
                         const int*, const float*, const int*, const float*, float*, const int*);
typedef void (*gemm_f64)(const char*, const char*, const int*, const int*, const int*, const double*, const double*,
                         const int*, const double*, const int*, const double*, double*, const int*);

// C (row-major n x m) += B (row-major n x k) @ A^T with A row-major (m x k), through Fortran BLAS (column-major).
inline void gemm_acc(void* fn, const float* A, const float* Bm, float* C, int m, int n, int k) {
  const char ta = 'T', tb = 'N';
  const float one = 1.0f;
  reinterpret_cast<gemm_f32>(fn)(&ta, &tb, &m, &n, &k, &one, A, &k, Bm, &k, &one, C, &m);
}
inline void gemm_acc(void* fn, const double* A, const double* Bm, double* C, int m, int n, int k) {
  const char ta = 'T', tb = 'N';
  const double one = 1.0;
  reinterpret_cast<gemm_f64>(fn)(&ta, &tb, &m, &n, &k, &one, A, &k, Bm, &k, &one, C, &m);
}

// c[k] = sum_d i[k, d] in order d = 0..D-1 (as torch.sum over a last dim of size <= 8). DC > 0 fixes D at compile
// time so the strided loads vectorise; DC == 0 is the generic version.
template <int DC, typename S>
void branch_sum(int64_t BN, int64_t D, const S* __restrict ic, S* __restrict C) {
  const int64_t Dn = DC > 0 ? DC : D;
  for (int64_t k = 0; k < BN; ++k) {
    S c = ic[k * Dn];
    for (int64_t d = 1; d < Dn; ++d) c += ic[k * Dn + d];
    C[k] = c;
  }
}

template <typename S>
__attribute__((always_inline)) inline void branch_sum_any(int64_t BN, int64_t D, const S* ic, S* C) {
  switch (D) {
    case 1: branch_sum<1>(BN, D, ic, C); break;
    case 2: branch_sum<2>(BN, D, ic, C); break;
    case 3: branch_sum<3>(BN, D, ic, C); break;
    case 4: branch_sum<4>(BN, D, ic, C); break;
    case 8: branch_sum<8>(BN, D, ic, C); break;
    default: branch_sum<0>(BN, D, ic, C);
  }
}

// Branch adjoints of one batch row: Gi = Ci + gc[n]; dI = (1 - a) Gi; da += Gi (i[t-1] - I[t]); Ci = a Gi.
template <int DC, typename S>
void branch_bwd(int64_t N, int64_t D, const S* __restrict gc, S* __restrict ci, S* __restrict gI,
                double* __restrict ga, const S* __restrict ip, const S* __restrict It, const S* __restrict a,
                const S* __restrict oma) {
  const int64_t Dn = DC > 0 ? DC : D;
  for (int64_t n = 0; n < N; ++n) {
    const S g = gc[n];
    for (int64_t d = 0; d < Dn; ++d) {
      const int64_t j = n * Dn + d;
      const S Gi = ci[j] + g;
      gI[j] = oma[j] * Gi;
      ga[j] += double(Gi * (ip[j] - It[j]));
      ci[j] = a[j] * Gi;
    }
  }
}

template <typename S>
void branch_bwd_any(int64_t N, int64_t D, const S* gc, S* ci, S* gI, double* ga, const S* ip, const S* It,
                    const S* a, const S* oma) {
  switch (D) {
    case 1: branch_bwd<1>(N, D, gc, ci, gI, ga, ip, It, a, oma); break;
    case 2: branch_bwd<2>(N, D, gc, ci, gI, ga, ip, It, a, oma); break;
    case 3: branch_bwd<3>(N, D, gc, ci, gI, ga, ip, It, a, oma); break;
    case 4: branch_bwd<4>(N, D, gc, ci, gI, ga, ip, It, a, oma); break;
    case 8: branch_bwd<8>(N, D, gc, ci, gI, ga, ip, It, a, oma); break;
    default: branch_bwd<0>(N, D, gc, ci, gI, ga, ip, It, a, oma);
  }
}

// branch_bwd with the difference e = i[t-1] - I[t] precomputed (the fused loop's cache): same arithmetic.
template <int DC, typename S>
void branch_bwd_e_t(int64_t N, int64_t D, const S* __restrict gc, S* __restrict ci, S* __restrict gI,
                    S* __restrict ga, const S* __restrict e, const S* __restrict a, const S* __restrict oma) {
  const int64_t Dn = DC > 0 ? DC : D;
  for (int64_t n = 0; n < N; ++n) {
    const S g = gc[n];
    for (int64_t d = 0; d < Dn; ++d) {
      const int64_t j = n * Dn + d;
      const S Gi = ci[j] + g;
      gI[j] = oma[j] * Gi;
      ga[j] += Gi * e[j];
      ci[j] = a[j] * Gi;
    }
  }
}

template <typename S>
__attribute__((always_inline)) inline void branch_bwd_e(int64_t N, int64_t D, const S* gc, S* ci, S* gI, S* ga, const S* e, const S* a,
                  const S* oma) {
  switch (D) {
    case 1: branch_bwd_e_t<1>(N, D, gc, ci, gI, ga, e, a, oma); break;
    case 2: branch_bwd_e_t<2>(N, D, gc, ci, gI, ga, e, a, oma); break;
    case 3: branch_bwd_e_t<3>(N, D, gc, ci, gI, ga, e, a, oma); break;
    case 4: branch_bwd_e_t<4>(N, D, gc, ci, gI, ga, e, a, oma); break;
    case 8: branch_bwd_e_t<8>(N, D, gc, ci, gI, ga, e, a, oma); break;
    default: branch_bwd_e_t<0>(N, D, gc, ci, gI, ga, e, a, oma);
  }
}

// New membrane potential of one neuron, in the operation order of norse_dh.functional.dhlif.soma_step (shared by
// the plain and the fused forward loops so both stay bit-identical to it).
template <int RESET, typename S>
inline S soma_update(S b, S up, S omb, S c, S th, S zp) {
  if (RESET == SUBTRACT) return (b * up + omb * c) - th * zp;
  if (RESET == ZERO) return b * up * (S(1) - zp) + omb * c;
  return b * up + omb * c;
}

// Soma update of one batch row (forward).
template <int RESET, typename S>
void soma_row(int64_t N, const S* __restrict C, const S* __restrict up, const S* __restrict zp, const S* __restrict b,
              const S* __restrict omb, const S* __restrict th, S* __restrict uc, S* __restrict zc) {
  for (int64_t n = 0; n < N; ++n) {
    const S u = soma_update<RESET>(b[n], up[n], omb[n], C[n], th[n], zp[n]);
    uc[n] = u;
    zc[n] = (u - th[n]) > S(0) ? S(1) : S(0);
  }
}

// Soma adjoints of one batch row: Gz = dL/dz[t] + Cz, Gu = Cu + Gz s'; the adjoints of u[t-1], z[t-1]; gc = (1-b) Gu.
template <int RESET, typename S>
void soma_bwd_row(int64_t N, const S* __restrict C, const S* __restrict up, const S* __restrict zp,
                  const S* __restrict sd, const S* __restrict gz, const S* __restrict b, const S* __restrict omb,
                  const S* __restrict th, S* __restrict cu, S* __restrict cz, S* __restrict gc, double* __restrict gb,
                  double* __restrict gth) {
  for (int64_t n = 0; n < N; ++n) {
    const S Gz = cz[n] + gz[n];
    const S Gu = cu[n] + Gz * sd[n];
    gc[n] = omb[n] * Gu;
    if (RESET == SUBTRACT) {
      gth[n] -= double(Gz * sd[n] + Gu * zp[n]);
      cu[n] = b[n] * Gu;
      cz[n] = -th[n] * Gu;
      gb[n] += double(Gu * (up[n] - C[n]));
    } else if (RESET == ZERO) {
      gth[n] -= double(Gz * sd[n]);
      cu[n] = Gu * b[n] * (S(1) - zp[n]);
      cz[n] = -Gu * b[n] * up[n];
      gb[n] += double(Gu * (up[n] * (S(1) - zp[n]) - C[n]));
    } else {
      gth[n] -= double(Gz * sd[n]);
      cu[n] = b[n] * Gu;
      cz[n] = S(0);
      gb[n] += double(Gu * (up[n] - C[n]));
    }
  }
}

// Forward of the fused loop. Shapes (row-major): I (T,B,N*D) branch input (soma input when has_dend == 0, then
// D == 1); a (N*D); b, vth (N); i0 (B,N*D); u0, z0 (B,N); wrt (N, N*D) transposed recurrent weight or null.
// Itot (T,B,N*D) receives I + z[t-1] @ wrt when recurrent. i_out/u_out hold all steps if store_all, else one
// rolling step (inference). z_out (T,B,N). Per step and batch row: a few vectorised loops over N*D / N values
// with the factors kept in L1; the operation order matches norse_dh.functional.dhlif.dhlif_step, so float
// results are bit-identical to it.
template <typename S>
void dhlif_fwd(int64_t T, int64_t B, int64_t N, int64_t D, int reset, int has_dend, int store_all, const S* I,
               S* Itot, const S* a, const S* b, const S* vth, const S* i0, const S* u0, const S* z0, const S* wrt,
               S* i_out, S* u_out, S* z_out) {
  const int64_t ND = N * D, BN = B * N, BND = B * ND;
  std::vector<S> oma(ND), omb(N), C(N), rec(wrt ? ND : 0);
  for (int64_t j = 0; j < (has_dend ? ND : 0); ++j) oma[j] = S(1) - a[j];
  for (int64_t n = 0; n < N; ++n) omb[n] = S(1) - b[n];
  for (int64_t t = 0; t < T; ++t) {
    const S* zp = t == 0 ? z0 : z_out + (t - 1) * BN;
    const S* up = t == 0 ? u0 : (store_all ? u_out + (t - 1) * BN : u_out);
    const S* ip = t == 0 ? i0 : (store_all ? i_out + (t - 1) * BND : i_out);
    S* ic = store_all ? i_out + t * BND : i_out;
    S* uc = store_all ? u_out + t * BN : u_out;
    S* zc = z_out + t * BN;
    for (int64_t bb = 0; bb < B; ++bb) {
      const S* Ib = I + (t * B + bb) * ND;
      if (wrt) {  // event-driven recurrent product: only neurons that spiked (z != 0) add their weight row
        S* __restrict tb = Itot + (t * B + bb) * ND;
        S* __restrict r = rec.data();
        std::fill(rec.begin(), rec.end(), S(0));
        for (int64_t k = 0; k < N; ++k) {
          const S zk = zp[bb * N + k];
          if (zk == S(0)) continue;
          const S* __restrict w = wrt + k * ND;
          for (int64_t j = 0; j < ND; ++j) r[j] += zk * w[j];
        }
        for (int64_t j = 0; j < ND; ++j) tb[j] = Ib[j] + r[j];
        Ib = tb;
      }
      const S* Cb = Ib;  // soma input: the branch sum, or the input itself without dendrites
      if (has_dend) {
        const S* __restrict ipb = ip + bb * ND;
        const S* __restrict Ibr = Ib;
        S* __restrict icb = ic + bb * ND;
        const S* __restrict ar = a;
        const S* __restrict omar = oma.data();
        for (int64_t j = 0; j < ND; ++j) icb[j] = ar[j] * ipb[j] + omar[j] * Ibr[j];
        branch_sum_any(N, D, icb, C.data());
        Cb = C.data();
      }
      const int64_t o = bb * N;
      if (reset == SUBTRACT)
        soma_row<SUBTRACT>(N, Cb, up + o, zp + o, b, omb.data(), vth, uc + o, zc + o);
      else if (reset == ZERO)
        soma_row<ZERO>(N, Cb, up + o, zp + o, b, omb.data(), vth, uc + o, zc + o);
      else
        soma_row<NONE>(N, Cb, up + o, zp + o, b, omb.data(), vth, uc + o, zc + o);
    }
  }
}

// 64-byte GCC vector types (lowered to whatever the target has): explicit register blocking where the
// auto-vectoriser chose badly. Element-wise IEEE arithmetic, no contraction (-ffp-contract=off).
// (Only used inside inlined helpers, so the ABI note GCC gives for 64-byte vectors without AVX-512 is moot.)
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float vf64b __attribute__((vector_size(64)));
typedef double vd64b __attribute__((vector_size(64)));
template <typename S>
struct Vec;
template <>
struct Vec<float> {
  typedef vf64b type;
};
template <>
struct Vec<double> {
  typedef vd64b type;
};

// Integer vectors of the same lane count (blend masks).
typedef int32_t vi64b __attribute__((vector_size(64)));
typedef int64_t vl64b __attribute__((vector_size(64)));
template <typename S>
struct VMask;
template <>
struct VMask<float> {
  typedef vi64b type;
  typedef int32_t elem;
};
template <>
struct VMask<double> {
  typedef vl64b type;
  typedef int64_t elem;
};

template <typename S>
__attribute__((always_inline)) inline typename Vec<S>::type vload(const S* p) {
  typename Vec<S>::type v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename S>
__attribute__((always_inline)) inline void vstore(S* p, typename Vec<S>::type v) {
  std::memcpy(p, &v, sizeof(v));
}

// A whole 64-byte line stored past the caches (non-temporal) when `stream` (p 64-byte aligned): output written once
// and read back much later, whose read-for-ownership would otherwise double its memory traffic.
template <typename S>
__attribute__((always_inline)) inline void vstore_stream(S* p, typename Vec<S>::type v, bool stream) {
#if defined(__AVX512F__)
  if (stream) {
    if constexpr (sizeof(S) == 4)
      _mm512_stream_ps(reinterpret_cast<float*>(p), __m512(v));
    else
      _mm512_stream_pd(reinterpret_cast<double*>(p), __m512d(v));
    return;
  }
#endif
  (void)stream;
  vstore(p, v);
}

// a * b + c, fused where the target has FMA (the surrogate only: it feeds gradients, which are compared to a
// tolerance; the forward keeps separate roundings for bit-identity)
template <typename S>
inline S fmadd(S a, S b, S c) {
#if defined(__FMA__)
  if constexpr (sizeof(S) == 4)
    return __builtin_fmaf(a, b, c);
  else
    return __builtin_fma(a, b, c);
#else
  return a * b + c;
#endif
}

// exp(x) for x <= 0 as straight-line arithmetic that the compiler vectorises (glibc's exp is a scalar call):
// Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, polynomial (float: minimax degree 6, relative error < 2e-7;
// double: Taylor degree 13, < 1e-16), scale by 2^n through the exponent bits. Results below ~1e-35 (float) / 1e-304
// (double) are returned as exactly 0, so that no denormal ever enters the backward loop.
inline float exp_neg(float x) {
  const bool tiny = x < -80.0f;  // result below ~1e-35: return exactly 0 (denormal products are ~100x slower)
  x = tiny ? -80.0f : x;
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = fmadd(x, 1.44269504088896341f, shifter) - shifter;
  const float r = fmadd(-n, 1.428606765330187045e-06f, fmadd(-n, 0.693145751953125f, x));
  // degree-6 minimax polynomial of exp on |r| <= ln2/2 (Lawson-weighted fit of the relative error, coefficients
  // rounded to float): 1.9e-9 relative before rounding, < 1e-7 evaluated in float (the degree-7 Taylor polynomial
  // it replaced took two more operations for the same float accuracy)
  float p = 0x1.6ab928p-10f;
  p = fmadd(p, r, 0x1.126d64p-7f);
  p = fmadd(p, r, 0x1.55589cp-5f);
  p = fmadd(p, r, 0x1.55540ap-3f);
  p = fmadd(p, r, 0x1.fffffap-2f);
  p = fmadd(p, r, 1.0f);
  p = fmadd(p, r, 1.0f);
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return tiny ? 0.0f : p * scale;
}

inline double exp_neg(double x) {
  const bool tiny = x < -700.0;
  x = tiny ? -700.0 : x;
  const double shifter = 6755399441055744.0;  // 1.5 * 2^52
  const double n = fmadd(x, 1.4426950408889634074, shifter) - shifter;
  const double r = fmadd(-n, 1.90821492927058770002e-10, fmadd(-n, 6.93147180369123816490e-01, x));
  double p = 1.0 / 6227020800.0;
  const double inv[] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
                        1.0 / 5040.0,      1.0 / 720.0,      1.0 / 120.0,     1.0 / 24.0,     1.0 / 6.0,
                        0.5,               1.0,              1.0};
  for (double c : inv) p = fmadd(p, r, c);
  const int64_t bits = (static_cast<int64_t>(n) + 1023) << 52;
  double scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return tiny ? 0.0 : p * scale;
}

// Multi-Gaussian surrogate derivative (norse_dh.functional.surrogate.multi_gaussian_grad) at x = u - theta:
// sd = gamma [(1 + h) G(x; 0, s) - h G(x; s, k s) - h G(x; -s, k s)], the plain Gaussian if h == 0 (the zero-width
// lobes are never evaluated). The same per-element arithmetic serves the flat pass (mg_surrogate) and the fused
// backward loop (which evaluates it row by row from u, so no (T, B, N) surrogate array is written or read).
template <typename S>
struct MG {
  S kc, cc, ks, cs, s, s2, ys;
  bool side;
  MG(double gamma, double sigma, double height, double scale) {
    const double rt = std::sqrt(2.0 * M_PI);
    kc = S(gamma * (1.0 + height) / (rt * sigma));
    cc = S(-1.0 / (2.0 * sigma * sigma));
    const double w = scale * sigma;
    side = height != 0.0;
    ks = side ? S(gamma * height / (rt * w)) : S(0);
    cs = side ? S(-1.0 / (2.0 * w * w)) : S(0);
    s = S(sigma);
    s2 = S(sigma * sigma);
    ys = side ? S(sigma / (w * w)) : S(0);
  }
  // 2 cosh(y) for |y| <= 1 from its even Taylor series (truncation below 3e-9 relative in float, 1e-21 in double)
  static inline S cosh2(S y2) {
    if constexpr (sizeof(S) == 4) {
      return fmadd(y2, fmadd(y2, fmadd(y2, fmadd(y2, fmadd(y2, S(1.0 / 1814400), S(1.0 / 20160)), S(1.0 / 360)), S(1.0 / 12)), S(1)), S(2));
    } else {
      const double c[] = {2.0 / 3628800.0 / 11.0 / 12.0 / 13.0 / 14.0 / 15.0 / 16.0 / 17.0 / 18.0 / 19.0 / 20.0,
                          2.0 / 3628800.0 / 11.0 / 12.0 / 13.0 / 14.0 / 15.0 / 16.0 / 17.0 / 18.0,
                          2.0 / 3628800.0 / 11.0 / 12.0 / 13.0 / 14.0 / 15.0 / 16.0,
                          2.0 / 3628800.0 / 11.0 / 12.0 / 13.0 / 14.0,
                          2.0 / 3628800.0 / 11.0 / 12.0,
                          2.0 / 3628800.0,
                          2.0 / 40320.0,
                          2.0 / 720.0,
                          2.0 / 24.0,
                          1.0,
                          2.0};
      double p = c[0];
      for (int i = 1; i < 11; ++i) p = fmadd(p, y2, c[i]);
      return p;
    }
  }
  // sd[k] = surrogate at x[k], k < n
  void row(int64_t n, const S* __restrict x, S* __restrict sd) const {
    if (!side) {
      for (int64_t k = 0; k < n; ++k) sd[k] = kc * exp_neg(cc * x[k] * x[k]);
      return;
    }
    // The side lobes sum to exp(cs (x^2 + s^2)) * 2 cosh(x s / w^2): two exponentials instead of three. Per block
    // of 512 values, if all |x s / w^2| <= 1 (|x| <= 18 with the default parameters) 2 cosh is a short series;
    // otherwise the block takes the three exponentials.
    typedef typename Vec<S>::type V;
    constexpr int64_t L = sizeof(V) / sizeof(S);
    for (int64_t k0 = 0; k0 < n; k0 += 512) {
      const int64_t k1 = std::min(n, k0 + 512);
      V m = V{};
      int64_t k = k0;
      for (; k + L <= k1; k += L) {
        const V v = vload(x + k);
        const V a = v < S(0) ? -v : v;
        m = a > m ? a : m;
      }
      S mx = S(0);
      for (int64_t l = 0; l < L; ++l) mx = m[l] > mx ? m[l] : mx;
      for (; k < k1; ++k) mx = std::abs(x[k]) > mx ? std::abs(x[k]) : mx;
      if (mx * ys <= S(1)) {
        for (k = k0; k < k1; ++k) {
          const S xk = x[k], y = xk * ys;
          sd[k] = kc * exp_neg(cc * xk * xk) - ks * (exp_neg(cs * (xk * xk + s2)) * cosh2(y * y));
        }
      } else {
        for (k = k0; k < k1; ++k) {
          const S xp = x[k] - s, xm = x[k] + s;
          sd[k] = kc * exp_neg(cc * x[k] * x[k]) - ks * (exp_neg(cs * xp * xp) + exp_neg(cs * xm * xm));
        }
      }
    }
  }
};

template <typename S>
void mg_surrogate(int64_t n, const S* __restrict x, double gamma, double sigma, double height, double scale,
                  S* __restrict sd) {
  MG<S>(gamma, sigma, height, scale).row(n, x, sd);
}

// Backward of dhlif_fwd (reverse-time adjoint recursion; derivation in norse_dh/kernels/loop.py).
// sd (T,B,N) surrogate derivative at u - theta; gz (T,B,N) output-spike gradient (or null); giT/guT/gzT gradients
// of the final state (or null). Outputs: gI (T,B,N*D) (gradient of the total branch input); ga (N*D), gb, gvth (N)
// accumulated in double; gi0 (B,N*D), gu0 (B,N), gz0 (B,N). With sd == null the multi-Gaussian surrogate
// (parameters mg: gamma, sigma, height, scale) is evaluated per row from u[t] - theta inside the loop.
template <typename S>
void dhlif_bwd(int64_t T, int64_t B, int64_t N, int64_t D, int reset, int has_dend, const S* sd, const double* mg,
               const S* I,
               const S* i, const S* u, const S* z, const S* a, const S* b, const S* vth, const S* i0, const S* u0,
               const S* z0, const S* wrt, void* gemm, const S* gz, const S* giT, const S* guT, const S* gzT, S* gI,
               double* ga, double* gb, double* gvth, S* gi0, S* gu0, S* gz0) {
  const int64_t ND = N * D, BN = B * N, BND = B * ND;
  std::vector<S> oma(ND), omb(N), C(N), GC(N), zeros(N, S(0)), X(N), SD(N);
  const MG<S> surr(mg ? mg[0] : 1.0, mg ? mg[1] : 1.0, mg ? mg[2] : 0.0, mg ? mg[3] : 1.0);
  for (int64_t j = 0; j < (has_dend ? ND : 0); ++j) oma[j] = S(1) - a[j];
  for (int64_t n = 0; n < N; ++n) omb[n] = S(1) - b[n];
  // carried adjoints of i[t], u[t], z[t] arriving from step t+1 live in the gi0/gu0/gz0 outputs
  S* ci = gi0;
  S* cu = gu0;
  S* cz = gz0;
  if (has_dend) {
    for (int64_t k = 0; k < BND; ++k) ci[k] = giT ? giT[k] : S(0);
    for (int64_t j = 0; j < ND; ++j) ga[j] = 0.0;
  }
  for (int64_t k = 0; k < BN; ++k) {
    cu[k] = guT ? guT[k] : S(0);
    cz[k] = gzT ? gzT[k] : S(0);
  }
  for (int64_t n = 0; n < N; ++n) gb[n] = gvth[n] = 0.0;
  for (int64_t t = T - 1; t >= 0; --t) {
    for (int64_t bb = 0; bb < B; ++bb) {
      const int64_t row = t * B + bb, o = bb * N;
      const S* It = I + row * ND;
      const S* it = i + row * ND;
      const S* up = (t == 0 ? u0 : u + (t - 1) * BN) + o;
      const S* zp = (t == 0 ? z0 : z + (t - 1) * BN) + o;
      const S* ip = (t == 0 ? i0 : i + (t - 1) * BND) + bb * ND;
      const S* gzt = gz ? gz + row * N : zeros.data();
      const S* Cb = It;
      if (has_dend) {
        branch_sum_any(N, D, it, C.data());
        Cb = C.data();
      }
      S* gc = has_dend ? GC.data() : gI + row * ND;  // without dendrites dI is gc itself
      const S* sdr = sd ? sd + row * N : SD.data();
      if (!sd) {  // the surrogate at u[t] - theta, same arithmetic as mg_surrogate on (u - theta)
        const S* ur = u + row * N;
        for (int64_t n = 0; n < N; ++n) X[n] = ur[n] - vth[n];
        surr.row(N, X.data(), SD.data());
      }
      if (reset == SUBTRACT)
        soma_bwd_row<SUBTRACT>(N, Cb, up, zp, sdr, gzt, b, omb.data(), vth, cu + o, cz + o, gc, gb, gvth);
      else if (reset == ZERO)
        soma_bwd_row<ZERO>(N, Cb, up, zp, sdr, gzt, b, omb.data(), vth, cu + o, cz + o, gc, gb, gvth);
      else
        soma_bwd_row<NONE>(N, Cb, up, zp, sdr, gzt, b, omb.data(), vth, cu + o, cz + o, gc, gb, gvth);
      if (has_dend) branch_bwd_any(N, D, gc, ci + bb * ND, gI + row * ND, ga, ip, It, a, oma.data());
    }
    if (wrt) {  // adjoint of z[t-1] through the recurrent product: cz (B,N) += gI[t] (B,ND) @ wrt^T
      const S* gIt = gI + t * BND;
      if (gemm) {
        gemm_acc(gemm, wrt, gIt, cz, int(N), int(B), int(ND));
      } else {
        for (int64_t bb = 0; bb < B; ++bb)
          for (int64_t k = 0; k < N; ++k) {
            S acc = 0;
            for (int64_t j = 0; j < ND; ++j) acc += gIt[bb * ND + j] * wrt[k * ND + j];
            cz[bb * N + k] += acc;
          }
      }
    }
  }
}

// Leaky integrator m[t] = b m[t-1] + (1 - b) I[t] over (T, B, K), b of shape (K).
template <typename S>
void leaky_fwd(int64_t T, int64_t B, int64_t K, const S* I, const S* b, const S* m0, S* m) {
  std::vector<S> omb(K);
  for (int64_t k = 0; k < K; ++k) omb[k] = S(1) - b[k];
  for (int64_t t = 0; t < T; ++t)
    for (int64_t bb = 0; bb < B; ++bb) {
      const S* mp = t == 0 ? m0 + bb * K : m + ((t - 1) * B + bb) * K;
      const S* It = I + (t * B + bb) * K;
      S* mc = m + (t * B + bb) * K;
      for (int64_t k = 0; k < K; ++k) mc[k] = b[k] * mp[k] + omb[k] * It[k];
    }
}

template <typename S>
void leaky_bwd(int64_t T, int64_t B, int64_t K, const S* I, const S* b, const S* m0, const S* m, const S* gm,
               const S* gmT, S* gI, double* gb, S* gm0) {
  for (int64_t k = 0; k < B * K; ++k) gm0[k] = gmT ? gmT[k] : S(0);
  for (int64_t k = 0; k < K; ++k) gb[k] = 0.0;
  for (int64_t t = T - 1; t >= 0; --t)
    for (int64_t bb = 0; bb < B; ++bb) {
      const int64_t row = t * B + bb;
      const S* mp = t == 0 ? m0 + bb * K : m + (row - B) * K;
      const S* It = I + row * K;
      const S* gmt = gm ? gm + row * K : nullptr;
      S* c = gm0 + bb * K;
      S* g = gI + row * K;
      for (int64_t k = 0; k < K; ++k) {
        const double G = double(c[k]) + (gmt ? double(gmt[k]) : 0.0);
        g[k] = S((1.0 - double(b[k])) * G);
        gb[k] += G * (double(mp[k]) - double(It[k]));
        c[k] = S(double(b[k]) * G);
      }
    }
}

// Events of a dense (R, M) input: CSR row pointers (R+1), column indices and values of its non-zeros. Stops as
// soon as the events exceed the capacity (returns cap + 1): the caller then uses a dense path. cols/vals must have
// room for cap + 16 entries (the AVX-512 path stores whole vectors). rows (or null) receives each event's CSR row.
// G > 0: the CSR rows in the order the narrow kernels consume them ("blocked", see narrow_fwd): the R = T * B rows
// (t, b) by chunks of K steps, within a chunk by groups of G batch rows, within a group by step, then by row, so
// that each group walks its chunk's events in memory order; CSR row t0 * B + b0 * Kc + (t - t0) * nb + g is input
// row t * B + b0 + g (chunk [t0, t0 + Kc), group of nb = min(G, B - b0) rows from b0), and each event's cols entry
// is m * G + g, its input and its row in the group, which is all the kernels need to place it (no rows array: 4
// fewer bytes per event to write and read back twice than a separate row index; see event_input / event_row).
template <typename S>
int64_t events(int64_t R, int64_t M, const S* x, int64_t* rowptr, int32_t* cols, S* vals, int32_t* rows,
               int64_t cap, int64_t B, int64_t K, int64_t G, int32_t* ones) {
  int64_t k = 0, j = 0;  // events so far, CSR rows so far
  rowptr[0] = 0;
  // ones (or null): set to 1 if every event's value is 1 (0/1 spikes), and then vals is left unwritten: the values
  // are stored only from the first other value on (the events before it filled in as 1)
  bool all_ones = ones != nullptr;
  auto other_value = [&]() {
    std::fill(vals, vals + k, S(1));
    all_ones = false;
  };
  // input row r as the next CSR row, column m stored as m * mul + add; `ahead`: an input row read soon after
  // (prefetched). False past the capacity.
  auto scan_row = [&](int64_t r, const S* ahead, int32_t mul, int32_t add) -> bool {
    const int64_t kr = k;
#if defined(__AVX512F__)
    if constexpr (sizeof(S) == 4) {
      const __m512 zero = _mm512_setzero_ps();
      const __m512i iota = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                              _mm512_set1_epi32(mul));
      const float* xr = reinterpret_cast<const float*>(x + r * M);
      for (int64_t m = 0; m < M; m += 16) {
        const __mmask16 live = M - m >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (M - m)) - 1u);
        // plain loads (a row's tail block reads into the next row, masked off in the compare): masked loads of
        // blocks that straddle cache lines took most of the scan's time; only the last row's tail is masked
        const __m512 v = r + 1 < R || live == 0xFFFF ? _mm512_loadu_ps(xr + m) : _mm512_maskz_loadu_ps(live, xr + m);
        __builtin_prefetch(ahead + m, 0, 3);  // (past the end of x: a prefetch never faults)
        const __mmask16 nz = _mm512_mask_cmp_ps_mask(live, v, zero, _CMP_NEQ_UQ);
        if (all_ones && _mm512_mask_cmp_ps_mask(nz, v, _mm512_set1_ps(1.0f), _CMP_EQ_OQ) != nz) other_value();
        // compress in registers, store whole vectors (the slack past k is overwritten by the next store); no
        // branch on nz: at spike densities a block is empty often enough for the branch to mispredict
        if (!all_ones) _mm512_storeu_ps(reinterpret_cast<float*>(vals + k), _mm512_maskz_compress_ps(nz, v));
        const __m512i idx = _mm512_add_epi32(iota, _mm512_set1_epi32(int32_t(m) * mul + add));
        _mm512_storeu_si512(cols + k, _mm512_maskz_compress_epi32(nz, idx));
        k += __builtin_popcount(nz);
        if (k > cap) return false;
      }
      // the row's indices once per 16 of its events (not once per block of 16 inputs)
      if (rows)
        for (int64_t e = kr; e < k; e += 16) _mm512_storeu_si512(rows + e, _mm512_set1_epi32(int32_t(j)));
      rowptr[++j] = k;
      return true;
    }
#endif
    (void)ahead;
    const S* xr = x + r * M;
    for (int64_t m = 0; m < M; ++m) {
      if (xr[m] != S(0)) {
        if (k >= cap) return false;
        cols[k] = int32_t(m) * mul + add;
        if (rows) rows[k] = int32_t(j);
        if (all_ones && xr[m] != S(1)) other_value();
        if (!all_ones) vals[k] = xr[m];
        ++k;
      }
    }
    rowptr[++j] = k;
    return true;
  };
  if (G <= 0) {
    for (int64_t r = 0; r < R; ++r)
      if (!scan_row(r, x + r * M + 512, 1, 0)) return cap + 1;  // 2 kB ahead in the row stream
    if (ones) *ones = all_ones;
    return k;
  }
  // Read in blocked order, each group's rows come from memory with a stride of B rows per step, which the hardware
  // prefetcher does not follow; so each chunk's input rows (one contiguous region) are prefetched into L2 while the
  // chunk before is scanned, a slice per group (measured from memory at the delayed-XOR shape: 0.75-0.8 -> 0.67-0.73
  // ms; the input-row order takes 0.5-0.55 ms, but then the kernels' strided walk over the events costs more)
  const int64_t T = R / B, groups = (B + G - 1) / G;
  const char* xb = reinterpret_cast<const char*>(x);
  const int64_t row_bytes = M * int64_t(sizeof(S));
  for (int64_t o = 0; o < std::min(K, T) * B * row_bytes; o += 64) __builtin_prefetch(xb + o, 0, 2);
  for (int64_t t0 = 0; t0 < T; t0 += K) {
    const int64_t t1 = std::min(T, t0 + K);
    const char* next = xb + t1 * B * row_bytes;
    const int64_t next_bytes = (std::min(T, t1 + K) - t1) * B * row_bytes;
    const int64_t slice = (next_bytes / 64 + groups - 1) / groups * 64;
    for (int64_t b0 = 0; b0 < B; b0 += G) {
      const int64_t o0 = b0 / G * slice;
      for (int64_t o = o0; o < std::min(next_bytes, o0 + slice); o += 64) __builtin_prefetch(next + o, 0, 2);
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t g = b0; g < std::min(B, b0 + G); ++g)  // and the same rows 2 steps on
          if (!scan_row(t * B + g, x + ((t + 2) * B + g) * M, int32_t(G), int32_t(g - b0))) return cap + 1;
    }
  }
  if (ones) *ones = all_ones;
  return k;
}

// Row-wise event projection: out (R, P) = bias + sum over events (r, m, v) of v * wt[m, :] with wt (M, P) the
// transposed masked weight. Contiguous rows vectorise fully, which beat per-synapse scatter (fewer multiply-adds
// but scalar) by 3-4x on the development machine.
template <typename S>
void ev_rows_fwd(int64_t R, int64_t P, const int64_t* rowptr, const int32_t* cols, const S* vals, const S* wt,
                 const S* bias, S* out) {
  for (int64_t r = 0; r < R; ++r) {
    S* __restrict o = out + r * P;
    if (bias)
      std::memcpy(o, bias, sizeof(S) * P);
    else
      std::memset(o, 0, sizeof(S) * P);
    for (int64_t k = rowptr[r]; k < rowptr[r + 1]; ++k) {
      const S v = vals[k];
      const S* __restrict w = wt + int64_t(cols[k]) * P;
      for (int64_t j = 0; j < P; ++j) o[j] += v * w[j];
    }
  }
}

// Its weight gradient: gwt (M, P) = sum over events (r, m, v) of v * g[r, :] in row m; gbias (P, or null) = sum_r g[r].
template <typename S>
void ev_rows_wgrad(int64_t R, int64_t M, int64_t P, const int64_t* rowptr, const int32_t* cols, const S* vals,
                   const S* g, S* gwt, double* gbias) {
  std::memset(gwt, 0, sizeof(S) * M * P);
  if (gbias) std::fill(gbias, gbias + P, 0.0);
  for (int64_t r = 0; r < R; ++r) {
    const S* __restrict gr = g + r * P;
    if (gbias) {  // the bias gradient in the same pass over g (sum of rows, in double)
      double* __restrict gbr = gbias;
      for (int64_t j = 0; j < P; ++j) gbr[j] += double(gr[j]);
    }
    for (int64_t k = rowptr[r]; k < rowptr[r + 1]; ++k) {
      const S v = vals[k];
      S* __restrict w = gwt + int64_t(cols[k]) * P;
      for (int64_t j = 0; j < P; ++j) w[j] += v * gr[j];
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Fused DH-SFNN sequence (event projection + dendrites + soma + surrogate). The input projection I[t] of each tile
// of rows is built from the input's events (CSR) inside the loop, so the (T, B, N*D) projection output is never
// written to memory. For the backward the forward either stores what the adjoint reads (e = i[t-1] - I[t], the
// surrogate, u[t-1] - c[t]: "store", the default), or keeps only a checkpoint of the state (i, u) every K steps and
// the backward re-runs the forward of one chunk (bit-identical arithmetic) into a cache-resident buffer before the
// adjoint of that chunk ("recompute", less memory). The adjoint adds each row's weight gradient from its events, so
// neither the branch currents nor the (T, B, N*D) input gradient reach memory.
// ---------------------------------------------------------------------------------------------------------------

// o[0..P) += v * w[0..P), in vector blocks (the same per-element arithmetic as a scalar loop).
template <typename S>
inline void axpy_row(int64_t P, S v, const S* __restrict w, S* __restrict o) {
  constexpr int64_t L = sizeof(typename Vec<S>::type) / sizeof(S);
  int64_t j = 0;
  for (; j + L <= P; j += L) vstore(o + j, vload(o + j) + v * vload(w + j));
  for (; j < P; ++j) o[j] += v * w[j];
}

// Projection of the nb consecutive rows r0.. of one tile step: out (nb*P) = bias + events. Each row's outputs are
// accumulated in registers, blocks of up to 4 vectors, over the row's events and stored once (adding into the
// output row in memory made every event's load wait for the previous event's store). Per output the sum order is
// that of ev_rows_fwd (bias, then the row's events in CSR order), so the sums are bit-identical to the unfused
// event projection.
template <int NV, typename S>
__attribute__((always_inline)) inline void event_row_block(int64_t P, int64_t k0, int64_t k1,
                                                           const int32_t* __restrict cols, const S* __restrict vals,
                                                           const S* __restrict wt, const S* __restrict bias,
                                                           S* __restrict o) {
  typedef typename Vec<S>::type V;
  constexpr int64_t L = sizeof(V) / sizeof(S);
  V acc[NV];
  for (int v = 0; v < NV; ++v) acc[v] = bias ? vload(bias + v * L) : V{};
  for (int64_t k = k0; k < k1; ++k) {
    const S x = vals[k];
    const S* __restrict w = wt + int64_t(cols[k]) * P;
    for (int v = 0; v < NV; ++v) acc[v] += x * vload(w + v * L);
  }
  for (int v = 0; v < NV; ++v) vstore(o + v * L, acc[v]);
}

// The same for rows with few events (mean < FLAT_EVENTS): the loop over a row's events above ends at a
// data-dependent count, a branch misprediction per row that cost more than the row's 2-4 events. Here one flat
// loop over the tile step's events keeps the running sums in registers without branches: at an event that starts
// a row the sums restart from the bias (a blend), and after each event the row's partial sums are stored (stores
// to the same row in a row need no load, so there is no store-to-load chain). Rows without events keep the bias
// written first. Same per-output sum order (bias, then the events in CSR order): bit-identical.
template <int NV, typename S>
__attribute__((always_inline)) inline void event_flat_block(int64_t P, int64_t r0, int64_t nb, int64_t k0, int64_t k1,
                                                            const int32_t* __restrict rows,
                                                            const int32_t* __restrict cols, const S* __restrict vals,
                                                            const S* __restrict wt, const S* __restrict bias,
                                                            S* __restrict out) {
  typedef typename Vec<S>::type V;
  typedef typename VMask<S>::type VM;
  constexpr int64_t L = sizeof(V) / sizeof(S);
  V bv[NV], acc[NV];
  for (int v = 0; v < NV; ++v) acc[v] = bv[v] = bias ? vload(bias + v * L) : V{};
  for (int64_t r = 0; r < nb; ++r)
    for (int v = 0; v < NV; ++v) vstore(out + r * P + v * L, bv[v]);
  int32_t prev = -1;
  for (int64_t k = k0; k < k1; ++k) {
    const int32_t r = rows[k];
    const VM keep = VM{} + typename VMask<S>::elem(r == prev ? -1 : 0);  // all ones: the row goes on
    prev = r;
    const S x = vals[k];
    const S* __restrict w = wt + int64_t(cols[k]) * P;
    S* __restrict o = out + int64_t(r - r0) * P;
    for (int v = 0; v < NV; ++v) {
      acc[v] = (keep ? acc[v] : bv[v]) + x * vload(w + v * L);
      vstore(o + v * L, acc[v]);
    }
  }
}

// Rows of the tile step with at least this many events on average take the per-row loop (event_row_block).
constexpr int64_t FLAT_EVENTS = 8;

template <typename S>
inline void event_tile(int64_t P, int64_t r0, int64_t nb, const int64_t* rowptr, const int32_t* __restrict rows,
                       const int32_t* __restrict cols, const S* __restrict vals, const S* __restrict wt,
                       const S* __restrict bias, S* __restrict out) {
  constexpr int64_t L = sizeof(typename Vec<S>::type) / sizeof(S);
  const int64_t nv = P / L, tail = nv * L;
  const int64_t k0 = rowptr[r0], k1 = rowptr[r0 + nb];
  if (k1 - k0 < FLAT_EVENTS * nb) {
    int64_t v = 0;
    for (; v + 4 <= nv; v += 4)
      event_flat_block<4>(P, r0, nb, k0, k1, rows, cols, vals, wt + v * L, bias ? bias + v * L : nullptr, out + v * L);
#define NORSE_DH_FB(NVC) \
  event_flat_block<NVC>(P, r0, nb, k0, k1, rows, cols, vals, wt + v * L, bias ? bias + v * L : nullptr, out + v * L)
    switch (nv - v) {
      case 3: NORSE_DH_FB(3); break;
      case 2: NORSE_DH_FB(2); break;
      case 1: NORSE_DH_FB(1); break;
      default: break;
    }
#undef NORSE_DH_FB
  } else {
    for (int64_t r = 0; r < nb; ++r) {
      const int64_t a = rowptr[r0 + r], b = rowptr[r0 + r + 1];
      S* __restrict o = out + r * P;
      int64_t v = 0;
      for (; v + 4 <= nv; v += 4)
        event_row_block<4>(P, a, b, cols, vals, wt + v * L, bias ? bias + v * L : nullptr, o + v * L);
#define NORSE_DH_RB(NVC) event_row_block<NVC>(P, a, b, cols, vals, wt + v * L, bias ? bias + v * L : nullptr, o + v * L)
      switch (nv - v) {
        case 3: NORSE_DH_RB(3); break;
        case 2: NORSE_DH_RB(2); break;
        case 1: NORSE_DH_RB(1); break;
        default: break;
      }
#undef NORSE_DH_RB
    }
  }
  if (tail < P) {  // the last P % L outputs (P not a multiple of the vector length), per row
    for (int64_t r = 0; r < nb; ++r) {
      S* __restrict o = out + r * P;
      for (int64_t j = tail; j < P; ++j) o[j] = bias ? bias[j] : S(0);
      for (int64_t k = rowptr[r0 + r]; k < rowptr[r0 + r + 1]; ++k) {
        const S x = vals[k];
        const S* __restrict w = wt + int64_t(cols[k]) * P;
        for (int64_t j = tail; j < P; ++j) o[j] += x * w[j];
      }
    }
  }
}

// Weight gradient of the same rows: gwt[m, :] += v * g[row, :] per event.
template <typename S>
inline void event_tile_wgrad(int64_t P, int64_t r0, int64_t nb, const int64_t* rowptr,
                             const int32_t* __restrict rows, const int32_t* __restrict cols,
                             const S* __restrict vals, const S* __restrict g, S* __restrict gwt) {
  typedef typename Vec<S>::type V;
  constexpr int64_t L = sizeof(V) / sizeof(S);
  const int64_t k0 = rowptr[r0], k1 = rowptr[r0 + nb];
  // P of 1-4 whole vectors: straight-line vector code per event (the generic loop's set-up and tail test per event
  // cost more than its 2 vector updates at the delayed-XOR shape). Same per-element arithmetic and order.
#define NORSE_DH_WG(NVC)                                                                  \
  for (int64_t k = k0; k < k1; ++k) {                                                     \
    const S x = vals[k];                                                                  \
    const S* __restrict gr = g + (rows[k] - r0) * P;                                      \
    S* __restrict o = gwt + int64_t(cols[k]) * P;                                         \
    for (int v = 0; v < NVC; ++v) vstore(o + v * L, vload(o + v * L) + x * vload(gr + v * L)); \
  }                                                                                       \
  return;
  switch (P % L == 0 ? P / L : 0) {
    case 1: NORSE_DH_WG(1)
    case 2: NORSE_DH_WG(2)
    case 3: NORSE_DH_WG(3)
    case 4: NORSE_DH_WG(4)
    default: break;
  }
#undef NORSE_DH_WG
  for (int64_t k = k0; k < k1; ++k) axpy_row(P, vals[k], g + (rows[k] - r0) * P, gwt + int64_t(cols[k]) * P);
}

// Per-step phases over a whole tile of nb batch rows: flat loops over nb*N*D / nb*N values with the per-neuron
// factors replicated over the tile's rows (aR, omaR: nb*N*D; bR, ombR, thR: nb*N), so each phase is one long
// vectorised loop (per-row loops of N = 16 values spent most of their time in loop set-up and alias checks).

// Forward of one step of the tile: I (nb*ND) this step's projection; ib / ub the tile's state (updated in place);
// zp, zc (nb*N) z[t-1], z[t]. With e != null also writes the adjoint's cache: e = i[t-1] - I[t], sd the surrogate
// at u[t] - theta, q the factor of the soma-decay gradient, up = u[t-1] ("zero" reset only).
template <int RESET, typename S>
void tile_fwd(int64_t nb, int64_t N, int64_t D, const S* __restrict I, const S* __restrict aR,
              const S* __restrict omaR, const S* __restrict bR, const S* __restrict ombR, const S* __restrict thR,
              S* __restrict ib, S* __restrict ub, const S* __restrict zp, S* __restrict zc, S* __restrict C,
              const MG<S>* surr, S* __restrict e, S* __restrict sd, S* __restrict q, S* __restrict upo) {
  const int64_t L = nb * N * D, Ln = nb * N;
  // one loop per phase that each value passes through once (e and the branch update; q, u[t-1], soma, spike and
  // u - theta), so each is loaded once per step
  if (e) {
    for (int64_t j = 0; j < L; ++j) {
      const S i = ib[j], x = I[j];
      e[j] = i - x;
      ib[j] = aR[j] * i + omaR[j] * x;
    }
  } else {
    for (int64_t j = 0; j < L; ++j) ib[j] = aR[j] * ib[j] + omaR[j] * I[j];
  }
  branch_sum_any(Ln, D, ib, C);
  if (q) {
    for (int64_t k = 0; k < Ln; ++k) {
      const S up = ub[k], c = C[k], th = thR[k];
      q[k] = (RESET == ZERO ? up * (S(1) - zp[k]) : up) - c;
      if (RESET == ZERO) upo[k] = up;
      const S u = soma_update<RESET>(bR[k], up, ombR[k], c, th, zp[k]);
      ub[k] = u;
      zc[k] = (u - th) > S(0) ? S(1) : S(0);
      C[k] = u - th;  // C is free again: x = u - theta for the surrogate
    }
  } else {
    for (int64_t k = 0; k < Ln; ++k) {
      const S u = soma_update<RESET>(bR[k], ub[k], ombR[k], C[k], thR[k], zp[k]);
      ub[k] = u;
      zc[k] = (u - thR[k]) > S(0) ? S(1) : S(0);
    }
    if (sd)
      for (int64_t k = 0; k < Ln; ++k) C[k] = ub[k] - thR[k];
  }
  if (sd) surr->row(Ln, C, sd);
}

// Adjoint of one step of the tile (reverse order of tile_fwd); accumulates the parameter gradients into the float
// partial sums accV, accB (nb*N: -dtheta, db), accA (nb*ND: da), accBias (nb*ND or null) and writes g = dI (nb*ND);
// gc (nb*ND) is scratch.
template <int RESET, int DC, typename S>
void tile_bwd(int64_t nb, int64_t N, int64_t D, const S* __restrict sd, const S* __restrict q,
              const S* __restrict up, const S* __restrict zp, const S* __restrict gz, const S* __restrict bR,
              const S* __restrict ombR, const S* __restrict thR, S* __restrict cu, S* __restrict cz,
              S* __restrict gc, S* __restrict accV, S* __restrict accB, const S* __restrict e,
              const S* __restrict aR, const S* __restrict omaR, S* __restrict ci, S* __restrict g,
              S* __restrict accA, S* __restrict accBias) {
  const int64_t Ln = nb * N, Dn = DC > 0 ? DC : D;
  for (int64_t k = 0; k < Ln; ++k) {
    const S Gz = cz[k] + gz[k];
    const S Gu = cu[k] + Gz * sd[k];
    const S gck = ombR[k] * Gu;
    for (int64_t d = 0; d < Dn; ++d) gc[k * Dn + d] = gck;  // repeated per branch: the branch loop below is flat
    if (RESET == SUBTRACT) {
      accV[k] += Gz * sd[k] + Gu * zp[k];
      cu[k] = bR[k] * Gu;
      cz[k] = -thR[k] * Gu;
    } else if (RESET == ZERO) {
      accV[k] += Gz * sd[k];
      cu[k] = Gu * bR[k] * (S(1) - zp[k]);
      cz[k] = -Gu * bR[k] * up[k];
    } else {
      accV[k] += Gz * sd[k];
      cu[k] = bR[k] * Gu;
      cz[k] = S(0);
    }
    accB[k] += Gu * q[k];
  }
  // flat over the tile's branches (no de-interleaving shuffles), with the bias gradient in the same pass
  if (accBias) {
    for (int64_t j = 0; j < Ln * Dn; ++j) {
      const S Gi = ci[j] + gc[j], gj = omaR[j] * Gi;
      g[j] = gj;
      accBias[j] += gj;
      accA[j] += Gi * e[j];
      ci[j] = aR[j] * Gi;
    }
  } else {
    for (int64_t j = 0; j < Ln * Dn; ++j) {
      const S Gi = ci[j] + gc[j];
      g[j] = omaR[j] * Gi;
      accA[j] += Gi * e[j];
      ci[j] = aR[j] * Gi;
    }
  }
}

template <int RESET, typename S>
void tile_bwd_any(int64_t D, int64_t nb, int64_t N, const S* sd, const S* q, const S* up, const S* zp, const S* gz,
                  const S* bR, const S* ombR, const S* thR, S* cu, S* cz, S* gc, S* accV, S* accB, const S* e,
                  const S* aR, const S* omaR, S* ci, S* g, S* accA, S* accBias) {
#define NORSE_DH_TB(DC) \
  tile_bwd<RESET, DC, S>(nb, N, D, sd, q, up, zp, gz, bR, ombR, thR, cu, cz, gc, accV, accB, e, aR, omaR, ci, g, accA, accBias)
  switch (D) {
    case 1: NORSE_DH_TB(1); break;
    case 2: NORSE_DH_TB(2); break;
    case 3: NORSE_DH_TB(3); break;
    case 4: NORSE_DH_TB(4); break;
    case 8: NORSE_DH_TB(8); break;
    default: NORSE_DH_TB(0);
  }
#undef NORSE_DH_TB
}

// Software prefetch of [p, p + bytes) into L2.
inline void prefetch_l2(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, 0, 2);
}

// Per-neuron factors replicated over Bc rows (see tile_fwd).
template <typename S>
struct Replicated {
  std::vector<S> a, oma, b, omb, th;
  Replicated(int64_t Bc, int64_t N, int64_t D, const S* a_, const S* b_, const S* th_)
      : a(Bc * N * D), oma(Bc * N * D), b(Bc * N), omb(Bc * N), th(Bc * N) {
    const int64_t ND = N * D;
    for (int64_t r = 0; r < Bc; ++r) {
      for (int64_t j = 0; j < ND; ++j) {
        a[r * ND + j] = a_[j];
        oma[r * ND + j] = S(1) - a_[j];
      }
      for (int64_t n = 0; n < N; ++n) {
        b[r * N + n] = b_[n];
        omb[r * N + n] = S(1) - b_[n];
        th[r * N + n] = th_[n];
      }
    }
  }
};

// Per step, tiles of Bc batch rows in turn (the rows are independent), so one tile step's arrays stay in L1 and the
// big (T, B, ...) arrays are walked in memory order (a tile running all its steps first jumped B*N values per step,
// measured 10 % slower at SHD); checkpoints are taken every K steps. The backward runs the chunks of K steps in
// reverse, and within a chunk the tiles in turn, each re-running its forward into an L2-sized buffer.
template <int RESET, typename S>
void dhsfnn_fwd_t(int64_t T, int64_t B, int64_t N, int64_t D, int64_t K, int64_t Bc, const int64_t* rowptr,
                  const int32_t* rows, const int32_t* cols, const S* vals, const S* wt, const S* bias, const S* a, const S* b,
                  const S* vth, const double* mg, const S* i0, const S* u0, const S* z0, S* i_ck, S* u_ck,
                  S* e_all, S* sd_all, S* q_all, S* up_all, S* i_T, S* u_T, S* z) {
  const int64_t ND = N * D, BN = B * N, BND = B * ND;
  const Replicated<S> rep(Bc, N, D, a, b, vth);
  const MG<S> surr(mg ? mg[0] : 1.0, mg ? mg[1] : 1.0, mg ? mg[2] : 0.0, mg ? mg[3] : 1.0);
  std::vector<S> I(Bc * ND), C(Bc * N);
  std::memcpy(i_T, i0, sizeof(S) * BND);
  std::memcpy(u_T, u0, sizeof(S) * BN);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t b0 = 0; b0 < B; b0 += Bc) {
      const int64_t nb = std::min(B, b0 + Bc) - b0;
      if (i_ck && t % K == 0) {  // checkpoint of the tile's state entering chunk t / K
        std::memcpy(i_ck + (t / K) * BND + b0 * ND, i_T + b0 * ND, sizeof(S) * nb * ND);
        std::memcpy(u_ck + (t / K) * BN + b0 * N, u_T + b0 * N, sizeof(S) * nb * N);
      }
      event_tile(ND, t * B + b0, nb, rowptr, rows, cols, vals, wt, bias, I.data());
      const S* zp = (t == 0 ? z0 : z + (t - 1) * BN) + b0 * N;
      const int64_t o = t * B + b0;  // first row of the tile at step t
      tile_fwd<RESET, S>(nb, N, D, I.data(), rep.a.data(), rep.oma.data(), rep.b.data(), rep.omb.data(),
                         rep.th.data(), i_T + b0 * ND, u_T + b0 * N, zp, z + t * BN + b0 * N, C.data(), &surr,
                         e_all ? e_all + o * ND : nullptr, e_all ? sd_all + o * N : nullptr,
                         e_all ? q_all + o * N : nullptr, up_all ? up_all + o * N : nullptr);
    }
  }
}

template <int RESET, typename S>
void dhsfnn_bwd_t(int64_t T, int64_t B, int64_t M, int64_t N, int64_t D, int64_t K, int64_t Bc,
                  const int64_t* rowptr, const int32_t* rows, const int32_t* cols, const S* vals, const S* wt, const S* bias, const S* a,
                  const S* b, const S* vth, const double* mg, const S* z0, const S* i_ck, const S* u_ck,
                  const S* e_all, const S* sd_all, const S* q_all, const S* up_all, const S* z, const S* gz, const S* giT, const S* guT, const S* gzT, S* gI_all, S* gwt,
                  double* gbias, double* ga, double* gb, double* gvth, S* gi0, S* gu0, S* gz0) {
  const int64_t ND = N * D, BN = B * N, BND = B * ND;
  const MG<S> surr(mg[0], mg[1], mg[2], mg[3]);
  const Replicated<S> rep(Bc, N, D, a, b, vth);
  const int64_t R = K * Bc;  // rows of one (tile, chunk)
  std::vector<S> I(Bc * ND), C(Bc * N), gI(Bc * ND), gc(Bc * ND), scratch(Bc * N), zeros(Bc * N, S(0));
  const bool stored = e_all != nullptr;  // the forward kept the adjoint's cache: no recompute
  std::vector<S> ib(stored ? 0 : Bc * ND), ub(stored ? 0 : Bc * N), E(stored ? 0 : R * ND), SD(stored ? 0 : R * N),
      Q(stored ? 0 : R * N), UP(RESET == ZERO && !stored ? R * N : 0);
  // float partial sums per tile row, added to the double accumulators after each (tile, chunk)
  std::vector<S> accA(Bc * ND), accBias(gbias ? Bc * ND : 0), accB(Bc * N), accV(Bc * N);
  S* ci = gi0;
  S* cu = gu0;
  S* cz = gz0;
  for (int64_t k = 0; k < BND; ++k) ci[k] = giT ? giT[k] : S(0);
  for (int64_t k = 0; k < BN; ++k) {
    cu[k] = guT ? guT[k] : S(0);
    cz[k] = gzT ? gzT[k] : S(0);
  }
  for (int64_t j = 0; j < ND; ++j) ga[j] = 0.0;
  for (int64_t n = 0; n < N; ++n) gb[n] = gvth[n] = 0.0;
  if (gwt) std::memset(gwt, 0, sizeof(S) * M * ND);
  if (gbias) std::fill(gbias, gbias + ND, 0.0);
  const int64_t chunks = (T + K - 1) / K;
  for (int64_t c = chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * K, t1 = std::min(T, t0 + K);
    for (int64_t b0 = 0; b0 < B; b0 += Bc) {
      const int64_t nb = std::min(B, b0 + Bc) - b0;
      {  // prefetch (to L2) what the next (chunk, tile) reads from the big arrays: the jumps between their pieces
         // defeat the hardware prefetcher (measured: loads of z and dL/dz stalled the loop)
        int64_t cn = c, bn = b0 + Bc;
        if (bn >= B) bn = 0, --cn;
        if (cn >= 0) {
          const int64_t u0n = cn * K, u1n = std::min(T, u0n + K), nbn = std::min(B, bn + Bc) - bn;
          for (int64_t t = u0n; t < u1n; ++t) {
            if (t > 0) prefetch_l2(z + (t - 1) * BN + bn * N, nbn * N * sizeof(S));
            if (gz) prefetch_l2(gz + t * BN + bn * N, nbn * N * sizeof(S));
            if (stored) {
              prefetch_l2(e_all + (t * B + bn) * ND, nbn * ND * sizeof(S));
              prefetch_l2(sd_all + (t * B + bn) * N, nbn * N * sizeof(S));
              prefetch_l2(q_all + (t * B + bn) * N, nbn * N * sizeof(S));
            }
            const int64_t k0 = rowptr[t * B + bn], k1 = rowptr[t * B + bn + nbn];
            prefetch_l2(cols + k0, (k1 - k0) * sizeof(int32_t));
            prefetch_l2(rows + k0, (k1 - k0) * sizeof(int32_t));
            prefetch_l2(vals + k0, (k1 - k0) * sizeof(S));
          }
        }
      }
      if (!stored) {
        std::memcpy(ib.data(), i_ck + c * BND + b0 * ND, sizeof(S) * nb * ND);
        std::memcpy(ub.data(), u_ck + c * BN + b0 * N, sizeof(S) * nb * N);
      }
      for (int64_t t = t0; t < (stored ? t0 : t1); ++t) {  // recompute the chunk's forward (same arithmetic as dhsfnn_fwd)
        const int64_t l = (t - t0) * nb;
        event_tile(ND, t * B + b0, nb, rowptr, rows, cols, vals, wt, bias, I.data());
        const S* zp = (t == 0 ? z0 : z + (t - 1) * BN) + b0 * N;
        tile_fwd<RESET, S>(nb, N, D, I.data(), rep.a.data(), rep.oma.data(), rep.b.data(), rep.omb.data(),
                           rep.th.data(), ib.data(), ub.data(), zp, scratch.data() /* z[t] is known */, C.data(),
                           &surr, E.data() + l * ND, SD.data() + l * N, Q.data() + l * N,
                           RESET == ZERO ? UP.data() + l * N : nullptr);
      }
      std::fill(accA.begin(), accA.end(), S(0));
      std::fill(accBias.begin(), accBias.end(), S(0));
      std::fill(accB.begin(), accB.end(), S(0));
      std::fill(accV.begin(), accV.end(), S(0));
      for (int64_t t = t1 - 1; t >= t0; --t) {  // adjoint recursion over the chunk
        const int64_t l = (t - t0) * nb, o = t * B + b0;
        const S* zp = (t == 0 ? z0 : z + (t - 1) * BN) + b0 * N;
        S* g = gI_all ? gI_all + (t * B + b0) * ND : gI.data();
        const S* e = stored ? e_all + o * ND : E.data() + l * ND;
        tile_bwd_any<RESET, S>(D, nb, N, stored ? sd_all + o * N : SD.data() + l * N,
                               stored ? q_all + o * N : Q.data() + l * N,
                               RESET == ZERO ? (stored ? up_all + o * N : UP.data() + l * N) : nullptr, zp,
                               gz ? gz + t * BN + b0 * N : zeros.data(), rep.b.data(), rep.omb.data(), rep.th.data(),
                               cu + b0 * N, cz + b0 * N, gc.data(), accV.data(), accB.data(), e,
                               rep.a.data(), rep.oma.data(), ci + b0 * ND, g, accA.data(),
                               gbias ? accBias.data() : nullptr);
        if (gwt) event_tile_wgrad(ND, t * B + b0, nb, rowptr, rows, cols, vals, g, gwt);
      }
      for (int64_t r = 0; r < nb; ++r) {
        for (int64_t j = 0; j < ND; ++j) {
          ga[j] += double(accA[r * ND + j]);
          if (gbias) gbias[j] += double(accBias[r * ND + j]);
        }
        for (int64_t n = 0; n < N; ++n) {
          gb[n] += double(accB[r * N + n]);
          gvth[n] -= double(accV[r * N + n]);
        }
      }
    }
  }
}

#define NORSE_DH_FWD_ARGS                                                                                        \
  T, B, N, D, K, Bc, rowptr, rows, cols, vals, wt, bias, a, b, vth, mg, i0, u0, z0, i_ck, u_ck, e_all, sd_all, q_all, up_all, \
      i_T, u_T, z
#define NORSE_DH_BWD_ARGS                                                                                          \
  T, B, M, N, D, K, Bc, rowptr, rows, cols, vals, wt, bias, a, b, vth, mg, z0, i_ck, u_ck, e_all, sd_all, q_all, up_all, z, \
      gz, giT, guT, gzT, gI_all, gwt, gbias, ga, gb, gvth, gi0, gu0, gz0
#define NORSE_DH_FWD_PARAMS(S)                                                                                    \
  int64_t T, int64_t B, int64_t N, int64_t D, int64_t K, int64_t Bc, const int64_t *rowptr, const int32_t *rows,     \
      const int32_t *cols, const S *vals, const S *wt, const S *bias, const S *a, const S *b, const S *vth, const double *mg, const S *i0, \
      const S *u0, const S *z0, S *i_ck, S *u_ck, S *e_all, S *sd_all, S *q_all, S *up_all, S *i_T, S *u_T, S *z
#define NORSE_DH_BWD_PARAMS(S)                                                                                    \
  int64_t T, int64_t B, int64_t M, int64_t N, int64_t D, int64_t K, int64_t Bc, const int64_t *rowptr,             \
      const int32_t *rows, const int32_t *cols, const S *vals, const S *wt, const S *bias, const S *a, const S *b, const S *vth,          \
      const double *mg, const S *z0, const S *i_ck, const S *u_ck, const S *e_all, const S *sd_all, const S *q_all,  \
      const S *up_all, const S *z, const S *gz, const S *giT, const S *guT, const S *gzT, S *gI_all, S *gwt,        \
      double *gbias, double *ga, double *gb, double *gvth, S *gi0, S *gu0, S *gz0

template <typename S>
void dhsfnn_fwd(int reset, NORSE_DH_FWD_PARAMS(S)) {
  if (reset == SUBTRACT)
    dhsfnn_fwd_t<SUBTRACT, S>(NORSE_DH_FWD_ARGS);
  else if (reset == ZERO)
    dhsfnn_fwd_t<ZERO, S>(NORSE_DH_FWD_ARGS);
  else
    dhsfnn_fwd_t<NONE, S>(NORSE_DH_FWD_ARGS);
}

template <typename S>
void dhsfnn_bwd(int reset, NORSE_DH_BWD_PARAMS(S)) {
  if (reset == SUBTRACT)
    dhsfnn_bwd_t<SUBTRACT, S>(NORSE_DH_BWD_ARGS);
  else if (reset == ZERO)
    dhsfnn_bwd_t<ZERO, S>(NORSE_DH_BWD_ARGS);
  else
    dhsfnn_bwd_t<NONE, S>(NORSE_DH_BWD_ARGS);
}

// ---------------------------------------------------------------------------------------------------------------
// Narrow fused DH-SFNN (N a multiple of the vector length L, at most 4 vectors of branch values per row: the
// delayed-XOR / DEAP widths). The tile loops above keep the state of Bc rows in L1 arrays and make several passes
// over them per step; at these widths their loads, stores and loop set-up cost more than the arithmetic. Here the
// state of G batch rows (branch currents, membrane, last spikes) and the per-neuron factors stay in registers
// through a chunk of K steps, and a row's branch values are laid out branch-major ([d][n]: D blocks of N), so the
// branch sum and the broadcast of a neuron's adjoint to its branches are plain vector operations. With one branch pattern shared
// by all neurons whose branch index bof[m] never decreases with the input index m (the "contiguous" mask), an input
// event feeds only its own branch: N multiply-adds instead of N * D ("compact"; the skipped products are the mask's
// exact zeros, so the sums are unchanged). Training keeps a state checkpoint every K steps; the backward re-runs
// each chunk's forward (same arithmetic) into L1 buffers, then runs the adjoint with the carried adjoints and the
// parameter-gradient partial sums in registers. Same operation order as the tile kernels: the forward is
// bit-identical to them and to the step-by-step cell.
// ---------------------------------------------------------------------------------------------------------------

// Batch rows per group (registers: the group's state and partial sums).
constexpr int narrow_group(int64_t nv, int64_t D) { return nv * D <= 2 ? 4 : 2; }

template <int NV, int DC, typename S>
struct Narrow {
  typedef typename Vec<S>::type V;
  typedef typename VMask<S>::type VM;
  static constexpr int L = sizeof(V) / sizeof(S);
  static constexpr int N = NV * L;                // neurons
  static constexpr int P = DC * N;                // branch values of a row
  static constexpr int G = narrow_group(NV, DC);
};

// (rows, N, D) interleaved (the module's layout) <-> (rows, D, N) branch-major (the narrow kernels' layout).
template <typename S, typename R>
void to_branch_major(int64_t rows, int64_t N, int64_t D, const S* src, R* dst) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t d = 0; d < D; ++d) dst[(r * D + d) * N + n] = R(src[(r * N + n) * D + d]);
}
template <typename S, typename R>
void from_branch_major(int64_t rows, int64_t N, int64_t D, const S* src, R* dst) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t d = 0; d < D; ++d) dst[(r * N + n) * D + d] = R(src[(r * D + d) * N + n]);
}

// Branch-major copies of the parameters and the weight: wn (M, W) with W = N (compact: the entry of input m's
// branch for each neuron) or W = P (all branches, branch-major); bias, a, 1 - a (P) branch-major.
template <typename S>
struct NarrowTables {
  std::vector<S> wn, bias, a, oma;
  int64_t W;
  NarrowTables(int64_t M, int64_t N, int64_t D, const int32_t* bof, const S* wt, const S* bias_, const S* a_)
      : wn(), bias(N * D), a(N * D), oma(N * D), W(bof ? N : N * D) {
    wn.resize(M * W);
    if (bof) {
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) wn[m * N + n] = wt[m * N * D + n * D + bof[m]];
    } else {
      to_branch_major(M, N, D, wt, wn.data());
    }
    if (bias_) to_branch_major(1, N, D, bias_, bias.data());
    to_branch_major(1, N, D, a_, a.data());
    for (int64_t j = 0; j < N * D; ++j) oma[j] = S(1) - a[j];
  }
};

// The per-neuron factors of a narrow kernel in registers: a, 1 - a (branch-major), b, 1 - b, theta.
template <int NV, int DC, typename S>
struct NarrowFactors {
  typedef typename Vec<S>::type V;
  static constexpr int L = Narrow<NV, DC, S>::L, N = Narrow<NV, DC, S>::N;
  V a[DC][NV], oma[DC][NV], b[NV], omb[NV], th[NV];
  NarrowFactors(const NarrowTables<S>& tab, const S* b_, const S* vth) {
    for (int d = 0; d < DC; ++d)
      for (int v = 0; v < NV; ++v) {
        a[d][v] = vload(tab.a.data() + d * N + v * L);
        oma[d][v] = vload(tab.oma.data() + d * N + v * L);
      }
    for (int v = 0; v < NV; ++v) {
      b[v] = vload(b_ + v * L);
      omb[v] = S(1) - b[v];
      th[v] = vload(vth + v * L);
    }
  }
};

// The registers of a row group (rows b0.., nb of them real, zeros past nb) from a branch-major (B, P) array and two
// (B, N) arrays, and back.
template <int NV, int DC, typename S, typename V, int G>
__attribute__((always_inline)) inline void narrow_load_group(int64_t b0, int64_t nb, const S* ip, const S* up,
                                                             const S* zp, V (&i)[G][DC][NV], V (&u)[G][NV],
                                                             V (&z)[G][NV]) {
  constexpr int L = Narrow<NV, DC, S>::L, N = Narrow<NV, DC, S>::N, P = Narrow<NV, DC, S>::P;
#pragma GCC unroll 16
  for (int g = 0; g < G; ++g) {
    const bool live = g < nb;
    for (int d = 0; d < DC; ++d)
      for (int v = 0; v < NV; ++v) i[g][d][v] = live ? vload(ip + (b0 + g) * P + d * N + v * L) : V{};
    for (int v = 0; v < NV; ++v) {
      u[g][v] = live ? vload(up + (b0 + g) * N + v * L) : V{};
      z[g][v] = live ? vload(zp + (b0 + g) * N + v * L) : V{};
    }
  }
}
template <int NV, int DC, typename S, typename V, int G>
__attribute__((always_inline)) inline void narrow_store_group(int64_t b0, int64_t nb, S* ip, S* up, S* zp,
                                                              const V (&i)[G][DC][NV], const V (&u)[G][NV],
                                                              const V (&z)[G][NV]) {
  constexpr int L = Narrow<NV, DC, S>::L, N = Narrow<NV, DC, S>::N, P = Narrow<NV, DC, S>::P;
#pragma GCC unroll 16
  for (int g = 0; g < G; ++g) {
    if (g >= nb) break;
    for (int d = 0; d < DC; ++d)
      for (int v = 0; v < NV; ++v) vstore(ip + (b0 + g) * P + d * N + v * L, i[g][d][v]);
    for (int v = 0; v < NV; ++v) {
      vstore(up + (b0 + g) * N + v * L, u[g][v]);
      if (zp) vstore(zp + (b0 + g) * N + v * L, z[g][v]);
    }
  }
}

// An event's contribution v * w: w itself for 0/1 spike input (vals null: every value 1, the same float result)
template <typename S, typename V>
__attribute__((always_inline)) inline V event_times(const S* __restrict vals, int64_t k, V w) {
  return vals ? vals[k] * w : w;
}

// A blocked event's code m * G + g (see events): its input m and its row g within the group (G a power of 2: shifts).
template <int G>
__attribute__((always_inline)) inline int32_t event_input(int32_t code) {
  return int32_t(uint32_t(code) / G);
}
template <int G>
__attribute__((always_inline)) inline int32_t event_row(int32_t code) {
  return int32_t(uint32_t(code) % G);
}

// Branch input of the G rows of one group step (CSR rows r0.., nb of them real; events coded m * G + g) into Ibuf
// (G * P, branch-major): the bias, then the events in CSR order, each row's (compact: each (row, branch)'s) running
// sums in registers (restarted at a new segment, stored after every event: see event_flat_block). Rows past nb keep the
// bias.
template <int NV, int DC, typename S>
__attribute__((always_inline)) inline void narrow_project(int64_t r0, int64_t nb, const int64_t* rowptr,
                                                          const int32_t* __restrict cols, const S* __restrict vals,
                                                          const int32_t* __restrict bof, const NarrowTables<S>& tab,
                                                          S* __restrict Ibuf) {
  typedef Narrow<NV, DC, S> X;
  typedef typename X::V V;
  typedef typename X::VM VM;
  constexpr int L = X::L, N = X::N, P = X::P, G = X::G;
  const S* __restrict bias = tab.bias.data();
  const S* __restrict wn = tab.wn.data();
#pragma GCC unroll 16
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 16
    for (int j = 0; j < P / L; ++j) vstore(Ibuf + g * P + j * L, vload(bias + j * L));
  const int64_t k0 = rowptr[r0], k1 = rowptr[r0 + nb];
  int32_t prev = -1;
  if (bof) {
    V acc[NV] = {};
    for (int64_t k = k0; k < k1; ++k) {
      const int32_t c = event_input<G>(cols[k]), d = bof[c];
      const int32_t seg = event_row<G>(cols[k]) * DC + d;
      const VM keep = VM{} + typename VMask<S>::elem(seg == prev ? -1 : 0);
      prev = seg;
      const S* __restrict w = wn + int64_t(c) * N;
      S* __restrict o = Ibuf + int64_t(seg) * N;
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) {
        acc[v] = (keep ? acc[v] : vload(bias + d * N + v * L)) + event_times(vals, k, vload(w + v * L));
        vstore(o + v * L, acc[v]);
      }
    }
  } else {
    V acc[DC * NV] = {};
    for (int64_t k = k0; k < k1; ++k) {
      const int32_t seg = event_row<G>(cols[k]);
      const VM keep = VM{} + typename VMask<S>::elem(seg == prev ? -1 : 0);
      prev = seg;
      const S* __restrict w = wn + int64_t(event_input<G>(cols[k])) * P;
      S* __restrict o = Ibuf + int64_t(seg) * P;
#pragma GCC unroll 16
      for (int v = 0; v < DC * NV; ++v) {
        acc[v] = (keep ? acc[v] : vload(bias + v * L)) + event_times(vals, k, vload(w + v * L));
        vstore(o + v * L, acc[v]);
      }
    }
  }
}

// soma_update on vectors (same operation order).
template <int RESET, typename S, typename V>
__attribute__((always_inline)) inline V soma_v(V b, V up, V omb, V c, V th, V zp) {
  if (RESET == SUBTRACT) return (b * up + omb * c) - th * zp;
  if (RESET == ZERO) return b * up * (S(1) - zp) + omb * c;
  return b * up + omb * c;
}

// Forward. i0, i_T (B, N, D) interleaved as the module's state; checkpoints i_ck (chunks, B, P) branch-major,
// u_ck (chunks, B, N) (null: no training); z (T, B, N).
template <int RESET, int NV, int DC, typename S>
void narrow_fwd(int64_t T, int64_t B, int64_t M, int64_t K, const int64_t* rowptr, const int32_t* cols,
                const S* vals, const int32_t* bof, const S* wt, const S* bias, const S* a,
                const S* b, const S* vth, const S* i0, const S* u0, const S* z0, S* i_ck, S* u_ck, S* i_T, S* u_T,
                S* z) {
  typedef Narrow<NV, DC, S> X;
  typedef typename X::V V;
  constexpr int L = X::L, N = X::N, P = X::P, G = X::G;
  const NarrowTables<S> tab(M, N, DC, bof, wt, bias, a);
  const NarrowFactors<NV, DC, S> f(tab, b, vth);
  const auto &av = f.a, &oav = f.oma;
  const auto &bv = f.b, &obv = f.omb, &thv = f.th;
  const V one = V{} + S(1);
  const int64_t BN = B * N;
  alignas(64) S Ibuf2[2][G * P];
  // the spikes (each group step: G whole lines) stored non-temporally: at the delayed-XOR shape the training step in
  // the benchmark 5.3-5.6 -> 5.2-5.3 ms (7.1 -> 6.5 ms in a run with the memory system loaded by other machines),
  // 5 interleaved run pairs; the spikes are then read back from memory (the loss / the next layer)
  const bool stream_z = reinterpret_cast<uintptr_t>(z) % 64 == 0;
  // chunk-major: all row groups through chunk c of K steps, then chunk c + 1; the events come in the blocked CSR
  // order (see events), so each group reads its chunk's events in memory order (in input-row order a group read
  // them with a stride of B rows per step, which no prefetcher followed: the forward took 2-3x longer at B = 100-500
  // than at B = 4); the state waits between chunks in ist / ust (branch-major)
  std::vector<S> ist(B * P), ust(u0, u0 + B * N);
  to_branch_major(B, N, DC, i0, ist.data());
  const int64_t chunks = (T + K - 1) / K;
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t t0 = c * K, t1 = std::min(T, t0 + K);
    const S* zin = t0 == 0 ? z0 : z + (t0 - 1) * BN;
    for (int64_t b0 = 0; b0 < B; b0 += G) {
      const int64_t nb = std::min<int64_t>(G, B - b0);
      const int64_t csr0 = t0 * B + b0 * (t1 - t0);  // the group's first CSR row (blocked order, see events)
      V iv[G][DC][NV], uv[G][NV], zv[G][NV];
      narrow_load_group<NV, DC, S>(b0, nb, ist.data(), ust.data(), zin, iv, uv, zv);
      if (i_ck)  // checkpoint: the state entering chunk c
        narrow_store_group<NV, DC, S>(b0, nb, i_ck + c * B * P, u_ck + c * B * N, nullptr, iv, uv, zv);
      // software-pipelined: step t + 1's projection is issued before step t's state update, which then reads a
      // projection finished one step earlier (measured: the update waiting on the projection just issued made the
      // forward's projection cost several times the backward's recompute of it)
      narrow_project<NV, DC, S>(csr0, nb, rowptr, cols, vals, bof, tab, Ibuf2[t0 & 1]);
      for (int64_t t = t0; t < t1; ++t) {
        S* __restrict Ibuf = Ibuf2[t & 1];
        if (t + 1 < t1) {
          narrow_project<NV, DC, S>(csr0 + (t + 1 - t0) * nb, nb, rowptr, cols, vals, bof, tab, Ibuf2[(t + 1) & 1]);
        }
#pragma GCC unroll 16
        for (int g = 0; g < G; ++g) {
#pragma GCC unroll 16
          for (int d = 0; d < DC; ++d)
#pragma GCC unroll 16
            for (int v = 0; v < NV; ++v)
              iv[g][d][v] = av[d][v] * iv[g][d][v] + oav[d][v] * vload(Ibuf + g * P + d * N + v * L);
#pragma GCC unroll 16
          for (int v = 0; v < NV; ++v) {
            V cs = iv[g][0][v];
            for (int d = 1; d < DC; ++d) cs = cs + iv[g][d][v];
            const V u = soma_v<RESET, S>(bv[v], uv[g][v], obv[v], cs, thv[v], zv[g][v]);
            uv[g][v] = u;
            zv[g][v] = (u - thv[v]) > S(0) ? one : V{};
            if (g < nb) vstore_stream(z + (t * B + b0 + g) * N + v * L, zv[g][v], stream_z);
          }
        }
      }
      narrow_store_group<NV, DC, S>(b0, nb, ist.data(), ust.data(), nullptr, iv, uv, zv);
    }
  }
  from_branch_major(B, N, DC, ist.data(), i_T);
  std::copy(ust.begin(), ust.end(), u_T);
#if defined(__AVX512F__)
  _mm_sfence();  // the streamed spikes visible before anything after the kernel reads them
#endif
}

// Backward (recompute per chunk of K steps, adjoint of tile_bwd in registers). gI_all (T, B, P) branch-major or
// null; gwt (M, N*D) interleaved or null: with bof, the gradient of the masked weight on the mask's support (the
// other entries are multiplied by the mask's zeros upstream and are left 0); gbias (N*D, or null), ga (N*D), gb,
// gvth (N) in double; gi0 (B, N, D), gu0, gz0 (B, N).
template <int RESET, int NV, int DC, typename S>
void narrow_bwd(int64_t T, int64_t B, int64_t M, int64_t K, const int64_t* rowptr, const int32_t* cols,
                const S* vals, const int32_t* bof, const S* wt, const S* bias, const S* a,
                const S* b, const S* vth, const double* mg, const S* z0, const S* i_ck, const S* u_ck, const S* z,
                const S* gz, const S* giT, const S* guT, const S* gzT, S* gI_all, S* gwt, double* gbias, double* ga,
                double* gb, double* gvth, S* gi0, S* gu0, S* gz0) {
  typedef Narrow<NV, DC, S> X;
  typedef typename X::V V;
  constexpr int L = X::L, N = X::N, P = X::P, G = X::G;
  const int64_t BN = B * N;
  const NarrowTables<S> tab(M, N, DC, bof, wt, bias, a);
  const MG<S> surr(mg[0], mg[1], mg[2], mg[3]);
  const NarrowFactors<NV, DC, S> f(tab, b, vth);
  const auto &av = f.a, &oav = f.oma;
  const auto &bv = f.b, &obv = f.omb, &thv = f.th;
  const V one = V{} + S(1);
  alignas(64) S Ibuf2[2][G * P], Gbuf[G * P];
  // the chunk's recomputed values: e = i[t-1] - I[t] (P per row), u - theta then the surrogate, q, u[t-1], z[t-1]
  // (N; z[t-1] from the recompute, not re-read from the strided z rows: 0.05-0.1 ms less at the delayed-XOR shape)
  std::vector<S> E(K * G * P), XS(K * G * N), SD(K * G * N), Q(K * G * N), UP(RESET == ZERO ? K * G * N : 0),
      ZP(K * G * N);
  const int64_t W = tab.W;
  std::vector<S> gwn(gwt ? M * W : 0, S(0));
  std::vector<double> gaD(P, 0.0), gbiasD(P, 0.0), gbD(N, 0.0), gvD(N, 0.0);
  const V zero = V{};
  const int64_t chunks = (T + K - 1) / K;
  // chunk-major (see narrow_fwd): the carried adjoints wait between chunks in cist / cust / czst (branch-major)
  std::vector<S> cist(B * P, S(0)), cust(B * N, S(0)), czst(B * N, S(0));
  if (giT) to_branch_major(B, N, DC, giT, cist.data());
  if (guT) std::copy(guT, guT + B * N, cust.begin());
  if (gzT) std::copy(gzT, gzT + B * N, czst.begin());
  for (int64_t c = chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * K, t1 = std::min(T, t0 + K);
    for (int64_t b0 = 0; b0 < B; b0 += G) {
      const int64_t nb = std::min<int64_t>(G, B - b0);
      const int64_t csr0 = t0 * B + b0 * (t1 - t0);  // the group's first CSR row (blocked order, see events)
      V ci[G][DC][NV], cu[G][NV], cz[G][NV];
      narrow_load_group<NV, DC, S>(b0, nb, cist.data(), cust.data(), czst.data(), ci, cu, cz);
      {  // recompute the chunk's forward from its checkpoint
        V iv[G][DC][NV], uv[G][NV], zv[G][NV];
        narrow_load_group<NV, DC, S>(b0, nb, i_ck + c * B * P, u_ck + c * B * N, t0 == 0 ? z0 : z + (t0 - 1) * BN, iv,
                                     uv, zv);
        narrow_project<NV, DC, S>(csr0, nb, rowptr, cols, vals, bof, tab, Ibuf2[t0 & 1]);
        for (int64_t t = t0; t < t1; ++t) {  // software-pipelined as in narrow_fwd
          const int64_t l = t - t0;
          S* __restrict Ibuf = Ibuf2[t & 1];
          if (t + 1 < t1) {
            narrow_project<NV, DC, S>(csr0 + (t + 1 - t0) * nb, nb, rowptr, cols, vals, bof, tab, Ibuf2[(t + 1) & 1]);
          }
#pragma GCC unroll 16
          for (int g = 0; g < G; ++g) {
            const int64_t o = l * G + g;
#pragma GCC unroll 16
            for (int d = 0; d < DC; ++d)
#pragma GCC unroll 16
              for (int v = 0; v < NV; ++v) {
                const V I = vload(Ibuf + g * P + d * N + v * L);
                vstore(E.data() + o * P + d * N + v * L, iv[g][d][v] - I);
                iv[g][d][v] = av[d][v] * iv[g][d][v] + oav[d][v] * I;
              }
#pragma GCC unroll 16
            for (int v = 0; v < NV; ++v) {
              V cs = iv[g][0][v];
              for (int d = 1; d < DC; ++d) cs = cs + iv[g][d][v];
              const V up = uv[g][v], zp = zv[g][v];
              vstore(ZP.data() + o * N + v * L, zp);
              vstore(Q.data() + o * N + v * L, (RESET == ZERO ? up * (S(1) - zp) : up) - cs);
              if (RESET == ZERO) vstore(UP.data() + o * N + v * L, up);
              const V u = soma_v<RESET, S>(bv[v], up, obv[v], cs, thv[v], zp);
              uv[g][v] = u;
              zv[g][v] = (u - thv[v]) > S(0) ? one : zero;
              vstore(XS.data() + o * N + v * L, u - thv[v]);
            }
          }
        }
      }
      surr.row((t1 - t0) * G * N, XS.data(), SD.data());
      V accA[DC][NV], accBias[DC][NV], accB[NV], accV[NV];
      for (int d = 0; d < DC; ++d)
        for (int v = 0; v < NV; ++v) accA[d][v] = accBias[d][v] = zero;
      for (int v = 0; v < NV; ++v) accB[v] = accV[v] = zero;
      for (int64_t t = t1 - 1; t >= t0; --t) {
        const int64_t l = t - t0;
        if (t >= 5 && gz) {  // the rows of dL/dz a few steps back: strided by B rows per step, not prefetched by
          const int64_t tp = t - 4;  // the hardware
          for (int64_t o = 0; o < nb * N * int64_t(sizeof(S)); o += 64)
            __builtin_prefetch(reinterpret_cast<const char*>(gz + (tp * B + b0) * N) + o, 0, 3);
        }
#pragma GCC unroll 16
        for (int g = 0; g < G; ++g) {
          const int64_t o = l * G + g;
          const bool live = g < nb;
          V gck[NV];
#pragma GCC unroll 16
          for (int v = 0; v < NV; ++v) {
            const V zp = vload(ZP.data() + o * N + v * L);  // (rows past nb: their adjoints stay 0)
            const V Gz = cz[g][v] + (live && gz ? vload(gz + (t * B + b0 + g) * N + v * L) : zero);
            const V sd = vload(SD.data() + o * N + v * L);
            const V Gu = cu[g][v] + Gz * sd;
            gck[v] = obv[v] * Gu;
            if (RESET == SUBTRACT) {
              accV[v] += Gz * sd + Gu * zp;
              cu[g][v] = bv[v] * Gu;
              cz[g][v] = -thv[v] * Gu;
            } else if (RESET == ZERO) {
              const V up = vload(UP.data() + o * N + v * L);
              accV[v] += Gz * sd;
              cu[g][v] = Gu * bv[v] * (S(1) - zp);
              cz[g][v] = -Gu * bv[v] * up;
            } else {
              accV[v] += Gz * sd;
              cu[g][v] = bv[v] * Gu;
              cz[g][v] = zero;
            }
            accB[v] += Gu * vload(Q.data() + o * N + v * L);
          }
#pragma GCC unroll 16
          for (int d = 0; d < DC; ++d)
#pragma GCC unroll 16
            for (int v = 0; v < NV; ++v) {
              const V Gi = ci[g][d][v] + gck[v];
              const V gi = oav[d][v] * Gi;
              accBias[d][v] += gi;
              accA[d][v] += Gi * vload(E.data() + o * P + d * N + v * L);
              ci[g][d][v] = av[d][v] * Gi;
              vstore(Gbuf + g * P + d * N + v * L, gi);
              if (gI_all && live) vstore(gI_all + (t * B + b0 + g) * P + d * N + v * L, gi);
            }
        }
        if (gwt) {  // weight gradient through the group step's events: gwn[m, :] += v * dI[row, (branch of m), :]
          const int64_t r0 = csr0 + (t - t0) * nb, k0 = rowptr[r0], k1 = rowptr[r0 + nb];
          if (bof) {
            for (int64_t k = k0; k < k1; ++k) {
              const int32_t m = event_input<G>(cols[k]);
              const S* __restrict gr = Gbuf + event_row<G>(cols[k]) * P + bof[m] * N;
              S* __restrict o = gwn.data() + int64_t(m) * N;
#pragma GCC unroll 16
              for (int v = 0; v < NV; ++v) vstore(o + v * L, vload(o + v * L) + event_times(vals, k, vload(gr + v * L)));
            }
          } else {
            for (int64_t k = k0; k < k1; ++k) {
              const S* __restrict gr = Gbuf + event_row<G>(cols[k]) * P;
              S* __restrict o = gwn.data() + int64_t(event_input<G>(cols[k])) * P;
#pragma GCC unroll 16
              for (int v = 0; v < DC * NV; ++v)
                vstore(o + v * L, vload(o + v * L) + event_times(vals, k, vload(gr + v * L)));
            }
          }
        }
      }
      for (int d = 0; d < DC; ++d)  // the chunk's float partial sums into the double accumulators
        for (int v = 0; v < NV; ++v)
          for (int l = 0; l < L; ++l) {
            gaD[d * N + v * L + l] += double(accA[d][v][l]);
            gbiasD[d * N + v * L + l] += double(accBias[d][v][l]);
          }
      for (int v = 0; v < NV; ++v)
        for (int l = 0; l < L; ++l) {
          gbD[v * L + l] += double(accB[v][l]);
          gvD[v * L + l] -= double(accV[v][l]);
        }
      narrow_store_group<NV, DC, S>(b0, nb, cist.data(), cust.data(), czst.data(), ci, cu, cz);
    }
  }
  from_branch_major(B, N, DC, cist.data(), gi0);
  std::copy(cust.begin(), cust.end(), gu0);
  std::copy(czst.begin(), czst.end(), gz0);
  from_branch_major(1, N, DC, gaD.data(), ga);
  if (gbias) from_branch_major(1, N, DC, gbiasD.data(), gbias);
  std::copy(gbD.begin(), gbD.end(), gb);
  std::copy(gvD.begin(), gvD.end(), gvth);
  if (gwt && bof) {
    std::memset(gwt, 0, sizeof(S) * M * P);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) gwt[m * P + n * DC + bof[m]] = gwn[m * N + n];
  } else if (gwt) {
    from_branch_major(M, N, DC, gwn.data(), gwt);
  }
}

#define NORSE_DH_NARROW_FWD_PARAMS(S)                                                                             \
  int64_t T, int64_t B, int64_t M, int64_t K, const int64_t *rowptr, const int32_t *cols,                         \
      const S *vals, const int32_t *bof, const S *wt, const S *bias, const S *a, const S *b, const S *vth,          \
      const S *i0, const S *u0, const S *z0, S *i_ck, S *u_ck, S *i_T, S *u_T, S *z
#define NORSE_DH_NARROW_FWD_ARGS \
  T, B, M, K, rowptr, cols, vals, bof, wt, bias, a, b, vth, i0, u0, z0, i_ck, u_ck, i_T, u_T, z
#define NORSE_DH_NARROW_BWD_PARAMS(S)                                                                             \
  int64_t T, int64_t B, int64_t M, int64_t K, const int64_t *rowptr, const int32_t *cols,                         \
      const S *vals, const int32_t *bof, const S *wt, const S *bias, const S *a, const S *b, const S *vth,          \
      const double *mg, const S *z0, const S *i_ck, const S *u_ck, const S *z, const S *gz, const S *giT,           \
      const S *guT, const S *gzT, S *gI_all, S *gwt, double *gbias, double *ga, double *gb, double *gvth, S *gi0,   \
      S *gu0, S *gz0
#define NORSE_DH_NARROW_BWD_ARGS                                                                                  \
  T, B, M, K, rowptr, cols, vals, bof, wt, bias, a, b, vth, mg, z0, i_ck, u_ck, z, gz, giT, guT, gzT, gI_all, \
      gwt, gbias, ga, gb, gvth, gi0, gu0, gz0

// The supported (vectors per branch, branches) pairs; returns false for others (the caller checks first).
#define NORSE_DH_NARROW_DISPATCH(FN, ARGS)                   \
  switch (nv * 16 + D) {                                     \
    case 16 + 1: FN<R, 1, 1, S>(ARGS); return 1;             \
    case 16 + 2: FN<R, 1, 2, S>(ARGS); return 1;             \
    case 16 + 3: FN<R, 1, 3, S>(ARGS); return 1;             \
    case 16 + 4: FN<R, 1, 4, S>(ARGS); return 1;             \
    case 32 + 1: FN<R, 2, 1, S>(ARGS); return 1;             \
    case 32 + 2: FN<R, 2, 2, S>(ARGS); return 1;             \
    default: return 0;                                       \
  }

template <int R, typename S>
int narrow_fwd_r(int64_t nv, int64_t D, NORSE_DH_NARROW_FWD_PARAMS(S)) {
  NORSE_DH_NARROW_DISPATCH(narrow_fwd, NORSE_DH_NARROW_FWD_ARGS)
}
template <int R, typename S>
int narrow_bwd_r(int64_t nv, int64_t D, NORSE_DH_NARROW_BWD_PARAMS(S)) {
  NORSE_DH_NARROW_DISPATCH(narrow_bwd, NORSE_DH_NARROW_BWD_ARGS)
}
template <typename S>
int narrow_fwd_any(int reset, int64_t nv, int64_t D, NORSE_DH_NARROW_FWD_PARAMS(S)) {
  if (reset == SUBTRACT) return narrow_fwd_r<SUBTRACT, S>(nv, D, NORSE_DH_NARROW_FWD_ARGS);
  if (reset == ZERO) return narrow_fwd_r<ZERO, S>(nv, D, NORSE_DH_NARROW_FWD_ARGS);
  return narrow_fwd_r<NONE, S>(nv, D, NORSE_DH_NARROW_FWD_ARGS);
}
template <typename S>
int narrow_bwd_any(int reset, int64_t nv, int64_t D, NORSE_DH_NARROW_BWD_PARAMS(S)) {
  if (reset == SUBTRACT) return narrow_bwd_r<SUBTRACT, S>(nv, D, NORSE_DH_NARROW_BWD_ARGS);
  if (reset == ZERO) return narrow_bwd_r<ZERO, S>(nv, D, NORSE_DH_NARROW_BWD_ARGS);
  return narrow_bwd_r<NONE, S>(nv, D, NORSE_DH_NARROW_BWD_ARGS);
}

}  // namespace

#define EXPORT extern "C" __attribute__((visibility("default")))

#define INSTANTIATE(S, SUF)                                                                                       \
  EXPORT void dhlif_fwd_##SUF(int64_t T, int64_t B, int64_t N, int64_t D, int reset, int has_dend, int store_all, \
                              const S* I, S* Itot, const S* a, const S* b, const S* vth, const S* i0, const S* u0, \
                              const S* z0, const S* wrt, S* i_out, S* u_out, S* z_out) {                          \
    dhlif_fwd<S>(T, B, N, D, reset, has_dend, store_all, I, Itot, a, b, vth, i0, u0, z0, wrt, i_out, u_out, z_out); \
  }                                                                                                               \
  EXPORT void dhlif_bwd_##SUF(int64_t T, int64_t B, int64_t N, int64_t D, int reset, int has_dend, const S* sd,   \
                              const double* mg, const S* I, const S* i, const S* u, const S* z, const S* a, const S* b, const S* vth, \
                              const S* i0, const S* u0, const S* z0, const S* wrt, void* gemm, const S* gz,        \
                              const S* giT, const S* guT, const S* gzT, S* gI, double* ga, double* gb,            \
                              double* gvth, S* gi0, S* gu0, S* gz0) {                                             \
    dhlif_bwd<S>(T, B, N, D, reset, has_dend, sd, mg, I, i, u, z, a, b, vth, i0, u0, z0, wrt, gemm, gz, giT, guT, gzT, \
                 gI, ga, gb, gvth, gi0, gu0, gz0);                                                                 \
  }                                                                                                               \
  EXPORT void leaky_fwd_##SUF(int64_t T, int64_t B, int64_t K, const S* I, const S* b, const S* m0, S* m) {       \
    leaky_fwd<S>(T, B, K, I, b, m0, m);                                                                           \
  }                                                                                                               \
  EXPORT void leaky_bwd_##SUF(int64_t T, int64_t B, int64_t K, const S* I, const S* b, const S* m0, const S* m,   \
                              const S* gm, const S* gmT, S* gI, double* gb, S* gm0) {                             \
    leaky_bwd<S>(T, B, K, I, b, m0, m, gm, gmT, gI, gb, gm0);                                                     \
  }                                                                                                               \
  EXPORT int64_t events_##SUF(int64_t R, int64_t M, const S* x, int64_t* rowptr, int32_t* cols, S* vals,          \
                              int32_t* rows, int64_t cap, int64_t B, int64_t K, int64_t G, int32_t* ones) {       \
    return events<S>(R, M, x, rowptr, cols, vals, rows, cap, B, K, G, ones);                                      \
  }                                                                                                               \
  EXPORT void ev_rows_fwd_##SUF(int64_t R, int64_t P, const int64_t* rowptr, const int32_t* cols, const S* vals,  \
                                const S* wt, const S* bias, S* out) {                                             \
    ev_rows_fwd<S>(R, P, rowptr, cols, vals, wt, bias, out);                                                      \
  }                                                                                                               \
  EXPORT void ev_rows_wgrad_##SUF(int64_t R, int64_t M, int64_t P, const int64_t* rowptr, const int32_t* cols,     \
                                  const S* vals, const S* g, S* gwt, double* gbias) {                             \
    ev_rows_wgrad<S>(R, M, P, rowptr, cols, vals, g, gwt, gbias);                                                        \
  }                                                                                                               \
  EXPORT void mg_surrogate_##SUF(int64_t n, const S* x, double gamma, double sigma, double height, double scale,  \
                                 S* sd) {                                                                         \
    mg_surrogate<S>(n, x, gamma, sigma, height, scale, sd);                                                       \
  }

#define INSTANTIATE_FUSED(S, SUF)                                                                 \
  EXPORT void dhsfnn_fwd_##SUF(int reset, NORSE_DH_FWD_PARAMS(S)) { dhsfnn_fwd<S>(reset, NORSE_DH_FWD_ARGS); } \
  EXPORT void dhsfnn_bwd_##SUF(int reset, NORSE_DH_BWD_PARAMS(S)) { dhsfnn_bwd<S>(reset, NORSE_DH_BWD_ARGS); }

INSTANTIATE_FUSED(float, f32)
INSTANTIATE_FUSED(double, f64)

// Narrow fused DH-SFNN; returns 0 (nothing done) for (vectors per branch, branches) pairs without a kernel.
#define INSTANTIATE_NARROW(S, SUF)                                                                              \
  EXPORT int dhsfnn_narrow_fwd_##SUF(int reset, int64_t nv, int64_t D, NORSE_DH_NARROW_FWD_PARAMS(S)) {       \
    return narrow_fwd_any<S>(reset, nv, D, NORSE_DH_NARROW_FWD_ARGS);                                          \
  }                                                                                                             \
  EXPORT int dhsfnn_narrow_bwd_##SUF(int reset, int64_t nv, int64_t D, NORSE_DH_NARROW_BWD_PARAMS(S)) {       \
    return narrow_bwd_any<S>(reset, nv, D, NORSE_DH_NARROW_BWD_ARGS);                                          \
  }
INSTANTIATE_NARROW(float, f32)
INSTANTIATE_NARROW(double, f64)

// Batch rows per group of the narrow kernel for (vectors per branch, branches): the G of the blocked event order.
EXPORT int dhsfnn_narrow_group(int64_t nv, int64_t D) { return narrow_group(nv, D); }
INSTANTIATE(float, f32)
INSTANTIATE(double, f64)

EXPORT int norse_dh_kernels_abi() { return 10; }

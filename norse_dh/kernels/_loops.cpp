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
void branch_sum_any(int64_t BN, int64_t D, const S* ic, S* C) {
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

// Soma update of one batch row (forward), in the operation order of norse_dh.functional.dhlif.soma_step.
template <int RESET, typename S>
void soma_row(int64_t N, const S* __restrict C, const S* __restrict up, const S* __restrict zp, const S* __restrict b,
              const S* __restrict omb, const S* __restrict th, S* __restrict uc, S* __restrict zc) {
  for (int64_t n = 0; n < N; ++n) {
    S u;
    if (RESET == SUBTRACT)
      u = (b[n] * up[n] + omb[n] * C[n]) - th[n] * zp[n];
    else if (RESET == ZERO)
      u = b[n] * up[n] * (S(1) - zp[n]) + omb[n] * C[n];
    else
      u = b[n] * up[n] + omb[n] * C[n];
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

// exp(x) for x <= 0 as straight-line arithmetic that the compiler vectorises (glibc's exp is a scalar call):
// Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, Taylor polynomial (degree 7 in float: relative error < 1e-8;
// degree 13 in double: < 1e-16), scale by 2^n through the exponent bits. Results below ~1e-35 (float) / 1e-304
// (double) are returned as exactly 0, so that no denormal ever enters the backward loop.
inline float exp_neg(float x) {
  const bool tiny = x < -80.0f;  // result below ~1e-35: return exactly 0 (denormal products are ~100x slower)
  x = tiny ? -80.0f : x;
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * 1.44269504088896341f + shifter) - shifter;
  const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187045e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return tiny ? 0.0f : p * scale;
}

inline double exp_neg(double x) {
  const bool tiny = x < -700.0;
  x = tiny ? -700.0 : x;
  const double shifter = 6755399441055744.0;  // 1.5 * 2^52
  const double n = (x * 1.4426950408889634074 + shifter) - shifter;
  const double r = (x - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
  double p = 1.0 / 6227020800.0;
  const double inv[] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
                        1.0 / 5040.0,      1.0 / 720.0,      1.0 / 120.0,     1.0 / 24.0,     1.0 / 6.0,
                        0.5,               1.0,              1.0};
  for (double c : inv) p = p * r + c;
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
  S kc, cc, ks, cs, s;
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
  }
  // sd[k] = surrogate at x[k], k < n
  void row(int64_t n, const S* __restrict x, S* __restrict sd) const {
    if (!side) {
      for (int64_t k = 0; k < n; ++k) sd[k] = kc * exp_neg(cc * x[k] * x[k]);
    } else {
      for (int64_t k = 0; k < n; ++k) {
        const S xp = x[k] - s, xm = x[k] + s;
        sd[k] = kc * exp_neg(cc * x[k] * x[k]) - ks * (exp_neg(cs * xp * xp) + exp_neg(cs * xm * xm));
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
// room for cap + 16 entries (the AVX-512 path stores whole vectors).
template <typename S>
int64_t events(int64_t R, int64_t M, const S* x, int64_t* rowptr, int32_t* cols, S* vals, int64_t cap) {
  int64_t k = 0;
  rowptr[0] = 0;
#if defined(__AVX512F__)
  if constexpr (sizeof(S) == 4) {
    const __m512 zero = _mm512_setzero_ps();
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int64_t r = 0; r < R; ++r) {
      const float* xr = reinterpret_cast<const float*>(x + r * M);
      for (int64_t m = 0; m < M; m += 16) {
        const __mmask16 live = M - m >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (M - m)) - 1u);
        const __m512 v = _mm512_maskz_loadu_ps(live, xr + m);
        const __mmask16 nz = _mm512_mask_cmp_ps_mask(live, v, zero, _CMP_NEQ_UQ);
        if (nz) {
          // compress in registers, store whole vectors (the slack past k is overwritten by the next store)
          _mm512_storeu_ps(reinterpret_cast<float*>(vals + k), _mm512_maskz_compress_ps(nz, v));
          const __m512i idx = _mm512_add_epi32(iota, _mm512_set1_epi32(int32_t(m)));
          _mm512_storeu_si512(cols + k, _mm512_maskz_compress_epi32(nz, idx));
          k += __builtin_popcount(nz);
          if (k > cap) return cap + 1;
        }
      }
      rowptr[r + 1] = k;
    }
    return k;
  }
#endif
  for (int64_t r = 0; r < R; ++r) {
    const S* xr = x + r * M;
    for (int64_t m = 0; m < M; ++m) {
      if (xr[m] != S(0)) {
        if (k >= cap) return cap + 1;
        cols[k] = int32_t(m);
        vals[k] = xr[m];
        ++k;
      }
    }
    rowptr[r + 1] = k;
  }
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
                              int64_t cap) {                                                                      \
    return events<S>(R, M, x, rowptr, cols, vals, cap);                                                           \
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

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)

EXPORT int norse_dh_kernels_abi() { return 5; }

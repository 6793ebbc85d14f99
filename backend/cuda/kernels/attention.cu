// Causal multi-head self-attention over the fused qkv(B,T,3C) of GPT-2, in FlashAttention-2
// style (Dao, "FlashAttention-2: Faster Attention with Better Parallelism and Work
// Partitioning", 2023): tiles of keys and values in shared memory, an online softmax, and a
// backward that recomputes the probabilities from the saved log-sum-exp. float32 SIMT code, one
// thread per query (or key) row; no T×T matrix in global memory on the flash path.
//
// The plain Backend.AttentionForward/Backward use the same kernels: the forward runs
// flash_forward and then attention_probs, which writes the probabilities att(B,NH,T,T) (0 above
// the diagonal) from the log-sum-exp; the backward reads att instead of recomputing it
// (the FROM_ATT variants).
//
// Layout (llm.c's attention_forward.cu): query t of head h of batch b is
// qkv[(b*T+t)*3C + h*HS + i], its key at +C, its value at +2C; out(B,T,C) and dout likewise at
// (b*T+t)*C + h*HS + i; lse and delta are (B,NH,T). HS = C/NH; every kernel is instantiated
// for a head-size bound D in {32, 64} (suffix _D; GPT-2's heads are 64 wide at every size) and
// zero-pads channels HS..D-1.
// Scores are scale*(q·k), scale = 1/sqrt(HS) from the host.

#define FULL_MASK 0xffffffffu
#define KG 8  // keys per online-softmax step (BC is a multiple of KG)
#define NEG_INF __int_as_float(0xff800000)  // -Inf (NVRTC has no math.h INFINITY)

// Row pointers into qkv, out/dout.
__device__ __forceinline__ const float* qkv_row(const float* qkv, int b, int t, int T, int C,
                                                int part, int h, int HS) {
    return qkv + ((long long)b * T + t) * 3 * C + (long long)part * C + (long long)h * HS;
}
__device__ __forceinline__ long long out_off(int b, int t, int T, int C, int h, int HS) {
    return ((long long)b * T + t) * C + (long long)h * HS;
}

// flash_forward: out(B,T,C) and lse(B,NH,T) = log(sum_j exp(s_tj)), s_tj = scale*q_t·k_j over
// j <= t. Grid (ceil(T/BR), B*NH), block BR: thread r owns query t = blockIdx.x*BR + r, with q
// and the output accumulator in registers; key/value tiles of BC rows pass through shared
// memory; each tile rescales the accumulator once (FlashAttention-2, algorithm 1).
template <int D, int BR, int BC>
__device__ void flash_forward(float* out, float* lse, const float* qkv, int T, int C, int NH,
                              float scale) {
    __shared__ __align__(16) float Ks[BC][D];
    __shared__ __align__(16) float Vs[BC][D];
    const int HS = C / NH;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int t0 = blockIdx.x * BR;
    const int t = t0 + threadIdx.x;
    const bool active = t < T;
    float q[D], acc[D];
    const float* qr = qkv_row(qkv, b, active ? t : 0, T, C, 0, h, HS);
#pragma unroll
    for (int d = 0; d < D; d++) {
        q[d] = active && d < HS ? qr[d] : 0.0f;
        acc[d] = 0.0f;
    }
    float m = NEG_INF, l = 0.0f;
    const int kEnd = min(t0 + BR, T);
    for (int j0 = 0; j0 < kEnd; j0 += BC) {
        __syncthreads();
        for (int e = threadIdx.x; e < BC * D; e += BR) {
            const int jj = e / D, d = e % D, j = j0 + jj;
            float kv = 0.0f, vv = 0.0f;
            if (j < kEnd && d < HS) {
                kv = qkv_row(qkv, b, j, T, C, 1, h, HS)[d];
                vv = qkv_row(qkv, b, j, T, C, 2, h, HS)[d];
            }
            Ks[jj][d] = kv;
            Vs[jj][d] = vv;
        }
        __syncthreads();
        if (!active) continue;
        // Keys in groups of KG: scores in registers, then one rescale of the accumulator per
        // group. The first group of tile 0 holds key 0 <= t, so mt is finite from there on.
        for (int jg = 0; jg < BC && j0 + jg <= t; jg += KG) {
            float s[KG];
            float mt = m;
#pragma unroll
            for (int k = 0; k < KG; k++) {
                float dot = 0.0f;
#pragma unroll
                for (int d = 0; d < D; d++) dot += q[d] * Ks[jg + k][d];
                s[k] = j0 + jg + k <= t ? dot * scale : NEG_INF;
                mt = fmaxf(mt, s[k]);
            }
            const float alpha = expf(m - mt);
            l *= alpha;
#pragma unroll
            for (int d = 0; d < D; d++) acc[d] *= alpha;
#pragma unroll
            for (int k = 0; k < KG; k++) {
                const float p = expf(s[k] - mt);
                l += p;
#pragma unroll
                for (int d = 0; d < D; d++) acc[d] += p * Vs[jg + k][d];
            }
            m = mt;
        }
    }
    if (!active) return;
    const float inv = 1.0f / l;
    float* o = out + out_off(b, t, T, C, h, HS);
#pragma unroll
    for (int d = 0; d < D; d++)
        if (d < HS) o[d] = acc[d] * inv;
    lse[(long long)bh * T + t] = m + logf(l);
}

// attention_probs writes att(B,NH,T,T) = exp(s_tj - lse_t) for j <= t and 0 above the
// diagonal. Grid (ceil(T/32) key tiles, ceil(T/32) query tiles, B*NH), block (32,8): thread
// (x,y) computes rows y, y+8, y+16, y+24 of column x of the 32×32 tile.
template <int D>
__device__ void attention_probs(float* att, const float* lse, const float* qkv, int T, int C,
                                int NH, float scale) {
    __shared__ float Qs[32][D + 1];
    __shared__ float Ks[32][D + 1];
    const int HS = C / NH;
    const int bh = blockIdx.z, b = bh / NH, h = bh % NH;
    const int col0 = blockIdx.x * 32, row0 = blockIdx.y * 32;
    const int x = threadIdx.x, y = threadIdx.y;
    float* A = att + (long long)bh * T * T;
    const int j = col0 + x;
    if (col0 > row0 + 31) {  // above the diagonal: the whole block leaves here
        for (int r = y; r < 32; r += 8) {
            const int t = row0 + r;
            if (t < T && j < T) A[(long long)t * T + j] = 0.0f;
        }
        return;
    }
    for (int e = y * 32 + x; e < 32 * D; e += 256) {
        const int r = e / D, d = e % D;
        const int tq = row0 + r, tk = col0 + r;
        Qs[r][d] = tq < T && d < HS ? qkv_row(qkv, b, tq, T, C, 0, h, HS)[d] : 0.0f;
        Ks[r][d] = tk < T && d < HS ? qkv_row(qkv, b, tk, T, C, 1, h, HS)[d] : 0.0f;
    }
    __syncthreads();
    for (int r = y; r < 32; r += 8) {
        const int t = row0 + r;
        if (t >= T || j >= T) continue;
        if (j > t) {
            A[(long long)t * T + j] = 0.0f;
            continue;
        }
        float dot = 0.0f;
#pragma unroll
        for (int d = 0; d < D; d++) dot += Qs[r][d] * Ks[x][d];
        A[(long long)t * T + j] = expf(dot * scale - lse[(long long)bh * T + t]);
    }
}

// attention_delta: delta(B,NH,T) = dout_t · out_t per head, the row sum D_i of
// FlashAttention-2's backward (algorithm 2, line 4). One thread per (b,h,t), grid-stride.
extern "C" __global__ void attention_delta(float* delta, const float* dout, const float* out,
                                           int B, int T, int C, int NH) {
    const int HS = C / NH;
    const long long total = (long long)B * NH * T;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const int bh = (int)(i / T), t = (int)(i % T), b = bh / NH, h = bh % NH;
        const long long off = out_off(b, t, T, C, h, HS);
        float s = 0.0f;
        for (int d = 0; d < HS; d++) s += dout[off + d] * out[off + d];
        delta[i] = s;
    }
}

// attention_delta_att: delta(B,NH,T) = sum_{j<=t} att_tj * (dout_t · v_j), which equals
// dout_t · out_t (the CPU reference's sum_k att[k]*datt[k]) without needing out. Grid
// (ceil(T/BR), B*NH), block BR: thread per query row, value tiles in shared memory.
template <int D, int BR, int BC>
__device__ void attention_delta_att(float* delta, const float* dout, const float* qkv,
                                    const float* att, int T, int C, int NH) {
    __shared__ __align__(16) float Vs[BC][D];
    const int HS = C / NH;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int t0 = blockIdx.x * BR;
    const int t = t0 + threadIdx.x;
    const bool active = t < T;
    float g[D];
    const float* dr = dout + out_off(b, active ? t : 0, T, C, h, HS);
#pragma unroll
    for (int d = 0; d < D; d++) g[d] = active && d < HS ? dr[d] : 0.0f;
    const float* A = att + ((long long)bh * T + (active ? t : 0)) * T;
    float sum = 0.0f;
    const int kEnd = min(t0 + BR, T);
    for (int j0 = 0; j0 < kEnd; j0 += BC) {
        __syncthreads();
        for (int e = threadIdx.x; e < BC * D; e += BR) {
            const int jj = e / D, d = e % D, j = j0 + jj;
            Vs[jj][d] = j < kEnd && d < HS ? qkv_row(qkv, b, j, T, C, 2, h, HS)[d] : 0.0f;
        }
        __syncthreads();
        if (!active) continue;
        for (int jj = 0; jj < BC; jj++) {
            const int j = j0 + jj;
            if (j > t) break;
            float dot = 0.0f;
#pragma unroll
            for (int d = 0; d < D; d++) dot += Vs[jj][d] * g[d];
            sum += A[j] * dot;
        }
    }
    if (active) delta[(long long)bh * T + t] = sum;
}

// attention_backward_dkdv adds into the key and value parts of dqkv(B,T,3C):
//
//	dv_j += sum_{t>=j} p_tj * dout_t
//	dk_j += sum_{t>=j} p_tj * (dout_t·v_j - delta_t) * scale * q_t
//
// with p_tj = att[t][j] (FROM_ATT) or exp(scale*q_t·k_j - lse_t) (recomputed, FlashAttention-2
// algorithm 2). Grid (ceil(T/BC), B*NH), block BC: thread r owns key j = blockIdx.x*BC + r (its
// k and v rows in shared memory, padded against bank conflicts; dk and dv in registers) and
// walks query tiles of BR rows from j's tile to T. Each key's sums run over t in increasing
// order in one thread: deterministic, no atomics.
template <int D, int BC, int BR, bool FROM_ATT>
__device__ void attention_backward_dkdv(float* dqkv, const float* dout, const float* qkv,
                                        const float* att, const float* lse, const float* delta,
                                        int T, int C, int NH, float scale) {
    __shared__ float Ks[BC][D + 1];
    __shared__ float Vs[BC][D + 1];
    __shared__ __align__(16) float Qs[BR][D];
    __shared__ __align__(16) float Gs[BR][D];
    __shared__ float Ls[BR];
    __shared__ float Ds[BR];
    const int HS = C / NH;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int j0 = blockIdx.x * BC;
    const int r = threadIdx.x;
    const int j = j0 + r;
    const bool active = j < T;
    {
        const float* kr = qkv_row(qkv, b, active ? j : 0, T, C, 1, h, HS);
        const float* vr = qkv_row(qkv, b, active ? j : 0, T, C, 2, h, HS);
        for (int d = 0; d < D; d++) {
            Ks[r][d] = active && d < HS ? kr[d] : 0.0f;
            Vs[r][d] = active && d < HS ? vr[d] : 0.0f;
        }
    }
    float dk[D], dv[D];
#pragma unroll
    for (int d = 0; d < D; d++) {
        dk[d] = 0.0f;
        dv[d] = 0.0f;
    }
    for (int i0 = j0; i0 < T; i0 += BR) {
        __syncthreads();
        for (int e = threadIdx.x; e < BR * D; e += BC) {
            const int ii = e / D, d = e % D, t = i0 + ii;
            const bool in = t < T && d < HS;
            Qs[ii][d] = in ? qkv_row(qkv, b, t, T, C, 0, h, HS)[d] : 0.0f;
            Gs[ii][d] = in ? dout[out_off(b, t, T, C, h, HS) + d] : 0.0f;
        }
        for (int ii = threadIdx.x; ii < BR; ii += BC) {
            const int t = i0 + ii;
            Ls[ii] = !FROM_ATT && t < T ? lse[(long long)bh * T + t] : 0.0f;
            Ds[ii] = t < T ? delta[(long long)bh * T + t] : 0.0f;
        }
        __syncthreads();
        if (!active) continue;
        for (int ii = 0; ii < BR; ii++) {
            const int t = i0 + ii;
            if (t >= T) break;
            if (t < j) continue;
            float p;
            if (FROM_ATT) {
                p = att[((long long)bh * T + t) * T + j];
            } else {
                float dot = 0.0f;
#pragma unroll
                for (int d = 0; d < D; d++) dot += Qs[ii][d] * Ks[r][d];
                p = expf(dot * scale - Ls[ii]);
            }
            float dp = 0.0f;
#pragma unroll
            for (int d = 0; d < D; d++) dp += Vs[r][d] * Gs[ii][d];
            const float ds = p * (dp - Ds[ii]) * scale;
#pragma unroll
            for (int d = 0; d < D; d++) {
                dv[d] += p * Gs[ii][d];
                dk[d] += Qs[ii][d] * ds;
            }
        }
    }
    if (!active) return;
    float* dkr = dqkv + ((long long)b * T + j) * 3 * C + C + (long long)h * HS;
    float* dvr = dkr + C;
#pragma unroll
    for (int d = 0; d < D; d++) {
        if (d < HS) {
            dkr[d] += dk[d];
            dvr[d] += dv[d];
        }
    }
}

// attention_backward_dq adds into the query part of dqkv:
//
//	dq_t += sum_{j<=t} p_tj * (dout_t·v_j - delta_t) * scale * k_j
//
// Grid (ceil(T/BR), B*NH), block BR: thread r owns query t (q and dout rows in shared memory,
// padded; dq in registers) and walks key tiles of BC rows up to t. Deterministic: one thread
// sums each dq row in increasing j. Running dq in its own kernel, instead of atomics from the
// dk/dv kernel, recomputes p and dout·v once more.
template <int D, int BR, int BC, bool FROM_ATT>
__device__ void attention_backward_dq(float* dqkv, const float* dout, const float* qkv,
                                      const float* att, const float* lse, const float* delta,
                                      int T, int C, int NH, float scale) {
    __shared__ float Qs[BR][D + 1];
    __shared__ float Gs[BR][D + 1];
    __shared__ __align__(16) float Ks[BC][D];
    __shared__ __align__(16) float Vs[BC][D];
    const int HS = C / NH;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int t0 = blockIdx.x * BR;
    const int r = threadIdx.x;
    const int t = t0 + r;
    const bool active = t < T;
    {
        const float* qr = qkv_row(qkv, b, active ? t : 0, T, C, 0, h, HS);
        const float* gr = dout + out_off(b, active ? t : 0, T, C, h, HS);
        for (int d = 0; d < D; d++) {
            Qs[r][d] = active && d < HS ? qr[d] : 0.0f;
            Gs[r][d] = active && d < HS ? gr[d] : 0.0f;
        }
    }
    const float L = active && !FROM_ATT ? lse[(long long)bh * T + t] : 0.0f;
    const float Dt = active ? delta[(long long)bh * T + t] : 0.0f;
    float dq[D];
#pragma unroll
    for (int d = 0; d < D; d++) dq[d] = 0.0f;
    const int kEnd = min(t0 + BR, T);
    for (int j0 = 0; j0 < kEnd; j0 += BC) {
        __syncthreads();
        for (int e = threadIdx.x; e < BC * D; e += BR) {
            const int jj = e / D, d = e % D, j = j0 + jj;
            const bool in = j < kEnd && d < HS;
            Ks[jj][d] = in ? qkv_row(qkv, b, j, T, C, 1, h, HS)[d] : 0.0f;
            Vs[jj][d] = in ? qkv_row(qkv, b, j, T, C, 2, h, HS)[d] : 0.0f;
        }
        __syncthreads();
        if (!active) continue;
        for (int jj = 0; jj < BC; jj++) {
            const int j = j0 + jj;
            if (j > t) break;
            float p;
            if (FROM_ATT) {
                p = att[((long long)bh * T + t) * T + j];
            } else {
                float dot = 0.0f;
#pragma unroll
                for (int d = 0; d < D; d++) dot += Qs[r][d] * Ks[jj][d];
                p = expf(dot * scale - L);
            }
            float dp = 0.0f;
#pragma unroll
            for (int d = 0; d < D; d++) dp += Vs[jj][d] * Gs[r][d];
            const float ds = p * (dp - Dt) * scale;
#pragma unroll
            for (int d = 0; d < D; d++) dq[d] += Ks[jj][d] * ds;
        }
    }
    if (!active) return;
    float* dqr = dqkv + ((long long)b * T + t) * 3 * C + (long long)h * HS;
#pragma unroll
    for (int d = 0; d < D; d++)
        if (d < HS) dqr[d] += dq[d];
}

// Instantiations, named <kernel>_<D>. Tile sizes keep static shared memory under 48 KiB (at
// most 41.5 KiB, in dk/dv for D=64): forward BR=64 query threads and BC=32 keys; dk/dv 64 key
// threads and query tiles of 16; dq 64 query threads and key tiles of 16.
#define ATTENTION_KERNELS(D, KEYS, QTILE)                                                        \
    extern "C" __global__ void __launch_bounds__(64) flash_forward_##D(                         \
        float* out, float* lse, const float* qkv, int T, int C, int NH, float scale) {          \
        flash_forward<D, 64, 32>(out, lse, qkv, T, C, NH, scale);                               \
    }                                                                                           \
    extern "C" __global__ void __launch_bounds__(256) attention_probs_##D(                      \
        float* att, const float* lse, const float* qkv, int T, int C, int NH, float scale) {    \
        attention_probs<D>(att, lse, qkv, T, C, NH, scale);                                     \
    }                                                                                           \
    extern "C" __global__ void __launch_bounds__(64) attention_delta_att_##D(                   \
        float* delta, const float* dout, const float* qkv, const float* att, int T, int C,      \
        int NH) {                                                                               \
        attention_delta_att<D, 64, 32>(delta, dout, qkv, att, T, C, NH);                        \
    }                                                                                           \
    extern "C" __global__ void __launch_bounds__(KEYS) attention_backward_dkdv_##D(             \
        float* dqkv, const float* dout, const float* qkv, const float* att, const float* lse,   \
        const float* delta, int T, int C, int NH, float scale) {                                \
        attention_backward_dkdv<D, KEYS, QTILE, true>(dqkv, dout, qkv, att, lse, delta, T, C,   \
                                                      NH, scale);                               \
    }                                                                                           \
    extern "C" __global__ void __launch_bounds__(KEYS) attention_backward_dq_##D(               \
        float* dqkv, const float* dout, const float* qkv, const float* att, const float* lse,   \
        const float* delta, int T, int C, int NH, float scale) {                                \
        attention_backward_dq<D, KEYS, QTILE, true>(dqkv, dout, qkv, att, lse, delta, T, C, NH, \
                                                    scale);                                     \
    }                                                                                           \
    extern "C" __global__ void __launch_bounds__(KEYS) flash_backward_dkdv_##D(                 \
        float* dqkv, const float* dout, const float* qkv, const float* lse, const float* delta, \
        int T, int C, int NH, float scale) {                                                    \
        attention_backward_dkdv<D, KEYS, QTILE, false>(dqkv, dout, qkv, (const float*)0, lse, delta, T, \
                                                       C, NH, scale);                           \
    }                                                                                           \
    extern "C" __global__ void __launch_bounds__(KEYS) flash_backward_dq_##D(                   \
        float* dqkv, const float* dout, const float* qkv, const float* lse, const float* delta, \
        int T, int C, int NH, float scale) {                                                    \
        attention_backward_dq<D, KEYS, QTILE, false>(dqkv, dout, qkv, (const float*)0, lse, delta, T,   \
                                                     C, NH, scale);                             \
    }

ATTENTION_KERNELS(32, 64, 16)
ATTENTION_KERNELS(64, 64, 16)

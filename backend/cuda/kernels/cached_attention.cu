// Inference attention over a paged KV cache (Kwon et al., "Efficient Memory Management for
// Large Language Model Serving with PagedAttention", 2023), for a batch that mixes prompt
// prefills and one-token decode steps.
//
// The cache of one layer is K, V (NumBlocks, BS, C) float32, heads interleaved as in qkv; the
// key of position p of a sequence is at K[(table[p/BS]*BS + p%BS)*C + h*HS + i], where table is
// the sequence's block table. The host flattens the batch into int32 arrays (block tables
// concatenated; see each kernel) and checks every block id, so the kernels index without checks.
//
// Order of work: kv_cache_write stores every new token's key and value; then
// cached_prefill_<D> serves sequences with more than one new token (tiles of query rows, as
// flash_forward in attention.cu), and cached_decode_<D> + cached_decode_combine_<D> serve
// one-token steps, split over the cached length in chunks of DECODE_CHUNK positions
// (flash-decoding: Dao et al., "Flash-Decoding for long-context inference", 2023) so that a
// single long sequence still fills the GPU. Each output element is reduced in a fixed order:
// deterministic. Scores are scale*(q·k), scale = 1/sqrt(HS).

#define FULL_MASK 0xffffffffu
#define KG 8  // keys per online-softmax step (BC is a multiple of KG)
#define NEG_INF __int_as_float(0xff800000)  // -Inf (NVRTC has no math.h INFINITY)
#define DECODE_CHUNK 128  // positions per split, = the decode kernel's block size

// kv_cache_write copies the key and value of new token n (row n of qkv(N,3C)) to cache slot
// slots[n] (a row of K, V viewed as (NumBlocks*BS, C)); slot -1 means no sequence owns row n.
// Bit-exact copies. Grid-stride over N*C.
extern "C" __global__ void kv_cache_write(float* kc, float* vc, const float* qkv,
                                          const int* slots, int N, int C) {
    const long long total = (long long)N * C;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const int n = (int)(i / C), c = (int)(i % C);
        const int slot = slots[n];
        if (slot < 0) continue;
        const float* row = qkv + (long long)n * 3 * C;
        kc[(long long)slot * C + c] = row[C + c];
        vc[(long long)slot * C + c] = row[2 * C + c];
    }
}

__device__ __forceinline__ long long cache_row(const int* table, int p, int bs) {
    return (long long)table[p / bs] * bs + p % bs;
}

// cached_prefill: items(numItems,4) int32 = (row0, nrows <= BR, pos0, tableOff): query rows
// row0..row0+nrows-1 of qkv, at positions pos0..pos0+nrows-1 of the sequence whose block table
// starts at tables[tableOff]. Query r attends to positions [0, pos0+r]. Grid (numItems, NH),
// block BR: thread per query row with q and the accumulator in registers, key/value tiles of
// BC positions gathered through the block table into shared memory, online softmax.
template <int D, int BR, int BC>
__device__ void cached_prefill(float* out, const float* qkv, const float* kc, const float* vc,
                               const int* items, const int* tables, int C, int NH, int bs,
                               float scale) {
    __shared__ __align__(16) float Ks[BC][D];
    __shared__ __align__(16) float Vs[BC][D];
    const int HS = C / NH;
    const int h = blockIdx.y;
    const int* it = items + 4 * blockIdx.x;
    const int row0 = it[0], nrows = it[1], pos0 = it[2];
    const int* table = tables + it[3];
    const int r = threadIdx.x;
    const bool active = r < nrows;
    const int n = row0 + (active ? r : 0);
    const int pos = pos0 + r;
    float q[D], acc[D];
    const float* qr = qkv + (long long)n * 3 * C + (long long)h * HS;
#pragma unroll
    for (int d = 0; d < D; d++) {
        q[d] = active && d < HS ? qr[d] : 0.0f;
        acc[d] = 0.0f;
    }
    float m = NEG_INF, l = 0.0f;
    const int kEnd = pos0 + nrows;
    for (int j0 = 0; j0 < kEnd; j0 += BC) {
        __syncthreads();
        for (int e = threadIdx.x; e < BC * D; e += BR) {
            const int jj = e / D, d = e % D, p = j0 + jj;
            float kv = 0.0f, vv = 0.0f;
            if (p < kEnd && d < HS) {
                const long long off = cache_row(table, p, bs) * C + (long long)h * HS + d;
                kv = kc[off];
                vv = vc[off];
            }
            Ks[jj][d] = kv;
            Vs[jj][d] = vv;
        }
        __syncthreads();
        if (!active) continue;
        // Keys in groups of KG: scores in registers, then one rescale of the accumulator per
        // group. The first group of tile 0 holds key 0 <= pos, so mt is finite from there on.
        for (int jg = 0; jg < BC && j0 + jg <= pos; jg += KG) {
            float s[KG];
            float mt = m;
#pragma unroll
            for (int k = 0; k < KG; k++) {
                float dot = 0.0f;
#pragma unroll
                for (int d = 0; d < D; d++) dot += q[d] * Ks[jg + k][d];
                s[k] = j0 + jg + k <= pos ? dot * scale : NEG_INF;
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
    float* o = out + (long long)n * C + (long long)h * HS;
#pragma unroll
    for (int d = 0; d < D; d++)
        if (d < HS) o[d] = acc[d] * inv;
}

__device__ float block_max(float v, float* sh) {
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, off));
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : NEG_INF;
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, off));
    return v;
}

__device__ float block_sum(float v, float* sh) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(FULL_MASK, v, off);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(FULL_MASK, v, off);
    return v;
}

// cached_decode: items(numDecode,3) int32 = (row, last, tableOff): the new token in row `row`
// of qkv attends to positions [0, last]. Split s (blockIdx.z) covers positions
// [s*DECODE_CHUNK, min((s+1)*DECODE_CHUNK, last+1)) and writes its partial result to
// partial(numDecode, NH, nsplit, D+2) = (max score m, sum of exp(score-m), D accumulators);
// an empty split writes m = -Inf, sum 0. Grid (numDecode, NH, nsplit), block DECODE_CHUNK:
// thread p scores position p (its key read through the block table), then warp w sums the
// values of positions w, w+4, ... with its lanes over channels, and the 4 warps' sums are
// added in a fixed order.
template <int D>
__device__ void cached_decode(float* partial, const float* qkv, const float* kc,
                              const float* vc, const int* items, const int* tables, int C, int NH,
                              int bs, float scale, int nsplit) {
    const int NW = DECODE_CHUNK / 32;
    const int PER_LANE = (D + 31) / 32;
    __shared__ float qs[D];
    __shared__ float w[DECODE_CHUNK];
    __shared__ float red[NW][D];
    __shared__ float sh[32];
    const int HS = C / NH;
    const int h = blockIdx.y, split = blockIdx.z;
    const int* it = items + 3 * blockIdx.x;
    const int n = it[0], last = it[1];
    const int* table = tables + it[2];
    const int start = split * DECODE_CHUNK;
    const int end = min(start + DECODE_CHUNK, last + 1);
    float* part = partial + (((long long)blockIdx.x * NH + h) * nsplit + split) * (D + 2);
    if (start >= end) {  // the whole block leaves here
        for (int d = threadIdx.x; d < D + 2; d += blockDim.x)
            part[d] = d == 0 ? NEG_INF : 0.0f;
        return;
    }
    const float* qr = qkv + (long long)n * 3 * C + (long long)h * HS;
    for (int d = threadIdx.x; d < D; d += blockDim.x) qs[d] = d < HS ? qr[d] : 0.0f;
    __syncthreads();
    const int p = start + threadIdx.x;
    float s = NEG_INF;
    if (p < end) {
        const float* k = kc + cache_row(table, p, bs) * C + (long long)h * HS;
        float dot = 0.0f;
        for (int d = 0; d < HS; d++) dot += qs[d] * k[d];
        s = dot * scale;
    }
    const float m = block_max(s, sh);  // finite: position start < end is scored
    const float e = p < end ? expf(s - m) : 0.0f;
    w[threadIdx.x] = e;
    const float l = block_sum(e, sh);  // its barriers also publish w
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float acc[PER_LANE];
#pragma unroll
    for (int k = 0; k < PER_LANE; k++) acc[k] = 0.0f;
    for (int pp = warp; start + pp < end; pp += NW) {
        const float* v = vc + cache_row(table, start + pp, bs) * C + (long long)h * HS;
        const float wp = w[pp];
#pragma unroll
        for (int k = 0; k < PER_LANE; k++) {
            const int d = lane + 32 * k;
            if (d < HS) acc[k] += wp * v[d];
        }
    }
#pragma unroll
    for (int k = 0; k < PER_LANE; k++) {
        const int d = lane + 32 * k;
        if (d < D) red[warp][d] = acc[k];
    }
    __syncthreads();
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float a = red[0][d];
#pragma unroll
        for (int k = 1; k < NW; k++) a += red[k][d];
        part[2 + d] = a;
    }
    if (threadIdx.x == 0) {
        part[0] = m;
        part[1] = l;
    }
}

// cached_decode_combine merges the splits of each (token, head) in increasing order:
// M = max m_s, L = sum l_s*exp(m_s-M), out = sum acc_s*exp(m_s-M) / L. Grid (numDecode, NH),
// block D (thread per channel).
template <int D>
__device__ void cached_decode_combine(float* out, const float* partial, const int* items, int C,
                                      int NH, int nsplit) {
    const int HS = C / NH;
    const int h = blockIdx.y;
    const int* it = items + 3 * blockIdx.x;
    const int n = it[0], last = it[1];
    const int ns = (last + DECODE_CHUNK) / DECODE_CHUNK;  // ceil((last+1)/DECODE_CHUNK)
    const float* part = partial + ((long long)blockIdx.x * NH + h) * nsplit * (D + 2);
    const int d = threadIdx.x;
    if (d >= HS) return;
    float M = NEG_INF;
    for (int s = 0; s < ns; s++) M = fmaxf(M, part[s * (D + 2)]);
    float L = 0.0f, o = 0.0f;
    for (int s = 0; s < ns; s++) {
        const float* ps = part + s * (D + 2);
        const float f = expf(ps[0] - M);
        L += ps[1] * f;
        o += ps[2 + d] * f;
    }
    out[(long long)n * C + (long long)h * HS + d] = o / L;
}

// Instantiations, named <kernel>_<D> for a head-size bound D in {32, 64}: prefill tiles of 64
// query rows and 32 positions.
#define CACHED_KERNELS(D)                                                                      \
    extern "C" __global__ void __launch_bounds__(64) cached_prefill_##D(                       \
        float* out, const float* qkv, const float* kc, const float* vc, const int* items,      \
        const int* tables, int C, int NH, int bs, float scale) {                               \
        cached_prefill<D, 64, 32>(out, qkv, kc, vc, items, tables, C, NH, bs, scale);          \
    }                                                                                          \
    extern "C" __global__ void __launch_bounds__(DECODE_CHUNK) cached_decode_##D(              \
        float* partial, const float* qkv, const float* kc, const float* vc, const int* items,  \
        const int* tables, int C, int NH, int bs, float scale, int nsplit) {                   \
        cached_decode<D>(partial, qkv, kc, vc, items, tables, C, NH, bs, scale, nsplit);       \
    }                                                                                          \
    extern "C" __global__ void __launch_bounds__(D) cached_decode_combine_##D(                 \
        float* out, const float* partial, const int* items, int C, int NH, int nsplit) {       \
        cached_decode_combine<D>(out, partial, items, C, NH, nsplit);                          \
    }

CACHED_KERNELS(32)
CACHED_KERNELS(64)

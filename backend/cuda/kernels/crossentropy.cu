// Fused softmax and cross-entropy over the vocabulary, after llm.c's crossentropy_forward.cu
// and crossentropy_softmax_backward.cu. float32 logits and probabilities; the sum of the
// exponentials is taken in float64 as in the CPU reference. Targets are int32: IgnoreIndex
// (-100) gives loss 0 and a zero gradient row; a target outside [0,V) gives a NaN loss (or a NaN
// gradient row) and is recorded in err(2), int32: err[0] = row+1 of the first bad row (0 while
// none), err[1] = its target. The host reads err to record the error.

#define FULL_MASK 0xffffffffu
#define NEG_INF __int_as_float(0xff800000)  // -Inf (NVRTC has no math.h INFINITY)
#define IGNORE_INDEX (-100)

__device__ void report(int* err, int row, int id) {
    if (atomicCAS(err, 0, row + 1) == 0) err[1] = id;
}

// block_max and block_sum reduce over the whole block (blockDim a multiple of 32, at most
// 1024) in a fixed order, and return the result to every thread.
__device__ float block_max(float v) {
    __shared__ float sh[32];
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, off));
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    __syncthreads();  // sh may still be read by an earlier call
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : NEG_INF;
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, off));
    return v;
}

__device__ double block_sum(double v) {
    __shared__ double sh[32];
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(FULL_MASK, v, off);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(FULL_MASK, v, off);
    return v;
}

// crossentropy_forward: for row n of logits(N,V), probs = softmax(row) and
// losses[n] = log(sum(exp(x-max))) + max - x[target] = -log(probs[target]). One block per row.
extern "C" __global__ void crossentropy_forward(float* losses, float* probs, const float* logits,
                                                const int* targets, int N, int V, int* err) {
    const int n = blockIdx.x;
    const float* x = logits + (long long)n * V;
    float mx = NEG_INF;
    for (int i = threadIdx.x; i < V; i += blockDim.x) mx = fmaxf(mx, x[i]);
    mx = block_max(mx);
    double sum = 0.0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) sum += (double)expf(x[i] - mx);
    sum = block_sum(sum);
    const float inv = (float)(1.0 / sum);
    float* p = probs + (long long)n * V;
    for (int i = threadIdx.x; i < V; i += blockDim.x) p[i] = expf(x[i] - mx) * inv;
    if (threadIdx.x == 0) {
        const int t = targets[n];
        if (t == IGNORE_INDEX) {
            losses[n] = 0.0f;
        } else if (t < 0 || t >= V) {
            losses[n] = __int_as_float(0x7fc00000);  // NaN
            report(err, n, t);
        } else {
            losses[n] = (float)(log(sum) + (double)mx - (double)x[t]);
        }
    }
}

// crossentropy_backward writes (not adds) dlogits(N,V) = (probs - onehot(target)) * scale,
// rounded as the CPU reference: p*scale, then minus scale at the target. Ignored rows get 0.
// dlogits may alias probs (each element is read, then written, by one thread). One block per row.
extern "C" __global__ void crossentropy_backward(float* dlogits, const float* probs,
                                                 const int* targets, int N, int V, float scale,
                                                 int* err) {
    const int n = blockIdx.x;
    const int t = targets[n];
    const long long off = (long long)n * V;
    if (t == IGNORE_INDEX) {
        for (int i = threadIdx.x; i < V; i += blockDim.x) dlogits[off + i] = 0.0f;
        return;
    }
    if (t < 0 || t >= V) {
        for (int i = threadIdx.x; i < V; i += blockDim.x) dlogits[off + i] = __int_as_float(0x7fc00000);
        if (threadIdx.x == 0) report(err, n, t);
        return;
    }
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float d = __fmul_rn(probs[off + i], scale);
        dlogits[off + i] = i == t ? __fsub_rn(d, scale) : d;
    }
}

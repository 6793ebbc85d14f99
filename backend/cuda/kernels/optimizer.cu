// AdamW and the sum of squares for the global gradient norm, after llm.c's adamw.cu and
// global_norm.cu; the norm is made deterministic with a two-pass reduction (no float atomics).

#define FULL_MASK 0xffffffffu

// adamw_update: one AdamW step (Loshchilov and Hutter 2019, as torch.optim.AdamW) over n
// parameters: g = grads*gradScale, m = b1*m + (1-b1)*g, v = b2*v + (1-b2)*g*g,
// p -= lr*((m/c1)/(sqrt(v/c2)+eps) + wd*p), where c1 = 1-b1^t and c2 = 1-b2^t come from the
// host (computed as the CPU reference does). Grid-stride over n.
extern "C" __global__ void adamw_update(float* params, const float* grads, float* m, float* v,
                                        int n, float lr, float b1, float b2, float eps, float wd,
                                        float c1, float c2, float gradScale) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        float g = grads[i] * gradScale;
        float mi = b1 * m[i] + (1.0f - b1) * g;
        float vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float mhat = mi / c1;
        float vhat = vi / c2;
        float p = params[i];
        params[i] = p - lr * (mhat / (sqrtf(vhat) + eps) + wd * p);
    }
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

// sum_squares_partial: partial[blockIdx.x] = the float64 sum of in[i]^2 over the elements
// i = blockIdx.x*blockDim.x + threadIdx.x + k*blockDim.x*gridDim.x. The host fixes the grid
// from n alone, so the result does not depend on the device.
extern "C" __global__ void sum_squares_partial(double* partial, const float* in, int n) {
    double s = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        double x = (double)in[i];
        s += x * x;
    }
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// sum_squares_final: out[0] += the sum of partial(G), in a fixed order. One block.
extern "C" __global__ void sum_squares_final(float* out, const double* partial, int G) {
    double s = 0.0;
    for (int i = threadIdx.x; i < G; i += blockDim.x) s += partial[i];
    s = block_sum(s);
    if (threadIdx.x == 0) out[0] += (float)s;
}

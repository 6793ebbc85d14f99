// Layer normalisation over the last dimension, as torch.nn.LayerNorm (eps 1e-5, biased
// variance), after llm.c's layernorm_forward.cu (kernel 3: one warp per row) and
// layernorm_backward.cu, with the weight and bias gradients reduced deterministically.
// float32; mean and variance in float32 as the CPU reference and llm.c.

#define FULL_MASK 0xffffffffu

__device__ float warp_sum(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(FULL_MASK, v, off);
    return v;
}

// layernorm_forward: for each row n of inp(N,C), mean = sum(x)/C, var = sum((x-mean)^2)/C,
// rstd = 1/sqrt(var+1e-5), out = (x-mean)*rstd*weight + bias; saves mean(N) and rstd(N).
// One warp per row; grid ceil(N/(blockDim/32)), blockDim a multiple of 32.
extern "C" __global__ void layernorm_forward(float* out, float* mean, float* rstd,
                                             const float* inp, const float* weight,
                                             const float* bias, int N, int C) {
    const int lane = threadIdx.x % 32;
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= N) return;  // whole warps leave together
    const float* x = inp + (long long)row * C;
    float sum = 0.0f;
    for (int i = lane; i < C; i += 32) sum += x[i];
    const float m = warp_sum(sum) / (float)C;
    float var = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float d = x[i] - m;
        var += d * d;
    }
    var = warp_sum(var) / (float)C;
    const float s = (float)(1.0 / sqrt((double)(var + 1e-5f)));
    float* o = out + (long long)row * C;
    for (int i = lane; i < C; i += 32) o[i] = (x[i] - m) * s * weight[i] + bias[i];
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = s;
    }
}

// layernorm_backward_input: for each row, with norm = (x-mean)*rstd and dnorm = weight*dout,
// dinp += (dnorm - mean(dnorm) - norm*mean(dnorm*norm)) * rstd. One warp per row.
extern "C" __global__ void layernorm_backward_input(float* dinp, const float* dout,
                                                    const float* inp, const float* weight,
                                                    const float* mean, const float* rstd,
                                                    int N, int C) {
    const int lane = threadIdx.x % 32;
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= N) return;
    const long long off = (long long)row * C;
    const float* d = dout + off;
    const float* x = inp + off;
    const float m = mean[row], s = rstd[row];
    float a = 0.0f, b = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float norm = (x[i] - m) * s;
        float dnorm = weight[i] * d[i];
        a += dnorm;
        b += dnorm * norm;
    }
    const float dnormMean = warp_sum(a) / (float)C;
    const float dnormNormMean = warp_sum(b) / (float)C;
    float* dx = dinp + off;
    for (int i = lane; i < C; i += 32) {
        float norm = (x[i] - m) * s;
        float dnorm = weight[i] * d[i];
        dx[i] += (dnorm - dnormMean - norm * dnormNormMean) * s;
    }
}

// layernorm_backward_params: dweight(C) += sum over rows of norm*dout, dbias(C) += sum of dout.
// Deterministic, without atomics: block (32,32) owns 32 columns; thread (x,y) sums rows y,
// y+32, ... and the 32 partials of a column are added in a fixed tree. Grid ceil(C/32).
extern "C" __global__ void layernorm_backward_params(float* dweight, float* dbias,
                                                     const float* dout, const float* inp,
                                                     const float* mean, const float* rstd,
                                                     int N, int C) {
    __shared__ float pw[32][33], pb[32][33];
    const int x = threadIdx.x, y = threadIdx.y;
    const int col = blockIdx.x * 32 + x;
    float sw = 0.0f, sb = 0.0f;
    if (col < C) {
        for (int n = y; n < N; n += 32) {
            long long i = (long long)n * C + col;
            float d = dout[i];
            sw += (inp[i] - mean[n]) * rstd[n] * d;
            sb += d;
        }
    }
    pw[y][x] = sw;
    pb[y][x] = sb;
    __syncthreads();
    for (int stride = 16; stride > 0; stride >>= 1) {
        if (y < stride) {
            pw[y][x] += pw[y + stride][x];
            pb[y][x] += pb[y + stride][x];
        }
        __syncthreads();
    }
    if (y == 0 && col < C) {
        dweight[col] += pw[0][x];
        dbias[col] += pb[0][x];
    }
}

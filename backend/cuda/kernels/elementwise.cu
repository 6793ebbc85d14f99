// Elementwise kernels and the bias kernels of the matmul: GELU, residual, add_bias,
// bias_backward. After llm.c's gelu.cu, residual.cu and matmul.cu (matmul_backward_bias).
// All float32; every backward kernel ADDS into its gradient (+=). Indices are 64-bit so that
// N*OC beyond 2^31 elements is safe. Grid-stride loops: any grid size is correct.

#define GRID_STRIDE(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

// GELU_SCALE is sqrt(2/pi) rounded to float32, as the CPU reference's geluScale.
#define GELU_SCALE 0.7978845608028654f

// gelu_forward: out = 0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3))) over n elements (Hugging
// Face's gelu_new). Where tanh is -1 the result is 0, the limit at -Inf (0.5*x*0 would be NaN
// for x = -Inf or -huge). out may alias inp.
extern "C" __global__ void gelu_forward(float* out, const float* inp, int n) {
    GRID_STRIDE(i, n) {
        float x = inp[i];
        float cube = 0.044715f * x * x * x;
        float th = tanhf(GELU_SCALE * (x + cube));
        out[i] = th == -1.0f ? 0.0f : 0.5f * x * (1.0f + th);
    }
}

// gelu_backward: dinp += dout * gelu'(x), with
// gelu'(x) = 0.5*(1+tanh(u)) + 0.5*x*sech^2(u)*sqrt(2/pi)*(1+3*0.044715*x^2), u the tanh
// argument. sech^2 is 1/cosh^2, which is 0 where cosh overflows; the second term is then left
// out, since x*x may be Inf there (as the CPU reference does).
extern "C" __global__ void gelu_backward(float* dinp, const float* inp, const float* dout, int n) {
    GRID_STRIDE(i, n) {
        float x = inp[i];
        float cube = 0.044715f * x * x * x;
        float u = GELU_SCALE * (x + cube);
        float th = tanhf(u);
        float ch = coshf(u);
        float sech2 = 1.0f / (ch * ch);
        float local = 0.5f * (1.0f + th);
        if (sech2 != 0.0f) {
            local += x * 0.5f * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        }
        dinp[i] += local * dout[i];
    }
}

// residual_forward: out = a + b over n elements; out may alias a or b.
extern "C" __global__ void residual_forward(float* out, const float* a, const float* b, int n) {
    GRID_STRIDE(i, n) { out[i] = a[i] + b[i]; }
}

// residual_backward: da += dout, db += dout over n elements.
extern "C" __global__ void residual_backward(float* da, float* db, const float* dout, int n) {
    GRID_STRIDE(i, n) {
        float d = dout[i];
        da[i] += d;
        db[i] += d;
    }
}

// add_bias: out(N,OC) += bias(OC) on every row, after the bias-free GEMM.
extern "C" __global__ void add_bias(float* out, const float* bias, int N, int OC) {
    long long total = (long long)N * OC;
    GRID_STRIDE(i, total) { out[i] += bias[i % OC]; }
}

// bias_backward: dbias(OC) += the column sums of dout(N,OC). Deterministic, without atomics:
// block (32,32) owns 32 columns; thread (x,y) sums rows y, y+32, ... of column x in four
// independent chains (for memory-level parallelism), then the 32 partial sums of a column are
// added in a fixed tree. Grid: ceil(OC/32) blocks.
extern "C" __global__ void bias_backward(float* dbias, const float* dout, int N, int OC) {
    __shared__ float part[32][33];
    const int x = threadIdx.x, y = threadIdx.y;
    const int col = blockIdx.x * 32 + x;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    if (col < OC) {
        int n = y;
        for (; n + 96 < N; n += 128) {
            s0 += dout[(long long)n * OC + col];
            s1 += dout[(long long)(n + 32) * OC + col];
            s2 += dout[(long long)(n + 64) * OC + col];
            s3 += dout[(long long)(n + 96) * OC + col];
        }
        for (; n < N; n += 32) s0 += dout[(long long)n * OC + col];
    }
    part[y][x] = (s0 + s1) + (s2 + s3);
    __syncthreads();
    for (int stride = 16; stride > 0; stride >>= 1) {
        if (y < stride) part[y][x] += part[y + stride][x];
        __syncthreads();
    }
    if (y == 0 && col < OC) dbias[col] += part[0][x];
}

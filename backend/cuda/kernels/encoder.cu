// The embedding kernels: encoder_forward, the deterministic encoder_backward (encoder_links
// and encoder_backward) and gather_rows. After llm.c's encoder_forward.cu and
// encoder_backward.cu, with the backward made deterministic without a host-side sort.
//
// Ids (tokens, positions) are int32 on the device; the host cannot check them without a sync, so
// the kernels do: an id outside [0, limit) is never used to index memory. Its row gets NaN
// (forward) or is skipped (backward), and the first offending row is recorded in err(3), int32:
// err[0] = row+1 (0 while no error), err[1] = the id, err[2] = which id (0 the token, 1 the
// position). The host reads err to record the error.

#define GRID_STRIDE(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

// report records the first bad id: the first thread to swap err[0] from 0 writes the id and
// its kind (0 token, 1 position).
__device__ void report(int* err, int row, int id, int kind) {
    if (atomicCAS(err, 0, row + 1) == 0) {
        err[1] = id;
        err[2] = kind;
    }
}

// encoder_forward: out(N,C) = wte[tokens[n]] + wpe[positions[n]]; wte (V,C), wpe (maxT,C).
extern "C" __global__ void encoder_forward(float* out, const int* tokens, const int* positions,
                                           const float* wte, const float* wpe, int N, int C,
                                           int V, int maxT, int* err) {
    long long total = (long long)N * C;
    GRID_STRIDE(i, total) {
        int n = (int)(i / C), c = (int)(i % C);
        int tok = tokens[n], pos = positions[n];
        bool badTok = tok < 0 || tok >= V, badPos = pos < 0 || pos >= maxT;
        if (badTok || badPos) {
            out[i] = __int_as_float(0x7fc00000);  // NaN
            if (c == 0) report(err, n, badTok ? tok : pos, badTok ? 0 : 1);
            continue;
        }
        out[i] = wte[(long long)tok * C + c] + wpe[(long long)pos * C + c];
    }
}

// encoder_links prepares the deterministic backward. For each id array (blockIdx.y 0: tokens
// with limit V, 1: positions with limit maxT) and each row n it writes, into links(2,2,N):
//
//	links[y][0][n] = the next row m > n with the same id, or N if none;
//	links[y][1][n] = 1 if no row m < n has the same id (n heads its chain), else 0;
//	                 -1 if the id is out of range (the row is skipped and reported).
//
// One thread per row scans all N ids, tiled through shared memory: O(N^2) comparisons, which
// at N = 16384 is a few microseconds. Grid (ceil(N/256), 2), block 256.
extern "C" __global__ void encoder_links(int* links, const int* tokens, const int* positions,
                                         int N, int V, int maxT, int* err) {
    __shared__ int tile[256];
    const int* ids = blockIdx.y == 0 ? tokens : positions;
    const int limit = blockIdx.y == 0 ? V : maxT;
    int* next = links + (long long)blockIdx.y * 2 * N;
    int* head = next + N;
    const int n = blockIdx.x * blockDim.x + threadIdx.x;
    const int id = n < N ? ids[n] : 0;
    int nxt = N;
    bool first = true;
    for (int base = 0; base < N; base += blockDim.x) {
        __syncthreads();
        if (base + threadIdx.x < N) tile[threadIdx.x] = ids[base + threadIdx.x];
        __syncthreads();
        const int len = min((int)blockDim.x, N - base);
        for (int j = 0; j < len; j++) {
            if (tile[j] == id) {
                int m = base + j;
                if (m < n) first = false;
                if (m > n && m < nxt) nxt = m;
            }
        }
    }
    if (n >= N) return;
    next[n] = nxt;
    if (id < 0 || id >= limit) {
        head[n] = -1;
        report(err, n, id, blockIdx.y);
    } else {
        head[n] = first ? 1 : 0;
    }
}

// encoder_backward adds dout(N,C) into dwte(V,C) (blockIdx.z 0) and dwpe(maxT,C) (blockIdx.z
// 1), deterministically: the block of the first row with an id walks that id's chain of rows in
// increasing order, so each gradient row is added to in the order of the CPU reference
// (((dw + dout[m1]) + dout[m2]) + ...) by a single thread per channel. Grid (N, ceil(C/256), 2),
// block 256.
extern "C" __global__ void encoder_backward(float* dwte, float* dwpe, const float* dout,
                                            const int* tokens, const int* positions,
                                            const int* links, int N, int C) {
    const int n = blockIdx.x;
    const int z = blockIdx.z;
    const int* next = links + (long long)z * 2 * N;
    const int* head = next + N;
    if (head[n] != 1) return;
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const int id = (z == 0 ? tokens : positions)[n];
    float* dw = (z == 0 ? dwte : dwpe) + (long long)id * C + c;
    float acc = *dw;
    for (int m = n; m < N; m = next[m]) acc += dout[(long long)m * C + c];
    *dw = acc;
}

// gather_rows: out(n,C) row i = inp row idx[i] (idx int32, checked on the host).
extern "C" __global__ void gather_rows(float* out, const float* inp, const int* idx, int n, int C) {
    long long total = (long long)n * C;
    GRID_STRIDE(i, total) {
        long long r = i / C;
        int c = (int)(i % C);
        out[i] = inp[(long long)idx[r] * C + c];
    }
}

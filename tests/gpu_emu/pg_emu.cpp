// pg_emu.cpp -- the CPU stand-in for a GPU that pg_emu.h declares: a fiber per GPU thread of
// a block, a scheduler that runs them until each waits at a barrier, and host-memory
// versions of the runtime calls the library makes.  x86-64 System V only (the fiber switch
// is a few instructions of assembly).
#include "pg_emu.h"

#include <stdio.h>
#include <stdlib.h>

#include <vector>

#ifndef PG_WARP
#define PG_WARP 32
#endif

// ---- fibers ---------------------------------------------------------------------------------

// pg_emu_switch(&save_sp, next_sp): push the callee-saved registers, save rsp, load the
// other fiber's rsp, pop its registers and return into it.
asm(".text\n"
    ".globl pg_emu_switch\n"
    ".type pg_emu_switch,@function\n"
    "pg_emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size pg_emu_switch, .-pg_emu_switch\n");
extern "C" void pg_emu_switch(void **save_sp, void *next_sp);

enum { RUN, WAIT_WARP, WAIT_BLOCK, DONE };
enum { STACK_BYTES = 256 << 10, MAX_THREADS = 1024 };

struct fiber {
    pg_emu_thread t;
    void *sp;
    int state;
    char *stack;
};

pg_emu_thread *pg_emu_cur;
dim3 pg_emu_block_idx, pg_emu_block_dim, pg_emu_grid_dim;

static fiber g_f[MAX_THREADS];
static fiber *g_cur;
static void *g_sched_sp;
static std::function<void()> *g_body;
static float g_slot[MAX_THREADS];
static int g_error;              // cudaErrorLaunchFailure after a deadlock, until read
static char g_msg[256];
static long g_graph_launches;

static void fiber_main() {
    (*g_body)();
    g_cur->state = DONE;
    pg_emu_switch(&g_cur->sp, g_sched_sp);   // never resumed
    abort();
}

static void fiber_init(fiber *f) {
    if (!f->stack) f->stack = (char *)malloc(STACK_BYTES);
    // top of stack, 16-aligned: [pad][return address = fiber_main][rbp rbx r12 r13 r14 r15]
    uintptr_t top = ((uintptr_t)(f->stack + STACK_BYTES)) & ~(uintptr_t)15;
    void **sp = (void **)(top - 64);
    for (int i = 0; i < 6; i++) sp[i] = 0;
    sp[6] = (void *)&fiber_main;
    sp[7] = 0;
    f->sp = sp;
    f->state = RUN;
}

static void wait(int state) {
    g_cur->state = state;
    pg_emu_switch(&g_cur->sp, g_sched_sp);
}

void pg_emu_syncthreads() { wait(WAIT_BLOCK); }

static int lane_of(int i) { return i % PG_WARP; }

float pg_emu_shfl_xor(float v, int mask) {
    const int i = (int)(g_cur - g_f), base = i - lane_of(i);
    g_slot[i] = v;
    wait(WAIT_WARP);                                   // every lane has written
    const int j = base + (lane_of(i) ^ mask);
    const float r = g_slot[j];
    wait(WAIT_WARP);                                   // every lane has read
    return r;
}

float pg_emu_shfl(float v, int src) {
    const int i = (int)(g_cur - g_f), base = i - lane_of(i);
    g_slot[i] = v;
    wait(WAIT_WARP);
    const float r = g_slot[base + src % PG_WARP];
    wait(WAIT_WARP);
    return r;
}

// Run one block: fibers until all are done; release a warp when all its live lanes wait at
// a warp barrier, the block when all live threads wait at __syncthreads.
static bool run_block(int n) {
    for (int i = 0; i < n; i++) {
        g_f[i].t.tid = dim3((unsigned)(i % pg_emu_block_dim.x), (unsigned)(i / pg_emu_block_dim.x), 1);
        fiber_init(&g_f[i]);
    }
    for (;;) {
        for (int i = 0; i < n; i++)
            if (g_f[i].state == RUN) {
                g_cur = &g_f[i];
                pg_emu_cur = &g_f[i].t;
                pg_emu_switch(&g_sched_sp, g_f[i].sp);
            }
        int done = 0, block_wait = 0, released = 0;
        for (int i = 0; i < n; i++) done += g_f[i].state == DONE, block_wait += g_f[i].state == WAIT_BLOCK;
        if (done == n) return true;
        for (int w = 0; w < n; w += PG_WARP) {
            int waiting = 0, live = 0;
            for (int i = w; i < w + PG_WARP && i < n; i++) {
                live += g_f[i].state != DONE;
                waiting += g_f[i].state == WAIT_WARP;
            }
            if (waiting && waiting == live) {
                for (int i = w; i < w + PG_WARP && i < n; i++) if (g_f[i].state == WAIT_WARP) g_f[i].state = RUN;
                released = 1;
            } else if (waiting) {
                snprintf(g_msg, sizeof g_msg, "warp %d: %d of %d live lanes at a shuffle (divergence)", w / PG_WARP,
                         waiting, live);
            }
        }
        if (!released && block_wait && block_wait == n - done) {
            for (int i = 0; i < n; i++) if (g_f[i].state == WAIT_BLOCK) g_f[i].state = RUN;
            released = 1;
        }
        if (!released) {
            if (!g_msg[0]) snprintf(g_msg, sizeof g_msg, "deadlock: %d of %d threads at __syncthreads", block_wait, n - done);
            return false;
        }
    }
}

// While a stream capture is open, launches and copies are recorded instead of run; a graph
// launch replays them in order (a copy reads its source when replayed, as a graph's
// memcpy node does).
typedef std::vector<std::function<void()>> op_list;
static op_list *g_capture;

static void launch_now(dim3 grid, dim3 block, const std::function<void()> &body);

void pg_emu_launch(dim3 grid, dim3 block, std::function<void()> body) {
    if (g_capture) {
        g_capture->push_back([=]() { launch_now(grid, block, body); });
        return;
    }
    launch_now(grid, block, body);
}

static void launch_now(dim3 grid, dim3 block, const std::function<void()> &body) {
    const int n = (int)(block.x * block.y * block.z);
    if (n > MAX_THREADS || n % PG_WARP) {
        g_error = cudaErrorLaunchFailure;
        snprintf(g_msg, sizeof g_msg, "block of %d threads", n);
        return;
    }
    pg_emu_grid_dim = grid;
    pg_emu_block_dim = block;
    g_body = const_cast<std::function<void()> *>(&body);
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                pg_emu_block_idx = dim3(x, y, z);
                if (!run_block(n)) {
                    fprintf(stderr, "pg_emu: block (%u,%u,%u): %s\n", x, y, z, g_msg);
                    g_error = cudaErrorLaunchFailure;
                    return;
                }
            }
}

// ---- runtime --------------------------------------------------------------------------------

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorLaunchFailure: return g_msg[0] ? g_msg : "launch failure";
    default: return "unknown error";
    }
}

cudaError_t cudaGetLastError() {
    cudaError_t e = g_error;
    g_error = cudaSuccess;
    return e;
}

// PG_EMU_MEM bytes of "device memory" (default 8 GiB): allocations beyond it fail.
static size_t g_used;
static size_t mem_total() {
    const char *s = getenv("PG_EMU_MEM");
    return s ? (size_t)strtoull(s, NULL, 10) : ((size_t)8 << 30);
}

cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
cudaError_t cudaSetDevice(int) { return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CPU emulation (warp %d)", PG_WARP);
    p->major = 0; p->minor = 0; p->multiProcessorCount = 1; p->warpSize = PG_WARP;
    return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int *v) { *v = 0; return cudaSuccess; }
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    *total_b = mem_total();
    *free_b = *total_b > g_used ? *total_b - g_used : 0;
    return cudaSuccess;
}
cudaError_t cudaMalloc(void **p, size_t n) {
    *p = NULL;
    if (g_used + n > mem_total()) return cudaErrorMemoryAllocation;
    size_t *b = (size_t *)malloc(n + 16);
    if (!b) return cudaErrorMemoryAllocation;
    b[0] = n;
    memset(b + 2, 0xA5, n);   // garbage, as fresh device memory
    g_used += n;
    *p = b + 2;
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    size_t *b = (size_t *)p - 2;
    g_used -= b[0];
    free(b);
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t n) { *p = malloc(n); return *p ? cudaSuccess : cudaErrorMemoryAllocation; }
cudaError_t cudaFreeHost(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, int) { memcpy(d, s, n); return cudaSuccess; }
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, int, cudaStream_t) {
    if (g_capture) g_capture->push_back([=]() { memcpy(d, s, n); });
    else memcpy(d, s, n);
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, int) { *s = (cudaStream_t)1; return cudaSuccess; }
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaGetLastError(); }
cudaError_t cudaStreamBeginCapture(cudaStream_t, int) {
    if (g_capture) return cudaErrorNotSupported;
    g_capture = new op_list;
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *g) {
    *g = (cudaGraph_t)g_capture;
    g_capture = NULL;
    return *g ? cudaSuccess : cudaErrorNotSupported;
}
cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long) {
    *e = (cudaGraphExec_t) new op_list(*(op_list *)g);
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t) {
    for (auto &op : *(op_list *)e) op();
    g_graph_launches++;
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) { delete (op_list *)g; return cudaSuccess; }
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) { delete (op_list *)e; return cudaSuccess; }

// Test hook: graph replays so far (tests check the decode path really replays).
extern "C" __attribute__((visibility("default"))) long pg_emu_graph_launches(void) { return g_graph_launches; }

/*
 * failalloc.c — an LD_PRELOAD shim that fails the Nth allocation a test asks for
 * (failalloc.h), so a test can walk every allocation of one request and check that the
 * daemon answers and keeps serving when each one fails.
 *
 * It wraps malloc, calloc, realloc, aligned_alloc, posix_memalign and memalign, and passes
 * every call on to the next definition (glibc's, or the sanitizer runtime's in an ASan
 * build: run that with ASAN_OPTIONS=verify_asan_link_order=0). free is wrapped only to
 * ignore the few blocks handed out from a static arena while dlsym itself allocates, before
 * the real functions are known. The control block is mapped at load time from the file
 * named by FAILALLOC_CTL; without it the shim counts nothing.
 */
#include "failalloc.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static void *(*real_aligned_alloc)(size_t, size_t);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_memalign)(size_t, size_t);

static failalloc_ctl *ctl;
static int resolving;

/* Blocks for dlsym's own allocations while the real functions are looked up. */
static _Alignas(64) unsigned char arena[16384];
static size_t arena_used;

static int in_arena(const void *p)
{
    return (const unsigned char *)p >= arena && (const unsigned char *)p < arena + sizeof arena;
}

static void *arena_alloc(size_t n)
{
    n = (n + 63) & ~(size_t)63;
    if (n > sizeof arena - arena_used)
        return NULL;
    void *p = arena + arena_used;
    arena_used += n;
    return p;
}

static void resolve(void)
{
    if (real_malloc || resolving)
        return;
    resolving = 1;
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    real_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    real_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    real_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    resolving = 0;
}

__attribute__((constructor)) static void failalloc_init(void)
{
    resolve();
    const char *path = getenv("FAILALLOC_CTL");
    if (!path)
        return;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return;
    void *m = mmap(NULL, FAILALLOC_CTL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m != MAP_FAILED)
        ctl = m;
}

/* 1 when this allocation is the one to fail. */
static int should_fail(void)
{
    if (!ctl)
        return 0;
    long nth = atomic_load_explicit(&ctl->nth, memory_order_relaxed);
    if (nth <= 0)
        return 0;
    if (atomic_fetch_add(&ctl->count, 1) + 1 != nth)
        return 0;
    atomic_fetch_add(&ctl->failed, 1);
    errno = ENOMEM;
    return 1;
}

void *malloc(size_t n)
{
    resolve();
    if (!real_malloc)
        return arena_alloc(n);
    return should_fail() ? NULL : real_malloc(n);
}

void *calloc(size_t k, size_t n)
{
    resolve();
    if (!real_calloc) {
        if (n && k > SIZE_MAX / n)
            return NULL;
        return arena_alloc(k * n); /* static storage starts zeroed */
    }
    return should_fail() ? NULL : real_calloc(k, n);
}

void *realloc(void *p, size_t n)
{
    resolve();
    if (in_arena(p)) {
        void *q = malloc(n);
        size_t left = (size_t)(arena + sizeof arena - (unsigned char *)p);
        if (q)
            memcpy(q, p, n < left ? n : left);
        return q;
    }
    if (!real_realloc)
        return arena_alloc(n);
    return n && should_fail() ? NULL : real_realloc(p, n);
}

void free(void *p)
{
    if (!p || in_arena(p))
        return;
    resolve();
    if (real_free)
        real_free(p);
}

void *aligned_alloc(size_t a, size_t n)
{
    resolve();
    return should_fail() ? NULL : real_aligned_alloc(a, n);
}

int posix_memalign(void **out, size_t a, size_t n)
{
    resolve();
    return should_fail() ? ENOMEM : real_posix_memalign(out, a, n);
}

void *memalign(size_t a, size_t n)
{
    resolve();
    return should_fail() ? NULL : real_memalign(a, n);
}

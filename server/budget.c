/*
 * budget.c — the process-wide memory budget of budget.h: one atomic counter of bytes
 * charged, compared with the limit by compare-and-swap so concurrent charges cannot
 * overshoot it together; a thread-local pointer names the request a thread works for.
 */
#include "budget.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic uint64_t limit_bytes;
static _Atomic int64_t used_bytes; /* signed: a standing release may come before its charge */
static _Thread_local budget_ticket *current;

void budget_set_limit(uint64_t bytes)
{
    atomic_store(&limit_bytes, bytes);
}

uint64_t budget_limit(void)
{
    return atomic_load(&limit_bytes);
}

uint64_t budget_used(void)
{
    int64_t u = atomic_load(&used_bytes);
    return u > 0 ? (uint64_t)u : 0;
}

/* The first number in file path (a cgroup limit, "max" for none); 0 when unreadable. */
static uint64_t read_number(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[64] = "";
    int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    if (!ok || line[0] < '0' || line[0] > '9')
        return 0;
    return strtoull(line, NULL, 10);
}

static uint64_t mem_total(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[128];
    unsigned long long kb = 0;
    static const char key[] = "MemTotal:";
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, sizeof key - 1)) {
            kb = strtoull(line + sizeof key - 1, NULL, 10);
            break;
        }
    fclose(f);
    return (uint64_t)kb * 1024;
}

uint64_t budget_default_limit(void)
{
    uint64_t m = mem_total();
    uint64_t cg = read_number("/sys/fs/cgroup/memory.max");
    if (!cg)
        cg = read_number("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    if (cg && (!m || cg < m))
        m = cg;
    return m / 4 * 3;
}

static int charge(uint64_t n)
{
    const uint64_t lim = atomic_load(&limit_bytes);
    if (n == 0)
        return 0; /* nothing to take, even when standing charges are past the limit */
    if (n > INT64_MAX)
        return -1;
    int64_t u = atomic_load(&used_bytes);
    for (;;) {
        if (lim && (u < 0 ? n > lim : n > lim || (uint64_t)u > lim - n))
            return -1;
        if (atomic_compare_exchange_weak(&used_bytes, &u, u + (int64_t)n))
            return 0;
    }
}

int budget_charge(uint64_t n)
{
    return current ? budget_ticket_charge(current, n) : charge(n);
}

void budget_release(uint64_t n)
{
    atomic_fetch_sub(&used_bytes, (int64_t)n);
}

void budget_adjust(int64_t delta)
{
    atomic_fetch_add(&used_bytes, delta);
}

void budget_request_enter(budget_ticket *t)
{
    current = t;
}

void budget_request_leave(void)
{
    current = NULL;
}

int budget_ticket_charge(budget_ticket *t, uint64_t n)
{
    if (charge(n) != 0)
        return -1;
    t->held += n;
    return 0;
}

void budget_ticket_adjust(budget_ticket *t, uint64_t n)
{
    atomic_fetch_add(&used_bytes, (int64_t)n);
    t->held += n;
}

void budget_request_end(budget_ticket *t)
{
    budget_release(t->held);
    t->held = 0;
}

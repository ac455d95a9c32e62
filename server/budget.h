/*
 * budget.h — one memory budget for the whole daemon (api.md §8.3, max_memory_bytes):
 * sessions, requests in flight and answers being sent. Whoever is about to allocate
 * something large charges it first and is refused (503 out_of_memory, with Retry-After)
 * when the budget would be passed; whoever frees it releases the charge.
 *
 * Two kinds of charge:
 *   - A request's: between budget_request_enter and budget_request_leave on a thread, every
 *     budget_charge is added to that request's ticket, and budget_request_end releases the
 *     ticket's whole charge when the request is over (its buffers are freed by then). So
 *     code deep in a handler charges without knowing who releases.
 *   - A standing one (the session store's weights): budget_adjust, which never refuses,
 *     because it follows memory already allocated; the session store keeps the budget equal
 *     to the sum of its sessions' bytes.
 * The counters are atomics; nothing here allocates. The budget is process-wide (one daemon
 * per process), set once by budget_set_limit before serving.
 */
#ifndef SERVER_BUDGET_H
#define SERVER_BUDGET_H

#include <stdint.h>

typedef struct budget_ticket {
    uint64_t held; /* bytes charged for this request so far */
} budget_ticket;

/* The limit, in bytes (0: no limit, as in unit tests that never set one). */
void budget_set_limit(uint64_t bytes);
uint64_t budget_limit(void);
/* Bytes charged now, all kinds. */
uint64_t budget_used(void);
/* 75 % of the memory this process may use: the cgroup's limit (v2 memory.max, v1
 * memory.limit_in_bytes) when it has one below the machine's, else MemTotal. 0 when
 * neither can be read. */
uint64_t budget_default_limit(void);

/* Charges n bytes (to the current thread's request, if any). 0, or -1 when that would pass
 * the limit (nothing is charged). */
int budget_charge(uint64_t n);
/* Gives back n bytes charged outside a request. */
void budget_release(uint64_t n);
/* A standing charge that follows memory already allocated (delta may be negative). */
void budget_adjust(int64_t delta);

/* The calling thread works for the request of t until budget_request_leave. */
void budget_request_enter(budget_ticket *t);
void budget_request_leave(void);
/* Charges n to t from any thread (like budget_charge inside enter/leave). 0 or -1. */
int budget_ticket_charge(budget_ticket *t, uint64_t n);
/* A standing charge on t that cannot be refused (memory already allocated). */
void budget_ticket_adjust(budget_ticket *t, uint64_t n);
/* The request is over: everything charged to t is released. */
void budget_request_end(budget_ticket *t);

#endif /* SERVER_BUDGET_H */

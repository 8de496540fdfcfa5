/* memory.c -- first-touch help for large fills (Linux; elsewhere the calls do nothing).
 *
 * A freshly allocated buffer has no pages yet: the first write to each 4 KiB page traps into the
 * kernel, which zeroes a page and maps it.  Taking those faults one by one inside the fill costs
 * more than the fill itself; madvise(MADV_POPULATE_WRITE) (Linux 5.14) maps a whole range in one
 * call, and the fill then writes pages that are already mapped and still in cache.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include "fastinit.h"

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static uintptr_t fi_page(void)
{
    static uintptr_t page;
    if (!page) {
        long p = sysconf(_SC_PAGESIZE);
        page = p > 0 ? (uintptr_t)p : 4096u;
    }
    return page;
}

int fi_prefault(void *addr, int64_t nbytes)
{
    uintptr_t pg = fi_page();
    uintptr_t lo = ((uintptr_t)addr + pg - 1) & ~(pg - 1);     /* whole pages inside the range only */
    uintptr_t hi = ((uintptr_t)addr + (uintptr_t)nbytes) & ~(pg - 1);
    if (nbytes <= 0 || hi <= lo) return 0;
    return madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE) == 0 ? 0 : -1;
}

int fi_resident(const void *addr)
{
    uintptr_t pg = fi_page();
    unsigned char v = 0;
    void *p = (void *)(((uintptr_t)addr + pg - 1) & ~(pg - 1));
    if (mincore(p, 1, &v) != 0) return -1;
    return v & 1;
}
#else
int fi_prefault(void *addr, int64_t nbytes) { (void)addr; (void)nbytes; return -1; }
int fi_resident(const void *addr) { (void)addr; return -1; }
#endif

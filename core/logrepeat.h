/* logrepeat.h - which repeats of a warning to write: the first, then at
 * most one per window, counting the ones held back in between. Pure (the
 * time is passed in), used by log.c and tested alone (tests/unit_log.c).
 *
 * A warning is known by its site: the address of its format string, or a
 * hash of its text. The table is small and fixed; a site that finds no
 * slot is never held back, so the worst a crowd of distinct warnings can
 * do is to be written as they come. */
#ifndef TIPCAST_LOGREPEAT_H
#define TIPCAST_LOGREPEAT_H

#include <stdint.h>

/* Distinct warnings tracked at once (a power of two), and the slots looked
 * at for one before giving up on it. */
#define LOG_REPEAT_SLOTS 256
#define LOG_REPEAT_PROBES 8

struct log_repeat_slot {
    uint64_t site;       /* 0: free */
    int64_t last_ms;     /* when its last line was written */
    long long suppressed;
};

struct log_repeat {
    struct log_repeat_slot slots[LOG_REPEAT_SLOTS];
};

/* 1 when the warning of `site` is to be written now; *suppressed is then
 * the number held back since its last line (0 for none). 0 when it is held
 * back (and counted). A site of 0 or a window of 0 always passes. */
int log_repeat_pass(struct log_repeat *r, uint64_t site, int64_t now_ms, int64_t window_ms,
                    long long *suppressed);

#endif

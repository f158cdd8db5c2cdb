/* logrepeat.c - holding back repeated warnings (see logrepeat.h). */
#include "logrepeat.h"

int log_repeat_pass(struct log_repeat *r, uint64_t site, int64_t now_ms, int64_t window_ms,
                    long long *suppressed)
{
    *suppressed = 0;
    if (site == 0 || window_ms <= 0)
        return 1;
    /* Fibonacci hashing: format strings sit a few bytes apart, and the
     * multiplication spreads them over the table. */
    uint32_t h = (uint32_t)((site * 0x9E3779B97F4A7C15ull) >> 40);
    for (int k = 0; k < LOG_REPEAT_PROBES; k++) {
        struct log_repeat_slot *s = &r->slots[(h + (uint32_t)k) & (LOG_REPEAT_SLOTS - 1)];
        if (s->site == 0) {
            s->site = site;
            s->last_ms = now_ms;
            s->suppressed = 0;
            return 1;
        }
        if (s->site != site)
            continue;
        if (now_ms - s->last_ms < window_ms) {
            s->suppressed++;
            return 0;
        }
        *suppressed = s->suppressed;
        s->suppressed = 0;
        s->last_ms = now_ms;
        return 1;
    }
    return 1;
}

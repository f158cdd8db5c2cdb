/* pins.c - the pin-tiers setting's check (see pins.h). */
#include "pins.h"

#include <stdint.h>
#include <stdio.h>

/* Reads digits at *p into *v (at most 18 of them); 0, or -1 when none. */
static int digits(const char **p, int64_t *v)
{
    const char *s = *p;
    *v = 0;
    while (**p >= '0' && **p <= '9' && *p - s < 18)
        *v = *v * 10 + (*(*p)++ - '0');
    return *p == s || (**p >= '0' && **p <= '9') ? -1 : 0;
}

int pin_tiers_check(const char *spec, char *err, size_t errlen)
{
    int64_t prev = 0;
    const char *p = spec;
    for (int n = 1; *p; n++) {
        int64_t amount, secs;
        if (n > PIN_TIERS_MAX) {
            snprintf(err, errlen, "pin-tiers: more than %d tiers", PIN_TIERS_MAX);
            return -1;
        }
        if (digits(&p, &amount) < 0 || *p++ != ':' || digits(&p, &secs) < 0 || (*p && *p != ',') ||
            amount <= prev || secs < 1 || secs > PIN_SECONDS_MAX) {
            snprintf(err, errlen,
                     "pin-tiers: tier %d: want AMOUNT:SECONDS, amounts increasing, seconds 1..%d", n,
                     PIN_SECONDS_MAX);
            return -1;
        }
        prev = amount;
        if (*p == ',' && !*++p) {
            snprintf(err, errlen, "pin-tiers: a trailing comma");
            return -1;
        }
    }
    return 0;
}

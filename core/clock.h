/* clock.h - the two clocks every module reads: wall time for what is
 * stored and shown (order times, events), monotonic time for every
 * interval and deadline (which must not jump with the wall clock). */
#ifndef TIPCAST_CLOCK_H
#define TIPCAST_CLOCK_H

#include <stdint.h>

/* Milliseconds since the epoch. */
int64_t clock_wall_ms(void);
/* Milliseconds of CLOCK_MONOTONIC. */
int64_t clock_mono_ms(void);
/* Microseconds of CLOCK_MONOTONIC: for latencies below a millisecond
 * (metrics). The same clock as clock_mono_ms (us / 1000 is its ms). */
int64_t clock_mono_us(void);

#endif

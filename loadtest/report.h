/* report.h - the bench's output: a progress line per second, the summary
 * table, the JSON file and the SVG chart (drawn here, no gnuplot). */
#ifndef TIPCAST_BENCH_REPORT_H
#define TIPCAST_BENCH_REPORT_H

#include "opts.h"
#include "results.h"

void report_progress(const struct opts *o, const struct results_second *s);
void report_summary(const struct opts *o, const struct results *r);
/* Write the files; return 0, or -1 (with a message on stderr). */
int report_json(const struct opts *o, const struct results *r, const char *path);
int report_svg(const struct opts *o, const struct results *r, const char *path);

#endif

/* report.c - progress lines, summary, JSON and SVG (see report.h). */
#include "report.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

void results_error(struct results *r, const char *code)
{
    r->errors_total++;
    for (int i = 0; i < r->nerrors; i++)
        if (strcmp(r->errors[i].code, code) == 0) {
            r->errors[i].n++;
            return;
        }
    if (r->nerrors == RESULTS_CODES_MAX)
        code = "other";
    if (r->nerrors < RESULTS_CODES_MAX) {
        snprintf(r->errors[r->nerrors].code, sizeof r->errors[0].code, "%s", code);
        r->errors[r->nerrors++].n = 1;
    } else {
        r->errors[RESULTS_CODES_MAX - 1].n++;
    }
}

static double ms(uint64_t us) { return (double)us / 1000.0; }

void report_progress(const struct opts *o, const struct results_second *s)
{
    char cpu[32] = "", rss[32] = "", backlog[32] = "", pg[32] = "";
    if (s->cpu_pct >= 0)
        snprintf(cpu, sizeof cpu, " cpu=%.0f%%", s->cpu_pct);
    if (s->rss_kb >= 0)
        snprintf(rss, sizeof rss, " rss=%ldMB", s->rss_kb / 1024);
    if (s->backlog >= 0)
        snprintf(backlog, sizeof backlog, " backlog=%lld", s->backlog);
    if (s->pg_per_s >= 0)
        snprintf(pg, sizeof pg, " pg=%.0f/s", s->pg_per_s);
    if (o->target == TARGET_TIPCAST)
        printf("t=%ds rate=%.0f/s acks=%llu/s ack_p99=%.1fms deliveries=%llu/s deliv_p99=%.1fms errors=%llu%s%s%s%s\n",
               s->t, s->rate, (unsigned long long)s->acks, s->ack_p99_ms, (unsigned long long)s->deliveries,
               s->deliv_p99_ms, (unsigned long long)s->errors, cpu, rss, backlog, pg);
    else
        printf("t=%ds rate=%.0f/s sent=%llu/s deliveries=%llu/s deliv_p99=%.1fms errors=%llu%s%s\n", s->t, s->rate,
               (unsigned long long)s->sent, (unsigned long long)s->deliveries, s->deliv_p99_ms,
               (unsigned long long)s->errors, cpu, rss);
    fflush(stdout);
}

static void print_lat(const char *name, const struct hist *h)
{
    printf("  %-18s p50 %8.2f  p90 %8.2f  p99 %8.2f  p99.9 %8.2f  max %8.2f ms  (n=%llu)\n", name,
           ms(hist_percentile(h, 50)), ms(hist_percentile(h, 90)), ms(hist_percentile(h, 99)),
           ms(hist_percentile(h, 99.9)), ms(hist_percentile(h, 100)), (unsigned long long)h->count);
}

void report_summary(const struct opts *o, const struct results *r)
{
    double m = r->measured_s > 0 ? r->measured_s : 1;
    printf("\n== tipcast-bench %s %s:%d  run %s ==\n", opts_target_name(o->target), o->host, o->port, o->run_id);
    printf("  connections        opened %llu  authenticated %llu  joined %llu  failed %llu  lost %llu\n",
           (unsigned long long)r->conn_opened, (unsigned long long)r->conn_authed, (unsigned long long)r->conn_joined,
           (unsigned long long)r->conn_failed, (unsigned long long)r->conn_lost);
    printf("  sends              sent %llu  acked %llu  errors %llu\n", (unsigned long long)r->sent,
           (unsigned long long)r->acked, (unsigned long long)r->errors_total);
    printf("  deliveries         %llu of %llu expected (+%llu from other benches)\n",
           (unsigned long long)r->delivered, (unsigned long long)r->expected_deliveries,
           (unsigned long long)r->delivered_foreign);
    printf("  measured           %.1f s: %.0f acks/s, %.0f deliveries/s\n", r->measured_s,
           (double)r->acks_measured / m, (double)r->deliveries_measured / m);
    if (o->target == TARGET_TIPCAST && !o->idle)
        print_lat("ack latency", &r->ack);
    if (!o->idle)
        print_lat("delivery latency", &r->deliv);
    for (int i = 0; i < r->nerrors; i++)
        printf("  error %-24s %llu\n", r->errors[i].code, (unsigned long long)r->errors[i].n);
    if (r->cpu_s >= 0)
        printf("  server             cpu %.2f s (%.2f us per delivery)  rss max %ld kB\n", r->cpu_s,
               r->deliveries_measured ? r->cpu_s * 1e6 / (double)r->deliveries_measured : 0.0, r->rss_kb_max);
    if (r->rss_kb_per_conn >= 0)
        printf("  server rss/conn    %.2f kB\n", r->rss_kb_per_conn);
    if (r->backlog_max >= 0 || r->pg_orders_per_s >= 0)
        printf("  durability         backlog max %lld  pg %.0f orders/s\n", r->backlog_max, r->pg_orders_per_s);
    if (o->find_max) {
        for (int i = 0; i < r->nsteps; i++)
            printf("  step %2d            rate %8.0f/s  ack p99 %7.2f ms  deliv p99 %7.2f ms  errors %llu/%llu  %s%s\n",
                   i + 1, r->steps[i].rate, r->steps[i].ack_p99_ms, r->steps[i].deliv_p99_ms,
                   (unsigned long long)r->steps[i].errors, (unsigned long long)r->steps[i].sent,
                   r->steps[i].held ? "held" : "failed", r->steps[i].refine ? " (refine)" : "");
        printf("  max rate           %.0f/s\n", r->max_rate);
    }
    fflush(stdout);
}

/* ---- JSON ------------------------------------------------------------------- */

static json_t *num_or_null(double v, int known) { return known ? json_real(v) : json_null(); }

static json_t *lat_json(const struct hist *h)
{
    return json_pack("{s:f,s:f,s:f,s:f,s:f,s:I}", "p50", ms(hist_percentile(h, 50)), "p90",
                     ms(hist_percentile(h, 90)), "p99", ms(hist_percentile(h, 99)), "p999",
                     ms(hist_percentile(h, 99.9)), "max", ms(hist_percentile(h, 100)), "count",
                     (json_int_t)h->count);
}

static json_t *machine_json(void)
{
    struct utsname u;
    long mem_kb = -1;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[128];
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemTotal: %ld", &mem_kb) == 1)
                break;
        fclose(f);
    }
    char kernel[300] = "";
    if (uname(&u) == 0)
        snprintf(kernel, sizeof kernel, "%s %s", u.sysname, u.release);
    return json_pack("{s:i,s:I,s:s}", "nproc", (int)sysconf(_SC_NPROCESSORS_ONLN), "mem_kb", (json_int_t)mem_kb,
                     "kernel", kernel);
}

static json_t *config_json(const struct opts *o)
{
    json_t *pids = json_array();
    for (int i = 0; i < o->nserver_pids; i++)
        json_array_append_new(pids, json_integer(o->server_pids[i]));
    char src[16];
    snprintf(src, sizeof src, "%d-%d", o->src_lo, o->src_hi);
    json_t *c = json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:f,s:b,s:f,s:f,s:b,s:s,s:i,s:s,s:i,s:o,s:i,s:b,s:s,s:i,s:i}",
                          "target", opts_target_name(o->target), "host", o->host, "port", o->port, "connections",
                          o->connections, "open_rate", o->open_rate, "rooms", o->rooms, "senders", o->senders, "rate",
                          o->rate, "duration", o->duration_s, "warmup", o->warmup_s, "find_max", o->find_max,
                          "step_seconds", o->step_s, "p99_bound_ms", o->p99_bound_ms, "idle", o->idle,
                          "source_addrs", src, "gift", o->gift, "proto", o->json ? "json" : "msgpack",
                          "frame_bytes", o->frame_bytes, "server_pids", pids, "wallet_shards", o->wallet_shards,
                          "quiet", o->quiet, "run_id", o->run_id, "user_base", o->user_base, "room_base", o->room_base);
    if (o->redis_port) {
        char r[OPTS_STR_MAX + 8];
        snprintf(r, sizeof r, "%s:%d", o->redis_host, o->redis_port);
        json_object_set_new(c, "redis", json_string(r));
    }
    if (o->pg[0])
        json_object_set_new(c, "pg", json_string(o->pg));
    return c;
}

int report_json(const struct opts *o, const struct results *r, const char *path)
{
    double m = r->measured_s > 0 ? r->measured_s : 1;
    json_t *root = json_object();
    json_object_set_new(root, "target", json_string(opts_target_name(o->target)));
    json_object_set_new(root, "started", json_string(r->started));
    json_object_set_new(root, "measure_start_ms", json_integer((json_int_t)r->measure_start_ms));
    json_object_set_new(root, "machine", machine_json());
    json_object_set_new(root, "config", config_json(o));

    json_t *errors = json_object();
    for (int i = 0; i < r->nerrors; i++)
        json_object_set_new(errors, r->errors[i].code, json_integer((json_int_t)r->errors[i].n));
    json_object_set_new(root, "totals",
                        json_pack("{s:I,s:I,s:o,s:I,s:I,s:I,s:I,s:{s:I,s:I,s:I,s:I,s:I}}", "sent",
                                  (json_int_t)r->sent, "acked", (json_int_t)r->acked, "errors", errors, "errors_total",
                                  (json_int_t)r->errors_total, "delivered", (json_int_t)r->delivered,
                                  "delivered_foreign", (json_int_t)r->delivered_foreign, "expected_deliveries",
                                  (json_int_t)r->expected_deliveries, "connections", "opened",
                                  (json_int_t)r->conn_opened, "authenticated", (json_int_t)r->conn_authed, "joined",
                                  (json_int_t)r->conn_joined, "failed", (json_int_t)r->conn_failed, "lost",
                                  (json_int_t)r->conn_lost));
    json_object_set_new(root, "rates",
                        json_pack("{s:f,s:f,s:f}", "acks_per_s", (double)r->acks_measured / m, "deliveries_per_s",
                                  (double)r->deliveries_measured / m, "measured_s", r->measured_s));
    json_object_set_new(root, "ack_latency_ms", lat_json(&r->ack));
    json_object_set_new(root, "delivery_latency_ms", lat_json(&r->deliv));
    json_t *server = json_object();
    json_object_set_new(server, "cpu_s", num_or_null(r->cpu_s, r->cpu_s >= 0));
    json_object_set_new(server, "cpu_us_per_delivery",
                        num_or_null(r->deliveries_measured ? r->cpu_s * 1e6 / (double)r->deliveries_measured : 0,
                                    r->cpu_s >= 0 && r->deliveries_measured));
    json_object_set_new(server, "rss_kb_max", r->rss_kb_max >= 0 ? json_integer(r->rss_kb_max) : json_null());
    json_object_set_new(server, "rss_kb_before", r->rss_kb_before >= 0 ? json_integer(r->rss_kb_before) : json_null());
    json_object_set_new(server, "rss_kb_per_conn", num_or_null(r->rss_kb_per_conn, r->rss_kb_per_conn >= 0));
    json_object_set_new(root, "server", server);
    json_object_set_new(root, "durability",
                        json_pack("{s:o,s:o}", "backlog_max",
                                  r->backlog_max >= 0 ? json_integer(r->backlog_max) : json_null(), "pg_orders_per_s",
                                  num_or_null(r->pg_orders_per_s, r->pg_orders_per_s >= 0)));
    if (o->find_max) {
        json_t *steps = json_array();
        for (int i = 0; i < r->nsteps; i++)
            json_array_append_new(steps, json_pack("{s:f,s:f,s:f,s:I,s:I,s:b,s:b}", "rate", r->steps[i].rate,
                                                   "ack_p99_ms", r->steps[i].ack_p99_ms, "deliv_p99_ms",
                                                   r->steps[i].deliv_p99_ms, "sent", (json_int_t)r->steps[i].sent,
                                                   "errors", (json_int_t)r->steps[i].errors, "held",
                                                   r->steps[i].held, "refine", r->steps[i].refine));
        json_object_set_new(root, "find_max", json_pack("{s:f,s:o}", "max_rate", r->max_rate, "steps", steps));
    }
    json_t *per = json_array();
    for (int i = 0; i < r->nsecs; i++) {
        const struct results_second *s = &r->secs[i];
        json_t *row = json_pack("{s:i,s:f,s:I,s:I,s:f,s:I,s:f,s:I}", "t", s->t, "rate", s->rate, "sent",
                                (json_int_t)s->sent, "acks", (json_int_t)s->acks, "ack_p99_ms", s->ack_p99_ms,
                                "deliveries", (json_int_t)s->deliveries, "deliv_p99_ms", s->deliv_p99_ms, "errors",
                                (json_int_t)s->errors);
        json_object_set_new(row, "cpu_pct", num_or_null(s->cpu_pct, s->cpu_pct >= 0));
        json_object_set_new(row, "rss_kb", s->rss_kb >= 0 ? json_integer(s->rss_kb) : json_null());
        json_object_set_new(row, "backlog", s->backlog >= 0 ? json_integer(s->backlog) : json_null());
        json_object_set_new(row, "pg_per_s", num_or_null(s->pg_per_s, s->pg_per_s >= 0));
        json_array_append_new(per, row);
    }
    json_object_set_new(root, "per_second", per);
    int rc = json_dump_file(root, path, JSON_INDENT(1) | JSON_REAL_PRECISION(6));
    json_decref(root);
    if (rc < 0) {
        fprintf(stderr, "tipcast-bench: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

/* ---- SVG -------------------------------------------------------------------- */

#define SVG_W 900
#define SVG_H 320
#define SVG_PAD 50

/* A "nice" axis top at or above v (1, 2, 5 x 10^k). */
static double nice_top(double v)
{
    if (v <= 0)
        return 1;
    double p = pow(10, floor(log10(v)));
    for (int i = 0; i < 3; i++) {
        double m = (double[]){1, 2, 5}[i] * p;
        if (m >= v)
            return m;
    }
    return 10 * p;
}

static void svg_axes(FILE *f, int y0, const char *title, const char *xlabel, double ymax)
{
    int x1 = SVG_W - 20, y1 = y0 + SVG_H - SVG_PAD;
    fprintf(f, "<text x='%d' y='%d' font-size='14' font-weight='bold'>%s</text>\n", SVG_PAD, y0 + 20, title);
    fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>\n", SVG_PAD, y1, x1, y1);
    fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>\n", SVG_PAD, y0 + 30, SVG_PAD, y1);
    for (int k = 0; k <= 4; k++) {
        double v = ymax * k / 4;
        int y = y1 - (int)((y1 - y0 - 30) * k / 4);
        fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='#ddd'/>\n", SVG_PAD, y, x1, y);
        fprintf(f, "<text x='%d' y='%d' font-size='10' text-anchor='end'>%.3g</text>\n", SVG_PAD - 4, y + 3, v);
    }
    fprintf(f, "<text x='%d' y='%d' font-size='11' text-anchor='middle'>%s</text>\n", (SVG_PAD + x1) / 2, y1 + 32,
            xlabel);
    fprintf(f, "<text x='12' y='%d' font-size='11' transform='rotate(-90 12 %d)'>ms</text>\n", y0 + SVG_H / 2,
            y0 + SVG_H / 2);
}

static double sec_value(const struct results_second *s, int which)
{
    return which == 0 ? s->ack_p50_ms : which == 1 ? s->ack_p99_ms : which == 2 ? s->deliv_p50_ms : s->deliv_p99_ms;
}

int report_svg(const struct opts *o, const struct results *r, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "tipcast-bench: cannot write %s\n", path);
        return -1;
    }
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' font-family='sans-serif'>\n", SVG_W,
            2 * SVG_H + 20);
    fprintf(f, "<rect width='100%%' height='100%%' fill='white'/>\n");

    /* Latency per second over time. */
    static const char *names[] = {"ack p50", "ack p99", "delivery p50", "delivery p99"};
    static const char *colors[] = {"#7fb3e0", "#1f5fa8", "#f0a868", "#c0392b"};
    double ymax = 0;
    for (int i = 0; i < r->nsecs; i++)
        for (int w = 0; w < 4; w++)
            if (sec_value(&r->secs[i], w) > ymax)
                ymax = sec_value(&r->secs[i], w);
    ymax = nice_top(ymax);
    char title[160];
    snprintf(title, sizeof title, "tipcast-bench %s: latency per second (rate %.0f/s, %d connections)",
             opts_target_name(o->target), o->rate, o->connections);
    svg_axes(f, 0, title, "seconds", ymax);
    int plot_w = SVG_W - 20 - SVG_PAD, plot_h = SVG_H - SVG_PAD - 30;
    int tmax = r->nsecs > 1 ? r->secs[r->nsecs - 1].t : 1;
    for (int w = 0; w < 4; w++) {
        if (o->target != TARGET_TIPCAST && w < 2)
            continue;
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='1.5' points='", colors[w]);
        for (int i = 0; i < r->nsecs; i++)
            fprintf(f, "%.1f,%.1f ", SVG_PAD + (double)plot_w * r->secs[i].t / tmax,
                    (SVG_H - SVG_PAD) - plot_h * sec_value(&r->secs[i], w) / ymax);
        fprintf(f, "'/>\n<text x='%d' y='%d' font-size='11' fill='%s'>%s</text>\n", SVG_W - 130, 40 + 14 * w,
                colors[w], names[w]);
    }

    /* Percentile curve of the delivery latency: x is -log10(1 - p), so
     * 90%, 99%, 99.9%, 99.99% are evenly spaced. */
    int y0 = SVG_H + 20;
    double top = nice_top(ms(hist_percentile(&r->deliv, 100)));
    svg_axes(f, y0, "delivery latency by percentile (measured window)", "percentile", top);
    static const double marks[] = {0, 90, 99, 99.9, 99.99, 99.999};
    double xspan = 5.0;
    for (size_t k = 0; k < sizeof marks / sizeof marks[0]; k++) {
        double x = SVG_PAD + plot_w * (marks[k] == 0 ? 0 : -log10(1 - marks[k] / 100)) / xspan;
        fprintf(f, "<text x='%.1f' y='%d' font-size='10' text-anchor='middle'>%g%%</text>\n", x,
                y0 + SVG_H - SVG_PAD + 14, marks[k]);
    }
    if (r->deliv.count) {
        fprintf(f, "<polyline fill='none' stroke='#c0392b' stroke-width='1.5' points='");
        for (int i = 0; i <= 200; i++) {
            double xl = xspan * i / 200.0;
            double p = 100.0 * (1 - pow(10, -xl));
            fprintf(f, "%.1f,%.1f ", SVG_PAD + plot_w * xl / xspan,
                    y0 + (SVG_H - SVG_PAD) - plot_h * ms(hist_percentile(&r->deliv, p)) / top);
        }
        fprintf(f, "'/>\n");
    }
    fprintf(f, "</svg>\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "tipcast-bench: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

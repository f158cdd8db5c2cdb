/* unit_prom.c - tests of the metrics page's pure parts: the histogram's
 * bucketing (core/histogram.c), the Prometheus text writer and its escaping,
 * bounds and overflow (core/prom.c), address blocks (core/cidr.c) and the
 * metrics-allow setting. */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"
#include "config.h"
#include "histogram.h"
#include "prom.h"
#include "unit.h"

static void test_histogram(void)
{
    static const int64_t bounds[] = {10, 100, 1000};
    struct histogram h;
    histogram_init(&h, bounds, 3);
    histogram_observe(&h, 0);
    histogram_observe(&h, 10);   /* on a bound: that bucket (le) */
    histogram_observe(&h, 11);
    histogram_observe(&h, 1000);
    histogram_observe(&h, 1001); /* past the last bound: +Inf */
    histogram_observe(&h, -5);   /* counts as 0 */
    CHECK_INT(h.count, 6);
    CHECK_INT(h.sum_us, 0 + 10 + 11 + 1000 + 1001);
    CHECK_INT(histogram_cumulative(&h, 0), 3);
    CHECK_INT(histogram_cumulative(&h, 1), 4);
    CHECK_INT(histogram_cumulative(&h, 2), 5);
    CHECK_INT(histogram_cumulative(&h, 3), 6);

    struct histogram l;
    histogram_init_latency(&l);
    CHECK_INT(l.nbounds, HISTOGRAM_LATENCY_BOUNDS);
    for (int i = 1; i < HISTOGRAM_LATENCY_BOUNDS; i++)
        CHECK(histogram_latency_us[i] > histogram_latency_us[i - 1]);
    histogram_observe(&l, 20 * 1000 * 1000); /* 20 s: +Inf */
    CHECK_INT(l.buckets[HISTOGRAM_LATENCY_BOUNDS], 1);
}

static void test_writer(void)
{
    char buf[4096];
    struct prom p;
    prom_init(&p, buf, sizeof buf);
    prom_family(&p, "t_total", "counter", "Help with \\ and\nnewline.");
    prom_u64(&p, "t_total", PROM_NONE, PROM_NONE, 18446744073709551615ull);
    prom_u64(&p, "t_total", PROM_L("kind", "a\"b\\c\nd"), PROM_L("result", "ok"), 3);
    prom_i64(&p, "t_gauge", PROM_L("g", "x"), PROM_NONE, -7);
    prom_f64(&p, "t_f", PROM_NONE, PROM_NONE, NAN);
    prom_f64(&p, "t_f", PROM_NONE, PROM_NONE, INFINITY);
    prom_f64(&p, "t_f", PROM_NONE, PROM_NONE, -INFINITY);
    prom_f64(&p, "t_f", PROM_NONE, PROM_NONE, 1795961608.295);
    prom_f64(&p, "t_f", PROM_NONE, PROM_NONE, 0.1);
    CHECK(prom_finish(&p) > 0);
    CHECK_STR(buf, "# HELP t_total Help with \\\\ and\\nnewline.\n"
                   "# TYPE t_total counter\n"
                   "t_total 18446744073709551615\n"
                   "t_total{kind=\"a\\\"b\\\\c\\nd\",result=\"ok\"} 3\n"
                   "t_gauge{g=\"x\"} -7\n"
                   "t_f NaN\n"
                   "t_f +Inf\n"
                   "t_f -Inf\n"
                   "t_f 1795961608.295\n"
                   "t_f 0.1\n");

    static const int64_t bounds[] = {250, 1000000, 2500000};
    struct histogram h;
    histogram_init(&h, bounds, 3);
    histogram_observe(&h, 100);
    histogram_observe(&h, 2000000);
    histogram_observe(&h, 9000000);
    prom_init(&p, buf, sizeof buf);
    prom_histogram(&p, "lat_seconds", PROM_L("kind", "gift"), &h);
    CHECK(prom_finish(&p) > 0);
    CHECK_STR(buf, "lat_seconds_bucket{kind=\"gift\",le=\"0.00025\"} 1\n"
                   "lat_seconds_bucket{kind=\"gift\",le=\"1\"} 1\n"
                   "lat_seconds_bucket{kind=\"gift\",le=\"2.5\"} 2\n"
                   "lat_seconds_bucket{kind=\"gift\",le=\"+Inf\"} 3\n"
                   "lat_seconds_sum{kind=\"gift\"} 11.000100\n"
                   "lat_seconds_count{kind=\"gift\"} 3\n");
    prom_init(&p, buf, sizeof buf);
    prom_histogram(&p, "lat_seconds", PROM_NONE, &h);
    CHECK(prom_finish(&p) > 0);
    CHECK_CONTAINS(buf, "lat_seconds_bucket{le=\"+Inf\"} 3\nlat_seconds_sum 11.000100\nlat_seconds_count 3\n");

    /* A page that does not fit is refused whole, never cut. */
    char small[40];
    prom_init(&p, small, sizeof small);
    prom_family(&p, "t_total", "counter", "A help text longer than the buffer.");
    CHECK_INT(prom_finish(&p), -1);
    CHECK_STR(small, "");
    /* Exactly full: the NUL still fits. */
    prom_init(&p, small, 8);
    prom_u64(&p, "abc", PROM_NONE, PROM_NONE, 12); /* "abc 12\n" is 7 bytes */
    CHECK_INT(prom_finish(&p), 7);
    CHECK_STR(small, "abc 12\n");
}

static int in_block(const char *block, const char *addr)
{
    struct cidr c;
    if (cidr_parse(block, strlen(block), &c) < 0)
        return -1;
    struct sockaddr_in6 s6;
    struct sockaddr_in s4;
    memset(&s6, 0, sizeof s6);
    memset(&s4, 0, sizeof s4);
    if (inet_pton(AF_INET, addr, &s4.sin_addr) == 1) {
        s4.sin_family = AF_INET;
        return cidr_match_sockaddr(&c, 1, (struct sockaddr *)&s4);
    }
    if (inet_pton(AF_INET6, addr, &s6.sin6_addr) == 1) {
        s6.sin6_family = AF_INET6;
        return cidr_match_sockaddr(&c, 1, (struct sockaddr *)&s6);
    }
    return -2;
}

static void test_cidr(void)
{
    CHECK_INT(in_block("127.0.0.0/8", "127.0.0.1"), 1);
    CHECK_INT(in_block("127.0.0.0/8", "127.255.255.255"), 1);
    CHECK_INT(in_block("127.0.0.0/8", "128.0.0.1"), 0);
    CHECK_INT(in_block("10.1.2.3", "10.1.2.3"), 1);
    CHECK_INT(in_block("10.1.2.3", "10.1.2.4"), 0);
    CHECK_INT(in_block("192.168.0.0/23", "192.168.1.200"), 1);
    CHECK_INT(in_block("192.168.0.0/23", "192.168.2.1"), 0);
    CHECK_INT(in_block("0.0.0.0/0", "8.8.8.8"), 1);
    CHECK_INT(in_block("0.0.0.0/0", "::1"), 0);          /* families apart */
    CHECK_INT(in_block("::1", "::1"), 1);
    CHECK_INT(in_block("::1", "::2"), 0);
    CHECK_INT(in_block("fd00::/8", "fd12:3456::1"), 1);
    CHECK_INT(in_block("fd00::/8", "fe80::1"), 0);
    CHECK_INT(in_block("127.0.0.0/8", "::ffff:127.0.0.1"), 1); /* IPv4 over an IPv6 socket */
    CHECK_INT(in_block("::1", "::ffff:127.0.0.1"), 0);
    CHECK_INT(in_block("10.0.0.0/8", "127.0.0.1"), 0);

    struct cidr c;
    char text[64];
    CHECK_INT(cidr_parse("10.9.8.7/8", 10, &c), 0); /* host bits cleared */
    CHECK_STR(cidr_format(&c, text, sizeof text), "10.0.0.0/8");
    CHECK_INT(cidr_parse("2001:db8::1/32", 14, &c), 0);
    CHECK_STR(cidr_format(&c, text, sizeof text), "2001:db8::/32");
    CHECK_INT(cidr_parse("1.2.3.4/33", 10, &c), -1);
    CHECK_INT(cidr_parse("::/129", 6, &c), -1);
    CHECK_INT(cidr_parse("1.2.3.4/", 8, &c), -1);
    CHECK_INT(cidr_parse("1.2.3.4/-1", 10, &c), -1);
    CHECK_INT(cidr_parse("1.2.3.4/8x", 10, &c), -1);
    CHECK_INT(cidr_parse("host.example", 12, &c), -1);
    CHECK_INT(cidr_parse("", 0, &c), -1);
    CHECK_INT(cidr_parse("1.2.3", 5, &c), -1);
    /* Only len bytes are read. */
    CHECK_INT(cidr_parse("10.0.0.0/8,::1", 10, &c), 0);
    CHECK_INT(c.bits, 8);
}

static void test_setting(void)
{
    struct config cfg;
    char err[256];
    config_defaults(&cfg);
    CHECK_INT(cfg.metrics_allow.n, 2); /* loopback: 127.0.0.0/8 and ::1 */
    CHECK_INT(config_set(&cfg, "metrics-allow", " 10.0.0.0/8 , 192.0.2.7,fd00::/8 ", err, sizeof err), 0);
    CHECK_INT(cfg.metrics_allow.n, 3);
    CHECK_INT(config_set(&cfg, "metrics-allow", "", err, sizeof err), 0);
    CHECK_INT(cfg.metrics_allow.n, 0);
    CHECK_INT(config_set(&cfg, "metrics-allow", "10.0.0.0/8,,::1", err, sizeof err), -1);
    CHECK_CONTAINS(err, "empty");
    CHECK_INT(config_set(&cfg, "metrics-allow", "10.0.0.0/40", err, sizeof err), -1);
    CHECK_CONTAINS(err, "metrics-allow");
    CHECK_INT(cfg.metrics_allow.n, 0); /* a refused value changes nothing */
    char many[512] = "";
    for (int i = 0; i <= CONFIG_CIDRS_MAX; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s10.0.0.%d", i ? "," : "", i);
    CHECK_INT(config_set(&cfg, "metrics-allow", many, err, sizeof err), -1);
}

int main(void)
{
    test_histogram();
    test_writer();
    test_cidr();
    test_setting();
    return unit_finish("unit_prom");
}

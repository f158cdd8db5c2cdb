/* scan.h - the risk scan: every risk-scan-interval-s, tipcast_risk_scan
 * (storage/migrations/008_risk.sql) looks in PostgreSQL for the patterns
 * that need history (brushing by address or device, recharge -> gift ->
 * refund cycles, spikes of a room or a sender) and raises deduplicated
 * alerts (table alerts, webhook alert.raised). Never on the gift path: it
 * runs on the admin API's PostgreSQL connections. Every node's timer calls
 * it; the function runs once per interval across nodes (the first caller
 * locks its state row, the others return at once). */
#ifndef TIPCAST_RISK_SCAN_H
#define TIPCAST_RISK_SCAN_H

#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "pgpool.h"

/* The alert kinds the scan raises, for tipcast_risk_alerts_total{kind}. */
enum risk_alert { RISK_ALERT_BRUSHING_IP, RISK_ALERT_BRUSHING_DEVICE, RISK_ALERT_REFUND_CYCLE, RISK_ALERT_SPIKE_ROOM,
                  RISK_ALERT_SPIKE_USER, RISK_ALERTS };

struct risk_scan {
    struct pgpool *pool;
    const struct config *cfg;
    uv_timer_t timer;
    int started;
    int out; /* a call is out */
    uint64_t runs, failures;
    uint64_t alerts[RISK_ALERTS]; /* raised by this node's runs */
};

/* Starts the timer (nothing when risk-scan-interval-s is 0). */
void risk_scan_start(struct risk_scan *sc, uv_loop_t *loop, struct pgpool *pool, const struct config *cfg);
/* Stops the timer (asynchronously). Safe when never started. */
void risk_scan_stop(struct risk_scan *sc);

/* "brushing_ip", "brushing_device", "refund_cycle", "spike_room", "spike_user". */
const char *risk_alert_name(enum risk_alert k);

#endif

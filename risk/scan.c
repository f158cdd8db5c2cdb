/* scan.c - the periodic risk scan (see scan.h). */
#include "scan.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

static const char *const alert_names[RISK_ALERTS] = {"brushing_ip", "brushing_device", "refund_cycle", "spike_room",
                                                     "spike_user"};

const char *risk_alert_name(enum risk_alert k)
{
    tc_assert(k >= 0 && k < RISK_ALERTS);
    return alert_names[k];
}

static void on_scanned(void *priv, const struct pgpool_result *r)
{
    struct risk_scan *sc = priv;
    sc->out = 0;
    if (r->outcome != PGPOOL_OK) {
        sc->failures++;
        log_msg(LOG_WARN, "risk: the scan failed (%s); the next one looks again",
                r->outcome == PGPOOL_REFUSED ? r->code : "PostgreSQL unavailable");
        return;
    }
    sc->runs++;
    int n = PQntuples(r->res);
    for (int i = 0; i < n; i++) {
        const char *kind = PQgetvalue(r->res, i, 0);
        for (int k = 0; k < RISK_ALERTS; k++)
            if (strcmp(kind, alert_names[k]) == 0)
                sc->alerts[k]++;
        log_msg(LOG_WARN, "risk: alert %s raised (alert %s)", kind, PQgetvalue(r->res, i, 1));
    }
}

static void on_timer(uv_timer_t *t)
{
    struct risk_scan *sc = t->data;
    if (sc->out || !pgpool_up(sc->pool))
        return;
    char interval[16];
    /* A little under the interval: the nodes' timers drift apart, and the
     * state row's time decides which of them runs. */
    snprintf(interval, sizeof interval, "%d", sc->cfg->risk_scan_interval_s * 9 / 10);
    const char *params[2] = {config_webhooks_on(sc->cfg) ? "true" : "false", interval};
    if (pgpool_call(sc->pool, "SELECT kind, alert_id FROM tipcast_risk_scan($1::boolean, $2::int)", 2, params,
                    on_scanned, sc))
        sc->out = 1;
}

void risk_scan_start(struct risk_scan *sc, uv_loop_t *loop, struct pgpool *pool, const struct config *cfg)
{
    sc->pool = pool;
    sc->cfg = cfg;
    if (cfg->risk_scan_interval_s <= 0)
        return;
    uv_timer_init(loop, &sc->timer);
    sc->timer.data = sc;
    uint64_t ms = (uint64_t)cfg->risk_scan_interval_s * 1000;
    uv_timer_start(&sc->timer, on_timer, ms, ms);
    sc->started = 1;
}

void risk_scan_stop(struct risk_scan *sc)
{
    if (!sc->started)
        return;
    sc->started = 0;
    uv_close((uv_handle_t *)&sc->timer, NULL);
}

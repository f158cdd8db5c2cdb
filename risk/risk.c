/* risk.c - rules, freezes and the gift path's checks (see risk.h). */
#include "risk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "clock.h"
#include "log.h"

const char risk_query[] = "SELECT tipcast_risk_doc()";

static const struct {
    const char *name;
    int64_t dflt;
} rules[RISK_RULES] = {
    [RISK_GIFT_USER_PER_MIN] = {"gift_user_per_min", 600},
    [RISK_GIFT_IP_PER_MIN] = {"gift_ip_per_min", 0},
    [RISK_DAILY_SPEND_CAP] = {"daily_spend_cap", 0},
    [RISK_NEW_ACCOUNT_DAYS] = {"new_account_days", 7},
    [RISK_NEW_ACCOUNT_DAILY_CAP] = {"new_account_daily_cap", 0},
    [RISK_NEW_USER_BONUS] = {"new_user_bonus", 0},
};

static const struct {
    enum err code;
    const char *check;
} refusals[RISK_REFUSALS] = {
    [RISK_REF_FROZEN] = {ERR_ACCOUNT_FROZEN, "frozen"},
    [RISK_REF_USER_RATE] = {ERR_RISK_RATE_LIMITED, "user_rate"},
    [RISK_REF_IP_RATE] = {ERR_RISK_RATE_LIMITED, "ip_rate"},
    [RISK_REF_API_FROZEN] = {ERR_ACCOUNT_FROZEN, "api"},
    [RISK_REF_API_RATE] = {ERR_RISK_RATE_LIMITED, "api"},
};

const char *risk_refusal_code(enum risk_refusal k)
{
    tc_assert(k >= 0 && k < RISK_REFUSALS);
    return err_code(refusals[k].code);
}

const char *risk_refusal_check(enum risk_refusal k)
{
    tc_assert(k >= 0 && k < RISK_REFUSALS);
    return refusals[k].check;
}

void risk_count_api(struct risk *r, const char *code)
{
    if (strcmp(code, "account_frozen") == 0)
        r->refusals[RISK_REF_API_FROZEN]++;
    else if (strcmp(code, "risk_rate_limited") == 0)
        r->refusals[RISK_REF_API_RATE]++;
}

int risk_init(struct risk *r)
{
    memset(r, 0, sizeof *r);
    for (int i = 0; i < RISK_RULES; i++)
        r->rule[i] = rules[i].dflt;
    uint32_t seed = (uint32_t)clock_mono_us() * 2654435761u;
    if (risk_buckets_init(&r->by_user, RISK_BUCKET_SETS, seed) < 0 ||
        risk_buckets_init(&r->by_addr, RISK_BUCKET_SETS, seed ^ 0x9e3779b9u) < 0) {
        risk_free(r);
        return -1;
    }
    return 0;
}

void risk_free(struct risk *r)
{
    free(r->frozen);
    r->frozen = NULL;
    r->nfrozen = 0;
    risk_buckets_free(&r->by_user);
    risk_buckets_free(&r->by_addr);
}

static int cmp_account(const void *a, const void *b) { return strcmp(a, b); }

int risk_load_json(struct risk *r, const char *text, size_t len, char *err, size_t errlen)
{
    if (len > RISK_JSON_MAX) {
        snprintf(err, errlen, "risk document too large");
        return -1;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    json_t *jr = root ? json_object_get(root, "rules") : NULL, *jf = root ? json_object_get(root, "frozen") : NULL;
    if (!json_is_object(jr) || !json_is_array(jf) || json_array_size(jf) > RISK_FROZEN_MAX) {
        snprintf(err, errlen, "risk document malformed or too large");
        json_decref(root);
        return -1;
    }
    int64_t rule[RISK_RULES];
    for (int i = 0; i < RISK_RULES; i++) {
        json_t *v = json_object_get(jr, rules[i].name);
        if (v && (!json_is_integer(v) || json_integer_value(v) < 0)) {
            snprintf(err, errlen, "risk rule %s is not an integer >= 0", rules[i].name);
            json_decref(root);
            return -1;
        }
        rule[i] = v ? json_integer_value(v) : rules[i].dflt;
    }
    size_t n = json_array_size(jf);
    char(*frozen)[ID_MAX + 1] = calloc(n + 1, sizeof *frozen);
    if (!frozen) {
        snprintf(err, errlen, "out of memory");
        json_decref(root);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_array_get(jf, i);
        if (!json_is_string(a) || !id_valid(json_string_value(a), json_string_length(a))) {
            snprintf(err, errlen, "frozen account %zu is malformed", i);
            free(frozen);
            json_decref(root);
            return -1;
        }
        memcpy(frozen[i], json_string_value(a), json_string_length(a) + 1);
    }
    json_decref(root);
    qsort(frozen, n, sizeof *frozen, cmp_account);
    free(r->frozen);
    r->frozen = frozen;
    r->nfrozen = n;
    memcpy(r->rule, rule, sizeof rule);
    r->version++;
    log_msg(LOG_INFO, "risk: rules loaded, %zu frozen accounts (version %lld)", n, (long long)r->version);
    return 0;
}

int risk_load_blocking(struct risk *r, const char *conninfo, char *err, size_t errlen)
{
    PGconn *pg = PQconnectdb(conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        snprintf(err, errlen, "risk: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return -1;
    }
    PGresult *res = PQexec(pg, risk_query);
    int rc = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        rc = risk_load_json(r, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), err, errlen);
    else
        snprintf(err, errlen, "risk: %s", PQerrorMessage(pg));
    PQclear(res);
    PQfinish(pg);
    return rc;
}

int risk_frozen(const struct risk *r, const char *account)
{
    return r->nfrozen && bsearch(account, r->frozen, r->nfrozen, sizeof *r->frozen, cmp_account) != NULL;
}

int risk_gate(struct risk *r, const char *user, const void *addr, size_t alen, int64_t now_us, int64_t *retry_ms)
{
    *retry_ms = 0;
    if (risk_frozen(r, user)) {
        r->refusals[RISK_REF_FROZEN]++;
        return ERR_ACCOUNT_FROZEN;
    }
    if (!risk_buckets_take(&r->by_user, user, strlen(user), r->rule[RISK_GIFT_USER_PER_MIN], now_us, retry_ms)) {
        r->refusals[RISK_REF_USER_RATE]++;
        return ERR_RISK_RATE_LIMITED;
    }
    if (alen && !risk_buckets_take(&r->by_addr, addr, alen, r->rule[RISK_GIFT_IP_PER_MIN], now_us, retry_ms)) {
        r->refusals[RISK_REF_IP_RATE]++;
        return ERR_RISK_RATE_LIMITED;
    }
    return -1;
}

void risk_wallet(const struct risk *r, struct wallet_risk *out)
{
    out->day_cap = r->rule[RISK_DAILY_SPEND_CAP];
    out->new_cap = r->rule[RISK_NEW_ACCOUNT_DAILY_CAP];
    out->new_ms = r->rule[RISK_NEW_ACCOUNT_DAYS] * 86400 * 1000;
}

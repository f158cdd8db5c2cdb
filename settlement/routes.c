/* routes.c - the admin API's route table (see routes.h). The roles are the
 * permission matrix of docs/admin-api.md, row for row. */
#include "routes.h"

#include <stdio.h>
#include <string.h>

#define ADMIN API_ROLE(ROLE_ADMIN)
#define FIN API_ROLE(ROLE_FINANCE)
#define OPS API_ROLE(ROLE_OPERATIONS)
#define SUP API_ROLE(ROLE_SUPPORT)
#define AUD API_ROLE(ROLE_AUDITOR)
#define CRE API_ROLE(ROLE_CREATOR)
#define VIE API_ROLE(ROLE_VIEWER)
#define STAFF (ADMIN | FIN | OPS | SUP | AUD)
#define EVERYONE (STAFF | CRE | VIE)

const struct api_route api_routes[] = {
    {API_GET, "/api/v1/me", EVERYONE, 0, NULL, NULL, 0, NULL},
    {API_GET, "/api/v1/recharge-packages", STAFF, 0, "tipcast_api_packages_list", NULL, 0, NULL},
    {API_PUT, "/api/v1/recharge-packages/{id}", ADMIN | FIN, 0, "tipcast_api_package_put", NULL,
     API_BODY | API_BODY_REQUIRED, "currency,amount_minor,coins,enabled"},
    {API_PUT, "/api/v1/currency-rates/{currency}", ADMIN | FIN, 0, "tipcast_api_rate_put", NULL,
     API_BODY | API_BODY_REQUIRED, "coins_per_unit,minor_per_unit"},
    {API_POST, "/api/v1/recharges", ADMIN | FIN, 0, "tipcast_api_recharge_create", NULL, API_BODY | API_BODY_REQUIRED,
     "user,request_id,package_id,currency,amount_minor,ip"},
    {API_GET, "/api/v1/recharges", ADMIN | FIN | SUP | AUD, 0, "tipcast_api_recharges_list", NULL, 0, NULL},
    {API_GET, "/api/v1/recharges/{id}", ADMIN | FIN | SUP | AUD, 0, "tipcast_api_recharge_get", NULL, 0, NULL},
    {API_POST, "/api/v1/payments/callback", 0, 0, "tipcast_api_payment_callback", NULL,
     API_SIGNED | API_BODY | API_BODY_REQUIRED, "payment_id,recharge_id,amount_minor,currency,status"},
    {API_GET, "/api/v1/revenue-rules", ADMIN | FIN | OPS | AUD, 0, "tipcast_api_rules_list", NULL, 0, NULL},
    {API_POST, "/api/v1/revenue-rules", ADMIN | FIN, 0, "tipcast_api_rule_create", NULL, API_BODY | API_BODY_REQUIRED,
     "name,effective_at,agency_share_bp,tiers[min_volume,platform_fee_bp]"},
    {API_GET, "/api/v1/agencies", STAFF, 0, "tipcast_api_agencies_list", NULL, 0, NULL},
    {API_POST, "/api/v1/agencies", ADMIN | OPS, 0, "tipcast_api_agency_create", NULL, API_BODY | API_BODY_REQUIRED,
     "id,name"},
    {API_PUT, "/api/v1/creators/{id}/agency", ADMIN | OPS, 0, "tipcast_api_creator_agency_put", NULL,
     API_BODY | API_BODY_REQUIRED, "agency_id"},
    {API_GET, "/api/v1/orders/{id}", ADMIN | FIN | SUP | AUD, 0, "tipcast_api_order_get", NULL, 0, NULL},
    {API_POST, "/api/v1/orders/{id}/refund", ADMIN | FIN | SUP, 0, "tipcast_api_order_refund", NULL,
     API_BODY | API_BODY_REQUIRED, "refund_id,amount,reason"},
    {API_POST, "/api/v1/settlements/run", ADMIN | FIN, 0, "tipcast_api_settlement_run", NULL, API_BODY, "cutoff"},
    {API_GET, "/api/v1/creators/{id}/balance", ADMIN | FIN | SUP | AUD | CRE, CRE, "tipcast_api_creator_balance", NULL,
     0, NULL},
    {API_GET, "/api/v1/creators/{id}/income", ADMIN | FIN | AUD | CRE, CRE, "tipcast_api_creator_income",
     "order_id,kind,sender,amount,platform_fee,agency_share,creator_net,refunded,state,created_at,settled", 0, NULL},
    {API_GET, "/api/v1/creators/{id}/settlements", ADMIN | FIN | AUD | CRE, CRE, "tipcast_api_creator_settlements",
     "id,cutoff,amount,orders,created_at", 0, NULL},
    {API_POST, "/api/v1/withdrawals", CRE, 0, "tipcast_api_withdrawal_request", NULL, API_BODY | API_BODY_REQUIRED,
     "amount,request_id"},
    {API_GET, "/api/v1/withdrawals", ADMIN | FIN | AUD | CRE, 0, "tipcast_api_withdrawals_list",
     "id,creator,amount,state,payout_reference,reason,requested_at,decided_by,decided_at,paid_at", 0, NULL},
    {API_POST, "/api/v1/withdrawals/{id}/approve", ADMIN | FIN, 0, "tipcast_api_withdrawal_approve", NULL, API_BODY,
     ""},
    {API_POST, "/api/v1/withdrawals/{id}/reject", ADMIN | FIN, 0, "tipcast_api_withdrawal_reject", NULL, API_BODY,
     "reason"},
    {API_POST, "/api/v1/withdrawals/{id}/pay", ADMIN | FIN, 0, "tipcast_api_withdrawal_pay", NULL,
     API_BODY | API_BODY_REQUIRED, "payout_reference"},
    {API_GET, "/api/v1/users/{id}/transactions", ADMIN | FIN | SUP | AUD | CRE | VIE, CRE | VIE,
     "tipcast_api_user_transactions", "movement_id,kind,delta,note,created_at", 0, NULL},
    {API_GET, "/api/v1/platform/profit", ADMIN | FIN | AUD, 0, "tipcast_api_platform_profit",
     "day,gross,platform_fee,agency_share,creator_net,refunded_fee,recharged_coins,orders", 0, NULL},
    {API_GET, "/api/v1/stats/platform", ADMIN | FIN | OPS | AUD, 0, "tipcast_api_stats_platform", NULL, 0, NULL},
    {API_GET, "/api/v1/creators/{id}/stats", STAFF | CRE, CRE, "tipcast_api_creator_stats", NULL, 0, NULL},
    {API_POST, "/api/v1/creators/{id}/overlay-token", ADMIN | OPS | CRE, CRE, "tipcast_api_overlay_token", NULL,
     API_BODY | API_OVERLAY_TOKEN, "ttl_s"},
    {API_GET, "/api/v1/audit", ADMIN | AUD, 0, "tipcast_api_audit_list",
     "id,at,actor,role,action,target,before,after,request_id,client_addr,outcome", 0, NULL},
    {API_GET, "/api/v1/alerts", ADMIN | FIN | OPS | AUD, 0, "tipcast_api_alerts_list", NULL, 0, NULL},
    /* /latest before /{id}: the first route that matches is taken. */
    {API_GET, "/api/v1/reconcile/reports", ADMIN | FIN | AUD, 0, "tipcast_api_reconcile_reports", NULL, 0, NULL},
    {API_GET, "/api/v1/reconcile/reports/latest", ADMIN | FIN | AUD, 0, "tipcast_api_reconcile_latest", NULL, 0, NULL},
    {API_GET, "/api/v1/reconcile/reports/{id}", ADMIN | FIN | AUD, 0, "tipcast_api_reconcile_report", NULL, 0, NULL},
    {API_POST, "/api/v1/accounts/{id}/freeze", ADMIN | OPS | SUP, 0, "tipcast_api_account_freeze", NULL,
     API_BODY | API_BODY_REQUIRED, "reason"},
    {API_POST, "/api/v1/accounts/{id}/unfreeze", ADMIN | OPS | SUP, 0, "tipcast_api_account_unfreeze", NULL, API_BODY,
     "reason"},
    {API_GET, "/api/v1/accounts/{id}/freeze", ADMIN | OPS | SUP | AUD, 0, "tipcast_api_account_freeze_get", NULL, 0,
     NULL},
    {API_GET, "/api/v1/freezes", ADMIN | OPS | SUP | AUD, 0, "tipcast_api_freezes_list", NULL, 0, NULL},
    {API_GET, "/api/v1/risk/rules", ADMIN | OPS | AUD, 0, "tipcast_api_risk_rules_get", NULL, 0, NULL},
    {API_PUT, "/api/v1/risk/rules", ADMIN | OPS, 0, "tipcast_api_risk_rules_put", NULL, API_BODY | API_BODY_REQUIRED,
     "rules"},
    {API_GET, "/api/v1/webhooks/dead", ADMIN | OPS | AUD, 0, "tipcast_api_webhooks_dead", NULL, 0, NULL},
    {API_POST, "/api/v1/webhooks/{id}/retry", ADMIN | OPS, 0, "tipcast_api_webhook_retry", NULL, API_BODY, ""},
    {API_GET, "/api/v1/ledger/anchors", ADMIN | FIN | AUD, 0, "tipcast_api_ledger_anchors", NULL, 0, NULL},
    /* Issue 14 (B14): global boards, promotions. */
    {API_GET, "/api/v1/boards", EVERYONE, 0, "tipcast_api_boards", NULL, 0, NULL},
    {API_GET, "/api/v1/promotions/new-user-bonus", ADMIN | FIN | OPS | AUD, 0, "tipcast_api_bonus_get", NULL, 0, NULL},
    {API_PUT, "/api/v1/promotions/new-user-bonus", ADMIN | FIN, 0, "tipcast_api_bonus_put", NULL,
     API_BODY | API_BODY_REQUIRED, "amount"},
    {API_POST, "/api/v1/coupons", ADMIN | OPS, 0, "tipcast_api_coupon_create", NULL, API_BODY | API_BODY_REQUIRED,
     "user,gift_id,discount,expires_at,code"},
    {API_GET, "/api/v1/coupons/{id}", STAFF, 0, "tipcast_api_coupon_get", NULL, 0, NULL},
    {API_POST, "/api/v1/coupons/{id}/revoke", ADMIN | OPS, 0, "tipcast_api_coupon_revoke", NULL, API_BODY, ""},
    {API_POST, "/api/v1/pk", ADMIN | OPS | CRE, 0, "tipcast_api_pk_create", NULL, API_BODY | API_BODY_REQUIRED,
     "room_a,room_b,seconds"},
    {API_POST, "/api/v1/pk/{id}/accept", ADMIN | OPS | CRE, 0, "tipcast_api_pk_accept", NULL, API_BODY, ""},
    {API_GET, "/api/v1/pk/{id}", STAFF | CRE, 0, "tipcast_api_pk_get", NULL, 0, NULL},
    /* Campaigns (crowdfunding): a creator acts only on its own (checked in SQL). */
    {API_POST, "/api/v1/campaigns", ADMIN | CRE, 0, "tipcast_api_campaign_create", NULL, API_BODY | API_BODY_REQUIRED,
     "request_id,creator,title,description,target,deadline,mode,tiers[min_amount,title,stock]"},
    {API_GET, "/api/v1/campaigns", STAFF | CRE, 0, "tipcast_api_campaigns_list", NULL, 0, NULL},
    {API_GET, "/api/v1/campaigns/{id}", EVERYONE, 0, "tipcast_api_campaign_get", NULL, 0, NULL},
    {API_POST, "/api/v1/campaigns/{id}/approve", ADMIN | OPS, 0, "tipcast_api_campaign_approve", NULL, API_BODY,
     "reason"},
    {API_POST, "/api/v1/campaigns/{id}/reject", ADMIN | OPS, 0, "tipcast_api_campaign_reject", NULL,
     API_BODY | API_BODY_REQUIRED, "reason"},
    {API_POST, "/api/v1/campaigns/{id}/updates", ADMIN | CRE, 0, "tipcast_api_campaign_update_post", NULL,
     API_BODY | API_BODY_REQUIRED, "request_id,title,text"},
    {API_GET, "/api/v1/campaigns/{id}/pledges", ADMIN | FIN | OPS | SUP | AUD | CRE, 0, "tipcast_api_campaign_pledges",
     NULL, 0, NULL},
};
const size_t api_routes_count = sizeof api_routes / sizeof api_routes[0];

static int param_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == ':' || c == '-';
}

/* Matches path against pattern, segment by segment; "{name}" takes one
 * segment. Returns 1 with the parameters in out, else 0. */
static int match(const char *pattern, const char *path, struct api_params *out)
{
    out->n = 0;
    while (*pattern && *path) {
        if (*pattern == '{') {
            const char *close = strchr(pattern, '}');
            size_t nlen = (size_t)(close - pattern - 1), vlen = strcspn(path, "/");
            if (out->n == API_PARAMS_MAX || nlen >= sizeof out->name[0] || vlen == 0 || vlen > API_PARAM_MAX)
                return 0;
            for (size_t i = 0; i < vlen; i++)
                if (!param_char(path[i]))
                    return 0;
            memcpy(out->name[out->n], pattern + 1, nlen);
            out->name[out->n][nlen] = '\0';
            memcpy(out->value[out->n], path, vlen);
            out->value[out->n][vlen] = '\0';
            out->n++;
            pattern = close + 1;
            path += vlen;
            continue;
        }
        if (*pattern++ != *path++)
            return 0;
    }
    return *pattern == '\0' && *path == '\0';
}

const struct api_route *api_route_find(enum api_method method, const char *path, struct api_params *out,
                                       int *other_method)
{
    *other_method = 0;
    struct api_params scratch;
    for (size_t i = 0; i < api_routes_count; i++) {
        const struct api_route *r = &api_routes[i];
        if (!match(r->path, path, r->method == method ? out : &scratch))
            continue;
        if (r->method == method)
            return r;
        *other_method = 1;
    }
    return NULL;
}

/* The entry `key` of the field list spec[0, len): 1 with its sub-list (or
 * len 0) in *sub, *sublen; 0 when it is not there. */
static int spec_find(const char *spec, size_t len, const char *key, const char **sub, size_t *sublen)
{
    size_t klen = strlen(key), i = 0;
    while (i < len) {
        size_t name = i;
        while (i < len && spec[i] != ',' && spec[i] != '[')
            i++;
        size_t nlen = i - name;
        const char *in = NULL;
        size_t inlen = 0;
        if (i < len && spec[i] == '[') {
            int depth = 1;
            in = spec + ++i;
            while (i < len && depth > 0) {
                depth += spec[i] == '[' ? 1 : spec[i] == ']' ? -1 : 0;
                i++;
            }
            inlen = (size_t)(spec + i - 1 - in);
        }
        if (nlen == klen && memcmp(spec + name, key, klen) == 0) {
            *sub = in;
            *sublen = inlen;
            return 1;
        }
        while (i < len && spec[i] != ',')
            i++;
        i++;
    }
    return 0;
}

/* Appends s to where (at w, of n bytes), cut at a UTF-8 character. */
static size_t where_add(char *where, size_t n, size_t w, const char *s)
{
    size_t len = strlen(s);
    if (w + len >= n) {
        len = n - 1 - w;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;
    }
    memcpy(where + w, s, len);
    where[w + len] = '\0';
    return w + len;
}

static int object_unknown(const json_t *obj, const char *spec, size_t len, char *where, size_t n, size_t w)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        const char *sub;
        size_t sublen;
        size_t at = where_add(where, n, w, key);
        if (!spec_find(spec, len, key, &sub, &sublen))
            return -1;
        if (!sub)
            continue;
        if (json_is_object(v) && object_unknown(v, sub, sublen, where, n, where_add(where, n, at, ".")) < 0)
            return -1;
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            char idx[32];
            snprintf(idx, sizeof idx, "[%zu].", i);
            if (json_is_object(e) && object_unknown(e, sub, sublen, where, n, where_add(where, n, at, idx)) < 0)
                return -1;
        }
    }
    return 0;
}

int api_body_unknown(const struct api_route *r, const json_t *body, char *where, size_t n)
{
    if (n == 0)
        return -1;
    where[0] = '\0';
    if (!json_is_object(body))
        return 0;
    const char *spec = r->fields ? r->fields : "";
    return object_unknown(body, spec, strlen(spec), where, n, 0);
}

int api_route_allows(const struct api_route *r, enum role role) { return (r->roles & API_ROLE(role)) != 0; }

const char *api_method_name(enum api_method m)
{
    static const char *const names[API_METHODS] = {"GET", "POST", "PUT"};
    return m < API_METHODS ? names[m] : "?";
}

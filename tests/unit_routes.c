/* unit_routes.c - tests of settlement/routes.c: path matching and its
 * parameters, 404 against 405, and the permission matrix's own rule. */
#include <stdio.h>
#include <string.h>

#include "routes.h"
#include "unit.h"

static void test_match(void)
{
    struct api_params p;
    int other;
    const struct api_route *r = api_route_find(API_POST, "/api/v1/orders/3-1700000000000-0/refund", &p, &other);
    CHECK(r != NULL);
    CHECK_STR(r ? r->fn : "", "tipcast_api_order_refund");
    CHECK_INT(p.n, 1);
    CHECK_STR(p.name[0], "id");
    CHECK_STR(p.value[0], "3-1700000000000-0");
    r = api_route_find(API_PUT, "/api/v1/currency-rates/USD", &p, &other);
    CHECK(r != NULL);
    CHECK_STR(p.name[0], "currency");
    CHECK_STR(p.value[0], "USD");
    /* A path without parameters. */
    r = api_route_find(API_GET, "/api/v1/recharges", &p, &other);
    CHECK(r != NULL && p.n == 0);
    /* The same path with another method: 405, not 404. */
    CHECK(api_route_find(API_PUT, "/api/v1/recharges", &p, &other) == NULL);
    CHECK_INT(other, 1);
    CHECK(api_route_find(API_GET, "/api/v1/nothing", &p, &other) == NULL);
    CHECK_INT(other, 0);
}

static void test_bad_parameters(void)
{
    struct api_params p;
    int other;
    char longid[API_PARAM_MAX + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    char path[128];
    snprintf(path, sizeof path, "/api/v1/orders/%s", longid);
    CHECK(api_route_find(API_GET, path, &p, &other) == NULL); /* 65 bytes: too long */
    longid[API_PARAM_MAX] = '\0';
    snprintf(path, sizeof path, "/api/v1/orders/%s", longid);
    CHECK(api_route_find(API_GET, path, &p, &other) != NULL); /* 64: fine */
    CHECK(api_route_find(API_GET, "/api/v1/orders/", &p, &other) == NULL);
    CHECK(api_route_find(API_GET, "/api/v1/orders/a%20b", &p, &other) == NULL);
    CHECK(api_route_find(API_GET, "/api/v1/orders/a/b", &p, &other) == NULL);
    CHECK(api_route_find(API_GET, "/api/v1/recharges/", &p, &other) == NULL);
    CHECK(api_route_find(API_GET, "/api/v1/recharges?x", &p, &other) == NULL);
}

static void test_roles(void)
{
    struct api_params p;
    int other;
    const struct api_route *r = api_route_find(API_GET, "/api/v1/creators/alice/balance", &p, &other);
    CHECK(r && api_route_allows(r, ROLE_CREATOR) && (r->own & API_ROLE(ROLE_CREATOR)));
    CHECK(r && api_route_allows(r, ROLE_FINANCE) && !(r->own & API_ROLE(ROLE_FINANCE)));
    CHECK(r && !api_route_allows(r, ROLE_VIEWER) && !api_route_allows(r, ROLE_OPERATIONS));
    r = api_route_find(API_GET, "/api/v1/audit", &p, &other);
    CHECK(r && api_route_allows(r, ROLE_AUDITOR) && api_route_allows(r, ROLE_ADMIN));
    CHECK(r && !api_route_allows(r, ROLE_FINANCE) && !api_route_allows(r, ROLE_SUPPORT));
    /* The callback takes no token at all. */
    r = api_route_find(API_POST, "/api/v1/payments/callback", &p, &other);
    CHECK(r && (r->flags & API_SIGNED) && r->roles == 0);
    /* Every route answered by SQL names a tipcast_api_ function; only /me is
     * answered by the server; an auditor never changes anything. */
    for (size_t i = 0; i < api_routes_count; i++) {
        const struct api_route *x = &api_routes[i];
        CHECK(x->fn == NULL ? strcmp(x->path, "/api/v1/me") == 0 : strncmp(x->fn, "tipcast_api_", 12) == 0);
        if (x->method != API_GET)
            CHECK(!api_route_allows(x, ROLE_AUDITOR));
    }
}

/* A route that takes a body names its fields; one that does not, none. */
static void test_every_body_route_lists_its_fields(void)
{
    for (size_t i = 0; i < api_routes_count; i++) {
        const struct api_route *r = &api_routes[i];
        if (((r->flags & API_BODY) != 0) != (r->fields != NULL))
            fprintf(stderr, "route %s %s: fields %s\n", api_method_name(r->method), r->path,
                    r->fields ? "without API_BODY" : "missing");
        CHECK(((r->flags & API_BODY) != 0) == (r->fields != NULL));
    }
}

static int unknown(enum api_method m, const char *path, const char *json, char *where, size_t n)
{
    struct api_params p;
    int other;
    const struct api_route *r = api_route_find(m, path, &p, &other);
    json_error_t err;
    json_t *body = json_loads(json, 0, &err);
    CHECK(r != NULL && body != NULL);
    int rc = r && body ? api_body_unknown(r, body, where, n) : 0;
    json_decref(body);
    return rc;
}

static void test_unknown_fields(void)
{
    char w[64];
    /* Known fields, whatever their values (the SQL function checks those). */
    CHECK_INT(unknown(API_POST, "/api/v1/orders/1-2-3/refund", "{\"refund_id\":1,\"amount\":[],\"reason\":null}", w,
                      sizeof w),
              0);
    CHECK_INT(unknown(API_POST, "/api/v1/orders/1-2-3/refund", "{}", w, sizeof w), 0);
    /* A field the route does not have; a prefix or an extension of a known one. */
    CHECK_INT(unknown(API_POST, "/api/v1/orders/1-2-3/refund", "{\"reason\":\"x\",\"ammount\":5}", w, sizeof w), -1);
    CHECK_STR(w, "ammount");
    CHECK_INT(unknown(API_POST, "/api/v1/orders/1-2-3/refund", "{\"refund\":1}", w, sizeof w), -1);
    CHECK_STR(w, "refund");
    CHECK_INT(unknown(API_POST, "/api/v1/orders/1-2-3/refund", "{\"refund_ids\":1}", w, sizeof w), -1);
    CHECK_STR(w, "refund_ids");
    /* A route whose body has no fields. */
    CHECK_INT(unknown(API_POST, "/api/v1/withdrawals/7/approve", "{}", w, sizeof w), 0);
    CHECK_INT(unknown(API_POST, "/api/v1/withdrawals/7/approve", "{\"reason\":\"x\"}", w, sizeof w), -1);
    CHECK_STR(w, "reason");
    /* Objects in an array, and an object, under a field with a list. */
    const char *rule = "{\"name\":\"r\",\"tiers\":[{\"min_volume\":0,\"platform_fee_bp\":1},"
                       "{\"min_volume\":5,\"fee\":2}]}";
    CHECK_INT(unknown(API_POST, "/api/v1/revenue-rules", rule, w, sizeof w), -1);
    CHECK_STR(w, "tiers[1].fee");
    CHECK_INT(unknown(API_POST, "/api/v1/revenue-rules", "{\"tiers\":{\"min_volume\":0,\"x\":1}}", w, sizeof w),
              -1);
    CHECK_STR(w, "tiers.x");
    CHECK_INT(unknown(API_POST, "/api/v1/revenue-rules", "{\"tiers\":[{\"min_volume\":0}, 3, \"s\"]}", w, sizeof w),
              0);
    /* The last entry of a list, and a field named like a sub-field. */
    CHECK_INT(unknown(API_POST, "/api/v1/campaigns", "{\"tiers\":[{\"stock\":1}],\"mode\":\"flexible\"}", w,
                      sizeof w),
              0);
    CHECK_INT(unknown(API_POST, "/api/v1/campaigns", "{\"stock\":1}", w, sizeof w), -1);
    CHECK_STR(w, "stock");
    /* A field of nested objects without a list is not looked into. */
    CHECK_INT(unknown(API_PUT, "/api/v1/risk/rules", "{\"rules\":{\"anything\":1}}", w, sizeof w), 0);
    /* A long name is cut at a character: 30 two-byte characters in 16 bytes. */
    char longname[128] = "{\"";
    for (int i = 0; i < 30; i++)
        strcat(longname, "\xc3\xa9");
    strcat(longname, "\":1}");
    char small[16];
    CHECK_INT(unknown(API_POST, "/api/v1/agencies", longname, small, sizeof small), -1);
    CHECK_INT((int)strlen(small), 14);
    CHECK_STR(small, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
}

int main(void)
{
    test_match();
    test_bad_parameters();
    test_roles();
    test_every_body_route_lists_its_fields();
    test_unknown_fields();
    return unit_finish("unit_routes");
}

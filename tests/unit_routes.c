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

int main(void)
{
    test_match();
    test_bad_parameters();
    test_roles();
    return unit_finish("unit_routes");
}

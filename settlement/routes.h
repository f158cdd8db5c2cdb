/* routes.h - the admin API's routes (docs/admin-api.md): for each, who may
 * call it and the SQL function that does it.
 *
 * A route's work is one PostgreSQL function, tipcast_api_<name>(ctx jsonb)
 * RETURNS jsonb (storage/migrations), which checks its input, takes its
 * row locks, makes its change and writes its audit row in one transaction.
 * This table is what the server's HTTP side needs to know to call it: the
 * method and path, the roles of the permission matrix, and whether the
 * route lists rows that may be exported as CSV. */
#ifndef TIPCAST_ROUTES_H
#define TIPCAST_ROUTES_H

#include <jansson.h>
#include <stddef.h>

#include "jwt.h"

enum api_method { API_GET, API_POST, API_PUT, API_METHODS };

/* A role's bit in api_route.roles and .own. */
#define API_ROLE(r) (1u << (r))

/* Path parameters a route may have, and their longest value. */
#define API_PARAMS_MAX 2
#define API_PARAM_MAX 64

/* Flags of a route. */
#define API_SIGNED 1u /* no token: the payment provider's signature (core/sign.h) */
#define API_BODY 2u   /* takes a JSON object body (optional unless API_BODY_REQUIRED) */
#define API_BODY_REQUIRED 4u
#define API_OVERLAY_TOKEN 8u /* the answer gains "token": an overlay JWT that tipcastd signs for body.room, body.exp */

struct api_route {
    enum api_method method;
    const char *path;     /* "/api/v1/orders/{id}/refund" */
    unsigned roles;       /* API_ROLE bits of the roles that may call it */
    unsigned own;         /* of those, the roles that may only name themselves as {id} */
    const char *fn;       /* "tipcast_api_order_refund"; NULL: answered by the server itself */
    const char *csv;      /* the columns of ?format=csv, comma-separated; NULL: no CSV */
    unsigned flags;
    /* With API_BODY: the body's fields, comma-separated, as in
     * docs/openapi.yaml; "name[a,b]" says that name's object, or each object
     * of name's array, holds only a and b. Any other field is refused. */
    const char *fields;
};

/* A path's parameters, by the names in the route's path. */
struct api_params {
    int n;
    char name[API_PARAMS_MAX][16];
    char value[API_PARAMS_MAX][API_PARAM_MAX + 1];
};

/* The route of (method, path), with its parameters in `out`. NULL when
 * none: *other_method is then 1 when the path exists with another method
 * (405), else 0 (404). A parameter must be 1..API_PARAM_MAX bytes of
 * [A-Za-z0-9_.:-]. */
const struct api_route *api_route_find(enum api_method method, const char *path, struct api_params *out,
                                       int *other_method);

/* The whole table, for tests and docs. */
extern const struct api_route api_routes[];
extern const size_t api_routes_count;

/* Checks the body's field names against the route's `fields`. Returns 0
 * when every one is known; else -1 with the first unknown one's place in
 * `where` ("zzz", "tiers[1].zzz"; cut to n - 1 bytes at a character). */
int api_body_unknown(const struct api_route *r, const json_t *body, char *where, size_t n);

/* 1 when `role` may call the route (the own rule aside). */
int api_route_allows(const struct api_route *r, enum role role);

const char *api_method_name(enum api_method m);

#endif

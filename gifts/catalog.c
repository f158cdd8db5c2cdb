/* catalog.c - the gift catalog and live creators (see catalog.h). */
#include "catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "coins.h"
#include "message.h"
#include "log.h"

const char catalog_query[] =
    "SELECT json_build_object("
    "'gifts', COALESCE((SELECT json_agg(json_build_object('id', id, 'name', name, 'price', price,"
    " 'animation', animation, 'tier', tier, 'enabled', enabled, 'sort', sort_order)"
    " ORDER BY sort_order, id) FROM gifts), '[]'::json),"
    "'creators', COALESCE((SELECT json_agg(id ORDER BY id) FROM creators WHERE live), '[]'::json))::text";

static void catalog_release(struct catalog *c)
{
    free(c->gifts);
    free(c->by_id);
    free(c->creators);
    c->gifts = NULL;
    c->by_id = NULL;
    c->creators = NULL;
    c->ngifts = c->ncreators = 0;
}

void catalog_free(struct catalog *c) { catalog_release(c); }

static int cmp_gift_id(const void *a, const void *b)
{
    const struct gift *x = *(const struct gift *const *)a, *y = *(const struct gift *const *)b;
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_creator(const void *a, const void *b) { return strcmp(a, b); }

static int copy_str(char *dst, size_t cap, json_t *v)
{
    if (!json_is_string(v) || json_string_length(v) >= cap)
        return -1;
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

int catalog_load_json(struct catalog *c, const char *text, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    struct catalog n;
    memset(&n, 0, sizeof n);
    if (len > CATALOG_JSON_MAX) {
        snprintf(err, errlen, "catalog document too large");
        return -1;
    }
    json_t *root = json_loadb(text, len, 0, &jerr);
    json_t *gifts = root ? json_object_get(root, "gifts") : NULL;
    json_t *creators = root ? json_object_get(root, "creators") : NULL;
    if (!json_is_array(gifts) || !json_is_array(creators) || json_array_size(gifts) > CATALOG_GIFTS_MAX ||
        json_array_size(creators) > CATALOG_CREATORS_MAX) {
        snprintf(err, errlen, "catalog document malformed or too large");
        goto fail;
    }
    n.ngifts = json_array_size(gifts);
    n.ncreators = json_array_size(creators);
    n.gifts = calloc(n.ngifts + 1, sizeof *n.gifts);
    n.by_id = calloc(n.ngifts + 1, sizeof *n.by_id);
    n.creators = calloc(n.ncreators + 1, sizeof *n.creators);
    if (!n.gifts || !n.by_id || !n.creators) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n.ngifts; i++) {
        json_t *g = json_array_get(gifts, i);
        struct gift *d = &n.gifts[i];
        json_t *id = json_object_get(g, "id"), *price = json_object_get(g, "price");
        if (!json_is_integer(id) || !json_is_integer(price) || json_integer_value(price) < 1 ||
            json_integer_value(price) > COINS_MAX ||
            copy_str(d->name, sizeof d->name, json_object_get(g, "name")) < 0 ||
            copy_str(d->animation, sizeof d->animation, json_object_get(g, "animation")) < 0) {
            snprintf(err, errlen, "catalog: gift %zu is malformed", i);
            goto fail;
        }
        d->id = (int)json_integer_value(id);
        d->price = json_integer_value(price);
        d->tier = (int)json_integer_value(json_object_get(g, "tier"));
        d->sort = (int)json_integer_value(json_object_get(g, "sort"));
        d->enabled = json_is_true(json_object_get(g, "enabled"));
        n.by_id[i] = d;
    }
    qsort(n.by_id, n.ngifts, sizeof *n.by_id, cmp_gift_id);
    for (size_t i = 0; i < n.ncreators; i++) {
        json_t *cr = json_array_get(creators, i);
        if (!json_is_string(cr) || !id_valid(json_string_value(cr), json_string_length(cr))) {
            snprintf(err, errlen, "catalog: creator %zu is malformed", i);
            goto fail;
        }
        memcpy(n.creators[i], json_string_value(cr), json_string_length(cr) + 1);
    }
    qsort(n.creators, n.ncreators, sizeof *n.creators, cmp_creator);
    json_decref(root);
    catalog_release(c);
    n.version = c->version + 1;
    *c = n;
    log_msg(LOG_INFO, "catalog: %zu gifts, %zu live creators (version %lld)", c->ngifts, c->ncreators,
            (long long)c->version);
    return 0;
fail:
    json_decref(root);
    catalog_release(&n);
    return -1;
}

int catalog_load_blocking(struct catalog *c, const char *conninfo, char *err, size_t errlen)
{
    PGconn *pg = PQconnectdb(conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        snprintf(err, errlen, "catalog: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return -1;
    }
    PGresult *res = PQexec(pg, catalog_query);
    int rc = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        rc = catalog_load_json(c, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), err, errlen);
    else
        snprintf(err, errlen, "catalog: %s", PQerrorMessage(pg));
    PQclear(res);
    PQfinish(pg);
    return rc;
}

const struct gift *catalog_gift(const struct catalog *c, int64_t id)
{
    size_t lo = 0, hi = c->ngifts;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c->by_id[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->ngifts && c->by_id[lo]->id == id ? c->by_id[lo] : NULL;
}

int catalog_room_live(const struct catalog *c, const char *room)
{
    return c->ncreators && bsearch(room, c->creators, c->ncreators, sizeof *c->creators, cmp_creator) != NULL;
}

struct frame *catalog_frame(const struct catalog *c, enum fmt fmt, const char *req_id)
{
    uint32_t n = 0;
    for (size_t i = 0; i < c->ngifts; i++)
        n += (uint32_t)c->gifts[i].enabled;
    struct enc e;
    message_start(&e, fmt, 128 + 96 * (size_t)n, "catalog", req_id, 2);
    enc_key(&e, "version");
    enc_int(&e, c->version);
    enc_key(&e, "gifts");
    enc_array(&e, n);
    for (size_t i = 0; i < c->ngifts; i++) {
        const struct gift *g = &c->gifts[i];
        if (!g->enabled)
            continue;
        enc_map(&e, 5);
        enc_key(&e, "id");
        enc_int(&e, g->id);
        enc_key(&e, "name");
        enc_cstr(&e, g->name);
        enc_key(&e, "price");
        enc_int(&e, g->price);
        enc_key(&e, "animation");
        enc_cstr(&e, g->animation);
        enc_key(&e, "tier");
        enc_int(&e, g->tier);
        enc_end_map(&e);
    }
    enc_end_array(&e);
    enc_end_map(&e);
    return enc_finish(&e);
}

/* catalog.h - the gift catalog and the live creators, loaded from
 * PostgreSQL (tables gifts and creators) at start and again whenever they
 * change (LISTEN tipcast_catalog; see server/pgcheck.c). The server prices
 * every gift from here, never from the client. */
#ifndef TIPCAST_CATALOG_H
#define TIPCAST_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "jwt.h"

#define CATALOG_GIFTS_MAX 4096
#define CATALOG_CREATORS_MAX 1000000
#define CATALOG_NAME_MAX 64
#define CATALOG_ANIM_MAX 64
/* Bound on the catalog document read from PostgreSQL. */
#define CATALOG_JSON_MAX (64u << 20)

struct gift {
    int id;
    int64_t price;
    int tier;
    int sort;
    int enabled;
    char name[CATALOG_NAME_MAX + 1];
    char animation[CATALOG_ANIM_MAX + 1];
};

/* One loaded catalog. Gifts are kept in display order; `by_id` indexes
 * them sorted by id for lookups; live creators are sorted for bsearch. */
struct catalog {
    struct gift *gifts;
    size_t ngifts;
    const struct gift **by_id;
    char (*creators)[ID_MAX + 1];
    size_t ncreators;
    int64_t version; /* loads so far: a version for clients' caches */
};

/* The SQL whose single text value is the catalog document. */
extern const char catalog_query[];

/* Replaces the catalog with the one in `json` (the text catalog_query
 * answers). Returns 0, or -1 with the old catalog kept and a message in
 * err when the document is malformed. */
int catalog_load_json(struct catalog *c, const char *json, size_t len, char *err, size_t errlen);

/* Loads the catalog with a blocking connection: for start-up only, before
 * the loop runs. Returns 0 or -1 with a message. */
int catalog_load_blocking(struct catalog *c, const char *conninfo, char *err, size_t errlen);

/* The gift with this id, or NULL. The pointer is valid until the next load. */
const struct gift *catalog_gift(const struct catalog *c, int64_t id);
/* 1 when `room` is a creator's room and the creator is live. */
int catalog_room_live(const struct catalog *c, const char *room);
/* The catalog reply: enabled gifts in display order. */
struct frame *catalog_frame(const struct catalog *c, enum fmt fmt, const char *req_id);

/* Frees what the catalog holds; it is empty afterwards. */
void catalog_free(struct catalog *c);

#endif

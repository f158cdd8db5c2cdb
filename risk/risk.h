/* risk.h - the risk rules this node enforces on the gift path, and the
 * frozen accounts (docs/operations.md, "Risk control").
 *
 * Rules and freezes live in PostgreSQL (risk_rules, account_freezes,
 * storage/migrations/008_risk.sql) and are held here in memory, loaded at
 * start and again when PostgreSQL notifies `tipcast_risk` (server/pgcheck.c),
 * so a gift's checks cost no round trip. risk_gate answers, before the
 * wallet script: account_frozen, then the user's and the address's rates
 * (token buckets of this node: with N nodes behind a balancer that does not
 * pin users or addresses, a user may send up to N times the rate). The
 * daily caps are not checked here but handed to the wallet script
 * (risk_wallet), which keeps the day's spending on the wallet's shard and
 * so is exact across nodes. */
#ifndef TIPCAST_RISK_H
#define TIPCAST_RISK_H

#include <stddef.h>
#include <stdint.h>

#include "bucket.h"
#include "errors.h"
#include "jwt.h"
#include "wallet.h"

/* Bound on frozen accounts held, and on the document read. */
#define RISK_FROZEN_MAX 1000000
#define RISK_JSON_MAX (96u << 20)
/* Bucket sets per table (x RISK_BUCKET_WAYS keys: 8192 x 8 = 65536 users and
 * as many addresses limited at once, about 5 MB each). */
#define RISK_BUCKET_SETS 8192

/* The rules tipcastd itself reads; the others are read by SQL. */
enum risk_rule {
    RISK_GIFT_USER_PER_MIN,
    RISK_GIFT_IP_PER_MIN,
    RISK_DAILY_SPEND_CAP,
    RISK_NEW_ACCOUNT_DAYS,
    RISK_NEW_ACCOUNT_DAILY_CAP,
    RISK_NEW_USER_BONUS, /* promotions: coins a new viewer's wallet gets once (gifts/wallet.h wallet_bonus) */
    RISK_RULES
};

/* What a risk refusal was, for tipcast_risk_refusals_total{code, check}:
 * a gift or tip refused here, or an admin API call refused in SQL (a
 * recharge or withdrawal of a frozen account, the recharge rates; counted
 * by the HTTP side, risk_count). The daily caps are the wallet's results. */
enum risk_refusal { RISK_REF_FROZEN, RISK_REF_USER_RATE, RISK_REF_IP_RATE, RISK_REF_API_FROZEN, RISK_REF_API_RATE,
                    RISK_REFUSALS };

struct risk {
    int64_t rule[RISK_RULES];
    char (*frozen)[ID_MAX + 1]; /* sorted, for bsearch */
    size_t nfrozen;
    int64_t version; /* loads so far */
    struct risk_buckets by_user, by_addr;
    uint64_t refusals[RISK_REFUSALS];
};

/* The SQL whose single text value is the risk document. */
extern const char risk_query[];

/* Sets the defaults (the same as 008's) and allocates the buckets.
 * Returns 0, or -1 when out of memory. */
int risk_init(struct risk *r);
void risk_free(struct risk *r);

/* Replaces rules and freezes with those of `json` (what risk_query
 * answers). Returns 0, or -1 with the previous ones kept and a message in
 * err. A rule the document lacks keeps its default. */
int risk_load_json(struct risk *r, const char *json, size_t len, char *err, size_t errlen);
/* Loads with a blocking connection: for start-up only. */
int risk_load_blocking(struct risk *r, const char *conninfo, char *err, size_t errlen);

int risk_frozen(const struct risk *r, const char *account);

/* The checks of a gift or tip by `user` from the address key addr[0..alen)
 * (alen 0: unknown or exempt) at now_us (monotonic). Returns -1 when it may
 * go on, else the error to answer (ERR_ACCOUNT_FROZEN, or
 * ERR_RISK_RATE_LIMITED with *retry_ms), counted. */
int risk_gate(struct risk *r, const char *user, const void *addr, size_t alen, int64_t now_us, int64_t *retry_ms);

/* The caps and the new-account age for the wallet script, into out (ip and
 * device are the caller's). */
void risk_wallet(const struct risk *r, struct wallet_risk *out);

/* The metric's labels of a refusal: its error code and the check
 * ("frozen", "user_rate", "ip_rate", "api"). */
const char *risk_refusal_code(enum risk_refusal k);
const char *risk_refusal_check(enum risk_refusal k);

/* Counts an admin API refusal of code `code` when it is a risk refusal. */
void risk_count_api(struct risk *r, const char *code);

#endif

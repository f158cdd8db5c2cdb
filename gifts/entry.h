/* entry.h - outbox entries as the consumer groups see them: parsed,
 * checked and copied out of Redis's reply once, by one parser, for every
 * group (consumer.h).
 *
 * Entry fields, as wallet_move.lua writes them (all values are strings):
 *   k   kind: "gift", "tip", "credit", "recharge", "refund", "pledge" or
 *       "crefund" (a campaign refund)
 *   u   the user whose wallet moved (the sender; the credited user)
 *   r   room id (= the creator's user id); for a refund the refunded
 *       order's room; "" for credit and recharge
 *   g   gift id (gift), "0" otherwise
 *   gn  gift name (gift), "" otherwise
 *   an  gift animation key (gift), "" otherwise
 *   n   count (gift), "1" otherwise
 *   p   unit price in coins (gift), = a otherwise
 *   a   amount in coins, > 0 (the debit of a gift or tip, the credit)
 *   b   the wallet's balance after the movement
 *   m   combo id (gift, may be ""), "" otherwise
 *   t   message text (tip, may be ""), the reason of a credit
 *   q   the client's request id (idempotency key, per user)
 *   ts  server time in ms since the epoch
 *   ro  the role of the user who made the request (optional; "viewer")
 *   x   recharge and refund only: the external reference (the recharge id,
 *       the refund id) that the ledger applies them under
 *   ots refund only: the refunded order's created_at in ms (the periods of
 *       the leaderboards it is taken off)
 *   pledge and crefund: r is the campaign id (an id: digits); x is the
 *       pledge's tier (optional, digits) for a pledge, the refunded
 *       pledge's order id for a crefund (required)
 *   ip  optional (gift, tip): the client's IP address as text ("203.0.113.7",
 *       "2001:db8::1"); one that is not an IPv4 or IPv6 address is taken as
 *       absent, never as a reason to reject the entry
 *   dv  optional (gift, tip): the client's device id, at most
 *       ENTRY_DEVICE_MAX bytes (longer: taken as absent), repaired as texts are
 *
 * Identities and money must be exact: an entry whose kind, ids, amounts or
 * time cannot be read is ENTRY_BAD, with the reason and its raw fields kept,
 * rather than guessed at. Free texts are repaired instead (a byte that is
 * not UTF-8 becomes U+FFFD), so no group ever stalls on one. */
#ifndef TIPCAST_ENTRY_H
#define TIPCAST_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "outbox.h"

/* An entry larger than this (all fields and values) is ENTRY_BAD. */
#define ENTRY_BYTES_MAX 65536
/* An entry's time later than the end of year 9999 is ENTRY_BAD: PostgreSQL
 * could not store it, and the ledger would never commit it. */
#define ENTRY_TS_MS_MAX INT64_C(253402300799999)
#define ENTRY_REASON_MAX 96
/* Longest device id (dv) kept. */
#define ENTRY_DEVICE_MAX 64
/* Longest external reference (x) of a recharge or refund. */
#define ENTRY_REF_MAX 128

enum entry_kind {
    ENTRY_GIFT,
    ENTRY_TIP,
    ENTRY_CREDIT,
    ENTRY_RECHARGE, /* coins bought, credited by the settlement layer */
    ENTRY_REFUND,   /* an order's coins given back by the settlement layer */
    ENTRY_PLEDGE,   /* coins pledged to a campaign: wallet -> the campaign's escrow */
    ENTRY_CREFUND,  /* a pledge given back from escrow by the campaign job */
    ENTRY_BAD,  /* malformed: `reason` and `raw` say how */
    ENTRY_GONE, /* deleted from the stream: only its id is left */
};

/* A string of the entry: valid UTF-8 (it may hold NUL), NUL-terminated,
 * in the batch's memory; "" when absent. */
struct entry_str {
    const char *s;
    size_t len;
};

struct entry {
    int shard;
    char id[OUTBOX_STREAM_ID_MAX + 1];
    enum entry_kind kind;
    int64_t gift_id, count, unit_price, amount, balance, ts_ms;
    int64_t order_ts_ms; /* refund: the refunded order's time (ots); 0 otherwise */
    struct entry_str user, room, gift_name, animation, combo, text, request_id, role;
    struct entry_str ref; /* recharge, refund, crefund: x; pledge: its tier or ""; "" otherwise */
    struct entry_str ip;     /* canonical text of ip, "" when absent or not an address */
    struct entry_str device; /* dv, "" when absent */
    char reason[ENTRY_REASON_MAX];
    struct entry_str raw; /* ENTRY_BAD: the fields as "name=value\n" lines */
    uint8_t retry;        /* set by a group's applier: not applied, read it again */
};

/* The entries of one read, in the reply's order: a shard's entries are
 * contiguous and in stream order. Owns its memory, which it keeps from one
 * read to the next (as large as the largest read so far): memory handed
 * back and asked for again at every read costs a page fault per 4 KiB. */
struct entry_batch {
    struct entry *e;
    size_t n;
    char *arena;
    size_t cap, arena_cap; /* entries e has room for, bytes of arena */
};

/* Fills `b` (empty, or reset) from an XREADGROUP reply [[key, [[id,
 * fields], ...]], ...] of ob's streams. Returns the number of entries, or
 * -1 when the reply is not such a reply or memory ran out (then `b` is
 * empty). */
int entry_batch_fill(struct entry_batch *b, const struct outbox *ob, const redisReply *reply);

/* Empties the batch, keeping its memory for the next fill. */
void entry_batch_reset(struct entry_batch *b);
/* Frees the batch's memory; `b` is empty afterwards. */
void entry_batch_clear(struct entry_batch *b);

/* "<shard>-<stream id>" of an entry into buf (OUTBOX_ORDER_ID_MAX + 1). */
void entry_order_id(const struct entry *e, char *buf, size_t cap);

#endif

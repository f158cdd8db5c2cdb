/* roomevent.c - room event kinds, messages and bodies (see roomevent.h). */
#include "roomevent.h"

#include <string.h>

#include <msgpack.h>

static const char *const kind_names[] = {[EVENT_OTHER] = "", [EVENT_NOTICE] = "notice", [EVENT_GIFT] = "gift",
                                         [EVENT_TIP] = "tip"};

const char *event_kind_name(enum event_kind k) { return kind_names[k]; }

enum event_kind event_kind_of(const char *s, size_t len)
{
    for (int k = EVENT_NOTICE; k <= EVENT_TIP; k++)
        if (strlen(kind_names[k]) == len && memcmp(kind_names[k], s, len) == 0)
            return (enum event_kind)k;
    return EVENT_OTHER;
}

int event_moves_board(enum event_kind k) { return k == EVENT_GIFT || k == EVENT_TIP; }

int event_message_read(const char *msg, size_t len, int64_t *seq, enum event_kind *kind, const uint8_t **body,
                       size_t *body_len)
{
    int64_t s = 0;
    size_t i = 0;
    while (i < len && i < 18 && msg[i] >= '0' && msg[i] <= '9')
        s = s * 10 + (msg[i++] - '0');
    if (i == 0 || i >= len || msg[i] != ':')
        return -1;
    const char *k = msg + i + 1;
    if (i + 1 < len && (uint8_t)*k >= 0x80) {
        /* "<seq>:<body>", as nodes before the explicit kind published: a
         * body is a msgpack map, whose first byte no kind name has. */
        if (len - i - 1 > EVENT_BODY_MAX)
            return -1;
        *seq = s;
        *kind = EVENT_OTHER;
        *body = (const uint8_t *)k;
        *body_len = len - i - 1;
        return 0;
    }
    const char *colon = memchr(k, ':', len - i - 1);
    if (!colon)
        return -1;
    size_t rest = len - (size_t)(colon + 1 - msg);
    if (rest > EVENT_BODY_MAX)
        return -1;
    *seq = s;
    *kind = event_kind_of(k, (size_t)(colon - k));
    *body = (const uint8_t *)colon + 1;
    *body_len = rest;
    return 0;
}

struct buf {
    uint8_t *p;
    size_t len, cap;
    int overflow;
};

static int buf_write(void *data, const char *s, size_t len)
{
    struct buf *b = data;
    if (b->overflow || len > b->cap - b->len) {
        b->overflow = 1;
        return -1;
    }
    memcpy(b->p + b->len, s, len);
    b->len += len;
    return 0;
}

static void pk_str(msgpack_packer *pk, const char *s, size_t len) { msgpack_pack_str_with_body(pk, s, len); }
static void pk_cstr(msgpack_packer *pk, const char *s) { pk_str(pk, s, strlen(s)); }

int event_body_notice(uint8_t *out, size_t cap, const char *from, enum role role, const char *text,
                      size_t text_len, int64_t ts_ms)
{
    struct buf b = {out, 0, cap, 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, buf_write);
    msgpack_pack_map(&pk, 5);
    pk_cstr(&pk, "kind");
    pk_cstr(&pk, "notice");
    pk_cstr(&pk, "from");
    pk_cstr(&pk, from);
    pk_cstr(&pk, "role");
    pk_cstr(&pk, role_name(role));
    pk_cstr(&pk, "text");
    pk_str(&pk, text, text_len);
    pk_cstr(&pk, "ts");
    msgpack_pack_int64(&pk, ts_ms);
    return b.overflow ? -1 : (int)b.len;
}

int event_body_order(uint8_t *out, size_t cap, const struct entry *e, const char *order, int open)
{
    int gift = e->kind == ENTRY_GIFT;
    if (!gift && e->kind != ENTRY_TIP)
        return -1;
    struct buf b = {out, 0, cap, 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, buf_write);
    uint32_t pairs = gift ? 11 : 6;
    if (open)
        pairs += gift ? EVENT_GIFT_APPENDED : EVENT_TIP_APPENDED;
    msgpack_pack_map(&pk, pairs);
    pk_cstr(&pk, "kind");
    pk_cstr(&pk, gift ? "gift" : "tip");
    pk_cstr(&pk, "from");
    pk_str(&pk, e->user.s, e->user.len);
    if (gift) {
        pk_cstr(&pk, "role");
        pk_str(&pk, e->role.s, e->role.len);
    }
    pk_cstr(&pk, "order");
    pk_cstr(&pk, order);
    if (gift) {
        pk_cstr(&pk, "gift");
        msgpack_pack_int64(&pk, e->gift_id);
        pk_cstr(&pk, "name");
        pk_str(&pk, e->gift_name.s, e->gift_name.len);
        pk_cstr(&pk, "animation");
        pk_str(&pk, e->animation.s, e->animation.len);
        pk_cstr(&pk, "count");
        msgpack_pack_int64(&pk, e->count);
        pk_cstr(&pk, "combo");
        pk_str(&pk, e->combo.s, e->combo.len);
    }
    pk_cstr(&pk, "amount");
    msgpack_pack_int64(&pk, e->amount);
    if (!gift) {
        pk_cstr(&pk, "text");
        pk_str(&pk, e->text.s, e->text.len);
    }
    pk_cstr(&pk, "ts");
    msgpack_pack_int64(&pk, e->ts_ms);
    return b.overflow ? -1 : (int)b.len;
}

/* roomkeys.c - a room's key names (see roomkeys.h). */
#include "roomkeys.h"

#include <stdio.h>
#include <string.h>

void room_channel(const char *id, char *buf, size_t cap) { snprintf(buf, cap, "tc:{r:%s}:ev", id); }

void room_keys(const char *id, struct room_keys *k)
{
    snprintf(k->seq, sizeof k->seq, "tc:{r:%s}:seq", id);
    snprintf(k->hist, sizeof k->hist, "tc:{r:%s}:hist", id);
    snprintf(k->nodes, sizeof k->nodes, "tc:{r:%s}:nodes", id);
    room_channel(id, k->chan, sizeof k->chan);
    snprintf(k->wm, sizeof k->wm, "tc:{r:%s}:wm", id);
    board_all_key(id, k->board, sizeof k->board);
    snprintf(k->combo, sizeof k->combo, "tc:{r:%s}:combo", id);
    snprintf(k->combo_due, sizeof k->combo_due, "tc:{r:%s}:combo:due", id);
    snprintf(k->pins, sizeof k->pins, "tc:{r:%s}:pins", id);
    snprintf(k->pin, sizeof k->pin, "tc:{r:%s}:pin", id);
    snprintf(k->mods, sizeof k->mods, "tc:{r:%s}:mods", id);
}

int room_channel_id(const char *chan, size_t len, char *out)
{
    static const char pre[] = "tc:{r:", suf[] = "}:ev";
    size_t pl = sizeof pre - 1, sl = sizeof suf - 1;
    if (len <= pl + sl || len - pl - sl > ID_MAX || memcmp(chan, pre, pl) != 0 ||
        memcmp(chan + len - sl, suf, sl) != 0)
        return 0;
    memcpy(out, chan + pl, len - pl - sl);
    out[len - pl - sl] = '\0';
    return id_valid(out, len - pl - sl);
}

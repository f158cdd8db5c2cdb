/* roomkeys.c - a room's key names (see roomkeys.h). */
#include "roomkeys.h"

#include <string.h>

void room_channel(const char *id, char *buf, size_t cap) { board_room_key(id, "}:ev", buf, cap); }

void room_keys(const char *id, struct room_keys *k)
{
    board_room_key(id, "}:seq", k->seq, sizeof k->seq);
    board_room_key(id, "}:hist", k->hist, sizeof k->hist);
    board_room_key(id, "}:nodes", k->nodes, sizeof k->nodes);
    room_channel(id, k->chan, sizeof k->chan);
    board_room_key(id, "}:wm", k->wm, sizeof k->wm);
    board_all_key(id, k->board, sizeof k->board);
    board_room_key(id, "}:combo", k->combo, sizeof k->combo);
    board_room_key(id, "}:combo:due", k->combo_due, sizeof k->combo_due);
    board_room_key(id, "}:pins", k->pins, sizeof k->pins);
    board_room_key(id, "}:pin", k->pin, sizeof k->pin);
    board_room_key(id, "}:mods", k->mods, sizeof k->mods);
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

/* admin.h - the admin API's listener (admin.c, docs/admin-api.md): the
 * protocol of its lws vhost, and the statuses its answers are counted by. */
#ifndef TIPCAST_ADMIN_H
#define TIPCAST_ADMIN_H

#include <stddef.h>

#include <libwebsockets.h>

/* HTTP statuses the admin API's answers are counted by (admin.c counts,
 * metrics.c writes them), "other" (0) last. */
#define ADMIN_STATUSES 15
#define ADMIN_STATUS_LIST {200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 422, 429, 500, 503, 0}

/* The protocol of the admin listener's vhost (ctx: the server). */
int admin_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len);
size_t admin_session_size(void);

#endif

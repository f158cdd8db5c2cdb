/* rcluster.c - the link to a Redis Cluster (see rcluster.h). */
#include "rcluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "log.h"

/* A command in flight, kept whole until its answer so that a redirection
 * can send it again. */
struct rc_req {
    struct rcluster *rc;
    struct rcluster_node *node; /* where it was last sent */
    rlink_reply_cb *cb;
    void *priv;
    const struct rlink_script *script; /* NULL: a plain command */
    int link;
    int nkeys;
    int redirects;
    int argc;
    const char **argv;
    size_t *argvlen;
    /* argument bytes follow, then the argv and argvlen arrays */
};

static uint64_t now_ms(const struct rcluster *rc) { return uv_now(rc->loop); }

static int same(const struct slots_node *a, const struct slots_node *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

static void on_node_ready(void *ctx);
static void on_node_sub_ready(void *ctx);
static void on_node_sub_lost(void *ctx);
static void on_node_message(void *ctx, const char *chan, size_t chan_len, const char *payload, size_t len);
static void on_node_subscribed(void *ctx, const char *chan, size_t chan_len);
static void on_node_unsubscribed(void *ctx, const char *chan, size_t chan_len);
static void on_node_sub_error(void *ctx, const char *chan, size_t chan_len, const char *err);

static struct rcluster_node *node_get(struct rcluster *rc, const struct slots_node *addr)
{
    for (int i = 0; i < rc->nnodes; i++)
        if (same(&rc->nodes[i]->addr, addr))
            return rc->nodes[i];
    if (rc->stopping)
        return NULL;
    if (rc->nnodes == RCLUSTER_NODES_MAX) {
        log_msg(LOG_WARN, "redis cluster: no room for node %s:%d", addr->host, addr->port);
        return NULL;
    }
    struct rcluster_node *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->addr = *addr;
    n->rc = rc;
    struct rlink_hooks hooks = {
        .on_cmd_ready = on_node_ready,
        .cmd_ctx = n,
        .on_message = on_node_message,
        .on_subscribed = on_node_subscribed,
        .on_unsubscribed = on_node_unsubscribed,
        .on_sub_ready = on_node_sub_ready,
        .on_sub_lost = on_node_sub_lost,
        .on_sub_error = on_node_sub_error,
        .sub_ctx = n,
    };
    rlink_init(&n->rl, rc->loop, n->addr.host, addr->port, &hooks);
    rlink_set_wait(&n->rl, rc->wait_replicas, rc->wait_timeout_ms);
    for (int s = 0; s < rc->nscripts; s++)
        rlink_script_add(&n->rl, rc->scripts[s]);
    rlink_start(&n->rl);
    for (int i = 0; i < rc->nopen; i++) {
        int link = rlink_open(&n->rl, rc->open_names[i]);
        tc_assert(link == RLINK_READ_LINK + 1 + i);
    }
    rc->nodes[rc->nnodes++] = n;
    return n;
}

/* The front's on_cmd_ready: when the cluster becomes ready, and when a
 * master's command connection comes back while it is (a new Redis there
 * is checked again). */
static void ready_check(struct rcluster *rc)
{
    int ready = rcluster_ready(rc);
    if (ready && !rc->was_ready && rc->hooks.on_cmd_ready)
        rc->hooks.on_cmd_ready(rc->hooks.cmd_ctx);
    rc->was_ready = ready;
}

static void on_slots(redisReply *reply, void *priv)
{
    struct rcluster_node *from = priv;
    struct rcluster *rc = from->rc;
    rc->refreshing = 0;
    if (rc->stopping)
        return;
    char err[160];
    if (!reply || slots_map_parse(&rc->map, reply, &from->addr, err, sizeof err) < 0) {
        log_msg(LOG_WARN, "redis cluster: CLUSTER SLOTS from %s:%d: %s", from->addr.host, from->addr.port,
                reply ? err : "no answer");
        rc->refresh_wanted = 1;
        return;
    }
    rc->have_map = 1;
    rc->refreshes++;
    for (int i = 0; i < rc->map.nmasters; i++)
        rc->owner[i] = node_get(rc, &rc->map.masters[i]);
    unsigned unserved = slots_unserved(&rc->map);
    if (unserved)
        log_msg(LOG_WARN, "redis cluster: %u slots have no master", unserved);
    else if (rc->nmasters_logged != rc->map.nmasters) {
        rc->nmasters_logged = rc->map.nmasters;
        log_msg(LOG_INFO, "redis cluster: every slot served, by %d masters", rc->map.nmasters);
    }
    ready_check(rc);
}

/* Reads the map from a connected node: an owner when there is one up. */
static void refresh(struct rcluster *rc)
{
    rc->refresh_wanted = 1;
    if (rc->stopping || rc->refreshing || now_ms(rc) - rc->refreshed_ms < RCLUSTER_REFRESH_MIN_MS)
        return;
    struct rcluster_node *from = NULL;
    for (int i = 0; i < rc->map.nmasters && !from; i++)
        if (rc->owner[i] && rlink_cmd_ready(&rc->owner[i]->rl))
            from = rc->owner[i];
    for (int i = 0; i < rc->nnodes && !from; i++)
        if (rlink_cmd_ready(&rc->nodes[i]->rl))
            from = rc->nodes[i];
    if (!from)
        return;
    const char *argv[] = {"CLUSTER", "SLOTS"};
    const size_t len[] = {7, 5};
    if (rlink_command(&from->rl, RLINK_CMD_LINK, 2, argv, len, on_slots, from) == 0) {
        rc->refreshing = 1;
        rc->refresh_wanted = 0;
        rc->refreshed_ms = now_ms(rc);
    }
}

/* 1 when n serves slots in the map (a master, not a seed that is a replica). */
static int is_owner(const struct rcluster *rc, const struct rcluster_node *n)
{
    for (int i = 0; i < rc->map.nmasters; i++)
        if (rc->owner[i] == n)
            return 1;
    return 0;
}

static void on_node_ready(void *ctx)
{
    struct rcluster_node *n = ctx;
    struct rcluster *rc = n->rc;
    if (!rc->have_map || rc->refresh_wanted)
        refresh(rc);
    if (is_owner(rc, n))
        rc->was_ready = 0; /* this master may be a new Redis: checked again */
    ready_check(rc);
}

/* ---- The subscriber connections: each master's, seen by the front as one -- */

static void on_node_sub_ready(void *ctx)
{
    struct rcluster *rc = ((struct rcluster_node *)ctx)->rc;
    if (is_owner(rc, ctx) && rc->hooks.on_sub_ready)
        rc->hooks.on_sub_ready(rc->hooks.sub_ctx);
}

/* One master's subscriber went down (a replica's is no concern): the front
 * hears that every
 * subscription is gone (those on other masters are made again too, which
 * answers their catch-up from the history and changes nothing else). */
static void on_node_sub_lost(void *ctx)
{
    struct rcluster *rc = ((struct rcluster_node *)ctx)->rc;
    refresh(rc);
    if (is_owner(rc, ctx) && rc->hooks.on_sub_lost)
        rc->hooks.on_sub_lost(rc->hooks.sub_ctx);
}

static void on_node_message(void *ctx, const char *chan, size_t chan_len, const char *payload, size_t len)
{
    struct rcluster *rc = ((struct rcluster_node *)ctx)->rc;
    if (rc->hooks.on_message)
        rc->hooks.on_message(rc->hooks.sub_ctx, chan, chan_len, payload, len);
}

static void on_node_subscribed(void *ctx, const char *chan, size_t chan_len)
{
    struct rcluster *rc = ((struct rcluster_node *)ctx)->rc;
    if (rc->hooks.on_subscribed)
        rc->hooks.on_subscribed(rc->hooks.sub_ctx, chan, chan_len);
}

/* Asked for, or pushed when the channel's slot left the master: the map
 * is read again so that the next subscription goes to the new one. */
static void on_node_unsubscribed(void *ctx, const char *chan, size_t chan_len)
{
    struct rcluster *rc = ((struct rcluster_node *)ctx)->rc;
    refresh(rc);
    if (rc->hooks.on_unsubscribed)
        rc->hooks.on_unsubscribed(rc->hooks.sub_ctx, chan, chan_len);
}

static struct rcluster_node *moved(struct rcluster *rc, unsigned slot, const struct slots_node *addr);

static void on_node_sub_error(void *ctx, const char *chan, size_t chan_len, const char *err)
{
    struct rcluster_node *n = ctx;
    struct rcluster *rc = n->rc;
    unsigned slot;
    struct slots_node to;
    if (slots_redirect_parse(err, strlen(err), &slot, &to) == SLOTS_MOVED) {
        if (!to.host[0])
            memcpy(to.host, n->addr.host, sizeof to.host);
        moved(rc, slot, &to);
    }
    refresh(rc);
    if (rc->hooks.on_sub_error)
        rc->hooks.on_sub_error(rc->hooks.sub_ctx, chan, chan_len, err);
}

static void on_check(uv_timer_t *t)
{
    struct rcluster *rc = t->data;
    if (rc->refresh_wanted || (!rcluster_ready(rc) && now_ms(rc) - rc->refreshed_ms >= RCLUSTER_CHECK_MS))
        refresh(rc);
}

int rcluster_init(struct rcluster *rc, uv_loop_t *loop, const char *seeds, const struct rlink_hooks *hooks, char *err,
                  size_t errlen)
{
    memset(rc, 0, sizeof *rc);
    rc->loop = loop;
    if (hooks)
        rc->hooks = *hooks;
    const char *p = seeds;
    while (*p) {
        size_t len = strcspn(p, ",");
        const char *colon = NULL; /* the last one: an IPv6 host has colons */
        for (size_t i = 0; i < len; i++)
            if (p[i] == ':')
                colon = p + i;
        char *end;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        size_t hostlen = colon ? (size_t)(colon - p) : 0;
        if (!colon || end != p + len || port < 1 || port > 65535 || hostlen == 0 || hostlen > SLOTS_HOST_MAX) {
            snprintf(err, errlen, "a seed is host:port, with a port of 1..65535: \"%.*s\"", (int)(len > 64 ? 64 : len),
                     p);
            return -1;
        }
        if (rc->nseeds == RCLUSTER_SEEDS_MAX) {
            snprintf(err, errlen, "at most %d seeds", RCLUSTER_SEEDS_MAX);
            return -1;
        }
        struct slots_node *s = &rc->seeds[rc->nseeds++];
        memcpy(s->host, p, hostlen);
        s->host[hostlen] = '\0';
        s->port = (int)port;
        p += len;
        if (*p == ',')
            p++;
    }
    if (rc->nseeds == 0) {
        snprintf(err, errlen, "no seed node");
        return -1;
    }
    return 0;
}

void rcluster_script_add(struct rcluster *rc, struct rlink_script *s)
{
    tc_assert(!rc->started && rc->nscripts < RLINK_SCRIPTS_MAX);
    rlink_script_hash(s);
    rc->scripts[rc->nscripts++] = s;
}

void rcluster_set_wait(struct rcluster *rc, int replicas, int timeout_ms)
{
    tc_assert(!rc->started);
    rc->wait_replicas = replicas;
    rc->wait_timeout_ms = timeout_ms;
}

void rcluster_start(struct rcluster *rc)
{
    tc_assert(!rc->started);
    rc->started = 1;
    uv_timer_init(rc->loop, &rc->check);
    rc->check.data = rc;
    uv_timer_start(&rc->check, on_check, RCLUSTER_REFRESH_MIN_MS, RCLUSTER_REFRESH_MIN_MS);
    uv_unref((uv_handle_t *)&rc->check);
    for (int i = 0; i < rc->nseeds; i++)
        node_get(rc, &rc->seeds[i]);
}

static void on_check_closed(uv_handle_t *h) { (void)h; }

void rcluster_stop(struct rcluster *rc)
{
    if (!rc->started || rc->stopping)
        return;
    rc->stopping = 1;
    uv_timer_stop(&rc->check);
    uv_close((uv_handle_t *)&rc->check, on_check_closed);
    for (int i = 0; i < rc->nnodes; i++)
        rlink_stop(&rc->nodes[i]->rl);
}

void rcluster_free(struct rcluster *rc)
{
    for (int i = 0; i < rc->nnodes; i++)
        free(rc->nodes[i]);
    rc->nnodes = 0;
}

int rcluster_open(struct rcluster *rc, const char *name)
{
    if (rc->nopen == RCLUSTER_OPEN_MAX || rc->stopping)
        return -1;
    rc->open_names[rc->nopen++] = name;
    for (int i = 0; i < rc->nnodes; i++)
        if (rlink_open(&rc->nodes[i]->rl, name) != RLINK_READ_LINK + rc->nopen)
            return -1;
    return RLINK_READ_LINK + rc->nopen;
}

/* 1 when the map serves every slot and every master's `link` is up (-1:
 * its subscriber; -2: command, reads and subscriber). */
int rcluster_up(const struct rcluster *rc, int link)
{
    if (!rc->have_map || slots_unserved(&rc->map) > 0)
        return 0;
    for (int i = 0; i < rc->map.nmasters; i++) {
        const struct rlink *rl = rc->owner[i] ? &rc->owner[i]->rl : NULL;
        if (!rl || !(link == -1 ? rlink_sub_ready(rl) : link == -2 ? rlink_ready(rl) : rlink_up(rl, link)))
            return 0;
    }
    return 1;
}

int rcluster_ready(const struct rcluster *rc) { return rcluster_up(rc, RLINK_CMD_LINK); }

static struct rcluster_node *route(struct rcluster *rc, unsigned slot);

int rcluster_masters(const struct rcluster *rc) { return rc->have_map ? rc->map.nmasters : 0; }

/* (Un)subscribes on the master of the channel's slot. */
static int sub(struct rcluster *rc, int unsub, const char *channel, size_t len)
{
    struct rcluster_node *n = route(rc, (unsigned)hash_keyslot(channel, len));
    if (!n) {
        refresh(rc);
        return -1;
    }
    return unsub ? rlink_unsubscribe(&n->rl, channel, len) : rlink_subscribe(&n->rl, channel, len);
}

int rcluster_subscribe(struct rcluster *rc, const char *channel, size_t len) { return sub(rc, 0, channel, len); }

int rcluster_unsubscribe(struct rcluster *rc, const char *channel, size_t len) { return sub(rc, 1, channel, len); }

static struct rcluster_node *route(struct rcluster *rc, unsigned slot)
{
    if (!rc->have_map || rc->map.owner[slot] == SLOTS_NONE)
        return NULL;
    return rc->owner[rc->map.owner[slot]];
}

static void on_asking(redisReply *reply, void *priv)
{
    (void)reply;
    (void)priv;
}

static void on_reply(redisReply *reply, void *priv);

static int send_to(struct rc_req *q, struct rcluster_node *n, int asking)
{
    if (!n || !rlink_up(&n->rl, q->link))
        return -1;
    if (asking) {
        const char *a[] = {"ASKING"};
        const size_t alen[] = {6};
        if (rlink_command(&n->rl, q->link, 1, a, alen, on_asking, NULL) < 0)
            return -1;
    }
    q->node = n;
    if (q->script)
        return rlink_eval_on(&n->rl, q->link, q->script, q->nkeys, q->argc, q->argv, q->argvlen, on_reply, q);
    return rlink_command(&n->rl, q->link, q->argc, q->argv, q->argvlen, on_reply, q);
}

/* MOVED: the slot's entry points at the node at once; the master is added
 * to the map when it is new to it. */
static struct rcluster_node *moved(struct rcluster *rc, unsigned slot, const struct slots_node *addr)
{
    struct rcluster_node *n = node_get(rc, addr);
    if (!n || !rc->have_map)
        return n;
    int k = 0;
    while (k < rc->map.nmasters && !same(&rc->map.masters[k], addr))
        k++;
    if (k == rc->map.nmasters) {
        if (k == SLOTS_MASTERS_MAX)
            return n;
        rc->map.masters[rc->map.nmasters++] = *addr;
        rc->owner[k] = n;
    }
    rc->map.owner[slot] = (uint16_t)k;
    return n;
}

static void on_reply(redisReply *reply, void *priv)
{
    struct rc_req *q = priv;
    struct rcluster *rc = q->rc;
    if (reply && reply->type == REDIS_REPLY_ERROR && q->redirects < RCLUSTER_REDIRECTS_MAX && !rc->stopping) {
        unsigned slot;
        struct slots_node to;
        enum slots_redirect k = slots_redirect_parse(reply->str, reply->len, &slot, &to);
        if (k != SLOTS_NOT_REDIRECT) {
            if (!to.host[0]) /* the node that answered */
                memcpy(to.host, q->node->addr.host, sizeof to.host);
            q->redirects++;
            rc->redirects++;
            struct rcluster_node *n = k == SLOTS_MOVED ? moved(rc, slot, &to) : node_get(rc, &to);
            if (k == SLOTS_MOVED)
                refresh(rc);
            if (send_to(q, n, k == SLOTS_ASK) == 0)
                return;
            reply = NULL; /* the node it names is not connected (yet): unavailable */
        }
    }
    /* The cluster refused to run it (a failover under way, a slot being
     * moved): nothing ran, so the caller's answer is unavailable. */
    if (reply && reply->type == REDIS_REPLY_ERROR &&
        (strncmp(reply->str, "CLUSTERDOWN", 11) == 0 || strncmp(reply->str, "TRYAGAIN", 8) == 0))
        reply = NULL;
    if (!reply)
        refresh(rc);
    q->cb(reply, q->priv);
    free(q);
}

static int start(struct rcluster *rc, int link, struct rcluster_node *n, const struct rlink_script *s, int nkeys,
                 int key, int argc, const char **argv, const size_t *argvlen, rlink_reply_cb *cb, void *priv)
{
    if (argc < 0 || argc > RLINK_ARGS_MAX || key >= argc || rc->stopping)
        return -1;
    if (!n)
        n = route(rc, key >= 0 ? (unsigned)hash_keyslot(argv[key], argvlen[key]) : 0);
    if (!n || !rlink_up(&n->rl, link)) {
        refresh(rc);
        return -1;
    }
    size_t bytes = 0;
    for (int i = 0; i < argc; i++)
        bytes += argvlen[i];
    struct rc_req *q = malloc(sizeof *q + bytes + (size_t)argc * (sizeof(char *) + sizeof(size_t)));
    if (!q)
        return -1;
    memset(q, 0, sizeof *q);
    q->rc = rc;
    q->cb = cb;
    q->priv = priv;
    q->script = s;
    q->link = link;
    q->nkeys = nkeys;
    q->argc = argc;
    q->argv = (const char **)(q + 1);
    q->argvlen = (size_t *)(q->argv + argc);
    char *p = (char *)(q->argvlen + argc);
    for (int i = 0; i < argc; i++) {
        memcpy(p, argv[i], argvlen[i]);
        q->argv[i] = p;
        q->argvlen[i] = argvlen[i];
        p += argvlen[i];
    }
    if (send_to(q, n, 0) < 0) {
        free(q);
        return -1;
    }
    return 0;
}

int rcluster_eval(struct rcluster *rc, int link, const struct rlink_script *s, int nkeys, int argc, const char **argv,
                  const size_t *argvlen, rlink_reply_cb *cb, void *priv)
{
    if (nkeys < 0 || argc < nkeys)
        return -1;
    return start(rc, link, NULL, s, nkeys, nkeys > 0 ? 0 : -1, argc, argv, argvlen, cb, priv);
}

int rcluster_command(struct rcluster *rc, int link, int key, int argc, const char **argv, const size_t *argvlen,
                     rlink_reply_cb *cb, void *priv)
{
    return start(rc, link, NULL, NULL, 0, key, argc, argv, argvlen, cb, priv);
}

int rcluster_command_master(struct rcluster *rc, int master, int argc, const char **argv, const size_t *argvlen,
                            rlink_reply_cb *cb, void *priv)
{
    if (!rc->have_map || master < 0 || master >= rc->map.nmasters || !rc->owner[master])
        return -1;
    return start(rc, RLINK_CMD_LINK, rc->owner[master], NULL, 0, -1, argc, argv, argvlen, cb, priv);
}

/* config_table.c - every setting of tipcastd: its name, group, type, bounds,
 * default and help text (see config.h).
 *
 * Adding a setting means adding a field to struct config and one row here;
 * parsing, bounds, precedence and --help follow from it. */
#include "config_table.h"

#include <string.h>

const char *const config_group_names[CONFIG_G_COUNT] = {
    "Network", "Backends", "Authentication", "Timers", "Limits", "Money", "Settlement", "Logging",
};

const char *const config_log_levels[4] = {"error", "warn", "info", "debug"};
const char *const config_log_formats[2] = {"logfmt", "json"};

const struct config_entry config_table[] = {
    /* Network */
    {"listen-addr", CONFIG_G_NETWORK, CONFIG_T_STR, CONFIG_OFF(listen_addr), 0, 0,
     "127.0.0.1", "ADDR",
     "IP address to listen on; 0.0.0.0 or :: listens on every interface. Keep "
     "127.0.0.1 when a reverse proxy or load balancer on the same host forwards "
     "to tipcastd."},
    {"port", CONFIG_G_NETWORK, CONFIG_T_INT, CONFIG_OFF(port), 1, 65535, "8080", "PORT",
     "TCP port of the WebSocket endpoint (/ws), of the health checks "
     "(/healthz, /readyz) and of the metrics (/metrics)."},
    {"tls-cert", CONFIG_G_NETWORK, CONFIG_T_STR, CONFIG_OFF(tls_cert), 0, 0, "", "FILE",
     "PEM certificate chain. With tls-key, clients connect with wss://; empty "
     "serves plain ws:// for when TLS ends in a proxy in front of tipcastd."},
    {"tls-key", CONFIG_G_NETWORK, CONFIG_T_STR, CONFIG_OFF(tls_key), 0, 0, "", "FILE",
     "PEM private key of tls-cert. Set both or neither."},
    {"reuse-port", CONFIG_G_NETWORK, CONFIG_T_BOOL, CONFIG_OFF(reuse_port), 0, 1, "0", "BOOL",
     "Listen with SO_REUSEPORT, so that several tipcastd processes on one host "
     "share the port and the kernel spreads new connections across them."},
    {"fanout-threads", CONFIG_G_NETWORK, CONFIG_T_INT, CONFIG_OFF(fanout_threads), 0, 16, "1", "N",
     "Helper threads that share the writes of a big room's flush with the "
     "event loop's thread, each taking a slice of the members, so that an "
     "event reaches 10,000 members on two cores at once. 0: the loop's "
     "thread writes alone. They only write to plain sockets (TLS "
     "connections are written by the loop's thread)."},
    {"web-root", CONFIG_G_NETWORK, CONFIG_T_STR, CONFIG_OFF(web_root), 0, 0, "", "DIR",
     "Directory of a web page to serve at / (its index.html) and /NAME for "
     "its other files (.html .js .css .json .svg .png .ico .txt directly in "
     "DIR). The files are read once at start; empty serves no page."},
    {"web-sdk-root", CONFIG_G_NETWORK, CONFIG_T_STR, CONFIG_OFF(web_sdk_root), 0, 0, "", "DIR",
     "Directory of the JavaScript SDK (clients/js/src) that the pages of "
     "web-root import: its files are served at /sdk/NAME (/sdk/tipcast.js), "
     "read once at start like web-root's. Only with web-root; empty serves "
     "no SDK."},
    {"web-connect-src", CONFIG_G_NETWORK, CONFIG_T_STR, CONFIG_OFF(web_connect_src), 0, 0, "", "SOURCES",
     "Space-separated sources the pages of web-root may also connect to, "
     "added to their Content-Security-Policy connect-src (which always has "
     "the page's own origin and ws: wss:): the admin API's public origin, "
     "e.g. https://admin.example.com, for the creator dashboard. With demo "
     "on, http://HOST:* of the page's own loopback or IP-address host is "
     "added too."},
    {"metrics-allow", CONFIG_G_NETWORK, CONFIG_T_CIDRS, CONFIG_OFF(metrics_allow), 0, 0,
     "127.0.0.0/8,::1", "CIDRS",
     "Comma-separated address blocks (10.0.0.0/8, 192.0.2.7, ::1) whose "
     "clients may read the Prometheus metrics at /metrics on the port; others "
     "are answered 403. The peer is the TCP peer: behind a proxy on the same "
     "host, that is the proxy. Empty turns /metrics off (404)."},

    /* Backends */
    {"redis-host", CONFIG_G_BACKENDS, CONFIG_T_STR, CONFIG_OFF(redis_host), 0, 0,
     "127.0.0.1", "HOST",
     "Redis server that holds rooms, sequence numbers, event history and "
     "wallets, and carries room events between tipcastd nodes."},
    {"redis-port", CONFIG_G_BACKENDS, CONFIG_T_INT, CONFIG_OFF(redis_port), 1, 65535, "6379",
     "PORT", "TCP port of the Redis server."},
    {"redis-cluster", CONFIG_G_BACKENDS, CONFIG_T_STR, CONFIG_OFF(redis_cluster), 0, 0, "", "HOST:PORT,...",
     "Redis Cluster mode: up to 8 seed nodes of the cluster. tipcastd reads "
     "the slot map from them, keeps connections to every master and sends "
     "each script to the master of its wallet shard's or room's slot, "
     "following MOVED and ASK; room events use sharded pub/sub. redis-host "
     "and redis-port are then unused. Empty: one Redis."},
    {"redis-wait-replicas", CONFIG_G_BACKENDS, CONFIG_T_INT, CONFIG_OFF(redis_wait_replicas), 0, 16, "0", "N",
     "Durable acknowledgements: with N > 0, tipcastd sends WAIT N after each "
     "loop turn's money movements (the wallet's scripts: gifts, tips, "
     "credits, refunds, pledges) and answers them only once N replicas have "
     "their writes; when fewer have them within redis-wait-timeout-ms, they "
     "are answered unavailable (the client retries with the same id). An "
     "acknowledged order then survives the failover of its master. 0: no "
     "WAIT (replication is asynchronous; see docs/operations.md)."},
    {"redis-wait-timeout-ms", CONFIG_G_BACKENDS, CONFIG_T_INT, CONFIG_OFF(redis_wait_timeout_ms), 1, 60000, "1000",
     "MS", "How long a WAIT of redis-wait-replicas waits for the replicas."},
    {"redis-start-timeout-s", CONFIG_G_BACKENDS, CONFIG_T_INT, CONFIG_OFF(redis_start_timeout_s), 1, 3600,
     "30", "SECONDS",
     "At start, how long to wait for Redis to accept a connection; tipcastd "
     "then exits with status 1 (PostgreSQL gets 30 s too). A Redis that "
     "answers but is still loading its data is waited for without limit."},
    {"pg", CONFIG_G_BACKENDS, CONFIG_T_STR, CONFIG_OFF(pg_conninfo), 0, 0,
     "host=127.0.0.1 port=5432 dbname=tipcast", "CONNINFO",
     "PostgreSQL connection string in libpq conninfo form; PostgreSQL is the "
     "system of record for orders and the ledger. Keep the password in "
     "~/.pgpass or PGPASSWORD rather than in this string."},

    /* Authentication */
    {"jwt-secret", CONFIG_G_AUTH, CONFIG_T_SECRETS, CONFIG_OFF(secrets), 0, 0, NULL, "KEYS",
     "Required. HS256 key that verifies client tokens: SECRET, or "
     "KID:SECRET[,KID:SECRET...] to rotate keys (configure old and new, mint "
     "with the new, then drop the old). A token's header kid picks the key; a "
     "token without kid uses the entry without KID, else the first entry. Each "
     "secret is at least 32 bytes (shorter ones are refused): make one with "
     "openssl rand -base64 32, and pass it in TIPCAST_JWT_SECRET or the config "
     "file: a flag shows in the process list."},
    {"allowed-origins", CONFIG_G_AUTH, CONFIG_T_ORIGINS, CONFIG_OFF(origins), 0, 0, "",
     "ORIGINS",
     "Comma-separated Origin values that browsers may connect from, each "
     "scheme://host[:port] (e.g. https://app.example), or * for any. A handshake "
     "with another Origin is refused with HTTP 403; clients that send no Origin "
     "(mobile apps, servers) are always allowed. Empty refuses every browser."},
    {"demo", CONFIG_G_AUTH, CONFIG_T_BOOL, CONFIG_OFF(demo), 0, 1, "0", "BOOL",
     "Development only, NEVER in production: serves GET /demo/token?user=NAME, "
     "which gives anyone a valid token of a demo user (viewers bob, carol, "
     "dave, erin; creator alice), and lets pages served by this tipcastd "
     "(same origin) open WebSockets whatever allowed-origins says."},

    /* Timers */
    {"auth-timeout-ms", CONFIG_G_TIMERS, CONFIG_T_INT, CONFIG_OFF(auth_timeout_ms), 50,
     600000, "5000", "MS",
     "Time a new connection has to present a valid token (in the URL, the "
     "Authorization header or a first auth message) before it is closed with "
     "4001."},
    {"ping-interval-s", CONFIG_G_TIMERS, CONFIG_T_INT, CONFIG_OFF(ping_interval_s), 1, 3600,
     "20", "SECONDS",
     "Interval of the server's WebSocket pings, which keep NAT and proxy "
     "mappings open and reveal peers that vanished without closing."},
    {"idle-timeout-s", CONFIG_G_TIMERS, CONFIG_T_INT, CONFIG_OFF(idle_timeout_s), 1, 86400,
     "60", "SECONDS",
     "A connection that sends no frame and answers no ping for this long is "
     "closed with 4010. Keep it well above ping-interval-s."},
    {"http-timeout-s", CONFIG_G_TIMERS, CONFIG_T_INT, CONFIG_OFF(http_timeout_s), 1, 300, "5",
     "SECONDS",
     "Time a plain HTTP connection (a health check, /metrics, the web page, or "
     "an upgrade whose headers are still coming) has to send its request "
     "headers, then to take the answer, and that a keep-alive connection may "
     "wait for its next request; past it the connection is closed."},

    /* Limits */
    {"max-frame-bytes", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(max_frame_bytes), 256,
     1048576, "8192", "BYTES",
     "Largest message a client may send; a larger one closes the connection "
     "with 1009."},
    {"max-msgs-per-s", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(max_msgs_per_s), 1, 100000,
     "20", "N",
     "Requests per second a connection may sustain; requests beyond it are "
     "answered rate_limited and dropped, and a client sending more than three "
     "times the rate in one second is closed with 4008."},
    {"max-burst", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(max_burst), 1, 1000000, "40", "N",
     "Requests a connection may send at once before max-msgs-per-s applies "
     "(the size of its token bucket)."},
    {"max-queued-bytes", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(max_queued_bytes), 4096,
     1LL << 30, "1048576", "BYTES",
     "Unsent bytes a connection may have queued before it is closed as a slow "
     "consumer (close 4009), so that one stalled reader cannot grow the "
     "server's memory."},
    {"slow-consumer-ms", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(slow_consumer_ms), 100, 600000,
     "5000", "MS",
     "A connection whose socket stays full for this long (a write it could "
     "not take whole is still unfinished: the client stopped reading, or "
     "reads far slower than its rooms send) is closed as a slow consumer "
     "(close 4009). Until then it costs its rooms nothing per event: they "
     "skip it, and it resumes where it stopped once the socket drains."},
    {"max-unsent-bytes", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(max_unsent_bytes), 0, 16777216,
     "65536", "BYTES",
     "Bytes a client socket may hold that the network has not taken yet "
     "(TCP_NOTSENT_LOWAT); past them a write waits, and the connection counts "
     "as stalled (slow-consumer-ms). Without this bound the kernel grows the "
     "buffer of a client that stopped reading to megabytes before it is seen "
     "to be stalled. 0 leaves it to the kernel."},
    {"max-rooms-per-conn", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(max_rooms_per_conn), 1,
     1024, "8", "N",
     "Rooms one connection may be in at once; one more join is answered "
     "too_many_rooms."},
    {"max-members-per-room", CONFIG_G_LIMITS, CONFIG_T_INT,
     CONFIG_OFF(max_members_per_room), 1, 10000000, "50000", "N",
     "Members one room may have on this node; one more join is answered "
     "room_full."},
    {"max-connections", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(max_connections), 1,
     1000000, "19000", "N",
     "WebSocket connections this node accepts; one more is accepted and closed "
     "at once with 1013. Keep it plus max-http-connections below the process's "
     "open file limit (ulimit -n), which also has to cover the Redis and "
     "PostgreSQL sockets."},
    {"max-http-connections", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(max_http_connections), 1,
     1000000, "512", "N",
     "Client sockets this node holds beyond max-connections: room for HTTP "
     "requests, keep-alives and upgrades under way (which also use whatever the "
     "WebSocket side leaves free) when the WebSocket side is full. A new socket "
     "past max-connections + max-http-connections is answered 503 and closed "
     "at once; each socket that is not a WebSocket has http-timeout-s to "
     "finish."},
    {"history-len", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(history_len), 1, 100000, "200",
     "N",
     "Events kept per room for clients that reconnect and ask for what they "
     "missed; asking for older events is answered history_gone."},
    {"snapshot-events", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(snapshot_events), 0, 100,
     "20", "N",
     "Latest events of a room sent in the joined reply, so a new member sees "
     "recent gifts and notices at once; 0 sends none."},
    {"sndbuf-bytes", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(sndbuf_bytes), 0, 16777216,
     "65536", "BYTES",
     "SO_SNDBUF of each client socket (Linux doubles it); 0 keeps the "
     "kernel's default, which grows to 4 MiB for a socket that is not read. "
     "It bounds the kernel memory a client that stops reading can pin, and "
     "lets max-queued-bytes catch slow consumers sooner."},
    {"max-conns-per-user", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(max_conns_per_user), 1,
     1000000, "16", "N",
     "Authenticated connections one user (the token's sub) may hold on this "
     "node; the one past it is closed with 4029 right after authenticating."},
    {"max-conns-per-address", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(max_conns_per_address), 1,
     1000000, "1000", "N",
     "Connections one client address may hold on this node; the one past it "
     "is closed with 4029 as it opens. Addresses in conns-per-address-exempt "
     "are not counted."},
    {"conns-per-address-exempt", CONFIG_G_LIMITS, CONFIG_T_CIDRS, CONFIG_OFF(conns_exempt), 0, 0,
     "127.0.0.0/8,::1", "CIDRS",
     "Comma-separated address blocks that max-conns-per-address does not "
     "apply to: the node sees a proxy in front of it as the peer of every "
     "client it carries, so list your load balancers here. Empty exempts "
     "none."},
    {"history-reads-max", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(history_reads_max), 1, 100000,
     "64", "N",
     "history requests this node may have waiting for Redis at once (a "
     "connection may have 2); more are answered rate_limited. It bounds what "
     "history can make Redis hold in output buffers."},
    {"history-queued-bytes", CONFIG_G_LIMITS, CONFIG_T_INT, CONFIG_OFF(history_queued_bytes), 65536,
     1LL << 30, "33554432", "BYTES",
     "While the replies queued for this node's connections and not yet "
     "written add up to more than this, history requests are answered "
     "rate_limited."},

    /* Money */
    {"wallet-shards", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(wallet_shards), 1, 1024, "16", "N",
     "Wallet shards: a user's wallet, its outbox stream and its idempotency "
     "records live on shard hash(user) mod N (keys tc:{w:N}:...). Fixed for "
     "the life of the data: the first node records it in Redis "
     "(tc:wallet-shards), and a node started with another number refuses to "
     "run."},
    {"idem-ttl-s", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(idem_ttl_s), 60, 604800, "3600", "SECONDS",
     "How long the result of a money request is kept under its request id, so "
     "that a retry answers the first result instead of paying twice. Each "
     "record costs Redis memory (see docs/operations.md)."},
    {"external-idempotency-hours", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(external_idem_hours), 1, 87600, "720",
     "HOURS",
     "How long a recharge's or refund's wallet credit is kept under its id "
     "(recharge:<id>, refund:<id>). A credit driven again after its record "
     "expired would be paid twice, so this outlives any retry of the "
     "settlement layer."},
    {"tip-min", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(tip_min), 1, 2000000000, "1", "COINS",
     "Smallest tip."},
    {"tip-max", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(tip_max), 1, 2000000000, "1000000", "COINS",
     "Largest tip."},
    {"gift-max-count", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(gift_max_count), 1, 1000000, "9999", "N",
     "Most gifts of one kind in one gift request."},
    {"outbox-max-backlog", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(outbox_max_backlog), 100, 100000000,
     "100000", "ENTRIES",
     "Entries a wallet shard's outbox may hold before new gifts are refused "
     "with the retryable error backlogged: while PostgreSQL is down the "
     "outbox grows, and this keeps it from exhausting Redis memory."},
    {"ledger-batch", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(ledger_batch), 1, 10000, "5000", "N",
     "Most outbox entries written to PostgreSQL in one transaction. Only a "
     "backlog fills one; larger ones cost PostgreSQL less per entry."},
    {"ledger-flush-ms", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(ledger_flush_ms), 1, 60000, "200", "MS",
     "Longest wait for more entries before a partial batch is written: "
     "while orders keep coming, the outbox is read at most once per this "
     "time unless a read filled a batch, so one transaction holds what came "
     "meanwhile, more the higher the rate (PostgreSQL's cost is largely per "
     "transaction: at 4,000 gifts/s, 200 ms cost it 77 us a gift against "
     "115 for 50 ms). An order after a quiet spell is written at once."},
    {"rooms-gather-ms", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(rooms_gather_ms), 0, 1000, "50", "MS",
     "Longest wait for more orders before room events are applied, while "
     "this node's busy rooms are busy enough (rooms-gather-from): a room's "
     "gifts of that time then share one room script call, which costs Redis "
     "and tipcastd about a third less a gift, and room events come up to "
     "this much later. Otherwise, and with 0, an event is applied as soon as "
     "its order is read."},
    {"rooms-gather-from", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(rooms_gather_from), 1, 100000000, "2000", "N",
     "Orders a second, on this node's rooms consumer, in rooms with two or "
     "more per rooms-gather-ms, from which room events are gathered "
     "(counted over each second, applied to the next)."},
    {"board-tz", CONFIG_G_MONEY, CONFIG_T_STR, CONFIG_OFF(board_tz), 0, 0, "UTC", "ZONE",
     "Time zone (IANA name, e.g. Asia/Shanghai) in which the daily, weekly "
     "(from Monday) and monthly leaderboards start."},
    {"board-push-ms", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(board_push_ms), 50, 60000, "500", "MS",
     "Shortest interval between two leaderboard pushes to a room's members, "
     "however many gifts arrive. In a big room every push is one frame per "
     "member: at 10,000 members, 2 pushes a second cost 20,000 frames a second."},
    {"combo-window-ms", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(combo_window_ms), 100, 600000, "3000", "MS",
     "A sender's gift of the same gift within this long of the previous one "
     "joins its combo; the combo ends (a combo_end room event) when this long "
     "passes without one (docs/protocol.md, \"Combos\")."},
    {"fan-levels", CONFIG_G_MONEY, CONFIG_T_STR, CONFIG_OFF(fan_levels), 0, 0,
     "1:Fan,1000:Silver,10000:Gold,100000:VIP", "LEVELS",
     "Fan levels: THRESHOLD:BADGE pairs, thresholds increasing, up to 16. A "
     "viewer whose all-time spend in a room reaches the Nth threshold has "
     "level N and that badge (docs/protocol.md, \"Fan levels\"); empty: "
     "every viewer is level 0."},
    {"pin-min-amount", CONFIG_G_MONEY, CONFIG_T_INT, CONFIG_OFF(pin_min_amount), 1, 1000000000, "1000", "COINS",
     "A tip of at least this many coins is pinned in its room (docs/protocol.md, "
     "\"Pinned tips\") for the time of its pin-tiers tier."},
    {"pin-tiers", CONFIG_G_MONEY, CONFIG_T_STR, CONFIG_OFF(pin_tiers), 0, 0, "1000:60,10000:300,100000:1800",
     "TIERS",
     "How long a pinned tip stays pinned: AMOUNT:SECONDS pairs, amounts "
     "increasing, up to 16; a tip stays for the seconds of the highest amount "
     "it reaches (the first pair's below the first amount). Empty: no pins."},
    {"redis-unsafe", CONFIG_G_MONEY, CONFIG_T_BOOL, CONFIG_OFF(redis_unsafe), 0, 1, "0", "BOOL",
     "Accept a Redis without appendonly or with an evicting maxmemory-policy, "
     "which can lose balances. Only for throw-away setups."},

    /* Settlement */
    {"admin-listen", CONFIG_G_SETTLEMENT, CONFIG_T_STR, CONFIG_OFF(admin_listen), 0, 0, "127.0.0.1:8081",
     "ADDR:PORT",
     "Listener of the admin API (/api/v1/, docs/admin-api.md) and of /healthz, "
     "/readyz and /metrics for operators: ADDR:PORT, [IPv6]:PORT, or empty for "
     "none. Keep it on loopback or a private network: the API moves money "
     "(each call still needs a staff token or the payment provider's "
     "signature)."},
    {"admin-body-max", CONFIG_G_SETTLEMENT, CONFIG_T_INT, CONFIG_OFF(admin_body_max), 1024, 1048576, "65536",
     "BYTES",
     "Largest request body of the admin API; larger is answered 413 "
     "body_too_large."},
    {"admin-max-connections", CONFIG_G_SETTLEMENT, CONFIG_T_INT, CONFIG_OFF(admin_max_connections), 1, 4096,
     "64", "N",
     "Most sockets open on the admin listener at once; more are refused (503)."},
    {"admin-pg-connections", CONFIG_G_SETTLEMENT, CONFIG_T_INT, CONFIG_OFF(admin_pg_connections), 1, 32, "4", "N",
     "PostgreSQL connections that run admin API calls, one call at a time "
     "each; calls beyond them wait in a queue of 1024, past which they are "
     "answered 503 unavailable."},
    {"payment-secret", CONFIG_G_SETTLEMENT, CONFIG_T_STR, CONFIG_OFF(payment_secret), 0, 0, "", "SECRET",
     "Shared secret of the payment provider's callback (HMAC-SHA256 over "
     "\"<timestamp>.<body>\", at least 16 bytes). Empty: the callback answers "
     "503 and no recharge is ever paid."},
    {"settlement-delay-days", CONFIG_G_SETTLEMENT, CONFIG_T_INT, CONFIG_OFF(settlement_delay_days), 0, 365, "7",
     "DAYS",
     "Earnings of an order become available for withdrawal this many days "
     "after it (T+N); until then they are pending, and a refund takes them "
     "back from pending."},
    {"settlement-interval-s", CONFIG_G_SETTLEMENT, CONFIG_T_INT, CONFIG_OFF(settlement_interval_s), 10, 86400,
     "3600", "S",
     "How often tipcastd settles the orders older than settlement-delay-days "
     "(any node may; runs at the same cutoff are one)."},
    {"reconcile-interval-s", CONFIG_G_SETTLEMENT, CONFIG_T_INT, CONFIG_OFF(reconcile_interval_s), 0, 2592000,
     "86400", "S",
     "How often tipcastd reconciles Redis wallets, the ledger, earnings and "
     "boards (docs/settlement.md, \"Reconciliation\"), on a thread of its own; "
     "one node at a time. 0: never (tipcast-admin reconcile still runs)."},
    {"withdrawal-min", CONFIG_G_SETTLEMENT, CONFIG_T_INT, CONFIG_OFF(withdrawal_min), 1, 2000000000, "1000",
     "COINS",
     "Smallest withdrawal a creator may request."},
    {"risk-scan-interval-s", CONFIG_G_SETTLEMENT, CONFIG_T_INT, CONFIG_OFF(risk_scan_interval_s), 0, 86400, "60",
     "S",
     "How often the risk scan looks for brushing, refund cycles and spikes "
     "and raises their alerts (docs/operations.md, \"Risk control\"); one "
     "node runs it per interval. 0: this node never runs it."},
    {"campaign-fee-bp", CONFIG_G_SETTLEMENT, CONFIG_T_INT, CONFIG_OFF(campaign_fee_bp), 0, 10000, "500", "BP",
     "The platform's service fee on a campaign that reached its target (or a "
     "flexible one), in basis points of what it raised, rounded down; the "
     "creator gets the rest (docs/settlement.md, \"Campaigns\")."},
    {"campaign-interval-ms", CONFIG_G_SETTLEMENT, CONFIG_T_INT, CONFIG_OFF(campaign_interval_ms), 100, 60000, "1000",
     "MS",
     "How often the campaign job runs (one node at a time): opens approved "
     "campaigns, seals them at their deadline, pays out or refunds, and "
     "pushes progress to the rooms, at most one progress event per campaign "
     "per run."},
    {"campaign-surge-pledges", CONFIG_G_SETTLEMENT, CONFIG_T_INT, CONFIG_OFF(campaign_surge_pledges), 0, 1000000000,
     "100", "N",
     "Pledges to one campaign within 60 s that raise a campaign.pledge_surge "
     "alert (at most one per campaign per 10 minutes). 0: never."},
    {"campaign-refunds-per-tick", CONFIG_G_SETTLEMENT, CONFIG_T_INT, CONFIG_OFF(campaign_refunds_per_tick), 1, 100000,
     "500", "N",
     "Refund credits of missed all-or-nothing campaigns that one run of the "
     "campaign job sends at most (the rest go in the next runs): bounds the "
     "burst on Redis and the ledger."},
    /* Settlement: webhooks */
    {"webhook-url", CONFIG_G_SETTLEMENT, CONFIG_T_STR, CONFIG_OFF(webhook_url), 0, 0, "", "URL",
     "Where the signed webhooks go (orders, recharges, refunds, withdrawals; "
     "docs/settlement.md): http://HOST[:PORT]/PATH. Only http: for an https "
     "endpoint, point it at a TLS-terminating proxy or sidecar on this host. "
     "Empty sends none, and no webhook is queued."},
    {"webhook-secret", CONFIG_G_SETTLEMENT, CONFIG_T_STR, CONFIG_OFF(webhook_secret), 0, 0, "", "SECRET",
     "Key of the webhooks' X-Tipcast-Signature (HMAC-SHA256 over "
     "\"<timestamp>.<body>\"), shared with the receiver; at least 16 bytes, "
     "required with webhook-url. Pass it in TIPCAST_WEBHOOK_SECRET or the "
     "config file: a flag shows in the process list."},
    {"webhook-timeout-ms", CONFIG_G_SETTLEMENT, CONFIG_T_INT, CONFIG_OFF(webhook_timeout_ms), 100, 600000, "5000",
     "MS",
     "A webhook delivery that has not connected and received the status line "
     "of the answer within this time has failed, and is tried again later."},
    {"webhook-retry-base-ms", CONFIG_G_SETTLEMENT, CONFIG_T_INT, CONFIG_OFF(webhook_retry_base_ms), 10, 3600000,
     "1000", "MS",
     "Wait before the second attempt of a webhook that failed; each further "
     "attempt waits twice as long as the one before, at most an hour (less "
     "up to a fifth, at random)."},
    {"webhook-give-up-s", CONFIG_G_SETTLEMENT, CONFIG_T_INT, CONFIG_OFF(webhook_give_up_s), 1, 2592000, "86400",
     "SECONDS",
     "A webhook still failing this long after its event is given up: it "
     "becomes a dead letter (GET /api/v1/webhooks/dead) and a webhook_dead "
     "alert is raised."},
    {"webhook-poll-ms", CONFIG_G_SETTLEMENT, CONFIG_T_INT, CONFIG_OFF(webhook_poll_ms), 10, 60000, "500", "MS",
     "How often each node looks for webhooks due, when it has none under way."},

    /* Logging */
    {"log-level", CONFIG_G_LOGGING, CONFIG_T_LOG_LEVEL, CONFIG_OFF(log_level), 0, 3, "info",
     "LEVEL",
     "error, warn, info or debug; messages less severe than this are not "
     "written."},
    {"log-format", CONFIG_G_LOGGING, CONFIG_T_LOG_FORMAT, CONFIG_OFF(log_format), 0, 1, "logfmt",
     "FORMAT",
     "logfmt writes each line on stderr as ts=... level=... msg=\"...\" and "
     "key=value fields; json writes each line as one JSON object with the "
     "same keys."},
    {"log-repeat-s", CONFIG_G_LOGGING, CONFIG_T_INT, CONFIG_OFF(log_repeat_s), 0, 3600, "10",
     "SECONDS",
     "A warning repeated within this many seconds is written once; the next "
     "one written after that carries suppressed=N, the repeats left out. 0 "
     "writes every warning."},
};


const size_t config_table_len = sizeof(config_table) / sizeof(config_table[0]);

const struct config_entry *config_find(const char *key)
{
    for (size_t i = 0; i < config_table_len; i++) {
        if (strcmp(config_table[i].key, key) == 0)
            return &config_table[i];
    }
    return NULL;
}

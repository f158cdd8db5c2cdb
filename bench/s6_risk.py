"""s6_risk.py - scenario 6 of the benchmark: the gift path's ack latency with every risk rule on (frozen accounts, user and address rates, daily and new-account caps, none of them refusing) beside the same load with the rules off, on one tipcastd in one run, taking turns."""

import time

from report import num
from suite import SECRET, jtext

# Every rule tipcastd checks on the gift path, set so that nothing is
# refused: the checks run in full (bucket lookups, the caps' arithmetic in
# the wallet script), the gifts all pass.
RULES_ON = {"gift_user_per_min": 1000000, "gift_ip_per_min": 10000000, "daily_spend_cap": 9007199254740991,
            "new_account_daily_cap": 9007199254740991, "new_account_days": 3650}
RULES_OFF = {"gift_user_per_min": 0, "gift_ip_per_min": 0, "daily_spend_cap": 0, "new_account_daily_cap": 0,
             "new_account_days": 7}
ROUNDS = 2  # off, on, then on, off


def set_rules(suite, rules):
    sql = "; ".join(f"UPDATE risk_rules SET value = {v} WHERE name = '{k}'" for k, v in rules.items())
    if suite.pg(suite.s.pg_conn, sql) is None:
        suite.warn("setting the risk rules failed")
    # Every node reloads them on NOTIFY within a tick; a frozen account in
    # the table makes the frozen check a real lookup.
    suite.pg(suite.s.pg_conn, "INSERT INTO account_freezes (account, reason, by) VALUES "
             "('bench-frozen', 'bench', 'bench') ON CONFLICT (account) DO NOTHING")
    time.sleep(1.5)


def run(suite):
    s = suite.s
    rate = str(s.s6_rate)
    suite.log(f"scenario 6: {s.s6_dur} s at {rate} gifts/s, risk rules off and on, {ROUNDS} rounds each")
    load = ["--target", "tipcast", "--port", s.tc_port, "--secret", SECRET,
            "--connections", s.s1_conns, "--senders", s.s1_conns, "--rooms", s.s1_rooms, "--rate", rate]
    p99 = {"off": [], "on": []}
    # ABBA (off on, on off, ...): a drift over the run (the tables growing,
    # a neighbour's load) weighs on both columns alike.
    for rnd in range(ROUNDS):
        order = (("off", RULES_OFF), ("on", RULES_ON))
        for mode, rules in order if rnd % 2 == 0 else order[::-1]:
            set_rules(suite, rules)
            name = f"s6-{mode}-{rnd}"
            suite.bench(name, s.s6_dur + 60, *load, "--warmup", 2, "--duration", s.s6_dur,
                        "--server-pid", suite.servers[0].pid)
            p = num(jtext(suite.jget(name, "ack_latency_ms", "p99")))
            errs = suite.jget(name, "totals", "errors_total")
            suite.log(f"  rules {mode}, round {rnd + 1}: ack p99 {p} ms, "
                      f"{jtext(suite.jget(name, 'rates', 'acks_per_s'))} acks/s, {errs} errors")
            suite.fig(f"s6.{mode}.{rnd}.p99_ms", "" if p is None else p)
            suite.fig(f"s6.{mode}.{rnd}.p50_ms", jtext(suite.jget(name, "ack_latency_ms", "p50")))
            suite.fig(f"s6.{mode}.{rnd}.acks_per_s", jtext(suite.jget(name, "rates", "acks_per_s")))
            suite.fig(f"s6.{mode}.{rnd}.errors", "" if errs is None else errs)
            if p is not None:
                p99[mode].append(p)
    set_rules(suite, RULES_OFF)
    suite.pg(s.pg_conn, "DELETE FROM account_freezes WHERE account = 'bench-frozen'")
    suite.fig("s6.rate", rate)
    suite.fig("s6.rounds", ROUNDS)
    for mode in ("off", "on"):
        v = sorted(p99[mode])
        suite.fig(f"s6.{mode}.p99_ms", v[len(v) // 2] if v else "")

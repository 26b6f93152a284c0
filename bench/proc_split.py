#!/usr/bin/python3
"""proc_split.py ROOTPID OUTFILE [INTERVAL] - CPU of a process tree split
by process name (comm), for bench/run_burl_bench.sh.

Samples /proc every INTERVAL seconds (0.25) until SIGTERM/SIGINT, then
writes one line per name: "name<TAB>cpu_seconds<TAB>processes".  CPU is
utime+stime consumed while sampling: a process that existed at the start
counts from its first sample, a new one from 0; a process that exited
between two samples loses what it used after the last one (at most
INTERVAL), so the sum is a lower bound of the tree's CPU (which the
caller measures exactly from the root's cutime/cstime).  Used to split
Dovecot's CPU into its submission side and its IMAP (imap-urlauth) side.
"""
import os
import signal
import sys
import time

TCK = os.sysconf("SC_CLK_TCK")


def snapshot():
    out = {}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat") as f:
                st = f.read()
        except OSError:
            continue
        l, r = st.find("("), st.rfind(")")
        f = st[r + 2:].split()
        # f[1] ppid, f[11] utime, f[12] stime
        out[int(e)] = (st[l + 1:r], int(f[1]), int(f[11]) + int(f[12]))
    return out


def descendants(snap, root):
    kids = {}
    for pid, (_, ppid, _) in snap.items():
        kids.setdefault(ppid, []).append(pid)
    res, todo = set(), [root]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            if c not in res:
                res.add(c)
                todo.append(c)
    return res


def main():
    root, outfile = int(sys.argv[1]), sys.argv[2]
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.25
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    base, last, name = {}, {}, {}
    first = True
    while True:
        snap = snapshot()
        for pid in descendants(snap, root) | {root}:
            if pid not in snap:
                continue
            comm, _, cpu = snap[pid]
            if pid not in base:
                base[pid] = cpu if first else 0
            last[pid] = cpu
            name[pid] = comm
        first = False
        if stop:
            break
        time.sleep(interval)
    tot, cnt = {}, {}
    for pid, c in last.items():
        n = name[pid]
        tot[n] = tot.get(n, 0) + c - base[pid]
        cnt[n] = cnt.get(n, 0) + 1
    with open(outfile, "w") as f:
        for n in sorted(tot, key=lambda k: -tot[k]):
            f.write(f"{n}\t{tot[n] / TCK:.2f}\t{cnt[n]}\n")


if __name__ == "__main__":
    main()

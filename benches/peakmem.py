#!/usr/bin/env python3
"""Runs a command and polls /proc/PID/status every 10 ms; prints
"<seconds> <peak VmRSS kB> <peak RssAnon kB>" to stderr-safe fd 3 (or stdout with --stdout).
RssAnon excludes file-backed pages (memory-mapped block files), i.e. the heap.

  peakmem.py [--stderr FILE] CMD...   measure a command until it exits (its stderr to FILE)
  peakmem.py --cpu [--stderr FILE] CMD...   the same, plus a fourth field: the command's
                                      CPU time (user + system seconds, all its threads)
  peakmem.py --pid PID --until FILE   measure a running process until FILE exists
"""
import os
import subprocess
import sys
import threading
import time


def read(pid):
    rss = anon = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return rss, anon


def main():
    args = sys.argv[1:]
    peak_rss = peak_anon = 0
    start = time.monotonic()
    if args[:1] == ["--pid"]:
        pid, until = int(args[1]), args[3]
        while not os.path.exists(until):
            r, a = read(pid)
            peak_rss, peak_anon = max(peak_rss, r), max(peak_anon, a)
            time.sleep(0.01)
        rc = 0
    else:
        cpu = args[:1] == ["--cpu"]
        if cpu:
            args = args[1:]
        err = subprocess.DEVNULL
        if args[:1] == ["--stderr"]:
            err, args = open(args[1], "w"), args[2:]
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
        # The exit time is taken by a thread blocked in wait(), not by the polling loop,
        # so the 10 ms polling interval does not add to the measured time.
        ended = []
        waiter = threading.Thread(target=lambda: (p.wait(), ended.append(time.monotonic())))
        waiter.start()
        while not ended:
            r, a = read(p.pid)
            peak_rss, peak_anon = max(peak_rss, r), max(peak_anon, a)
            time.sleep(0.01)
        waiter.join()
        rc = p.returncode
        extra = ""
        if cpu:
            import resource

            ru = resource.getrusage(resource.RUSAGE_CHILDREN)
            extra = f" {ru.ru_utime + ru.ru_stime:.3f}"
        print(f"{ended[0] - start:.3f} {peak_rss} {peak_anon}{extra}", flush=True)
        sys.exit(rc)
    print(f"{time.monotonic() - start:.3f} {peak_rss} {peak_anon}", flush=True)
    sys.exit(rc)


main()

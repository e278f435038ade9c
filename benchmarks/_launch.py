"""Run one command; write its wall time, CPU time, peak RSS and exit status as JSON.

    python benchmarks/_launch.py RESULT.json TIMEOUT_S|- CMD [ARG ...]

Linux carries a process's peak RSS over fork and exec: a child started by a large process
reports at least that process's peak in ``ru_maxrss``. ``run.py`` grows while it works (it
parses the findings of 2,000 migrations), so it starts each measured command through this
launcher, a fresh interpreter of about 10 MiB, and reads the child's own figures from here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main() -> None:
    result, limit, *cmd = sys.argv[1:]
    deadline = None if limit == "-" else time.perf_counter() + float(limit)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    timed_out = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if deadline is not None and time.perf_counter() > deadline:
            proc.kill()
            timed_out = True
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.005)
    wall = time.perf_counter() - start
    with open(result, "w") as out:
        json.dump(
            {
                "wall": wall,
                "cpu": usage.ru_utime + usage.ru_stime,
                "maxrss_kb": usage.ru_maxrss,
                "returncode": os.waitstatus_to_exitcode(status),
                "timed_out": timed_out,
            },
            out,
        )


if __name__ == "__main__":
    main()

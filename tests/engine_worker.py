"""A study worker with cheap jobs, for the engine's multi-process tests.

Usage: python engine_worker.py STORAGE_URL LOG_DIR N_JOBS SLEEP_S HEARTBEAT_S

Each job sleeps, then writes LOG_DIR/done/<key> and appends "<key> <pid>" to LOG_DIR/log
when it starts; a job whose marker exists returns at once (idempotent, like real jobs).
"""

import os
import sys
import time
from pathlib import Path

from neuromask.studies.engine import Job, Stage, run_stages


def main() -> None:
    url, log_dir, n_jobs, sleep_s, heartbeat = sys.argv[1:6]
    log_dir = Path(log_dir)
    (log_dir / "done").mkdir(parents=True, exist_ok=True)

    def resolve(spec):
        def run():
            marker = log_dir / "done" / spec["name"]
            if marker.exists():
                return
            with open(log_dir / "log", "a") as f:
                f.write(f"{spec['name']} {os.getpid()}\n")
            time.sleep(float(sleep_s))
            marker.write_text("done")

        return run

    first = [Job(f"a/{i}", {"name": f"a{i}"}) for i in range(int(n_jobs))]
    second = [Job(f"b/{i}", {"name": f"b{i}"}) for i in range(2)]
    run_stages(
        [Stage("first", first), Stage("second", second)],
        url,
        "test-engine",
        resolve,
        heartbeat_s=int(heartbeat),
        poll_s=0.2,
        progress=False,
    )
    # The second stage starts only after the whole first stage: check it from the log.
    print("worker done", os.getpid(), flush=True)


if __name__ == "__main__":
    main()

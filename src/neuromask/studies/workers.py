"""Several workers on this machine for one study: ``neuromask study ... --workers N``.

Each worker is a process of its own running ``neuromask study ... --jobs-only`` on the
same study folder and storage, so that the engine (:mod:`neuromask.studies.engine`)
shares the jobs among them exactly as it does among workers started by hand or on other
machines. The parent waits for them and then writes the tables once.

- With GPUs, worker i sees one device, GPU ``i mod n_gpus`` (``CUDA_VISIBLE_DEVICES``).
- On the CPU, each worker gets ``cores // N`` threads (at least one), so that N workers
  do not fight over the cores.
- Each worker's output goes to ``OUT/workers/worker-<i>.log``; a worker that fails stops
  the command with the end of its log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from neuromask.errors import ParameterError
from neuromask.studies.engine import StudyJobError


def visible_gpus(device: str) -> list[str]:
    """The GPUs the workers may share: none on the CPU; else ``CUDA_VISIBLE_DEVICES``
    when it is set, or every device CUDA sees."""
    if device == "cpu":
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def worker_environments(n: int, device: str, cores: int | None = None) -> list[dict[str, str]]:
    """The environment of each of ``n`` workers: its GPU, or its share of the cores."""
    if n < 1:
        raise ParameterError(f"--workers must be at least 1, got {n}")
    gpus = visible_gpus(device)
    threads = max(1, (cores or os.cpu_count() or 1) // n)
    environments = []
    for i in range(n):
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
        else:
            env["OMP_NUM_THREADS"] = str(threads)
            env["MKL_NUM_THREADS"] = str(threads)
        environments.append(env)
    return environments


def worker_command(
    name: str, config: Path, out: Path, storage: str, heartbeat_s: int, device: str
) -> list[str]:
    return [sys.executable, "-m", "neuromask", "study", name, "--config", str(config),
            "--out", str(out), "--storage", storage, "--heartbeat", str(heartbeat_s),
            "--device", device, "--quiet", "--jobs-only"]  # fmt: skip


def run_workers(
    n: int,
    name: str,
    config: Path,
    out: Path,
    storage: str,
    heartbeat_s: int,
    device: str,
    progress: bool = True,
) -> None:
    """Start ``n`` workers on study ``name`` and wait for every one of them."""
    from neuromask.progress import console

    logs = out / "workers"
    logs.mkdir(exist_ok=True)
    command = worker_command(name, config, out, storage, heartbeat_s, device)
    processes = []
    for i, env in enumerate(worker_environments(n, device)):
        log = open(logs / f"worker-{i}.log", "w")  # noqa: SIM115  (closed below)
        processes.append((subprocess.Popen(command, env=env, stdout=log, stderr=log), log))
        if progress:
            where = env.get("CUDA_VISIBLE_DEVICES", f"{env.get('OMP_NUM_THREADS')} threads")
            console.print(f"worker {i} started (pid {processes[-1][0].pid}, {where})")
    failed = []
    try:
        while any(p.poll() is None for p, _ in processes):
            time.sleep(0.5)
    finally:
        for i, (p, log) in enumerate(processes):
            if p.poll() is None:
                p.terminate()
                p.wait()
            log.close()
            if p.returncode != 0:
                failed.append(i)
    if failed:
        tail = (logs / f"worker-{failed[0]}.log").read_text().strip().splitlines()[-3:]
        raise StudyJobError(
            f"worker {failed[0]} stopped with an error ({logs / f'worker-{failed[0]}.log'}): "
            + " / ".join(line.strip() for line in tail)
        )

"""Scheduled operation: the daemon, the job function it and `run --job` share, holder identity.

    holder.py   who holds a run lock (machine/boot id, PID namespace, process start time)
    jobs.py     run one job of schedules.toml: config, lock, mode and scope, fire claim
    daemon.py   `reconcile scheduler`: APScheduler's BlockingScheduler, jobs run in the main thread
"""

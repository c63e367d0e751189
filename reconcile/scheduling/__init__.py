"""Scheduled operation: the daemon, the job function it and `run --job` share, sweep workers.

    jobs.py     run one job of schedules.toml: config, lock, mode and scope, fire claim
    daemon.py   `reconcile scheduler`: APScheduler's BlockingScheduler, jobs run in the main thread
    sweeps.py   sweep workers: a full run split into slices claimed by several processes
"""

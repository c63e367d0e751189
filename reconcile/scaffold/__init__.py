"""The files `reconcile init` writes: a production job config, its schedules, an `.env` example
naming every secret, and (with `--deploy`) systemd, cron, Kubernetes and compose examples.
Values to fill are written `<like this>`; `config check` names each one left."""

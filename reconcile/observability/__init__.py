"""What an operator sees of a run: progress, logs, metrics and notifications.

* `events`: the `Progress` protocol the pipeline and the HTTP layer report to, and
  `Telemetry`, which times stages, counts requests and rate-limit waits, and fans the
  events out to displays.
* `display`: a rich progress display on a terminal, one-line heartbeats otherwise.
* `logs`: text or JSON log lines with run id, job and stage; identities and secrets masked.
* `metrics`: the run's Prometheus metrics (node_exporter textfile, Pushgateway).
* `notify`: webhook and Slack messages on critical drift, refusals, failures, SLA breaches.
* `postrun`: what runs after a run has closed (metrics, then notifications).
"""

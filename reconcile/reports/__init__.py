"""Compliance reports: what a privacy officer hands to an auditor.

    settings   validation of the `[report]` keys
    calendar   business days: weekends, holidays per country (`holidays`), extra dates
    sla        deadlines per regulation and the ageing of every opt-out and deletion
    requests   a person's request: the drift items of one opt-out or deletion, named by channel and group
    ccpa       the §7101-style request log (one row per request) and §7102-style yearly metrics
    changes    what changed since the previous run, counted from the items' own times
    verdict    in compliance, at risk or not: what the report opens with
    history    choosing runs and gathering everything the report shows
    charts     inline SVG geometry for the trend charts
    index      `index.html`: every run and drift over time, rebuilt after each run
    subject    one person's story across runs and the webhook ledger (`reconcile subject`)
    humanize   times, durations and missing values as people read them
    scrub      masking of every identity, including ones echoed inside free text
    render     the Jinja2 templates (HTML, Markdown), JSON, and writing files privately
    tables     CSV exports with spreadsheet formulas neutralised
    prune      retention: removing history older than `report.retention_months`
"""

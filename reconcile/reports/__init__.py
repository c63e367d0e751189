"""Compliance reports: what a privacy officer hands to an auditor.

    settings   validation of the `[report]` keys
    calendar   business days: weekends, holidays per country (`holidays`), extra dates
    sla        deadlines per regulation and the ageing of every opt-out and deletion
    ccpa       the §7101-style request log and §7102-style yearly metrics
    history    choosing runs and gathering everything the report shows
    charts     inline SVG geometry for the trend charts
    scrub      masking of every identity, including ones echoed inside free text
    render     the Jinja2 templates (HTML, Markdown), JSON, and writing files privately
    tables     CSV exports with spreadsheet formulas neutralised
    prune      retention: removing history older than `report.retention_months`
"""

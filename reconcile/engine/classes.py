"""The drift classes of semantics §4 and their severities (no heavy imports: the CLI uses it)."""

SEVERITY = {
    "missed_optout": "critical", "missed_deletion": "critical", "resurrected": "critical",
    "missed_blocklist": "high", "braze_newer_optout": "high", "missed_optin": "low",
    "no_consent_record": "medium", "unmatched": "info", "ambiguous_identity": "warn",
}
DRIFT_CLASSES = tuple(SEVERITY)

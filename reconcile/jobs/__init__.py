"""Job configs shipped with the package: `sandbox.toml`, used by `reconcile demo` and
`reconcile sandbox` in a folder without `jobs/sandbox.toml` (its paths are relative to
the working folder: state in `./.reconcile/`, reports in `./reports/`)."""

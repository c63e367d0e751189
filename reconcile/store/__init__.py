"""The state store: runs, drift history, plans, the action journal, tombstones,
watermarks and the run lock, on SQLite or PostgreSQL (see `reconcile.store.store`)."""

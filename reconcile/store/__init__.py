"""The state store: runs, drift history, plans, the action journal, tombstones,
watermarks, the run lock and the address -> Braze profiles mapping, on SQLite or PostgreSQL
(see `reconcile.store.store`)."""

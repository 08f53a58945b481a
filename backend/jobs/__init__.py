"""Training jobs: create/cancel/list/reconcile (`service`), what a running job writes back (`progress`,
through the Ray job's `db_sink`), the Monitor's metric reads (`metrics`) and the estimate glue for the
Configure page and `jobs estimate` (`estimates`)."""

"""Hyperparameter sweeps on Ray Tune: the grid (``grid``), create/list/show/cancel/reconcile
(``service``), what the sweep's Ray job reads and writes (``progress``)."""

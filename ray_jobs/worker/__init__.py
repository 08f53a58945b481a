"""What runs on each training worker: the loop, its state, evaluation and samples, checkpoints, losses, precision, GPU metrics, the adapter card."""

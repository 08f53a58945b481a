"""The driver side of a training job: the recipe it runs, its runtime, its sinks back to the product, start-up phases, the local worker group."""

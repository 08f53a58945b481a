"""Datasets: upload and the dataset service (`service`), the accepted formats and their normalisation to
v4 turns (`formats`), the validation rules (`validation`, with the typed fast path `validation_fast` and
the multi-process `validation_parallel`), the glue run by the Ray validation job (`validation_job`) and
the statistics shown on the Datasets page (`stats`)."""

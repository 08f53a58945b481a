"""The Monitor page parts: the summary header, the metric panels and the start-up progress."""

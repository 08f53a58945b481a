"""Base models: the catalog of known models, what is installed here (`registry`), installing them (`install`), the offline tiny model."""

"""The Datasets page parts: the list, one dataset's detail and the upload form."""

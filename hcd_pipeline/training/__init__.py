"""Training the shipped models (``hcd train``)."""

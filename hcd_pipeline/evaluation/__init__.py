"""Evaluation on standard sets with the field's protocol: ``hcd eval`` (:mod:`.evaluate`)."""

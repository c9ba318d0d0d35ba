"""Files and storage: image decoding and encoding, stored-LR formats, metadata, local and object storage, JSON."""

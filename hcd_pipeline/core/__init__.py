"""The bottom layer: MATLAB-exact resize, the field's metrics, devices, errors (no model, no I/O)."""

"""Baseline JPEG in torch: :mod:`.transform` (colour transform and 8 x 8 DCT, once), :mod:`.simulate` (the
differentiable codec that training puts between downscaler and upscaler), :mod:`.decoder` (coefficients -> RGB) and
:mod:`.coefficients` (a file's quantised coefficients, exactly, through libjpeg)."""

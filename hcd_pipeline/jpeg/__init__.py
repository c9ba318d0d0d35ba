"""JPEG maths in torch (colour transform, DCT, quantisation) for the codec simulation and coefficient HCD."""

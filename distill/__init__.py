"""Distillation of a hybridssl teacher into lightweight students (lands with issue #4)."""

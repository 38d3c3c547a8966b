"""Torch-free device runtime for hssl bundles (lands with issue #6). Never imports torch."""

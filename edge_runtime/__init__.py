"""Torch-free device runtime for hssl bundles. Never imports torch (nor hybridssl, distill, export)."""

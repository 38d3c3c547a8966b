"""Distillation of a hybridssl teacher into lightweight students whose embeddings stay in the
teacher's joint space (``api.distill_run`` is the entry point)."""

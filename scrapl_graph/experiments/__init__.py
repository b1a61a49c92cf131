"""Experiments that measure the losses on tasks of their own (see each module's docstring)."""

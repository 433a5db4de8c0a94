"""Shared fixtures. Tests never need a display, a GPU or hardware."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

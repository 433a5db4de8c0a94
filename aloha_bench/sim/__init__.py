"""Simulation layer (L1): rig, task specs, success predicates, IK. Never imports torch."""

import os
import sys

# Headless Linux (servers, CI, laptops over SSH) has no X display for GLFW; EGL renders offscreen
# there. Respect an explicit choice, and leave desktops and macOS on MuJoCo's default.
if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")

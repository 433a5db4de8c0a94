"""Shared fixtures. Tests never need a display, a GPU or hardware."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

# Load torch's libraries (torchvision pulls in triton, which bundles its own LLVM) before any test
# creates an EGL context: Mesa's software renderer loads another LLVM, and importing triton after
# it segfaults. Applications do the same: load the policy first, then make rendering envs.
try:
    import torchvision.ops  # noqa: F401
except ImportError:  # torch is a core dependency; this only guards partial installs
    pass

"""aloha-bench: a reproducible benchmark for low-cost bimanual imitation learning (ACT)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aloha-bench")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+checkout"


def _register() -> None:
    # Gymnasium ids are registered on import, as gym-aloha and gymnasium-robotics do.
    from aloha_bench.envs import register_all

    register_all()


_register()

"""The real SO-ARM101 rig: Feetech bus, calibration, safety, arms, cameras and the gym env.

Layer L1 (bus, calibration, safety, cameras, emulator) plus L3 (``real_env``). Imports only
``aloha_bench.embodiment``, ``aloha_bench.keys`` and ``aloha_bench.envs.spaces`` from the package,
and never torch or mujoco. Hardware dependencies (``scservo_sdk`` from feetech-servo-sdk<2,
pyserial, and OpenCV for real cameras) come with ``pip install 'aloha-bench[robot]'``; submodules
are imported explicitly, e.g. ``from aloha_bench.robots.real_env import RealRigEnv``.
"""

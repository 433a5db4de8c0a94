"""A few steps of the real simulator recorded into a store read back unchanged."""

import numpy as np

from aloha_bench import envs, keys
from aloha_bench.data import EpisodeStore, WindowDataset


def test_env_steps_round_trip_through_a_store(tmp_path):
    env = envs.make("transfer_cube", obs_mode="pixels", cameras=["top"], image_size=(24, 32))
    obs, info = env.reset(seed=0)
    rows = []
    try:
        for _ in range(6):
            # Row t: the observation the policy saw, then the action it sent.
            action = obs[keys.STATE] + np.float32(0.01)
            rows.append({**obs, keys.ENVIRONMENT_STATE: info[keys.ENVIRONMENT_STATE]})
            rows[-1][keys.ACTION] = action
            obs, _, _, _, info = env.step(action)
    finally:
        env.close()
    arrays = {key: np.stack([row[key] for row in rows]) for key in rows[0]}
    spec = env.unwrapped.task
    store = EpisodeStore.create(
        tmp_path / "env.zarr",
        task_id=spec.task_id,
        task_version=spec.version,
        obs_mode="pixels",
        cameras=["top"],
        image_size=(24, 32),
    )
    meta = {"seed": 0, "success": bool(info["is_success"]), "max_stage": info["max_stage"]}
    store.append_episode(arrays, {**meta, "source": "test", "strategy": "hold"})
    episode = EpisodeStore.open(tmp_path / "env.zarr").episode(0)
    for key, value in arrays.items():
        np.testing.assert_array_equal(episode[key], value, err_msg=key)
    item = WindowDataset(tmp_path / "env.zarr", chunk_size=4)[5]
    np.testing.assert_array_equal(item[keys.ACTION_IS_PAD], [False, True, True, True])

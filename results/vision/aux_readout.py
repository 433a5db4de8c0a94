"""How well an act_aux_state run reads the cube's position from its camera features.

On held-out demonstration frames (the run's validation episodes, every 4th step), in millimetres,
per episode and by phase of the episode.

Usage: python results/vision/aux_readout.py RUN_DIR (a run trained with aux_state_weight > 0).
"""

import json
import sys

import numpy as np
import torch

from aloha_bench import keys
from aloha_bench.data.store import EpisodeStore
from aloha_bench.policies import load

torch.set_num_threads(1)
run = sys.argv[1]
policy = load(f"{run}/best")
policy.eval()
split = json.load(open(f"{run}/split.json"))
store = EpisodeStore.open(split["dataset"])
errors, steps = [], []
for episode in split["val_episodes"]:
    data = store.episode(
        episode, keys=[keys.STATE, keys.ENVIRONMENT_STATE, *policy.config.image_keys]
    )
    index = np.arange(0, len(data[keys.STATE]), 4)
    batch = {k: torch.from_numpy(np.ascontiguousarray(v[index])) for k, v in data.items()}
    with torch.no_grad(), policy.autocast():
        inputs = policy.preprocess(batch)
        _, predicted = policy.model(
            latent=policy.zero_latent(len(index)), predict_environment_state=True, **inputs
        )
    predicted = policy.normalizer.unnormalize(keys.ENVIRONMENT_STATE, predicted.float()).numpy()
    true = data[keys.ENVIRONMENT_STATE][index]
    errors.append(1e3 * np.linalg.norm(predicted[:, :3] - true[:, :3], axis=1))  # mm
    steps.append(index)
    p50, p90, worst = np.percentile(errors[-1], [50, 90, 100])
    print(f"{episode} pos err mm: median {p50:.1f} p90 {p90:.1f} max {worst:.1f}", flush=True)
error, step = np.concatenate(errors), np.concatenate(steps)
print(
    f"all val frames: median {np.median(error):.1f} mm, "
    f"p90 {np.percentile(error, 90):.1f} mm, n={len(error)}"
)
for low in range(0, 400, 50):
    chosen = error[(step >= low) & (step < low + 50)]
    print(
        f"steps {low:3d}-{low + 49:3d}: median {np.median(chosen):.1f} mm, "
        f"p90 {np.percentile(chosen, 90):.1f} mm"
    )

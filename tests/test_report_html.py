"""The results browser (index.html): its content, and the page in a real headless Chromium.

The browser test needs Chromium (Debian's `chromium` package; `.ci/run` installs it) and the
`playwright` Python package (the `dev` extra) driving it; it is skipped, saying which is missing,
where either is absent.
"""

import json
import shutil

import imageio.v2 as imageio
import numpy as np
import pandas as pd
import pytest

from aloha_bench import envs, report
from aloha_bench.evaluate import VIDEO_FPS
from aloha_bench.report_html import INDEX_FILE
from tests.test_report import frame, row

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags that work on a closed network: without the background-networking ones Chromium keeps
# trying to reach Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _rollout_video(path, steps=30):
    """A short real rollout (zero motion from the home pose) written the way `eval --videos`
    writes its mp4: all four cameras side by side, 25 fps, imageio."""
    env = envs.make("transfer_cube", obs_mode="state", render_mode="rgb_array")
    env.reset(seed=0)
    action = env.unwrapped.joint_state()
    with imageio.get_writer(path, fps=VIDEO_FPS, macro_block_size=1) as writer:
        for _ in range(steps):
            env.step(action)
            writer.append_data(env.render())
    env.close()
    return path


@pytest.fixture
def study_results(tmp_path):
    """A results folder as `reproduce` leaves it: summary.csv, records with video paths (one
    success filmed, one failure whose file is gone), a second cell without any video."""
    results = tmp_path / "results"
    (results / "records").mkdir(parents=True)
    videos = tmp_path / "runs" / "videos"
    videos.mkdir(parents=True)
    success = _rollout_video(videos / "act_transfer_cube_seed1000_success.mp4")
    records = [
        {"episode": 0, "seed": 1000, "success_end": True, "video": str(success)},
        {"episode": 1, "seed": 1001, "success_end": False, "video": str(videos / "gone.mp4")},
    ]
    (results / "records" / "c0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    df = frame(
        row(successes=40, records="records/c0.jsonl"),
        row(task="insertion", successes=10, records="records/c1.jsonl"),
        row(groups="chunk_size", chunk_size=10, successes=20),
    )
    df.to_csv(results / "summary.csv", index=False)
    report.write_report(results / "summary.csv", results)
    return results


def test_index_has_the_table_every_plot_and_says_what_is_absent(study_results):
    page = (study_results / INDEX_FILE).read_text()
    assert "<b>transfer_cube: transferred</b>" in page and "<table>" in page
    # First the tasks-as-rows table (the README's), its source's heading and its footer.
    tasks = page[page.index('<div id="tasks-table">') : page.index('<div id="main-table">')]
    assert "<b>scripted demonstrations, state observations</b>" in tasks
    assert "<th>act: end</th>" in tasks and "<td>transfer_cube</td>" in tasks
    assert "<p>end = the final stage holds" in tasks and "<code>paper ACT</code>" in tasks
    pngs = sorted(p.name for p in study_results.glob("*.png"))
    assert pngs and all(f'src="{name}"' in page for name in pngs)
    assert "episodes per point" in page  # every plot's scale
    assert "50 episodes per training seed" in page
    # Videos are linked relative to the page, never copied next to it.
    assert 'src="../runs/videos/act_transfer_cube_seed1000_success.mp4"' in page
    assert not list(study_results.glob("*.mp4"))
    assert "failure video absent" in page and "no success filmed for this cell" in page
    assert "(index.html)" in (study_results / "REPORT.md").read_text()
    # Written elsewhere (report --out), the links still reach the same files.
    elsewhere = study_results.parent / "site"
    report.write_report(study_results / "summary.csv", elsewhere)
    page = (elsewhere / INDEX_FILE).read_text()
    assert 'src="../runs/videos/act_transfer_cube_seed1000_success.mp4"' in page


def test_index_lists_rollouts_in_the_tables_order(tmp_path):
    """ACT first, state before pixels, scripted before human, then the paper's task order: the
    order of every table and of REPORT.md's rollout list (report.cell_rank), not the alphabet."""
    from aloha_bench.report_html import index_html

    cells = [
        dict(policy="single_step", source="scripted", obs_mode="state", task="transfer_cube"),
        dict(policy="act", source="scripted", obs_mode="pixels", task="transfer_cube"),
        dict(policy="act", source="human", obs_mode="state", task="transfer_cube"),
        dict(policy="act", source="scripted", obs_mode="state", task="insertion"),
        dict(policy="act", source="scripted", obs_mode="state", task="transfer_cube"),
    ]
    page = index_html(frame(*(row(**c) for c in cells)), tmp_path, "", [], summary_dir=tmp_path)
    rollouts = page[page.index('id="rollouts"') :]
    # `cells` is written last to first.
    at = [rollouts.index(f"<h3>{' / '.join(c.values())}</h3>") for c in cells]
    assert at == sorted(at, reverse=True)


def test_index_plays_in_headless_chromium(study_results, tmp_path):
    if CHROMIUM is None:
        pytest.skip("Chromium not installed (apt-get install -y chromium; .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    shot = tmp_path / "table.png"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto((study_results / INDEX_FILE).as_uri())
            table = page.locator("#main-table table")
            assert "transfer_cube: transferred" in table.inner_text()
            table.screenshot(path=str(shot))
            state = page.evaluate(
                """async () => {
                    const v = document.querySelector('video[data-outcome="success"]');
                    await v.play();
                    await new Promise(r => setTimeout(r, 1000));
                    return {paused: v.paused, time: v.currentTime, width: v.videoWidth,
                            ready: v.readyState, error: v.error && v.error.code};
                }"""
            )
            images = page.evaluate(
                "() => [...document.images].map(i => [i.naturalWidth, i.src.split('/').pop()])"
            )
        finally:
            browser.close()
    assert not state["paused"] and state["time"] > 0 and state["error"] is None
    assert state["width"] == 4 * 320 and state["ready"] >= 2  # four 320 px cameras
    assert images and all(width > 0 for width, _ in images)  # every plot decoded
    # The screenshot shows a table: wide, with dark text and grid lines on a light page.
    pixels = np.asarray(imageio.imread(shot))[..., :3]
    assert pixels.shape[1] > 400 and pixels.shape[0] > 40
    dark = (pixels.mean(axis=2) < 100).mean()
    assert 0.005 < dark < 0.5
    # Rows of the table differ (text), not one flat colour.
    assert len(pd.unique(pixels.reshape(-1, 3).sum(axis=1))) > 20

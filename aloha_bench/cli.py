"""The ``aloha-bench`` command: parse argv, call one library function, print its result."""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

from aloha_bench import cli_types as T


def _json_safe(data):
    """``data`` with NaN and infinities as null: JSON has no such numbers (strict parsers fail)."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _json_safe(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_json_safe(v) for v in data]
    return data


def _progress_bar(**kwargs):
    """A tqdm bar; where stderr is not a terminal (a log file, CI), one update every 30 s
    instead of ten a second, so that a long run's log stays readable and still shows progress.

    tqdm's ``mininterval`` only paces ``update``: ``set_postfix`` and ``refresh`` redraw at once,
    and the bars here call them per episode or per logged step (one redraw per episode filled a
    generate log with a line per demo). In a log both are paced too; the bar's last state is
    still written when it closes."""
    from tqdm import tqdm

    if sys.stderr.isatty():
        return tqdm(**kwargs)
    kwargs.setdefault("mininterval", 30.0)
    kwargs.setdefault("ascii", True)
    return _log_bar_class()(**kwargs)


@functools.cache
def _log_bar_class():
    from tqdm import tqdm

    class LogBar(tqdm):
        """A tqdm whose redraws, however asked for, come at most once per ``mininterval``."""

        def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
            super().set_postfix(ordered_dict, refresh=False, **kwargs)
            if refresh:
                self.refresh()

        def refresh(self, nolock=False, lock_args=None):
            if self.disable:  # a disabled tqdm returns from __init__ before setting its clock
                return False
            now = self._time()
            if now - getattr(self, "_last_drawn", -math.inf) < self.mininterval:
                return False
            self._last_drawn = now
            return super().refresh(nolock=nolock, lock_args=lock_args)

    return LogBar


def _print_json(data) -> None:
    print(json.dumps(_json_safe(data), indent=2, allow_nan=False))


def _print_rates(report) -> None:
    print(
        f"success (end of episode): {report.success_rate:.1%}   "
        f"(any step: {report.success_rate_any_step:.1%}; original ACT rule, no let-go needed: "
        f"{report.success_rate_lenient:.1%})"
    )
    for name, rate in report.stage_rates.items():
        print(f"  stage {name:<12} {rate:.1%}")


def cmd_tasks(args: argparse.Namespace) -> int:
    from aloha_bench.sim.task_spec import available_tasks, load_task_spec

    specs = [load_task_spec(t) for t in available_tasks()]
    if args.json:
        _print_json(
            [
                {
                    "task": s.task_id,
                    "gym_id": s.gym_id,
                    "stages": list(s.stage_names),
                    "episode_steps": s.episode_steps,
                    "description": s.description,
                }
                for s in specs
            ]
        )
        return 0
    for s in specs:
        print(f"{s.task_id:<15} {s.gym_id:<32} stages: {' > '.join(s.stage_names)}")
        print(f"{'':<15} {s.description}")
    return 0


def cmd_expert(args: argparse.Namespace) -> int:
    from aloha_bench.rollout import run_expert
    from aloha_bench.sim.task_spec import load_task_spec

    load_task_spec(args.task)  # an unknown task fails here, before the progress bar starts
    bar = _progress_bar(
        total=args.episodes, desc=f"{args.task} expert", disable=args.json, unit="ep"
    )
    wins = 0

    def progress(i, record) -> None:
        nonlocal wins
        wins += record.success_end
        bar.update(1)
        bar.set_postfix(success=f"{wins / (i + 1):.1%}")

    with bar:  # closed before any error message, which then starts on a line of its own
        report = run_expert(
            args.task, args.episodes, seed=args.seed, style=args.style, progress=progress
        )
    summary = report.to_dict()
    if args.json:
        _print_json(summary)
        return 0
    print(
        f"task {report.task}, style {report.style_mode}, {report.episodes} episodes "
        f"(seeds {args.seed}..{args.seed + args.episodes - 1})"
    )
    _print_rates(report)
    if summary["failed_seeds"]:
        print(f"failed seeds: {summary['failed_seeds']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from aloha_bench.evaluate import EvalSettings, evaluate, summarize, summary_table, write_outputs
    from aloha_bench.sim.task_spec import load_task_spec

    load_task_spec(args.task)  # an unknown task fails here, before anything loads
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)  # an unusable --out fails now, not after the runs
    if args.videos and out is None:
        raise ValueError("--videos needs --out (videos are written to OUT/videos/)")
    overrides = {}
    if args.temporal_ensemble is not None:
        if args.n_action_steps not in (None, 1):
            raise ValueError(
                "--temporal-ensemble predicts a chunk every step (n_action_steps = 1); drop "
                f"--n-action-steps {args.n_action_steps} or the ensembling"
            )
        overrides = {"temporal_ensemble_coeff": args.temporal_ensemble, "n_action_steps": 1}
    elif args.n_action_steps is not None:
        overrides = {"n_action_steps": args.n_action_steps}
        if args.n_action_steps != 1:  # a run trained to ensemble plays chunks instead
            overrides["temporal_ensemble_coeff"] = None
    labels = args.label or []
    if labels and len(labels) != len(args.run):
        raise ValueError(f"{len(labels)} --label for {len(args.run)} --run; give one per run")
    records, summaries = [], []
    import tempfile

    from aloha_bench.interop import lerobot_options, policy_for_eval

    scratch = tempfile.TemporaryDirectory(prefix="aloha_bench_lerobot_")
    for i, run in enumerate(args.run):
        settings = EvalSettings(
            run=str(policy_for_eval(run, scratch.name, **lerobot_options(args))),
            label=labels[i] if labels else "",
            task=args.task,
            episodes=args.episodes,
            seed=args.seed,
            backend=args.backend,
            robot_config=args.robot_config,
            max_steps=args.max_steps,
            randomize=args.randomize,
            latency=args.latency,
            policy_overrides=overrides,
            videos=args.videos,
            video_dir=str(out / "videos") if out is not None else None,
            threads=args.threads,
            check_seeds=not args.no_seed_check,
            runtime=args.runtime,
            execution=_execution(args),
            allow_other_task=args.allow_other_task,
        )
        bar = _progress_bar(
            total=args.episodes, desc=f"eval {settings.name}", unit="ep", disable=args.json
        )
        wins, done = 0, 0

        def progress(record, bar=bar) -> None:
            nonlocal wins, done
            wins += record["success_end"]
            done += 1
            bar.update(1)
            bar.set_postfix(success=f"{wins / done:.1%}")

        with bar:
            run_records = evaluate(settings, workers=args.workers, progress=progress)
        records += run_records
        summaries.append(summarize(run_records))
        if out is not None:  # after every run, so a later failure loses nothing finished
            write_outputs(out, records, summaries)
    scratch.cleanup()
    if args.json:
        _print_json(summaries)
        return 0
    last = args.seed + args.episodes - 1
    print(f"{args.task}: {args.episodes} episodes per policy, seeds {args.seed}..{last}")
    print(summary_table(summaries), end="")
    if out is not None:
        print(f"records, summary and table in {out}/")
    return 0


def _execution(args: argparse.Namespace) -> dict:
    """Chunk execution settings of ``eval`` and ``realtime`` (``policies.chunking``)."""
    return {
        "mode": "async" if args.async_chunks else "sync",
        "smoothing": args.smoothing,
        "blend_steps": args.blend_steps,
        "inference_delay_s": args.inference_delay_ms / 1e3,
    }


def _add_execution_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--async",
        dest="async_chunks",
        action="store_true",
        help="compute the next chunk in the background while the current one plays",
    )
    p.add_argument(
        "--inference-delay-ms",
        type=float,
        default=0.0,
        metavar="D",
        help="inference time of a slower computer: simulated in sim, added on the rig",
    )
    p.add_argument(
        "--smoothing",
        default="none",
        choices=["none", "blend"],
        help="chunk seams: switch outright (paper) or raised-cosine crossfade",
    )
    p.add_argument("--blend-steps", type=int, default=10, help="ticks of the seam crossfade")
    p.add_argument(
        "--runtime", default="torch", choices=["torch", "onnx"], help="what runs the policy"
    )


def cmd_realtime(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from aloha_bench.realtime import CONDITIONS, DELAYS_MS, realtime_table, run_realtime
    from aloha_bench.sim.task_spec import load_task_spec

    load_task_spec(args.task)
    bars: dict[str, tqdm] = {}

    def progress(label: str, record: dict) -> None:
        bar = bars.setdefault(label, _progress_bar(total=args.episodes, desc=label, unit="ep"))
        bar.update(1)
        if bar.n == args.episodes:
            bar.close()

    summaries = run_realtime(
        args.run,
        args.task,
        args.out,
        episodes=args.episodes,
        workers=args.workers,
        delays_ms=args.delays or DELAYS_MS,
        conditions=CONDITIONS,
        latency=args.latency,
        blend_steps=args.blend_steps,
        runtime=args.runtime,
        seed=args.seed,
        threads=args.threads,
        progress=progress,
    )
    print(realtime_table(summaries), end="")
    print(f"table, summary.csv, realtime.png and COMMANDS.md in {args.out}/")
    return 0


# `export-policy --to FORMAT`: one exporter per format, each (args) -> message.
def _export_onnx(args: argparse.Namespace) -> str:
    from aloha_bench.policies.export import export_run

    calibration = checks = None
    if args.quantize.startswith("int8_static"):
        # Activation ranges from the run's own demo frames; the result checked on held-out ones.
        from aloha_bench.demo_frames import demo_observations
        from aloha_bench.policies import checkpoint_dir, load
        from aloha_bench.policies.export import CALIBRATION_FRAMES

        run = checkpoint_dir(args.run).parent
        keys = load(args.run).config.input_keys
        calibration = demo_observations(run, keys, CALIBRATION_FRAMES)
        checks = demo_observations(run, keys, 16, split="val")
    info = export_run(
        args.run,
        args.out,
        quantize=args.quantize,
        threads=args.threads or 1,
        calibration=calibration,
        check_observations=checks,
    )
    on_demos = info.get("max_action_diff_rad_on_demos")
    return (
        f"wrote {args.out}/policy.onnx ({info['quantize']}); largest action difference from "
        f"fp32 torch: {info['max_action_diff_rad_vs_torch_fp32']:.2e} rad"
        + (f" ({on_demos:.2e} rad on validation demo frames)" if on_demos is not None else "")
    )


EXPORTERS = {"onnx": _export_onnx}


# Options that only one export format reads: set for another, they would be silently ignored.
_EXPORT_OPTIONS = {
    "--quantize": ("onnx", lambda a: a.quantize != "none"),
    "--threads": ("onnx", lambda a: a.threads is not None),
    "--units": ("lerobot", lambda a: a.units is not None),
    "--calibration": ("lerobot", lambda a: a.calibration is not None),
    "--camera-map": ("lerobot", lambda a: bool(a.camera_map)),
}


def cmd_export_policy(args: argparse.Namespace) -> int:
    for flag, (fmt, given) in _EXPORT_OPTIONS.items():
        if args.to != fmt and given(args):
            raise ValueError(
                f"{flag} applies to --to {fmt} exports only; drop it for --to {args.to}, or "
                f"export with --to {fmt}"
            )
    result = EXPORTERS[args.to](args)
    _print_json(result) if isinstance(result, dict) else print(result)
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from aloha_bench import study

    profile = study.load_profile(args.profile)
    work = Path(args.work_dir or f"runs/{profile['name']}")
    results = Path(args.out or f"results/{profile['name']}")
    the_plan = study.plan(
        profile, args.tasks, args.seeds, args.groups, args.sources, args.policies, args.obs_modes
    )
    if not the_plan.evals and not args.report_only:
        # e.g. --groups demos --obs-modes pixels: each filter is valid, together they select
        # nothing, and running "nothing" successfully would look like a finished slice.
        given = " ".join(
            f"--{name.replace('_', '-')} {' '.join(map(str, value))}"
            for name in ("tasks", "groups", "sources", "policies", "obs_modes")
            if (value := getattr(args, name))
        )
        raise ValueError(
            f"no cell of study {profile['name']!r} matches {given or 'the filters'}; "
            f"`aloha-bench reproduce --profile {args.profile} --dry-run` lists every cell and "
            "its groups"
        )
    if args.dry_run:
        layout = study.Layout(work, results)
        # "done" also covers work no longer needed: a dataset or run whose evaluations are all
        # recorded (e.g. on a fresh clone, whose runs/ is empty) is not redone.
        for kind, cells, done in (
            ("data", the_plan.data, lambda c, lay: not study.data_needed(c, the_plan, lay)),
            ("train", the_plan.train, lambda c, lay: not study.train_needed(c, the_plan, lay)),
            ("eval", the_plan.evals, study.eval_done),
        ):
            finished = sum(done(c, layout) for c in cells)
            print(f"{kind:<6} {len(cells):>4} cells, {finished} finished or no longer needed")
            for cell in cells:
                print(f"   {'done' if done(cell, layout) else 'todo'}  {cell.id}")
        # The whole plan, then what is left of it in this work folder: a study that runs over
        # several sittings is planned by the second.
        for label, size in (
            ("whole plan", study.plan_size(the_plan)),
            (
                f"still to do in {work}/",
                # Rates from the whole study's finished runs: a slice's own may not have run.
                study.plan_size(the_plan, todo_in=layout, rates_from=study.plan(profile)),
            ),
        ):
            print(f"{label}:")
            for mode in ("state", "pixels"):
                print(f"  {mode:<6} " + ", ".join(f"{v:,} {k}" for k, v in size[mode].items()))
            if size["hours"] is not None:
                print(f"  about {size['hours']:.1f} h of one core at the profile's [cost] rates")
            if size.get("hours_measured") is not None:
                rates = ", ".join(
                    f"{mode} {baseline} {rate:.1f} steps/s ({n} run{'s' * (n > 1)})"
                    for (mode, baseline), (rate, n) in sorted(size["measured_rates"].items())
                )
                print(
                    f"  about {size['hours_measured']:.1f} h of one core at the training rates "
                    f"of the finished runs in {work}/ ({rates}; evaluation at [cost]'s)"
                )
        return 0
    if args.report_only:
        # The whole study's report: filters choose what runs, not what a report covers.
        the_plan = study.plan(profile)
        result = study.write_summary(the_plan, study.Layout(work, results))
        if result["summary"] is None:
            print(f"no evaluation of study {profile['name']} has finished in {work}/")
            return 1
        from aloha_bench import report

        print(report.report_markdown(report.read_summary(result["summary"])))
        missing = len(result["missing"])
        print(f"{missing} of {len(the_plan.evals)} evaluation cells missing ({results}/missing.md)")
        _say_orphans(result, results)
        return 0
    print(
        f"study {profile['name']}: {len(the_plan.data)} datasets, {len(the_plan.train)} "
        f"training runs, {len(the_plan.evals)} evaluations ({profile['description']})"
    )
    result = study.run_study(
        profile,
        work,
        results,
        tasks=args.tasks,
        seeds=args.seeds,
        groups=args.groups,
        sources=args.sources,
        policies=args.policies,
        obs_modes=args.obs_modes,
        executor=args.executor,
        workers=args.workers,
        address=args.address,
        threads=args.threads,
    )
    print(f"{result['ran']} cells ran, {result['skipped']} were finished before")
    if result["summary"] is None:
        print("no evaluation finished yet; run the command again to continue")
        return 1
    from aloha_bench import report

    print(report.report_markdown(report.read_summary(result["summary"])))
    if result["missing"]:
        print(f"{len(result['missing'])} evaluation cells missing: see {results}/missing.md")
    _say_orphans(result, results)
    print(f"summary, tables and plots in {results}/ (REPORT.md); datasets and runs in {work}/")
    return 0


def _say_orphans(result: dict, results: Path) -> None:
    if result.get("orphans"):
        print(
            f"{len(result['orphans'])} records in {results}/records/ belong to no cell of the "
            f"study as planned now and are left out of summary.csv (listed in "
            f"{results}/missing.md)"
        )


def cmd_report(args: argparse.Namespace) -> int:
    from aloha_bench import report

    summary = Path(args.summary)
    out = Path(args.out) if args.out else summary.parent
    written = report.write_report(summary, out)
    print(report.report_markdown(report.read_summary(summary)))
    print(f"{len(written)} files in {out}/")
    return 0


def cmd_modes(args: argparse.Namespace) -> int:
    from aloha_bench import multimodality as mm
    from aloha_bench.experts.human import strategies

    results = {"scripted": mm.measure(mm.collect(args.task, "scripted", args.episodes))}
    if args.per_strategy:
        demos = [
            d
            for name in strategies(args.task)
            for d in mm.collect(args.task, "human", args.per_strategy, strategy=name)
        ]
    else:
        demos = mm.collect(args.task, "human", args.episodes)
    results["human"] = mm.measure(demos) | {"per_strategy": mm.per_strategy_success(demos)}
    command = f"aloha-bench modes --task {args.task} --episodes {args.episodes}" + (
        f" --per-strategy {args.per_strategy}" if args.per_strategy else ""
    )
    for path in mm.write_results(args.task, results, Path(args.out), command):
        print(path)
    print(mm.write_overview(Path(args.out)))
    print(Path(args.out, f"{args.task}.md").read_text())
    return 0


def cmd_modes_given_obs(args: argparse.Namespace) -> int:
    from aloha_bench import multimodality as mm

    command = (
        "aloha-bench modes-given-obs --datasets "
        + " ".join(str(d) for d in args.datasets)
        + f" --chunk-size {args.chunk_size} --queries {args.queries}"
        f" --neighbours {args.neighbours}"
    )
    results = [
        mm.given_observation(
            path,
            chunk_size=args.chunk_size,
            queries=args.queries,
            neighbours=args.neighbours,
        )
        | {"command": command}
        for path in args.datasets
    ]
    print(Path(mm.write_given_observation(results, Path(args.out))).read_text())
    return 0


def cmd_expert_table(args: argparse.Namespace) -> int:
    from aloha_bench.rollout import expert_table

    reports = [json.loads(Path(p).read_text()) for p in sorted(args.reports)]
    table = expert_table(reports)
    if args.out:
        Path(args.out).write_text(table)
    print(table, end="")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    from aloha_bench.rollout import view_expert, write_expert_frame, write_expert_video

    if args.image:
        out = write_expert_frame(
            args.task, Path(args.image), seed=args.seed, style=args.style, step=args.step
        )
        print(f"wrote {out}")
    elif args.video:
        out = write_expert_video(args.task, Path(args.video), seed=args.seed, style=args.style)
        print(f"wrote {out}")
    else:
        view_expert(args.task, seed=args.seed, style=args.style)
    return 0


def cmd_bench_env(args: argparse.Namespace) -> int:
    from aloha_bench.bench import bench_env

    results = bench_env(args.tasks.split(",") if args.tasks else None, scale=args.scale)
    if args.json:
        _print_json(results)
        return 0
    print(f"{'task':<15} {'config':<22} {'steps/s':>9} {'ms/step':>8}")
    for r in results:
        print(
            f"{r['task']:<15} {r['config']:<22} {r['steps_per_s']:>9.1f} {r['ms_per_step']:>8.2f}"
        )
    first = results[0]
    print(f"({first['cpu_count']} CPU cores, {first['processor']}, MUJOCO_GL={first['mujoco_gl']})")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    import time

    from aloha_bench.experts.human import HumanOperatorConfig, load_human_config
    from aloha_bench.generate import GenerateSettings, generate

    if args.source == "teleop":
        from aloha_bench.teleop import teleop_session

        result = teleop_session(
            args.task,
            args.out,
            args.episodes,
            device=args.device,
            backend=args.backend,
            robot_config=args.robot_config,
            obs_mode=args.obs_mode,
            cameras=tuple(args.cameras.split(",")) if args.cameras else None,
            image_size=args.image_size,
            seed=args.seed,
        )
        print(f"{result.store}: saved {result.saved}, discarded {result.discarded}")
        return 0
    if args.backend != "sim":
        raise ValueError("--backend real records teleoperated demos: add --source teleop")
    settings = GenerateSettings(
        task=args.task,
        source=args.source,
        obs_mode=args.obs_mode,
        cameras=tuple(args.cameras.split(",")) if args.cameras else None,
        image_size=args.image_size,
        human=load_human_config(args.human_config) if args.human_config else HumanOperatorConfig(),
        randomize=args.randomize,
        latency=args.latency,
        style=tuple(T.parse_assignments(args.style or (), "left_clearance_m=0.005").items()),
    )
    bar = _progress_bar(total=args.episodes, desc=f"{args.task} {args.source}", unit="ep")
    start = time.perf_counter()
    wins, dropped = 0, 0

    def progress(episode, kept, attempts) -> None:
        nonlocal wins, dropped
        wins += episode.success
        # The bar counts kept episodes; failed attempts are dropped unless --keep-failed.
        dropped += not (episode.success or args.keep_failed)
        minutes = (time.perf_counter() - start) / 60
        bar.n = kept
        bar.set_postfix(
            success=f"{wins}/{attempts}", dropped=dropped, ep_per_min=f"{attempts / minutes:.1f}"
        )
        bar.refresh()

    with bar:
        store = generate(
            settings,
            args.out,
            args.episodes,
            seed=args.seed,
            workers=args.workers,
            keep_failed=args.keep_failed,
            progress=progress,
        )
    print(f"{store.path}: {store.n_episodes} episodes, {store.n_steps} steps")
    if dropped:
        print(f"{dropped} failed attempts were dropped (--keep-failed keeps them)")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from aloha_bench import replay

    env_kwargs = {"randomize": args.randomize, "latency": args.latency}
    if args.backend == "real":
        if args.randomize != "none" or args.latency != "none":
            raise ValueError("--randomize and --latency model the simulator; drop them for real")
        env_kwargs = None
    report = replay.replay(
        args.path,
        backend=args.backend,
        episodes=args.episodes or None,
        robot_config=args.robot_config,
        env_kwargs=env_kwargs,
    )
    if args.out:
        replay.save_report(report, args.out)
    if args.json:
        _print_json(report)
    else:
        print(replay.report_markdown(report), end="")
    return 0


def cmd_align(args: argparse.Namespace) -> int:
    from aloha_bench.align import align

    real = int(args.real) if args.real.isdigit() else args.real
    align(
        args.task,
        args.camera,
        real,
        args.out,
        image_size=args.image_size,
        fovy_deg=args.fovy,
        seed=args.seed,
    )
    print(f"wrote {args.out} (sim | real | blend)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from aloha_bench.data.store import inspect

    summary = inspect(args.path)
    if args.json:
        _print_json(summary)
        return 0
    length = summary["length"]
    print(
        f"{summary['path']}: task {summary['task_id']} v{summary['task_version']}, "
        f"{summary['obs_mode']} mode"
    )
    print(
        f"episodes {summary['episodes']}, steps {summary['steps']}, length min/mean/max "
        f"{length['min']}/{length['mean']:.1f}/{length['max']}"
    )
    print(
        f"success {summary['success']['count']}/{summary['episodes']} "
        f"({summary['success']['rate']:.1%})"
    )
    print(f"sources: {summary['sources']}")
    print(f"strategies: {summary['strategies']}")
    if summary["cameras"]:
        height, width = summary["image_size"]
        print(f"cameras: {', '.join(summary['cameras'])} at {height}x{width}")
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from aloha_bench.data.video import write_episode_video

    out = write_episode_video(args.path, args.episode, args.out)
    print(f"wrote {out}")
    return 0


def cmd_bench_data(args: argparse.Namespace) -> int:
    from aloha_bench.bench import bench_data

    rows = bench_data(task=args.task, episodes=args.episodes)
    if args.json:
        _print_json(rows)
        return 0
    for row in rows:
        if row["name"].startswith("generate"):
            print(
                f"{row['name']:<28} {row['episodes_per_min']:>7.1f} episodes/min "
                f"({row['episodes']} episodes of {row['task']})"
            )
        else:
            print(
                f"{row['name']:<28} {row['samples_per_s']:>7.1f} samples/s (batch 8, K=100): "
                f"{row['loader_over_training']:.0f}x the {row['train_reference_samples_per_s']} "
                "samples/s a reference ACT training step consumes"
            )
    print(f"({rows[0]['cpu_count']} CPU cores, {rows[0]['processor']})")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import time

    from aloha_bench.policies.act.config import load_config
    from aloha_bench.train import train

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    config = load_config(args.config, args.profile, args.set or ())
    total = args.steps or config.steps
    import os

    rank = int(os.environ.get("RANK", "0"))  # under torchrun only rank 0 reports
    # Drawn at train()'s first report, once its checks passed: a refused input shows its error
    # alone, not under an empty bar.
    bars: list = []

    def progress(row: dict) -> None:
        if not bars:
            name = f"train {Path(args.out).name}"
            bars.append(_progress_bar(total=total, desc=name, unit="step", disable=rank != 0))
        bar = bars[0]
        bar.n = row["step"]
        shown = {k: f"{row[k]:.3g}" for k in ("loss", "kl", "lr", "samples_per_s") if k in row}
        if "val_l1" in row:
            shown["val_l1"] = f"{row['val_l1']:.3g}"
        bar.set_postfix(shown)
        bar.refresh()

    from aloha_bench.interop import lerobot_options, store_for_training

    dataset, converted = store_for_training(
        args.dataset, args.out, task=args.lerobot_task, **lerobot_options(args)
    )
    if converted and rank == 0:
        print(f"{args.dataset}: LeRobot dataset converted to {dataset}", file=sys.stderr)
    start = time.perf_counter()
    try:
        summary = train(
            config,
            dataset,
            args.out,
            steps=args.steps,
            device=args.device,
            resume=args.resume,
            progress=progress,
            tensorboard="tensorboard" in (args.log or ()),
        )
    finally:
        for bar in bars:
            bar.close()
    if rank != 0:
        return 0
    if args.json:
        _print_json(summary)
    else:
        seconds = time.perf_counter() - start
        print(
            f"{summary['run_dir']}: {summary['steps']} steps in {seconds:.0f} s "
            f"({summary['train_samples_per_s']:.1f} samples/s, {summary['precision']}); "
            f"best step {summary['best_step']}"
        )
    return 0


def cmd_diagnose_handover(args: argparse.Namespace) -> int:
    from aloha_bench import diagnose

    offsets = [float(v) for v in args.offsets_mm.split(",")]
    tolerance = []
    for clearance_mm in args.clearance_mm:
        for axis in args.axes.split(","):
            tolerance += diagnose.grasp_tolerance(
                offsets, axis, args.episodes, left_clearance_m=clearance_mm / 1000.0
            )
    errors = diagnose.handover_grasp_errors(args.run, args.policy_episodes) if args.run else None
    scale = f"transfer_cube; expert: {args.episodes} seeds per offset; " + (
        f"policy {args.run}: {args.policy_episodes} seeds from 1000" if args.run else ""
    )
    for path in diagnose.write_handover_report(args.out, tolerance, errors, scale):
        print(path)
    for row in tolerance:
        print(
            f"{row['axis']:>6} {row['offset_mm']:+5.1f} mm (clearance {row['left_clearance_mm']}"
            f" mm): end {row['success_end']:.0%}, any {row['success_any']:.0%}"
        )
    return 0


def _tolerance_job(
    task: str, sigmas: list[float], episodes: int, seed: int, hold: int, bar=None
) -> list:
    from aloha_bench.tolerance import expert_tolerance

    def progress(sigma: float, done: int) -> None:
        bar.update(1)
        bar.set_postfix(task=task, sigma_mrad=f"{sigma:g}")

    return expert_tolerance(
        task, sigmas, episodes, seed=seed, hold_steps=hold, progress=progress if bar else None
    )


def _policy_success(summary_csv: str | None) -> dict[str, float]:
    """Run folder name -> end-of-episode success of its plain evaluation in a study summary."""
    if not summary_csv:
        return {}
    import pandas as pd

    df = pd.read_csv(summary_csv)
    ensembled = df["temporal_ensemble"].fillna(False).astype(bool)
    plain = df[(df["perturbation"].fillna("none") == "none") & ~ensembled]
    return {
        Path(str(r)).name: float(v)
        for r, v in zip(plain["run"], plain["success_rate"], strict=True)
    }


def cmd_tolerance(args: argparse.Namespace) -> int:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from aloha_bench.tolerance import policy_action_error, write_tolerance_report

    if args.from_json:
        # Redraw the tables and the plot of an earlier run's tolerance.json; nothing is run.
        saved = json.loads(Path(args.from_json).read_text())
        for path in write_tolerance_report(
            args.out, saved["tolerance"], saved["policy_error"], saved["scale"],
            _policy_success(args.summary),
        ):  # fmt: skip
            print(path)
        return 0
    if not args.tasks:
        raise ValueError("give --tasks (the tasks to measure) or --from an earlier tolerance.json")
    sigmas = sorted(set(args.sigma_mrad))
    tasks = list(dict.fromkeys(args.tasks))
    jobs = [(t, sigmas, args.episodes, args.seed, args.hold_steps) for t in tasks]
    total = len(tasks) * len(sigmas) * args.episodes
    if args.workers > 1:
        # spawn: a forked child would inherit any GL or torch thread state of this process.
        with (
            ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool,
            _progress_bar(
                total=len(tasks), desc=f"tolerance ({total} episodes)", unit="task"
            ) as bar,
        ):
            results = []
            for result in pool.map(_tolerance_job, *zip(*jobs, strict=True)):
                results.append(result)
                bar.update(1)
    else:
        with _progress_bar(total=total, desc="tolerance", unit="ep") as bar:
            results = [_tolerance_job(*job, bar=bar) for job in jobs]
    rows = [row for result in results for row in result]
    errors = [policy_action_error(run) for run in args.run or []]
    runs = ", ".join(Path(e["run"]).name for e in errors)
    scale = (
        f"scripted expert (default style), seeds {args.seed}-{args.seed + args.episodes - 1} "
        f"({args.episodes} episodes per point), error redrawn every {args.hold_steps} steps"
        + (f"; ACT error: validation demos of {runs}" if errors else "")
    )
    for path in write_tolerance_report(
        args.out, rows, errors, scale, _policy_success(args.summary)
    ):
        print(path)
    for row in rows:
        print(
            f"{row['task']:>14} sigma {row['sigma_mrad']:5.1f} mrad: end {row['success_end']:.0%}"
            f" [{row['ci_low']:.0%}, {row['ci_high']:.0%}]"
        )
    for e in errors:
        print(f"{e['task']:>14} ACT RMS error {e['rms_mrad']:.1f} mrad ({Path(e['run']).name})")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from aloha_bench.interop import from_lerobot, parse_camera_map, to_lerobot

    convert = to_lerobot if args.to == "lerobot" else from_lerobot
    summary = convert(
        args.src,
        args.out,
        units=args.units,
        calibration=args.calibration,
        camera_map=parse_camera_map(args.camera_map),
        task=args.task,
    )
    _print_json(summary)
    return 0


def _export_lerobot(args: argparse.Namespace) -> dict:
    from aloha_bench.interop import export_lerobot, parse_camera_map

    return export_lerobot(
        args.run,
        args.out,
        units=args.units or "radians",
        calibration=args.calibration,
        camera_map=parse_camera_map(args.camera_map),
    )


EXPORTERS["lerobot"] = _export_lerobot


def _add_lerobot_options(p: argparse.ArgumentParser, units_flag: str = "--units") -> None:
    """Units, calibration and camera names of LeRobot folders (``aloha_bench/lerobot_units``)."""
    p.add_argument(
        units_flag,
        dest="lerobot_units" if units_flag != "--units" else "units",
        choices=["radians", "degrees", "range"],
        help="LeRobot joint units: radians (ours), degrees (SO-101 use_degrees) or range "
        "(-100..100); the gripper is 0..100 in both LeRobot modes",
    )
    p.add_argument("--calibration", help="folder with the left and right arms' calibration JSON")
    p.add_argument(
        "--camera-map",
        action="append",
        metavar="OURS=THEIRS",
        help="our camera = LeRobot image key, e.g. top=observation.images.overhead (repeatable)",
    )


def cmd_bench_train(args: argparse.Namespace) -> int:
    from aloha_bench.bench_train import bench_train

    rows = bench_train(args.configs, threads=args.threads, lerobot_python=args.lerobot_python)
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        if r.get("runtime") == "lerobot":
            print(f"{r['name']:<22} train {r['train_samples_per_s']:6.1f} samples/s (LeRobot)")
            continue
        print(
            f"{r['name']:<22} train {r['train_samples_per_s']:6.1f} samples/s (train() "
            f"{r['train_loop_samples_per_s']:6.1f}), chunk {r['chunk_inference_ms']:5.1f} ms, "
            f"ensembled step {r['ensembled_step_ms']:5.1f} ms, "
            f"{r['parameters'] / 1e6:.1f} M params"
        )
    return 0


def cmd_bench_infer(args: argparse.Namespace) -> int:
    from aloha_bench.bench_infer import bench_infer

    rows = bench_infer(
        args.configs, threads=args.threads, n=args.n, lerobot_python=args.lerobot_python
    )
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        diff = r["max_action_diff_rad"]
        print(
            f"{r['name']:<28} {r['ms_per_chunk']:7.1f} ms/chunk   max |action - torch fp32| "
            f"{'—' if diff is None else f'{diff:.1e}'} rad"
        )
    first = rows[0]
    print(
        f"LeRobot ACTPolicy at lerobot_parity: {first['lerobot_ms_per_chunk']:.1f} ms "
        f"({first['lerobot_source']}); {first['threads']} threads, {first['cpu_count']} cores"
    )
    return 0


def cmd_bench_control(args: argparse.Namespace) -> int:
    from aloha_bench.bench_control import bench_control

    result = bench_control(args.run, runtime=args.runtime, steps=args.steps, threads=args.threads)
    if args.json:
        _print_json(result)
        return 0
    for mode in ("sync", "async"):
        r = result[mode]
        print(
            f"{mode:<5}: {r['deadline_misses']} missed 50 Hz deadlines of {r['ticks']}, longest "
            f"gap {r['longest_gap_ms']:.1f} ms, loop p50 {r['p50_loop_ms']:.1f} ms / p99 "
            f"{r['p99_loop_ms']:.1f} ms, inference p50 {r['p50_inference_ms']:.1f} ms"
        )
    print(f"({result['policy']}, runtime {result['runtime']}, servo emulator on a pty)")
    return 0


def cmd_bench_bus(args: argparse.Namespace) -> int:
    from aloha_bench.robots.bench_bus import bench_bus

    faults = dict(args.fault or ())
    result = bench_bus(port=args.port, n=args.n, faults=faults)
    if args.json:
        _print_json(result)
        return 0
    where = "emulator" if result["emulated"] else result["port"]
    timing = (
        f"median {result['round_trip_ms']:.2f} ms, p90 {result['round_trip_p90_ms']:.2f} ms"
        if result["succeeded"]
        else "no exchange succeeded"
    )
    print(
        f"sync read + sync write, {result['n_servos']} servos at {result['baudrate']} baud "
        f"({where}, {result['n']} round trips, {result['succeeded']} succeeded): {timing}; "
        f"wire time {result['wire_ms']:.2f} ms ({result['wire_bytes']} bytes)"
    )
    for kind in ("errors", "retries"):
        detail = ", ".join(
            f"{'servo ' + servo if servo != 'bus' else 'bus'}: "
            + ", ".join(f"{n} {fault}" for fault, n in counts.items())
            for servo, counts in result[f"{kind}_by_servo"].items()
        )
        print(f"{kind} {result[kind]}" + (f" ({detail})" if detail else ""))
    return 0


def _servo_fault(text: str) -> tuple[int, str]:
    servo, _, kind = text.partition(":")
    if not servo.isdigit() or kind not in ("silent", "corrupt", "overload"):
        raise argparse.ArgumentTypeError(
            f"{text!r} must look like 3:silent (servo id 1..6 : silent, corrupt or overload)"
        )
    return int(servo), kind


def cmd_calibrate(args: argparse.Namespace) -> int:
    from aloha_bench import embodiment
    from aloha_bench.robots.calibration import calibrate_arm
    from aloha_bench.robots.feetech import FeetechBus

    if sys.stdin is None or sys.stdin.closed or not sys.stdin.isatty():
        raise ValueError(
            "calibrate waits for Enter while you move the arm, but stdin is not a terminal; "
            "run it in an interactive terminal (nothing was written to the servos)"
        )
    out = Path(args.out or f"calibration/{args.arm}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    with FeetechBus(args.port, embodiment.MOTOR_IDS.values()) as bus:
        calibrate_arm(bus, out)
    return 0


def cmd_teleop(args: argparse.Namespace) -> int:
    from aloha_bench.robots.real_env import RealRigEnv
    from aloha_bench.robots.rig_config import load_rig_config

    if args.backend != "real":
        raise ValueError(
            "teleop here drives the real followers from the real leaders (--backend real); "
            "simulated teleoperation is `aloha-bench generate --source teleop`"
        )
    env = RealRigEnv(load_rig_config(args.robot_config), teleop=True)
    steps = 0
    try:
        env.reset()
        print("Teleoperating: the followers track the leaders. Ctrl-C to stop.")
        while args.steps is None or steps < args.steps:
            _, _, _, _, info = env.teleop_step()
            steps += 1
    except KeyboardInterrupt:
        pass
    finally:
        env.close()  # torque off on every exit
    print(f"stopped after {steps} steps; {info.get('overruns', 0) if steps else 0} late ticks")
    return 0


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (required, unset, off)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def _verb_adder(subparsers) -> Callable[[str, str], argparse.ArgumentParser]:
    """``verb(name, text)``: a subcommand whose help shows ``text`` and every option's default."""

    def verb(name: str, text: str) -> argparse.ArgumentParser:
        return subparsers.add_parser(
            name,
            help=text,
            description=text,
            formatter_class=_HelpFormatter,
        )

    return verb


def task_arg(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--task``, checked against the task folders at parse time and listed in the help."""
    parser.add_argument(
        "--task",
        type=T.task_id,
        metavar=T.task_metavar(),
        required=default is None,
        default=default,
        help="task id (`aloha-bench tasks` describes them)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aloha-bench",
        description="Bimanual imitation-learning benchmark on the SO-ARM101 rig (sim and real).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    verb = _verb_adder(sub)

    p = verb("tasks", "list tasks, their stages and Gymnasium ids")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=cmd_tasks)

    p = verb("expert", "run a task's scripted expert and print its success")
    task_arg(p)
    p.add_argument("--episodes", type=T.positive_int, default=20, help="episodes to play")
    p.add_argument("--seed", type=T.seed, default=0, help="first seed; episode i uses seed + i")
    p.add_argument(
        "--style",
        default="default",
        choices=["default", "varied"],
        help="varied: approach side, speed and pauses drawn per episode (multimodal demos)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_expert)

    p = verb("eval", "roll out trained policies: success with intervals, stages")
    p.add_argument(
        "--run", required=True, action="append", help="run folder of `train` (repeatable)"
    )
    p.add_argument("--label", action="append", help="name of each --run in tables (repeatable)")
    task_arg(p)
    p.add_argument(
        "--allow-other-task",
        action="store_true",
        help="evaluate a run trained on another task (a transfer test; recorded in the results)",
    )
    p.add_argument("--episodes", type=T.positive_int, default=50, help="episodes per run")
    p.add_argument("--seed", type=T.seed, default=1000, help="first seed (demos use 0, 1, ...)")
    p.add_argument("--workers", type=T.positive_int, default=1, help="parallel episode processes")
    p.add_argument("--threads", type=T.positive_int, default=1, help="torch threads per process")
    p.add_argument(
        "--videos", type=T.non_negative_int, default=0, help="film the first K episodes (--out)"
    )
    p.add_argument(
        "--temporal-ensemble",
        type=T.non_negative_float,
        metavar="M",
        help="query every step and ensemble chunks with weights exp(-M i) (paper: 0.01)",
    )
    p.add_argument(
        "--n-action-steps",
        type=T.positive_int,
        metavar="N",
        help="play N actions of each chunk, then predict the next from a fresh observation "
        "(1..K; default: the run's own, K for the paper's ACT; N > 1 turns off a run's own "
        "temporal ensembling)",
    )
    p.add_argument(
        "--backend",
        default="sim",
        choices=["sim", "real"],
        help="sim, or the real rig of --robot-config",
    )
    p.add_argument("--robot-config", help="rig.toml (--backend real)")
    p.add_argument(
        "--max-steps", type=T.positive_int, help="shorter episodes (default: the task's length)"
    )
    p.add_argument(
        "--randomize",
        default="none",
        choices=["none", "light", "strong"],
        help="domain randomization level (seeded per episode)",
    )
    p.add_argument(
        "--latency",
        default="none",
        choices=["none", "real"],
        help="camera/action latency and servo model",
    )
    p.add_argument(
        "--no-seed-check",
        action="store_true",
        help="skip the check that evaluation seeds are not training demo seeds",
    )
    p.add_argument("--out", help="folder for records.jsonl, summary.json, table.md, videos/")
    p.add_argument("--json", action="store_true", help="print the summaries as JSON")
    _add_execution_args(p)
    _add_lerobot_options(p, "--lerobot-units")  # for LeRobot ACT folders given as --run
    p.set_defaults(func=cmd_eval)

    p = verb("realtime", "sync vs async chunks at injected inference delays: success, seams")
    p.add_argument("--run", required=True, help="run folder of `train` (or an ONNX export)")
    task_arg(p)
    p.add_argument("--episodes", type=T.positive_int, default=50, help="episodes per cell")
    p.add_argument("--seed", type=T.seed, default=1000, help="first evaluation seed")
    p.add_argument("--workers", type=T.positive_int, default=2, help="parallel episode processes")
    p.add_argument("--threads", type=T.positive_int, default=1, help="torch threads per process")
    p.add_argument(
        "--delays",
        type=T.non_negative_float,
        nargs="+",
        help="inference delays, ms (default 0 50 100 200)",
    )
    p.add_argument("--latency", default="real", choices=["none", "real"], help="timing model")
    p.add_argument(
        "--blend-steps", type=T.positive_int, default=10, help="seam blend length, steps"
    )
    p.add_argument("--runtime", default="torch", choices=["torch", "onnx"], help="inference")
    p.add_argument("--out", default="results/realtime", help="folder for the grid's results")
    p.set_defaults(func=cmd_realtime)

    p = verb("export-policy", "export a trained policy (ONNX, ...)")
    p.add_argument("run", help="run folder of `train` (its best/ checkpoint, else last/)")
    p.add_argument("--to", required=True, choices=sorted(EXPORTERS), help="format")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument(
        "--quantize",
        default="none",
        choices=["none", "int8", "int8_static", "int8_static_full"],
        help="onnx: int8 matrix weights; int8_static: the image backbone's convolutions in "
        "int8, calibrated on the run's demo frames; int8_static_full: those and the "
        "transformer's linear layers but the last three (each changes actions; the "
        "difference is measured and printed)",
    )
    p.add_argument(
        "--threads",
        type=T.positive_int,
        default=None,  # None, not 1: a --threads given for --to lerobot is refused, not ignored
        help="onnx: ONNX Runtime threads of the parity check (default 1)",
    )
    _add_lerobot_options(p)  # --to lerobot
    p.set_defaults(func=cmd_export_policy)

    p = verb("reproduce", "the whole study: demos, training, evaluation, tables and plots")
    p.add_argument("--profile", default="quick", help="study in baselines/studies/ (or a path)")
    p.add_argument("--tasks", nargs="+", help="a subset of the profile's tasks")
    p.add_argument("--seeds", type=T.positive_int, help="training seeds (default: the profile's)")
    p.add_argument("--groups", nargs="+", help="a subset: main chunk_size beta cameras ...")
    p.add_argument("--sources", nargs="+", help="a subset of the data sources: scripted human")
    p.add_argument("--policies", nargs="+", help="a subset: act no_cvae single_step")
    p.add_argument("--obs-modes", nargs="+", help="a subset of the observation modes: state pixels")
    p.add_argument("--executor", default="local", choices=["local", "ray"], help="where cells run")
    p.add_argument("--address", help="Ray cluster address (--executor ray)")
    p.add_argument(
        "--workers", type=T.positive_int, default=1, help="parallel jobs (local executor)"
    )
    p.add_argument(
        "--threads", type=T.positive_int, help="torch threads per job (default cores/workers)"
    )
    p.add_argument("--work-dir", help="datasets and runs (default runs/<profile>)")
    p.add_argument("--out", help="results folder (default results/<profile>)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and which are done")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: summary, tables and plots of every cell of the study finished so "
        "far (the filters above choose what runs; a report always covers the whole study)",
    )
    p.set_defaults(func=cmd_reproduce)

    p = verb("report", "tables and plots from a study's summary.csv")
    p.add_argument("summary", help="summary.csv written by `aloha-bench reproduce`")
    p.add_argument("--out", help="folder for the report (default: beside summary.csv)")
    p.set_defaults(func=cmd_report)

    p = verb("modes", "how multimodal human vs scripted demos are; per-strategy success")
    task_arg(p)
    p.add_argument(
        "--episodes", type=T.positive_int, default=20, help="scripted (and human) episodes"
    )
    p.add_argument(
        "--per-strategy",
        type=T.non_negative_int,
        default=0,
        help="human: this many episodes per strategy",
    )
    p.add_argument("--out", default="results/multimodality", help="folder for json/md/png")
    p.set_defaults(func=cmd_modes)

    p = verb(
        "modes-given-obs",
        "how far apart recorded demos go on from frames a policy cannot tell apart (its "
        "observation): the averaging a policy without the CVAE faces",
    )
    p.add_argument("--datasets", nargs="+", required=True, help="Zarr episode stores (.zarr)")
    p.add_argument("--chunk-size", type=T.positive_int, default=100, help="K, actions per frame")
    p.add_argument(
        "--queries", type=T.positive_int, default=1000, help="frames sampled per dataset"
    )
    p.add_argument(
        "--neighbours", type=T.positive_int, default=8, help="frames of other episodes compared"
    )
    p.add_argument(
        "--out", default="results/multimodality/given_observation", help="folder for json/md"
    )
    p.set_defaults(func=cmd_modes_given_obs)

    p = verb("expert-table", "markdown table of `expert --json` reports")
    p.add_argument("reports", nargs="+", help="JSON files written by `aloha-bench expert --json`")
    p.add_argument("--out", help="also write the table to this file")
    p.set_defaults(func=cmd_expert_table)

    p = verb("view", "watch the expert in the viewer, or write a video headless")
    task_arg(p)
    p.add_argument("--seed", type=T.seed, default=0, help="reset seed (prop placement)")
    p.add_argument(
        "--style", default="default", choices=["default", "varied"], help="the expert's style"
    )
    p.add_argument("--video", help="write an mp4 of all four cameras instead of opening a window")
    p.add_argument("--image", help="write a PNG of all four cameras at --step instead")
    p.add_argument(
        "--step", type=T.non_negative_int, default=150, help="control step of the --image frame"
    )
    p.set_defaults(func=cmd_view)

    p = verb("generate", "record demonstrations into a Zarr dataset")
    task_arg(p)
    p.add_argument(
        "--episodes", type=T.positive_int, required=True, help="episodes to keep (successes)"
    )
    p.add_argument("--out", required=True, help="dataset path, e.g. data/transfer_cube.zarr")
    p.add_argument(
        "--source",
        default="scripted",
        choices=["scripted", "human", "teleop"],
        help="scripted expert, the human operator model, or you (teleop)",
    )
    p.add_argument("--seed", type=T.seed, default=0, help="first seed; attempt i uses seed + i")
    p.add_argument(
        "--obs-mode",
        default="pixels",
        choices=["pixels", "state"],
        help="camera images, or the props' poses (observation.environment_state)",
    )
    p.add_argument("--cameras", help="comma-separated, e.g. top,front (default: the task's)")
    p.add_argument("--image-size", type=T.image_size(), default=(96, 128), help="HxW, e.g. 96x128")
    p.add_argument("--workers", type=T.positive_int, default=1, help="parallel processes")
    p.add_argument("--keep-failed", action="store_true", help="also keep failed episodes")
    p.add_argument(
        "--style",
        action="append",
        metavar="FIELD=VALUE",
        help="a field of the scripted expert's style, e.g. left_clearance_m=0.005 "
        "(transfer_cube); an unknown field is an error that lists the valid ones",
    )
    p.add_argument(
        "--device",
        default="keyboard",
        choices=["keyboard", "leader"],
        help="teleop input: keyboard (MuJoCo viewer) or leader arms",
    )
    p.add_argument(
        "--backend",
        default="sim",
        choices=["sim", "real"],
        help="sim, or the real rig of --robot-config",
    )
    p.add_argument("--robot-config", help="rig.toml: leader ports (and the real rig's setup)")
    p.add_argument("--human-config", help="TOML of human operator ranges (--source human)")
    p.add_argument(
        "--randomize",
        default="none",
        choices=["none", "light", "strong"],
        help="domain randomization level (per episode, seeded, recorded)",
    )
    p.add_argument(
        "--latency",
        default="none",
        choices=["none", "real"],
        help="camera/action latency and servo model",
    )
    p.set_defaults(func=cmd_generate)

    p = verb("replay", "replay a dataset's actions; per-joint tracking error")
    p.add_argument("path", help="dataset (.zarr)")
    p.add_argument(
        "--backend",
        default="sim",
        choices=["sim", "real"],
        help="sim, or the real rig of --robot-config",
    )
    p.add_argument("--robot-config", help="rig.toml (--backend real)")
    p.add_argument(
        "--episodes", type=T.non_negative_int, nargs="*", help="episode indices (default: all)"
    )
    p.add_argument("--out", help="folder for replay.json/.md/.csv/.png")
    p.add_argument(
        "--randomize",
        default="none",
        choices=["none", "light", "strong"],
        help="domain randomization level (seeded per episode)",
    )
    p.add_argument(
        "--latency",
        default="none",
        choices=["none", "real"],
        help="camera/action latency and servo model",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_replay)

    p = verb("align", "sim camera beside a real frame, blended, as one PNG")
    p.add_argument(
        "task", type=T.task_id, metavar=T.task_metavar(), help="task of the simulated scene"
    )
    p.add_argument(
        "camera", choices=["top", "front", "left_wrist", "right_wrist"], help="sim camera"
    )
    p.add_argument("real", help="image file, camera index or /dev/video* path")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument(
        "--image-size", type=T.image_size(low=1), default=(480, 640), help="HxW of each panel"
    )
    p.add_argument(
        "--fovy", type=T.positive_float, help="the real camera's vertical field of view (deg)"
    )
    p.add_argument("--seed", type=T.seed, default=0, help="reset seed (prop placement)")
    p.set_defaults(func=cmd_align)

    p = verb("inspect", "summarize a dataset: episodes, success, strategies")
    p.add_argument("path", help="dataset (.zarr)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_inspect)

    p = verb("video", "write one dataset episode as an mp4, cameras side by side")
    p.add_argument("path", help="dataset (.zarr) recorded in pixels mode")
    p.add_argument("--episode", type=T.non_negative_int, default=0, help="episode index")
    p.add_argument("--out", required=True, help="mp4 file to write")
    p.set_defaults(func=cmd_video)

    p = verb(
        "tolerance",
        "how precise each task asks a policy to be: expert success vs joint-target error",
    )
    p.add_argument("--tasks", type=T.task_id, nargs="+", help="task ids, e.g. battery insertion")
    p.add_argument(
        "--from",
        dest="from_json",
        help="an earlier run's tolerance.json: redraw its tables and plot, run nothing",
    )
    p.add_argument(
        "--sigma-mrad",
        type=T.non_negative_float,
        nargs="+",
        default=[0.0, 2.0, 4.0, 8.0, 16.0, 32.0],
        help="per-joint error standard deviations (mrad)",
    )
    p.add_argument("--episodes", type=T.positive_int, default=20, help="expert seeds per sigma")
    p.add_argument("--seed", type=T.seed, default=0, help="first seed (demos use 0, 1, ...)")
    p.add_argument(
        "--hold-steps",
        type=T.positive_int,
        default=100,
        help="steps an error draw is held (100: one ACT chunk; 1: per-step noise)",
    )
    p.add_argument(
        "--run", action="append", help="a trained run: its error on its validation demos"
    )
    p.add_argument("--summary", help="a study's summary.csv: print each --run's success beside")
    p.add_argument("--workers", type=T.positive_int, default=1, help="tasks in parallel")
    p.add_argument("--out", required=True, help="folder for the table, the plot and the JSON")
    p.set_defaults(func=cmd_tolerance)

    p = verb(
        "diagnose-handover",
        "transfer_cube: the left grasp's tolerance, and where a policy closes the gripper",
    )
    p.add_argument("--out", required=True, help="folder for the tables and the plot")
    p.add_argument("--run", help="a trained transfer_cube run to measure (optional)")
    p.add_argument(
        "--offsets-mm", default="-16,-12,-8,-4,0,4,8,12,16", help="grasp shifts, comma-separated"
    )
    p.add_argument("--axes", default="jaw", help="comma-separated: jaw, across, z")
    p.add_argument(
        "--clearance-mm",
        type=T.non_negative_float,
        nargs="+",
        default=[8.5],
        help="left fixed-jaw clearances to compare",
    )
    p.add_argument("--episodes", type=T.positive_int, default=10, help="expert seeds per offset")
    p.add_argument(
        "--policy-episodes", type=T.positive_int, default=20, help="policy seeds from 1000"
    )
    p.set_defaults(func=cmd_diagnose_handover)

    p = verb("train", "train ACT or a baseline on a dataset")
    p.add_argument(
        "--config", default="act", help="baseline name (act, no_cvae, single_step) or TOML"
    )
    p.add_argument("--profile", help="scale: cpu or paper (baselines/profiles/) or a TOML path")
    p.add_argument("--dataset", required=True, help="Zarr dataset from `aloha-bench generate`")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/act_cube")
    p.add_argument("--steps", type=T.positive_int, help="gradient steps (default: the config's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field")
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: CUDA if present"
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out bit-for-bit")
    p.add_argument(
        "--log",
        nargs="+",
        choices=["tensorboard"],
        help="also log to TensorBoard (<out>/tensorboard; pip install 'aloha-bench[tensorboard]')",
    )
    p.add_argument(
        "--threads", type=T.positive_int, help="torch CPU threads (default: one per core)"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_lerobot_options(p, "--lerobot-units")
    p.add_argument(
        "--lerobot-task",
        type=T.task_id,
        help="a LeRobot --dataset: the aloha-bench task it records (its store's task_id)",
    )
    p.set_defaults(func=cmd_train)

    p = verb("convert", "LeRobotDataset (v3.0, v2.1) <-> Zarr dataset")
    p.add_argument("src", help="a Zarr store or a LeRobot dataset folder")
    p.add_argument("--to", required=True, choices=["lerobot", "zarr"], help="target format")
    p.add_argument("--out", required=True, help="folder to create")
    p.add_argument("--task", help="task string (to lerobot) or task id (to zarr)")
    _add_lerobot_options(p)
    p.set_defaults(func=cmd_convert)

    p = verb("bench", "speed benchmarks that print figures")
    bench = p.add_subparsers(dest="bench", required=True)
    verb = _verb_adder(bench)
    b = verb("env", "env steps/s without and with rendering")
    b.add_argument("--tasks", help="comma-separated task ids (default: all)")
    b.add_argument("--scale", type=T.positive_float, default=1.0, help="multiply the timed steps")
    b.add_argument("--json", action="store_true", help="print the figures as JSON")
    b.set_defaults(func=cmd_bench_env)
    b = verb("data", "generation episodes/min and loader samples/s")
    task_arg(b, default="transfer_cube")
    b.add_argument(
        "--episodes", type=T.positive_int, default=2, help="episodes timed per configuration"
    )
    b.add_argument("--json", action="store_true", help="print the figures as JSON")
    b.set_defaults(func=cmd_bench_data)
    b = verb("train", "ACT training samples/s and inference latency")
    b.add_argument("--threads", type=T.positive_int, help="torch CPU threads during the run")
    b.add_argument(
        "--configs",
        nargs="+",
        help="lerobot_parity lerobot_parity_bf16 cpu cpu_state cpu_pixels_2cam (default all)",
    )
    b.add_argument(
        "--lerobot-python",
        help="a Python with LeRobot installed: time its ACTPolicy training at cpu_state too",
    )
    b.add_argument("--json", action="store_true", help="print the figures as JSON")
    b.set_defaults(func=cmd_bench_train)
    b = verb("infer", "chunk inference ms per configuration and runtime")
    b.add_argument("--threads", type=T.positive_int, help="torch and ONNX Runtime threads")
    b.add_argument("--n", type=T.positive_int, default=20, help="timed chunks per row")
    b.add_argument("--configs", nargs="+", help="lerobot_parity cpu cpu_state (default all)")
    b.add_argument(
        "--lerobot-python", help="a Python with LeRobot installed: time its ACTPolicy too"
    )
    b.add_argument("--json", action="store_true", help="print the figures as JSON")
    b.set_defaults(func=cmd_bench_infer)
    b = verb("control", "50 Hz loop on the emulated rig, sync vs async")
    b.add_argument("--run", help="a trained pixels policy (default: cpu profile, random init)")
    b.add_argument("--runtime", default="torch", choices=["torch", "onnx"], help="inference")
    b.add_argument("--steps", type=T.positive_int, default=500, help="control ticks per mode")
    b.add_argument("--threads", type=T.positive_int, default=1, help="inference threads")
    b.add_argument("--json", action="store_true", help="print the figures as JSON")
    b.set_defaults(func=cmd_bench_control)
    b = verb("bus", "Feetech sync read + write round trip (emulator or port)")
    b.add_argument("--port", help="serial port of a real arm (default: the servo emulator)")
    b.add_argument("--n", type=T.positive_int, default=200, help="round trips to time")
    b.add_argument(
        "--fault",
        type=_servo_fault,
        action="append",
        metavar="ID:KIND",
        help="emulator only: make servo ID faulty (silent, corrupt or overload); repeatable",
    )
    b.add_argument("--json", action="store_true", help="print the figures as JSON")
    b.set_defaults(func=cmd_bench_bus)

    verb = _verb_adder(sub)
    p = verb("calibrate", "guided calibration of one SO-ARM101 arm")
    p.add_argument(
        "--arm",
        required=True,
        choices=["left_follower", "right_follower", "left_leader", "right_leader"],
        help="which arm is on --port",
    )
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyACM0")
    p.add_argument("--out", help="JSON file to write (default: calibration/<arm>.json)")
    p.set_defaults(func=cmd_calibrate)

    p = verb("teleop", "leader arms drive the follower arms")
    p.add_argument("--backend", default="real", choices=["sim", "real"], help="real only")
    p.add_argument("--robot-config", required=True, help="rig.toml of the real rig")
    p.add_argument("--steps", type=T.positive_int, help="stop after this many 50 Hz steps")
    p.set_defaults(func=cmd_teleop)
    return parser


def _show_warning(command: str) -> Callable[..., None]:
    """Warnings as one line each, printed above any progress bar rather than inside it."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        from tqdm import tqdm

        tqdm.write(f"aloha-bench {command}: warning: {message}", file=sys.stderr)

    return show


def _error_message(err: BaseException) -> tuple[str, int] | None:
    """(one line for the user, exit status) for an error a user can fix; None for a bug."""
    if isinstance(err, OSError) and err.filename is not None:
        # The OS refused a path (unwritable, a file where a folder is needed, ...): name it.
        where = err.filename if err.filename2 is None else f"{err.filename} -> {err.filename2}"
        return (
            f"error: {where}: {err.strerror}; choose a path whose folders exist (or can be "
            "created) and that you may write to",
            2,
        )
    if isinstance(err, ValueError | FileNotFoundError):
        # Bad input (unknown task, malformed config, damaged checkpoint...): the message names it.
        return f"error: {err}", 2
    if isinstance(err, EOFError):
        return "error: input ended (stdin is closed); run this command in a terminal", 2
    if isinstance(err, RuntimeError) and type(err).__module__.startswith("aloha_bench"):
        # Our own runtime faults name what failed and how to fix it. Hardware faults (a servo that
        # does not answer, a camera that stopped) exit 3; torque was switched off before here.
        status = 3 if type(err).__module__.startswith("aloha_bench.robots") else 1
        return f"{type(err).__name__}: {err}", status
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``aloha-bench`` console script."""
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning(args.command)
        try:
            return args.func(args)
        except KeyboardInterrupt:
            print(f"aloha-bench {args.command}: interrupted", file=sys.stderr)
            return 130
        except Exception as err:
            known = _error_message(err)
            if known is None:
                raise
            print(f"aloha-bench {args.command}: {known[0]}", file=sys.stderr)
            return known[1]


if __name__ == "__main__":
    sys.exit(main())

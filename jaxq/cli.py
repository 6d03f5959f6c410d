"""The ``jaxq`` command: sweeps, benchmarks and the reproduction of every study.

    jaxq sweep ENV --learner NAME [--depth 2 8 32] [--gamma 0.9 0.99] [--seeds 1000] [--steps N] [--out DIR]
    jaxq train dqn ENV [--seeds N] [--steps T] [--double] [--lr 1e-4 3e-4 ...] [--out DIR]
    jaxq bench NAME [--quick] [--json FILE]
    jaxq reproduce [--quick] [--out DIR]

On a CPU, jaxq exposes one XLA device per core (unless XLA_FLAGS already sets a device count), so
sweeps are sharded over every core.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

# Nothing here imports JAX at module level: main() sets the CPU device count first.


def _use_all_cpu_cores() -> None:
    """One host device per core, set before JAX creates its CPU client."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def default_log_every(steps: int, points: int = 100, unit: int = 1, within: int | None = None) -> int:
    """The log interval giving closest to ``points`` log points: a multiple of ``unit`` that divides
    ``steps`` (and ``within``, e.g. the evaluation interval, when given)."""
    fits = [d for d in range(unit, steps + 1, unit) if steps % d == 0 and (not within or within % d == 0)]
    if not fits:
        raise ValueError(f"steps={steps} has no log interval that is a multiple of {unit} env steps (one piece "
                         "of the learner's loop)" + (f" and divides eval_every={within}" if within else ""))
    return min(fits, key=lambda d: abs(steps / d - points))


class _Progress:
    """Progress lines on stderr once a run has lasted a couple of seconds (the chunk it is on, when
    the lanes run in several)."""

    def __init__(self, steps_total: float):
        self.steps_total, self.start = steps_total, time.perf_counter()

    def __call__(self, status: Any) -> None:
        elapsed = time.perf_counter() - self.start
        fraction = status.fraction
        if elapsed < 2.0 and fraction < 1.0:
            return
        done_here = fraction - status.start_fraction  # work restored from a checkpoint does not count
        rate = done_here * self.steps_total / max(status.run_s, 1e-9)
        eta = status.run_s * (1 - fraction) / max(done_here, 1e-9)
        chunk = f"  chunk {status.chunk}/{status.chunks}" if status.chunks > 1 else ""
        end = "\n" if fraction >= 1.0 or not sys.stderr.isatty() else ""
        shown = f"{rate / 1e6:8.2f} M" if rate >= 1e6 else f"{rate / 1e3:8.1f} k"
        print(f"\r[jaxq] {fraction:6.1%}{chunk}  {shown} env steps/s  eta {eta:6.1f} s",
              end=end, file=sys.stderr, flush=True)


# -- sweep ---------------------------------------------------------------------------------------
SWEEP_DESCRIPTION = (
    "Run a learner over a grid of hyper-parameters x seeds in one vmapped call. Every sweepable name "
    "takes one or more values and the full Cartesian product runs; `jaxq sweep ENV --learner L --help` "
    "lists the learner's options and every sweepable name for that environment. On finite environments "
    "the error against the exact Q* is logged; on every environment the training and greedy returns.")


def _sweep_parser(prog: str, *, add_help: bool = True, description: str = SWEEP_DESCRIPTION,
                  learner_choice: bool = True) -> argparse.ArgumentParser:
    from jaxq.learners import LEARNERS

    p = argparse.ArgumentParser(prog=prog, add_help=add_help, description=description)
    p.add_argument("env", nargs="?", help="environment: Chain, Branching, GridWorld, LunarLander-v3 or any "
                   "gymnax id (e.g. CartPole-v1)")
    if learner_choice:
        p.add_argument("--learner", help="; ".join(f"{k}: {v.description}" for k, v in LEARNERS.items())
                       + " (default: q on finite environments, mlp elsewhere)")
    p.add_argument("--seeds", type=int, default=100, help="independent seeds per grid point (default: 100)")
    p.add_argument("--seed", type=int, default=0, help="root seed (default: 0)")
    p.add_argument("--steps", type=int, default=10_000, help="environment steps per seed (default: 10000)")
    p.add_argument("--log-every", type=int, help="steps between logged points (default: about 100 points)")
    p.add_argument("--env-option", action="append", default=[], metavar="KEY=VALUE",
                   help="static environment option, e.g. max_depth=64, preset=FrozenLake-4x4, "
                        "depth=4 / branching=3 (complete Branching tree), velocity_iterations=180 (LunarLander)")
    p.add_argument("--out", type=Path, help="output folder (default: runs/sweep-ENV-LEARNER)")
    p.add_argument("--checkpoint-every", type=int, metavar="K",
                   help="save the sweep state every K environment steps, any K >= 1 (saves land on log points: "
                        "every max(1, K // log-every) of them); with --checkpoint-dir alone: at the end of each "
                        "tenth of a chunk, skipping saves that would take more than 5%% of the run's time")
    p.add_argument("--checkpoint-dir", type=Path, metavar="DIR",
                   help="checkpoint folder, e.g. on a mounted drive (default: OUT/checkpoint)")
    p.add_argument("--resume", action="store_true", help="continue from the newest usable checkpoint (on any device "
                   "count, backend or chunk size)")
    p.add_argument("--max-lanes", type=int, help="most lanes per compiled call (default: what fits the memory budget)")
    _add_distributed_flags(p)
    return p


def _add_distributed_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("several processes (JAX's distributed runtime; run the same command in each)")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0's coordinator")
    group.add_argument("--num-processes", type=int, metavar="N", help="number of processes")
    group.add_argument("--process-id", type=int, metavar="I", help="index of this process, 0 .. N-1")
    group.add_argument("--distributed", action="store_true", help="join the cluster JAX detects by itself "
                       "(Cloud TPU pod slice, Slurm, Open MPI)")


def _asks_for_processes(args: argparse.Namespace) -> bool:
    """Whether any of the distributed-runtime flags was given."""
    return args.distributed or any(v is not None for v in (args.coordinator, args.num_processes, args.process_id))


def _join_processes(argv: Sequence[str]) -> None:
    """Start JAX's distributed runtime when the command line asks for it (before JAX does anything)."""
    p = argparse.ArgumentParser(add_help=False)
    _add_distributed_flags(p)
    args, _ = p.parse_known_args(argv)
    if _asks_for_processes(args):
        from jaxq.distributed import initialize

        initialize(args.coordinator, args.num_processes, args.process_id)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_learner_options(parser: argparse.ArgumentParser, name: str) -> None:
    """One command-line option per static option of learner ``name`` (default: the learner's own)."""
    from jaxq.learners import LEARNERS

    group = parser.add_argument_group(f"options of learner {name!r}")
    for option, spec in LEARNERS[name].options.items():
        if not spec.cli:
            continue
        shown = f" (default: {spec.default})" if spec.default is not None else ""
        if spec.kind is bool:
            group.add_argument(_flag(option), dest=f"opt_{option}", action=argparse.BooleanOptionalAction,
                               default=None, help=spec.help + shown)
        else:
            group.add_argument(_flag(option), dest=f"opt_{option}", type=_argument_type(spec.kind), choices=spec.choices,
                               default=None, metavar=None if spec.choices else "V", help=spec.help + shown)


def _argument_type(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """``kind`` for argparse: a parser's own ValueError message is what the user sees."""
    if isinstance(kind, type):
        return kind

    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return parse


def _add_sweepables(parser: argparse.ArgumentParser, learner: Any) -> None:
    from jaxq.validation import command_line_value

    group = parser.add_argument_group("sweepable hyper-parameters (one or more values each)")
    for name, default in learner.defaults().items():
        spec = learner.hyperparameters.get(name)
        doc = getattr(spec, "doc", "environment parameter")
        flag = getattr(spec, "flag", None)
        group.add_argument(_flag(name), dest=f"axis_{name}", nargs="+" if flag is None else "*",
                           type=command_line_value, metavar="V", help=f"{doc} (default: {default}"
                           + (f"; the bare flag means {flag:g})" if flag is not None else ")"))


def _unknown_arguments(extra: Sequence[str], learner_name: str, env: Any, params: Any) -> ValueError:
    """A clear error for command-line words no option took: a static env parameter, or an option of
    other learners (naming them)."""
    from jaxq.envs.core import static_fields
    from jaxq.learners import LEARNERS

    flags = [word for word in extra if word.startswith("--")]
    if not flags:
        return ValueError(f"unexpected argument(s) {' '.join(extra)}")
    word = flags[0].split("=", 1)[0]
    static = {_flag(f): f for f in static_fields(params)}
    if word in static:
        return ValueError(f"{word} sets a static parameter of {env.name} ({static[word]}: a shape or a loop "
                          f"length) and cannot be swept; set it with --env-option {static[word]}=N")
    owners = [n for n, spec in LEARNERS.items() if word in map(_flag, spec.options)]
    where = (f"; it is an option of learner(s) {', '.join(owners)}" if owners else "")
    return ValueError(f"{word} is not an option of learner {learner_name!r} or a sweepable name here{where}. "
                      f"`jaxq sweep ENV --learner {learner_name} --help` lists them")


def _make_env(args: argparse.Namespace, axis_values: dict[str, list]) -> tuple[Any, Any]:
    """The environment with its ``--env-option`` settings; a Chain swept over depth is made deep enough
    for the largest depth (``max_depth``)."""
    import jaxq
    from jaxq.validation import check_range, key_values

    options = key_values(args.env_option, "--env-option")
    if args.env.lower() == "chain" and "depth" in axis_values:
        check_range("depth", axis_values["depth"], 1, None, integer=True)
        options.setdefault("max_depth", max(axis_values["depth"]))
        options.setdefault("depth", max(axis_values["depth"]))
    return jaxq.make(args.env, **options)


def _learner_name(args: argparse.Namespace, env: Any) -> str:
    from jaxq.envs import FiniteEnv

    return getattr(args, "learner", None) or ("q" if isinstance(env, FiniteEnv) else "mlp")


def _make_learner(args: argparse.Namespace, env: Any, params: Any, name: str,
                  preset: dict[str, Any] | None = None) -> Any:
    """The learner of the command line: its options from a preset (if any), overridden by those
    given; the log interval by default about 100 points, in whole pieces of the learner's loop."""
    from jaxq.learners import LEARNERS, learner_options, make_learner
    from jaxq.validation import check_count

    given = {option: getattr(args, f"opt_{option}") for option in LEARNERS[name].options
             if getattr(args, f"opt_{option}", None) is not None}
    options = {**(preset or {}), **given}
    steps = check_count(args.steps, "steps")
    merged = learner_options(name, **options)
    log_every = args.log_every or default_log_every(steps, unit=LEARNERS[name].step_unit(merged),
                                                    within=merged.get("eval_every"))
    return make_learner(name, env, params, steps=steps, log_every=log_every, **options)


def parse_run(prog: str, argv: Sequence[str], learner: str | None = None,
              presets: dict[str, dict[str, Any]] | None = None,
              more: Callable[[argparse.ArgumentParser], None] | None = None,
              description: str = SWEEP_DESCRIPTION) -> tuple[argparse.Namespace, dict, Any, Any]:
    """Parse a sweep-like command line in three passes (environment and learner, then the learner's
    options, then the sweepable names they imply): ``(args, axes, env, learner)``. ``presets``: per
    environment name, defaults for the options (``"options"``) and the run length (``"steps"``);
    ``more`` adds a command's own arguments.

    Raises:
        ValueError: for a bad value or an argument that no option takes (naming it).
    """
    from jaxq.learners import LEARNERS
    from jaxq.validation import check_choice

    first, _ = _sweep_parser(prog, add_help=False).parse_known_args(argv)
    parser = _sweep_parser(prog, description=description, learner_choice=learner is None)
    if more is not None:
        more(parser)
    if first.env is None:
        parser.parse_args(argv)  # prints the help, or says that ENV is missing
        parser.error("the following arguments are required: env")
    env, params = _make_env(first, {})
    name = learner or _learner_name(first, env)
    check_choice("learner", name, LEARNERS)
    preset = (presets or {}).get(env.name, {})
    if "steps" in preset:
        parser.set_defaults(steps=preset["steps"])
    _add_learner_options(parser, name)
    known, _ = parser.parse_known_args([a for a in argv if a not in ("-h", "--help")])
    probe = _make_learner(known, env, params, name, preset.get("options"))
    _add_sweepables(parser, probe)
    args, extra = parser.parse_known_args(argv)
    if extra:
        raise _unknown_arguments(extra, name, env, params)
    given = {k[len("axis_"):]: v for k, v in vars(args).items() if k.startswith("axis_") and v is not None}
    given = {k: v if v else [probe.hyperparameters[k].flag] for k, v in given.items()}  # a bare switch flag
    position = {n: min((i for i, a in enumerate(argv) if a == _flag(n)), default=0) for n in given}
    axes = {n: given[n] for n in sorted(given, key=position.get)}  # command-line order
    env, params = _make_env(args, axes)
    return args, axes, env, _make_learner(args, env, params, name, preset.get("options"))


def _print_rows(summary: dict[str, Any], result: Any) -> None:
    """One line per grid point: the final error (exact metrics) or the final returns."""
    from jaxq import outputs

    for row in summary["grid"]:
        label = outputs.grid_label({k: row[k] for k in result.grid_axes if len(result.coords[k]) > 1})
        parts = []
        for key, title in (("final_error", "final error"), ("final_eval_return", "greedy return"),
                           ("final_train_return", "training return")):
            if key in row:
                m = row[key]
                parts.append(f"{title} {m['mean']:.4g} [{m['ci95_low']:.4g}, {m['ci95_high']:.4g}]")
        if "reached_terminal_fraction" in row and "final_error" in row:
            parts.append(f"reached terminal: {row['reached_terminal_fraction']:.0%}")
        print(f"{label:40s} " + "  ".join(parts))


def _checkpoint_dir(args: argparse.Namespace, out: Path) -> str | None:
    """``--checkpoint-dir``, else ``OUT/checkpoint`` when checkpoints are asked for; ``--resume`` needs the
    folder to exist."""
    if args.checkpoint_dir is None and args.checkpoint_every is None and not args.resume:
        return None
    folder = args.checkpoint_dir or out / "checkpoint"
    if args.resume and not folder.is_dir():
        raise ValueError(f"--resume: there is no checkpoint folder {folder}; run without --resume first, or give "
                         "--checkpoint-dir / --out of the run to continue")
    return str(folder)


def cmd_sweep(argv: Sequence[str]) -> int:
    _join_processes(argv)
    import jax

    from jaxq import outputs
    from jaxq.sweep import sweep
    from jaxq.validation import check_count

    args, axes, env, learner = parse_run("jaxq sweep", argv)
    name = _learner_name(args, env)
    seeds = check_count(args.seeds, "seeds")
    out = args.out or Path("runs") / f"sweep-{env.name}-{name}"
    n_points = math.prod(len(v) for v in axes.values())
    primary = jax.process_index() == 0
    result = sweep(
        learner, axes, seeds, seed=args.seed, max_lanes=args.max_lanes,
        progress=_Progress(n_points * seeds * learner.steps) if primary else None,
        checkpoint_dir=_checkpoint_dir(args, out), checkpoint_every=args.checkpoint_every, resume=args.resume,
    )
    if not primary:  # every process holds the whole result; process 0 writes it
        return 0
    title = f"{env.name}, {name}, {args.steps} steps, {seeds} seeds per point"
    summary = outputs.write_sweep(result, out, title=title, extra={
        "command": "jaxq sweep " + " ".join(argv), "env": env.name, "learner": name})
    _print_rows(summary, result)
    t = result.timing
    rate = f"{t['env_steps_per_s'] / 1e6:.2f} M/s"
    print(f"{_ran(t, rate)}, compile {t['compile_s']:.1f} s, "
          f"{t['devices']} device(s) -> {out}")
    return 0


# -- train ---------------------------------------------------------------------------------------
TRAIN_DESCRIPTION = (
    "Train many independent deep-RL agents and hyper-parameter settings in one jitted call: every "
    "sweepable name takes one or more values (e.g. --lr 1e-4 3e-4 --double 0 1). CartPole-v1 and "
    "LunarLander-v3 have tuned presets, so `jaxq train dqn LunarLander-v3 --seeds 8 --out runs/ll` needs no "
    "other flag. Writes summary.json (per grid point: final greedy return over seeds, fraction solved, "
    "steps to threshold), curves.npz, sweep.png and every agent's network (jaxq.load_policy(OUT, lane=i)).")


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--final-episodes", type=int, default=100,
                        help="greedy episodes per agent flown with its final network (default: 100)")
    parser.add_argument("--threshold", type=float,
                        help="return at which the task counts as solved (default: the preset's, e.g. "
                             "475 for CartPole-v1, 200 for LunarLander-v3)")


def cmd_train(argv: Sequence[str]) -> int:
    from jaxq import outputs, training
    from jaxq.learners.dqn import PRESETS
    from jaxq.validation import check_choice, check_count

    algorithms = {"dqn": PRESETS}
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: jaxq train ALGORITHM ENV [options]\n\n" + TRAIN_DESCRIPTION
              + f"\n\nalgorithms: {', '.join(algorithms)}; `jaxq train dqn ENV --help` lists every option.")
        return 0 if argv else 2
    algorithm = check_choice("algorithm", argv[0], algorithms)
    args, axes, env, learner = parse_run(f"jaxq train {algorithm}", argv[1:], learner=algorithm,
                                         presets=algorithms[algorithm], more=_train_arguments,
                                         description=TRAIN_DESCRIPTION)
    if _asks_for_processes(args):
        raise ValueError("jaxq train runs in one process; --coordinator, --num-processes, --process-id and "
                         "--distributed are for jaxq sweep")
    seeds = check_count(args.seeds, "seeds")
    episodes = check_count(args.final_episodes, "final_episodes")
    threshold = args.threshold if args.threshold is not None else algorithms[algorithm].get(env.name, {}).get("solved")
    out = args.out or Path("runs") / f"train-{algorithm}-{env.name}"
    n_points = math.prod(len(v) for v in axes.values())
    run = training.train(
        learner, axes, seeds, final_episodes=episodes, threshold=threshold, seed=args.seed, max_lanes=args.max_lanes,
        progress=_Progress(n_points * seeds * learner.steps),
        checkpoint_dir=_checkpoint_dir(args, out), checkpoint_every=args.checkpoint_every, resume=args.resume,
    )
    title = f"{env.name}, {algorithm}, {learner.steps} env steps per agent, {seeds} seeds per point"
    summary = training.write_training(run, out, learner, title=title, extra={
        "command": f"jaxq train {' '.join(argv)}", "env": env.name, "learner": algorithm})
    for row in summary["grid"]:
        label = outputs.grid_label({k: row[k] for k in run.sweep.grid_axes if len(run.sweep.coords[k]) > 1})
        final = row["final_greedy_return"]
        line = (f"{label:40s} final greedy return {final['mean']:.1f} [{final['ci95_low']:.1f}, "
                f"{final['ci95_high']:.1f}] (IQM {final['iqm']:.1f}, {episodes} episodes per seed)")
        if threshold is not None:
            line += f"  solved (>= {threshold:g}): {row['solved_fraction']:.0%}"
            if "steps_to_threshold" in row:
                s = row["steps_to_threshold"]
                median = f"{s['median']:.0f}" if math.isfinite(s['median']) else "--"
                line += f"  reached {s['reached_fraction']:.0%}, median step {median}"
        print(line)
    t = run.sweep.timing
    rate = f"{t['env_steps_per_s']:,.0f}/s"
    print(f"{_ran(t, rate)}, compile {t['compile_s']:.1f} s -> {out} "
          f"(policies: jaxq.load_policy({str(out)!r}, lane=i))")
    return 0


def _ran(timing: dict[str, Any], rate: str) -> str:
    """What the run did: its env steps, seconds and ``rate``, or that a resumed run had none left."""
    if not timing["run_s"] > 0:
        return f"{timing['env_steps']:,} env steps, all done before this resume (nothing left to run)"
    return f"{timing['env_steps']:,} env steps in {timing['run_s']:.2f} s ({rate})"


# -- bench ---------------------------------------------------------------------------------------
def cmd_bench(argv: Sequence[str]) -> int:
    from jaxq import bench
    from jaxq.bench.timing import format_table
    from jaxq.outputs import write_json

    p = argparse.ArgumentParser(prog="jaxq bench", description="Throughput studies against peers, measured "
                                "side by side in one run (see BENCHMARKS in the README).")
    p.add_argument("name", help=f"one of: {', '.join(bench.BENCHMARKS)}")
    p.add_argument("--quick", action="store_true", help="tiny sizes: proves it runs, numbers mean nothing")
    p.add_argument("--json", type=Path, help="write the raw numbers to this file")
    args = p.parse_args(argv)
    report = bench.run(args.name, quick=args.quick)
    print(format_table(report["rows"]))
    if report.get("notes"):
        print(report["notes"])
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


# -- reproduce -----------------------------------------------------------------------------------
def cmd_reproduce(argv: Sequence[str]) -> int:
    from jaxq.studies import SIZES, STUDIES
    from jaxq.studies.reproduce import run_all

    p = argparse.ArgumentParser(
        prog="jaxq reproduce",
        description="Run every seed-document study with many seeds and write one report page "
                    "(OUT/report.md) with the figures and the verdict on each claim. Studies: "
                    + "; ".join(STUDIES.values()),
    )
    p.add_argument("--quick", action="store_true", help="each study at its quick size (minutes on a laptop CPU)")
    p.add_argument("--size", choices=SIZES, help="tiny (seconds, for tests), quick, or full (>= 1000 seeds for the "
                   "tabular studies, 16-32 agents per method for the DQN ones: hours on a CPU)")
    p.add_argument("--out", type=Path, default=Path("runs") / "reproduce", help="output folder (default: %(default)s)")
    p.add_argument("--only", nargs="+", metavar="STUDY", help=f"run only these: {', '.join(STUDIES)}")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    run_all(args.out, size=args.size or ("quick" if args.quick else "full"), only=args.only)
    print(f"report: {args.out / 'report.md'} ({time.perf_counter() - t0:.0f} s)")
    return 0


COMMANDS = {"sweep": cmd_sweep, "train": cmd_train, "bench": cmd_bench, "reproduce": cmd_reproduce}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _use_all_cpu_cores()
    top = argparse.ArgumentParser(
        prog="jaxq",
        description="Q-learning at scale in JAX: thousands of seeds x hyper-parameters in one call, "
                    "checked against exact solutions.",
        epilog="Run `jaxq COMMAND --help` for a command's options.",
    )
    top.add_argument("command", choices=sorted(COMMANDS), help="reproduce: every seed-document study and a "
                     "report (the main job); sweep: a grid x seeds run; train: deep-RL agents (dqn) with saved "
                     "policies; bench: throughput against peers")
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        top.parse_args(argv[:1] or ["--help"])
        return 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except (ValueError, ModuleNotFoundError) as error:  # bad input, or a benchmark's peer not installed
        print(f"jaxq {argv[0]}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

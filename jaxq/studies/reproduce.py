"""``jaxq reproduce``: run every study and gather the figures and verdicts on one report page."""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import jax

from jaxq.outputs import write_json
from jaxq.studies import STUDIES, load, reproduce_size


def run_all(out: Path, size: str = "full", only: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the studies (all, or ``only`` those) into ``out/<name>/`` and write ``out/report.md``."""
    names = list(only) if only else list(STUDIES)
    for name in names:
        load(name)  # unknown names fail before anything runs
    summaries = []
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {STUDIES[name]} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        study_size = reproduce_size(name, size)
        summary = load(name).run(out / name, size=study_size)
        summary = {**summary, "study": name, "wall_s": time.perf_counter() - t0, "size": study_size}
        print(f"    {summary.get('verdict', '')}  ({summary['wall_s']:.1f} s)", file=sys.stderr, flush=True)
        summaries.append(summary)
    write_report(out, summaries, size)
    return summaries


def write_report(out: Path, summaries: list[dict[str, Any]], size: str) -> Path:
    """``report.md`` (figures and verdicts) and ``report.json`` (every summary) in ``out``."""
    devices = jax.devices()
    lines = [
        "# jaxq reproduction report",
        "",
        f"Size: **{size}**. JAX {jax.__version__} on {len(devices)} x {devices[0].device_kind} "
        f"({jax.default_backend()}), Python {platform.python_version()}. "
        f"Total {sum(s['wall_s'] for s in summaries):.0f} s.",
        "",
        "| study | verdict | seconds |",
        "|---|---|---|",
    ]
    lines += [f"| [{STUDIES[s['study']]}](#{s['study']}) | {s.get('verdict', '')} | {s['wall_s']:.0f} |"
              for s in summaries]
    for s in summaries:
        lines += ["", f'<a id="{s["study"]}"></a>', f"## {STUDIES[s['study']]}", ""]
        if s.get("claim"):
            lines += [f"**Claim tested.** {s['claim']}", ""]
        lines += [f"**Verdict.** {s.get('verdict', '(none)')}", ""]
        if s.get("setup"):
            setup = ", ".join(f"{k}: {v}" for k, v in s["setup"].items())
            lines += [f"**Setup.** {setup}", ""]
        if s.get("figure"):
            lines += [f"![{s['study']}]({s['study']}/{s['figure']})", ""]
        lines += [f"Numbers: [`{s['study']}/summary.json`]({s['study']}/summary.json); raw curves: "
                  f"[`{s['study']}/curves.npz`]({s['study']}/curves.npz).", ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("\n".join(lines))
    write_json(out / "report.json", {"size": size, "studies": summaries})
    return out / "report.md"

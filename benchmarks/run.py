"""Run the nnlab benchmarks side by side with the peers; print a table, write JSON.

    python -m benchmarks.run                      # everything (~10 min on 2 cores)
    python -m benchmarks.run --quick              # fewer repeats / trials (~4 min)
    python -m benchmarks.run --only W1,W2,matmul  # some sections; others keep their last result

Sections: W1 W2 W3 (trainer workloads, every system), matmul (W2's GEMM bound), tracking,
scaling, analysis, stacking (many small models at once: one at a time, stacked, JAX). Results merge into benchmarks/results/latest.json (per-section timestamps).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import RESULTS, Skipped, WorkerError, git_commit, machine_info, run_worker

SYSTEMS = ("nnlab", "keras_jax", "torch", "sklearn")
TRAINER_SECTIONS = ("W1", "W2", "W3")
OTHER_SECTIONS = ("matmul", "tracking", "scaling", "analysis", "stacking")
ALL_SECTIONS = TRAINER_SECTIONS + OTHER_SECTIONS


def nnlab_nn_ready() -> str | None:
    """None when ``nnlab.nn`` has the public API, else the reason to skip."""
    try:
        from nnlab import nn

        for name in ("Sequential", "Dense", "Adam"):
            getattr(nn, name)
    except (ImportError, AttributeError) as exc:
        return f"nnlab.nn not available yet ({exc})"
    return None


def stamp() -> dict:
    """When, at which commit, and how busy the machine was (other processes skew timings)."""
    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": git_commit(),
        "loadavg_1min": os.getloadavg()[0],
    }


def run_trainer_section(name: str, args: argparse.Namespace) -> dict:
    """Every system on one workload, each in its own process pinned to the same core, built and
    warmed up once; then the systems take turns, one timed repeat each per round (the order
    rotates every round), so bursts of load from other processes hit all of them alike. A
    system's rate is the median of its repeats; ``paired_ratio`` is the median over rounds of
    nnlab's rate / the peer's rate in the same round."""
    import statistics

    from benchmarks.common import WorkerServer, summarize
    from benchmarks.workloads import trainer_workloads

    w = trainer_workloads()[name]
    k = w.epochs_per_repeat or args.epochs
    out: dict = {"workload": w.to_dict(), "systems": {}, **stamp()}
    skip_nnlab = nnlab_nn_ready()
    servers: dict[str, WorkerServer] = {}
    infos: dict[str, dict] = {}
    spec = {"workload": w.to_dict(), "gemm_share": name == "W2"}
    try:
        for system in args.systems:
            if system == "nnlab" and skip_nnlab:
                out["systems"][system] = {"skipped": skip_nnlab}
                print(f"  {name} {system:<10} skipped: {skip_nnlab}", flush=True)
                continue
            servers[system] = WorkerServer({**spec, "system": system}, core=args.core)
        for system in list(servers):
            try:
                infos[system] = servers[system].ready()
            except WorkerError as exc:
                out["systems"][system] = {"error": str(exc)}
                print(f"  {name} {system:<10} ERROR: {exc}", flush=True)
                servers.pop(system).close()
        reps: dict[str, list[dict]] = {s: [] for s in servers}
        for r in range(args.repeats):
            order = list(servers)
            order = order[r % len(order) :] + order[: r % len(order)] if order else order
            for system in order:
                if system not in servers:
                    continue
                try:
                    reps[system].append(servers[system].request({"epochs": k}))
                except WorkerError as exc:
                    out["systems"][system] = {"error": str(exc)}
                    print(f"  {name} {system:<10} ERROR: {exc}", flush=True)
                    servers.pop(system).close()
    finally:
        for srv in servers.values():
            srv.close()
    for system, rs in reps.items():
        if system in out["systems"] or not rs:
            continue
        info = infos[system]
        rate = summarize([x["rate"] for x in rs])
        r = {
            "samples_per_s": rate,
            "epoch_s": info["n_samples"] / rate["median"],
            **info,
            "last_epoch_loss": rs[-1]["loss"],
            "epochs_per_repeat": k,
            **stamp(),
        }
        if "outside_gemm_share" in rs[0]:
            r["outside_gemm_share"] = summarize([x["outside_gemm_share"] for x in rs])
        out["systems"][system] = r
        print(
            f"  {name} {system:<10} {rate['median']:>10,.0f} samples/s  "
            f"(first-epoch loss {info['first_epoch_loss']:.4f})",
            flush=True,
        )
    ours = out["systems"].get("nnlab", {}).get("samples_per_s", {}).get("values")
    if ours:
        out["paired_ratio"] = {
            peer: statistics.median(
                a / b for a, b in zip(ours, v["samples_per_s"]["values"], strict=False)
            )
            for peer, v in out["systems"].items()
            if peer != "nnlab" and "samples_per_s" in v
        }
    return out


def run_matmul_section(args: argparse.Namespace) -> dict:
    from benchmarks.workloads import W2

    r = run_worker(
        {"kind": "matmul", "workload": W2.to_dict(), "repeats": max(5, args.repeats)},
        core=args.core,
    )
    print(
        f"  matmul W2 GEMMs alone {r['samples_per_s']['median']:>10,.0f} samples/s "
        f"({r['gflops']:.0f} GFLOP/s)",
        flush=True,
    )
    return {"workload": "W2", **r, **stamp()}


def _optional(module: str) -> Callable[[argparse.Namespace], dict]:
    """Sections that need nnlab's run/tracking/analysis parts live in their own modules."""

    def run(args: argparse.Namespace) -> dict:
        import importlib

        mod = importlib.import_module(f"benchmarks.{module}")
        return {**mod.run(quick=args.quick, core=args.core), **stamp()}

    return run


SECTION_RUNNERS: dict[str, Callable[[argparse.Namespace], dict]] = {
    "matmul": run_matmul_section,
    "tracking": _optional("tracking_cost"),
    "scaling": _optional("sweep_scaling"),
    "analysis": _optional("analysis_speed"),
    "stacking": _optional("stacking"),
}


# ---------------------------------------------------------------------------- summary and goals


def rate(results: dict, wl: str, system: str) -> float | None:
    r = results.get("workloads", {}).get(wl, {}).get("systems", {}).get(system, {})
    return r.get("samples_per_s", {}).get("median")


def ratios(results: dict, wl: str) -> dict[str, float]:
    ours = rate(results, wl, "nnlab")
    out = {}
    for peer in SYSTEMS[1:]:
        theirs = rate(results, wl, peer)
        if ours and theirs:
            out[peer] = ours / theirs
    return out


def matmul_share(results: dict) -> dict | None:
    """Share of each system's W2 epoch spent outside the GEMMs: each timed repeat is followed
    by the same GEMMs alone in NumPy in the same process (paired, so machine load hits both)."""
    out = {}
    for system in SYSTEMS:
        r = results.get("workloads", {}).get("W2", {}).get("systems", {}).get(system, {})
        if "outside_gemm_share" in r:
            out[system] = r["outside_gemm_share"]["median"]
    return out or None


def _fixed_added(fixed: dict) -> float | None:
    if fixed.get("sqlite") is None or fixed.get("none") is None:
        return None
    return fixed["sqlite"] - fixed["none"]


GOALS = [  # (label, how to read the measure, minimum or maximum)
    ("W1 nnlab / keras_jax", lambda r: ratios(r, "W1").get("keras_jax"), ">=", 2.0),
    ("W1 nnlab / torch", lambda r: ratios(r, "W1").get("torch"), ">=", 5.0),
    ("W1 nnlab / sklearn", lambda r: ratios(r, "W1").get("sklearn"), ">=", 3.0),
    ("W2 nnlab / keras_jax", lambda r: ratios(r, "W2").get("keras_jax"), ">=", 1.0),
    ("W2 nnlab / torch", lambda r: ratios(r, "W2").get("torch"), ">=", 1.3),
    ("W2 nnlab / sklearn", lambda r: ratios(r, "W2").get("sklearn"), ">=", 2.0),
    ("W2 nnlab time outside GEMMs", lambda r: (matmul_share(r) or {}).get("nnlab"), "<=", 0.15),
    (
        "tracked / untracked sweep wall, median of pairs",
        lambda r: r.get("tracking", {}).get("median_ratio"),
        "<=",
        1.25,
    ),
    (  # the sweep writer alone on an idle machine, as the per-run cost was measured before it
        "tracking per trial, sqlite, writer alone (s)",
        lambda r: ((r.get("tracking", {}).get("replay") or {}).get("sqlite") or {}).get("median_s"),
        "<=",
        0.015,
    ),
    (
        "tracking per trial, server, writer alone (s)",
        lambda r: ((r.get("tracking", {}).get("replay") or {}).get("server") or {}).get("median_s"),
        "<=",
        0.060,
    ),
    (
        "sweep fixed cost, sqlite (s)",
        lambda r: r.get("tracking", {}).get("fixed_cost_s", {}).get("sqlite"),
        "<=",
        2.0,
    ),
    (
        "sweep fixed cost tracking adds, sqlite - none (s)",
        lambda r: _fixed_added(r.get("tracking", {}).get("fixed_cost_s", {})),
        "<=",
        2.0,
    ),
    (
        "sweep n_jobs=2 / n_jobs=1 throughput",
        lambda r: r.get("scaling", {}).get("speedup"),
        ">=",
        1.7,
    ),
    (
        "load_histories 500x100 (s)",
        lambda r: r.get("analysis", {}).get("load_histories_s"),
        "<=",
        10.0,
    ),
    ("report 500x100 (s)", lambda r: r.get("analysis", {}).get("report_s"), "<=", 30.0),
    (
        "64 flagship models: one at a time / stacked, time per model-step",
        lambda r: r.get("stacking", {}).get("ratio_alone"),
        ">=",
        6.0,
    ),
    (
        "64 flagship models: JAX jit(vmap(step)) / stacked, time per model-step",
        lambda r: r.get("stacking", {}).get("ratio_jax"),
        ">=",
        1.0,
    ),
    (  # trainer.stack=auto never makes a sweep slower than off
        "stacking_pays cells: smallest alone / stacked ratio",
        lambda r: r.get("stacking", {}).get("auto_min_ratio"),
        ">=",
        1.0,
    ),
]


def goals(results: dict) -> list[dict]:
    out = []
    for label, measure, op, target in GOALS:
        m = measure(results)
        met = None if m is None else (m >= target if op == ">=" else m <= target)
        g = {"goal": label, "target": f"{op} {target:g}", "measured": m, "met": met}
        free = min(results.get("scaling", {}).get("capacity") or [2.0])
        if label.startswith("sweep n_jobs") and m is not None and free < 1.8:
            # two parallel trials cannot run at full speed when the cores are not free
            g.update(met=None, note=f"inconclusive: only {free:.2f} cores were free")
        out.append(g)
    return out


def machine_line(m: dict) -> str:
    v = m.get("versions", {})
    blas = next((b for b in m.get("blas_in_worker") or [] if b.get("internal_api")), {})
    return (
        f"{m.get('cpu_model')}, {m.get('logical_cores')} cores, one core per system; "
        f"numpy {v.get('numpy')} + {blas.get('internal_api')} {blas.get('version')} "
        f"({blas.get('architecture')} kernel, {blas.get('num_threads')} thread); "
        f"keras {v.get('keras')} on jax {v.get('jax')}, torch {v.get('torch')}, "
        f"scikit-learn {v.get('scikit-learn')}"
    )


def format_table(results: dict) -> str:
    lines = [machine_line(results.get("machine", {}))]
    for wl in TRAINER_SECTIONS:
        sec = results.get("workloads", {}).get(wl)
        if not sec:
            continue
        w = sec["workload"]
        lines.append(
            f"\n{wl}: {'-'.join(map(str, w['layers']))} {w['hidden_activation']}/"
            f"{w['output_activation']} {w['loss']} Adam, batch {w['batch_size']}, "
            f"{w['n_samples']:,} samples [{w['source']}]"
        )
        lines.append(
            f"  {'system':<10} {'samples/s':>11} {'min..max':>19} {'nnlab x':>8} {'loss ep1':>9}"
        )
        rts = ratios(results, wl)
        for system, r in sec["systems"].items():
            if "samples_per_s" not in r:
                lines.append(f"  {system:<10} {r.get('skipped') or r.get('error', '')[:60]}")
                continue
            s = r["samples_per_s"]
            ratio = f"{rts[system]:.2f}" if system in rts else "-"
            lines.append(
                f"  {system:<10} {s['median']:>11,.0f} "
                f"{s['min']:>9,.0f}..{s['max']:<9,.0f} {ratio:>8} "
                f"{r['first_epoch_loss']:>9.4f}"
            )
    mm = results.get("matmul")
    if mm:
        lines.append(
            f"\nW2 GEMMs alone (NumPy, {mm['gemms_per_step']} per step): "
            f"{mm['samples_per_s']['median']:,.0f} samples/s, {mm['gflops']:.0f} GFLOP/s"
        )
    shares = matmul_share(results) or {}
    if shares:
        lines.append("W2 share of the epoch outside those GEMMs (each repeat paired with them):")
        for system, share in shares.items():
            lines.append(f"  {system:<10} {100 * share:5.1f}%")
    for key in OTHER_SECTIONS[1:]:
        sec = results.get(key)
        if sec and "summary" in sec:
            lines.append(f"\n{key}:")
            lines.extend(f"  {line}" for line in sec["summary"])
        elif sec and "skipped" in sec:
            lines.append(f"\n{key}: skipped: {sec['skipped']}")
    lines.append("\nGoals:")
    gs = goals(results)
    width = max(len(g["goal"]) for g in gs)
    for g in gs:
        m = g["measured"]
        mark = g.get("note") or {True: "met", False: "MISSED", None: "not measured"}[g["met"]]
        ms = "-" if m is None else f"{m:.3g}"
        lines.append(f"  {g['goal']:<{width}} {g['target']:>8}  measured {ms:>8}  {mark}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats and trials")
    ap.add_argument(
        "--only",
        default=",".join(ALL_SECTIONS),
        help=f"comma list of sections: {','.join(ALL_SECTIONS)}",
    )
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma list of trainer systems")
    ap.add_argument(
        "--core", type=int, default=0, help="the CPU core single-core runs are pinned to"
    )
    ap.add_argument("--out", default=str(RESULTS / "latest.json"), help="JSON results file")
    ap.add_argument("--fresh", action="store_true", help="do not merge into the existing JSON")
    ap.add_argument("--show", action="store_true", help="print the table of --out; run nothing")
    args = ap.parse_args(argv)
    if args.show:
        print(format_table(json.loads(Path(args.out).read_text())))
        return 0
    args.epochs, args.repeats = (1, 5) if args.quick else (2, 10)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    bad = [s for s in only if s not in ALL_SECTIONS] + [s for s in args.systems if s not in SYSTEMS]
    if bad:
        ap.error(f"unknown section/system {bad}; sections: {ALL_SECTIONS}, systems: {SYSTEMS}")

    out_path = Path(args.out)
    results: dict = {}
    if out_path.exists() and not args.fresh:
        results = json.loads(out_path.read_text())
    blas = run_worker({"kind": "blas"}, core=args.core)["blas"]
    results["machine"] = machine_info(blas)
    results["settings"] = {
        "quick": args.quick,
        "epochs_per_repeat": args.epochs,
        "repeats": args.repeats,
        "core": args.core,
    }
    t_all = time.perf_counter()
    for section in only:
        print(f"[{section}]", flush=True)
        t0 = time.perf_counter()
        try:
            if section in TRAINER_SECTIONS:
                sec = run_trainer_section(section, args)
                prev = results.setdefault("workloads", {}).get(section, {})
                if prev.get("workload") == sec["workload"]:  # keep systems not re-run this time
                    sec["systems"] = {**prev.get("systems", {}), **sec["systems"]}
                results["workloads"][section] = sec
                sec["ratios"] = ratios(results, section)  # nnlab / peer, ratio of medians
            else:
                sec = SECTION_RUNNERS[section](args)
                results[{"matmul": "matmul"}.get(section, section)] = sec
        except Skipped as exc:
            results[section] = {"skipped": str(exc), **stamp()}
            print(f"  skipped: {exc}", flush=True)
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
        results["goals"] = goals(results)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=1) + "\n")
    results["total_s"] = time.perf_counter() - t_all
    out_path.write_text(json.dumps(results, indent=1) + "\n")
    print(format_table(results))
    print(f"\nwrote {out_path} ({results['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

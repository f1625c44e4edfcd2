"""`pd-scaler simulate frontier`: Pareto fronts, dominance with intervals, the policy registry, the command."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from scaler.cli import main
from scaler.simulate import frontier
from scaler.simulate.policies import REGISTRY, PolicyKind, StaticController, parse_policy, register
from scaler.simulate.report import Aggregate, Summary


def point(policy: str, slo: list[float], gpu: list[float]) -> Aggregate:
    blank = dict.fromkeys((f.name for f in dataclasses.fields(Summary)), 0.0)
    runs = [
        Summary(**(blank | {"policy": policy, "seed": i, "slo_attainment": s, "gpu_hours": g}))  # type: ignore[arg-type]
        for i, (s, g) in enumerate(zip(slo, gpu, strict=True))
    ]
    return Aggregate(policy, tuple(runs))


def test_a_point_dominates_only_when_its_means_are_no_worse_and_one_difference_is_sure() -> None:
    a = point("a", [0.95, 0.96, 0.97], [10.0, 10.2, 10.1])
    cheaper = point("b", [0.95, 0.96, 0.97], [9.0, 9.1, 9.2])  # same SLO, surely fewer GPU-hours
    noisy = point("c", [0.99, 0.90, 0.99], [10.0, 10.2, 10.1])  # higher mean SLO, but within the noise
    assert frontier.dominates(cheaper, a)
    assert not frontier.dominates(a, cheaper)
    assert not frontier.dominates(noisy, a)
    assert not frontier.dominates(a, noisy)
    worse_slo = point("d", [0.5, 0.6, 0.55], [5.0, 5.1, 5.0])  # far cheaper but far worse: no dominance
    assert not frontier.dominates(worse_slo, a)


def test_pareto_front_keeps_the_points_nothing_beats_on_both() -> None:
    pts = [point("x", [0.9], [5.0]), point("y", [0.95], [6.0]), point("z", [0.9], [7.0]), point("w", [0.99], [9.0])]
    assert [p.policy for p in frontier.pareto(pts)] == ["x", "y", "w"]
    a = [point("a1", [0.9, 0.91], [5.0, 5.1]), point("a2", [0.99, 0.99], [8.0, 8.1])]
    b = [point("b1", [0.8, 0.81], [6.0, 6.1])]
    assert frontier.front_verdict("A", a, "B", b) == "A dominates B"
    assert "neither front dominates" in frontier.front_verdict("A", a[1:], "B", b)


def test_another_module_can_register_a_policy_with_its_knob() -> None:
    kind = PolicyKind(
        "fixed-decode",
        "fixed-decode:D",
        lambda policy, ctx: StaticController(ctx.cluster, (2, int(policy.arg))),
        knob="decode replicas",
        sweep=lambda settings: [f"fixed-decode:{d}" for d in (1, 2)],
    )
    register(kind)
    try:
        assert parse_policy("fixed-decode:2").kind == "fixed-decode"
        assert list(REGISTRY["fixed-decode"].sweep(None)) == ["fixed-decode:1", "fixed-decode:2"]  # type: ignore[arg-type]
    finally:
        del REGISTRY["fixed-decode"]
    with pytest.raises(ValueError, match="unknown policy 'fixed-decode:2'"):
        parse_policy("fixed-decode:2")


def test_frontier_command_writes_fronts_verdicts_settings_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "trace.jsonl"
    lines = [json.dumps({"timestamp": i * 500, "input_length": 2500, "output_length": 40}) for i in range(360)]
    trace.write_text("\n".join(lines))
    out, png = tmp_path / "frontier.json", tmp_path / "frontier.png"
    argv = ["simulate", "frontier", "--trace", str(trace), "--policy", "dynamo-load,keda-builtin", "--seeds", "2"]
    argv += ["--warmup", "1m", "--load-scales", "2", "--json", str(out), "--plot", str(png), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "## trace.jsonl x2 (maxReplicaCount 6 prefill, 6 decode)" in printed
    result = json.loads(out.read_text())
    workload = result["workloads"]["trace.jsonl x2"]
    assert set(workload["fronts"]) == {"dynamo-load", "keda-builtin"}
    assert "oracle" in workload["policies"]
    assert "dynamo-load+prefill_queue_up=5+decode_kv_up=0.9" in workload["policies"]
    assert "keda-builtin+lagThreshold=10" in workload["policies"]
    assert len(workload["verdicts"]) == 1
    assert workload["oracle_dominated_by"] == []
    assert result["settings"]["seeds"] == [0, 1]
    assert result["settings"]["kinds"]["keda-builtin"] == "lagThreshold"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

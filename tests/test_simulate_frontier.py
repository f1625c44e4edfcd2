"""`pd-scaler simulate frontier`: Pareto fronts, dominance with intervals, the policy registry, the command."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
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


# -- the cheapest static configuration, searched --------------------------------------------------------------

# A small workload where decode binds too (48 sequences per engine) and 3x3 is the cheapest static configuration
# within a point of the oracle: between the sweep's decode counts (1 and 2 of at most 4).
SMALL = ["--trace", "azure_llm_2023_conv.csv", "--window", "0:6m", "--warmup", "2m", "--max-num-seqs", "48"]
SMALL += ["--prefill-replicas", "1:4", "--decode-replicas", "1:4", "--no-progress"]


def test_the_static_search_finds_what_an_exhaustive_sweep_finds_and_simulates_each_configuration_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "frontier.json"
    argv = ["simulate", "frontier", *SMALL, "--load-scales", "2", "--seeds", "1", "--policy", "static"]
    png = tmp_path / "frontier.png"
    assert main([*argv, "--static-reference", "oracle", "--json", str(out), "--plot", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")
    printed = capsys.readouterr().out
    found = json.loads(out.read_text())["workloads"]["azure_llm_2023_conv.csv x2"]["cheapest_static"]
    assert found["reference"] == "oracle"
    assert found["target"] == 0.99

    every = ",".join(f"static:{p}x{d}" for p in range(1, 5) for d in range(1, 5))
    exhaustive = tmp_path / "exhaustive.json"
    assert main(["simulate", *SMALL, "--load-scale", "2", "--policy", every, "--json", str(exhaustive)]) == 0
    points = json.loads(exhaustive.read_text())["policies"]
    meeting = [(p["gpu_hours"]["mean"], name) for name, p in points.items() if p["slo_attainment"]["mean"] >= 0.99]
    assert found["policy"] == min(meeting)[1] == "static:3x3"
    assert found["gpu_hours"]["mean"] == points["static:3x3"]["gpu_hours"]["mean"]
    assert "static:3x3" not in found["from_sweep"]  # the grid alone would have said 3x2 or 4x2

    # Each configuration ran once: the sweep's, the oracle, and only those the search added.
    assert not set(found["simulated"]) & set(found["from_sweep"])
    runs = len(found["from_sweep"]) + 1 + len(found["simulated"])
    searched = len(found["simulated"])
    assert printed.startswith(f"frontier: {runs} runs (1 seeds; the static search: {searched} configurations in ")
    assert len(found["simulated"]) < 16 - len(found["from_sweep"])
    assert (
        "  cheapest static within 1 point of oracle (100.0 %): static:3x3 100.0 % at "
        f"{points['static:3x3']['gpu_hours']['mean']:.2f} GPU-h; oracle uses "
    ) in printed


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--static-reference", "nope"], {}, "--static-reference: unknown policy 'nope'"),
        ([], {"PD_SCALER_STATIC_REFERENCE": "static:0x1"}, "--static-reference: policy 'static:0x1': write static:PxD"),
        (
            ["--static-reference", "keda-builtin"],
            {},
            "--static-reference 'keda-builtin': not a policy this frontier runs at azure_llm_2023_conv.csv x1 "
            "(static:1x1, ",
        ),
        ([], {"PD_SCALER_STATIC_SEARCH": "maybe"}, "PD_SCALER_STATIC_SEARCH='maybe': 'maybe': expected true or false"),
    ],
)
def test_static_search_flags_fail_clearly_naming_the_flag(
    argv: list[str],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with contextlib.suppress(SystemExit):
        assert main(["simulate", "frontier", *SMALL, "--policy", "static", *argv]) == 2
    assert message in capsys.readouterr().err


def test_the_static_search_is_off_with_its_flag_or_env_and_when_the_default_reference_is_not_swept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "frontier.json"
    argv = ["simulate", "frontier", *SMALL, "--seeds", "1", "--policy", "static", "--json", str(out)]
    monkeypatch.setenv("PD_SCALER_STATIC_SEARCH", "false")
    assert main([*argv, "--static-reference", "oracle"]) == 0
    assert "cheapest static" not in capsys.readouterr().out
    assert json.loads(out.read_text())["settings"]["static_search"] is None
    monkeypatch.delenv("PD_SCALER_STATIC_SEARCH")
    assert main(argv) == 0  # the default reference, pd-scaler, is not swept
    result = json.loads(out.read_text())
    assert "cheapest static" not in capsys.readouterr().out
    assert "cheapest_static" not in result["workloads"]["azure_llm_2023_conv.csv x1"]
    assert result["settings"]["static_search"] is None


def monotone_table(rng: random.Random, most: tuple[int, int]) -> dict[tuple[int, int], tuple[float, float]]:
    """SLO attainment that never falls with more replicas of either role; GPU-hours billed to the last arrival
    plus a drain that differs by configuration."""
    slo: dict[tuple[int, int], float] = {}
    for p in range(1, most[0] + 1):
        for d in range(1, most[1] + 1):
            below = max(slo.get((p - 1, d), 0.0), slo.get((p, d - 1), 0.0))
            slo[p, d] = min(1.0, below + rng.choice((0.0, 0.0, 0.01, 0.05, 0.3)))
    return {s: (v, sum(s) * (1 + rng.uniform(0, 0.1))) for s, v in slo.items()}


def test_the_staircase_search_matches_brute_force_and_asks_for_each_configuration_at_most_once() -> None:
    rng = random.Random(7)
    asked_in_all = every = 0
    for _ in range(300):
        most = (rng.randint(1, 9), rng.randint(1, 9))
        table = monotone_table(rng, most)
        target = rng.choice([0.0, 0.3, 0.6, 0.9, 0.99, 1.0, 1.01])
        known = {s: table[s] for s in rng.sample(sorted(table), min(len(table), rng.randint(0, 4)))}
        steps = frontier.cheapest_static(most, target, lambda s: float(sum(s)), known)
        asked = []
        try:
            shape = next(steps)
            while True:
                assert shape not in asked
                assert shape not in known
                asked.append(shape)
                shape = steps.send(table[shape])
        except StopIteration as done:
            points = done.value
        assert frontier.best(points, target) == frontier.best(table, target)
        asked_in_all += len(asked)
        every += len(table)
    assert asked_in_all < 0.4 * every

"""KEDA and HPA emulation against the worked examples of the Kubernetes HPA documentation and KEDA's rules."""

from __future__ import annotations

import pytest

from scaler.simulate.autoscaling import (
    HPA,
    Behavior,
    ScaledObject,
    ScaledObjectSpec,
    ScalingPolicy,
    ScalingRules,
    replicas_for_metric,
)


def test_doubling_and_halving_from_the_docs() -> None:
    # "if the current metric value is 200m, and the desired value is 100m, the number of replicas will be doubled"
    assert replicas_for_metric(1, 0.200, 0.100, "Value", ready=1) == 2
    assert replicas_for_metric(1, 0.200, 0.100, "AverageValue", ready=1) == 2
    # "If the current value is instead 50m, you'll halve the number of replicas"
    assert replicas_for_metric(4, 0.050, 0.100, "Value", ready=4) == 2


@pytest.mark.parametrize(("value", "expected"), [(1.05, 4), (0.95, 4), (1.09, 4), (0.91, 4), (1.11, 5), (0.7, 3)])
def test_no_change_within_the_ten_percent_tolerance(value: float, expected: int) -> None:
    assert replicas_for_metric(4, value, 1.0, "Value", ready=4) == expected


def test_tolerance_applies_to_the_per_replica_ratio_with_average_value() -> None:
    assert replicas_for_metric(2, 2.1, 1.0, "AverageValue", ready=2) == 2  # 2.1 / (1 · 2) = 1.05
    assert replicas_for_metric(2, 2.3, 1.0, "AverageValue", ready=2) == 3
    assert replicas_for_metric(2, 1.7, 1.0, "AverageValue", ready=2) == 2  # 0.85: ceil(1.7)


def test_average_value_divides_by_the_target_value_multiplies_the_ready_pods() -> None:
    # The same metric (200 against 100) on three replicas:
    assert replicas_for_metric(3, 200, 100, "AverageValue", ready=3) == 2  # ceil(200 / 100)
    assert replicas_for_metric(3, 200, 100, "Value", ready=3) == 6  # ceil(3 · 200 / 100)
    assert replicas_for_metric(3, 200, 100, "Value", ready=1) == 2  # Value counts ready pods only


def hold_then_drop(hpa: HPA, until: float) -> dict[float, int]:
    """Five replicas recommended at t=0, then one every 15 s: the replica count at each sync."""
    replicas, seen = hpa.reconcile(0.0, 5, 5.0, 1.0, "AverageValue", 5), {}
    t = 15.0
    while t <= until:
        replicas = hpa.reconcile(t, replicas, 1.0, 1.0, "AverageValue", replicas)
        seen[t] = replicas
        t += 15.0
    return seen


def test_scale_down_stabilization_keeps_the_highest_recommendation_of_the_last_300s() -> None:
    seen = hold_then_drop(HPA(1, 10, Behavior()), 330.0)
    assert {seen[t] for t in seen if t < 300} == {5}
    assert seen[300.0] == 1  # the t=0 recommendation is no longer after the window's start
    legacy = hold_then_drop(HPA(1, 10, None), 330.0)  # KEDA's default: no behavior, the controller's 5-minute flag
    assert {legacy[t] for t in legacy if t <= 300} == {5}
    assert legacy[315.0] == 1


def test_the_replicas_found_at_the_first_sync_are_the_first_recommendation() -> None:
    # The controller's recordInitialRecommendation: an HPA that starts over 8 replicas keeps them through its
    # scale-down window however low the first proposals are.
    hpa = HPA(1, 10, Behavior())
    seen = {t: hpa.reconcile(t, 8, 1.0, 1.0, "AverageValue", 8) for t in (0.0, 15.0, 285.0, 300.0)}
    assert seen == {0.0: 8, 15.0: 8, 285.0: 8, 300.0: 1}
    # Only the first sync records them: at 8 again later (scaled from outside), the proposals of 1 decide.
    assert hpa.reconcile(315.0, 8, 1.0, 1.0, "AverageValue", 8) == 1


def test_scale_down_rate_policies_from_the_docs() -> None:
    # scaleDown: Pods 4 per 60 s and Percent 10 per 60 s; the policy allowing the largest change wins.
    down = ScalingRules(0.0, (ScalingPolicy("Pods", 4, 60.0), ScalingPolicy("Percent", 10, 60.0)))
    hpa = HPA(1, 100, Behavior(scale_down=down))
    replicas, trail = 80, []
    for minute in range(8):
        for second in range(0, 60, 15):
            replicas = hpa.reconcile(minute * 60.0 + second, replicas, 10.0, 1.0, "AverageValue", replicas)
        trail.append(replicas)
    # 80 → 72 (10 %), then 72 → 64 ("7.2 rounded up to 8"), and 4 at a time once 10 % is less than 4 pods.
    assert trail == [72, 64, 57, 51, 45, 40, 36, 32]
    hpa = HPA(1, 100, Behavior(scale_down=down))
    assert hpa.reconcile(0.0, 20, 10.0, 1.0, "AverageValue", 20) == 16


def test_default_scale_up_adds_four_pods_or_doubles_every_15s() -> None:
    hpa = HPA(1, 100, Behavior())
    assert hpa.reconcile(0.0, 1, 50.0, 1.0, "AverageValue", 1) == 5  # max(1 + 4, 2 · 1)
    assert hpa.reconcile(5.0, 5, 50.0, 1.0, "AverageValue", 5) == 5  # the period still counts the first step
    assert hpa.reconcile(15.0, 5, 50.0, 1.0, "AverageValue", 5) == 10
    assert hpa.reconcile(30.0, 10, 50.0, 1.0, "AverageValue", 10) == 20
    assert hpa.reconcile(45.0, 20, 50.0, 1.0, "AverageValue", 20) == 40


def test_scale_up_stabilization_takes_the_lowest_recommendation_of_its_window() -> None:
    hpa = HPA(1, 100, Behavior(scale_up=ScalingRules(60.0, (ScalingPolicy("Pods", 100, 15.0),))))
    assert hpa.reconcile(0.0, 2, 2.0, 1.0, "AverageValue", 2) == 2
    assert hpa.reconcile(15.0, 2, 9.0, 1.0, "AverageValue", 2) == 2  # 2 was recommended 15 s ago
    assert hpa.reconcile(75.0, 2, 9.0, 1.0, "AverageValue", 2) == 9


def test_legacy_scale_up_is_limited_to_twice_the_replicas_or_four() -> None:
    hpa = HPA(1, 100, None)
    assert hpa.reconcile(0.0, 1, 50.0, 1.0, "AverageValue", 1) == 4
    assert hpa.reconcile(15.0, 4, 50.0, 1.0, "AverageValue", 4) == 8
    assert hpa.reconcile(30.0, 8, 50.0, 1.0, "AverageValue", 8) == 16


def test_min_max_and_an_unreadable_metric() -> None:
    hpa = HPA(2, 6, Behavior())
    assert hpa.reconcile(0.0, 6, None, 1.0, "AverageValue", 6) == 6  # `<unknown>`: the HPA holds
    assert hpa.reconcile(15.0, 6, 100.0, 1.0, "AverageValue", 6) == 6
    assert hpa.reconcile(30.0, 9, 1.0, 1.0, "AverageValue", 9) == 6  # above max: brought back at once
    assert hpa.reconcile(45.0, 1, 0.0, 1.0, "AverageValue", 1) == 2  # below min
    assert hpa.reconcile(60.0, 0, 9.0, 1.0, "AverageValue", 0) == 0  # at zero, KEDA decides


def test_keda_activates_from_zero_and_scales_to_zero_after_the_cooldown() -> None:
    so = ScaledObject(ScaledObjectSpec(min_replicas=0, max_replicas=6, cooldown_period=300.0))
    assert so.activity(10.0, 0, active=True) == 1
    assert so.activity(40.0, 1, active=False) == 1
    assert so.activity(309.0, 1, active=False) == 1
    assert so.activity(310.0, 1, active=False) == 0
    assert so.activity(320.0, 1, active=None) == 1  # IsActive failed: nothing changes
    with_min = ScaledObject(ScaledObjectSpec(min_replicas=2))
    assert with_min.activity(0.0, 0, active=True) == 2
    assert with_min.activity(900.0, 2, active=False) == 2  # minReplicaCount > 0: never to zero
    assert with_min.sync(915.0, 0, 0, 9.0, 1.0) == 0

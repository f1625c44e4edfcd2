"""Replay a request trace through a modelled prefill/decode cluster and compare scaling policies.

Pure: the caller reads traces and profiles (`scaler.simulate.cli` does) and the simulation runs at simulated
time, driving the production engine and policy through simulated sources. Modules, in the order a run uses them:
`trace` (workloads), `profile` (replica speed), `cluster` (the model), `exporters` and `sources` (what the
scalers read), `autoscaling` (KEDA + HPA), `policies` and `oracle` (who decides), `simulation` (the loop),
`report` and `plot` (results). See docs/simulate.md.
"""

from scaler.simulate.policies import Policy, Settings, parse_policy
from scaler.simulate.report import Slo, Summary, summarize
from scaler.simulate.simulation import Config, Run, compare, simulate

__all__ = ["Config", "Policy", "Run", "Settings", "Slo", "Summary", "compare", "parse_policy", "simulate", "summarize"]

"""Replay a request trace through a modelled prefill/decode cluster and compare scaling policies.

Pure: the caller reads traces, deployments and profiles (`scaler.simulate.cli` does) and the simulation runs at
simulated time, driving the production engine and policy through simulated sources. Modules, in the order a run
uses them: `trace` (workloads), `scaler.profile` and `scaler.deployment` (what a replica is; outside this package,
as the capacity policy's `profile` key reads them at serve time), `cluster` (the model), `exporters` and `sources`
(what the scalers read), `autoscaling` (KEDA + HPA), `policies` (the registry of who decides) and `oracle`,
`simulation` (the loop), `report`, `frontier` and `plot` (results). See docs/simulate.md.
"""

from scaler.simulate.policies import Policy, PolicyKind, Settings, parse_policy, register
from scaler.simulate.report import Summary, summarize
from scaler.simulate.simulation import Config, Run, compare, simulate
from scaler.simulate.slo import Slo

__all__ = [
    "Config",
    "Policy",
    "PolicyKind",
    "Run",
    "Settings",
    "Slo",
    "Summary",
    "compare",
    "parse_policy",
    "register",
    "simulate",
    "summarize",
]

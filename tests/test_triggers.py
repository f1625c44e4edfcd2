"""The metadata schema: defaults, KEDA's keys, and one exact error per kind of mistake."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scaler import deployment
from scaler.errors import InvalidTrigger
from scaler.triggers import DecodeTrigger, PrefillTrigger, parse

NATS = {"role": "prefill", "natsServer": "nats://nats.default.svc:4222"}
PROM = {"role": "decode", "prometheusAddress": "http://prometheus.monitoring:9090"}
# What each role's trigger accepts, as errors list it.
PREFILL_KEYS = (
    "account, activationLagThreshold, activationThreshold, burstMemory, consumer, decodeScaledObject, engine, "
    "lagThreshold, "
    "maxStaleness, meanPromptTokens, metric, metricsPath, metricsPort, natsConnection, natsServer, "
    "natsServerMonitoringEndpoint, podSelector, policy, prefillTokensPerSecond, profile, prometheusAddress, "
    "prometheusConnection, promptTokensField, refineCapacity, role, scrape, seriesSelector, startupDelay, stream, "
    "threshold, ttft, useHttps, window"
)
DECODE_KEYS = (
    "activationThreshold, burstMemory, decodePerPrefill, engine, itl, maxDecodePerPrefill, maxNumSeqs, "
    "maxStaleness, meanOutputTokens, metric, metricsPath, metricsPort, minDecodePerPrefill, podSelector, policy, "
    "prefillScaledObject, profile, "
    "prometheusAddress, prometheusConnection, role, scrape, seats, seriesSelector, startupDelay, "
    "threshold, window"
)
BUNDLED = "ack-dynamo-guide, h200-tp2, qwen3-32b-h100-tp1, qwen3-32b-h200-tp1, qwen3-32b-h200-tp2"
ENGINE_QUEUE = {
    "role": "prefill",
    "metric": "engine-queue",
    "threshold": "4",
    "prometheusAddress": PROM["prometheusAddress"],
}


def test_engine_signals_and_series_selectors() -> None:
    spec = parse({**ENGINE_QUEUE, "engine": "sglang", "seriesSelector": 'namespace="llm", service=~"sglang-.*"'})
    assert isinstance(spec, PrefillTrigger)
    assert (spec.metric_name, spec.target, spec.reads_pods) == ("prefill-engine-queue", 4.0, True)
    # The matchers become part of the one query (and so of the shared source's key).
    assert spec.signal.query(spec.matchers) == (
        '{__name__=~"sglang:num_queue_reqs|sglang_num_queue_reqs|sglang:num_prefill_prealloc_queue_reqs|'
        "sglang_num_prefill_prealloc_queue_reqs|sglang:num_prefill_inflight_queue_reqs|"
        'sglang_num_prefill_inflight_queue_reqs", engine_type!="decode", namespace="llm", service=~"sglang-.*"}'
    )
    tokens = parse({**ENGINE_QUEUE, "metric": "prefill-tokens", "threshold": "8192"})
    assert isinstance(tokens, PrefillTrigger)
    assert (tokens.signal.engine, tokens.reads_pods) == ("dynamo", False)  # the frontend's counts: no pods needed
    seats = parse({"role": "decode", "metric": "seats", "maxNumSeqs": "256", "scrape": "pods"})
    assert isinstance(seats, DecodeTrigger)
    assert (seats.metric_name, seats.port, seats.metrics_path, seats.max_num_seqs) == (
        "decode-seats",
        8000,
        "/metrics",
        256,
    )


def test_defaults_follow_dynamo_and_the_ack_guide() -> None:
    spec = parse({**NATS, "lagThreshold": "5"})
    assert isinstance(spec, PrefillTrigger)
    assert not spec.capacity
    assert (spec.stream, spec.consumer) == ("dynamo_prefill_queue", "worker-group")
    assert (spec.lag_threshold, spec.activation_lag_threshold, spec.max_staleness) == (5.0, 0.0, 30.0)
    assert spec.nats_server == ("nats://nats.default.svc:4222",)
    assert (spec.metric_name, spec.target) == ("prefill-lag-dynamo-prefill-queue-worker-group", 5.0)


def test_capacity_is_the_default_unless_a_keda_compatibility_key_is_given() -> None:
    spec = parse(NATS)
    assert isinstance(spec, PrefillTrigger)
    assert spec.capacity
    assert (spec.metric_name, spec.target) == ("prefill-tokens-dynamo-prefill-queue-worker-group", 9000.0)
    assert (spec.ttft, spec.startup_delay, spec.window) == (1.0, 120.0, 60.0)
    assert (spec.prompt_tokens_field, spec.mean_prompt_tokens) == ("prompt_token_ids", 1000.0)
    for compat in ({"lagThreshold": "5"}, {"activationLagThreshold": "2"}, {"policy": "threshold"}):
        assert not parse({**NATS, **compat}).capacity
    assert not parse({"role": "prefill", "natsServerMonitoringEndpoint": "nats:8222"}).capacity
    decode = parse(PROM)
    assert isinstance(decode, DecodeTrigger)
    assert decode.capacity
    assert (decode.metric_name, decode.target) == ("decode-sequences", 94.0)
    for compat in ({"threshold": "0.8"}, {"metric": "kv-cache"}, {"policy": "threshold"}):
        assert not parse({**PROM, **compat}).capacity


@pytest.mark.parametrize(
    ("profile", "itl", "seats"),
    [
        ("ack-dynamo-guide", None, 164),  # the default ITL, 50 ms, on the guide's TP=1 H200 engine
        ("ack-dynamo-guide", "30ms", 52),
        ("qwen3-32b-h200-tp1", "50ms", 164),  # the same engine, named by its profile
        ("qwen3-32b-h100-tp1", "50ms", 94),
        ("h200-tp2", "25ms", 118),
        ("h200-tp2", "50ms", 256),  # every batch up to max_num_seqs meets it: the engine's limit binds
    ],
)
def test_decode_seats_are_the_largest_batch_whose_step_meets_the_itl(profile: str, itl: str | None, seats: int) -> None:
    spec = parse({**PROM, "profile": profile} | ({"itl": itl} if itl else {}))
    assert isinstance(spec, DecodeTrigger)
    assert (spec.metric_name, spec.target) == ("decode-sequences", float(seats))
    replica = deployment.replica(profile)
    limit = spec.itl
    assert replica.decode_step_seconds(seats, seats * 2048) <= limit
    assert seats == replica.max_num_seqs or replica.decode_step_seconds(seats + 1, (seats + 1) * 2048) > limit
    # Seats given win over the profile, even where the profile could not meet the ITL.
    assert parse({**PROM, "profile": profile, "itl": "1ms", "seats": "64"}).target == 64.0


@pytest.mark.parametrize(
    ("profile", "chunk_seconds"),
    [
        ("ack-dynamo-guide", 0.2313),  # the guide's TP=1 H200 engine: its profile's 2,048-token pass
        ("qwen3-32b-h200-tp1", 0.2313),
        ("qwen3-32b-h100-tp1", 0.22951),
        ("h200-tp2", 0.12785),
    ],
)
def test_prefill_tokens_per_second_are_full_chunks_back_to_back_on_the_profile(
    profile: str, chunk_seconds: float
) -> None:
    spec = parse({**NATS, "profile": profile})
    assert isinstance(spec, PrefillTrigger)
    # 2,048-token chunks (max_num_batched_tokens), each the measured pass plus the 10 % engine overhead.
    assert (spec.metric_name, spec.target) == (
        "prefill-tokens-dynamo-prefill-queue-worker-group",
        pytest.approx(2048 / (chunk_seconds * 1.1), rel=1e-12),
    )
    assert spec.target == deployment.prefill_tokens_per_second(deployment.replica(profile))  # the simulator's
    # Given, prefillTokensPerSecond wins over the profile.
    assert parse({**NATS, "profile": profile, "prefillTokensPerSecond": "5000"}).target == 5000.0


def test_keda_keys_are_ignored_and_from_env_keys_count_for_their_base_key() -> None:
    spec = parse(
        {**NATS, "scalerAddress": "pd-scaler.keda:9090", "enableTLS": "false", "unsafeSsl": "true"}
        | {"lagThresholdFromEnv": "12", "maxStaleness": "1m30s", "natsServer": "nats://a:4222, tls://b:4222"}
    )
    assert isinstance(spec, PrefillTrigger)
    assert spec.lag_threshold == 12.0
    assert spec.max_staleness == 90.0
    assert spec.nats_server == ("nats://a:4222", "tls://b:4222")


def test_decode_defaults_follow_the_ack_guide() -> None:
    spec = parse({**PROM, "threshold": "0.8"})
    assert isinstance(spec, DecodeTrigger)
    assert (spec.metric, spec.threshold, spec.activation_threshold, spec.engine) == ("gpu-memory", 0.8, 0.0, None)
    kv = parse({**PROM, "metric": "kv-cache"})
    assert isinstance(kv, DecodeTrigger)
    assert kv.signal.engine == "vllm"  # the default engine
    assert (spec.metric_name, spec.target) == ("decode-gpu-memory", 0.8)


def test_keda_nats_jetstream_metadata_works_unchanged() -> None:
    spec = parse(
        {
            "role": "prefill",
            "natsServerMonitoringEndpoint": "nats.default.svc.cluster.local:8222",
            "account": "$G",
            "stream": "dynamo_prefill_queue",
            "consumer": "worker-group",
            "lagThreshold": "5",
            "useHttps": "false",
        }
    )
    assert isinstance(spec, PrefillTrigger)
    assert spec.jsz_url == "http://nats.default.svc.cluster.local:8222"
    assert spec.account == "$G"


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"natsServer": "nats://h:4222"}, "key 'role' is required; accepted values: prefill, decode"),
        ({**NATS, "role": "router"}, "key 'role': invalid value 'router'; accepted values: prefill, decode"),
        (
            {**NATS, "lagTreshold": "3"},
            "unknown key 'lagTreshold' (did you mean 'lagThreshold'?); prefill triggers accept: " + PREFILL_KEYS,
        ),
        ({**NATS, "lagThreshold": "0"}, "key 'lagThreshold': invalid value '0': Input should be greater than 0"),
        ({**NATS, "lagThreshold": "-2"}, "key 'lagThreshold': invalid value '-2': Input should be greater than 0"),
        (
            {**NATS, "lagThreshold": "five"},
            "key 'lagThreshold': invalid value 'five': Input should be a valid number, "
            "unable to parse string as a number",
        ),
        ({**NATS, "lagThreshold": "nan"}, "key 'lagThreshold': invalid value 'nan': Input should be a finite number"),
        ({**NATS, "lagThreshold": "inf"}, "key 'lagThreshold': invalid value 'inf': Input should be a finite number"),
        (
            {**NATS, "activationLagThreshold": "-1"},
            "key 'activationLagThreshold': invalid value '-1': Input should be greater than or equal to 0",
        ),
        (
            {**NATS, "maxStaleness": "forever"},
            "key 'maxStaleness': invalid value 'forever': not a duration; use a number of seconds "
            "or units ms, s, m, h (e.g. 30s, 1m30s)",
        ),
        ({**NATS, "maxStaleness": "0s"}, "key 'maxStaleness': invalid value '0s': Input should be greater than 0"),
        (
            {**NATS, "stream": "prefill queue"},
            "key 'stream': invalid value 'prefill queue': String should match pattern '^[^\\s*>.]+$'",
        ),
        ({**NATS, "consumer": ""}, "key 'consumer': invalid value '': String should have at least 1 character"),
        (
            {**NATS, "natsServer": "http://nats:4222"},
            "key 'natsServer': invalid value 'http://nats:4222': expected nats://host:port or tls://host:port "
            "(comma-separated for several)",
        ),
        (
            {**NATS, "natsServer": "nats://prefill:s3cret@nats:4222"},
            "key 'natsServer': invalid value 'nats://prefill:s3cret@nats:4222': credentials are not accepted in "
            "trigger metadata (KEDA does not protect it); put them in a connection profile of the --connections "
            "file and name it with natsConnection",
        ),
        (
            {**NATS, "natsServer": "nats://nats:port"},
            "key 'natsServer': invalid value 'nats://nats:port': the port is not a number",
        ),
        (
            {**NATS, "natsConnection": "prod"},
            "exactly one of natsServer, natsConnection, natsServerMonitoringEndpoint is required; "
            "got natsServer, natsConnection",
        ),
        (
            {"role": "prefill"},
            "exactly one of natsServer, natsConnection, natsServerMonitoringEndpoint is required; got none",
        ),
        ({**NATS, "account": "$G"}, "account only apply with natsServerMonitoringEndpoint"),
        (
            {"role": "prefill", "natsServerMonitoringEndpoint": "http://nats:8222"},
            "key 'natsServerMonitoringEndpoint': invalid value 'http://nats:8222': expected host:port without a "
            "scheme, like KEDA's nats-jetstream",
        ),
        (
            {"role": "prefill", "natsServerMonitoringEndpoint": "nats:8222", "useHttps": "maybe"},
            "key 'useHttps': invalid value 'maybe': Input should be a valid boolean, unable to interpret input",
        ),
        (
            {**PROM, "metric": "kv"},
            "key 'metric': invalid value 'kv': Input should be 'gpu-memory', 'gpu-util', 'kv-cache' or 'seats'",
        ),
        ({**PROM, "threshold": "80"}, "key 'threshold': invalid value '80': Input should be less than or equal to 1"),
        ({**PROM, "threshold": "0"}, "key 'threshold': invalid value '0': Input should be greater than 0"),
        (
            {**PROM, "metric": "kv-cache", "engine": "trtllm"},
            "key 'engine': invalid value 'trtllm': Input should be 'vllm', 'sglang' or 'dynamo'",
        ),
        (
            {**PROM, "metric": "gpu-memory", "engine": "sglang"},
            "key 'engine' applies only with metric: kv-cache, seats",
        ),
        (
            {**NATS, "policy": "capacity", "lagThreshold": "5"},
            "lagThreshold only apply with policy threshold, not capacity",
        ),
        (
            {"role": "prefill", "natsServerMonitoringEndpoint": "nats:8222", "policy": "capacity"},
            "policy capacity needs natsServer or natsConnection (it reads each request's prompt tokens); "
            "natsServerMonitoringEndpoint only gives message counts",
        ),
        ({**NATS, "policy": "lag"}, "key 'policy': invalid value 'lag': Input should be 'capacity' or 'threshold'"),
        (
            {**NATS, "lagThreshold": "5", "refineCapacity": "true"},
            "key 'refineCapacity' applies only with policy capacity (the queue-lag default without KEDA's lag keys)",
        ),
        (
            {**NATS, "decodeScaledObject": "d" * 254},
            "key 'decodeScaledObject': invalid value '" + "d" * 64 + "'… (254 characters): String should have at most "
            "253 characters",
        ),
        (
            {**NATS, "policy": "threshold", "decodeScaledObject": "decode"},
            "key 'decodeScaledObject' applies only with policy capacity (the queue-lag default without KEDA's lag "
            "keys)",
        ),
        (
            {**NATS, "refineCapacity": "sometimes"},
            "key 'refineCapacity': invalid value 'sometimes': Input should be a valid boolean, unable to interpret "
            "input",
        ),
        (
            {**NATS, "startupDelay": "20m"},
            "key 'startupDelay': invalid value '20m': Input should be less than or equal to 600",
        ),
        (
            {**PROM, "policy": "capacity", "threshold": "0.5"},
            "threshold only apply with policy threshold, not capacity",
        ),
        (
            {**PROM, "minDecodePerPrefill": "1"},
            "key 'minDecodePerPrefill' applies only with prefillScaledObject (the prefill role to keep in step with)",
        ),
        (
            {**PROM, "prefillScaledObject": "p", "minDecodePerPrefill": "3", "maxDecodePerPrefill": "2"},
            "minDecodePerPrefill is above maxDecodePerPrefill",
        ),
        (
            {**PROM, "activationThreshold": "-0.1"},
            "key 'activationThreshold': invalid value '-0.1': Input should be greater than or equal to 0",
        ),
        (
            {**PROM, "prometheusAddress": "prometheus:9090"},
            "key 'prometheusAddress': invalid value 'prometheus:9090': "
            "expected an http:// or https:// URL of the Prometheus server",
        ),
        (
            {**PROM, "prometheusAddress": "https://admin:hunter2@prometheus:9090"},
            "key 'prometheusAddress': invalid value 'https://admin:hunter2@prometheus:9090': credentials are not "
            "accepted in trigger metadata (KEDA does not protect it); put them in a connection profile of the "
            "--connections file and name it with prometheusConnection",
        ),
        (
            {"role": "decode"},
            "exactly one of prometheusAddress, prometheusConnection is required; got none",
        ),
        (
            {**PROM, "lagThreshold": "5"},
            "unknown key 'lagThreshold' (did you mean 'threshold'?); decode triggers accept: " + DECODE_KEYS,
        ),
        (
            {**NATS, "lagThreshold": "5", "lagThresholdFromEnv": "6"},
            "key 'lagThreshold' is given twice (as 'lagThreshold' and 'lagThresholdFromEnv'); keep one",
        ),
        # Engine and router signals.
        ({**ENGINE_QUEUE, "threshold": None}, "key 'threshold' is required with metric: engine-queue"),
        (
            {**ENGINE_QUEUE, "natsServer": "nats://nats:4222", "lagThreshold": "5"},
            "keys 'lagThreshold', 'natsServer' apply only with metric: queue-lag",
        ),
        (
            {**NATS, "threshold": "3", "scrape": "pods"},
            "keys 'threshold', 'scrape' apply only with metric: engine-queue or prefill-tokens, not with queue-lag",
        ),
        (
            {**ENGINE_QUEUE, "metric": "prefill-tokens", "engine": "sglang"},
            "key 'engine': SGLang exports only request counts for its prefill queues (sglang:num_queue_reqs and the "
            "PD prefill queues), no waiting prompt tokens: use metric: engine-queue",
        ),
        (
            {**ENGINE_QUEUE, "engine": "dynamo"},
            "key 'engine': Dynamo's frontend exports the prefill workers' waiting prompt tokens, not a request "
            "queue: use metric: prefill-tokens, or engine: vllm / sglang to read the workers' own engine metrics",
        ),
        (
            {**PROM, "metric": "seats"},
            "key 'maxNumSeqs' is required with metric: seats: set it to the engine's sequence limit (vLLM "
            "--max-num-seqs, SGLang --max-running-requests); neither engine exports it",
        ),
        ({**PROM, "metric": "kv-cache", "maxNumSeqs": "256"}, "key 'maxNumSeqs' applies only with metric: seats"),
        (
            {**PROM, "metric": "gpu-util", "scrape": "pods", "prometheusAddress": None},
            "key 'scrape': gpu-util comes from dcgm-exporter, not the role's pods: read it through Prometheus "
            "(scrape: prometheus)",
        ),
        (
            {**PROM, "metric": "kv-cache", "scrape": "pods"},
            "key 'prometheusAddress' applies only with scrape: prometheus (the default), not with scrape: pods",
        ),
        ({**PROM, "metricsPort": "8000"}, "key 'metricsPort' applies only with scrape: pods"),
        (
            {**PROM, "metric": "kv-cache", "scrape": "pods", "prometheusAddress": None, "metricsPort": "0"},
            "key 'metricsPort': invalid value '0': Input should be greater than or equal to 1",
        ),
        (
            {**ENGINE_QUEUE, "metric": "prefill-tokens", "engine": None, "scrape": "pods", "prometheusAddress": None},
            "key 'podSelector' is required with prefill-tokens and scrape: pods: Dynamo's frontend exports these "
            "counts, so select the frontend's pods",
        ),
        (
            {**PROM, "seriesSelector": 'namespace="llm" service="x"'},
            'key \'seriesSelector\': invalid value \'namespace="llm" service="x"\': expected label="value" '
            'matchers, comma-separated; cannot read \'namespace="llm" service="x"\'',
        ),
        (
            {**PROM, "seriesSelector": 'pod=~"decode-(["'},
            "key 'seriesSelector': invalid value 'pod=~\"decode-([\"': pod=~: not a regular expression: "
            "unterminated character set at position 8",
        ),
        (
            {**PROM, "decodePerPrefill": "auto", "meanOutputTokens": "400"},
            "key 'decodePerPrefill' applies only with prefillScaledObject (the prefill role to keep in step with)",
        ),
        (
            {**PROM, "prefillScaledObject": "p", "meanOutputTokens": "400"},
            "key 'meanOutputTokens' applies only with decodePerPrefill: auto",
        ),
        (
            {**PROM, "prefillScaledObject": "p", "decodePerPrefill": "auto"},
            "key 'meanOutputTokens' is required with decodePerPrefill: auto (the answers' mean length in tokens)",
        ),
        (
            {
                **PROM,
                "prefillScaledObject": "p",
                "decodePerPrefill": "auto",
                "meanOutputTokens": "400",
                "minDecodePerPrefill": "1",
            },
            "minDecodePerPrefill and decodePerPrefill: auto both set the fewest decode per prefill replica; keep one",
        ),
        (
            {**PROM, "prefillScaledObject": "p", "decodePerPrefill": "2", "meanOutputTokens": "400"},
            "key 'decodePerPrefill': invalid value '2': Input should be 'auto'",
        ),
        (
            {**PROM, "itl": "40ms"},
            "key 'itl' needs key 'profile' (the decode replica's bundled deployment or profile: "
            f"{BUNDLED}) to derive seats from; or set key 'seats'",
        ),
        (
            {**PROM, "profile": "b200"},
            f"key 'profile': invalid value 'b200': accepted values: {BUNDLED}",
        ),
        (
            {**NATS, "profile": "b200"},
            f"key 'profile': invalid value 'b200': accepted values: {BUNDLED}",
        ),
        (
            {**PROM, "profile": "/etc/passwd", "seats": "64"},  # a name, never a file
            f"key 'profile': invalid value '/etc/passwd': accepted values: {BUNDLED}",
        ),
        (
            {**PROM, "profile": "h200-tp2", "itl": "10ms"},
            "key 'itl': on h200-tp2, one sequence's decode step takes 14.8 ms at 2048 tokens of context, above the "
            "ITL of 10 ms; raise it, or set key 'seats'",
        ),
        ({**PROM, "itl": "20s"}, "key 'itl': invalid value '20s': Input should be less than or equal to 10"),
        (
            {**PROM, "seriesSelector": '__name__="up"'},
            "key 'seriesSelector': invalid value '__name__=\"up\"': __name__ is chosen by the metric; match other "
            "labels",
        ),
    ],
)
def test_bad_metadata_names_the_key_the_value_and_what_is_accepted(metadata: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidTrigger) as caught:
        parse({k: v for k, v in metadata.items() if v is not None})
    assert caught.value.message == message


def test_the_serving_path_reads_profiles_without_importing_the_simulator() -> None:
    code = "import sys, scaler.server, scaler.triggers; print(sorted(m for m in sys.modules if 'simulate' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "[]\n"
    assert parse({**PROM, "profile": "ack-dynamo-guide"}).target == 164.0
    assert round(parse({**NATS, "profile": "ack-dynamo-guide"}).target) == 8049

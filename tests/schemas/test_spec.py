"""The pipeline spec: good specs parse into the dataclasses, every kind of mistake is one line
naming the key path."""

from __future__ import annotations

import pytest

from eddy.schemas.spec import SpecError
from eddy.schemas.spec_load import as_mapping, loads_spec

GOOD = """
[pipeline]
name = "video"
[time]
allowed_lateness = "2s"
late_policy = "include"

[streams.sessions]
source = "jsonl:sessions.jsonl"
id = "session_id"
time = "started"
[streams.sessions.fields]
region = "string"
bitrate_kbps = { type = "float", min = 0, max = 100000 }
cdns = "list[string]"
retries = { type = "int", optional = true }

[streams.playback]
source = "jsonl:playback.jsonl"
time = "ended"
[streams.playback.fields]
session_id = "string"
cdn = "string"
rebuffered = "bool"
startup_ms = { type = "float", min = 0 }

[[features]]
name = "cdn_health"
stream = "playback"
key = "cdn"
metrics = ["rebuffered", "startup_ms"]
trailing = ["10s", "2m"]
aggregations = ["count", "mean", "std", "min", "max"]
tumbling = ["1m"]
sliding = [["5m", "1m"]]
session_gap = "30s"
store = true

[[detect]]
name = "cdn_alerts"
stream = "playback"
key = "cdn"
metrics = ["rebuffered", "startup_ms"]
detector = "rates"
params = { bucket = "1s", alert = { startup_ms = "rise 50%" } }
threshold = 0.99
cooldown = "30s"

[[decide]]
name = "pick_cdn"
stream = "sessions"
arms = ["cdn-a", "cdn-b", "cdn-c"]
eligible = "cdns"
policy = "linucb"
params = { alpha = 0.5, floor = 0.02 }
context = { categorical = ["region"], numeric = ["bitrate_kbps"], arm_features = ["cdn_health.startup_ms_mean_2m"] }
reward = { stream = "playback", join = "session_id", value = "1 - rebuffered - startup_ms / 5000", ttl = "1m", default = 0.0 }
"""


def test_good_spec_parses() -> None:
    spec = loads_spec(GOOD)
    assert spec.name == "video" and spec.duckdb_path == "video.duckdb" and spec.topics == "video"
    assert spec.late_policy == "include" and spec.allowed_lateness_ms == 2_000
    sessions = spec.stream("sessions")
    assert sessions.id == "session_id" and sessions.time == "started"
    assert [f.type for f in sessions.fields] == ["string", "float", "list[string]", "int"]
    assert sessions.field("retries").nullable and not sessions.field("region").optional
    f = spec.features[0]
    assert [w.label for w in f.trailing] == ["10s", "2m"] and f.trailing[1].ms == 120_000
    assert f.columns[:2] == ("rebuffered_count_10s", "rebuffered_mean_10s")
    assert "startup_ms_max_2m" in f.columns
    assert f.window_names == ("tumbling_1m", "sliding_5m_1m", "session_30s")
    assert as_mapping(spec.detect[0].params) == {
        "alert": {"startup_ms": "rise 50%"},
        "bucket": "1s",
    }
    d = spec.decide[0]
    assert d.context.categorical == (("region", 16),)
    assert d.context.arm_features == (("cdn_health", "startup_ms_mean_2m"),)
    assert d.reward.ttl_ms == 60_000 and d.logged_fields == ("region", "bitrate_kbps")


def _broken(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


# one case per kind of mistake: (edit, the key path named, a phrase of what was expected)
BAD = [
    pytest.param(("[pipeline]", "[pipeline\n"), "not valid TOML", "", id="toml"),
    pytest.param(('name = "video"', 'name = "video"\nbogus = 1'), "pipeline.bogus", "unknown key", id="unknown-key"),
    pytest.param(('late_policy = "include"', 'late_policy = "keep"'), "time.late_policy", "one of drop, include", id="choice"),
    pytest.param(('allowed_lateness = "2s"', 'allowed_lateness = "2 sec"'), "time.allowed_lateness", "duration", id="duration"),
    pytest.param(('source = "jsonl:sessions.jsonl"', 'source = "ftp:x"'), "streams.sessions.source", "jsonl:PATH", id="source"),
    pytest.param(('time = "started"', ""), "streams.sessions.time", "missing key", id="missing"),
    pytest.param(('region = "string"', 'region = "text"'), "streams.sessions.fields.region", "a type from", id="type"),
    pytest.param(("min = 0, max = 100000", "min = 10, max = 1"), "streams.sessions.fields.bitrate_kbps.max", "max >= min", id="range"),
    pytest.param(('retries = { type = "int", optional = true }', 'retries = { type = "int", default = "x" }'), "streams.sessions.fields.retries.default", "int value", id="default"),
    pytest.param(('region = "string"', '"bad name" = "string"'), "streams.sessions.fields.bad name", "letters, digits", id="name"),
    pytest.param(('stream = "playback"\nkey = "cdn"\nmetrics = ["rebuffered", "startup_ms"]\ntrailing', 'stream = "plays"\nkey = "cdn"\nmetrics = ["rebuffered", "startup_ms"]\ntrailing'), "features[0].stream", "no stream 'plays'", id="stream-ref"),
    pytest.param(('key = "cdn"\nmetrics = ["rebuffered", "startup_ms"]\ntrailing', 'key = "cdnx"\nmetrics = ["rebuffered", "startup_ms"]\ntrailing'), "features[0].key", "declares no field 'cdnx'", id="field-ref"),
    pytest.param(('metrics = ["rebuffered", "startup_ms"]\ntrailing', 'metrics = ["cdn"]\ntrailing'), "features[0].metrics[0]", "expected float or int or bool", id="field-type"),
    pytest.param(('aggregations = ["count", "mean", "std", "min", "max"]', 'aggregations = ["median"]'), "features[0].aggregations[0]", "one of count", id="aggregation"),
    pytest.param(('sliding = [["5m", "1m"]]', 'sliding = [["5m", "2m"]]'), "features[0].sliding[0]", "multiple of the slide", id="sliding"),
    pytest.param(('trailing = ["10s", "2m"]', 'trailing = ["10s", "10000ms"]'), "features[0].trailing[1]", "listed twice", id="duplicate-window"),
    pytest.param(('name = "cdn_alerts"', 'name = "cdn_health"'), "detect[0].name", "already the name", id="duplicate-stage"),
    pytest.param(('detector = "rates"', 'detector = "magic"'), "detect[0].detector", "river:MODULE.CLASS", id="detector"),
    pytest.param(("threshold = 0.99", "threshold = 1.5"), "detect[0].threshold", "(0, 1)", id="threshold"),
    pytest.param(('arms = ["cdn-a", "cdn-b", "cdn-c"]', 'arms = ["cdn-a"]'), "decide[0].arms", "at least 2", id="arms"),
    pytest.param(('eligible = "cdns"', 'eligible = "region"'), "decide[0].eligible", "expected list[string]", id="eligible"),
    pytest.param(('arm_features = ["cdn_health.startup_ms_mean_2m"]', 'arm_features = ["cdn_health.nope"]'), "decide[0].context.arm_features[0]", "no column 'nope'", id="feature-ref"),
    pytest.param(('join = "session_id"', 'join = "sid"'), "decide[0].reward.join", "declares no field 'sid'", id="join"),
    pytest.param(('id = "session_id"\n', ""), "streams.sessions.id", "needs an id field", id="decision-id"),
    # values that parse but the engine cannot run
    pytest.param(('tumbling = ["1m"]', 'tumbling = ["0s"]'), "features[0].tumbling[0]", "duration > 0", id="zero-window"),
    pytest.param(('trailing = ["10s", "2m"]', 'trailing = ["10s", "0.5ms"]'), "features[0].trailing[1]", "duration > 0", id="sub-ms-window"),
    pytest.param(('session_gap = "30s"', 'session_gap = "0s"'), "features[0].session_gap[0]", "duration > 0", id="zero-session-gap"),
    pytest.param(('ttl = "1m"', 'ttl = "0s"'), "decide[0].reward.ttl", "duration > 0", id="zero-ttl"),
    pytest.param(('allowed_lateness = "2s"', 'allowed_lateness = "-2s"'), "time.allowed_lateness", "duration", id="negative-lateness"),
    pytest.param(('allowed_lateness = "2s"', "allowed_lateness = -5"), "time.allowed_lateness", "duration", id="negative-int-lateness"),
    pytest.param(('sliding = [["5m", "1m"]]', 'sliding = [["5m", "90s"]]'), "features[0].sliding[0]", "multiple of the slide", id="slide-not-dividing"),
    pytest.param(('sliding = [["5m", "1m"]]', 'sliding = [["1m", "5m"]]'), "features[0].sliding[0][1]", "no longer than the size", id="slide-longer-than-size"),
    pytest.param(('sliding = [["5m", "1m"]]', 'sliding = [["1h", "1ms"]]'), "features[0].sliding[0]", "windows per event", id="too-many-sliding-windows"),
    pytest.param(('sliding = [["5m", "1m"]]', 'sliding = [["5m", "1m"], ["300s", "60s"]]'), "features[0].sliding[1]", "listed twice", id="duplicate-sliding"),
    pytest.param(('session_gap = "30s"', 'session_gap = ["30s", "30000ms"]'), "features[0].session_gap[1]", "listed twice", id="duplicate-session-gap"),
    pytest.param(('trailing = ["10s", "2m"]', 'trailing = ["2m", "2m"]'), "features[0].trailing[1]", "listed twice", id="duplicate-trailing"),
    pytest.param(('tumbling = ["1m"]', 'tumbling = ["1m", "60s"]'), "features[0].tumbling[1]", "listed twice", id="duplicate-tumbling"),
    pytest.param(('tumbling = ["1m"]', 'tumbling = ["999999999999d"]'), "features[0].tumbling[0]", "at most", id="window-beyond-int64"),
    pytest.param(('ttl = "1m"', f'ttl = "{"9" * 400}d"'), "decide[0].reward.ttl", "at most", id="ttl-beyond-float"),
    pytest.param(('cooldown = "30s"', "cooldown = 99999999999999999999"), "detect[0].cooldown", "at most", id="cooldown-beyond-int64"),
    pytest.param(('eligible = "cdns"', 'eligible = "cdns"\nmerge_every = "0s"'), "decide[0].merge_every", "duration > 0", id="zero-merge-every"),
    pytest.param(('eligible = "cdns"', 'eligible = "cdns"\nmerge_every = "soon"'), "decide[0].merge_every", "duration", id="merge-every-not-a-duration"),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "key", "phrase"), BAD)
def test_each_kind_of_mistake_is_one_line_naming_the_key(
    edit: tuple[str, str], key: str, phrase: str
) -> None:
    with pytest.raises(SpecError) as err:
        loads_spec(_broken(*edit))
    msg = str(err.value)
    assert "\n" not in msg.strip() or "not valid TOML" in msg
    assert key in msg and phrase in msg, msg


def test_an_id_may_be_declared_an_integer() -> None:
    spec = loads_spec(GOOD.replace('id = "session_id"', 'id = "session_id"\nid_type = "int"'))
    assert spec.stream("sessions").id_type == "int"
    assert loads_spec(GOOD).stream("sessions").id_type == "string"
    with pytest.raises(SpecError, match=r"streams.sessions.id_type': expected one of string, int"):
        loads_spec(GOOD.replace('id = "session_id"', 'id = "session_id"\nid_type = "uuid"'))
    with pytest.raises(SpecError, match=r"streams.playback.id_type': there is no 'id'"):
        loads_spec(GOOD.replace("[streams.playback]", '[streams.playback]\nid_type = "int"'))


def test_a_spec_with_no_stage_is_refused() -> None:
    text = '[streams.s]\nsource = "jsonl:x"\ntime = "t"\nfields = { v = "float" }\n'
    with pytest.raises(SpecError, match="nothing to compute"):
        loads_spec(text)

"""Read a pipeline spec from TOML: parse, check every key, build :class:`PipelineSpec`.

Every error is a :class:`SpecError` whose one line names the key path (``streams.sessions.
fields.bitrate_kbps.min``, ``features[0].trailing[1]``, ``decide[0].reward.value``), what was
expected and what came. Unknown keys are errors too (a typo must not pass silently), with the
known keys listed.

>>> spec = loads_spec('''
... [pipeline]
... name = "demo"
... [streams.readings]
... source = "jsonl:readings.jsonl"
... time = "ts"
... fields = { sensor = "string", celsius = "float" }
... [[detect]]
... name = "hot"
... stream = "readings"
... key = "sensor"
... metrics = ["celsius"]
... ''')
>>> spec.detect[0].detector, spec.duckdb_path
('ensemble', 'demo.duckdb')
>>> loads_spec('[time]\\nlate_policy = "keep"')
Traceback (most recent call last):
...
eddy.schemas.spec.SpecError: spec: key 'time.late_policy': expected one of drop, include; got 'keep'
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from eddy.schemas.durations import parse_duration
from eddy.schemas.spec import (
    AGGREGATIONS,
    FIELD_TYPES,
    NAME_RE,
    ContextSpec,
    DecideSpec,
    DetectSpec,
    FeaturesSpec,
    FieldSpec,
    PipelineSpec,
    RewardSpec,
    SpecError,
    StreamSpec,
    Window,
)
from eddy.schemas.spec_check import check_references

__all__ = ["as_mapping", "check_source", "load_spec", "loads_spec"]

T = TypeVar("T")
_SOURCE_KINDS = ("simulator", "jsonl", "csv", "parquet", "kafka")
_DEFAULT_SLOTS = 16


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and check the spec file at ``path``; raises :class:`SpecError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{p}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{p}: cannot read: {e}") from None
    return loads_spec(text, where=str(p), path=str(p.resolve()))


def loads_spec(text: str, where: str = "spec", path: str | None = None) -> PipelineSpec:
    """Parse and check a spec given as TOML text (``where`` prefixes error messages)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{where}: not valid TOML: {e}") from None
    try:
        spec = _pipeline(_Table(raw, ""), path)
        check_references(spec)
    except SpecError as e:
        raise SpecError(f"{where}: {e}") from None
    return spec


class _Table:
    """A TOML table with its key path; reading a key marks it used, ``done`` rejects the rest."""

    def __init__(self, raw: Any, path: str) -> None:
        if not isinstance(raw, dict):
            raise SpecError(f"key '{path}': expected a table, got {_show(raw)}")
        self.raw: dict[str, Any] = raw
        self.path = path
        self._used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return name in self.raw

    def get(self, name: str, conv: Callable[[Any, str], T], default: Any) -> T:
        """The converted value, or ``default`` (returned as is) when the key is absent."""
        self._used.add(name)
        if name not in self.raw:
            return default
        return conv(self.raw[name], self.key(name))

    def need(self, name: str, conv: Callable[[Any, str], T]) -> T:
        self._used.add(name)
        if name not in self.raw:
            raise SpecError(f"missing key '{self.key(name)}'")
        return conv(self.raw[name], self.key(name))

    def sub(self, name: str) -> _Table:
        self._used.add(name)
        return _Table(self.raw.get(name, {}), self.key(name))

    def done(self) -> None:
        extra = sorted(set(self.raw) - self._used)
        if extra:
            where = f"'{self.key(extra[0])}'"
            known = ", ".join(sorted(self._used))
            raise SpecError(f"unknown key {where}; known: {known}")


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


# -- converters: (value, key path) -> value ------------------------------------------------
def _str(v: Any, key: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise SpecError(f"key '{key}': expected a non-empty string, got {_show(v)}")
    return v.strip()


def _name(v: Any, key: str) -> str:
    s = _str(v, key)
    if not NAME_RE.match(s):
        raise SpecError(
            f"key '{key}': expected a name of letters, digits and _ (not starting with a "
            f"digit), got {_show(v)}"
        )
    return s


def _choice(*choices: str) -> Callable[[Any, str], str]:
    def conv(v: Any, key: str) -> str:
        if v not in choices:
            raise SpecError(f"key '{key}': expected one of {', '.join(choices)}; got {_show(v)}")
        return str(v)

    return conv


def _bool(v: Any, key: str) -> bool:
    if not isinstance(v, bool):
        raise SpecError(f"key '{key}': expected true or false, got {_show(v)}")
    return v


def _int_in(lo: int, hi: int) -> Callable[[Any, str], int]:
    def conv(v: Any, key: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise SpecError(f"key '{key}': expected an integer in [{lo}, {hi}], got {_show(v)}")
        return v

    return conv


def _number(v: Any, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v != v or abs(v) == float("inf"):
        raise SpecError(f"key '{key}': expected a finite number, got {_show(v)}")
    return float(v)


def _duration(v: Any, key: str) -> int:
    try:
        return parse_duration(v)
    except ValueError as e:
        raise SpecError(f"key '{key}': {e}") from None


def _window(v: Any, key: str) -> Window:
    ms = _duration(v, key)
    if ms <= 0:
        raise SpecError(f"key '{key}': expected a duration > 0, got {_show(v)}")
    return Window(ms, v.strip() if isinstance(v, str) else Window.of(ms).label)


def _list(
    item: Callable[[Any, str], T], *, min_len: int = 0
) -> Callable[[Any, str], tuple[T, ...]]:
    def conv(v: Any, key: str) -> tuple[T, ...]:
        if isinstance(v, str) and min_len <= 1:  # a single value where a list is expected
            v = [v]
        if not isinstance(v, list):
            raise SpecError(f"key '{key}': expected a list, got {_show(v)}")
        if len(v) < min_len:
            raise SpecError(f"key '{key}': expected at least {min_len} entries, got {len(v)}")
        out = tuple(item(x, f"{key}[{i}]") for i, x in enumerate(v))
        for i, x in enumerate(out):
            if x in out[:i]:
                raise SpecError(f"key '{key}[{i}]': {_show(v[i])} is listed twice")
        return out

    return conv


def _params(v: Any, key: str) -> tuple[tuple[str, Any], ...]:
    if not isinstance(v, dict):
        raise SpecError(f"key '{key}': expected a table like {{ alpha = 0.5 }}, got {_show(v)}")
    return tuple(sorted((k, _freeze(x)) for k, x in v.items()))


class _FrozenTable(tuple):
    """A TOML table inside params, frozen as sorted (key, value) pairs."""


def _freeze(v: Any) -> Any:
    """Hashable copies of TOML values (params live in frozen dataclasses)."""
    if isinstance(v, dict):
        return _FrozenTable(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def check_source(v: Any, key: str) -> str:
    """A source string (``kind:target``), or :class:`SpecError` naming ``key``."""
    s = _str(v, key)
    kind, sep, rest = s.partition(":")
    if not sep or kind not in _SOURCE_KINDS or not rest:
        raise SpecError(
            f"key '{key}': expected simulator:NAME, jsonl:PATH, csv:PATH, parquet:PATH or "
            f"kafka:HOST:PORT/TOPIC, got {_show(v)}"
        )
    if kind == "kafka":
        host, _, topic = rest.partition("/")
        if ":" not in host or not topic:
            raise SpecError(f"key '{key}': expected kafka:HOST:PORT/TOPIC, got {_show(v)}")
    return s


# -- sections ------------------------------------------------------------------------------
def _pipeline(root: _Table, path: str | None) -> PipelineSpec:
    pipe = root.sub("pipeline")
    default_name = Path(path).stem if path else "eddy"
    name = pipe.get("name", _name, default_name if NAME_RE.match(default_name) else "eddy")
    duckdb = pipe.get("duckdb", _str, None)
    topic_prefix = pipe.get("topic_prefix", _str, None)
    batch_size = pipe.get("batch_size", _int_in(1, 1_000_000), 4_000)
    max_bytes = pipe.get("max_event_bytes", _int_in(64, 64 * 1024 * 1024), 65_536)
    seed = pipe.get("seed", _int_in(0, 2**63 - 1), 0)
    retention = pipe.get("retention", _window, None)
    shards = pipe.get("shards", _int_in(1, 256), None)
    pipe.done()
    tm = root.sub("time")
    lateness = tm.get("allowed_lateness", _duration, 2_000)
    late_policy = tm.get("late_policy", _choice("drop", "include"), "drop")
    max_ahead = tm.get("max_ahead", _window, Window(3_600_000, "1h")).ms
    idle_after = tm.get("idle_after", _window, Window(60_000, "1m")).ms
    tm.done()
    sim = root.get("simulator", _params, ())
    streams_t = root.sub("streams")
    if not streams_t.raw:
        raise SpecError("missing key 'streams': declare at least one [streams.NAME]")
    streams = tuple(_stream(streams_t, name) for name in streams_t.raw)
    streams_t.done()
    features = tuple(_features(t) for t in _array_of_tables(root, "features"))
    detect = tuple(_detect(t) for t in _array_of_tables(root, "detect"))
    decide = tuple(_decide(t) for t in _array_of_tables(root, "decide"))
    root.done()
    if not (features or detect or decide):
        raise SpecError("nothing to compute: add a [[features]], [[detect]] or [[decide]] stage")
    return PipelineSpec(
        name=name,
        streams=streams,
        features=features,
        detect=detect,
        decide=decide,
        allowed_lateness_ms=lateness,
        late_policy=late_policy,
        max_ahead_ms=max_ahead,
        idle_after_ms=idle_after,
        duckdb=duckdb,
        topic_prefix=topic_prefix,
        batch_size=batch_size,
        max_event_bytes=max_bytes,
        retention_ms=None if retention is None else retention.ms,
        shards=shards,
        seed=seed,
        simulator=sim,
        path=path,
    )


def _array_of_tables(root: _Table, name: str) -> list[_Table]:
    raw: Any = root.get(name, lambda v, _k: v, [])
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise SpecError(f"key '{name}': expected [[{name}]] tables, got {_show(raw)}")
    return [_Table(t, f"{name}[{i}]") for i, t in enumerate(raw)]


def _stream(parent: _Table, name: str) -> StreamSpec:
    key = parent.key(name)
    _name(name, key)
    t = parent.sub(name)
    source = t.need("source", check_source)
    time_field = t.need("time", _name)
    id_field = t.get("id", _name, None)
    id_type = t.get("id_type", _choice("string", "int"), "string")
    if id_field is None and "id_type" in t.raw:
        raise SpecError(f"key '{t.key('id_type')}': there is no 'id' for it to type")
    ftab = t.sub("fields")
    fields = tuple(_field(ftab, f) for f in ftab.raw)
    ftab.done()
    t.done()
    names = {f.name for f in fields}
    for special, what in ((time_field, "time"), (id_field, "id")):
        if special is not None and special in names:
            raise SpecError(
                f"key '{t.key('fields')}.{special}': the {what} field is declared by "
                f"'{t.key(what)}'; do not list it in fields"
            )
    if id_field is not None and id_field == time_field:
        raise SpecError(f"key '{t.key('id')}': the id and time fields must differ")
    return StreamSpec(
        name=name, source=source, time=time_field, fields=fields, id=id_field, id_type=id_type
    )


def _field(parent: _Table, name: str) -> FieldSpec:
    key = parent.key(name)
    _name(name, key)
    parent.get(name, lambda v, _k: v, None)  # marks it used
    raw = parent.raw[name]
    if isinstance(raw, str):
        return FieldSpec(name, _type(raw, key))
    t = _Table(raw, key)
    ftype = t.need("type", _type)
    lo = t.get("min", _number, None)
    hi = t.get("max", _number, None)
    optional = t.get("optional", _bool, False)
    default = t.get("default", lambda v, _k: v, None)
    t.done()
    if (lo is not None or hi is not None) and ftype not in ("float", "int", "list[string]"):
        raise SpecError(f"key '{key}.min': min/max apply to float, int and list[string] fields")
    if lo is not None and hi is not None and lo > hi:
        raise SpecError(f"key '{key}.max': expected max >= min ({lo:g}), got {hi:g}")
    if default is not None:
        _check_default(ftype, default, lo, hi, f"{key}.default")
        optional = True
    return FieldSpec(name, ftype, lo, hi, optional, _freeze(default))


def _type(v: Any, key: str) -> str:
    if v not in FIELD_TYPES:
        raise SpecError(
            f"key '{key}': expected a type from {', '.join(FIELD_TYPES)}; got {_show(v)}"
        )
    return str(v)


def _check_default(ftype: str, v: Any, lo: float | None, hi: float | None, key: str) -> None:
    ok = {
        "string": isinstance(v, str),
        "float": isinstance(v, int | float) and not isinstance(v, bool),
        "int": isinstance(v, int) and not isinstance(v, bool),
        "bool": isinstance(v, bool),
        "list[string]": isinstance(v, list) and all(isinstance(x, str) for x in v),
    }[ftype]
    if not ok:
        raise SpecError(f"key '{key}': expected a {ftype} value, got {_show(v)}")
    if ftype in ("float", "int") and ((lo is not None and v < lo) or (hi is not None and v > hi)):
        raise SpecError(f"key '{key}': {v!r} is outside [min, max]")


def _features(t: _Table) -> FeaturesSpec:
    name = t.need("name", _name)
    out = FeaturesSpec(
        name=name,
        stream=t.need("stream", _name),
        key=t.get("key", _name, None),
        metrics=t.need("metrics", _list(_name, min_len=1)),
        trailing=t.get("trailing", _list(_window), ()),
        aggregations=t.get(
            "aggregations", _list(_choice(*AGGREGATIONS), min_len=1), ("count", "mean")
        ),
        tumbling=t.get("tumbling", _list(_window), ()),
        sliding=t.get("sliding", _list(_slide_pair), ()),
        session_gap=t.get("session_gap", _list(_window), ()),
        store=t.get("store", _bool, False),
    )
    t.done()
    if not (out.trailing or out.tumbling or out.sliding or out.session_gap):
        raise SpecError(
            f"key '{t.path}': expected at least one of trailing, tumbling, sliding, session_gap"
        )
    if out.store and not out.trailing:
        raise SpecError(f"key '{t.key('store')}': store = true needs trailing windows")
    # "1m" and "60s" are one window under two names: the engine keeps one state per duration
    durations: tuple[tuple[str, list[Any]], ...] = (
        ("trailing", [w.ms for w in out.trailing]),
        ("tumbling", [w.ms for w in out.tumbling]),
        ("sliding", [(s.ms, h.ms) for s, h in out.sliding]),
        ("session_gap", [w.ms for w in out.session_gap]),
    )
    for what, ms in durations:
        for i, m in enumerate(ms):
            if m in ms[:i]:
                raise SpecError(f"key '{t.key(what)}[{i}]': the same duration is listed twice")
    return out


#: most sliding windows an event falls in (size / slide): each is a row of window_aggregates
#: per key and metric when it closes, so ["1h", "1ms"] would write millions per event
MAX_WINDOWS_PER_EVENT = 10_000


def _slide_pair(v: Any, key: str) -> tuple[Window, Window]:
    if not isinstance(v, list) or len(v) != 2:
        raise SpecError(f'key \'{key}\': expected [size, slide] like ["5m", "1m"], got {_show(v)}')
    size, slide = _window(v[0], f"{key}[0]"), _window(v[1], f"{key}[1]")
    if slide.ms > size.ms:
        raise SpecError(
            f"key '{key}[1]': expected a slide no longer than the size ({size.label}), "
            f"got {_show(v[1])}"
        )
    if size.ms % slide.ms:
        raise SpecError(
            f"key '{key}': expected the size to be a multiple of the slide, got {_show(v)}"
        )
    if size.ms // slide.ms > MAX_WINDOWS_PER_EVENT:
        raise SpecError(
            f"key '{key}': expected at most {MAX_WINDOWS_PER_EVENT} windows per event "
            f"(size / slide), got {size.ms // slide.ms} from {_show(v)}"
        )
    return size, slide


def _detect(t: _Table) -> DetectSpec:
    out = DetectSpec(
        name=t.need("name", _name),
        stream=t.need("stream", _name),
        key=t.get("key", _name, None),
        metrics=t.need("metrics", _list(_name, min_len=1)),
        detector=t.get("detector", _str, "ensemble"),
        params=t.get("params", _params, ()),
        threshold=t.get("threshold", _fraction, 0.99),
        cooldown_ms=t.get("cooldown", _duration, 30_000),
    )
    t.done()
    if out.detector not in ("ensemble", "rates") and not out.detector.startswith("river:"):
        raise SpecError(
            f"key '{t.key('detector')}': expected ensemble, rates or river:MODULE.CLASS "
            f"(e.g. river:anomaly.HalfSpaceTrees), got {_show(out.detector)}"
        )
    return out


def _fraction(v: Any, key: str) -> float:
    x = _number(v, key)
    if not 0.0 < x < 1.0:
        raise SpecError(f"key '{key}': expected a number in (0, 1), got {_show(v)}")
    return x


def _decide(t: _Table) -> DecideSpec:
    name = t.need("name", _name)
    stream = t.need("stream", _name)
    arms = t.need("arms", _list(_str, min_len=2))
    eligible = t.get("eligible", _name, None)
    policy = t.get("policy", _str, "linucb")
    params = t.get("params", _params, ())
    context = _context(t.sub("context"))
    reward = _reward(t.sub("reward"))
    log = t.get("log", _list(_name), ())
    drift = t.get("drift", _bool, True)
    shards = t.get("shards", _int_in(1, 256), 1)
    merge_every = t.get("merge_every", lambda v, k: _window(v, k).ms, 1_000)
    t.done()
    return DecideSpec(
        name=name,
        stream=stream,
        arms=arms,
        reward=reward,
        eligible=eligible,
        policy=policy,
        params=params,
        context=context,
        log=log,
        drift=drift,
        shards=shards,
        merge_every_ms=merge_every,
    )


def _context(t: _Table) -> ContextSpec:
    cat_raw: Any = t.get("categorical", lambda v, _k: v, [])
    if isinstance(cat_raw, dict):
        cat = tuple(
            (_name(k, t.key(f"categorical.{k}")), _int_in(2, 4096)(v, t.key(f"categorical.{k}")))
            for k, v in cat_raw.items()
        )
    else:
        names = _list(_name)(cat_raw, t.key("categorical"))
        cat = tuple((n, _DEFAULT_SLOTS) for n in names)
    out = ContextSpec(
        categorical=cat,
        numeric=t.get("numeric", _list(_name), ()),
        features=t.get("features", _list(_stage_column), ()),
        arm_features=t.get("arm_features", _list(_stage_column), ()),
    )
    t.done()
    return out


def _stage_column(v: Any, key: str) -> tuple[str, str]:
    s = _str(v, key)
    stage, dot, column = s.partition(".")
    if not dot or not NAME_RE.match(stage) or not (column == "*" or NAME_RE.match(column)):
        raise SpecError(
            f"key '{key}': expected FEATURES_NAME.COLUMN (or FEATURES_NAME.*) like "
            f'"cdn_health.startup_ms_mean_2m", got {_show(v)}'
        )
    return stage, column


def _reward(t: _Table) -> RewardSpec:
    if not t.raw:
        raise SpecError(
            f"missing key '{t.path}': a decide stage needs reward = "
            "{ stream, join, value, ttl, default }"
        )
    out = RewardSpec(
        stream=t.need("stream", _name),
        join=t.need("join", _name),
        value=t.need("value", _str),
        ttl_ms=t.get("ttl", _duration, 60_000),
        default=t.get("default", _number, 0.0),
        arm=t.get("arm", _name, None),
    )
    t.done()
    if out.ttl_ms <= 0:
        raise SpecError(f"key '{t.key('ttl')}': expected a duration > 0")
    return out


def as_mapping(params: tuple[tuple[str, Any], ...]) -> Mapping[str, Any]:
    """Frozen params back to plain dicts and lists (for constructors)."""
    return {k: _thaw(v) for k, v in params}


def _thaw(v: Any) -> Any:
    if isinstance(v, _FrozenTable):
        return {k: _thaw(x) for k, x in v}
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v

"""Cross-references of a parsed spec: every stage names a declared stream, key and fields of
the right types; names do not collide. Raises :class:`SpecError` naming the key path."""

from __future__ import annotations

from eddy.schemas.spec import (
    NUMERIC_TYPES,
    DecideSpec,
    DetectSpec,
    FeaturesSpec,
    FieldSpec,
    PipelineSpec,
    SpecError,
    StreamSpec,
)

__all__ = ["DECISION_COLUMNS", "check_references"]

#: columns of ``decisions`` every pipeline has (a logged event field may not take these names)
DECISION_COLUMNS = (
    "decision_id",
    "decide",
    "event_time",
    "arm",
    "arm_index",
    "propensity",
    "policy",
    "policy_version",
    "feature_version",
    "context",
    "eligible_arms",
    "decided_at",
    "latency_ms",
)
_KEY_TYPES = ("string", "int", "bool")


def check_references(spec: PipelineSpec) -> None:
    seen: dict[str, str] = {}
    kinds: tuple[tuple[str, tuple[FeaturesSpec | DetectSpec | DecideSpec, ...]], ...] = (
        ("features", spec.features),
        ("detect", spec.detect),
        ("decide", spec.decide),
    )
    for kind, stages in kinds:
        for i, st in enumerate(stages):
            where = f"{kind}[{i}]"
            if st.name in seen:
                raise SpecError(
                    f"key '{where}.name': {st.name!r} is already the name of {seen[st.name]}"
                )
            seen[st.name] = where
            stream = _stream(spec, st.stream, f"{where}.stream")
            if isinstance(st, DecideSpec):
                continue
            if st.key is not None:
                _typed(stream, st.key, _KEY_TYPES, f"{where}.key")
            for j, m in enumerate(st.metrics):
                _typed(stream, m, NUMERIC_TYPES, f"{where}.metrics[{j}]")
    for i, d in enumerate(spec.decide):
        _decide(spec, d, f"decide[{i}]")
    _logged_types(spec)


def _stream(spec: PipelineSpec, name: str, key: str) -> StreamSpec:
    try:
        return spec.stream(name)
    except KeyError:
        known = ", ".join(s.name for s in spec.streams)
        raise SpecError(f"key '{key}': no stream {name!r}; declared: {known}") from None


def _typed(stream: StreamSpec, name: str, types: tuple[str, ...], key: str) -> FieldSpec:
    try:
        f = stream.field(name)
    except KeyError:
        known = ", ".join(stream.field_names) or "none"
        raise SpecError(
            f"key '{key}': stream {stream.name!r} declares no field {name!r}; its fields: {known}"
        ) from None
    if f.type not in types:
        raise SpecError(
            f"key '{key}': field {name!r} of stream {stream.name!r} is {f.type}; "
            f"expected {' or '.join(types)}"
        )
    return f


def _decide(spec: PipelineSpec, d: DecideSpec, where: str) -> None:
    stream = spec.stream(d.stream)
    if stream.id is None:
        raise SpecError(
            f"key 'streams.{stream.name}.id': decide stage {d.name!r} needs an id field on its "
            "stream (the decision id that outcomes join on)"
        )
    if d.eligible is not None:
        _typed(stream, d.eligible, ("list[string]",), f"{where}.eligible")
    for field, _ in d.context.categorical:
        _typed(stream, field, ("string", "int", "bool"), f"{where}.context.categorical.{field}")
    for j, field in enumerate(d.context.numeric):
        _typed(stream, field, NUMERIC_TYPES, f"{where}.context.numeric[{j}]")
    for j, (stage, column) in enumerate(d.context.features):
        f = _features_column(spec, stage, column, f"{where}.context.features[{j}]")
        if f.stream != d.stream and f.key is not None:
            _typed(stream, f.key, _KEY_TYPES, f"{where}.context.features[{j}]")
    for j, (stage, column) in enumerate(d.context.arm_features):
        f = _features_column(spec, stage, column, f"{where}.context.arm_features[{j}]")
        if f.key is None:
            raise SpecError(
                f"key '{where}.context.arm_features[{j}]': features {stage!r} has no key; "
                "arm features need a features stage keyed by the arm's name"
            )
    for j, field in enumerate(d.log):
        _typed(
            stream, field, ("string", "float", "int", "bool", "list[string]"), f"{where}.log[{j}]"
        )
    r = d.reward
    if r.stream == d.stream:
        raise SpecError(
            f"key '{where}.reward.stream': outcomes come from another stream than the "
            f"decisions ({d.stream!r})"
        )
    outcomes = _stream(spec, r.stream, f"{where}.reward.stream")
    _typed(outcomes, r.join, ("string", "int"), f"{where}.reward.join")
    if r.arm is not None:
        _typed(outcomes, r.arm, ("string",), f"{where}.reward.arm")


def _features_column(spec: PipelineSpec, stage: str, column: str, key: str) -> FeaturesSpec:
    try:
        f = spec.features_stage(stage)
    except KeyError:
        known = ", ".join(x.name for x in spec.features) or "none"
        raise SpecError(
            f"key '{key}': no [[features]] named {stage!r}; declared: {known}"
        ) from None
    if not f.trailing:
        raise SpecError(
            f"key '{key}': features {stage!r} has no trailing windows, so no per-event columns"
        )
    if column != "*" and column not in f.columns:
        raise SpecError(
            f"key '{key}': features {stage!r} has no column {column!r}; its columns: "
            f"{', '.join(f.columns)}"
        )
    return f


def _logged_types(spec: PipelineSpec) -> None:
    """Event fields logged in ``decisions``: no clash with its fixed columns, and one type per
    column name across decide stages."""
    types: dict[str, tuple[str, str]] = {}
    for i, d in enumerate(spec.decide):
        stream = spec.stream(d.stream)
        for name in d.logged_fields:
            if name in DECISION_COLUMNS:
                raise SpecError(
                    f"key 'decide[{i}]': field {name!r} would be logged in decisions, where "
                    f"{name!r} is a column of its own; rename the field in the stream"
                )
            t = stream.field(name).type
            prev = types.setdefault(name, (t, d.name))
            if prev[0] != t:
                raise SpecError(
                    f"key 'decide[{i}]': field {name!r} is {t} here but {prev[0]} in decide "
                    f"{prev[1]!r}; decisions has one column per name"
                )

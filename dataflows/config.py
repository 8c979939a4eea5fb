"""The pipeline's TOML config: parsed, validated (errors name the key), turned into settings.

Every key is optional; ``dataflows/default.toml`` documents them all with their defaults.
Durations are strings like ``"250ms"``, ``"10s"``, ``"5m"``, ``"1h"`` (or integers in ms).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from eddy.operators.adserving import EngineConfig
from eddy.operators.bandits import POLICIES
from eddy.sources.simulator import SimConfig

__all__ = ["ConfigError", "Settings", "load_settings", "parse_duration"]


class ConfigError(ValueError):
    """A bad config: the message names the file and the key."""


@dataclass(frozen=True)
class Settings:
    duckdb: str
    batch_size: int
    max_event_bytes: int
    time_field: str
    simulator: SimConfig
    engine: EngineConfig


_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def parse_duration(value: Any) -> int:
    """``"10s" -> 10000``; an int is taken as milliseconds."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and (m := _DUR.match(value)):
        return int(float(m.group(1)) * _UNIT[m.group(2)])
    raise ValueError(f'expected a duration like "500ms", "10s" or "5m", got {value!r}')


def _int(lo: int, hi: int | None = None) -> Callable[[Any], int]:
    def conv(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"expected an integer, got {v!r}")
        if v < lo or (hi is not None and v > hi):
            raise ValueError(f"expected an integer in [{lo}, {hi if hi is not None else 'inf'}]")
        return v

    return conv


def _num(lo: float, hi: float | None = None) -> Callable[[Any], float]:
    def conv(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"expected a number, got {v!r}")
        if v < lo or (hi is not None and v > hi):
            raise ValueError(f"expected a number in [{lo}, {hi if hi is not None else 'inf'}]")
        return float(v)

    return conv


def _str(choices: tuple[str, ...] | None = None) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        if not isinstance(v, str) or not v:
            raise ValueError(f"expected a non-empty string, got {v!r}")
        if choices and v not in choices:
            raise ValueError(f"expected one of {list(choices)}, got {v!r}")
        return v

    return conv


def _list(item: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, ...]]:
    def conv(v: Any) -> tuple[Any, ...]:
        if not isinstance(v, list):
            raise ValueError(f"expected a list, got {v!r}")
        return tuple(item(x) for x in v)

    return conv


def _pair(v: Any) -> tuple[int, int]:
    if not isinstance(v, list) or len(v) != 2:
        raise ValueError(f'expected [size, slide] like ["1m", "10s"], got {v!r}')
    return parse_duration(v[0]), parse_duration(v[1])


def _params(v: Any) -> tuple[tuple[str, Any], ...]:
    if not isinstance(v, dict):
        raise ValueError(f"expected a table like {{ alpha = 0.5 }}, got {v!r}")
    return tuple(sorted(v.items()))


def _optional_duration(v: Any) -> int | None:
    return None if v in ("", "none", None) else parse_duration(v)


# section -> key -> converter
_SCHEMA: dict[str, dict[str, Callable[[Any], Any]]] = {
    "run": {
        "duckdb": _str(),
        "batch_size": _int(1, 1_000_000),
        "max_event_bytes": _int(64, 64 * 1024 * 1024),
    },
    "simulator": {
        "seed": _int(0),
        "rate_per_s": _num(0.001),
        "events": _int(0),
        "partners": _list(_str()),
        "outcome_delay": parse_duration,
        "outcome_loss": _num(0.0, 1.0),
        "incident_every": parse_duration,
        "drift_at": _optional_duration,
    },
    "time": {
        "field": _str(),
        "allowed_lateness": parse_duration,
        "late_policy": _str(("drop", "include")),
    },
    "features": {
        "trailing": _list(parse_duration),
        "tumbling": _list(parse_duration),
        "sliding": _list(_pair),
        "session_gap": _list(parse_duration),
    },
    "bandit": {
        "policy": _str(),
        "params": _params,
        "reward_ttl": parse_duration,
        "default_reward": _num(-1e9, 1e9),
        "latency_penalty_per_s": _num(0.0, 1e6),
    },
    "anomaly": {
        "threshold": _num(0.0, 1.0),
        "cooldown": parse_duration,
    },
}


def _validated(raw: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for section, body in raw.items():
        keys = _SCHEMA.get(section)
        if keys is None:
            raise ConfigError(f"{where}: unknown section [{section}]; known: {sorted(_SCHEMA)}")
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        for key, value in body.items():
            conv = keys.get(key)
            if conv is None:
                raise ConfigError(
                    f"{where}: unknown key '{section}.{key}'; known in [{section}]: {sorted(keys)}"
                )
            try:
                out.setdefault(section, {})[key] = conv(value)
            except ValueError as e:
                raise ConfigError(f"{where}: key '{section}.{key}': {e}") from None
    return out


def load_settings(path: str | Path | None = None) -> Settings:
    """Read ``path`` (or only the defaults) into :class:`Settings`; raises :class:`ConfigError`."""
    raw: dict[str, Any] = {}
    where = "config"
    if path is not None:
        where = f"config {path}"
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{where}: file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{where}: cannot read: {e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{where}: not valid TOML: {e}") from None
    cfg = _validated(raw, where)
    run, sim, tm = cfg.get("run", {}), cfg.get("simulator", {}), cfg.get("time", {})
    feat, ban, ano = cfg.get("features", {}), cfg.get("bandit", {}), cfg.get("anomaly", {})
    try:
        simcfg = SimConfig()
        simcfg = replace(
            simcfg,
            seed=sim.get("seed", simcfg.seed),
            rate_per_s=sim.get("rate_per_s", simcfg.rate_per_s),
            n_events=sim.get("events", simcfg.n_events),
            partners=sim.get("partners", simcfg.partners),
            outcome_delay_ms=float(sim.get("outcome_delay", simcfg.outcome_delay_ms)),
            outcome_loss=sim.get("outcome_loss", simcfg.outcome_loss),
            incident_every_s=sim.get("incident_every", simcfg.incident_every_s * 1000) / 1000,
            drift_at_s=(sim["drift_at"] / 1000 if sim.get("drift_at") is not None else None),
        )
        defaults = EngineConfig(arms=simcfg.partners)
        engine = replace(
            defaults,
            trailing_ms=feat.get("trailing", defaults.trailing_ms),
            tumbling_ms=feat.get("tumbling", defaults.tumbling_ms),
            sliding=feat.get("sliding", defaults.sliding),
            session_gap_ms=feat.get("session_gap", defaults.session_gap_ms),
            allowed_lateness_ms=tm.get("allowed_lateness", defaults.allowed_lateness_ms),
            late_policy=tm.get("late_policy", defaults.late_policy),
            policy=ban.get("policy", defaults.policy),
            policy_params=ban.get("params", defaults.policy_params),
            reward_ttl_ms=ban.get("reward_ttl", defaults.reward_ttl_ms),
            default_reward=ban.get("default_reward", defaults.default_reward),
            latency_penalty_per_s=ban.get("latency_penalty_per_s", defaults.latency_penalty_per_s),
            anomaly_threshold=ano.get("threshold", defaults.anomaly_threshold),
            anomaly_cooldown_ms=ano.get("cooldown", defaults.anomaly_cooldown_ms),
            seed=simcfg.seed,
        )
        simcfg = replace(simcfg, latency_penalty_per_s=engine.latency_penalty_per_s)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    try:  # the policy checks its own params: build a tiny one
        POLICIES[engine.policy](2, 1, **dict(engine.policy_params))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: key 'bandit.params': {e}") from None
    return Settings(
        duckdb=run.get("duckdb", "eddy.duckdb"),
        batch_size=run.get("batch_size", 4_000),
        max_event_bytes=run.get("max_event_bytes", 65_536),
        time_field=tm.get("field", "ts"),
        simulator=simcfg,
        engine=engine,
    )

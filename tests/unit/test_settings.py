"""Settings: flags > env > file > defaults, and invalid values name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from workhive.coordinator.settings import Settings, SettingsError, load_settings


def test_defaults_apply_when_nothing_is_given() -> None:
    assert load_settings(env={}) == Settings()


def test_file_overrides_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "workhive.yaml"
    cfg.write_text("steal_threshold: 7\netcd: [http://127.0.0.1:1, http://127.0.0.1:2]\n")
    s = load_settings(env={}, config_file=cfg)
    assert s.steal_threshold == 7
    assert s.etcd == ("http://127.0.0.1:1", "http://127.0.0.1:2")


def test_env_overrides_file(tmp_path: Path) -> None:
    cfg = tmp_path / "workhive.json"
    cfg.write_text('{"steal_threshold": 7}')
    s = load_settings(env={"WORKHIVE_STEAL_THRESHOLD": "4"}, config_file=cfg)
    assert s.steal_threshold == 4


def test_flags_override_env() -> None:
    s = load_settings({"steal_threshold": 9}, env={"WORKHIVE_STEAL_THRESHOLD": "4"})
    assert s.steal_threshold == 9


def test_flags_left_unset_do_not_override() -> None:
    s = load_settings({"steal_threshold": None}, env={"WORKHIVE_STEAL_THRESHOLD": "4"})
    assert s.steal_threshold == 4


def test_config_file_named_by_env(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("max_steal_batch: 2\n")
    assert load_settings(env={"WORKHIVE_CONFIG": str(cfg)}).max_steal_batch == 2


def test_seed_work_stealing_env_names_are_honoured() -> None:
    s = load_settings(
        env={
            "WORK_STEALING_ENABLED": "false",
            "WORK_STEALING_THRESHOLD": "6",
            "WORK_STEALING_INTERVAL": "2500",
        }
    )
    assert (s.stealing_enabled, s.steal_threshold, s.steal_interval) == (False, 6, 2.5)


def test_etcd_endpoints_parse_from_comma_separated_env() -> None:
    s = load_settings(env={"WORKHIVE_ETCD": "http://a:1, http://b:2"})
    assert s.etcd == ("http://a:1", "http://b:2")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WORKHIVE_STEAL_THRESHOLD": "many"}, "steal_threshold"),
        ({"WORKHIVE_FAST_FAILOVER": "maybe"}, "fast_failover"),
        ({"WORKHIVE_ELECTION_TTL": "1"}, "election_ttl"),
        ({"WORKHIVE_PRIORITY_THRESHOLD": "11"}, "priority_threshold"),
        ({"WORKHIVE_POLICY": "random"}, "policy"),
        ({"WORKHIVE_PREFIX": "workhive"}, "prefix"),
    ],
)
def test_invalid_value_is_rejected_naming_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(env=env)


def test_unknown_setting_in_file_is_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("steal_treshold: 3\n")
    with pytest.raises(SettingsError, match="unknown setting 'steal_treshold'"):
        load_settings(env={}, config_file=cfg)


def test_wrong_type_in_file_is_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("steal_threshold: [1]\n")
    with pytest.raises(SettingsError, match=r"steal_threshold.*file"):
        load_settings(env={}, config_file=cfg)


def test_missing_settings_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read settings file"):
        load_settings(env={}, config_file=tmp_path / "nope.yaml")

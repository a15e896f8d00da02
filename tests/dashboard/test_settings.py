"""The dashboard's settings: off by default, from flags or the environment, checked."""

from __future__ import annotations

import pytest

from workhive.coordinator.settings import SettingsError, load_settings


def test_the_dashboard_is_off_by_default() -> None:
    s = load_settings({}, env={})
    assert s.dashboard_port == 0 and s.dashboard_listen == "127.0.0.1"


def test_port_and_peers_come_from_the_environment() -> None:
    env = {
        "WORKHIVE_DASHBOARD_PORT": "8080",
        "WORKHIVE_DASHBOARD_PEERS": "http://10.0.0.2:8080/,http://10.0.0.3:8080/",
    }
    s = load_settings({}, env=env)
    assert s.dashboard_port == 8080
    assert s.dashboard_peers == ("http://10.0.0.2:8080/", "http://10.0.0.3:8080/")


def test_a_flag_beats_the_environment() -> None:
    s = load_settings({"dashboard_port": 9000}, env={"WORKHIVE_DASHBOARD_PORT": "8080"})
    assert s.dashboard_port == 9000


@pytest.mark.parametrize(
    ("name", "value"),
    [("dashboard_port", 70000), ("dashboard_peers", "ftp://x/"), ("dashboard_listen", "")],
)
def test_a_bad_value_is_refused_by_name(name: str, value: object) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value}, env={})

"""Logging: JSON when not a terminal, and secrets never reach the output."""

from __future__ import annotations

import json

import pytest
import structlog

from workhive.coordinator.logs import configure_logging


def test_json_renderer_emits_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    structlog.get_logger().info("hello", agent_id="a1")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["event"] == "hello" and record["agent_id"] == "a1"
    assert record["level"] == "info"


def test_secret_values_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    structlog.get_logger().info("auth", token="s3cr3t", etcd_password="hunter2")
    out = capsys.readouterr().err
    assert "s3cr3t" not in out and "hunter2" not in out
    assert '"token": "***"' in out


def test_console_renderer_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("console")
    structlog.get_logger().warning("careful", n=3)
    err = capsys.readouterr().err
    assert "careful" in err and "n=3" in err

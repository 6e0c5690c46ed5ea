"""JSON log lines carry the current trace and span ids, and plates are shown redacted."""

import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider

from services.common.logging import redact_plate, setup_logging

pytestmark = pytest.mark.unit


@pytest.fixture
def root_logger_restored():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_line_logged_inside_a_span_carries_its_ids(capsys, root_logger_restored) -> None:
    setup_logging("unit-test")
    tracer = TracerProvider().get_tracer(__name__)
    with tracer.start_as_current_span("work") as span:
        logging.getLogger("sightline.test").info("read stored", extra={"plate": redact_plate("7ABC123")})
    logging.getLogger("sightline.test").info("outside")
    inside, outside = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    ctx = span.get_span_context()
    assert inside["trace_id"] == format(ctx.trace_id, "032x") and inside["span_id"] == format(ctx.span_id, "016x")
    assert inside["service"] == "unit-test" and inside["level"] == "INFO" and inside["message"] == "read stored"
    assert "7ABC123" not in json.dumps(inside)
    assert "trace_id" not in outside


def test_redact_plate_keeps_two_characters_and_the_length() -> None:
    assert redact_plate("7ABC123") == "7A…(7)"
    assert redact_plate("") == ""

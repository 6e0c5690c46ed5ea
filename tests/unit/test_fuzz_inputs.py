"""Property tests: whatever bytes or text arrive, the input parsers answer with their own refusal, never crash.

The frame decoder and ingest's frame check (images and gateway reads), the plate normaliser and partial-plate
patterns, the search query builder (user input only ever becomes plain values, never operators), the hot-file
parser, and camera credentials in call metadata.
Run with `--hypothesis-show-statistics` to see how many inputs each property tried.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from services.common.plates import MAX_PLATE_LEN, InvalidQuery, normalize_plate, pattern_to_regex
from services.common.rejected import Rejected
from services.hotlist.domain.ncic import BadFile, WildcardPolicy, parse
from services.inference.vision.imaging import FrameDecodeError, decode_jpeg
from services.ingest.adapters.camera_auth import presented
from services.ingest.domain.frames import FrameLimits, validate_frame, validate_frame_reads
from services.search.domain.query import PageToken, build_query
from sightline.common.v1 import read_pb2
from sightline.ingest.v1 import ingest_pb2
from sightline.search.v1 import search_pb2

pytestmark = pytest.mark.unit
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
LIMITS = FrameLimits(max_bytes=256 * 1024, max_pixels=2000 * 2000, max_clock_skew=timedelta(minutes=5))
MANY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _jpeg(width: int = 32, height: int = 24) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


GOOD_JPEG = _jpeg()


@st.composite
def damaged_jpegs(draw: st.DrawFn) -> bytes:
    """A real JPEG with bytes flipped, cut short, or spliced with garbage; or bytes that only look like one."""
    data = bytearray(GOOD_JPEG)
    kind = draw(st.sampled_from(["flip", "truncate", "splice", "header"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 16))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif kind == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif kind == "splice":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=256))
    else:
        data = bytearray(b"\xff\xd8\xff\xe0" + draw(st.binary(max_size=512)))
    return bytes(data)


frame_bytes = st.one_of(st.binary(max_size=4096), damaged_jpegs())


@MANY
@given(frame_bytes)
def test_decoder_refuses_bad_bytes_with_its_own_error(data: bytes) -> None:
    try:
        pixels = decode_jpeg(data, LIMITS.max_pixels)
    except FrameDecodeError as exc:
        assert exc.reason
    else:
        assert pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype.name == "uint8"


ids = st.text(max_size=140)


@MANY
@given(camera=ids, frame_id=ids, data=frame_bytes, lat=st.floats(), lon=st.floats(),
       skew_s=st.integers(-10**9, 10**9))
def test_frame_check_refuses_with_a_status_never_crashes(camera, frame_id, data, lat, lon, skew_s) -> None:
    frame = ingest_pb2.Frame(camera_id=camera, frame_id=frame_id, jpeg=data)
    frame.captured_at.FromDatetime(NOW + timedelta(seconds=skew_s % (10**8)) - timedelta(days=500))
    frame.location.latitude, frame.location.longitude = lat, lon
    try:
        width, height = validate_frame(frame, LIMITS, NOW)
    except Rejected as exc:
        assert exc.code.name == "INVALID_ARGUMENT" and exc.message
    else:
        assert width * height <= LIMITS.max_pixels
        assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", i) for i in (camera, frame_id))


@pytest.mark.parametrize(("camera", "frame_id"), [("cam-1\n", "f-1"), ("cam-1", "f-1\n"), ("cam 1", "f-1")])
def test_ids_with_a_trailing_newline_are_refused(camera: str, frame_id: str) -> None:
    frame = ingest_pb2.Frame(camera_id=camera, frame_id=frame_id, jpeg=GOOD_JPEG)
    frame.captured_at.FromDatetime(NOW)
    with pytest.raises(Rejected):
        validate_frame(frame, LIMITS, NOW)


@MANY
@given(plates=st.lists(st.text(max_size=40), max_size=40), confidence=st.floats(), colour=st.text(max_size=40))
def test_gateway_reads_check_never_crashes(plates, confidence, colour) -> None:
    frame = ingest_pb2.FrameReads(camera_id="cam-1", frame_id="f-1")
    frame.captured_at.FromDatetime(NOW)
    for plate in plates:
        frame.reads.add(plate=plate, confidence=confidence, vehicle=read_pb2.Vehicle(colour=colour))
    try:
        validate_frame_reads(frame, LIMITS, NOW)
    except Rejected as exc:
        assert exc.code.name == "INVALID_ARGUMENT" and exc.message
    else:
        assert all(len(normalize_plate(p)) <= MAX_PLATE_LEN for p in plates)


@MANY
@given(st.text())
def test_normalised_plates_hold_only_a_z_0_9(text: str) -> None:
    plate = normalize_plate(text)
    assert re.fullmatch(r"[A-Z0-9]*", plate)
    assert normalize_plate(plate) == plate


PLATE_ALPHABET = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789?*")


@MANY
@given(st.one_of(st.text(max_size=40), st.text(PLATE_ALPHABET, max_size=30)))
def test_plate_patterns_become_safe_anchored_regexes(pattern: str) -> None:
    try:
        regex = pattern_to_regex(pattern)
    except InvalidQuery as exc:
        assert str(exc)
        return
    # Anchored, from A-Z 0-9 '.' and '.*' only: no group, no alternation, no nested quantifier to backtrack on.
    assert re.fullmatch(r"\^(?:[A-Z0-9]|\.\*|\.)+\$", regex) and ".*.*" not in regex
    re.compile(regex)


# --- search query builder -----------------------------------------------------------------------------------

ALLOWED_OPERATORS = {"$in", "$regex", "$gte", "$lt", "$and", "$or", "$geoWithin", "$centerSphere"}
FIELDS = {"plate_normalized", "plate_skeleton", "vehicle.type", "vehicle.colour", "vehicle.make", "location",
          "camera_id", "captured_at", "_id"}
hostile_text = st.one_of(st.text(max_size=40), st.sampled_from(
    ['{"$ne": null}', "$where", "$gt", "a.b", "ABC$", "^.*$", "(a+)+$", "[A-Z]", "\x00", "ABC\n123"]))


def _leaves(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """(key path, value) of every leaf; asserts every key is a known field or an allowed operator."""
    if isinstance(node, dict):
        out = []
        for key, value in node.items():
            assert key in ALLOWED_OPERATORS or key in FIELDS, f"unexpected key {key!r} at {path}"
            out += _leaves(value, f"{path}.{key}")
        return out
    if isinstance(node, list):
        return [leaf for i, item in enumerate(node) for leaf in _leaves(item, f"{path}[{i}]")]
    return [(path, node)]


def _ts(seconds: int):
    from google.protobuf.timestamp_pb2 import Timestamp

    return Timestamp(seconds=seconds)


@st.composite
def search_requests(draw: st.DrawFn) -> search_pb2.SearchReadsRequest:
    req = search_pb2.SearchReadsRequest()
    kind = draw(st.sampled_from([None, "plate_exact", "plate_pattern", "plate_fuzzy"]))
    if kind:
        setattr(req, kind, draw(hostile_text))
    if draw(st.booleans()):
        req.vehicle.type = draw(st.integers(-5, 10))
        req.vehicle.colour = draw(hostile_text)
        req.vehicle.make = draw(hostile_text)
        req.vehicle.no_plate = draw(st.booleans())
    if draw(st.booleans()):
        req.near.center.latitude = draw(st.floats())
        req.near.center.longitude = draw(st.floats())
        req.near.radius_m = draw(st.floats())
    req.camera_ids.extend(draw(st.lists(hostile_text, max_size=5)))
    if draw(st.booleans()):
        req.start_time.CopyFrom(_ts(draw(st.integers(0, 4_000_000_000))))
    if draw(st.booleans()):
        req.end_time.CopyFrom(_ts(draw(st.integers(0, 4_000_000_000))))
    req.page_size = draw(st.integers(-10, 1000))
    if draw(st.booleans()):
        req.page_token = draw(st.one_of(hostile_text, st.builds(
            lambda t, i: PageToken(t, i).encode(),
            st.datetimes(timezones=st.just(UTC)), hostile_text)))
    return req


@settings(max_examples=1500, deadline=None)
@given(search_requests())
def test_search_input_becomes_values_never_operators(req: search_pb2.SearchReadsRequest) -> None:
    try:
        query = build_query(req, 50, 500)
    except InvalidQuery as exc:
        assert str(exc)
        return
    assert 1 <= query.page_size <= 500
    for path, value in _leaves(query.filter):
        assert isinstance(value, str | int | float | bool | datetime | re.Pattern), (path, value)
        if path.endswith("$regex"):
            assert value.startswith("^") and value.endswith("$")
            assert re.fullmatch(r"\^(?:[A-Z0-9]|\.\*|\.|\[[A-Z0-9]+\])+\$", value), value


# --- hot-file parser ------------------------------------------------------------------------------------------

csv_like = st.lists(st.one_of(st.text(max_size=60), st.lists(
    st.one_of(st.text(max_size=12), st.sampled_from(["ABC123", "NY", "V", "20301231", "A?C*", "ZZ", ""])),
    max_size=9).map(",".join)), max_size=20)


@MANY
@given(header=st.sampled_from(["LIC,LIS,TYP,NIC,ORI,EXP", "plate,state,code", "", "no,plate,here"]), lines=csv_like)
def test_hot_file_lines_are_accepted_or_refused_with_a_reason(header: str, lines: list[str]) -> None:
    try:
        result = parse([header, *lines] if header else lines, "fuzz", NOW, WildcardPolicy(4, 100))
    except BadFile as exc:  # the whole file refused (no plate column), with the reason
        assert str(exc)
        return
    assert all(reason for _, reason in result.rejected)
    assert all(re.fullmatch(r"[A-Z0-9?*]{1,12}", e.plate) for e in result.entries)
    assert len(result.entries) + len(result.rejected) <= len(lines) + 1


# --- camera credentials ----------------------------------------------------------------------------------------


@MANY
@given(st.lists(st.tuples(st.sampled_from(["authorization", "x-other"]),
                          st.one_of(st.text(max_size=80), st.builds("Camera {}".format, st.text(max_size=80)))),
                max_size=5))
def test_camera_credentials_parse_or_are_refused(metadata: list[tuple[str, str]]) -> None:
    try:
        pairs = presented(metadata)
    except Rejected as exc:
        assert exc.code.name == "UNAUTHENTICATED"
        return
    assert all(camera_id and secret for camera_id, secret in pairs)

"""Camera sources: what opens and reads each kind (blocking; run on the camera's own thread).

Video (RTSP, HTTP MJPEG, files) is demuxed and decoded by FFmpeg through PyAV; no RTSP or RTP is written
here. A frame's capture time comes from the stream's presentation times (`StreamClock`), so delays and
bursts in delivery do not move it. JPEG snapshots and
dropped files carry no stream time: a snapshot's is the time of its response, a dropped file's its
modification time.
"""

from __future__ import annotations

import base64
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import av
import av.error
import cv2
import numpy as np

from .config import FileSource, FolderSource, MjpegSource, RtspSource, SnapshotSource, read_secret

JPEG_END = b"\xff\xd9"
VideoSource = RtspSource | MjpegSource | FileSource


class SourceError(Exception):
    """A source failed; `kind` names how (open, read, decode, bad_file) for the metric."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


_LUMA_FIRST = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "gray"})


@dataclass(frozen=True)
class Decoded:
    grey: np.ndarray
    captured_at: datetime
    colour: Callable[[], np.ndarray]  # the BGR image, made on demand


def _decoded(frame: av.VideoFrame, captured_at: datetime) -> Decoded:
    """A decoded frame's luma plane as its grey image (no conversion for the usual YUV formats)."""
    if frame.format.name in _LUMA_FIRST:
        plane = frame.planes[0]
        grey = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
    else:
        grey = frame.to_ndarray(format="gray")
    return Decoded(grey, captured_at, lambda: frame.to_ndarray(format="bgr24"))


def _with_credentials(url: str, username: str | None, password_file: Path | None) -> str:
    """The URL FFmpeg opens, with the user and password filled in (it is never logged)."""
    if username is None:
        return url
    parts = urlsplit(url)
    auth = quote(username, safe="")
    if password_file is not None:
        auth += ":" + quote(read_secret(password_file), safe="")
    netloc = f"{auth}@{parts.hostname}{':' + str(parts.port) if parts.port else ''}"
    return urlunsplit(parts._replace(netloc=netloc))


class StreamClock:
    """Capture times from a stream's presentation times (pure; the arrival time passed in).

    The first timestamped frame anchors the stream's time to the wall clock. A live source's frames cannot
    have been captured after they arrived: when one arrives earlier than its stream time says (the burst of
    buffered frames a server sends on connect, or times moved by the first RTCP report), the anchor moves back
    so that it fits, and every later frame keeps the stream's own spacing. A stream time that jumps back by
    more than `max_jump_s` (the stream restarted) anchors afresh. A frame without a timestamp (some MJPEG)
    gets its arrival time. A file's frames keep the time of the replay's start plus their stream time.
    """

    def __init__(self, live: bool, max_jump_s: float = 10.0) -> None:
        self._live = live
        self._max_jump = max_jump_s
        self._anchor: tuple[float, datetime] | None = None  # stream seconds, wall time
        self.elapsed = 0.0  # stream seconds since the anchor, of the last timestamped frame
        self._last = 0.0

    def capture_time(self, seconds: float | None, arrived: datetime) -> datetime:
        if seconds is None:
            return arrived
        if self._anchor is None or seconds < self._last - self._max_jump:
            self._anchor = (seconds, arrived)
        self._last = seconds
        start, wall = self._anchor
        self.elapsed = seconds - start
        elapsed = timedelta(seconds=self.elapsed)
        if self._live and wall + elapsed > arrived:
            wall = arrived - elapsed
            self._anchor = (start, wall)
        return wall + elapsed


def open_video(source: VideoSource) -> av.container.InputContainer:
    """Open the source's container; SourceError('open') when FFmpeg cannot."""
    try:
        if isinstance(source, FileSource):
            return av.open(str(source.path))
        if isinstance(source, RtspSource):
            options = {"rtsp_transport": source.transport, "timeout": str(int(source.timeout_s * 1e6))}
            url = _with_credentials(source.url, source.username, source.password_file)
            return av.open(url, options=options, timeout=(source.timeout_s, source.timeout_s))
        url = _with_credentials(source.url, source.username, source.password_file)
        return av.open(url, format="mpjpeg", timeout=(source.timeout_s, source.timeout_s))
    except (av.error.FFmpegError, OSError) as exc:
        raise SourceError("open", f"cannot open the source: {exc}") from exc


def decode_video(source: VideoSource, stop: threading.Event, *, threads: int = 0) -> Iterator[Decoded]:
    """Decoded frames until the source ends or fails (SourceError) or `stop` is set. `threads`: FFmpeg's
    decoding threads (0: its choice)."""
    container = open_video(source)
    try:
        stream = container.streams.video[0]
    except IndexError:
        container.close()
        raise SourceError("open", "the source has no video stream") from None
    stream.codec_context.thread_count = threads
    if threads != 1:
        stream.thread_type = "AUTO"
    if getattr(source, "keyframes_only", False):
        stream.codec_context.skip_frame = "NONKEY"
    is_file = isinstance(source, FileSource)
    realtime = is_file and source.realtime
    clock = StreamClock(live=not is_file)
    started = time.monotonic()
    try:
        for packet in container.demux(stream):
            if stop.is_set():
                return
            try:
                frames = packet.decode()
            except av.error.InvalidDataError as exc:
                raise SourceError("decode", f"corrupt data in the stream: {exc}") from exc
            for frame in frames:
                captured_at = clock.capture_time(frame.time, datetime.now(UTC))
                if realtime and (ahead := started + clock.elapsed - time.monotonic()) > 0 and stop.wait(ahead):
                    return
                yield _decoded(frame, captured_at)
    except av.error.FFmpegError as exc:
        raise SourceError("read", f"the stream failed: {exc}") from exc
    finally:
        container.close()


def poll_snapshot(source: SnapshotSource) -> Decoded:
    """One JPEG from the snapshot URL, decoded; SourceError('read' or 'decode')."""
    request = urllib.request.Request(source.url)
    if source.username is not None:
        password = read_secret(source.password_file) if source.password_file else ""
        token = base64.b64encode(f"{source.username}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=source.timeout_s) as reply:
            data = reply.read()
    except OSError as exc:
        raise SourceError("read", f"snapshot request failed: {exc}") from exc
    captured_at = datetime.now(UTC)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError("decode", "the snapshot is not a JPEG")
    return Decoded(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), captured_at, lambda: image)


@dataclass(frozen=True)
class DroppedFile:
    path: Path
    frame_id: str
    captured_at: datetime


_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")


def dropped_frame_id(path: Path, mtime_ns: int) -> str:
    """A dropped file's frame id: its name and modification time (the same if it is picked up again)."""
    stem = _UNSAFE.sub("_", path.stem).lstrip("._:-")[:96] or "file"
    return f"{stem}-{mtime_ns}"


class FolderWatch:
    """Complete JPEGs of a watched folder (an FTP drop), oldest first.

    A file is complete once its size and modification time have stayed the same for `settle_s` and it ends
    with the JPEG end marker: a file still being written is passed over until then. Pure bookkeeping apart
    from `scan`, which stats the folder; the clock is passed in.
    """

    def __init__(self, source: FolderSource) -> None:
        self._source = source
        self._seen: dict[Path, tuple[int, int, float]] = {}  # path -> size, mtime_ns, first seen unchanged
        self.waiting = 0  # files seen but not complete yet (being written, or never finished)

    def scan(self, now: float) -> list[DroppedFile]:
        ready: list[tuple[int, DroppedFile]] = []
        present = set()
        waiting = 0
        for path in self._source.path.glob(self._source.pattern):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if not path.is_file():
                continue
            present.add(path)
            size_time = (st.st_size, st.st_mtime_ns)
            seen = self._seen.get(path)
            if seen is None or seen[:2] != size_time:
                self._seen[path] = (*size_time, now)
                if self._source.settle_s > 0:
                    waiting += 1
                    continue
                seen = self._seen[path]
            if now - seen[2] < self._source.settle_s or st.st_size < 4 or not _ends_with_jpeg_marker(path):
                waiting += 1
                continue
            captured_at = datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC)
            ready.append((st.st_mtime_ns, DroppedFile(path, dropped_frame_id(path, st.st_mtime_ns), captured_at)))
        for gone in set(self._seen) - present:
            del self._seen[gone]
        self.waiting = waiting
        return [f for _, f in sorted(ready, key=lambda item: (item[0], item[1].path.name))]

    def done(self, path: Path) -> None:
        self._seen.pop(path, None)


def _ends_with_jpeg_marker(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            fh.seek(-2, 2)
            return fh.read(2) == JPEG_END
    except OSError:
        return False

"""A real RTSP server for the gateway's tests: GStreamer's gst-rtsp-server streaming an H.264 file.

Run with Debian's /usr/bin/python3 (python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-{base,good,bad};
scripts/bootstrap.sh installs them):

    /usr/bin/python3 tests/e2e/rtsp_server.py --port 8554 --mount /cam=video.mp4 [--mount /b=other.mp4]

Each mount streams its MP4 (H.264) in real time, over RTP on TCP or UDP as the client asks; the media is
shared, so every client sees the same moment of the stream, like a camera's. At the end of the file the
stream ends. The server prints "ready" once it listens, and runs until killed. Give each client its own mount:
gst-rtsp-server 1.22 aborts (gst_rtsp_media_get_rates: assertion failed) when two clients set up one shared
media at the same moment.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", action="append", required=True, help="/path=file.mp4")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for spec in args.mount:
        path, _, file = spec.partition("=")
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(f'( filesrc location="{file}" ! qtdemux ! h264parse ! '
                           "rtph264pay name=pay0 pt=96 config-interval=1 )")
        factory.set_shared(True)
        mounts.add_factory(path, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on port {args.port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()

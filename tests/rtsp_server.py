"""A real RTSP server for the live tests (GStreamer's GstRtspServer), bound to 127.0.0.1 only.

Run with Debian's Python, which has the GObject bindings (the venv does not)::

    /usr/bin/python3 tests/rtsp_server.py --port 8554 \
        --play /cam=clip.mp4 --record /pub=received.ts

``--play MOUNT=FILE`` serves an H.264 MP4 file in real time (each client gets its own session
from the first frame). ``--record MOUNT=FILE`` accepts a stream
pushed to it (RTSP ANNOUNCE/RECORD, as ``streamgan ... -o rtsp://...`` does) and writes what it
receives to an MPEG-TS file, which the tests read back. Prints ``READY <port>`` once listening.
Packages: gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gst-1.0 gstreamer1.0-plugins-
{base,good,bad,ugly} gstreamer1.0-libav.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def _pair(text: str) -> tuple[str, str]:
    mount, _, path = text.partition("=")
    if not mount.startswith("/") or not path:
        raise argparse.ArgumentTypeError(f"expected /mount=FILE, got {text}")
    return mount, path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--play", type=_pair, action="append", default=[])
    ap.add_argument("--record", type=_pair, action="append", default=[])
    args = ap.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")  # loopback only
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for mount, path in args.play:
        launch = (f'( filesrc location="{path}" ! qtdemux name=src ! h264parse ! '
                  f'rtph264pay name=pay0 pt=96 config-interval=0 )')
        f = GstRtspServer.RTSPMediaFactory()
        f.set_launch(launch)
        f.set_shared(False)  # every client gets its own session from the first frame
        mounts.add_factory(mount, f)
    for mount, path in args.record:
        f = GstRtspServer.RTSPMediaFactory()
        f.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
        f.set_launch(f'( rtph264depay name=depay0 ! h264parse ! '
                     f'video/x-h264,stream-format=byte-stream ! mpegtsmux ! '
                     f'filesink location="{path}" buffer-mode=unbuffered sync=false )')
        f.set_latency(0)
        mounts.add_factory(mount, f)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY {args.port}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

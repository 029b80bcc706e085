"""A real RTSP server for the live tests (GStreamer's GstRtspServer), bound to 127.0.0.1 only.

Run with Debian's Python, which has the GObject bindings (the venv does not)::

    /usr/bin/python3 tests/rtsp_server.py --port 8554 \
        --play /cam=clip.mp4 --record /pub=received.ts

``--play MOUNT=FILE`` serves an H.264 MP4 file (H.265 when named ``*.h265.mp4``) in real time
(each client gets its own session from the first frame). ``--record MOUNT=FILE`` accepts a
stream pushed to it (RTSP ANNOUNCE/RECORD, as ``streamgan ... -o rtsp://...`` does) and writes
what it receives to an MPEG-TS file, which the tests read back. ``--auth user:password`` asks
for basic authentication. Prints ``READY <port>`` once listening. The ``Server`` class runs it
as a subprocess for the tests.
Packages: gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gst-1.0 gstreamer1.0-plugins-
{base,good,bad,ugly} gstreamer1.0-libav.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_PYTHON = os.environ.get("STREAMGAN_GST_PYTHON", "/usr/bin/python3")  # has the bindings
HERE = Path(__file__).resolve()


def _gi():
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    return GLib, Gst, GstRtspServer


# -- used by the tests (in the venv) ----------------------------------------------------------
def unavailable() -> str:
    """'' when Debian's Python can run this server, else why not (the tests skip with it)."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} not found"
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', "
                        "'1.0'); from gi.repository import GstRtspServer"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode:
        return ("GStreamer RTSP server not installed (apt-get install gstreamer1.0-rtsp "
                "gir1.2-gst-rtsp-server-1.0 python3-gst-1.0 gstreamer1.0-plugins-good "
                "gstreamer1.0-plugins-bad gstreamer1.0-libav)")
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """This script as a subprocess on 127.0.0.1:port; ``stop()`` always kills it."""

    def __init__(self, *, play: dict | None = None, record: dict | None = None,
                 auth: str | None = None, port: int | None = None, timeout: float = 20.0):
        self.port = port or free_port()
        self.play, self.record, self.auth = play or {}, record or {}, auth
        self.proc = None
        self.start(timeout)

    def start(self, timeout: float = 20.0) -> None:
        cmd = [SYSTEM_PYTHON, str(HERE), "--port", str(self.port)]
        cmd += [a for m, f in self.play.items() for a in ("--play", f"{m}={f}")]
        cmd += [a for m, f in self.record.items() for a in ("--record", f"{m}={f}")]
        cmd += ["--auth", self.auth] if self.auth else []
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        deadline = time.monotonic() + timeout
        out = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out += self.proc.stdout.read()
                raise RuntimeError(f"RTSP server exited: {out}")
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                out += line
                if line.startswith("READY"):
                    return
        self.stop()
        raise RuntimeError(f"RTSP server not ready within {timeout} s: {out}")

    def url(self, mount: str, auth: str | None = None) -> str:
        return f"rtsp://{auth + '@' if auth else ''}127.0.0.1:{self.port}{mount}"

    def kill(self) -> None:
        """Die at once (SIGKILL), as a crashed camera would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()


# -- the server (Debian's Python) ---------------------------------------------------------------


def _pair(text: str) -> tuple[str, str]:
    mount, _, path = text.partition("=")
    if not mount.startswith("/") or not path:
        raise argparse.ArgumentTypeError(f"expected /mount=FILE, got {text}")
    return mount, path


def _allow(factory, auth) -> None:
    if auth:
        _, Gst, _ = _gi()
        factory.add_role_from_structure(Gst.Structure.from_string(
            "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--play", type=_pair, action="append", default=[])
    ap.add_argument("--record", type=_pair, action="append", default=[])
    ap.add_argument("--auth", help="user:password required for every mount (basic auth)")
    args = ap.parse_args()

    GLib, Gst, GstRtspServer = _gi()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")  # loopback only
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    if args.auth:
        user, _, password = args.auth.partition(":")
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
    for mount, path in args.play:
        codec = "h265" if path.endswith((".h265.mp4", ".hevc.mp4")) else "h264"
        launch = (f'( filesrc location="{path}" ! qtdemux name=src ! {codec}parse ! '
                  f'rtp{codec}pay name=pay0 pt=96 config-interval=0 )')
        f = GstRtspServer.RTSPMediaFactory()
        f.set_launch(launch)
        f.set_shared(False)  # every client gets its own session from the first frame
        _allow(f, args.auth)
        mounts.add_factory(mount, f)
    for mount, path in args.record:
        f = GstRtspServer.RTSPMediaFactory()
        f.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
        f.set_launch(f'( rtph264depay name=depay0 ! h264parse ! '
                     f'video/x-h264,stream-format=byte-stream ! mpegtsmux ! '
                     f'filesink location="{path}" buffer-mode=unbuffered sync=false )')
        f.set_latency(0)
        f.set_eos_shutdown(True)  # flush the muxer (its last frame) when the publisher leaves
        _allow(f, args.auth)
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

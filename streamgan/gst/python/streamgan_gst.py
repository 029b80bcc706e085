"""The ``streamgan`` GStreamer element: a streamgan model as a video filter in any pipeline.

    gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! videoconvert ! streamgan task=derain \\
        ! videoconvert ! x264enc ! mp4mux ! filesink location=out.mp4

GStreamer's Python plugin loader finds this file through GST_PLUGIN_PATH (``eval "$(streamgan
gst-env)"``). One model per element instance, loaded when the element starts; frames are
collected into batches of ``batch`` and every buffer keeps its timestamps, flags and metadata
(only its pixels change). End of stream pushes out every frame still held. Errors go to the
bus with the command line's words (docs/GSTREAMER.md).
"""

from __future__ import annotations

import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstBase", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, GObject, Gst, GstBase, GstVideo  # noqa: E402

from streamgan.gstreamer import FORMATS, from_i420, from_rgb, to_i420, to_rgb  # noqa: E402

_CAPS = Gst.Caps.from_string(
    f"video/x-raw, format=(string){{ {', '.join(FORMATS)} }}, width=(int)[ 16, 32768 ], "
    "height=(int)[ 16, 32768 ], framerate=(fraction)[ 0/1, 2147483647/1 ]")
_RW = GObject.ParamFlags.READWRITE
_KEEP = Gst.BufferCopyFlags.FLAGS | Gst.BufferCopyFlags.TIMESTAMPS | Gst.BufferCopyFlags.META


class StreamganFilter(GstBase.BaseTransform):
    __gtype_name__ = "GstStreamgan"
    __gstmetadata__ = (
        "streamgan", "Filter/Effect/Video",
        "Cleans and restyles driving video with a streamgan model (derain: rainy -> clear, "
        "day2night), frame by frame on the best backend present; timestamps and metadata kept",
        "streamgan")
    __gsttemplates__ = (Gst.PadTemplate.new("src", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS,
                                            _CAPS),
                        Gst.PadTemplate.new("sink", Gst.PadDirection.SINK,
                                            Gst.PadPresence.ALWAYS, _CAPS))
    __gproperties__ = {
        "task": (str, "task", "Task name (derain, day2night), plugin folder or .onnx file",
                 "derain", _RW),
        "backend": (str, "backend", "auto (TensorRT > PyTorch CUDA > OpenVINO > ONNX Runtime), "
                    "tensorrt, torch, openvino, onnxruntime", "auto", _RW),
        "precision": (str, "precision", "auto, fp32, bf16, fp16, int8", "auto", _RW),
        "size": (int, "size", "Run the model at this short side (0: the model card's policy)",
                 0, 16384, 0, _RW),
        "batch": (int, "batch", "Frames per model call (each waits for the batch to fill; end "
                  "of stream pushes out the rest)", 1, 64, 1, _RW),
        "night-exposure": (str, "night exposure", "day2night: dashcam or bright (empty: the model "
                           "card's default)", "", _RW),
    }

    def __init__(self):
        super().__init__()
        self.props_ = {"task": "derain", "backend": "auto", "precision": "auto", "size": 0,
                       "batch": 1, "night-exposure": ""}
        self.translator = None
        self.info = None
        self.pending: list = []  # input buffers waiting for their batch
        self.ready: list = []  # output buffers to push
        self.model_seconds = 0.0  # the last batch's model time (for the latency query)
        self.set_in_place(False)
        self.set_passthrough(False)
        self.srcpad.set_query_function_full(self._src_query)

    # -- properties ---------------------------------------------------------------------------
    def do_get_property(self, prop):
        return self.props_[prop.name]

    def do_set_property(self, prop, value):
        if self.translator is not None and prop.name != "batch":
            Gst.warning(f"streamgan: {prop.name} is read when the element starts; it is running")
        self.props_[prop.name] = value

    # -- lifecycle ----------------------------------------------------------------------------
    def do_start(self):
        from streamgan.errors import StreamganError
        from streamgan.translator import Translator

        p = self.props_
        try:
            self.translator = Translator(p["task"], p["backend"], p["precision"],
                                         size=p["size"] or None, batch_size=p["batch"],
                                         night_exposure=p["night-exposure"] or None)
        except StreamganError as e:
            self._error(Gst.LibraryError.INIT, str(e))
            return False
        except Exception as e:  # noqa: BLE001 - the bus, never a crash
            self._error(Gst.LibraryError.INIT, f"cannot load the model: {e}")
            return False
        return True

    def do_stop(self):
        self.translator, self.pending, self.ready = None, [], []
        return True

    def do_set_caps(self, incaps, outcaps):
        info = GstVideo.VideoInfo.new_from_caps(incaps)
        if info is None:
            self._error(Gst.StreamError.FORMAT, f"cannot read the caps {incaps.to_string()}")
            return False
        self.info = info
        return True

    # -- frames -------------------------------------------------------------------------------
    def do_submit_input_buffer(self, is_discont, buf):
        if is_discont and self.translator is not None:  # a gap in the stream: a temporal model
            ret = self._run_pending()  # starts over after the frames before it
            if ret != Gst.FlowReturn.OK:
                return ret
            self.translator.reset()
        self.pending.append(buf)
        if len(self.pending) >= max(1, self.props_["batch"]):
            return self._run_pending()
        return Gst.FlowReturn.OK

    def do_generate_output(self):
        if self.ready:
            return Gst.FlowReturn.OK, self.ready.pop(0)
        return Gst.FlowReturn.OK, None

    def do_sink_event(self, event):
        if event.type in (Gst.EventType.EOS, Gst.EventType.CAPS, Gst.EventType.SEGMENT_DONE):
            # the frames held belong before this event: out with them first
            if self._run_pending() != Gst.FlowReturn.OK:
                return False
            while self.ready:
                if self.srcpad.push(self.ready.pop(0)) not in (Gst.FlowReturn.OK,
                                                               Gst.FlowReturn.FLUSHING):
                    break
        elif event.type == Gst.EventType.FLUSH_STOP:  # a seek: a temporal model starts over
            self.pending, self.ready = [], []
            if self.translator is not None:
                self.translator.reset()
        return GstBase.BaseTransform.do_sink_event(self, event)

    def _src_query(self, pad, parent, query):
        """The latency query answered with what this element adds; the rest as BaseTransform
        answers them."""
        if query.type == Gst.QueryType.LATENCY:
            ok = self.sinkpad.peer_query(query)
            if ok:
                live, lo, hi = query.parse_latency()
                ours = self._latency()
                query.set_latency(live, lo + ours,
                                  hi if hi == Gst.CLOCK_TIME_NONE else hi + ours)
            return ok
        return GstBase.BaseTransform.do_query(self, Gst.PadDirection.SRC, query)

    def _latency(self) -> int:
        """What this element adds: the frames a batch waits for, and the model's time."""
        wait = 0
        if self.info is not None and self.info.fps_n > 0:
            wait = (self.props_["batch"] - 1) * Gst.SECOND * self.info.fps_d // self.info.fps_n
        return int(wait + self.model_seconds * Gst.SECOND)

    def _run_pending(self):
        if not self.pending:
            return Gst.FlowReturn.OK
        batch, self.pending = self.pending, []
        info = self.info
        fmt = info.finfo.name
        offsets, strides = list(info.offset), list(info.stride)
        try:
            import numpy as np

            # YUV of an even size goes to the model as I420 (converted inside the backend's
            # graph where it can, as the command line does); the rest as RGB
            yuv = fmt in ("I420", "NV12") and info.width % 2 == 0 and info.height % 2 == 0
            read, run, write = (to_i420, self.translator.translate_i420, from_i420) if yuv \
                else (to_rgb, self.translator.translate, from_rgb)
            frames = []
            for buf in batch:
                ok, m = buf.map(Gst.MapFlags.READ)
                if not ok:
                    raise RuntimeError("cannot read a buffer")
                try:
                    frames.append(read(m.data, fmt, info.width, info.height, offsets, strides))
                finally:
                    buf.unmap(m)
            t0 = time.perf_counter()
            outs = run(np.stack(frames))
            self.model_seconds = time.perf_counter() - t0
            for buf, out in zip(batch, outs):
                data = write(out, fmt, info.size, offsets, strides)
                new = Gst.Buffer.new_wrapped(data)
                new.copy_into(buf, _KEEP, 0, buf.get_size())  # timestamps, flags, metadata
                self.ready.append(new)
        except Exception as e:  # noqa: BLE001 - a model or backend error goes to the bus
            from streamgan.errors import StreamganError

            text = str(e) if isinstance(e, StreamganError) else f"translation failed: {e}"
            self._error(Gst.StreamError.FAILED, text)
            return Gst.FlowReturn.ERROR
        return Gst.FlowReturn.OK

    def _error(self, code, text: str) -> None:
        from streamgan.io import redact

        domain = Gst.LibraryError.quark() if isinstance(code, Gst.LibraryError) else \
            Gst.StreamError.quark()
        msg = Gst.Message.new_error(self, GLib.Error.new_literal(domain, redact(text), int(code)),
                                    redact(text))
        self.post_message(msg)


GObject.type_register(StreamganFilter)
__gstelementfactory__ = ("streamgan", Gst.Rank.NONE, StreamganFilter)

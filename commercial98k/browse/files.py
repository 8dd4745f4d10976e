"""The files ``c98k browse`` serves: only regular files under the data root, and keyframe thumbnails.

A request path is refused when, after URL decoding, it is absolute, holds a ``..`` or an empty,
NUL or backslash segment, or when the file it names lies outside the root once symlinks are
followed (a symlink inside the root pointing out of it is refused too: the browser is a server,
and the root is what the user chose to show).
"""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from pathlib import Path

from commercial98k.errors import C98kError
from commercial98k.media.ffmpeg_io import seek_before, video_stream
from commercial98k.storage.files import DataRoot


class Refused(C98kError, ValueError):
    """A path the server does not serve; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def served_path(root: DataRoot, reference: str) -> Path:
    """The file under ``root`` that ``reference`` (a decoded, root-relative path) names.

    Raises ``Refused`` (403 escaping the root, 400 malformed, 404 absent or not a file) naming it.
    """
    if not reference or "\x00" in reference or "\\" in reference:
        raise Refused(400, f"error: path {reference!r} is malformed")
    if reference.startswith("/") or os.path.isabs(reference):
        raise Refused(403, f"error: path {reference!r} is absolute; only paths under the data root are served")
    segments = reference.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise Refused(403, f"error: path {reference!r} has an empty, '.' or '..' segment")
    try:
        lexical = root.resolve(reference)
    except ValueError as e:
        raise Refused(403, f"error: {e}") from None
    real = os.path.realpath(lexical)
    if not DataRoot(os.path.realpath(root.root)).contains(real):
        raise Refused(403, f"error: path {reference!r} leads out of the data root {root.root} (a symlink)")
    if not os.path.isfile(real):
        raise Refused(404, f"error: no file {reference!r} under the data root")
    return Path(real)


class Thumbnails:
    """JPEG keyframes of video spans, decoded with PyAV and kept in a small LRU cache.

    At most ``workers`` decodes run at once: a page of 60 cards asks for 60 thumbnails together,
    and the machine's cores are shared with the server's queries.
    """

    def __init__(self, width: int = 320, cache_items: int = 2048, workers: int = 2):
        self.width = width
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._cache_items = cache_items
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(workers)

    def get(self, path: Path, t: float) -> bytes:
        """The JPEG of the first frame of ``path`` at or after ``t`` seconds (the last frame if past the end)."""
        st = path.stat()
        key = (str(path), st.st_mtime_ns, round(t, 2))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        with self._slots:
            data = self._decode(path, t)
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self._cache_items:
                self._cache.popitem(last=False)
        return data

    def _decode(self, path: Path, t: float) -> bytes:
        # Reference frames only first: a frame within a B-frame gap of t, 5x less decoding on
        # 1080p H.264; codecs that mark no frame as non-reference decode all anyway.
        picture = self._frame(path, t, "NONREF") or self._frame(path, t, "DEFAULT")
        if picture is None:
            raise ValueError(f"{path.name}: no frame decoded at {t:.2f} s")
        picture.thumbnail((self.width, self.width * 4))
        out = io.BytesIO()
        picture.save(out, format="JPEG", quality=80)
        return out.getvalue()

    @staticmethod
    def _frame(path: Path, t: float, skip: str):
        """The first decoded frame at or after ``t`` (the last one before the end) as a PIL image, or None."""
        import av

        with av.open(str(path)) as container:
            stream = video_stream(container)
            if stream is None:
                raise ValueError(f"{path.name}: no video stream")
            stream.thread_type = "AUTO"
            stream.codec_context.skip_frame = skip
            seek_before(container, stream, t)
            image = None
            for frame in container.decode(stream):
                image = frame
                if frame.time is not None and frame.time >= t:
                    break
            return image.to_image() if image is not None else None

"""Built-in processors on synthetic images, and finding processors by name or path."""

from __future__ import annotations

import cv2
import msgpack
import numpy as np
import pytest

from framebroker.consumers import builtin_names, load_processor
from framebroker.consumers.processors.faces import FaceDetector, default_cascade_path
from framebroker.consumers.processors.motion import MotionDetector
from framebroker.errors import ProcessorError
from framebroker.testing import make_frame


def scene(x, y, size=(240, 320)):
    image = np.full((*size, 3), 60, np.uint8)
    cv2.rectangle(image, (x, y), (x + 40, y + 40), (255, 255, 255), -1)
    return image


def assert_plain(result):
    assert msgpack.unpackb(msgpack.packb(result)) == result


def test_builtins_are_listed():
    assert builtin_names() == ["faces", "motion", "qr", "stats"]


def test_stats_on_a_synthetic_image():
    image = np.zeros((100, 200), np.uint8)
    image[:, 100:] = 255  # half black, half white: one sharp edge
    frame = make_frame(image=image)
    result = load_processor("stats")(frame)
    assert_plain(result)
    assert result["width"] == 200 and result["height"] == 100 and result["channels"] == 1
    assert result["brightness"] == pytest.approx(127.5)
    assert result["sharpness"] > 100
    assert result["bytes"] == 200 * 100
    flat = load_processor("stats")(
        make_frame(image=np.full((100, 200, 3), 9, np.uint8), encoding="jpeg")
    )
    assert flat["sharpness"] == pytest.approx(0.0, abs=0.5)
    assert flat["brightness"] == pytest.approx(9, abs=1)
    assert flat["channels"] == 3 and flat["bytes"] < 200 * 100 * 3


def test_motion_detects_a_moved_rectangle_per_stream():
    motion = load_processor("motion")
    first = motion(make_frame(image=scene(20, 20)))
    assert first == {"score": 0.0, "boxes": []}  # nothing to compare with yet
    assert motion(make_frame("other", image=scene(20, 20)))["score"] == 0.0
    moved = motion(make_frame(seq=1, image=scene(200, 150)))
    assert_plain(moved)
    assert moved["score"] > 0.02
    # Two regions changed: where the rectangle was and where it is now.
    assert len(moved["boxes"]) == 2
    for x, y in ((20, 20), (200, 150)):
        assert any(
            bx <= x and by <= y and x + 40 <= bx + w and y + 40 <= by + h
            for bx, by, w, h in moved["boxes"]
        )
    still = motion(make_frame(seq=2, image=scene(200, 150)))
    assert still == {"score": 0.0, "boxes": []}


def test_motion_boxes_are_in_the_frames_own_pixels_when_downscaled():
    motion = MotionDetector(max_width=160)  # compares 640-wide frames at 1/4 size
    motion(make_frame(image=scene(0, 0, size=(480, 640))))
    result = motion(make_frame(image=scene(400, 300, size=(480, 640))))
    assert any(abs(x - 400) <= 12 and abs(y - 300) <= 12 for x, y, _, _ in result["boxes"])


def test_motion_ignores_small_noise_and_resolution_changes():
    motion = MotionDetector()
    rng = np.random.default_rng(1)
    base = np.full((240, 320), 100, np.uint8)
    motion(make_frame(image=base))
    noisy = np.clip(base + rng.integers(-5, 6, base.shape), 0, 255).astype(np.uint8)
    assert motion(make_frame(image=noisy))["score"] == 0.0
    assert motion(make_frame(image=np.full((120, 160), 0, np.uint8)))["score"] == 0.0  # reset


def test_faces_loads_the_bundled_cascade_and_returns_boxes_as_a_list():
    faces = load_processor("faces")
    noise = np.random.default_rng(2).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    result = faces(make_frame(image=noise, encoding="jpeg"))
    assert_plain(result)
    assert isinstance(result["faces"], list)
    assert result["count"] == len(result["faces"])
    assert all(len(box) == 4 for box in result["faces"])
    assert default_cascade_path().endswith("haarcascade_frontalface_default.xml")


def test_faces_with_a_bad_cascade_path_raises(tmp_path):
    with pytest.raises(ProcessorError, match="not found"):
        FaceDetector(str(tmp_path / "missing.xml"))
    garbage = tmp_path / "garbage.xml"
    garbage.write_text("<opencv_storage><nothing/></opencv_storage>")
    with pytest.raises(ProcessorError, match="cannot load Haar cascade"):
        FaceDetector(str(garbage))


def qr_image(text):
    code = cv2.QRCodeEncoder.create().encode(text)
    code = cv2.resize(code, None, fx=8, fy=8, interpolation=cv2.INTER_NEAREST)
    code = cv2.copyMakeBorder(code, 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=255)
    return cv2.cvtColor(code, cv2.COLOR_GRAY2BGR)


def test_qr_decodes_text_and_corners():
    qr = load_processor("qr")
    result = qr(make_frame(image=qr_image("framebroker says hi"), encoding="jpeg"))
    assert_plain(result)
    assert result["count"] == 1
    (code,) = result["codes"]
    assert code["text"] == "framebroker says hi"
    assert len(code["corners"]) == 4
    assert all(30 <= x <= 330 and 30 <= y <= 330 for x, y in code["corners"])
    empty = qr(make_frame(image=np.full((200, 200, 3), 255, np.uint8)))
    assert empty == {"codes": [], "count": 0}


def test_load_processor_from_module_and_file(tmp_path, monkeypatch):
    (tmp_path / "fb_test_procs.py").write_text(
        "def brightness(frame):\n"
        "    return {'mean': float(frame.gray.mean())}\n"
        "class Counter:\n"
        "    def __init__(self):\n"
        "        self.n = 0\n"
        "    def __call__(self, frame):\n"
        "        self.n += 1\n"
        "        return {'n': self.n}\n"
        "LIMIT = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    frame = make_frame(image=np.full((10, 10), 7, np.uint8))
    assert load_processor("fb_test_procs:brightness")(frame) == {"mean": 7.0}
    counter = load_processor("fb_test_procs:Counter")  # a class is instantiated
    assert counter(frame) == {"n": 1} and counter(frame) == {"n": 2}
    by_path = load_processor(f"{tmp_path / 'fb_test_procs.py'}:brightness")
    assert by_path(frame) == {"mean": 7.0}
    with pytest.raises(ProcessorError, match="not a callable"):
        load_processor("fb_test_procs:LIMIT")
    with pytest.raises(ProcessorError, match="no attribute 'nope'"):
        load_processor("fb_test_procs:nope")


def test_builtins_with_state_are_fresh_per_load():
    assert load_processor("motion") is not load_processor("motion")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nosuch", "unknown processor 'nosuch'"),
        ("module:", "unknown processor"),
        (":func", "unknown processor"),
        ("fb_no_such_module_x:func", "cannot import processor module"),
        ("missing/dir/file.py:func", "processor file not found"),
    ],
)
def test_bad_specs_raise_a_clear_processor_error(spec, message):
    with pytest.raises(ProcessorError, match=message):
        load_processor(spec)


def test_a_module_that_fails_to_import_raises_processor_error(tmp_path):
    broken = tmp_path / "broken_proc.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ProcessorError, match="boom"):
        load_processor(f"{broken}:f")

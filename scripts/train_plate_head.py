#!/usr/bin/env python
"""Train the plate head of ``plate_reader``: a small sequence model on PP-OCRv6's recognition features
that reads only a plate's serial, in ``A-Z0-9``, and reads nothing from a line that is not the serial
(state names, slogans, dealer frames).

    pip install torch==2.13.0   # CPU build; training only, never needed to serve
    python scripts/train_plate_head.py --datasets ../shared/datasets

The PP-OCRv6 recogniser (``rapidocr``'s ``PP-OCRv6_rec_small.onnx``) stays frozen: its 120-wide
sequence features (the input of its final classifier) are computed once for every training image, its lines
batched and padded as the served reader batches them; then the head (linear, BiLSTM, linear to blank +
``A-Z0-9`` + other) is trained on them with CTC. The exported model keeps PP-OCR's own reading, trimmed to
Latin text (``text_probs``, used to name the state), and adds ``plate_probs``, both ``[N, T, 38]``.

Training images:
* synthetic plates rendered by ``services/simulator/render.py`` (US and European layouts), warped,
  blurred, darkened and JPEG-compressed, each as the whole crop and as the text lines that PP-OCR's
  detector finds in it;
* the ``tune`` half of ``openalpr-us-crops`` (split by file-name hash, ``scripts/eval_accuracy.py``),
  augmented the same way. The ``heldout`` half and ``openalpr-eu`` are never seen here.

A line's target is the serial when PP-OCR's own reading of it is within a third of the serial's length
of it, and empty otherwise.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.eval_accuracy import distance, split_of, validation_image  # noqa: E402
from services.inference.vision import ocr  # noqa: E402
from services.inference.vision.reader import PlateReader, TextLine  # noqa: E402
from services.inference.vision.runner import OnnxRunner  # noqa: E402
from services.inference.vision.settings import VisionSettings  # noqa: E402
from services.simulator import render  # noqa: E402

FEATURES = "p2o.pd_op.transpose.8.0"  # [N, T, 120]: the recogniser's sequence, before its classifier
SOURCE_OUTPUT = "fetch_name_0"  # the source's softmax over its 18,710-class dictionary
SOURCE_OPSET = 11  # PP-OCRv6_rec_small.onnx is opset 11; the head is exported to match
# European serial layouts for synthetic plates, besides the renderer's own (its band code first).
EXTRA_EU = (("SK", ("LLDDDLL", "LL-DDDLL")), ("CZ", ("DLD DDDD", "DLL DDDD")), ("PL", ("LL DDDDD", "LLL DDDD")))
EXTRA_US = ("LLL DDDD", "DLLDDD", "DDDDDD", "LLDDDD", "DLLLDDD", "LLLLDDD", "DDDLLLD", "LLLDDD", "LDDDLL")
ALL_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def source_model() -> Path:
    import rapidocr

    return Path(rapidocr.__file__).parent / "models" / "PP-OCRv6_rec_small.onnx"


# --- images -----------------------------------------------------------------------------------------


def augment(rng: np.random.Generator, crop: np.ndarray) -> np.ndarray:
    """A plausible camera view of a plate crop: margin, rotation, scale, blur, light, noise, JPEG."""
    h, w = crop.shape[:2]
    pad = int(0.2 * max(h, w))
    padded = cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    angle, shear = rng.uniform(-5, 5), rng.uniform(-0.12, 0.12)
    m = cv2.getRotationMatrix2D((padded.shape[1] / 2, padded.shape[0] / 2), angle, 1.0)
    m[0, 1] += shear
    padded = cv2.warpAffine(padded, m, (padded.shape[1], padded.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    left, right = (rng.uniform(-0.06, 0.12, 2) * w).astype(int)
    top, bottom = (rng.uniform(-0.08, 0.2, 2) * h).astype(int)
    out = padded[pad - top : pad + h + bottom, pad - left : pad + w + right]
    height = int(rng.uniform(14, 90))
    out = cv2.resize(out, (max(8, round(out.shape[1] * height / out.shape[0])), height), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.3))
    if rng.random() < 0.15:
        k = int(rng.integers(3, 7))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2] = 1.0 / k
        out = cv2.filter2D(
            out, -1, cv2.warpAffine(kernel, cv2.getRotationMatrix2D((k / 2, k / 2), rng.uniform(0, 180), 1), (k, k))
        )
    img = out.astype(np.float32)
    img = img * rng.uniform(0.5, 1.4) + rng.uniform(-50, 40)
    if rng.random() < 0.2:
        img = 255 * (np.clip(img, 0, 255) / 255) ** rng.uniform(0.6, 1.8)
    if rng.random() < 0.1:
        img[:] = img.mean(axis=2, keepdims=True)
    img += rng.normal(0, rng.uniform(0, 10), img.shape)
    out = np.clip(img, 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 96))])
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else out


def synthetic_plate(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A rendered plate, perspective-warped onto a bumper-coloured surround, cropped loosely; BGR."""
    design = render._sample_plate(rng, "us" if rng.random() < 0.6 else "eu")
    # European serials use every letter (Slovak BA302OZ); most US ones leave out I, O and Q.
    letters = ALL_LETTERS if design.region == "eu" or rng.random() < 0.3 else render.LETTERS
    if design.region == "eu" and rng.random() < 0.6:
        band, formats = EXTRA_EU[int(rng.integers(len(EXTRA_EU)))]
        design = dataclasses.replace(design, band_code=band, display=_fill(rng, formats, letters))
    elif design.region == "us" and rng.random() < 0.5:
        design = dataclasses.replace(design, display=_fill(rng, EXTRA_US, letters))
    if rng.random() < 0.3:
        design = dataclasses.replace(design, font=str(rng.choice(["DejaVuSans.ttf", "DejaVuSansMono.ttf"])))
    face = cv2.cvtColor(render.render_plate(design), cv2.COLOR_RGB2BGR)
    return mount(rng, face), render.normalize_plate(design.display)


def mount(rng: np.random.Generator, face: np.ndarray) -> np.ndarray:
    """A plate face perspective-warped onto a bumper-coloured surround, cropped loosely as a detector would."""
    ph, pw = face.shape[:2]
    margin = 0.35
    canvas_w, canvas_h = int(pw * (1 + 2 * margin)), int(ph * (1 + 2 * margin * 2))
    colour = rng.integers(0, 255, 3)
    canvas = np.empty((canvas_h, canvas_w, 3), np.uint8)
    canvas[:] = colour
    x0, y0 = (canvas_w - pw) / 2, (canvas_h - ph) / 2
    src = np.float32([[0, 0], [pw, 0], [pw, ph], [0, ph]])
    dst = src + np.float32([x0, y0]) + rng.uniform(-0.05, 0.05, (4, 2)).astype(np.float32) * np.float32([pw, ph])
    warp = cv2.getPerspectiveTransform(src, dst)
    cv2.warpPerspective(face, warp, (canvas_w, canvas_h), dst=canvas, borderMode=cv2.BORDER_TRANSPARENT)
    x1, y1 = dst.min(axis=0)
    x2, y2 = dst.max(axis=0)
    mx, my = 0.08 * (x2 - x1), 0.3 * (y2 - y1)
    return canvas[int(max(0, y1 - my)) : int(y2 + my), int(max(0, x1 - mx)) : int(x2 + mx)]


def _fill(rng: np.random.Generator, formats: tuple[str, ...], letters: str) -> str:
    fmt = formats[int(rng.integers(len(formats)))]
    return "".join(
        letters[rng.integers(len(letters))] if c == "L" else str(rng.integers(10)) if c == "D" else c for c in fmt
    )


# --- features ---------------------------------------------------------------------------------------


class FeatureExtractor:
    def __init__(self, model: Path) -> None:
        graph = onnx.load(str(model))
        graph.graph.output.append(onnx.helper.make_tensor_value_info(FEATURES, onnx.TensorProto.FLOAT, None))
        self.session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
        self.alphabet = ocr.PlateAlphabet(model_charset(graph))

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, list[str]]:
        probs, features = self.session.run([SOURCE_OUTPUT, FEATURES], {ocr.REC_INPUT: batch})
        reduced = self.alphabet.reduce(probs)
        return features, [ocr.ctc_decode(reduced[i]).text for i in range(len(batch))]


def model_charset(model: onnx.ModelProto) -> list[str]:
    """The recogniser's dictionary, from the ONNX metadata key ``character``."""
    meta = {p.key: p.value for p in model.metadata_props}
    return meta["character"].split("\n")


def build_samples(args: argparse.Namespace, reader: PlateReader) -> list[tuple[list[TextLine], str, str]]:
    """(the lines the reader makes of the crop, serial, source image) for every training image."""
    rng = np.random.default_rng(args.seed)
    crops: list[tuple[np.ndarray, str, str]] = []
    folder = args.datasets / "openalpr-us-crops"
    with (folder / "groundtruth.csv").open() as handle:
        rows = [row for row in csv.reader(handle) if split_of(row[0]) == "tune"]
    for name, _, plate in rows:
        image, text = cv2.imread(str(folder / name)), render.normalize_plate(plate)
        copies = 0 if args.validation and validation_image(name) else args.real_copies
        crops += [(augment(rng, image), text, name) for _ in range(copies)]
        crops.append((image, text, name))
    for _ in range(args.synthetic):
        crop, text = synthetic_plate(rng)
        crops.append((augment(rng, crop), text, "synthetic"))
    return [(reader.lines(crop), text, source) for crop, text, source in tqdm(crops, desc="text lines", unit="crop")]


def extract(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """Each line's feature sequence, computed exactly as the served model sees it: the crop's lines go
    through ``ocr.rec_input`` together, so each sequence is as long as its crop's widest line (T varies);
    sequences are stored end to end, ``offsets`` marking where each starts."""
    settings = VisionSettings()
    reader = PlateReader(OnnxRunner.from_settings(settings), settings.text_detector_side)
    samples = build_samples(args, reader)
    extractor = FeatureExtractor(source_model())
    features, targets, whole, sources, lengths = [], [], [], [], []
    for lines, text, source in tqdm(samples, desc="features", unit="crop"):
        feats, reads = extractor(ocr.rec_input([line.image for line in lines]))
        for line, feat, read in zip(lines, feats, reads, strict=True):
            serial_line = line.whole or distance(text, read) <= max(1, len(text) // 3)
            features.append(feat.astype(np.float16))
            lengths.append(len(feat))
            targets.append(text if serial_line else "")
            whole.append(line.whole)
            sources.append(source)
    return {
        "sources": np.array(sources),
        "features": np.concatenate(features),
        "offsets": np.concatenate([[0], np.cumsum(lengths)]),
        "targets": np.array(targets),
        "whole": np.array(whole),
    }


def padded_batch(data: dict[str, np.ndarray], index: np.ndarray):  # type: ignore[no-untyped-def]
    """The sequences of lines ``index``, zero-padded to the longest, and their lengths (tensors)."""
    import torch

    starts, ends = data["offsets"][index], data["offsets"][index + 1]
    lengths = ends - starts
    batch = np.zeros((len(index), int(lengths.max()), data["features"].shape[1]), np.float32)
    for row, (start, end) in enumerate(zip(starts, ends, strict=True)):
        batch[row, : end - start] = data["features"][start:end]
    return torch.from_numpy(batch), torch.from_numpy(lengths.astype(np.int64))


# --- the head ---------------------------------------------------------------------------------------


def make_head(channels: int, classes: int):  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    class PlateHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Sequential(nn.Linear(channels, 128), nn.GELU(), nn.Dropout(0.1))
            self.rnn = nn.LSTM(128, 96, batch_first=True, bidirectional=True)
            self.out = nn.Linear(192, classes)

        def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
            """Per-step logits; with ``lengths`` (training), the padding that joins lines of different crops
            into one batch is not read, so each backward pass starts where the served model's does: at the
            end of the line as served, padded to its crop's widest line."""
            hidden = self.inp(features)
            if lengths is None:
                return self.out(self.rnn(hidden)[0])
            packed = nn.utils.rnn.pack_padded_sequence(hidden, lengths, batch_first=True, enforce_sorted=False)
            unpacked, _ = nn.utils.rnn.pad_packed_sequence(self.rnn(packed)[0], batch_first=True)
            return self.out(unpacked)

    return PlateHead()


def encode(text: str) -> list[int]:
    return [ocr.PLATE_CHARS.index(c) + 1 for c in text]


def train(data: dict[str, np.ndarray], args: argparse.Namespace, seed: int):  # type: ignore[no-untyped-def]
    import torch

    torch.manual_seed(seed)
    targets = [encode(t) for t in data["targets"]]
    held = np.array([args.validation and s != "synthetic" and validation_image(s) for s in data["sources"]])
    valid = np.flatnonzero(held & data["whole"])  # the real, unaugmented validation crops, whole
    fit = np.flatnonzero(~held)
    head = make_head(data["features"].shape[1], ocr.OTHER + 1)
    optimiser = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = args.epochs * (len(fit) // args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps)
    ctc = torch.nn.CTCLoss(blank=ocr.BLANK, zero_infinity=True)
    for epoch in range(args.epochs):
        head.train()
        np.random.default_rng(seed * 1000 + epoch).shuffle(fit)
        losses = []
        for start in range(0, len(fit) - args.batch + 1, args.batch):
            index = fit[start : start + args.batch]
            batch, steps_in = padded_batch(data, index)
            batch = batch + 0.05 * torch.randn_like(batch)  # feature noise against over-fitting
            log_probs = head(batch, steps_in).log_softmax(2).transpose(0, 1)
            labels = [targets[i] for i in index]
            flat = torch.tensor([c for t in labels for c in t], dtype=torch.long)
            lengths = torch.tensor([len(t) for t in labels], dtype=torch.long)
            loss = ctc(log_probs, flat, steps_in, lengths)
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 5.0)
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
        note = ""
        if len(valid):
            accuracy = evaluate(head, *padded_batch(data, valid), [data["targets"][i] for i in valid])
            note = f", greedy exact on {len(valid)} validation crops {accuracy:.3f}"
        print(f"epoch {epoch + 1}/{args.epochs}: loss {np.mean(losses):.4f}{note}", flush=True)
    return head


def decode_greedy(logits: np.ndarray) -> str:
    best = logits.argmax(axis=-1)
    out, previous = [], ocr.BLANK
    for group in best:
        if group != previous and group not in (ocr.BLANK, ocr.OTHER):
            out.append(ocr.PLATE_CHARS[group - 1])
        previous = group
    return "".join(out)


def evaluate(head, features, lengths, truths: list[str]) -> float:  # type: ignore[no-untyped-def]
    import torch

    head.eval()
    with torch.no_grad():
        logits = head(features, lengths).numpy()
    reads = [decode_greedy(row[:n]) for row, n in zip(logits, lengths.tolist(), strict=True)]
    return float(np.mean([read == truth for read, truth in zip(reads, truths, strict=True)]))


# --- export -----------------------------------------------------------------------------------------


def trim_classifier(model: onnx.ModelProto) -> None:
    """Replace the recogniser's 18,710-way classifier and softmax by one over the classes that fold to
    ``A-Z0-9`` plus blank, space and ASCII punctuation (standing for "other"), folded to ``text_probs``.
    Latin text reads the same, and the classifier costs about 1 % of what it did."""
    graph = model.graph
    charset = model_charset(model)
    classes = ["<blank>", *charset, " "]
    alphabet = ocr.PlateAlphabet(charset)
    kept = [
        index
        for index, char in enumerate(classes)
        if alphabet.projection[index, ocr.OTHER] == 0 or (len(char) == 1 and char.isascii() and char.isprintable())
    ]
    nodes = list(graph.node)
    classifier = next(i for i, node in enumerate(nodes) if node.op_type == "MatMul" and FEATURES in node.input)
    weight_name, bias_name = nodes[classifier].input[1], nodes[classifier + 1].input[1]
    weights = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    w, b = weights[weight_name][:, kept], weights[bias_name][kept]
    del graph.node[classifier:]
    for init in [i for i in graph.initializer if i.name in (weight_name, bias_name)]:
        graph.initializer.remove(init)
    graph.initializer.extend(
        [
            onnx.numpy_helper.from_array(w, "latin_w"),
            onnx.numpy_helper.from_array(b, "latin_b"),
            onnx.numpy_helper.from_array(alphabet.projection[kept], "latin_fold"),
        ]
    )
    graph.node.extend(
        [
            onnx.helper.make_node("MatMul", [FEATURES, "latin_w"], ["latin_mm"]),
            onnx.helper.make_node("Add", ["latin_mm", "latin_b"], ["latin_logits"]),
            onnx.helper.make_node("Softmax", ["latin_logits"], ["latin_probs"], axis=2),
            onnx.helper.make_node("MatMul", ["latin_probs", "latin_fold"], [ocr.TEXT_OUTPUT]),
        ]
    )
    del graph.output[:]
    graph.output.extend(
        [
            onnx.helper.make_tensor_value_info(ocr.TEXT_OUTPUT, onnx.TensorProto.FLOAT, ["n", "t", ocr.OTHER + 1]),
            onnx.helper.make_tensor_value_info(FEATURES, onnx.TensorProto.FLOAT, ["n", "t", 120]),
        ]
    )


def export(heads, out: Path) -> None:  # type: ignore[no-untyped-def]
    """The source recogniser with the heads attached to its features, one model and one pass, with two
    outputs over blank, ``A-Z0-9`` and other: ``text_probs`` (PP-OCR's own reading, trimmed to Latin text,
    for state names and slogans) and ``plate_probs`` (the heads' mean probabilities, for the serial)."""
    import torch

    class Exported(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.heads = torch.nn.ModuleList(heads)

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return torch.stack([head(features).softmax(-1) for head in self.heads]).mean(0)

    for head in heads:
        head.eval()
    head_path = out.with_suffix(".head.onnx")
    torch.onnx.export(
        Exported(),
        (torch.zeros(1, 40, 120),),
        str(head_path),
        input_names=["features"],
        output_names=[ocr.PLATE_OUTPUT],
        dynamic_axes={"features": {0: "n", 1: "t"}, ocr.PLATE_OUTPUT: {0: "n", 1: "t"}},
        opset_version=SOURCE_OPSET,
        dynamo=False,
    )
    base = onnx.load(str(source_model()))
    trim_classifier(base)
    head_model = onnx.load(str(head_path))
    head_path.unlink()
    head_model.ir_version = base.ir_version
    merged = onnx.compose.merge_models(
        base,
        head_model,
        io_map=[(FEATURES, "features")],
        prefix2="plate_head/",
        outputs=[ocr.TEXT_OUTPUT, f"plate_head/{ocr.PLATE_OUTPUT}"],
    )
    graph = merged.graph
    for node in graph.node:
        node.output[:] = [ocr.PLATE_OUTPUT if o == f"plate_head/{ocr.PLATE_OUTPUT}" else o for o in node.output]
    del graph.output[:]
    for name in (ocr.TEXT_OUTPUT, ocr.PLATE_OUTPUT):
        graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["n", "t", ocr.OTHER + 1]))
    del merged.metadata_props[:]
    onnx.helper.set_model_props(
        merged, {"source": "rapidocr 3.10.0 PP-OCRv6_rec_small.onnx + scripts/train_plate_head.py"}
    )
    onnx.checker.check_model(merged)
    onnx.save(merged, str(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    parser.add_argument("--synthetic", type=int, default=6000, help="rendered plates")
    parser.add_argument("--real-copies", type=int, default=24, help="augmented copies of each tune crop")
    parser.add_argument(
        "--validation", action="store_true", help="keep a fifth of the tune crops out of training, to compare runs"
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/plate_head_features.npz"))
    parser.add_argument(
        "--out", type=Path, default=VisionSettings().model_repository / "plate_reader" / "1" / "model.onnx"
    )
    parser.add_argument("--heads", type=int, default=3, help="heads trained with different seeds, averaged")
    parser.add_argument("--head", type=Path, default=Path("/tmp/plate_head.pt"), help="the heads' weights")
    parser.add_argument("--export-only", action="store_true", help="export --head without training")
    args = parser.parse_args()

    started = time.perf_counter()
    settings = [args.synthetic, args.real_copies, args.seed, args.validation, 4]
    settings += [VisionSettings().text_detector_side, ocr.REC_MIN_RATIO]
    key = hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:12]
    cache = args.cache.with_name(f"{args.cache.stem}-{key}.npz")
    if cache.is_file():
        data = dict(np.load(cache))
    else:
        data = extract(args)
        np.savez(cache, **data)
    print(
        f"{len(data['targets'])} training lines ({int(data['whole'].sum())} whole crops, "
        f"{int((data['targets'] == '').sum())} non-serial lines)",
        flush=True,
    )
    import torch

    if args.export_only:
        heads = []
        for state in torch.load(args.head):
            heads.append(make_head(data["features"].shape[1], ocr.OTHER + 1))
            heads[-1].load_state_dict(state)
    else:
        heads = [train(data, args, args.seed + k) for k in range(args.heads)]
        torch.save([head.state_dict() for head in heads], args.head)
    export(heads, args.out)
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

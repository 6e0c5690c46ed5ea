#!/usr/bin/env python
"""Fine-tune the whole PP-OCRv6 recogniser of ``plate_reader`` for plates: backbone, neck and classifiers.

    pip install -e '.[train]' && pip install --no-deps onnx2torch==1.5.15   # never torchvision (see torch_model)
    python scripts/train_recogniser.py pack --work .gpu          # training lines and PP-OCR trimmed
    python scripts/train_recogniser.py train --work .gpu --run all --steps 3000 [--resume]
    python scripts/train_recogniser.py train --work .gpu --run fold0 --holdout-fold 0 ...   # to validate
    python scripts/train_recogniser.py shrink .gpu/lines.npz --out small.npz    # a pack for a GPU machine
    python scripts/train_recogniser.py export all.ckpt --work .gpu --out model.onnx

``pack`` (needs the project: the renderer, the text detector, the data sets) writes ``lines.npz`` and
``backbone.onnx`` (PP-OCR trimmed as the served model trims it) under ``--work``; ``train`` needs only
torch, onnx2torch, onnx, numpy and OpenCV, so that the pack (``shrink`` makes a smaller one), this script
and the onnx2torch wheel are all a GPU machine needs (model card: the GPU path). It
checkpoints every ``--checkpoint-every`` steps (``<run>.ckpt``), resumes from one with ``--resume``, and
writes ``<run>.onnx``: a drop-in ``plate_reader`` (input ``x`` ``[N, 3, 48, W]``, outputs ``text_probs``
and ``plate_probs`` ``[N, W/8, 38]``).

The model is rapidocr 3.10.0's ``PP-OCRv6_rec_small.onnx`` (the recogniser the pipeline has always used),
converted to torch with onnx2torch, with two classifiers on its 120-wide sequence features:
* ``plate_probs``: blank, ``A-Z0-9``, other, initialised from the matching rows of PP-OCR's own classifier
  (so that before any training it reads plates as PP-OCR does), trained with CTC to read a plate's serial
  and nothing from any other line (state names, slogans, dealer frames: empty targets);
* ``text_probs``: PP-OCR's own classifier cut down to Latin text and folded to the same 38 classes
  (``train_plate_head.trim_classifier``), kept reading as the original does (state names) by distillation:
  the KL divergence to the unchanged model's ``text_probs`` on the same batch.

Training lines (``pack``): plates rendered by ``services/simulator/plate_variants.py`` (US with New York's
for-hire plates, European and South American layouts, several fonts, dealer frames, stickers, stacked
characters, glare, night), mounted and degraded as a camera would (``train_plate_head.augment``: low
resolution, blur, light, noise, JPEG), and
negatives (dealer-frame and slogan lines); and the real crops of the sets whose licence allows training
(``TRAINABLE``), only from their ``trained`` and ``tune`` parts (``scripts/eval_accuracy.py: part_of``),
never a ``final`` part and never ``reported-us-crops``. Each crop gives its lines as the reader makes them
(the whole crop, then every row PP-OCR's text detector finds); a row's target is the serial when PP-OCR's
reading of it is within a third of the serial's length of it, else empty (``train_plate_head``'s rule).
``--holdout-fold K`` keeps fold K of every tune part out of training, to measure the result on it.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
import types
from pathlib import Path

import cv2
import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TRAINABLE = ("openalpr-us-crops", "openalpr-eu", "openalpr-br-crops", "argentina-crops")
LINE_HEIGHT = 48  # the recogniser's input height
STORED_HEIGHT = 32  # lines are kept this high in the pack (JPEG), and scaled to 48 when used
MAX_WIDTH, MIN_WIDTH = 384, 144  # a line is at most 8 times its height; batches padded to at least 144
PLATE_LOGITS = "plate_logits"
# The served outputs (services/inference/vision/ocr.py: TEXT_OUTPUT, PLATE_OUTPUT; not imported here, so that
# training needs neither rapidocr nor the project's services).
TEXT_OUTPUT, PLATE_OUTPUT = "text_probs", "plate_probs"
BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


# --- the starting model (pack) ------------------------------------------------------------------------


def head_rows(charset: list[str], alphabet: str) -> list[int]:
    """The rows of PP-OCR's classifier (blank, ``charset``, space) that start the plate classifier: blank,
    each character of ``alphabet`` as PP-OCR spells it in upper case, then the space for "other"."""
    classes = ["<blank>", *charset, " "]
    index = {char: i for i, char in enumerate(classes)}
    return [0, *(index[char] for char in alphabet), len(classes) - 1]


def explicit_padding(model: onnx.ModelProto) -> int:
    """Rewrite ``auto_pad=SAME_UPPER`` on stride-1 Conv and MaxPool nodes as explicit ``pads`` (onnx2torch
    refuses the former); exact for stride 1, where SAME_UPPER puts the odd pixel at the end. Returns how many."""
    changed = 0
    for node in model.graph.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type not in ("Conv", "MaxPool") or attrs.get("auto_pad", None) is None:
            continue
        if attrs["auto_pad"].s != b"SAME_UPPER":
            continue
        strides = list(attrs["strides"].ints) if "strides" in attrs else [1, 1]
        if any(s != 1 for s in strides):
            raise ValueError(f"{node.name}: SAME_UPPER with stride {strides} is not rewritten")
        kernel = list(attrs["kernel_shape"].ints)
        total = [k - 1 for k in kernel]
        pads = [t // 2 for t in total] + [t - t // 2 for t in total]
        node.attribute.remove(attrs["auto_pad"])
        node.attribute.append(onnx.helper.make_attribute("pads", pads))
        changed += 1
    return changed


def source_parts() -> tuple[onnx.ModelProto, str, np.ndarray, np.ndarray]:
    """(PP-OCR cut to ``x`` -> ``text_probs`` and its features, the features' name, the plate classifier's
    starting weights and bias from the rows ``head_rows`` picks of PP-OCR's classifier)."""
    from scripts.train_plate_head import FEATURES, model_charset, source_model, trim_classifier
    from services.inference.vision import ocr

    model = onnx.load(str(source_model()))
    nodes = list(model.graph.node)
    classifier = next(i for i, node in enumerate(nodes) if node.op_type == "MatMul" and FEATURES in node.input)
    weights = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    rows = head_rows(model_charset(model), ocr.PLATE_CHARS)
    w = weights[nodes[classifier].input[1]][:, rows].copy()
    b = weights[nodes[classifier + 1].input[1]][rows].copy()
    trim_classifier(model)  # outputs text_probs and the features
    return model, FEATURES, w, b


def start_model(backbone: onnx.ModelProto, features: str, w: np.ndarray, b: np.ndarray) -> onnx.ModelProto:
    """``backbone`` (any model with PP-OCR's ``text_probs`` and features: the source trimmed by ``pack``, or
    the served ``plate_reader`` before this fine-tune, which holds the same) cut to ``x`` -> ``text_probs``
    and ``plate_logits`` (the 38-way classifier ``w``, ``b`` on the features), padding made explicit."""
    model = onnx.utils.Extractor(backbone).extract_model(["x"], [TEXT_OUTPUT, features])
    graph = model.graph
    graph.initializer.extend([onnx.numpy_helper.from_array(w, "plate_w"), onnx.numpy_helper.from_array(b, "plate_b")])
    graph.node.extend(
        [
            onnx.helper.make_node("MatMul", [features, "plate_w"], ["plate_mm"]),
            onnx.helper.make_node("Add", ["plate_mm", "plate_b"], [PLATE_LOGITS]),
        ]
    )
    del graph.output[1:]  # keep text_probs, drop the features
    graph.output.append(onnx.helper.make_tensor_value_info(PLATE_LOGITS, onnx.TensorProto.FLOAT, ["n", "t", len(b)]))
    explicit_padding(model)
    onnx.checker.check_model(model)
    return model


# --- training lines (pack) ----------------------------------------------------------------------------


def stored_line(image: np.ndarray) -> bytes:
    """A BGR line scaled to ``STORED_HEIGHT`` (aspect kept, at most ``MAX_WIDTH / LINE_HEIGHT`` wide), JPEG."""
    h, w = image.shape[:2]
    width = max(4, min(round(STORED_HEIGHT * MAX_WIDTH / LINE_HEIGHT), round(STORED_HEIGHT * w / max(1, h))))
    ok, data = cv2.imencode(
        ".jpg", cv2.resize(image, (width, STORED_HEIGHT), interpolation=cv2.INTER_AREA), [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def real_crops(datasets: Path) -> list[tuple[np.ndarray, str, str, int]]:
    """(crop, serial, set, fold) of every trainable sample outside the final parts; ``fold`` is -1 for
    ``openalpr-us-crops``'s ``trained`` half. Photos (``openalpr-eu``) give their labelled box, widened."""
    from scripts.eval_accuracy import load

    crops = []
    for dataset in TRAINABLE:
        for sample in load(dataset, datasets / dataset):
            if sample.part not in ("trained", "tune") or not sample.truth:
                continue
            image = cv2.imread(str(sample.path))
            if image is None:
                continue
            if sample.boxes:
                x, y, w, h = sample.boxes[0]
                x1, y1 = int(max(0, x - 0.08 * w)), int(max(0, y - 0.2 * h))
                image = image[y1 : int(y + 1.2 * h), x1 : int(x + 1.08 * w)]
            crops.append((image, sample.truth, dataset, sample.fold))
    return crops


def pack(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from scripts.eval_accuracy import distance
    from scripts.train_plate_head import augment, mount
    from services.inference.vision import ocr
    from services.inference.vision.reader import RECOGNISER, PlateReader
    from services.inference.vision.runner import OnnxRunner
    from services.inference.vision.settings import VisionSettings
    from services.simulator import plate_variants

    args.work.mkdir(parents=True, exist_ok=True)
    backbone, features, head_w, head_b = source_parts()
    onnx.save(backbone, str(args.work / "backbone.onnx"))
    settings = VisionSettings()
    runner = OnnxRunner.from_settings(settings, intra_op_threads=1)
    reader = PlateReader(runner, settings.text_detector_side)
    rng = np.random.default_rng(args.seed)
    items: list[tuple[np.ndarray, str, str, int]] = []
    for crop, serial, dataset, fold in real_crops(args.datasets):
        items.append((crop, serial, dataset, fold))
        items += [(augment(rng, crop), serial, dataset, fold) for _ in range(args.real_copies)]
    for _ in range(args.synthetic):
        face = plate_variants.plate_face(rng)
        crop = augment(rng, mount(rng, cv2.cvtColor(face.image, cv2.COLOR_RGB2BGR)))
        if rng.random() < 0.12:
            crop = plate_variants.night(rng, crop)
        items.append((crop, face.serial, "synthetic", -1))
    lines: list[bytes] = []
    targets, sources, folds, whole = [], [], [], []
    for crop, serial, source, fold in tqdm(items, desc="lines", unit="crop"):
        found = reader.lines(crop)
        # PP-OCR's own reading of each line (the served model's text_probs: Latin text reads as the source's)
        texts = runner.infer(RECOGNISER, {ocr.REC_INPUT: ocr.rec_input([line.image for line in found])})
        for line, probs in zip(found, texts[ocr.TEXT_OUTPUT], strict=True):
            read = ocr.ctc_decode(probs).text
            serial_line = line.whole or distance(serial, read) <= max(1, len(serial) // 3)
            lines.append(stored_line(line.image))
            targets.append(serial if serial_line else "")
            sources.append(source)
            folds.append(fold)
            whole.append(line.whole)
    for _ in range(args.negatives):
        line = augment(rng, cv2.cvtColor(plate_variants.negative_line(rng), cv2.COLOR_RGB2BGR))
        lines.append(stored_line(line))
        targets.append("")
        sources.append("negative")
        folds.append(-1)
        whole.append(False)
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in lines])])
    np.savez(
        args.work / "lines.npz",
        jpeg=np.frombuffer(b"".join(lines), np.uint8),
        offsets=offsets,
        targets=np.array(targets),
        sources=np.array(sources),
        folds=np.array(folds),
        whole=np.array(whole),
        alphabet=np.array(ocr.PLATE_CHARS),
        features=np.array(features),
        head_w=head_w,
        head_b=head_b,
    )
    real = sum(s in TRAINABLE for s in sources)
    print(f"{len(lines)} lines ({real} real, {sum(t == '' for t in targets)} empty), {offsets[-1] / 2**20:.1f} MiB")


# --- batches (train) ----------------------------------------------------------------------------------


class Lines:
    """The packed lines: decoded on demand, augmented, batched as the served reader batches them."""

    def __init__(self, path: Path, holdout_fold: int | None) -> None:
        data = np.load(path)
        self.jpeg, self.offsets = data["jpeg"], data["offsets"]
        self.targets, self.sources = data["targets"], data["sources"]
        self.folds, self.whole = data["folds"], data["whole"]
        self.alphabet = str(data["alphabet"])
        held = self.folds == holdout_fold if holdout_fold is not None else np.zeros(len(self.folds), bool)
        real = np.isin(self.sources, TRAINABLE)
        self.real = np.flatnonzero(real & ~held)
        self.synthetic = np.flatnonzero(~real)
        self.valid = np.flatnonzero(held & self.whole & real)

    def image(self, index: int) -> np.ndarray:
        data = self.jpeg[self.offsets[index] : self.offsets[index + 1]]
        return cv2.imdecode(data, cv2.IMREAD_COLOR)

    def encode(self, text: str) -> list[int]:
        return [self.alphabet.index(c) + 1 for c in text]

    def batch(self, rng: np.random.Generator, size: int, real_share: float) -> tuple[np.ndarray, list[str]]:
        real = rng.random(size) < real_share if len(self.real) else np.zeros(size, bool)
        picks = [int(rng.choice(self.real if r else self.synthetic)) for r in real]
        images = [vary(rng, self.image(i)) for i in picks]
        return to_input(images), [str(self.targets[i]) for i in picks]


def vary(rng: np.random.Generator, line: np.ndarray) -> np.ndarray:
    """A new view of a stored line: margins, resolution, blur, light, colour, glare, noise."""
    h, w = line.shape[:2]
    left, right = (rng.uniform(-0.03, 0.04, 2) * w).astype(int)
    top, bottom = (rng.uniform(-0.06, 0.08, 2) * h).astype(int)
    line = cv2.copyMakeBorder(line, max(0, top), max(0, bottom), max(0, left), max(0, right), cv2.BORDER_REPLICATE)
    line = line[max(0, -top) : line.shape[0] - max(0, -bottom), max(0, -left) : line.shape[1] - max(0, -right)]
    if rng.random() < 0.3:  # low resolution
        small = int(rng.uniform(10, 28))
        line = cv2.resize(line, (max(4, line.shape[1] * small // line.shape[0]), small), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.2:
        line = cv2.GaussianBlur(line, (0, 0), rng.uniform(0.3, 1.2))
    img = line.astype(np.float32) * rng.uniform(0.6, 1.3) + rng.uniform(-40, 30)
    if rng.random() < 0.1:
        img[:] = img.mean(axis=2, keepdims=True)
    if rng.random() < 0.1:
        img = img[:, :, rng.permutation(3)]
    if rng.random() < 0.08:  # glare
        xs = np.arange(img.shape[1], dtype=np.float32)
        img += (np.exp(-(((xs - rng.uniform(0, img.shape[1])) / (0.2 * img.shape[1])) ** 2)) * rng.uniform(60, 160))[
            None, :, None
        ]
    img += rng.normal(0, rng.uniform(0, 6), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def to_input(images: list[np.ndarray]) -> np.ndarray:
    """As ``ocr.rec_input``: height 48, aspect kept, right-padded with 0 to the widest (at least 144, a
    multiple of 8, at most ``MAX_WIDTH``), ``(x / 255 - 0.5) / 0.5``, NCHW."""
    widths = [min(MAX_WIDTH, math.ceil(LINE_HEIGHT * im.shape[1] / max(1, im.shape[0]))) for im in images]
    width = max(MIN_WIDTH, math.ceil(max(widths) / 8) * 8)
    batch = np.zeros((len(images), 3, LINE_HEIGHT, width), np.float32)
    for row, (image, w) in enumerate(zip(images, widths, strict=True)):
        resized = cv2.resize(image, (max(1, w), LINE_HEIGHT), interpolation=cv2.INTER_LINEAR)
        batch[row, :, :, :w] = ((resized.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
    return batch


def greedy(probs: np.ndarray, alphabet: str) -> str:
    out, previous = [], 0
    for group in probs.argmax(-1):
        if group != previous and 0 < group <= len(alphabet):
            out.append(alphabet[group - 1])
        previous = group
    return "".join(out)


# --- the model (train) --------------------------------------------------------------------------------


def torch_model(start: onnx.ModelProto):  # type: ignore[no-untyped-def]
    """``start_model`` as a torch module whose every weight trains: onnx2torch keeps MatMul and LayerNorm
    weights as buffers (they would silently stay frozen), so each float buffer but the batch-norm
    statistics and the scalar constants (GELU's sqrt(2), epsilons, the attention scale: trained, they turn
    the loss to NaN within steps) becomes a parameter. onnx2torch imports torchvision for NMS and RoiAlign
    alone, which this model has not: a stub stands in (the CPU environment must not have torchvision, whose
    CUDA build breaks the import)."""
    import torch

    if "torchvision" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except ImportError:
            stub = types.ModuleType("torchvision")
            ops = types.ModuleType("torchvision.ops")
            ops.roi_align = None  # type: ignore[attr-defined]
            stub.ops = ops  # type: ignore[attr-defined]
            sys.modules.update({"torchvision": stub, "torchvision.ops": ops})
    from onnx2torch import convert

    model = convert(start)
    for module in model.modules():
        for name, buffer in list(module._buffers.items()):
            if buffer is not None and buffer.is_floating_point() and buffer.numel() > 1 and name not in BN_STATS:
                del module._buffers[name]
                module.register_parameter(name, torch.nn.Parameter(buffer.clone()))
    return model


def frozen_statistics(model) -> None:  # type: ignore[no-untyped-def]
    """Batch norm keeps PP-OCR's statistics (lines of one batch share padding; batches are small on CPU)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def learning_rate(progress: float, peak: float, warmup: float = 0.05) -> float:
    """Linear warm-up to ``peak``, then cosine to 2 % of it; ``progress`` in [0, 1]."""
    if progress < warmup:
        return peak * progress / warmup
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup)))))


def validate(model, lines: Lines, device: str, limit: int | None = None) -> float | None:  # type: ignore[no-untyped-def]
    """Greedy exact on the held-out real crops, whole, unaugmented, one crop a batch as served."""
    import torch

    indices = lines.valid[:limit]
    if not len(indices):
        return None
    model.eval()
    right = 0
    with torch.no_grad():
        for index in indices:
            _, logits = model(torch.from_numpy(to_input([lines.image(int(index))])).to(device))
            right += greedy(logits[0].cpu().numpy(), lines.alphabet) == lines.targets[index]
    model.train()
    frozen_statistics(model)
    return right / len(indices)


def batches(lines: Lines, args: argparse.Namespace, seed: int):  # type: ignore[no-untyped-def]
    """An endless stream of (input, targets) batches, made by ``--workers`` processes where there are any."""
    import torch

    class Stream(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
        def __iter__(self):  # type: ignore[no-untyped-def]
            info = torch.utils.data.get_worker_info()
            rng = np.random.default_rng([seed, 0 if info is None else info.id + 1])
            while True:
                yield lines.batch(rng, args.batch, args.real_share)

    loader = torch.utils.data.DataLoader(
        Stream(),
        batch_size=None,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers else None,
    )
    return iter(loader)


def train(args: argparse.Namespace) -> None:
    import torch

    torch.manual_seed(args.seed)
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    device = args.device
    lines = Lines(args.lines or args.work / "lines.npz", args.holdout_fold)
    model = torch_model(starting_point(args)).to(device)
    teacher = copy.deepcopy(model).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    model.train()
    frozen_statistics(model)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    checkpoint = args.work / f"{args.run}.ckpt"
    step, spent = 0, 0.0
    if args.resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        step, spent = state["step"], state["seconds"]
        print(f"resumed {checkpoint} at step {step}", flush=True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"{args.run}: {trainable / 1e6:.2f} M parameters train; {len(lines.real)} real and {len(lines.synthetic)} "
        f"rendered lines, {len(lines.valid)} held-out crops (fold {args.holdout_fold}); device {device}",
        flush=True,
    )
    if step == 0 and lines.valid.size:
        print(f"step 0: held-out greedy exact {validate(model, lines, device, args.valid_limit):.3f}", flush=True)
    stream = batches(lines, args, args.seed + step)
    started, losses = time.perf_counter() - spent, []
    while step < args.steps:
        progress = max(step / args.steps, (time.perf_counter() - started) / args.max_seconds)
        if progress >= 1.0:
            break
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(progress, args.lr)
        images, texts = next(stream)
        x = torch.as_tensor(images).to(device, non_blocking=True)  # the loader hands tensors over
        text_probs, logits = model(x)
        log_probs = logits.log_softmax(-1).transpose(0, 1)
        targets = torch.tensor([c for t in texts for c in lines.encode(t)], dtype=torch.long)
        target_lengths = torch.tensor([len(t) for t in texts], dtype=torch.long)
        input_lengths = torch.full((len(texts),), log_probs.shape[0], dtype=torch.long)
        ctc = torch.nn.functional.ctc_loss(
            log_probs, targets.to(device), input_lengths, target_lengths, blank=0, zero_infinity=True
        )
        with torch.no_grad():
            reference, _ = teacher(x)
        distill = (reference * (torch.log(reference + 1e-7) - torch.log(text_probs + 1e-7))).sum(-1).mean()
        loss = ctc + args.distill * distill
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimiser.step()
        step += 1
        losses.append((float(ctc.detach()), float(distill.detach())))
        if step % args.checkpoint_every == 0 or step == args.steps:
            seconds = time.perf_counter() - started
            state = {"model": model.state_dict(), "optimiser": optimiser.state_dict(), "step": step, "seconds": seconds}
            torch.save(state, checkpoint.with_suffix(".tmp"))
            checkpoint.with_suffix(".tmp").replace(checkpoint)
            ctc_mean, distill_mean = np.mean(losses, axis=0)
            accuracy = validate(model, lines, device, args.valid_limit)
            note = "" if accuracy is None else f", held-out greedy exact {accuracy:.3f}"
            print(
                f"step {step}: ctc {ctc_mean:.4f}, distillation {distill_mean:.4f}, "
                f"lr {optimiser.param_groups[0]['lr']:.2e}, {seconds:.0f} s{note}",
                flush=True,
            )
            losses = []
    seconds = time.perf_counter() - started
    torch.save(
        {"model": model.state_dict(), "optimiser": optimiser.state_dict(), "step": step, "seconds": seconds}, checkpoint
    )
    accuracy = validate(model, lines, device)
    print(f"{args.run}: {step} steps in {seconds:.0f} s; held-out greedy exact {accuracy}", flush=True)
    export(model.cpu(), args.out or args.work / f"{args.run}.onnx")


def starting_point(args: argparse.Namespace) -> onnx.ModelProto:
    pack_file = np.load(args.lines or args.work / "lines.npz")
    backbone = onnx.load(str(args.backbone or args.work / "backbone.onnx"))
    return start_model(backbone, str(pack_file["features"]), pack_file["head_w"], pack_file["head_b"])


def export_weights(args: argparse.Namespace) -> None:
    """Export trained weights: a checkpoint, or the state dict alone (what a GPU run sends back when its
    torch cannot export: torch 2.11's legacy exporter fails in onnx2torch; 2.13's works)."""
    import torch

    model = torch_model(starting_point(args))
    state = torch.load(args.weights, map_location="cpu")
    model.load_state_dict(state.get("model", state))
    export(model, args.out)


def export(model, out: Path) -> None:  # type: ignore[no-untyped-def]
    """The served form: ``x`` to ``text_probs`` and ``plate_probs`` (softmax), dynamic batch and width,
    with the legacy exporter (the dynamo exporter fails in onnx2torch's Slice), checked against torch."""
    import torch

    class Served(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            text, logits = self.model(x)
            return text, logits.softmax(-1)

    served = Served().eval()
    torch.onnx.export(
        served,
        (torch.zeros(2, 3, LINE_HEIGHT, 160),),
        str(out),
        input_names=["x"],
        output_names=[TEXT_OUTPUT, PLATE_OUTPUT],
        dynamic_axes={"x": {0: "n", 3: "w"}, TEXT_OUTPUT: {0: "n", 1: "t"}, PLATE_OUTPUT: {0: "n", 1: "t"}},
        opset_version=17,
        dynamo=False,
    )
    exported = onnx.load(str(out))
    onnx.helper.set_model_props(
        exported, {"source": "rapidocr 3.10.0 PP-OCRv6_rec_small.onnx fine-tuned by scripts/train_recogniser.py"}
    )
    onnx.save(exported, str(out))
    import onnxruntime as ort

    probe = np.random.default_rng(0).uniform(-1, 1, (3, 3, LINE_HEIGHT, 232)).astype(np.float32)
    with torch.no_grad():
        expected = [t.numpy() for t in served(torch.from_numpy(probe))]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": probe})
    gap = max(float(np.abs(a - b).max()) for a, b in zip(expected, got, strict=True))
    print(f"wrote {out}: onnxruntime matches torch to {gap:.1e} at width 232", flush=True)


def shrink(args: argparse.Namespace) -> None:
    """A smaller pack: ``--keep`` lines drawn at random from each kind (real, rendered, negative), re-encoded
    at ``--quality``. A GPU machine here takes the checkout and what it carries in 64 MiB together."""
    data = dict(np.load(args.lines))
    rng = np.random.default_rng(args.seed)
    sources = data["sources"]
    kinds = {"real": np.isin(sources, TRAINABLE), "rendered": sources == "synthetic", "negative": sources == "negative"}
    kept = np.sort(
        np.concatenate(
            [
                rng.permutation(np.flatnonzero(mask))[:count]
                for mask, count in zip(kinds.values(), args.keep, strict=True)
            ]
        )
    )
    jpeg, offsets = data["jpeg"], data["offsets"]
    images = []
    for i in kept:
        image = cv2.imdecode(jpeg[offsets[i] : offsets[i + 1]], cv2.IMREAD_COLOR)
        images.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, args.quality])[1].tobytes())
    per_line = {k: v[kept] for k, v in data.items() if k in ("targets", "sources", "folds", "whole")}
    fixed = {k: v for k, v in data.items() if k not in per_line and k not in ("jpeg", "offsets")}
    new_offsets = np.concatenate([[0], np.cumsum([len(b) for b in images])])
    np.savez(args.out, jpeg=np.frombuffer(b"".join(images), np.uint8), offsets=new_offsets, **per_line, **fixed)
    print(f"{len(kept)} of {len(sources)} lines, {new_offsets[-1] / 2**20:.1f} MiB: {args.out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="render and collect the training lines, write the starting model")
    packing.add_argument("--work", type=Path, required=True)
    packing.add_argument("--datasets", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    packing.add_argument("--synthetic", type=int, default=4000, help="rendered plates")
    packing.add_argument("--negatives", type=int, default=1500, help="dealer-frame and slogan lines")
    packing.add_argument("--real-copies", type=int, default=1, help="augmented copies of each real crop")
    packing.add_argument("--seed", type=int, default=11)
    training = commands.add_parser("train", help="fine-tune from --work's pack; writes <run>.ckpt and <run>.onnx")
    training.add_argument("--work", type=Path, required=True)
    training.add_argument("--run", default="all", help="name of the run's checkpoint and model")
    training.add_argument("--lines", type=Path, default=None, help="the pack (default <work>/lines.npz)")
    training.add_argument(
        "--backbone", type=Path, default=None, help="PP-OCR with text_probs and its features (<work>/backbone.onnx)"
    )
    training.add_argument("--holdout-fold", type=int, default=None, help="keep this fold of the tune parts out")
    training.add_argument("--steps", type=int, default=3000)
    training.add_argument("--max-seconds", type=float, default=float("inf"), help="stop (and export) after this")
    training.add_argument("--batch", type=int, default=32)
    training.add_argument("--lr", type=float, default=5e-4)
    training.add_argument("--distill", type=float, default=1.0, help="weight of the text_probs distillation")
    training.add_argument("--real-share", type=float, default=0.4, help="share of real lines in a batch")
    training.add_argument("--checkpoint-every", type=int, default=250)
    training.add_argument("--valid-limit", type=int, default=200, help="held-out crops checked at a checkpoint")
    training.add_argument("--resume", action="store_true")
    training.add_argument("--device", default="cpu")
    training.add_argument("--threads", type=int, default=2)
    training.add_argument("--workers", type=int, default=0, help="processes making batches")
    training.add_argument("--seed", type=int, default=7)
    training.add_argument("--out", type=Path, default=None, help="the ONNX model (default <work>/<run>.onnx)")
    shrinking = commands.add_parser("shrink", help="a smaller pack, to carry to a GPU machine")
    shrinking.add_argument("lines", type=Path)
    shrinking.add_argument("--out", type=Path, required=True)
    shrinking.add_argument("--keep", type=int, nargs=3, default=[5000, 3800, 500], help="real, rendered, negative")
    shrinking.add_argument("--quality", type=int, default=70)
    shrinking.add_argument("--seed", type=int, default=3)
    exporting = commands.add_parser("export", help="a checkpoint (or a state dict) to <out>, the served ONNX model")
    exporting.add_argument("weights", type=Path)
    exporting.add_argument("--work", type=Path, required=True)
    exporting.add_argument("--lines", type=Path, default=None, help="the pack (default <work>/lines.npz)")
    exporting.add_argument("--backbone", type=Path, default=None, help="as for train (<work>/backbone.onnx)")
    exporting.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    {"pack": pack, "train": train, "shrink": shrink, "export": export_weights}[args.command](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

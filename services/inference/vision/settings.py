"""Settings of the vision pipeline (environment prefix ``SIGHTLINE_VISION_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .plate_text import FAMILIES

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]


class VisionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIGHTLINE_VISION_", extra="forbid")

    model_repository: Path = Field(
        default=REPOSITORY_ROOT / "model_repository",
        validation_alias=AliasChoices("SIGHTLINE_MODEL_REPOSITORY", "model_repository"),
        description="model repository whose ONNX models the in-process pipeline runs (SIGHTLINE_MODEL_REPOSITORY)",
    )
    max_pixels: int = Field(default=40_000_000, gt=0, description="frames above this are rejected")
    plate_score_threshold: float = Field(
        default=0.25, ge=0, le=1, description="plate detections scoring below this are dropped")
    plate_iou_threshold: float = Field(
        default=0.45, ge=0, le=1,
        description="non-maximum suppression: a plate box overlapping a better one by more than this IoU is dropped",
    )
    vehicle_score_threshold: float = Field(
        default=0.2, ge=0, le=1, description="vehicle detections scoring below this are dropped")
    person_score_threshold: float = Field(
        default=0.25, ge=0, le=1, description="person detections scoring below this are dropped")
    object_iou_threshold: float = Field(
        default=0.5, ge=0, le=1,
        description="non-maximum suppression of vehicles (their classes merged) and of persons: a box overlapping a "
        "better one by more than this IoU is dropped",
    )
    face_score_threshold: float = Field(
        default=0.5, ge=0, le=1, description="face detections scoring below this are dropped")
    face_search_side: int = Field(
        default=512, ge=0, le=576, multiple_of=32,
        description="faces: with a vehicle or person in view the frame is searched at this longer side instead "
        "of 256 (small faces; above 576 faces that fill the frame are lost, scripts/eval_faces.py); 0 = 256 always",
    )
    plate_margin_x: float = Field(default=0.08, ge=0, le=1, description="crop margin, share of plate width")
    plate_margin_y: float = Field(default=0.3, ge=0, le=2, description="crop margin, share of plate height")
    plate_detector_side: int = Field(
        default=640, ge=128, le=1920, multiple_of=32,
        description="frames are letterboxed to this longer side to find plates",
    )
    plate_detector_max_upscale: float = Field(
        default=2.5, ge=1, le=100,
        description="a frame smaller than the plate detector's input (a plate crop) is enlarged at most this "
        "many times to find plates, the rest padding: the detector misses plates that fill its input",
    )
    plate_vehicle_side: int = Field(
        default=320, ge=0, le=1920, multiple_of=32,
        description="each vehicle in which the frame-wide pass found no plate is searched again, scaled to this "
        "longer side (plates too small at the frame's scale); 0 = never",
    )
    plate_crop_max_side: int = Field(
        default=480, ge=0, le=1920,
        description="a frame whose longer side is at most this may be a plate crop (camera frames are VGA or larger; "
        "AlprPipeline.read_plates says when it is one): it is read whole too; 0 = never",
    )
    object_detector_side: int = Field(
        default=384, ge=128, le=1024, multiple_of=32,
        description="frames are scaled to this longer side to find vehicles and persons",
    )
    text_detector_side: int = Field(
        default=256, ge=64, le=960, description="plate crops are scaled to this longer side to find their text rows"
    )
    plate_family: str = Field(
        default="us",
        description="serial layouts and spelling conventions of the plates the cameras see (plate_text.LAYOUTS): "
        "us (a state's own series where the plate names it), a US state (us-ny), eu (the commonest European "
        "series), a European country (de, fr, nl, ...), br (Brazil, LLL-NNNN and Mercosur LLLNLNN), ar "
        "(Argentina, LLLNNN and Mercosur LLNNNLL) or auto (us, eu, br and ar together)",
    )
    int8: bool = Field(default=True, description="in-process runs: INT8 model copies where they exist (CPU)")

    @field_validator("plate_family")
    @classmethod
    def _known_family(cls, family: str) -> str:
        if family not in FAMILIES:
            raise ValueError(f"unknown plate family {family!r}; known: {', '.join(FAMILIES)}")
        return family

    @field_validator("face_search_side")
    @classmethod
    def _face_search_finer_than_256(cls, side: int) -> int:
        if 0 < side <= 256:
            raise ValueError("must be 0 (the 256-pixel pass only) or above 256: a smaller side finds fewer faces")
        return side
